#!/usr/bin/env bash
# Runs one command as root inside Debian's stock 6.12 kernel under QEMU (TCG: this host has
# no KVM, and its own kernel refuses BPF LSM programs). See scripts/vm/README.md.
#
# Usage: scripts/vm/run.sh [--mem 2G] [--timeout SECS] [--append "kernel args"]
#                          [--add SRC[:DST]]... [--host-root] -- COMMAND [ARGS...]
#
#   --add SRC[:DST]  copy a file or directory into the guest at DST (default: SRC's absolute
#                    path), with the shared libraries and loader its ELF files need (ldd).
#   --host-root      instead of a self-contained initramfs, share the host's / read-only over
#                    virtio-9p (Debian's 9p modules are loaded from the initramfs) with private
#                    tmpfs on /tmp /run /root /var/tmp /var/log, and run COMMAND from the
#                    current directory: every host binary is there (cc, python3, curl...).
#
# The guest's console goes to stdout: COMMAND's output (stdout and stderr both) and kernel
# messages; harness lines (boot, lsm, timing) go to stderr. COMMAND's stdin is /dev/null.
# Exit status: COMMAND's; 124 on timeout; 125 when the guest reported none (boot failure,
# panic; a guest kernel crash before init is booted again, twice at most); 2 on bad usage.
# Environment: WARDEN_VM_CACHE (kernel cache, see fetch-kernel.sh), WARDEN_VM_COMPRESS
# (none or gzip: the initramfs; default none), WARDEN_VM_KEEP=1 (keep the work directory).
set -euo pipefail
export LC_ALL=C   # EPOCHREALTIME with a decimal point
usage() {
  awk '/^# Usage:/ {on=1} on && !/^#/ {exit} on {sub(/^# ?/, ""); print}' "$0" >&2
  exit 2
}
mem=2G; timeout=600; append=""; host_root=0; adds=()
while [ $# -gt 0 ]; do
  case "$1" in
    --mem) mem=${2:?}; shift 2;;
    --timeout) timeout=${2:?}; shift 2;;
    --append) append="$append ${2?}"; shift 2;;
    --add) adds+=("${2:?}"); shift 2;;
    --host-root) host_root=1; shift;;
    --) shift; break;;
    -h|--help) usage;;
    *) echo "run.sh: unknown option $1" >&2; usage;;
  esac
done
[ $# -gt 0 ] || usage
[[ $timeout =~ ^[0-9]+$ ]] || { echo "run.sh: --timeout wants seconds" >&2; exit 2; }
if [ $host_root = 1 ] && [ ${#adds[@]} -gt 0 ]; then
  echo "run.sh: --add is for the initramfs; with --host-root the host's files are all there" >&2
  exit 2
fi
t0=$EPOCHREALTIME
here=$(cd "$(dirname "$0")" && pwd)
kver=$("$here/fetch-kernel.sh")
kdir=${WARDEN_VM_CACHE:-/var/cache/warden-vm}/$kver

# lsm=: the kernel's default list (CONFIG_LSM), with bpf added when it lacks it. An lsm=
# given with --append replaces it (the kernel takes the last one).
lsm=$(sed -n 's/^CONFIG_LSM="\(.*\)"$/\1/p' "$kdir/config")
case ",$lsm," in *,bpf,*) ;; *) lsm="${lsm:+$lsm,}bpf";; esac
case " $append " in
  *" lsm="*) [[ " $append " =~ \ lsm=([^ ]*) ]] && case ",${BASH_REMATCH[1]}," in *,bpf,*) ;;
    *) echo "run.sh: warning: --append lsm=${BASH_REMATCH[1]} has no bpf: BPF LSM off" >&2;; esac;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/warden-vm.XXXXXX")
