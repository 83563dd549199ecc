#!/usr/bin/env bash
# Start-up cost of the sandbox: median wall time of `warden run -- true` against bare `true`
# and, when installed, bubblewrap with an equivalent policy, measured in the same script.
# Usage: scripts/bench-run.sh [runs]   (release build)
#        WARDEN_BENCH_BASELINE=/path/to/other/warden scripts/bench-run.sh  (also measures that
#        binary, interleaved run by run with this build, and prints the ratio)
#        WARDEN_BENCH_REPO=/path/to/a/repository (also measures starts with that directory as
#        the workspace: the workspace walks, which an empty directory hides, scale with it)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
# WARDEN_BENCH_BIN=/path/to/warden measures that binary instead of this tree's release build.
if [ -z "${WARDEN_BENCH_BIN:-}" ]; then cargo build -q --release --bin warden; fi
ws=$(mktemp -d /tmp/warden-bench.XXXXXX)
bin=$(mktemp -d /tmp/warden-bench-bin.XXXXXX)
trap 'rm -rf "$ws" "$bin"' EXIT
# A fresh copy, as installed: the linker's output faults differently while it sits in the
# page cache as written (see bench-hook.sh).
cp "${WARDEN_BENCH_BIN:-target/x86_64-unknown-linux-gnu/release/warden}" "$bin/warden"; W=$bin/warden
B=""
if [ -n "${WARDEN_BENCH_BASELINE:-}" ]; then
  cp "$WARDEN_BENCH_BASELINE" "$bin/warden-baseline"; B=$bin/warden-baseline
fi
cd "$ws"
# Time to the command's first instruction: a program that prints CLOCK_MONOTONIC first
# thing in main (the same clock inside the sandbox: no time namespace), against the moment
# before the spawn. The rest of the total is the session's end.
printf '#include <stdio.h>\n#include <time.h>\nint main(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);printf("%%lld\\n",(long long)t.tv_sec*1000000000LL+t.tv_nsec);return 0;}\n' > stamp.c
cc -O2 stamp.c -o stamp 2>/dev/null || rm -f stamp
python3 - "$RUNS" "$W" "$ws" "$B" "${WARDEN_BENCH_REPO:-}" <<'PY'
import os, shutil, statistics, subprocess, sys, time
runs, warden, ws, baseline, repo = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
def once(cmd, env=None):
    t = time.perf_counter()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True, env=env)
    return (time.perf_counter() - t) * 1000
def med(cmd):
    return statistics.median(once(cmd) for _ in range(runs))
def first(cmd):
    t = time.monotonic_ns()
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=True).stdout
    return (int(out.split()[-1]) - t) / 1e6
if baseline:
    # Run by run, alternating which goes first: the same load for both binaries. Each has
    # a fresh HOME of its own (its own audit store and hash cache, whose formats may differ
    # between builds), warmed by one unmeasured run.
    envs = {}
    for w, name in ((warden, "home"), (baseline, "home-baseline")):
        h = os.path.join(os.path.dirname(warden), name)
        os.makedirs(h, exist_ok=True)
        envs[w] = dict(os.environ, HOME=h)
        once([w, "run", "--", "/bin/true"], envs[w])
    a, b = [], []
    for i in range(runs):
        pair = [(a, warden), (b, baseline)]
        for ts, w in (pair if i % 2 == 0 else pair[::-1]):
            ts.append(once([w, "run", "--", "/bin/true"], envs[w]))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"A/B, {runs} runs each, interleaved: this build {ma:.2f} ms, baseline {mb:.2f} ms, ratio {ma / mb:.2f}")
# Starts as a person makes them: 100 ms apart. Back to back, each session's cgroup moves
# fall within the RCU grace period of the previous session's, which then costs nothing;
# after a pause a move through `cgroup.procs` waits for a whole one (5-38 ms here). The
# back-to-back figures above hide that; these do not.
spaced = min(runs, 40)
def spaced_med(w, env=None):
    ts = []
    for _ in range(spaced):
        time.sleep(0.1)
        ts.append(once([w, "run", "--", "/bin/true"], env))
    return statistics.median(ts)
