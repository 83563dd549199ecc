#!/usr/bin/env bash
# Short fuzz runs of warden-proto: the frame decoder (the hook pipe's untrusted stream) and
# the request decoding of the session control socket and the daemon socket, and the SOCKS5
# handshake the proxy takes from the agent.
set -euo pipefail
cd "$(dirname "$0")/../../crates/proto/fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
SECS=${WARDEN_FUZZ_SECS:-30}
for target in frame_decoder control_decode socks5; do
  work=$(mktemp -d "/tmp/warden-fuzz-$target.XXXXXX")
  cp "corpus/$target"/* "$work/"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$work" -- -max_total_time="$SECS" -max_len=4096 -rss_limit_mb=4096 2>&1 | tail -3
  rm -rf "$work"
done
