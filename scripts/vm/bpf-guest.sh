# Runs inside the VM (as root, kernel with BPF LSM + IMA): the exec-identity corpus against
# the BPF LSM backend in enforce and audit mode, daemon death and restart, allowlist mode
# with transitive trust, modify-after-check, a 10,000-exec burst, unload refusals, and the
# exec-loop benchmark. Prints one line per case; exit 1 when any case fails.
. scripts/vm/guest-lib.sh
# SQLite wants a writable directory for the index.
cp $1/index.db /tmp/index.db
runv() { $W run -v --policy $ws/p.toml -- "$@"; }
start_daemon
$W doctor 2>&1 | grep -q "backend BPF LSM (in-kernel" && pass "doctor: BPF LSM backend in use" || fail "doctor: $($W doctor 2>&1 | grep -i 'backend')"
printf '[exec]\ndeny = ["curl"]\n' > p.toml
out=$(runv true 2>&1); echo "$out" | grep -q "exec guard: BPF LSM" && pass "warden run picks the BPF backend (auto)" || fail "warden run backend: $out"

# --- denylist, enforce ---
printf '[exec]\ndeny = ["curl"]\n' > p.toml
cp /usr/bin/curl $ws/c2; ln -f $ws/c2 $ws/c3 2>/dev/null || cp /usr/bin/curl $ws/c3
printf '#!%s\n' $ws/c2 > $ws/script.sh; chmod +x $ws/script.sh
printf '#!/bin/sh\necho script-ok\n' > $ws/ok.sh; chmod +x $ws/ok.sh
expect "allowed: /usr/bin/true"                 allow /usr/bin/true
expect "allowed: a shell pipeline"              allow sh -c 'ls / | wc -l >/dev/null && ./ok.sh'
expect "denied: curl by name"                   deny  sh -c '/usr/bin/curl --version && echo RAN-DENIED'
expect "denied: a copy of curl"                 deny  sh -c './c2 --version && echo RAN-DENIED'
expect "denied: a hard link of curl"            deny  sh -c './c3 --version && echo RAN-DENIED'
expect "denied: /proc/self/root path"           deny  sh -c '/proc/self/root/usr/bin/curl --version && echo RAN-DENIED'
expect "denied: ld.so ./copy"                   deny  sh -c '/lib64/ld-linux-x86-64.so.2 ./c2 --version && echo RAN-DENIED'
expect "denied: memfd exec"                     deny  sh -c "$T/memfdexec /usr/bin/true && echo RAN-DENIED"
expect "denied: #! script with a denied interpreter" deny sh -c './script.sh && echo RAN-DENIED'
expect "denied: mmap PROT_EXEC of the copy"     deny  sh -c "$T/mmapexec ./c2 && echo RAN-DENIED"
expect "allowed: mmap PROT_EXEC of libc"        allow $T/mmapexec /usr/lib/x86_64-linux-gnu/libc.so.6
expect "denied: mprotect +EXEC of the copy"     deny  sh -c "$T/mmapexec ./c2 mprotect && echo RAN-DENIED"
expect "allowed: mprotect +EXEC of libc (cached)" allow $T/mmapexec /usr/lib/x86_64-linux-gnu/libc.so.6 mprotect
expect "allowed: python3 runs"                  allow python3 -c 'pass'
# modify after check: an allowed file rewritten with denied content; also with its
# timestamps restored (touch -d), which cannot restore ctime.
cp /usr/bin/true $ws/t
expect "allowed: a copy of true"                allow $ws/t
cat /usr/bin/curl > $ws/t
expect "denied: the same file rewritten as curl" deny sh -c './t --version && echo RAN-DENIED'
cp /usr/bin/true $ws/t2; touch -d '2020-01-01' $ws/t2
expect "allowed: true (dated)"                  allow $ws/t2
cat /usr/bin/curl > $ws/t2; touch -d '2020-01-01' $ws/t2
expect "denied: rewritten, timestamps restored" deny sh -c './t2 --version && echo RAN-DENIED'
# A stamp forged through a shared writable mapping dirtied before the file was identified
# (progs/forge.c: content rewritten with curl's bytes, size/mtime/ctime unchanged). Session 1
# forges fg and runs it, and forges fg2; session 2 runs fg2 (nothing stale may carry over).
head -c -1 /usr/bin/curl > $ws/fg; printf '\001' >> $ws/fg; chmod +x $ws/fg; cp -p $ws/fg $ws/fg2
out=$(run sh -c "$T/forge ./fg /usr/bin/curl; ./fg --version; $T/forge ./fg2 /usr/bin/curl" 2>&1)
if [ "$(echo "$out" | grep -c STAMP-SAME)" = 2 ] && cmp -s $ws/fg /usr/bin/curl && cmp -s $ws/fg2 /usr/bin/curl && ! echo "$out" | grep -q -e libcurl -e "warden: error"; then pass "forged stamp (shared writable mapping): denied ($(echo "$out" | grep -e 'first exec' -e 'exec mapping' | sort -u | tr '\n' ' '))"; else fail "forged stamp: $(echo "$out" | tail -6)"; fi
out=$(run sh -c './fg2 --version; ./fg --version; /usr/bin/true && echo TRUE-OK' 2>&1)
if echo "$out" | grep -q TRUE-OK && ! echo "$out" | grep -q -e libcurl -e "warden: error"; then pass "forged stamp: denied in a later session too"; else fail "forged stamp, later session: $(echo "$out" | tail -4)"; fi
# Decisions reach the daemon's log as the shared event.
sleep 1
if grep -q '"layer":"exec"' /var/log/warden/daemon.jsonl && grep -q '"rule":"exec.deny:curl"' /var/log/warden/daemon.jsonl; then pass "decisions in the daemon log"; else fail "decisions in the daemon log: $(tail -2 /var/log/warden/daemon.jsonl)"; fi

