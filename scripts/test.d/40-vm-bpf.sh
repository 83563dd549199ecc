#!/usr/bin/env bash
# The BPF LSM exec guard's suite in a QEMU VM on Debian's stock 6.12 kernel (this host's
# kernel refuses BPF LSM programs). See scripts/vm/README.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
log=$(mktemp /tmp/warden-vm-log.XXXXXX)
scripts/vm/bpf-test.sh > "$log" 2>&1
rc=$?
if [ $rc = 0 ]; then
  grep -aE "^(PASS|BENCH|kernel)|suite|^vm:" "$log"
else
  cat "$log"
  echo "VM BPF suite failed (exit $rc)"
fi
rm -f "$log"
exit $rc
