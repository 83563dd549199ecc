#!/usr/bin/env bash
# Short fuzz run of the policy parser (cargo-fuzz on stable via RUSTC_BOOTSTRAP; the seed
# corpus lives in crates/policy/fuzz/corpus). A crash fails the suite.
set -euo pipefail
cd "$(dirname "$0")/../../crates/policy/fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
SECS=${WARDEN_FUZZ_SECS:-30}
work=$(mktemp -d /tmp/warden-fuzz-policy.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp corpus/policy_parse/* "$work/"
RUSTC_BOOTSTRAP=1 cargo fuzz run policy_parse "$work" -- -max_total_time="$SECS" -max_len=4096 2>&1 | tail -5
