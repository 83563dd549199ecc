# Runs inside the VM with the daemon in its no-IMA mode (`--userspace-hashing`: IMA cannot be
# switched off on this kernel, it is always appended to the LSM list): the BPF backend's
# userspace-fed identity map (fanotify exec-permission events + pre-hashed libraries). First execs must not
# fail spuriously; unhashed or modified content must not run. Exit 1 when any case fails.
# Run from the repository root (scripts/vm/bpf-test.sh).
W=$PWD/target/debug/warden
exec < /dev/null
ws=/tmp/ws; mkdir -p $ws/bin; cp $1/mmapexec $1/memfdexec $ws/bin/; T=$ws/bin; cd $ws
fails=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
run() { $W run --exec-guard bpf --policy $ws/p.toml -- "$@"; }
expect() {
  desc=$1; want=$2; shift 2
  out=$(run "$@" 2>&1); rc=$?
  if [ $want = allow ] && [ $rc = 0 ]; then pass "$desc"
  elif [ $want = deny ] && [ $rc != 0 ] && ! echo "$out" | grep -q -e RAN-DENIED -e "warden: error"; then pass "$desc (denied: $(echo "$out" | grep -v INFO | tail -1 | cut -c1-90))"
  else fail "$desc: want $want, rc $rc: $(echo "$out" | tail -3)"; fi
}
echo "kernel $(uname -r); lsm $(cat /sys/kernel/security/lsm)"
$W daemon --userspace-hashing > /tmp/daemon.out 2>&1 &
for i in $(seq 600); do [ -S /run/warden/daemon.sock ] && $W daemon --status >/dev/null 2>&1 && break; sleep 0.1; done
grep -q "no IMA on this kernel" /tmp/daemon.out && pass "daemon: userspace-fed identities ($(grep -o 'fanotify on.*ahead' /tmp/daemon.out))" || fail "daemon: $(cat /tmp/daemon.out)"
printf '[exec]\ndeny = ["curl"]\n' > p.toml
cp /usr/bin/curl c2
printf '#include <stdio.h>\nint main(void){puts("built-ok");return 0;}\n' > hello.c
expect "first exec of true is not refused"       allow /usr/bin/true
expect "a shell pipeline"                        allow sh -c 'ls / | wc -l >/dev/null'
expect "python3 (interpreter + its libraries)"   allow python3 -c 'import json'
expect "fresh cc output runs on first exec"      allow sh -c 'cc hello.c -o hello && ./hello | grep -q built-ok'
expect "fresh cc output in the private /tmp"     allow sh -c 'cc hello.c -o /tmp/h && /tmp/h | grep -q built-ok'
expect "curl by name denied"                     deny  sh -c '/usr/bin/curl --version && echo RAN-DENIED'
expect "a copy of curl denied"                   deny  sh -c './c2 --version && echo RAN-DENIED'
expect "ld.so ./copy denied"                     deny  sh -c '/lib64/ld-linux-x86-64.so.2 ./c2 --version && echo RAN-DENIED'
expect "memfd exec denied"                       deny  sh -c "$T/memfdexec /usr/bin/true && echo RAN-DENIED"
expect "mprotect +EXEC of libc allowed"          allow $T/mmapexec /usr/lib/x86_64-linux-gnu/libc.so.6 mprotect
cp /usr/bin/true t
expect "a copy of true runs"                     allow ./t
cat /usr/bin/curl > t
expect "rewritten as curl: denied"               deny  sh -c './t --version && echo RAN-DENIED'
kill -9 %1 2>/dev/null; sleep 0.5
expect "daemon dead: the denied copy stays denied" deny sh -c './c2 --version && echo RAN-DENIED'
$W daemon --unload >/dev/null 2>&1
echo "vm no-IMA suite: $fails failed"
[ $fails = 0 ]
