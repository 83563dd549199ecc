#!/usr/bin/env bash
# Sandbox smoke tests with real agents: Claude Code from npm must start under
# `warden run --profile claude`, and `warden doctor` must report an enforceable machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=target/x86_64-unknown-linux-gnu/debug/warden
[ -x "$W" ] || cargo build -q --bin warden

if ! command -v claude >/dev/null 2>&1; then
  echo "installing @anthropic-ai/claude-code from npm"
  npm install -g --no-fund --no-audit @anthropic-ai/claude-code >/dev/null
fi

ws=$(mktemp -d /tmp/warden-smoke.XXXXXX)
trap 'rm -rf "$ws"' EXIT
out=$(cd "$ws" && "$OLDPWD/$W" run --profile claude -- claude --version 2>&1)
echo "claude under warden: $out"
case "$out" in *"Claude Code"*) ;; *) echo "FAIL: unexpected output"; exit 1;; esac

"$W" doctor >/dev/null || { "$W" doctor; echo "FAIL: warden doctor says the default policy cannot be enforced"; exit 1; }
echo "doctor: default policy enforceable"
