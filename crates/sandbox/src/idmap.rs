//! The agent's host identity when warden is started by root.
//!
//! Run by root, the sandbox used to map the agent to host uid 0 (without capabilities). That
//! is still host root's identity: a `chmod 4755` copy of a shell in the workspace ran as root
//! on the host, and root-only files not on the hide list stayed readable. Instead:
//!
//! - the agent's user namespace maps its uid/gid 0 to an unprivileged host id that no
//!   account, group or subordinate id range uses ([`agent_ids`]); the agent has no
//!   supplementary groups;
//! - every writable root (workspace, agent state, `files.write`) is bound in through an
//!   *idmapped* mount (`mount_setattr(MOUNT_ATTR_IDMAP)`) that maps the invoking user's
//!   ids on disk to the agent's ids, so the agent can work on them and whatever it creates
//!   keeps the user's ownership on the host;
//! - everything else is judged by ordinary permission checks against that unprivileged id:
//!   a root-only file (`/etc/ssl/private/*.key`) is unreadable even when its directory is
//!   readable.
//!
//! The user namespace is created here, in the supervisor (host root, single-threaded), by a
//! throwaway child ([`Early`], which also makes the sandbox's network namespace, on another
//! CPU while the plan is built); the supervisor writes its maps, keeps fds to both, and
//! stage1 later `setns`es into them. The same namespace serves as the mounts' idmapping. Every bind source
//! is opened here too (`open_tree(OPEN_TREE_CLONE)`), because the sandbox's init — root only
//! inside the namespace — cannot traverse root-only directories such as `/root` (0700).
//!
//! Non-root users keep the identity mapping (their own uid): they are not root on the host.
//! Their sessions join early namespaces too ([`Early::finish_own`]), mapped to themselves.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::error::SysError;

/// The first id tried for the agent: in the block systemd leaves unallocated
/// (0x70000000–0x7FFDFFFF), below 2^31 so tools that keep ids in a signed int handle it,
/// far above normal accounts and the usual subordinate ranges (100000+65536·n).
pub const DEFAULT_AGENT_ID: u32 = 2_000_000_000;

/// The host uid/gid the agent runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentIds {
    pub uid: u32,
    pub gid: u32,
}

const SYS_OPEN_TREE: libc::c_long = 428;
const SYS_MOVE_MOUNT: libc::c_long = 429;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// Ids named in a colon-separated database (`/etc/passwd`, `/etc/group`): field 3.
fn ids_in(db: &str) -> Vec<u32> {
    db.lines()
        .filter_map(|l| l.split(':').nth(2)?.trim().parse().ok())
        .collect()
}

/// Ranges in `/etc/subuid`-style text (`name:start:count`).
fn ranges_in(db: &str) -> Vec<(u64, u64)> {
    db.lines()
        .filter_map(|l| {
            let mut it = l.split(':');
            let _ = it.next()?;
            let s: u64 = it.next()?.trim().parse().ok()?;
            let n: u64 = it.next()?.trim().parse().ok()?;
            Some((s, s + n))
        })
        .collect()
}

/// The first id from [`DEFAULT_AGENT_ID`] up that no account/group and no subordinate range
/// uses. Pure, for tests.
pub fn pick_id(used: &[u32], ranges: &[(u64, u64)]) -> Option<u32> {
    (DEFAULT_AGENT_ID..DEFAULT_AGENT_ID.saturating_add(4096)).find(|&id| {
        !used.contains(&id) && !ranges.iter().any(|&(s, e)| (s..e).contains(&(id as u64)))
    })
}

/// The unprivileged host ids for the agent when this process is root; None otherwise.
pub fn agent_ids() -> Option<AgentIds> {
    // SAFETY: trivial getter.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mut ranges = ranges_in(&read("/etc/subuid"));
    ranges.extend(ranges_in(&read("/etc/subgid")));
    let mut used = ids_in(&read("/etc/passwd"));
    used.extend(ids_in(&read("/etc/group")));
    let id = pick_id(&used, &ranges).unwrap_or(DEFAULT_AGENT_ID);
    Some(AgentIds { uid: id, gid: id })
}

