#!/usr/bin/env bash
# Installs the peer sandboxes `warden eval` can score, for a side-by-side run on this machine.
# Not run by CI (CI scores none, warden and bwrap; bootstrap installs bubblewrap).
#   srt   Anthropic's sandbox-runtime (npm), which needs ripgrep and socat
#   codex the Codex CLI (npm; bootstrap already installs the pinned version)
#   nono  nono-cli (cargo; a long build)
# fapolicyd is machine-wide (fanotify on every mount): score it only inside a VM, never here.
set -euo pipefail
need_apt=()
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
command -v rg >/dev/null || need_apt+=(ripgrep)
command -v socat >/dev/null || need_apt+=(socat)
if [ ${#need_apt[@]} -gt 0 ]; then apt-get install -y -q "${need_apt[@]}"; fi
command -v srt >/dev/null || npm install -g --no-fund --no-audit @anthropic-ai/sandbox-runtime
command -v codex >/dev/null || npm install -g --no-fund --no-audit @openai/codex
if [ "${WITH_NONO:-0}" = 1 ]; then command -v nono >/dev/null || cargo install nono-cli; fi
echo "ready: warden eval --against none,warden,bwrap,codex,srt${WITH_NONO:+,nono}"
