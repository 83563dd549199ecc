#!/usr/bin/env bash
# Installs what warden's build and test suite need on a fresh Debian 12 machine, when missing.
# Idempotent; safe to re-run. Needs root (or sudo) for apt.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang llvm libelf-dev zlib1g-dev libbpf-dev libseccomp-dev
  bpftool linux-libc-dev git curl ca-certificates python3 perl
  bubblewrap qemu-system-x86 busybox-static cpio xz-utils kmod bc util-linux
  nodejs npm sqlite3 btrfs-progs e2fsprogs
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere (nodesource); skip the Debian packages if the commands exist.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
clean=(); for p in "${missing[@]}"; do [ -n "$p" ] && clean+=("$p"); done
if [ ${#clean[@]} -gt 0 ]; then
  echo "bootstrap: installing ${clean[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${clean[@]}" >/dev/null
else
  echo "bootstrap: system packages present"
fi

# The real agent CLIs (Claude Code, Codex, Gemini CLI) at the versions pinned in
# scripts/versions.env, for the end-to-end tests (crates/cli/tests/*_e2e.rs).
# shellcheck source=versions.env
. "$(dirname "$0")/versions.env"
npm_root="$(npm root -g 2>/dev/null || true)"
installed_version() {
  [ -n "$npm_root" ] && [ -f "$npm_root/$1/package.json" ] &&
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$npm_root/$1/package.json" 2>/dev/null
}
want=()
for pv in "$CLAUDE_CODE_PACKAGE@$CLAUDE_CODE_VERSION" "$CODEX_PACKAGE@$CODEX_VERSION" \
          "$GEMINI_CLI_PACKAGE@$GEMINI_CLI_VERSION"; do
  pkg="${pv%@*}"; ver="${pv##*@}"
  [ "$(installed_version "$pkg" || true)" = "$ver" ] || want+=("$pv")
done
if [ ${#want[@]} -gt 0 ]; then
  echo "bootstrap: installing ${want[*]} (npm)"
  $SUDO npm install -g --silent --no-fund --no-audit "${want[@]}" >/dev/null
else
  echo "bootstrap: agent CLIs present (claude $CLAUDE_CODE_VERSION, codex $CODEX_VERSION, gemini $GEMINI_CLI_VERSION)"
fi

# The stock Debian 6.12 kernel the BPF LSM tests boot in QEMU (cached after the first run).
bash "$(dirname "$0")/vm/fetch-kernel.sh" >/dev/null

if ! command -v cargo >/dev/null; then
  echo "bootstrap: cargo not found; install Rust stable with rustup (https://rustup.rs)" >&2
  exit 1
fi

# What scripts/test.sh lints with: clippy and rustfmt, cargo-deny and cargo-machete at the
# versions in scripts/versions.env (crates.io), and the MSRV toolchain named by the workspace's
# rust-version (static.rust-lang.org). Each only when missing.
if command -v rustup >/dev/null; then
  for c in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
for tv in "cargo-deny:$CARGO_DENY_VERSION" "cargo-machete:$CARGO_MACHETE_VERSION"; do
  tool="${tv%%:*}"; ver="${tv##*:}"
  if ! "$tool" --version 2>/dev/null | grep -qw "$ver"; then
    echo "bootstrap: installing $tool $ver (cargo install)"
    cargo install --locked --quiet "$tool" --version "$ver"
  fi
done
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$(dirname "$0")/../Cargo.toml" | head -1)
if [ -n "$msrv" ] && command -v rustup >/dev/null \
   && ! rustup toolchain list | grep -q "^$msrv[.-]"; then
  echo "bootstrap: installing the MSRV toolchain $msrv (rustup, minimal profile + rustfmt, which libbpf-cargo runs)"
  rustup toolchain install "$msrv" --profile minimal --component rustfmt
fi
