#!/usr/bin/env python3
"""Median time of each start-up phase of `warden run` (WARDEN_TIMING=1 marks), N runs.
Usage: scripts/bench-phases.py WARDEN_BINARY [runs] [-- extra run args]"""
import os, statistics, subprocess, sys, tempfile
w = os.path.abspath(sys.argv[1])
runs = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "--" else 20
extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
ws = tempfile.mkdtemp(prefix="warden-phases.")
env = dict(os.environ, WARDEN_TIMING="1")
deltas, totals = {}, []
walls = []
import time
for _ in range(runs):
    t0 = time.perf_counter()
    p = subprocess.run([w, "run", *extra, "--", "/bin/true"], cwd=ws, env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    walls.append((time.perf_counter() - t0) * 1000)
    marks = []
    for line in p.stderr.splitlines():
        if line.startswith("warden-timing:"):
            parts = line.split(None, 4)
            marks.append((float(parts[1]), parts[4]))
    marks.sort()
    prev = 0.0
    for t, name in marks:
        deltas.setdefault(name, []).append(t - prev)
        prev = t
    totals.append(prev)
print(f"runs {runs}; median wall {statistics.median(walls):.2f} ms, to the last mark {statistics.median(totals):.2f} ms")
for name, ds in deltas.items():
    m = statistics.median(ds)
    print(f"{m:8.2f} ms  {name}{'   <==' if m > 1.5 else ''}")