# --- audit mode: runs, and is recorded as audit_deny ---
printf '[exec]\ndeny = ["curl"]\naction = "audit"\n' > p.toml
expect "audit: the copy runs"                   allow sh -c './c2 --version >/dev/null'
sleep 1
grep -q '"verdict":"audit_deny"' /var/log/warden/daemon.jsonl && pass "audit: recorded as audit_deny" || fail "audit: no audit_deny event"
printf '[exec]\ndeny = ["curl"]\n' > p.toml

# --- the daemon dies mid-run: enforcement holds; a restart re-attaches ---
rm -f ready
run sh -c 'touch ready; sleep 3; ./c2 --version >/dev/null 2>&1 && echo RAN-DENIED; /usr/bin/true && echo STILL-RUNS' > /tmp/mid.out 2>&1 &
RP=$!
# Kill only once the session's own command runs (the daemon took the session before its first
# exec; a populated cgroup alone can precede the daemon's reply).
for i in $(seq 300); do [ -e ready ] && break; sleep 0.1; done
kill -9 $DPID; wait $DPID 2>/dev/null
[ -e /sys/fs/bpf/warden/links/wg_bprm_check ] && pass "kill -9: pins remain" || fail "kill -9: pins gone"
wait $RP
if grep -q STILL-RUNS /tmp/mid.out && ! grep -q RAN-DENIED /tmp/mid.out; then pass "kill -9 mid-run: the session stays enforced"; else fail "kill -9 mid-run: $(cat /tmp/mid.out)"; fi
out=$($W run --exec-guard bpf --policy p.toml -- true 2>&1); rc=$?
[ $rc != 0 ] && pass "no daemon: --exec-guard bpf refuses ($(echo "$out" | tail -1 | cut -c1-80))" || fail "no daemon: bpf run started"
: > /tmp/daemon.out
start_daemon
grep -q "re-attached" /var/log/warden/daemon.jsonl /tmp/daemon.out && pass "restart: re-attached to the pinned programs" || fail "restart: did not re-attach: $(cat /tmp/daemon.out)"
expect "after restart: copy of curl denied"     deny sh -c './c2 --version && echo RAN-DENIED'
expect "after restart: true allowed"            allow /usr/bin/true

