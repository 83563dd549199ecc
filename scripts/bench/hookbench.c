/* Replays hook payloads (one JSON per line) through a command, one process per payload,
 * payload on stdin, and prints p50/p99 wall time in microseconds (process start included).
 * Usage: hookbench PAYLOADS ROUNDS -- CMD [ARGS...]
 * Prints "p50 p99 n denies" on stdout, where denies counts exit status 2.
 * With HOOKBENCH_BASELINE=/path/to/other/binary in the environment, each payload is also run
 * through that binary (same arguments) right next to CMD, the order alternating, and a
 * second line gives its figures: both see the same load (an A/B in one run).
 * HOOKBENCH_HOME and HOOKBENCH_BASELINE_HOME give each binary its own HOME (its own state:
 * two builds with different cache formats would otherwise rewrite each other's cache). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <signal.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static int cmp(const void*a,const void*b){double x=*(const double*)a,y=*(const double*)b;return x<y?-1:x>y;}
static int devnull;
/* One run of argv with line on stdin; returns its wall time, *st its status. */
static double one(char**argv,const char*home,const char*line,int*st){
  int p[2]; if(pipe(p))exit(2);
  double t=now(); pid_t c=fork();
  if(c==0){if(home&&*home)setenv("HOME",home,1);dup2(p[0],0);close(p[0]);close(p[1]);dup2(devnull,1);dup2(devnull,2);execvp(argv[0],argv);_exit(127);}
  close(p[0]); size_t len=strlen(line); if(write(p[1],line,len)!=(ssize_t)len){} close(p[1]);
  waitpid(c,st,0); double d=now()-t;
  if(WIFEXITED(*st)&&WEXITSTATUS(*st)==127){fprintf(stderr,"cannot run %s\n",argv[0]);exit(2);}
  return d;
}
static void report(double*d,size_t k,long denies,int rounds){
  qsort(d,k,sizeof(double),cmp);
  printf("%.0f %.0f %zu %ld\n",d[k/2],d[(size_t)(k*0.99)],k,denies/rounds);
}
int main(int argc,char**argv){
  if(argc<5||strcmp(argv[3],"--")){fprintf(stderr,"usage: hookbench PAYLOADS ROUNDS -- CMD...\n");return 2;}
  FILE*f=fopen(argv[1],"r"); if(!f){perror(argv[1]);return 2;}
  char**lines=NULL;size_t n=0,cap=0;char*l=NULL;size_t lc=0;ssize_t r;
  while((r=getline(&l,&lc,f))>0){if(n==cap){cap=cap?cap*2:64;lines=realloc(lines,cap*sizeof*lines);}lines[n++]=strndup(l,r);}
  signal(SIGPIPE,SIG_IGN); /* `true` exits without reading its stdin */
  int rounds=atoi(argv[2]); size_t total=n*rounds;
  char**a=argv+4; int ac=argc-4;
  const char*base=getenv("HOOKBENCH_BASELINE");
  const char*ha=getenv("HOOKBENCH_HOME"),*hb=getenv("HOOKBENCH_BASELINE_HOME");
  char**b=NULL;
  if(base&&*base){b=malloc((ac+1)*sizeof*b);memcpy(b,a,(ac+1)*sizeof*b);b[0]=(char*)base;}
  double*da=malloc(total*sizeof(double)),*db=malloc(total*sizeof(double)); size_t k=0; long dena=0,denb=0;
  devnull=open("/dev/null",O_WRONLY);
  for(int rd=0;rd<rounds;rd++) for(size_t i=0;i<n;i++){
    int st;
    if(b&&(k&1)){db[k]=one(b,hb,lines[i],&st); if(WIFEXITED(st)&&WEXITSTATUS(st)==2)denb++;}
    da[k]=one(a,ha,lines[i],&st); if(WIFEXITED(st)&&WEXITSTATUS(st)==2)dena++;
    if(b&&!(k&1)){db[k]=one(b,hb,lines[i],&st); if(WIFEXITED(st)&&WEXITSTATUS(st)==2)denb++;}
    k++;
  }
  report(da,k,dena,rounds);
  if(b)report(db,k,denb,rounds);
  return 0;
}
