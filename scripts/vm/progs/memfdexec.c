/* memfdexec FILE ARGS...: copies FILE into a memfd and fexecve()s it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
extern char **environ;
int main(int c, char **v) {
  int in = open(v[1], O_RDONLY); struct stat st; fstat(in, &st);
  int m = memfd_create("x", MFD_CLOEXEC);
  sendfile(m, in, 0, st.st_size);
  fexecve(m, v + 1, environ);
  perror("fexecve");
  return 1;
}
