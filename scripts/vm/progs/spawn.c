/* spawn N PROG: vfork()s and execs PROG N times; prints the median microseconds per spawn. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static int cmp(const void*a,const void*b){double x=*(const double*)a,y=*(const double*)b;return x<y?-1:x>y;}
int main(int c,char**v){int n=atoi(v[1]);double*d=malloc(n*sizeof(double));int bad=0;
 for(int i=0;i<n;i++){double t=now();pid_t p=vfork();if(!p){execl(v[2],v[2],(char*)0);_exit(127);}int st;waitpid(p,&st,0);d[i]=now()-t;if(!WIFEXITED(st)||WEXITSTATUS(st))bad++;}
 qsort(d,n,sizeof(double),cmp);printf("%.1f %d\n",d[n/2],bad);return 0;}