/// Why the agent's identity could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The machine or file system cannot do it (no idmapped mounts, ...): `--best-effort` may
    /// run with the agent as host root instead.
    #[error("{0}")]
    Unsupported(String),
    /// The user namespace could not be made (same remedy as [`PrepareError::Unsupported`]).
    #[error(transparent)]
    Namespace(#[from] SysError),
    /// A bind source is unsafe to open (a symlink where the agent could have put it): never
    /// overridden, since the fallback would follow that symlink.
    #[error("{0}")]
    Refused(String),
}

/// What the supervisor prepared for a root-started session.
pub struct Prepared {
    pub ids: AgentIds,
    /// The agent's user namespace (maps 0 ↔ `ids`), already populated with its maps.
    pub userns: OwnedFd,
    /// The sandbox's network namespace, owned by `userns` (stage 1 joins it instead of
    /// making one).
    pub netns: OwnedFd,
    /// Detached mounts (idmapped for writable roots) to attach at these paths inside.
    pub mounts: Vec<(PathBuf, OwnedFd)>,
    /// Package caches, idmapped (so the agent may copy their files up) but never attached
    /// as such: init uses each as the read-only lower layer of the cache's overlay.
    pub caches: Vec<(PathBuf, OwnedFd)>,
}

fn err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// The namespace holder's body (see [`Early::start`]). `fds`: the hold pipe's read and
/// write ends, then the ready pipe's write end. Closes its copy of the hold pipe's write
/// end, makes the sandbox's network namespace (owned by the user namespace it was born in:
/// it holds every capability there) and brings its loopback device up, reports on the
/// ready pipe (0, or the errno), then
/// blocks reading the hold pipe until the supervisor closes it, and exits. Raw system calls
/// only: it runs on the supervisor's memory, on a stack of its own.
extern "C" fn hold_namespaces(arg: *mut libc::c_void) -> libc::c_int {
    use crate::sys::raw3;
    // SAFETY: `arg` points at the `HolderArgs` `Early` keeps alive until it has reaped this
    // process; only raw syscalls follow (no errno: it would be the forking thread's, which
    // goes on).
    unsafe {
        let a = &*(arg as *const HolderArgs);
        let fds = a.fds;
        if a.pin {
            raw3(
                libc::SYS_sched_setaffinity,
                0,
                std::mem::size_of::<libc::cpu_set_t>(),
                &a.cpus as *const libc::cpu_set_t as usize,
            );
        }
        raw3(libc::SYS_close, fds[1] as usize, 0, 0);
        let r = raw3(libc::SYS_unshare, libc::CLONE_NEWNET as usize, 0, 0);
        if r == 0 {
            // Its loopback device up, here rather than in the sandbox's init (which checks
            // and brings it up itself if this did not: errors are left to it).
            let mut ifr = a.lo;
            let s = raw3(
                libc::SYS_socket,
                libc::AF_INET as usize,
                (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as usize,
                0,
            );
            if s >= 0 {
                let get = &mut ifr as *mut libc::ifreq as usize;
                if raw3(
                    libc::SYS_ioctl,
                    s as usize,
                    libc::SIOCGIFFLAGS as usize,
                    get,
                ) == 0
                {
                    ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                    let set = &ifr as *const libc::ifreq as usize;
                    raw3(
                        libc::SYS_ioctl,
                        s as usize,
                        libc::SIOCSIFFLAGS as usize,
                        set,
                    );
                }
                raw3(libc::SYS_close, s as usize, 0, 0);
            }
        }
        // 0, or the errno squeezed into one byte (never 0: that is success).
        let code: u8 = if r == 0 { 0 } else { (-r).clamp(1, 255) as u8 };
        raw3(
            libc::SYS_write,
            fds[2] as usize,
            &code as *const u8 as usize,
            1,
        );
        raw3(libc::SYS_close, fds[2] as usize, 0, 0);
        let mut b = 0u8;
        raw3(
            libc::SYS_read,
            fds[0] as usize,
            &mut b as *mut u8 as usize,
            1,
        );
        raw3(libc::SYS_exit, 0, 0, 0);
    }
    0
}

/// What the holder gets: its three fds (see [`hold_namespaces`]), and the CPUs to move to
/// first (`pin`: every CPU it may use but the supervisor's current one, so that the
/// namespace is made beside the supervisor's work, not in its place).
#[repr(C)]
struct HolderArgs {
    fds: [libc::c_int; 3],
    pin: bool,
    cpus: libc::cpu_set_t,
    /// A request naming the loopback device (`lo`), copied by the holder.
    lo: libc::ifreq,
}

/// The agent's user namespace and the sandbox's network namespace, started early: a
/// `clone(CLONE_VM | CLONE_NEWUSER)` child on a small stack (it shares the supervisor's
/// memory: nothing to copy, ~0.3 ms less than a fork of the supervisor) that makes the
/// network namespace itself, on the other CPU, while the supervisor builds the plan. That
/// namespace is the costliest part of the sandbox's start (0.7 ms of kernel set-up here),
/// and nothing in it depends on the plan. It is the same namespace stage 1's `unshare`
/// would make, owned by the same user namespace.
///
/// [`Early::finish`] writes the user namespace's maps and takes fds to both; dropped
/// unfinished, the child is released and reaped.
pub struct Early {
    pid: libc::pid_t,
    /// Closing it releases the child.
    hold_w: Option<OwnedFd>,
    ready_r: OwnedFd,
    /// The child's stack and arguments: alive until it is reaped (in `Drop`).
    _stack: Vec<u8>,
    _args: Box<HolderArgs>,
    _hold_r: OwnedFd,
}

impl Early {
    /// Starts the child. `None` when it cannot start (the caller makes both namespaces the
    /// usual way, later).
    pub fn start() -> Option<Early> {
        let (hold_r, hold_w) = warden_sys::pipe_cloexec().ok()?;
        let (ready_r, ready_w) = warden_sys::pipe_cloexec().ok()?;
        // SAFETY: cpu_set_t is plain data; sched_getaffinity/sched_getcpu fill or return
        // plain values.
        let (pin, cpus) = unsafe {
            let mut cpus: libc::cpu_set_t = std::mem::zeroed();
            let here = libc::sched_getcpu();
            let ok = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut cpus)
                == 0
                && here >= 0;
            if ok {
                libc::CPU_CLR(here as usize, &mut cpus);
            }
            (ok && libc::CPU_COUNT(&cpus) > 0, cpus)
        };
        // SAFETY: ifreq is plain data.
        let mut lo: libc::ifreq = unsafe { std::mem::zeroed() };
        for (i, b) in b"lo\0".iter().enumerate() {
            lo.ifr_name[i] = *b as libc::c_char;
        }
        let args = Box::new(HolderArgs {
            fds: [hold_r.as_raw_fd(), hold_w.as_raw_fd(), ready_w.as_raw_fd()],
            pin,
            cpus,
            lo,
        });
        let mut stack = vec![0u8; 64 * 1024];
        // The stack grows down: its top, 16-byte aligned.
        let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
        // The child is born with every signal blocked (it inherits the mask): a handler of
        // the supervisor's must never run there, on the supervisor's memory. The caller's
        // mask is restored right after.
        // SAFETY: the child runs `hold_namespaces` on `stack` (kept alive, like `args`, until
        // the child is reaped in `Drop`) and makes only raw syscalls; SIGCHLD lets waitpid
        // reap it.
        let pid = unsafe {
            crate::sys::clone_signals_blocked(
                hold_namespaces,
                top,
                libc::CLONE_VM | libc::CLONE_NEWUSER | libc::SIGCHLD,
                &*args as *const HolderArgs as *mut libc::c_void,
            )
        };
        if pid <= 0 {
            return None;
        }
        // The child has its own copies of these (no CLONE_FILES).
        drop(ready_w);
        Some(Early {
            pid,
            hold_w: Some(hold_w),
            ready_r,
            _stack: stack,
            _args: args,
            _hold_r: hold_r,
        })
    }

    /// For a session not started by root: maps the user's own uid/gid to themselves (what
    /// stage 1 writes after its own `unshare(CLONE_NEWUSER)`, supplementary groups denied),
    /// waits for the network namespace, and returns fds to both namespaces. Stage 1 joins
    /// them with [`enter`] (`become_root: false`).
    pub fn finish_own(self, uid: u32, gid: u32) -> Result<(OwnedFd, OwnedFd), SysError> {
        let setgroups = format!("/proc/{}/setgroups", self.pid);
        std::fs::write(&setgroups, "deny").map_err(|e| SysError::io(setgroups, e))?;
        self.finish(AgentIds { uid, gid }, uid, gid)
    }

    /// Maps `inner_uid/gid` to the agent's host ids, waits for the network namespace, and
    /// returns fds to the user namespace and the network namespace.
    fn finish(
        self,
        ids: AgentIds,
        inner_uid: u32,
        inner_gid: u32,
    ) -> Result<(OwnedFd, OwnedFd), SysError> {
        let pid = self.pid;
        let maps = [
            (
                format!("/proc/{pid}/uid_map"),
                format!("{inner_uid} {} 1", ids.uid),
            ),
            (
                format!("/proc/{pid}/gid_map"),
                format!("{inner_gid} {} 1", ids.gid),
            ),
        ];
        for (f, v) in &maps {
            std::fs::write(f, v).map_err(|e| SysError::io(f, e))?;
        }
        let mut code = [0u8; 1];
        let n = loop {
            // SAFETY: reading one byte into a local buffer from a pipe we own.
            let n = unsafe { libc::read(self.ready_r.as_raw_fd(), code.as_mut_ptr().cast(), 1) };
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break n;
            }
        };
        if n < 0 {
            return Err(SysError::last("network namespace holder: read"));
        }
        match (n, code[0]) {
            (1, 0) => {}
            (1, e) => {
                return Err(SysError::io(
                    "unshare(CLONE_NEWNET)",
                    std::io::Error::from_raw_os_error(e as i32),
                ))
            }
            _ => {
                return Err(SysError::io(
                    "network namespace holder",
                    std::io::Error::other("it exited before making the namespace"),
                ))
            }
        }
        let open = |what: &str| {
            let p = format!("/proc/{pid}/ns/{what}");
            std::fs::File::open(&p)
                .map(OwnedFd::from)
                .map_err(|e| SysError::io(p, e))
        };
        Ok((open("user")?, open("net")?))
    }
}

