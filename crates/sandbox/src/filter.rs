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
//! - `clone` sharing a descriptor table or an address space between two *processes*:
//!   `CLONE_FILES` without `CLONE_THREAD`, `CLONE_VM` without `CLONE_THREAD` or `CLONE_VFORK`,
//!   `CLONE_VM` with `CLONE_PARENT`, and `CLONE_VFORK` with `CLONE_THREAD` (a thread its
//!   creator waits for). Threads, `fork`, `vfork` and `posix_spawn` are
//!   unaffected. The exec guard makes a mapping decision race-free by stopping every other
//!   thread that could change the descriptor or the address range between its check and the
//!   kernel's use; only the thread group (and a `vfork` child, which it finds by its parent)
//!   can be found by family ties (for an address space the exec guard compares every
//!   thread of the sandbox, since a `vfork` child's thread outlives the vfork);
//! - `keyctl`, `add_key`, `request_key`;
//! - `ioctl` `TIOCSTI` and `TIOCLINUX` (terminal injection);
//! - sockets (EAFNOSUPPORT): every family but `AF_UNIX`, `AF_INET`, `AF_INET6` and
//!   `AF_NETLINK`, and `AF_NETLINK` other than `NETLINK_ROUTE`; `socketpair` of any family
//!   but `AF_UNIX`; of `AF_INET/AF_INET6`, only stream sockets of TCP and datagram sockets
//!   (raw, `SOCK_SEQPACKET`, DCCP, RDM: EPERM; a `SOCK_STREAM` of another protocol than
//!   TCP, such as MPTCP, SCTP or SMC, which Landlock's TCP rules do not cover:
//!   EPROTONOSUPPORT; datagram sockets too without a network namespace, see `install`);
//! - `personality` setting `READ_IMPLIES_EXEC` (a `PROT_READ` mapping would become
//!   executable without any `PROT_EXEC` the exec guard could see); queries
//!   (`personality(0xffffffff)`) and other personas still work;
//! - setuid/setgid bits (files the agent makes in the workspace belong to the invoking user
//!   on the host — root, when warden runs as root — so a set-id bit there would be a set-id
//!   program for the host): `chmod`, `fchmod`, `fchmodat`, `fchmodat2` with `S_ISUID` or
//!   `S_ISGID` in the mode, and `open`/`openat`/`creat`/`mknod`/`mknodat` creating a file
//!   with either bit. `openat2` carries its mode in memory seccomp cannot read, so it can
//!   still create one: a setuid bit goes on the first write or truncate (the agent has no
//!   `CAP_FSETID`), a setgid bit only when the group may execute (without group execute
//!   the kernel grants no group on exec), and an empty set-id file stays (attack review 66).
//!   Every set-id file the session made or changed is in the end's integrity report
//!   (`crate::integrity`, by inode change time);
//! - every extended-attribute write (`setxattr`, `lsetxattr`, `fsetxattr`, `setxattrat`,
//!   and the `removexattr` family) fails with `EOPNOTSUPP`, as on a file system without
//!   xattrs: the attribute's name is a string in memory, so seccomp cannot single out
//!   `security.*` (file capabilities, IMA/EVM, SELinux labels), and a supervisor reading the
//!   name would race a second thread rewriting it. Reading xattrs still works.

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

const EPERM: i32 = libc::EPERM;
const ENOSYS: i32 = libc::ENOSYS;
/// `personality(2)` flag: `PROT_READ` implies `PROT_EXEC`.
const READ_IMPLIES_EXEC: u64 = 0x0040_0000;
/// `__O_TMPFILE` (O_TMPFILE is this bit plus O_DIRECTORY).
const O_TMPFILE_BIT: u64 = 0o20_000_000;

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

