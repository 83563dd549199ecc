#!/usr/bin/env bash
# Short fuzz runs of the hook input and the shell analysis (seed corpora in the repo).
set -euo pipefail
cd "$(dirname "$0")/../../crates/gate/fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
SECS=${WARDEN_FUZZ_SECS:-30}
for target in hook_input shell; do
  work=$(mktemp -d /tmp/warden-fuzz-$target.XXXXXX)
  cp corpus/$target/* "$work/"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$work" -- -max_total_time="$SECS" -max_len=8192 -rss_limit_mb=4096 2>&1 | tail -3
  rm -rf "$work"
done
