/* forge TARGET PAYLOAD: rewrites TARGET with PAYLOAD (same size) behind a stamp that does not
 * move. Maps TARGET shared and writable and dirties every page (this write updates mtime and
 * ctime), then gets the exec guard to identify TARGET while the mapping exists: an exec attempt
 * (the kernel refuses it with ETXTBSY, after fanotify/seccomp saw it) and a loader-style
 * mmap(PROT_EXEC) of a read-only descriptor. Then copies PAYLOAD into the already-dirty pages
 * (no page fault, so no timestamp update) and unmaps. Prints STAMP-SAME when size, mtime and
 * ctime are exactly as they were while TARGET was identified (3 s after the last write). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
static int same(struct stat *a, struct stat *b) {
  return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
         a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
         a->st_ctim.tv_nsec == b->st_ctim.tv_nsec && a->st_ino == b->st_ino;
}
int main(int c, char **v) {
  if (c < 3) return 2;
  int fd = open(v[1], O_RDWR);
  if (fd < 0) { perror("open target"); return 2; }
  struct stat a, b;
  fstat(fd, &a);
  char *buf = malloc(a.st_size);
  int pf = open(v[2], O_RDONLY);
  if (pf < 0 || read(pf, buf, a.st_size) != a.st_size) { puts("payload size mismatch"); return 2; }
  volatile char *m = mmap(0, a.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) { perror("mmap"); return 2; }
  close(fd);
  for (off_t i = 0; i < a.st_size; i += 4096) m[i] = m[i];
  /* Older than any "changed just now" guard a cache may have for coarse timestamps: what
   * must refuse the trick is that the file is open for write, not its age. */
  sleep(3);
  stat(v[1], &a);
  pid_t p = fork();
  if (p == 0) {
    execl(v[1], v[1], "--version", (char *)0);
    printf("first exec: %s\n", strerror(errno));
    fflush(stdout);
    _exit(0);
  }
  int st;
  waitpid(p, &st, 0);
  int ro = open(v[1], O_RDONLY);
  void *x = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, ro, 0);
  printf("exec mapping while writable: %s\n", x == MAP_FAILED ? strerror(errno) : "mapped");
  if (x != MAP_FAILED) munmap(x, 4096);
  close(ro);
  fflush(stdout);
  memcpy((char *)m, buf, a.st_size);
  munmap((void *)m, a.st_size);
  stat(v[1], &b);
  puts(same(&a, &b) ? "STAMP-SAME" : "STAMP-CHANGED");
  return 0;
}
