#!/usr/bin/env python3
"""Warm start (`warden run --warm`) vs a cold `warden run` vs bare `true`, interleaved, N
rounds, in a fresh workspace and runtime directory. Each warm run claims the spare the one
before it left (the runs are 300 ms apart so the spare is built); the first warm run of the
series is cold and left out. Prints medians, p90 and the added time over `true`.
Usage: scripts/bench-warm.py WARDEN_BINARY [rounds]"""
import os, shutil, signal, socket, statistics, struct, subprocess, sys, tempfile, time
w = os.path.abspath(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
root = tempfile.mkdtemp(prefix="warden-bench-warm.")
ws = os.path.join(root, "ws")
os.makedirs(ws)
# Spares live under /run only (a private runtime directory of this user there).
try:
    xdg = tempfile.mkdtemp(prefix="warden-bench-warm.", dir="/run")
except OSError:
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if not xdg.startswith("/run/"):
        sys.exit("bench-warm: no private runtime directory under /run")
    xdg = tempfile.mkdtemp(prefix="warden-bench-warm.", dir=xdg)
os.chmod(xdg, 0o700)
env = dict(os.environ, XDG_RUNTIME_DIR=xdg)
def run(args):
    t = time.perf_counter()
    subprocess.run(args, cwd=ws, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000
res = {"true": [], "cold": [], "warm": []}
run([w, "run", "-q", "--warm", "--", "/bin/true"])
for _ in range(n):
    time.sleep(0.3)
    res["true"].append(run(["/bin/true"]))
    res["cold"].append(run([w, "run", "-q", "--", "/bin/true"]))
    res["warm"].append(run([w, "run", "-q", "--warm", "--", "/bin/true"]))
base = statistics.median(res["true"])
for k, v in res.items():
    m = statistics.median(v)
    print(f"{k:5} median {m:6.2f} ms  p90 {sorted(v)[int(len(v) * 0.9)]:6.2f} ms  added {m - base:6.2f} ms")
print(f"warm/cold {statistics.median(res['warm']) / statistics.median(res['cold']):.2f}")
# The last spare (made once the last run reported): ended through its socket's peer, once
# it listens (our own child's child).
d = os.path.join(xdg, "warden-warm")
for _ in range(200):
    if os.path.isdir(d) and any(x.endswith(".sock") for x in os.listdir(d)):
        break
    time.sleep(0.05)
for name in os.listdir(d) if os.path.isdir(d) else []:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(os.path.join(d, name))
        pid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
        if pid > 1:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
time.sleep(0.2)
shutil.rmtree(root, ignore_errors=True)
shutil.rmtree(xdg, ignore_errors=True)
