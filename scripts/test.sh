#!/usr/bin/env bash
# The whole test suite, as CI runs it. Usage: scripts/test.sh
# Installs missing system packages, builds, runs unit + integration tests (real sandboxed
# processes), the gate corpus and fixtures, short fuzz runs, the real Claude Code end-to-end
# test, and the BPF LSM tests inside a QEMU VM.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

step "bootstrap"
bash scripts/bootstrap.sh

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check || { echo "FAIL: run cargo fmt --all"; exit 1; }

step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "dependencies: licenses, bans, sources (cargo deny; deny.toml)"
cargo deny --locked check --hide-inclusion-graph licenses bans sources
# The RustSec advisory database is a GitHub repository, which CI does not depend on: checked
# only against a copy already on the machine (cargo deny fetch, where GitHub is reachable).
if compgen -G "$HOME/.cargo/advisory-dbs/advisory-db-*/" >/dev/null; then
  cargo deny --frozen check advisories
else
  echo "advisories: skipped (no local RustSec database in ~/.cargo/advisory-dbs; see README)"
fi

step "unused dependencies (cargo machete)"
cargo machete

msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
step "minimum supported Rust ($msrv: cargo check)"
cargo "+$msrv" check --workspace --locked

step "the README's first command, as written, in the repository root"
# README: ./scripts/bootstrap.sh && cargo run --release -- run -- bash
# (bootstrap ran above; the shell reads its command from stdin instead of a terminal)
out=$(echo 'echo "warden-readme-ok $(id -u)"; ls -d "$PWD" >/dev/null && echo ws-visible' \
  | cargo run --release --locked -- run -- bash 2>&1) || { echo "$out"; echo "FAIL: README command"; exit 1; }
echo "$out" | tail -5
grep -q '^warden-readme-ok' <<<"$out" && grep -q '^ws-visible' <<<"$out" \
  || { echo "FAIL: README command printed no marker"; exit 1; }

step "build"
cargo build --workspace --all-targets --locked

step "unit and integration tests"
cargo test --workspace --locked -- --test-threads=2

# Further suites register themselves in scripts/test.d/*.sh (sourced in order).
for f in scripts/test.d/*.sh; do
  [ -e "$f" ] || continue
  step "$(basename "$f")"
  bash "$f"
done

step "start-up phases (timing never fails the suite)"
python3 scripts/bench-phases.py target/x86_64-unknown-linux-gnu/release/warden 10 || true
python3 scripts/bench-warm.py target/x86_64-unknown-linux-gnu/release/warden 8 || true

step "all tests passed"
