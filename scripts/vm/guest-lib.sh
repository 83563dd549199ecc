# Shared by the guest suites (sourced; run from the repository root, $1 = the test programs):
# the workspace, the `warden run` wrapper, the daemon start-up and the `expect` checker.
W=$PWD/target/x86_64-unknown-linux-gnu/debug/warden
# No terminal: warden would give the agent a pty (CRLF output).
exec < /dev/null
# Test programs live in the workspace: the sandbox reads nothing else outside system dirs.
ws=/tmp/ws; mkdir -p $ws/bin
for p in mmapexec memfdexec spawn nop forge; do cp $1/$p $ws/bin/; done
T=$ws/bin
cd $ws
fails=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
run() { $W run --exec-guard bpf --policy $ws/p.toml -- "$@"; }
# start_daemon [ARGS]: starts `warden daemon ARGS` (pid in DPID) and waits until it answers.
start_daemon() {
  $W daemon "$@" >> /tmp/daemon.out 2>&1 &
  DPID=$!
  for i in $(seq 600); do [ -S /run/warden/daemon.sock ] && $W daemon --status >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "daemon did not start:"; cat /tmp/daemon.out; exit 1
}
# expect DESC allow|deny COMMAND...: runs COMMAND inside `warden run` (BPF backend). A denial
# counts only when warden itself ran (no "warden: error") and the denied program did not.
expect() {
  desc=$1; want=$2; shift 2
  out=$(run "$@" 2>&1); rc=$?
  if [ $want = allow ] && [ $rc = 0 ]; then pass "$desc"
  elif [ $want = deny ] && [ $rc != 0 ] && ! echo "$out" | grep -q -e RAN-DENIED -e "warden: error"; then pass "$desc (denied: $(echo "$out" | grep -v INFO | tail -1 | cut -c1-100))"
  else fail "$desc: want $want, rc $rc: $(echo "$out" | tail -3)"; fi
}
echo "kernel $(uname -r); lsm $(cat /sys/kernel/security/lsm)"
