#!/usr/bin/env bash
# Short fuzz run of warden-proto's frame decoder (the hook pipe's untrusted stream).
set -euo pipefail
cd "$(dirname "$0")/../../crates/proto/fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
SECS=${WARDEN_FUZZ_SECS:-30}
work=$(mktemp -d /tmp/warden-fuzz-frame_decoder.XXXXXX)
cp corpus/frame_decoder/* "$work/"
RUSTC_BOOTSTRAP=1 cargo fuzz run frame_decoder "$work" -- -max_total_time="$SECS" -max_len=4096 -rss_limit_mb=4096 2>&1 | tail -3
rm -rf "$work"
