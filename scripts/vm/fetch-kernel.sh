#!/usr/bin/env bash
# Fetches Debian's stock 6.12 kernel for the VM harness (scripts/vm/run.sh) and prints its
# version (e.g. 6.12.117+deb12-amd64) on stdout.
#
# The newest linux-image-6.12.*-amd64 that apt knows (the ABI package the meta package
# linux-image-6.12-amd64 depends on: the signed image, which carries /boot/vmlinuz-*; not rt,
# not cloud) is fetched with `apt-get download` (nothing is installed) into
# ${WARDEN_VM_CACHE:-/var/cache/warden-vm} and unpacked with `dpkg-deb -x` into
# $cache/<version>/, which then holds:
#   vmlinuz -> boot/vmlinuz-<version>   config -> boot/config-<version>
#   modules -> lib/modules/<version>    (the whole modules tree, with modules.dep)
# When that directory is complete it is reused without touching the network: the check is a
# local apt-cache look-up. Without apt lists (no `apt-get update` yet) the newest cached
# kernel is used, or the lists are updated once when nothing is cached.
#
# Environment: WARDEN_VM_CACHE (cache directory), WARDEN_VM_KERNEL_PKG (a package name to use
# instead of the newest, e.g. linux-image-6.12.115+deb12-amd64).
set -euo pipefail
cache=${WARDEN_VM_CACHE:-/var/cache/warden-vm}
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9   # one fetch at a time; concurrent callers wait, then find it cached

log() { echo "fetch-kernel: $*" >&2; }

# Kernels already unpacked, newest first.
cached() {
  local d
  for d in "$cache"/6.12.*-amd64; do [ -f "$d/.complete" ] && echo "${d##*/}"; done | sort -rV
}

# The newest non-rt, non-cloud 6.12 image package apt has a candidate for.
newest_pkg_uncached() {
  local p
  p=$(apt-cache depends linux-image-6.12-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-6\.12\.[0-9]*+deb[0-9]*-amd64\)$/\1/p' | head -1)
  if [ -z "$p" ]; then
    # No meta package: the newest ABI package by name that apt can download.
    for p in $(apt-cache pkgnames linux-image-6.12. 2>/dev/null |
        grep -E '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64$' | sort -rV); do
      apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: (none)' || break
      p=""
    done
  fi
  echo "$p"
}
# apt-cache parses every list on each call here (~0.7 s: no pkgcache.bin), so the answer is
# kept, keyed on the lists' names, sizes and times: same lists, same answer, no apt call.
newest_pkg() {
  local key p
  key=$(stat -c '%n %s %Y' /var/lib/apt/lists/*_Packages* 2>/dev/null | md5sum | cut -d' ' -f1)
  if [ -f "$cache/.newest" ] && [ "$(sed -n 1p "$cache/.newest")" = "$key" ]; then
    sed -n 2p "$cache/.newest"; return 0
  fi
  p=$(newest_pkg_uncached)
  printf '%s\n%s\n' "$key" "$p" > "$cache/.newest"
  echo "$p"
}

pkg=${WARDEN_VM_KERNEL_PKG:-$(newest_pkg)}
if [ -z "$pkg" ]; then
  have=$(cached | head -1)
  if [ -n "$have" ]; then echo "$have"; exit 0; fi
  log "apt knows no linux-image-6.12-amd64: running apt-get update"
  apt-get update -qq >&2
  pkg=$(newest_pkg_uncached)
  [ -n "$pkg" ] || { log "no linux-image-6.12.*-amd64 package in apt's sources"; exit 1; }
fi

# The package name is linux-image-<version>[-unsigned]: its kernel version.
kver=${pkg#linux-image-}; kver=${kver%-unsigned}
dir=$cache/$kver
if [ -f "$dir/.complete" ]; then
  # (Caches unpacked before modules.dep was generated here.)
  [ -f "$dir/modules/modules.dep" ] || depmod -b "$dir" "$kver"
  echo "$kver"; exit 0
fi

# Reuse a .deb already in the cache (any version of this package), else download it.
deb=$(ls -t "$cache/${pkg}_"*_amd64.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  log "downloading $pkg"
  (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2)
  deb=$(ls -t "$cache/${pkg}_"*_amd64.deb | head -1)
fi
tmp=$(mktemp -d "$cache/.unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
if [ ! -f "$tmp/boot/vmlinuz-$kver" ]; then
  # A signed-template or meta package slipped through: try the unsigned image instead.
  log "$deb has no boot/vmlinuz-$kver"
  if [ "$pkg" = "linux-image-$kver" ] && [ -z "${WARDEN_VM_KERNEL_PKG:-}" ]; then
    rm -rf "$tmp"
    WARDEN_VM_KERNEL_PKG=linux-image-$kver-unsigned exec "$0"
  fi
  exit 1
fi
# modules.dep & co. (depmod runs at install time, which this is not), for modprobe -d.
depmod -b "$tmp" "$kver"
ln -s "boot/vmlinuz-$kver" "$tmp/vmlinuz"
ln -s "boot/config-$kver" "$tmp/config"
ln -s "lib/modules/$kver" "$tmp/modules"
touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
log "unpacked $pkg into $dir"
echo "$kver"
