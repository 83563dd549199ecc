# Runs inside the VM with the daemon in its no-IMA mode (`--userspace-hashing`: IMA cannot be
# switched off on this kernel, it is always appended to the LSM list): the BPF backend's
# userspace-fed identity map (fanotify exec-permission events + pre-hashed libraries). First execs must not
# fail spuriously; unhashed or modified content must not run. Exit 1 when any case fails.
. scripts/vm/guest-lib.sh
start_daemon --userspace-hashing
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
# A stamp forged through a shared writable mapping dirtied before the file was identified
# (progs/forge.c: content rewritten with curl's bytes, size/mtime/ctime unchanged). Session 1
# forges fg and runs it, and forges fg2; session 2 runs fg2 (nothing stale may carry over).
head -c -1 /usr/bin/curl > $ws/fg; printf '\001' >> $ws/fg; chmod +x $ws/fg; cp -p $ws/fg $ws/fg2
out=$(run sh -c "$T/forge ./fg /usr/bin/curl; ./fg --version; $T/forge ./fg2 /usr/bin/curl" 2>&1)
if [ "$(echo "$out" | grep -c STAMP-SAME)" = 2 ] && cmp -s $ws/fg /usr/bin/curl && cmp -s $ws/fg2 /usr/bin/curl && ! echo "$out" | grep -q -e libcurl -e "warden: error"; then pass "forged stamp (shared writable mapping): denied ($(echo "$out" | grep -e 'first exec' -e 'exec mapping' | sort -u | tr '\n' ' '))"; else fail "forged stamp: $(echo "$out" | tail -6)"; fi
out=$(run sh -c './fg2 --version; ./fg --version; /usr/bin/true && echo TRUE-OK' 2>&1)
if echo "$out" | grep -q TRUE-OK && ! echo "$out" | grep -q -e libcurl -e "warden: error"; then pass "forged stamp: denied in a later session too"; else fail "forged stamp, later session: $(echo "$out" | tail -4)"; fi
# The daemon dies while a session runs: what was hashed keeps its verdict (the copy of curl
# stays denied, true still runs) and new content can no longer be hashed, so it is denied.
rm -f go ready
run sh -c 'touch ready; while [ ! -e go ]; do sleep 0.1; done; ./c2 --version >/dev/null 2>&1 && echo RAN-DENIED; cp /usr/bin/true fresh && ./fresh && echo FRESH-RAN; /usr/bin/true && echo STILL-RUNS' > /tmp/mid.out 2>&1 &
RP=$!
# Kill only once the session's own command runs: the daemon took the session before its first exec.
for i in $(seq 300); do [ -e ready ] && break; sleep 0.1; done
kill -9 $DPID; wait $DPID 2>/dev/null; touch go; wait $RP
if grep -q STILL-RUNS /tmp/mid.out && ! grep -q -e RAN-DENIED -e FRESH-RAN /tmp/mid.out; then pass "daemon killed mid-run: hashed verdicts hold, unhashed content is denied"; else fail "daemon killed mid-run: $(cat /tmp/mid.out)"; fi
$W daemon --unload >/dev/null 2>&1
# Pure cgroup v2 (this kernel; pids by cgroup before 6.14): the agent's tree sits in one v2
# cgroup that carries both limits, and it is the one warden made for the session. A second
# v2 cgroup joined after the first takes a process out of it: the tree used to end in
# `warden-mem` alone, its pids cgroup (the fork-bomb limit and the exec guard's process
# list) empty. The agent was spawned into `<session>/agent` and warden's stage 1 and init
# into `<session>/init` (clone3 CLONE_INTO_CGROUP: no migration).
rm -f cg.txt go
$W run --best-effort --exec-guard seccomp --policy $ws/p.toml -- sh -c 'sed -n "s/^0:://p" /proc/self/cgroup > cg.txt; while [ ! -e go ]; do sleep 0.1; done' > /tmp/cg.out 2>&1 &
RP=$!
for i in $(seq 300); do [ -s cg.txt ] && break; sleep 0.1; done
cg=/sys/fs/cgroup$(cat cg.txt)
pmax=$(cat $cg/pids.max 2>&1); mmax=$(cat $cg/memory.max 2>&1); members=$(cat $cg/cgroup.procs 2>&1 | wc -l)
initm=$(cat $(dirname $cg)/init/cgroup.procs 2>/dev/null | wc -l)
touch go; wait $RP
case "$cg" in /sys/fs/cgroup/warden-pids/*/agent) in_ours=1 ;; *) in_ours=0 ;; esac
if [ $in_ours = 1 ] && [ "$pmax" -gt 0 ] 2>/dev/null && [ "$mmax" -gt 0 ] 2>/dev/null && [ "$members" -ge 1 ] && [ "$initm" -ge 2 ]; then pass "cgroup v2: one session cgroup with pids.max $pmax and memory.max $mmax ($cg; stage 1 and init beside it)"; else fail "cgroup v2: agent in $cg, pids.max '$pmax', memory.max '$mmax', members $members, in init $initm; $(tail -3 /tmp/cg.out)"; fi
echo "vm no-IMA suite: $fails failed"
[ $fails = 0 ]
