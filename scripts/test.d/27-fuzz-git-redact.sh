#!/usr/bin/env bash
# Short fuzz run of the git configuration filter that hides credentials (cargo-fuzz on stable
# via RUSTC_BOOTSTRAP; the seed corpus lives in crates/sandbox/fuzz/corpus). A crash fails
# the suite.
set -euo pipefail
cd "$(dirname "$0")/../../crates/sandbox/fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
SECS=${WARDEN_FUZZ_SECS:-30}
work=$(mktemp -d /tmp/warden-fuzz-git_redact.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp corpus/git_redact/* "$work/"
RUSTC_BOOTSTRAP=1 cargo fuzz run git_redact "$work" -- -max_total_time="$SECS" -max_len=8192 2>&1 | tail -5
