//! The sandbox's seccomp filter (default allow, deny listed). Built with libseccomp, which
//! also kills every syscall made through a foreign ABI (i386 `int 0x80`, x32), so the deny
//! list cannot be sidestepped by switching architecture.
//!
//! Denied (EPERM unless noted):
//! - `ptrace`, `process_vm_readv`, `process_vm_writev`;
//! - `io_uring_setup/enter/register` (ENOSYS, so libraries fall back to plain syscalls);
//! - `bpf`, `perf_event_open`, `userfaultfd`;
//! - `init_module`, `finit_module`, `delete_module`, `kexec_load`, `kexec_file_load`;
//! - the mount family: `mount`, `umount2`, `pivot_root`, `move_mount`, `open_tree`,
//!   `fsopen`, `fsconfig`, `fsmount`, `fspick`, `mount_setattr`, and `chroot`;
//! - new namespaces: `unshare` and `clone` with any `CLONE_NEW*` flag, `setns`; `clone3`
//!   gets ENOSYS (its flags live in memory seccomp cannot read; libc falls back to `clone`);
//! - `keyctl`, `add_key`, `request_key`;
//! - `ioctl` `TIOCSTI` and `TIOCLINUX` (terminal injection);
//! - sockets: `AF_PACKET`, `AF_VSOCK`, `AF_KEY`, `AF_BLUETOOTH`, raw `AF_INET/AF_INET6`,
//!   and `AF_NETLINK` other than `NETLINK_ROUTE`;
//! - `chmod`, `fchmod`, `fchmodat`, `fchmodat2` setting `S_ISUID` or `S_ISGID` (files the
//!   agent makes in the workspace belong to the invoking user on the host — root, when
//!   warden runs as root — so a set-id bit there would be a set-id program for the host).

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

const EPERM: i32 = libc::EPERM;
const ENOSYS: i32 = libc::ENOSYS;

/// Namespace flags that must not be used to create namespaces.
pub const NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

fn sys(name: &str) -> Option<ScmpSyscall> {
    ScmpSyscall::from_name(name).ok()
}

fn cmp(arg: u32, op: ScmpCompareOp, v: u64) -> ScmpArgCompare {
    ScmpArgCompare::new(arg, op, v)
}

/// Builds the filter. Does not load it. `deny_udp`: also deny UDP sockets (used when the
/// sandbox has no network namespace, so that only Landlock-allowed TCP remains).
pub fn build(deny_udp: bool) -> Result<ScmpFilterContext, String> {
    let e = |what: &str, err: libseccomp::error::SeccompError| format!("seccomp: {what}: {err}");
    let mut f = ScmpFilterContext::new(ScmpAction::Allow).map_err(|x| e("new filter", x))?;
    f.set_act_badarch(ScmpAction::KillProcess)
        .map_err(|x| e("bad-arch action", x))?;
    let mut deny = |name: &str, errno: i32| -> Result<(), String> {
        if let Some(s) = sys(name) {
            f.add_rule(ScmpAction::Errno(errno), s)
                .map_err(|x| e(name, x))?;
        }
        Ok(())
    };
    for n in ["ptrace", "process_vm_readv", "process_vm_writev"] {
        deny(n, EPERM)?;
    }
    for n in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        deny(n, ENOSYS)?;
    }
    for n in [
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "kexec_file_load",
        "mount",
        "umount2",
        "pivot_root",
        "move_mount",
        "open_tree",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
        "chroot",
        "setns",
        "keyctl",
        "add_key",
        "request_key",
    ] {
        deny(n, EPERM)?;
    }
    deny("clone3", ENOSYS)?;
    for name in ["unshare", "clone"] {
        let s = sys(name).ok_or_else(|| format!("seccomp: no syscall {name}"))?;
        for &flag in NS_FLAGS {
            f.add_rule_conditional(
                ScmpAction::Errno(EPERM),
                s,
                &[cmp(0, ScmpCompareOp::MaskedEqual(flag), flag)],
            )
            .map_err(|x| e(name, x))?;
        }
    }
    let ioctl = sys("ioctl").ok_or("seccomp: no syscall ioctl")?;
    for req in [libc::TIOCSTI as u64, libc::TIOCLINUX as u64] {
        f.add_rule_conditional(
            ScmpAction::Errno(EPERM),
            ioctl,
            &[cmp(1, ScmpCompareOp::MaskedEqual(0xffff_ffff), req)],
        )
        .map_err(|x| e("ioctl", x))?;
    }
    let socket = sys("socket").ok_or("seccomp: no syscall socket")?;
    for fam in [
        libc::AF_PACKET,
        libc::AF_VSOCK,
        libc::AF_KEY,
        libc::AF_BLUETOOTH,
    ] {
        f.add_rule_conditional(
            ScmpAction::Errno(libc::EAFNOSUPPORT),
            socket,
            &[cmp(0, ScmpCompareOp::Equal, fam as u64)],
        )
        .map_err(|x| e("socket", x))?;
    }
    for fam in [libc::AF_INET, libc::AF_INET6] {
        f.add_rule_conditional(
            ScmpAction::Errno(EPERM),
            socket,
            &[
                cmp(0, ScmpCompareOp::Equal, fam as u64),
                cmp(1, ScmpCompareOp::MaskedEqual(0xf), libc::SOCK_RAW as u64),
            ],
        )
        .map_err(|x| e("socket", x))?;
    }
    if deny_udp {
        for fam in [libc::AF_INET, libc::AF_INET6] {
            f.add_rule_conditional(
                ScmpAction::Errno(EPERM),
                socket,
                &[
                    cmp(0, ScmpCompareOp::Equal, fam as u64),
                    cmp(1, ScmpCompareOp::MaskedEqual(0xf), libc::SOCK_DGRAM as u64),
                ],
            )
            .map_err(|x| e("socket", x))?;
        }
    }
    f.add_rule_conditional(
        ScmpAction::Errno(libc::EAFNOSUPPORT),
        socket,
        &[
            cmp(0, ScmpCompareOp::Equal, libc::AF_NETLINK as u64),
            cmp(2, ScmpCompareOp::NotEqual, libc::NETLINK_ROUTE as u64),
        ],
    )
    .map_err(|x| e("socket", x))?;
    deny_setid_modes(&mut f)?;
    Ok(f)
}

/// `chmod`-family calls that would set a set-user-ID or set-group-ID bit fail with EPERM.
fn deny_setid_modes(f: &mut ScmpFilterContext) -> Result<(), String> {
    // (syscall, fallback number where libseccomp may not know the name, mode argument)
    for (name, nr, arg) in [
        ("chmod", None, 1),
        ("fchmod", None, 1),
        ("fchmodat", None, 2),
        ("fchmodat2", Some(452), 2),
    ] {
        let Some(s) = sys(name).or(nr.map(ScmpSyscall::from)) else {
            continue;
        };
        for bit in [libc::S_ISUID as u64, libc::S_ISGID as u64] {
            f.add_rule_conditional(
                ScmpAction::Errno(EPERM),
                s,
                &[cmp(arg, ScmpCompareOp::MaskedEqual(bit), bit)],
            )
            .map_err(|x| format!("seccomp: {name}: {x}"))?;
        }
    }
    Ok(())
}

/// Builds and loads the filter into the calling thread (and, via TSYNC-free single-threaded
/// use, the process). Requires no_new_privs.
pub fn install(deny_udp: bool) -> Result<(), String> {
    let f = build(deny_udp)?;
    f.load().map_err(|x| format!("seccomp: load: {x}"))
}
