/* mmapexec FILE [mprotect]: maps FILE executable (directly, or read-only then mprotect to
 * PROT_EXEC). Exit 0 when the kernel allowed it, 1 when it refused (errno printed). */
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
int main(int c, char **v) {
  int fd = open(v[1], O_RDONLY | O_CLOEXEC);
  if (fd < 0) { perror("open"); return 2; }
  int mp = c > 2;
  void *p = mmap(0, 4096, mp ? PROT_READ : PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) { printf("mmap: %s\n", strerror(errno)); return 1; }
  if (mp && mprotect(p, 4096, PROT_READ | PROT_EXEC)) { printf("mprotect: %s\n", strerror(errno)); return 1; }
  printf("mapped\n");
  return 0;
}
