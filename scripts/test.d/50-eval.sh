#!/usr/bin/env bash
# The open evasion benchmark in CI: `warden eval --against none,warden,bwrap`.
# Fails when the baseline (`none`) does not escape a case (such a case proves nothing and must
# be fixed), or when warden escapes (or errors on) a case listed in eval/held-by-warden.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=target/x86_64-unknown-linux-gnu/debug/warden
[ -x "$W" ] || cargo build -q --bin warden
command -v bwrap >/dev/null 2>&1 || echo "note: bwrap is not installed; its column is reported skipped"
out=$(mktemp -d /tmp/warden-eval-ci.XXXXXX)
trap 'rm -rf "$out"' EXIT
start=$(date +%s)
"$W" eval --against none,warden,bwrap --json --out "$out" >/dev/null
echo "warden eval: $(( $(date +%s) - start )) s"
python3 - "$out/eval.json" eval/held-by-warden.txt <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
held = [l.split("#")[0].strip() for l in open(sys.argv[2])]
held = [h for h in held if h]
obs = {(o["system"], o["case"]): o for o in report["observations"]}
ids = {c["id"] for c in report["cases"]}
bad = []
for c in sorted(ids):
    o = obs[("none", c)]
    if o["verdict"] not in ("escaped", "skipped"):
        bad.append(f"baseline `none` did not escape {c}: {o['verdict']} {o['detail']} {o['output_tail'][-300:]!r}")
for h in held:
    if h not in ids:
        bad.append(f"eval/held-by-warden.txt names {h}, which is not a case")
        continue
    o = obs[("warden", h)]
    if o["verdict"] == "skipped":
        print(f"warning: {h} skipped under warden here: {o['detail']}")
    elif o["verdict"] != "blocked":
        bad.append(f"warden no longer holds {h}: {o['verdict']} {o['detail']} {o['output_tail'][-300:]!r}")
for sysname in ("none", "warden", "bwrap"):
    t = {}
    for o in report["observations"]:
        if o["system"] == sysname:
            t[o["verdict"]] = t.get(o["verdict"], 0) + 1
    print(f"{sysname:>7}: " + ", ".join(f"{k} {v}" for k, v in sorted(t.items())))
if bad:
    print("FAIL:\n  " + "\n  ".join(bad))
    sys.exit(1)
print(f"ok: none escapes every case; warden holds all {len(held)} listed cases")
PY