impl Drop for Early {
    fn drop(&mut self) {
        drop(self.hold_w.take());
        let mut st = 0;
        // SAFETY: reaping our own child (its stack and fds live until this returns).
        unsafe { libc::waitpid(self.pid, &mut st, 0) };
    }
}

/// Creates the agent's user namespace, mapping `inner_uid/gid` to the agent's host ids,
/// and the sandbox's network namespace inside it, through `early` when it was started
/// (see [`Early`]).
fn make_namespaces(
    early: Option<Early>,
    ids: AgentIds,
    inner_uid: u32,
    inner_gid: u32,
) -> Result<(OwnedFd, OwnedFd), SysError> {
    let early = match early {
        Some(e) => e,
        None => Early::start()
            .ok_or_else(|| SysError::io("clone(CLONE_NEWUSER)", std::io::Error::last_os_error()))?,
    };
    early.finish(ids, inner_uid, inner_gid)
}

fn cpath(p: &Path) -> Result<CString, SysError> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| SysError::Nul(p.to_path_buf()))
}

/// Opens a root for binding without following any symlink (`openat2(RESOLVE_NO_SYMLINKS)` on
/// its canonical path). A root that lies inside another agent-writable root and resolves
/// through a symlink is refused: a previous (or concurrent) session could have planted that
/// symlink to get a host directory bound in, idmapped and writable. The result is checked to
/// be a directory or a regular file.
fn open_root(
    path: &Path,
    writable: &[PathBuf],
    ids: &[(PathBuf, (u64, u64))],
) -> Result<OwnedFd, PrepareError> {
    let real = std::fs::canonicalize(path)
        .map_err(|e| PrepareError::Refused(format!("{}: {e}", path.display())))?;
    if real != path {
        if let Some(w) = writable.iter().find(|w| *w != path && path.starts_with(w)) {
            return Err(PrepareError::Refused(format!(
                "{} lies inside the agent-writable {} and resolves through a symlink to {}: refused (a symlink there could be the agent's); replace the symlink with the real path in the policy",
                path.display(),
                w.display(),
                real.display()
            )));
        }
    }
    let fd = warden_sys::open_no_links(&real, warden_sys::OFlags::PATH).map_err(|e| {
        PrepareError::Refused(format!(
            "open {} (no symlinks followed): {}",
            real.display(),
            std::io::Error::from(e)
        ))
    })?;
    // SAFETY: fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is the fd we just opened and own; `st` is a valid, writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(PrepareError::Refused(err(&format!(
            "fstat {}",
            real.display()
        ))));
    }
    // The inode the plan judged (crate::plan::Plan::root_ids): another one put there since
    // (a concurrent session's agent swapping a directory it may write) is refused.
    if let Some((_, (dev, ino))) = ids.iter().find(|(p, _)| p == path) {
        if (st.st_dev, st.st_ino) != (*dev, *ino) {
            return Err(PrepareError::Refused(format!(
                "{}: not the directory the plan checked (another was put there while the session started: by a concurrent session's agent?)",
                path.display()
            )));
        }
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFDIR && kind != libc::S_IFREG {
        return Err(PrepareError::Refused(format!(
            "{}: not a directory or regular file",
            real.display()
        )));
    }
    Ok(fd)
}