/// A libseccomp call that failed while building or loading the filter (`what`: the rule's
/// syscall or the step), with libseccomp's error (and its errno) as the source.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("seccomp: {what}: {source}")]
    Seccomp {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// libseccomp does not know this syscall on this architecture.
    #[error("seccomp: no syscall {0}")]
    NoSyscall(&'static str),
}

/// The text, for the launcher's error pipe.
impl From<FilterError> for String {
    fn from(e: FilterError) -> String {
        e.to_string()
    }
}

/// Builds the filter. Does not load it. `deny_udp`: also deny UDP sockets (used when the
/// sandbox has no network namespace, so that only Landlock-allowed TCP remains).
pub fn build(deny_udp: bool) -> Result<ScmpFilterContext, FilterError> {
    let e = |what: &str, source: libseccomp::error::SeccompError| FilterError::Seccomp {
        what: what.to_string(),
        source,
    };
    let mut f = ScmpFilterContext::new(ScmpAction::Allow).map_err(|x| e("new filter", x))?;
    f.set_act_badarch(ScmpAction::KillProcess)
        .map_err(|x| e("bad-arch action", x))?;
    let mut deny = |name: &str, errno: i32| -> Result<(), FilterError> {
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
    for n in [
        "setxattr",
        "lsetxattr",
        "fsetxattr",
        "setxattrat",
        "removexattr",
        "lremovexattr",
        "fremovexattr",
        "removexattrat",
    ] {
        deny(n, libc::EOPNOTSUPP)?;
    }
    // READ_IMPLIES_EXEC set, and the value is not the query 0xffffffff: some other bit of the
    // low 32 (the kernel's `unsigned int`) is clear. libseccomp takes one comparison per
    // argument per rule, so one rule per such bit.
    let personality = sys("personality").ok_or(FilterError::NoSyscall("personality"))?;
    for bit in (0..32)
        .map(|b| 1u64 << b)
        .filter(|&b| b != READ_IMPLIES_EXEC)
    {
        f.add_rule_conditional(
            ScmpAction::Errno(EPERM),
            personality,
            &[cmp(
                0,
                ScmpCompareOp::MaskedEqual(READ_IMPLIES_EXEC | bit),
                READ_IMPLIES_EXEC,
            )],
        )
        .map_err(|x| e("personality", x))?;
    }
    // Setuid/setgid bits: (syscall, index of the mode argument, index of the flags argument
    // when the mode only matters with O_CREAT/O_TMPFILE).
    let modes: &[(&str, u32, Option<u32>)] = &[
        ("chmod", 1, None),
        ("fchmod", 1, None),
        ("fchmodat", 2, None),
        ("fchmodat2", 2, None),
        ("creat", 1, None),
        ("mknod", 1, None),
        ("mknodat", 2, None),
        ("open", 2, Some(1)),
        ("openat", 3, Some(2)),
    ];
    for &(name, mode_arg, flags_arg) in modes {
        // fchmodat2 (Linux 6.6) is 452 where libseccomp does not know its name yet.
        let fallback = (name == "fchmodat2").then(|| ScmpSyscall::from(452));
        let Some(s) = sys(name).or(fallback) else {
            continue;
        };
        for bit in [libc::S_ISUID as u64, libc::S_ISGID as u64] {
            let m = cmp(mode_arg, ScmpCompareOp::MaskedEqual(bit), bit);
            match flags_arg {
                None => {
                    f.add_rule_conditional(ScmpAction::Errno(EPERM), s, &[m])
                        .map_err(|x| e(name, x))?;
                }
                Some(fa) => {
                    for create in [libc::O_CREAT as u64, O_TMPFILE_BIT] {
                        f.add_rule_conditional(
                            ScmpAction::Errno(EPERM),
                            s,
                            &[m, cmp(fa, ScmpCompareOp::MaskedEqual(create), create)],
                        )
                        .map_err(|x| e(name, x))?;
                    }
                }
            }
        }
    }
    for name in ["unshare", "clone"] {
        let s = sys(name).ok_or(FilterError::NoSyscall(name))?;
        for &flag in NS_FLAGS {
            f.add_rule_conditional(
                ScmpAction::Errno(EPERM),
                s,
                &[cmp(0, ScmpCompareOp::MaskedEqual(flag), flag)],
            )
            .map_err(|x| e(name, x))?;
        }
    }
    // Descriptor tables and address spaces shared only within a thread group (or with a
    // vfork child of it): see the module doc.
    let clone = sys("clone").ok_or(FilterError::NoSyscall("clone"))?;
    let (vm, files, thread, vfork, parent) = (
        libc::CLONE_VM as u64,
        libc::CLONE_FILES as u64,
        libc::CLONE_THREAD as u64,
        libc::CLONE_VFORK as u64,
        libc::CLONE_PARENT as u64,
    );
    for (mask, value) in [
        (files | thread, files),
        (vm | thread | vfork, vm),
        (vm | parent, vm | parent),
        (thread | vfork, thread | vfork),
    ] {
        f.add_rule_conditional(
            ScmpAction::Errno(EPERM),
            clone,
            &[cmp(0, ScmpCompareOp::MaskedEqual(mask), value)],
        )
        .map_err(|x| e("clone", x))?;
    }
    let ioctl = sys("ioctl").ok_or(FilterError::NoSyscall("ioctl"))?;
    // The casts are no-ops on glibc (c_ulong) but not on musl (c_int).
    #[allow(clippy::unnecessary_cast)]
    for req in [libc::TIOCSTI as u64, libc::TIOCLINUX as u64] {
        f.add_rule_conditional(
            ScmpAction::Errno(EPERM),
            ioctl,
            &[cmp(1, ScmpCompareOp::MaskedEqual(0xffff_ffff), req)],
        )
        .map_err(|x| e("ioctl", x))?;
    }
    let socket = sys("socket").ok_or(FilterError::NoSyscall("socket"))?;
    // Families: `AF_UNIX`, `AF_INET`, `AF_INET6` and `AF_NETLINK` only. Landlock restricts
    // TCP connects of `AF_INET*` alone, and some other families make their own TCP
    // connections in the kernel (`AF_SMC` over its TCP "clcsock", `AF_RDS`), so every other
    // one is refused, not a list of known ones. The whole 64-bit argument is compared.
    let other_families = (0..=libc::AF_NETLINK).filter(|f| {
        ![
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_NETLINK,
        ]
        .contains(f)
    });
    for fam in other_families {
        f.add_rule_conditional(
            ScmpAction::Errno(libc::EAFNOSUPPORT),
            socket,
            &[cmp(0, ScmpCompareOp::Equal, fam as u64)],
        )
        .map_err(|x| e("socket", x))?;
    }
    f.add_rule_conditional(
        ScmpAction::Errno(libc::EAFNOSUPPORT),
        socket,
        &[cmp(0, ScmpCompareOp::Greater, libc::AF_NETLINK as u64)],
    )
    .map_err(|x| e("socket", x))?;
    // IP sockets are TCP (`SOCK_STREAM`, protocol 0 or `IPPROTO_TCP`) and UDP only. Landlock's
    // TCP rules apply to TCP alone (Linux 6.x, "landlock: Fix non-TCP sockets restriction"):
    // an MPTCP socket (`SOCK_STREAM`, protocol 262) connected to any host port in the
    // Landlock-only mode (attack review 74), and SCTP (132) and SMC (256) would where their
    // modules load. Raw sockets, SCTP's `SOCK_SEQPACKET`, DCCP and `SOCK_RDM` have no use here.
    for fam in [libc::AF_INET, libc::AF_INET6] {
        for ty in [
            libc::SOCK_RAW,
            libc::SOCK_RDM,
            libc::SOCK_SEQPACKET,
            6,  /* SOCK_DCCP */
            10, /* SOCK_PACKET */
        ] {
            f.add_rule_conditional(
                ScmpAction::Errno(EPERM),
                socket,
                &[
                    cmp(0, ScmpCompareOp::Equal, fam as u64),
                    cmp(1, ScmpCompareOp::MaskedEqual(0xf), ty as u64),
                ],
            )
            .map_err(|x| e("socket", x))?;
        }
        // A stream socket of another protocol than TCP (0 picks TCP). The whole 64-bit
        // argument is compared: high bits the kernel ignores make it larger, so refused.
        f.add_rule_conditional(
            ScmpAction::Errno(libc::EPROTONOSUPPORT),
            socket,
            &[
                cmp(0, ScmpCompareOp::Equal, fam as u64),
                cmp(1, ScmpCompareOp::MaskedEqual(0xf), libc::SOCK_STREAM as u64),
                cmp(2, ScmpCompareOp::Greater, libc::IPPROTO_TCP as u64),
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
    // `socketpair` makes connected pairs, which only `AF_UNIX` has; for any other family the
    // kernel would still load its protocol module (`net-pf-N`) before failing (attack review
    // 75), one the rules above keep `socket` from reaching.
    let socketpair = sys("socketpair").ok_or(FilterError::NoSyscall("socketpair"))?;
    f.add_rule_conditional(
        ScmpAction::Errno(libc::EAFNOSUPPORT),
        socketpair,
        &[cmp(0, ScmpCompareOp::NotEqual, libc::AF_UNIX as u64)],
    )
    .map_err(|x| e("socketpair", x))?;
    Ok(f)
}

/// Builds and loads the filter into the calling thread (and, via TSYNC-free single-threaded
/// use, the process). Requires no_new_privs.
pub fn install(deny_udp: bool) -> Result<(), FilterError> {
    let f = build(deny_udp)?;
    f.load().map_err(|source| FilterError::Seccomp {
        what: "load".into(),
        source,
    })
}

/// The filter as a finished BPF program (see [`crate::bpf`]), for the agent to load with
/// `Program::load(false)`: the same program [`install`] loads.
pub fn compile(deny_udp: bool) -> Result<crate::bpf::Program, String> {
    let f = build(deny_udp)?;
    crate::bpf::Program::export(&f).map_err(|e| e.to_string())
}

/// [`compile`] on a thread, started early in the session so the build overlaps other
/// set-up work (pass it as [`crate::launch::Launch::seccomp`]).
pub fn prepare(deny_udp: bool) -> Prepared {
    Prepared(crate::bpf::Pending::cached(
        deny_udp,
        format!("sandbox-udp{}", u8::from(deny_udp)),
        move || compile(deny_udp),
    ))
}

/// The sandbox filter being compiled ([`prepare`]), keyed by `deny_udp`.
pub struct Prepared(crate::bpf::Pending<bool>);

impl Prepared {
    /// The program for `deny_udp`: the prepared one if it was built for that, else built now.
    pub fn wait(self, deny_udp: bool) -> Result<crate::bpf::Program, String> {
        if self.0.is_for(&deny_udp) {
            self.0.wait()
        } else {
            drop(self.0.wait());
            compile(deny_udp)
        }
    }
}