if baseline:
    sa, sb = [], []
    for i in range(spaced):
        pair = [(sa, warden), (sb, baseline)]
        for ts, w in (pair if i % 2 == 0 else pair[::-1]):
            time.sleep(0.1)
            ts.append(once([w, "run", "--", "/bin/true"], envs[w]))
    ma, mb = statistics.median(sa), statistics.median(sb)
    print(f"A/B spaced 100 ms apart, {spaced} runs each: this build {ma:.2f} ms, baseline {mb:.2f} ms, ratio {ma / mb:.2f}")
else:
    print(f"warden run -- true, spaced 100 ms apart: median {spaced_med(warden):.2f} ms ({spaced} runs)")
if repo:
    # A real repository as the workspace, spaced 100 ms apart. The first instruction is
    # python's (its own start-up, ~15 ms, is in both figures alike): the bench's stamp
    # program lives in a /tmp the sandbox hides.
    n = min(runs, 20)
    py = ["python3", "-c", "import time; print(time.monotonic_ns())"]
    files = sum(len(f) + len(d) for _, d, f in os.walk(repo))
    def in_repo(w, env):
        time.sleep(0.1)
        t = time.monotonic_ns()
        out = subprocess.run([w, "run", "--"] + py, cwd=repo, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, check=True, env=env).stdout
        return (int(out.split()[-1]) - t) / 1e6, (time.monotonic_ns() - t) / 1e6
    ws_ = [warden] + ([baseline] if baseline else [])
    env_of = envs if baseline else {warden: None}
    got = {w: [] for w in ws_}
    for i in range(n):
        for w in (ws_ if i % 2 == 0 else ws_[::-1]):
            got[w].append(in_repo(w, env_of[w]))
    def show(name, w):
        f = statistics.median(x[0] for x in got[w]); t = statistics.median(x[1] for x in got[w])
        print(f"  {name:<11} first instruction {f:7.2f} ms, total {t:7.2f} ms")
        return f, t
    print(f"in {repo} ({files} entries), python3 as the command, {n} runs each, spaced:")
    fa, ta = show("this build", warden)
    if baseline:
        fb, tb = show("baseline", baseline)
        print(f"  ratio: first instruction {fa / fb:.2f}, total {ta / tb:.2f}")
cases = [("bare true", ["/bin/true"]), ("warden run -- true", [warden, "run", "--", "/bin/true"])]
bw = shutil.which("bwrap")
if bw:
    cases.append(("bwrap (equivalent)", [
        bw, "--unshare-all", "--die-with-parent",
        "--new-session", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc", "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/tmp", "--tmpfs", "/run", "--bind", ws, ws, "--chdir", ws, "/bin/true"]))
res = {name: med(cmd) for name, cmd in cases}
base = res["bare true"]
print(f"runs per case: {runs}")
for name, m in res.items():
    print(f"{name:<22} median {m:7.2f} ms   x{m / base:5.1f} of bare   +{m - base:6.2f} ms")
if "bwrap (equivalent)" in res:
    print(f"warden / bwrap ratio: {res['warden run -- true'] / res['bwrap (equivalent)']:.2f}")
added = res["warden run -- true"] - base
print(f"added by warden run: {added:.2f} ms (target <= 3 ms): {'OK' if added <= 3 else 'OVER'}")
stamp = os.path.join(ws, "stamp")
if os.path.exists(stamp):
    print("time to the command's first instruction (median; the rest of the total is the end):")
    firsts = {}
    for name, cmd in cases:
        c = cmd[:-1] + [stamp]
        firsts[name] = statistics.median(first(c) for _ in range(runs))
    b = firsts["bare true"]
    for name, m in firsts.items():
        print(f"  {name:<20} {m:7.2f} ms   +{m - b:6.2f} ms")
PY