/// A detached copy of the mount tree at `path` (`open_tree(OPEN_TREE_CLONE|AT_RECURSIVE)`,
/// opened without following symlinks, see [`open_root`]), idmapped through `userns` when
/// given.
fn clone_tree(
    path: &Path,
    userns: Option<RawFd>,
    writable: &[PathBuf],
    ids: &[(PathBuf, (u64, u64))],
) -> Result<OwnedFd, PrepareError> {
    let root = open_root(path, writable, ids)?;
    let empty = c"";
    // SAFETY: open_tree on our O_PATH fd; the result is a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            SYS_OPEN_TREE,
            root.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE
                | libc::O_CLOEXEC as libc::c_uint
                | AT_RECURSIVE
                | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(PrepareError::Unsupported(err(&format!(
            "open_tree({})",
            path.display()
        ))));
    }
    // SAFETY: a fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    if let Some(ns) = userns {
        // SAFETY: `ns` is the caller's open user namespace fd, alive for this call.
        let ns = unsafe { std::os::fd::BorrowedFd::borrow_raw(ns) };
        let r = crate::fsat::mount_setattr(
            std::os::fd::AsFd::as_fd(&fd),
            MOUNT_ATTR_IDMAP,
            Some(ns),
            true,
        );
        if let Err(e) = r {
            return Err(PrepareError::Unsupported(format!(
                "idmapped mount of {} ({}): {e}{}",
                path.display(),
                fs_type(path),
                if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EPERM)) {
                    " — this file system (or a mount below it) does not support idmapped mounts"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(fd)
}

/// The file system type holding `path` (for messages).
fn fs_type(path: &Path) -> String {
    let Ok(c) = cpath(path) else {
        return "?".into();
    };
    // SAFETY: statfs into a zeroed struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid, writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "?".into();
    }
    let name = match st.f_type as u64 {
        0x858458f6 => "ramfs",
        0x6969 => "nfs",
        0xff534d42 | 0xfe534d42 => "cifs/smb",
        0x65735546 => "fuse",
        0x794c7630 => "overlayfs",
        0x01021994 => "tmpfs",
        0xef53 => "ext4",
        0x58465342 => "xfs",
        0x9123683e => "btrfs",
        _ => "",
    };
    if name.is_empty() {
        format!("file system magic {:#x}", st.f_type)
    } else {
        name.to_string()
    }
}

/// Attaches a detached mount (from [`Prepared::mounts`]) at `target` (in the caller's mount
/// namespace).
pub fn attach(fd: RawFd, target: &Path) -> Result<(), SysError> {
    let t = cpath(target)?;
    let empty = c"";
    // SAFETY: move_mount of our detached mount onto a valid path.
    let r = unsafe {
        libc::syscall(
            SYS_MOVE_MOUNT,
            fd,
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(SysError::last(format!(
            "move_mount onto {}",
            target.display()
        )));
    }
    Ok(())
}

/// The bind sources of a root-started session ([`prepare`]).
pub struct Roots<'a> {
    pub writable: &'a [PathBuf],
    pub readonly: &'a [PathBuf],
    /// Supervisor-made copies: (target, source).
    pub copies: &'a [(PathBuf, PathBuf)],
    pub caches: &'a [PathBuf],
    /// The inodes the plan judged ([`crate::plan::Plan::root_ids`], `cache_ids`).
    pub root_ids: &'a [(PathBuf, (u64, u64))],
    pub cache_ids: &'a [(PathBuf, (u64, u64))],
}

/// For a root-started session: the agent's user namespace and every bind source, opened by
/// the supervisor; writable roots idmapped so the invoking user (`user_uid`/`user_gid`,
/// i.e. root) owns what the agent writes.
pub fn prepare(
    early: Option<Early>,
    ids: AgentIds,
    user_uid: u32,
    user_gid: u32,
    roots: Roots<'_>,
) -> Result<Prepared, PrepareError> {
    let Roots {
        writable,
        readonly,
        copies,
        caches,
        root_ids,
        cache_ids,
    } = roots;
    let (userns, netns) = make_namespaces(early, ids, user_uid, user_gid)?;
    let mut mounts = Vec::new();
    // Supervisor-made copies shown read-write at a target (the agent-state filter): opened
    // from their source, idmapped, attached at the target.
    for (target, source) in copies {
        mounts.push((
            target.clone(),
            clone_tree(source, Some(userns.as_raw_fd()), writable, &[])?,
        ));
    }
    for p in writable {
        mounts.push((
            p.clone(),
            clone_tree(p, Some(userns.as_raw_fd()), writable, root_ids)?,
        ));
    }
    for p in readonly {
        if writable.contains(p) {
            continue;
        }
        mounts.push((p.clone(), clone_tree(p, None, writable, root_ids)?));
    }
    let mut cache_fds = Vec::new();
    for c in caches {
        // A cache that cannot be opened is left out (a convenience, not policy).
        if let Ok(fd) = clone_tree(c, Some(userns.as_raw_fd()), writable, cache_ids) {
            cache_fds.push((c.clone(), fd));
        }
    }
    Ok(Prepared {
        ids,
        userns,
        netns,
        mounts,
        caches: cache_fds,
    })
}

/// Called in stage1 (single-threaded) in place of `unshare(CLONE_NEWUSER)` and writing
/// maps: joins the prepared namespace, with full capabilities inside it only. Run by root
/// (`become_root`): becomes its uid/gid 0 (the agent's host ids) with no supplementary
/// groups. Otherwise the namespace maps the user's own ids ([`Early::finish_own`]), which
/// stay as they are, as after an `unshare`.
pub fn enter(userns: RawFd, become_root: bool) -> Result<(), SysError> {
    // SAFETY: plain syscalls in a single-threaded child.
    unsafe {
        if libc::setns(userns, libc::CLONE_NEWUSER) != 0 {
            return Err(SysError::last("setns(user namespace)"));
        }
        if !become_root {
            return Ok(());
        }
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(SysError::last("setgroups([])"));
        }
        if libc::setresgid(0, 0, 0) != 0 {
            return Err(SysError::last("setresgid(0)"));
        }
        if libc::setresuid(0, 0, 0) != 0 {
            return Err(SysError::last("setresuid(0)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(fd: RawFd) -> (u64, u64) {
        // SAFETY: a zeroed plain struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat into that local struct.
        let r = unsafe { libc::fstat(fd, &mut st) };
        assert_eq!(r, 0);
        (st.st_dev, st.st_ino)
    }

    /// The early namespaces: a network namespace of its own, owned by the user namespace
    /// returned with it (what stage 1's `unshare` inside that user namespace would make),
    /// which maps its 0 to the agent's ids; the holder is gone once both are returned, and
    /// also when they never are (dropped unfinished).
    #[test]
    fn early_namespaces_are_a_fresh_network_namespace_owned_by_the_agents_user_namespace() {
        // SAFETY: trivial getter.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: writing the agent's maps needs root");
            return;
        }
        let early = Early::start().expect("clone(CLONE_VM | CLONE_NEWUSER)");
        let pid = early.pid;
        let ids = AgentIds {
            uid: DEFAULT_AGENT_ID,
            gid: DEFAULT_AGENT_ID + 1,
        };
        let (user, net) = early.finish(ids, 0, 0).expect("finish");
        // SAFETY: waitpid on a pid that is no longer our child: ECHILD.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1, "the holder is reaped");
        let ours = std::fs::File::open("/proc/self/ns/net").expect("own netns");
        assert_ne!(
            ino(net.as_raw_fd()),
            ino(ours.as_raw_fd()),
            "a new network namespace"
        );
        // NS_GET_USERNS: the namespace's owning user namespace.
        // SAFETY: an ioctl on a namespace fd we own, returning a new fd.
        let owner = unsafe { libc::ioctl(net.as_raw_fd(), 0xb701) };
        assert!(
            owner >= 0,
            "NS_GET_USERNS: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a fresh fd from the kernel.
        let owner = unsafe { OwnedFd::from_raw_fd(owner) };
        assert_eq!(
            ino(owner.as_raw_fd()),
            ino(user.as_raw_fd()),
            "owned by the agent's user namespace"
        );
        // The maps were written to that namespace: seen from a process that joins it.
        // SAFETY: clearing FD_CLOEXEC on an fd we own, for the child to inherit it.
        unsafe { libc::fcntl(user.as_raw_fd(), libc::F_SETFD, 0) };
        let out = std::process::Command::new("nsenter")
            .arg(format!("--user=/proc/self/fd/{}", user.as_raw_fd()))
            .args(["cat", "/proc/self/uid_map", "/proc/self/gid_map"])
            .output()
            .expect("nsenter");
        let maps: Vec<Vec<String>> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect();
        assert_eq!(
            maps,
            [["0", "2000000000", "1"], ["0", "2000000001", "1"]],
            "{out:?}"
        );

        // Its loopback device is up (the holder brought it up: init finds nothing to do).
        let mut lo_up = false;
        std::thread::scope(|s| {
            // SAFETY: as in `crate::sys::loopback_up`, in a thread of our own that joins
            // the namespace (the test's other threads keep theirs).
            s.spawn(|| unsafe {
                assert_eq!(libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET), 0);
                let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
                assert!(sock >= 0);
                let mut ifr: libc::ifreq = std::mem::zeroed();
                for (i, b) in b"lo\0".iter().enumerate() {
                    ifr.ifr_name[i] = *b as libc::c_char;
                }
                assert_eq!(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr), 0);
                lo_up = ifr.ifr_ifru.ifru_flags & libc::IFF_UP as libc::c_short != 0;
                libc::close(sock);
            });
        });
        assert!(lo_up, "the holder brought lo up");

        let dropped = Early::start().expect("clone");
        let pid = dropped.pid;
        drop(dropped);
        // SAFETY: as above.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1, "the holder is reaped");
    }

    #[test]
    fn picks_an_unused_id_outside_ranges() {
        assert_eq!(pick_id(&[], &[]), Some(DEFAULT_AGENT_ID));
        assert_eq!(
            pick_id(&[DEFAULT_AGENT_ID], &[]),
            Some(DEFAULT_AGENT_ID + 1)
        );
        let r = [(DEFAULT_AGENT_ID as u64 - 5, DEFAULT_AGENT_ID as u64 + 10)];
        assert_eq!(pick_id(&[], &r), Some(DEFAULT_AGENT_ID + 10));
        assert_eq!(
            ranges_in("root:100000:65536\nbad\n"),
            vec![(100000, 165536)]
        );
        assert_eq!(ids_in("root:x:0:0::/root:/bin/sh\nx\n"), vec![0]);
    }
}
