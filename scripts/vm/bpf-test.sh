#!/usr/bin/env bash
# The BPF LSM exec guard's test suite, in a VM (this host's kernel refuses BPF LSM
# programs): builds warden and the test programs, indexes the directories the allowlist
# cases need (on the host, where hashing is fast; identities are content hashes, the same
# in the guest), boots Debian's stock 6.12 kernel (scripts/vm/run.sh --host-root: the suite
# needs the host's cc, curl and python3) and runs
# scripts/vm/bpf-guest.sh inside. Exit status: the suite's.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --bin warden
out=$PWD/target/vm-tests
rm -rf "$out" && mkdir -p "$out"
for p in mmapexec memfdexec spawn forge; do cc -O2 -o "$out/$p" "scripts/vm/progs/$p.c"; done
cc -O2 -static -nostdlib -o "$out/nop" scripts/vm/progs/nop.c
# Trust index for the allowlist cases: the shell, coreutils, the C toolchain and libraries.
target/x86_64-unknown-linux-gnu/debug/warden index --db "$out/index.db" /usr/bin /usr/lib/x86_64-linux-gnu /usr/lib/gcc /usr/libexec "$out" >/dev/null 2>&1
scripts/vm/run.sh --host-root --timeout "${WARDEN_VM_TIMEOUT:-900}" -- sh scripts/vm/bpf-guest.sh "$out"
# The daemon's no-IMA mode: it feeds identities itself.
scripts/vm/run.sh --host-root --timeout "${WARDEN_VM_TIMEOUT:-900}" -- sh scripts/vm/bpf-guest-noima.sh "$out"