# --- a burst of 10,000 denied execs: every decision reported, or the loss counted ---
cp $T/nop $ws/nop-denied; printf 'x' >> $ws/nop-denied
printf '[exec]\ndeny = ["curl", "%s"]\n' $ws/nop-denied > p.toml
before=$(grep -c '"what":"exec nop-denied"' /var/log/warden/daemon.jsonl)
lost0=$($W daemon --status | sed -n 's/.* \([0-9]*\) events lost.*/\1/p')
run $T/spawn 10000 $ws/nop-denied > /tmp/burst.out 2>/dev/null
sleep 2
after=$(grep -c '"what":"exec nop-denied"' /var/log/warden/daemon.jsonl)
lost=$(( $($W daemon --status | sed -n 's/.* \([0-9]*\) events lost.*/\1/p') - lost0 ))
got=$((after - before))
failed=$(tail -1 /tmp/burst.out | cut -d' ' -f2)
if [ "$failed" = 10000 ] && { [ $got -ge 10000 ] || [ $((got + lost)) -ge 10000 ]; }; then pass "burst: 10000 execs denied, $got events logged, $lost lost (counted)"; else fail "burst: $failed denied, $got events, $lost lost"; fi
printf '[exec]\ndeny = ["curl"]\n' > p.toml

# --- allowlist mode with transitive trust ---
printf '[exec]\nmode = "allowlist"\nallow = ["index:/tmp/index.db"]\n' > p.toml
printf '#include <stdio.h>\nint main(void){puts("built-ok");return 0;}\n' > hello.c
expect "allowlist: an indexed program runs"     allow /usr/bin/true
expect "allowlist: cc output runs (transitive trust)" allow sh -c 'cc hello.c -o hello && ./hello | grep -q built-ok'
expect "allowlist: a cp of the built binary is denied" deny sh -c 'cp hello hello2 && ./hello2 && echo RAN-DENIED'
cp /usr/bin/curl $ws/unknown; printf '\0' >> $ws/unknown
expect "allowlist: an unknown binary is denied" deny sh -c './unknown --version && echo RAN-DENIED'
expect "allowlist: a built binary modified by another writer is denied" deny sh -c 'cc hello.c -o h3 && printf x >> h3 && ./h3 && echo RAN-DENIED'
printf '[exec]\ndeny = ["curl"]\n' > p.toml

# --- unloading ---
id nobody >/dev/null 2>&1 && U=nobody || U=65534
out=$(setpriv --reuid 65534 --regid 65534 --clear-groups $W daemon --unload 2>&1); rc=$?
[ $rc != 0 ] && [ -e /sys/fs/bpf/warden/links/wg_bprm_check ] && pass "unload as non-root refused ($(echo "$out" | tail -1 | cut -c1-70))" || fail "unload as non-root: rc $rc"
out=$(run $W daemon --unload 2>&1); rc=$?
[ $rc != 0 ] && [ -e /sys/fs/bpf/warden/links/wg_bprm_check ] && pass "unload from inside the sandbox refused" || fail "unload from inside the sandbox: rc $rc $out"

# --- benchmark: exec loop with the programs deciding (cache hits) vs the same sandbox
# without an exec guard; a static no-op (one exec, no loader) and the dynamic /usr/bin/true.
# Alternating rounds, the lowest median of each side (emulation is noisy).
bench() {
  on=""; off=""
  for r in 1 2 3; do
    a=$(run $T/spawn $1 $2 2>/dev/null | tail -1 | cut -d' ' -f1)
    b=$($W run --exec-guard off --policy p.toml -- $T/spawn $1 $2 2>/dev/null | tail -1 | cut -d' ' -f1)
    on="$on $a"; off="$off $b"
  done
  on=$(echo $on | tr ' ' '\n' | sort -n | head -1); off=$(echo $off | tr ' ' '\n' | sort -n | head -1)
  echo "BENCH spawn $2 x$1, 3 alternating rounds (TCG emulation), best median per spawn: BPF guard ${on} us, no guard ${off} us, ratio $(echo "scale=3; $on / $off" | bc)"
}
bench 1000 $T/nop
bench 60 /usr/bin/true

$W daemon --unload && [ ! -e /sys/fs/bpf/warden ] && pass "unload as root outside the sandbox" || fail "unload as root"
echo "--- denials other than curl content:"; grep "\"verdict\":\"deny\"" /var/log/warden/daemon.jsonl | grep -v "exec.deny:curl" | cut -c1-400 | head -12
echo "vm suite: $fails failed"
[ $fails = 0 ]
