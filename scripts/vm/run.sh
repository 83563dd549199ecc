#!/usr/bin/env bash
# Boots the stock Debian 6.12 kernel under QEMU (TCG: this host has no KVM and its own
# kernel refuses BPF LSM programs) and runs one command as root inside, in a chroot of the
# host's root file system shared read-only over 9p (virtio), with private tmpfs for /tmp,
# /run, /root and /var/{tmp,log}, and fresh proc, sysfs, devtmpfs, bpffs, cgroup2 and
# securityfs. The initramfs holds only busybox and the 9p modules, so it builds in well under
# a second and the guest uses the host's binaries (warden, cc, the test programs) in place.
#
# Usage: scripts/vm/run.sh [--mem 2G] [--timeout SECS] [--append ARGS] -- COMMAND [ARGS...]
# Exit status: the command's; 124 on timeout; 125 when the guest did not report one.
set -euo pipefail
mem=2G; timeout=600; append=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mem) mem=$2; shift 2;;
    --timeout) timeout=$2; shift 2;;
    --append) append=$2; shift 2;;
    --) shift; break;;
    *) echo "run.sh: unknown option $1" >&2; exit 2;;
  esac
done
[ $# -gt 0 ] || { echo "usage: run.sh [--mem M] [--timeout S] [--append ARGS] -- COMMAND..." >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
kdir=$("$here/fetch-kernel.sh")
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -1)
kver=${vmlinuz##*/vmlinuz-}
config="$kdir/boot/config-$kver"
# Always boot with bpf in the LSM list (added when the kernel's default lacks it).
lsm=$(sed -n 's/^CONFIG_LSM="\(.*\)"/\1/p' "$config")
case ",$lsm," in *,bpf,*) ;; *) lsm="$lsm,bpf";; esac
work=$(mktemp -d /tmp/warden-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/initramfs"
mkdir -p "$root"/{bin,dev,proc,sys,host,mnt,lib/modules}
cp /bin/busybox "$root/bin/busybox"
for m in fs/netfs/netfs net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p; do
  xz -dc "$kdir/lib/modules/$kver/kernel/$m.ko.xz" > "$root/lib/modules/${m##*/}.ko"
done
printf '%s' "$PWD" > "$root/cwd"
# The command, quoted, run from the current directory.
{
  printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
  printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$root/cmd"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in netfs 9pnet 9pnet_virtio 9p; do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /host || { echo "WARDEN-VM: 9p mount failed"; poweroff -f; }
# The current directory stays visible at its path even when it lives under a directory the
# guest replaces with tmpfs (a CI checkout under /tmp): bind it aside first, move it back after.
cwd=$(cat /cwd)
mkdir -p /mnt/cwd && mount --bind "/host$cwd" /mnt/cwd 2>/dev/null || cwd=""
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /dev/pts; mount -t devpts devpts /host/dev/pts 2>/dev/null
mkdir -p /host/dev/shm 2>/dev/null
for d in tmp run root var/tmp var/log var/cache/warden-vm dev/shm; do mount -t tmpfs tmpfs /host/$d 2>/dev/null; done
chmod 1777 /host/tmp /host/var/tmp /host/dev/shm
if [ -n "$cwd" ] && [ ! -d "/host$cwd" ]; then mkdir -p "/host$cwd" && mount --move /mnt/cwd "/host$cwd"; fi
mount -t bpf bpf /host/sys/fs/bpf
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup
mount -t securityfs securityfs /host/sys/kernel/security
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null
cp /cmd /host/tmp/.warden-vm-cmd
mkdir -p /host/tmp/.vm && cp /bin/busybox /host/tmp/.vm/busybox
ip link set lo up 2>/dev/null || ifconfig lo up
echo "WARDEN-VM: kernel $(uname -r); lsm $(cat /host/sys/kernel/security/lsm)"
# switch_root, not chroot: the kernel refuses new user namespaces to a chrooted process.
cat > /host/tmp/.warden-vm-init <<'EOI'
#!/tmp/.vm/busybox sh
/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root TERM=dumb WARDEN_VM=1 /bin/sh /tmp/.warden-vm-cmd
echo "WARDEN-VM-EXIT=$?"
sync
/tmp/.vm/busybox poweroff -f
EOI
chmod +x /host/tmp/.warden-vm-init
exec switch_root /host /tmp/.warden-vm-init
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) > "$work/initramfs.cpio"
start=$(date +%s.%N)
set +e
timeout --foreground -k 5 "$timeout" qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 2 -m "$mem" \
  -nographic -no-reboot -nodefaults -serial stdio \
  -kernel "$vmlinuz" -initrd "$work/initramfs.cpio" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 lsm=$lsm $append" | tee "$work/console" | grep -v '^WARDEN-VM-EXIT='
qrc=${PIPESTATUS[0]}
set -e
echo "vm: kernel $kver, $(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)") s boot + run" >&2
[ "$qrc" = 124 ] && { echo "vm: timed out after ${timeout}s" >&2; exit 124; }
rc=$(sed -n 's/^WARDEN-VM-EXIT=\([0-9]*\).*/\1/p' "$work/console" | tail -1)
[ -n "$rc" ] || { echo "vm: the guest reported no exit status" >&2; exit 125; }
exit "$rc"