qpid=""
cleanup() {
  [ -n "$qpid" ] && kill -KILL "$qpid" 2>/dev/null
  if [ "${WARDEN_VM_KEEP:-0}" = 1 ]; then echo "vm: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
root=$work/root

# --- the initramfs -------------------------------------------------------------------------
# The host's top-level symlinks (merged /usr: /bin -> usr/bin, /lib64 -> usr/lib64, ...) are
# kept, so every path ldd reports lands where the loader looks for it.
mkdir -p "$root"
for e in /bin /sbin /lib /lib32 /lib64 /libx32; do
  if [ -L "$e" ]; then
    t=$(readlink "$e"); t=${t#/}
    mkdir -p "$root/$t"; ln -s "$t" "$root$e"
  elif [ -d "$e" ]; then
    mkdir -p "$root$e"
  fi
done
mkdir -p "$root"/{dev,proc,sys,tmp,run,root,etc,mnt,usr/bin,usr/sbin,var/tmp,.warden-vm/newroot}
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 700 "$root/root"
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3

bb=$(command -v busybox || true)
[ -n "$bb" ] || { echo "run.sh: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
cp -L "$bb" "$root/bin/busybox"
# Its applets as symlinks (perl: 270 links without 270 forks).
"$bb" --list-full | grep -v -e '^linuxrc$' -e '^sbin/init$' |
  (cd "$root" && perl -ne 'chomp; symlink("/bin/busybox", $_) unless -e $_ || -l $_')

# Minimal user and name databases: glibc programs look users and hosts up.
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nprotocols: files\nservices: files\n' \
  > "$root/etc/nsswitch.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
echo warden-vm > "$root/etc/hostname"

# --add: files and directories, then what their ELF files need.
elf_filter() { perl -ne 'chomp; open(my $f, "<", $_) or next; read($f, my $m, 4); print "$_\n" if $m eq "\x7fELF"'; }
is_elf() { [ -n "$(echo "$1" | elf_filter)" ]; }
elfs=()
for spec in ${adds[@]+"${adds[@]}"}; do
  src=${spec%%:*}; dst=${spec#*:}
  [ "$dst" = "$spec" ] && dst=$src
  src=$(realpath -s -m -- "$src"); dst=$(realpath -s -m -- "$dst")   # absolute, symlinks kept
  [ -e "$src" ] || { echo "run.sh: --add $spec: no $src" >&2; exit 2; }
  mkdir -p "$(dirname "$root$dst")"
  if [ -d "$src" ]; then
    mkdir -p "$root$dst"
    cp -a --remove-destination "$src/." "$root$dst/"
    while IFS= read -r f; do elfs+=("$f"); done < <(find "$src" -type f -print | elf_filter)
  else
    cp -L --remove-destination --preserve=mode,timestamps "$src" "$root$dst"
    is_elf "$src" && elfs+=("$src")
  fi
done
if [ ${#elfs[@]} -gt 0 ]; then
  # One ldd for all: "name => /path (addr)" and "/path/to/ld.so (addr)" lines.
  ldd_out=$(printf '%s\0' "${elfs[@]}" | xargs -0 ldd 2>/dev/null || true)
  missing=$(echo "$ldd_out" | awk '/=> not found/ {print $1}' | sort -u)
  [ -z "$missing" ] || echo "run.sh: warning: libraries not found on the host: $(echo $missing)" >&2
  while IFS= read -r lib; do
    [ -n "$lib" ] && [ -e "$lib" ] || continue
    [ -f "$root$lib" ] && [ ! -L "$root$lib" ] && continue   # an --add put it there
    mkdir -p "$(dirname "$root$lib")"
    cp -L --remove-destination "$lib" "$root$lib"
  done < <(echo "$ldd_out" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' | sort -u)
fi

# --host-root: the 9p modules (=m in Debian's kernel) and what they depend on, in load order.
modules=""
if [ $host_root = 1 ]; then
  mdir=$kdir/modules
  moddeps() {  # prints the dependencies of $1 (a path relative to $mdir), deepest first
    local d
    for d in $(sed -n "s|^$1: *||p" "$mdir/modules.dep"); do moddeps "$d"; echo "$d"; done
  }
  mkdir -p "$root/lib/modules"
  for m in kernel/fs/9p/9p.ko.xz kernel/net/9p/9pnet_virtio.ko.xz; do moddeps "$m"; echo "$m"; done |
    awk '!seen[$0]++' > "$work/modlist"
  while read -r m; do
    n=${m##*/}; n=${n%.ko*}
    case "$m" in *.xz) xz -dc "$mdir/$m";; *.zst) zstd -dcq "$mdir/$m";; *) cat "$mdir/$m";; esac \
      > "$root/lib/modules/$n.ko"
    modules="$modules $n"
  done < "$work/modlist"
fi

# The command, each argument single-quoted for sh.
{
  printf 'exec'
  for a in "$@"; do printf " '%s'" "${a//\'/\'\\\'\'}"; done
  printf '\n'
} > "$root/.warden-vm/cmd"
{
  printf 'MODE=%s\n' "$([ $host_root = 1 ] && echo host-root || echo initramfs)"
  printf "CWD='%s'\n" "${PWD//\'/\'\\\'\'}"
  printf 'MODULES="%s"\n' "$modules"
} > "$root/.warden-vm/conf"

# Stage 2, run by busybox sh in the final root ($BB is busybox there): the file systems, lo,
# the command, the exit marker, power off.
cat > "$root/.warden-vm/stage2" <<'EOF'
BB=$1 DIR=$2
. $DIR/conf
mnt() { $BB mkdir -p "$4" 2>/dev/null; $BB mount -t "$1" -o "$2" "$3" "$4" || echo "WARDEN-VM: mount $1 on $4 failed"; }
ismnt() { $BB grep -q " $1 " /proc/mounts; }
mnt proc nosuid,nodev,noexec proc /proc
mnt sysfs nosuid,nodev,noexec sysfs /sys
mnt devtmpfs nosuid,mode=755 devtmpfs /dev
mnt devpts nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mnt tmpfs nosuid,nodev,mode=1777 tmpfs /dev/shm
# /tmp and /run: tmpfs, unless --add put files there (the initramfs is in memory already).
for d in /tmp /run; do
  if ismnt $d; then :
  elif [ -n "$($BB ls -A $d 2>/dev/null)" ]; then [ $d = /tmp ] && $BB chmod 1777 /tmp
  else mnt tmpfs nosuid,nodev,mode=$([ $d = /tmp ] && echo 1777 || echo 755) tmpfs $d; fi
done
mnt securityfs nosuid,nodev,noexec securityfs /sys/kernel/security
mnt bpf nosuid,nodev,noexec,mode=700 bpf /sys/fs/bpf
mnt cgroup2 nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
$BB grep -qw debugfs /proc/filesystems && mnt debugfs nosuid,nodev,noexec debugfs /sys/kernel/debug
$BB grep -qw tracefs /proc/filesystems && mnt tracefs nosuid,nodev,noexec tracefs /sys/kernel/tracing
$BB ip link set lo up 2>/dev/null || $BB ifconfig lo 127.0.0.1 up
$BB hostname warden-vm
read -r up _ < /proc/uptime
echo "WARDEN-VM: kernel $($BB uname -r), $MODE, up ${up}s"
echo "WARDEN-VM: lsm=$($BB cat /sys/kernel/security/lsm)"
if [ "$MODE" = host-root ] || [ -d "$CWD" ]; then cd "$CWD" 2>/dev/null || cd /root; else cd /root; fi
$BB env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  USER=root LOGNAME=root TERM=dumb WARDEN_VM=1 /bin/sh $DIR/cmd < /dev/null
echo "WARDEN-VM-EXIT=$?"
$BB sync
# Power off only once the console has sent everything: stty sets its (unchanged) settings
# with TCSADRAIN, which waits for the UART to drain.
$BB stty "$($BB stty -g 2>/dev/null)" 2>/dev/null || $BB sleep 1
$BB poweroff -f
EOF

# /init (stage 1), in the initramfs.
cat > "$root/init" <<'EOF'
#!/bin/busybox sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
. /.warden-vm/conf
if [ "$MODE" = host-root ]; then
  for m in $MODULES; do insmod /lib/modules/$m.ko || echo "WARDEN-VM: insmod $m failed"; done
  mkdir -p /host
  if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /host; then
    echo "WARDEN-VM: 9p mount of the host root failed"; poweroff -f
  fi
  # The current directory stays visible at its path even under a directory the guest
  # replaces with tmpfs (a CI checkout under /tmp): bound aside first, moved back after.
  cwd=$CWD
  mkdir -p /mnt/cwd && mount -o bind "/host$cwd" /mnt/cwd 2>/dev/null || cwd=""
  for d in tmp:1777 run:755 root:700 var/tmp:1777 var/log:755 var/cache/warden-vm:755; do
    [ -d /host/${d%:*} ] && mount -t tmpfs -o mode=${d#*:} tmpfs /host/${d%:*}
  done
  if [ -n "$cwd" ] && [ ! -d "/host$cwd" ]; then mkdir -p "/host$cwd" && mount -o move /mnt/cwd "/host$cwd"; fi
  mkdir -p /host/tmp/.warden-vm
  cp /bin/busybox /.warden-vm/cmd /.warden-vm/conf /.warden-vm/stage2 /host/tmp/.warden-vm/
  # switch_root, not chroot: the kernel refuses new user namespaces to chrooted processes.
  exec switch_root /host /tmp/.warden-vm/busybox sh /tmp/.warden-vm/stage2 /tmp/.warden-vm/busybox /tmp/.warden-vm
fi
# Self-contained: make the root a mount of its own (the initramfs root cannot be
# pivot_root'ed away, so sandboxes inside would fail) by moving a bind mount of it onto / and
# chroot'ing into that; the bind mount is then the namespace's root, so nothing counts as
# chrooted. Nothing is copied.
if [ -z "$WARDEN_VM_STAGE" ]; then
  if mount -o bind / /.warden-vm/newroot && cd /.warden-vm/newroot && mount -o move . /; then
    WARDEN_VM_STAGE=2 exec chroot . /bin/busybox sh /.warden-vm/stage2 /bin/busybox /.warden-vm
  fi
  echo "WARDEN-VM: could not make / a mount; staying on the initramfs root"
  cd /
fi
exec /bin/busybox sh /.warden-vm/stage2 /bin/busybox /.warden-vm
EOF
chmod 755 "$root/init"

compress=${WARDEN_VM_COMPRESS:-none}
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
  case "$compress" in
    gzip) gzip -1 > "$work/initramfs";;
    none) cat > "$work/initramfs";;
    *) echo "run.sh: WARDEN_VM_COMPRESS=$compress: none or gzip" >&2; exit 2;;
  esac
size=$(stat -c %s "$work/initramfs")
t1=$EPOCHREALTIME

# --- boot ----------------------------------------------------------------------------------
qemu=(qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 2 -m "$mem"
  -nographic -no-reboot -nodefaults -serial stdio
  -kernel "$kdir/vmlinuz" -initrd "$work/initramfs"
  -append "console=ttyS0 quiet panic=-1 lsm=$lsm$append")
# qboot instead of SeaBIOS: less firmware to emulate, no BIOS banner on the console.
[ -f /usr/share/qemu/qboot.rom ] && qemu+=(-bios /usr/share/qemu/qboot.rom)
[ $host_root = 1 ] && qemu+=(-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap)
mkfifo "$work/console"

# The console, line by line: harness lines to stderr, the command's output to stdout, the
# exit marker parsed. The read timeout enforces --timeout (qemu is killed by its pid).
emit() {  # a console line, by phase
  local l=$1
  case "$l" in
    *WARDEN-VM-EXIT=*)
      # Output before the marker on the same line had no newline of its own.
      local pre=${l%WARDEN-VM-EXIT=*} st=${l##*WARDEN-VM-EXIT=}
      [ "$phase" = done ] && { [ ${#held[@]} -gt 0 ] && printf '%s\n' "${held[@]}"; held=(); }
      [ -n "$pre" ] && printf '%s\n' "$pre"
      [[ $st =~ ^[0-9]+$ ]] && status=$st
      phase=done; tcmd_end=$EPOCHREALTIME;;
    "WARDEN-VM: lsm="*)
      echo "$l" >&2
      [ "$phase" = boot ] && { phase=run; tboot=$EPOCHREALTIME; };;
    "WARDEN-VM: "*) echo "$l" >&2;;
    *)
      case "$phase" in
        boot) echo "$l" >&2
          case "$l" in *"Kernel panic"*|*"Oops:"*) boot_crash=1;; esac;;
        run) printf '%s\n' "$l";;
        done) held+=("$l");;   # stdout if another marker follows, else stderr
      esac;;
  esac
}
set +e   # from here on, statuses are looked at one by one
# A guest kernel that crashes before init ran (nothing of ours has run yet) is booted again,
# at most twice: under multi-threaded TCG this stock kernel now and then oopses on an int3
# left by its own boot-time code patching (a static key in sched_clock_cpu, seen in CI).
# A crash after init is the command's result and is never retried.
for attempt in 1 2 3; do
  "${qemu[@]}" < /dev/null > "$work/console" 2>&1 &
  qpid=$!
  deadline=$(( ${t1%.*} + timeout )); phase=boot; boot_crash=0; status=""; tboot=""; tcmd_end=""; timed_out=0; held=()
  exec 3< "$work/console"
  while :; do
    now=${EPOCHREALTIME%.*}
    left=$(( deadline - now ))
    if [ $left -le 0 ]; then rc=142; line=""
    else
      IFS= read -r -t "$left" line <&3 && rc=0 || rc=$?
    fi
    if [ $rc = 0 ]; then emit "${line%$'\r'}"; continue; fi
    [ -n "$line" ] && emit "${line%$'\r'}"
    if [ $rc -gt 128 ] && [ $timed_out = 0 ]; then
      timed_out=1; phase=done
      echo "vm: timed out after ${timeout}s: stopping qemu (pid $qpid)" >&2
      kill -TERM "$qpid" 2>/dev/null || true
      deadline=$(( now + 5 )); continue
    fi
    [ $rc -gt 128 ] && kill -KILL "$qpid" 2>/dev/null
    break
  done
  exec 3<&-
  wait "$qpid" 2>/dev/null && qrc=0 || qrc=$?
  qpid=""
  if [ "$phase" = boot ] && [ $boot_crash = 1 ] && [ $timed_out = 0 ] && [ $attempt -lt 3 ]; then
    echo "vm: the guest kernel crashed before init (attempt $attempt): booting again" >&2
    continue
  fi
  break
done
[ ${#held[@]} -gt 0 ] && printf '%s\n' "${held[@]}" >&2
t2=$EPOCHREALTIME

d() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
summary="vm: kernel $kver; initramfs $(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }') MiB ($compress), built in $(d "$t0" "$t1") s"
[ -n "$tboot" ] && summary="$summary; boot to init $(d "$t1" "$tboot") s; command $(d "$tboot" "${tcmd_end:-$t2}") s"
summary="$summary; total $(d "$t0" "$t2") s"
if [ $timed_out = 1 ]; then echo "$summary; timed out" >&2; exit 124; fi
if [ -z "$status" ]; then echo "$summary; no exit status from the guest (qemu exit $qrc)" >&2; exit 125; fi
echo "$summary; exit $status" >&2
exit "$status"
