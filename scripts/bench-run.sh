#!/usr/bin/env bash
# Start-up cost of the sandbox: median wall time of `warden run -- true` against bare `true`
# and, when installed, bubblewrap with an equivalent policy, measured in the same script.
# Usage: scripts/bench-run.sh [runs]   (release build)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
cargo build -q --release --bin warden
ws=$(mktemp -d /tmp/warden-bench.XXXXXX)
bin=$(mktemp -d /tmp/warden-bench-bin.XXXXXX)
trap 'rm -rf "$ws" "$bin"' EXIT
# A fresh copy, as installed: the linker's output faults differently while it sits in the
# page cache as written (see bench-hook.sh).
cp target/release/warden "$bin/warden"; W=$bin/warden
cd "$ws"
python3 - "$RUNS" "$W" "$ws" <<'PY'
import os, shutil, statistics, subprocess, sys, time
runs, warden, ws = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def med(cmd):
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)
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
print(f"added by warden run: {added:.2f} ms (target <= 5 ms): {'OK' if added <= 5 else 'OVER'}")
PY
