#!/usr/bin/env bash
# Fetches (once) a stock Debian 6.12 kernel package with `apt-get download` and unpacks it
# into $WARDEN_VM_CACHE (default /var/cache/warden-vm): vmlinuz, its config and the 9p
# modules the VM harness loads. Prints the kernel directory. Offline when cached.
set -euo pipefail
cache=${WARDEN_VM_CACHE:-/var/cache/warden-vm}
mkdir -p "$cache"
cd "$cache"
if [ -z "$(ls k/boot/vmlinuz-* 2>/dev/null)" ]; then
  pkg=$(apt-cache depends linux-image-6.12-amd64 2>/dev/null | awk '/Depends: linux-image-6.12/ {print $2; exit}')
  [ -n "$pkg" ] || { echo "fetch-kernel: no linux-image-6.12-amd64 in apt (run apt-get update)" >&2; exit 1; }
  rm -f ./*.deb
  apt-get download -q "$pkg" >/dev/null 2>&1 || apt-get download "$pkg"
  rm -rf k && mkdir k && dpkg-deb -x ./*.deb k
fi
echo "$cache/k"
