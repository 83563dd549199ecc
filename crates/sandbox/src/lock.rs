//! Landlock: file access rules and scoping, applied to the agent process right before exec.
//!
//! Read roots get execute + read; write roots get every filesystem right. A fixed set of
//! device files (`/dev/null`, `/dev/tty`, ...) gets read/write/ioctl; nothing else under
//! `/dev` is reachable, so raw disks stay closed even to a uid-0 agent; the agent's own pty
//! slave (on the host's devpts) gets the same, so it can re-open its terminal. Scoping (ABI 6)
//! stops signals and abstract-unix-socket connections to anything outside the sandbox.
//!
//! The ruleset is written against one pinned ABI ([`TARGET_ABI`]), never against the running
//! kernel's, and built best-effort: the `landlock` crate drops what an older kernel lacks and
//! says so in the returned [`RulesetStatus`]. In hard mode (every run without
//! `--best-effort`) [`apply`] checks that status and refuses to exec the agent when Landlock
//! is not enforced, when the kernel offers less than the ABI the session was planned for, or
//! when a right this kernel supports was not enforced. [`abi_version`] is the raw query, kept
//! for planning and `warden doctor`.

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The Landlock ABI whose rights the ruleset names: the highest this code was written and
/// tested for (V6 adds the signal and abstract-socket scopes). V7 adds only audit-log flags;
/// V8+ add rights (named unix-socket resolution, UDP) that would change what an agent can do,
/// so raising this is a reviewed change, not a dependency bump.
pub const TARGET_ABI: ABI = ABI::V6;
use std::path::{Path, PathBuf};

/// Device files the agent may open read/write.
pub const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

#[derive(Debug, Clone)]
pub struct LandlockPlan {
    /// The kernel's ABI the session was planned for (the raw query at start): hard mode
    /// refuses to run on less. It does not choose the rights (that is [`TARGET_ABI`]).
    pub abi: i32,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    /// The inodes the plan judged its roots to be ([`crate::plan::Plan::root_ids`]): a
    /// write rule is opened without following symbolic links (a spelled root through one is
    /// left to its resolved twin in `write`) and refused if another inode is there now.
    pub root_ids: Vec<(PathBuf, (u64, u64))>,
    /// Paths the plan hides ([`crate::plan::Plan::hide`]). A read rule on a directory above
    /// one is split (see [`apply`]): the hiding mount lasts only while the host keeps the
    /// file's inode, and a host that replaces the file by rename would otherwise show the
    /// new one.
    pub hidden: Vec<PathBuf>,
    /// When the sandbox has no network namespace: TCP ports the agent may connect to.
    pub connect_tcp: Option<Vec<u16>>,
    /// Refuse to run unless the ruleset is enforced as planned (see [`judge`]).
    pub hard: bool,
}

const HOW: &str =
    "Nothing was run; `warden doctor` explains, `--best-effort` runs without this guarantee.";

/// Why Landlock was not applied as planned.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// A `landlock` crate call (`what`: the step or the rule's path) failed.
    #[error("landlock: {what}: {source}")]
    Ruleset {
        what: String,
        #[source]
        source: landlock::RulesetError,
    },
    /// A writable root is not the directory the plan checked (swapped since).
    #[error("landlock: {} is not the directory the plan checked (another was put there while the session started: by a concurrent session's agent?); refused", .0.display())]
    Swapped(PathBuf),
    /// A directory above a hidden path could not be listed to give its other entries their
    /// rules.
    #[error("landlock: cannot list {} to keep {} hidden: {source}; refused (the other entries of that directory would be unreadable)", .dir.display(), .hidden.display())]
    Split {
        dir: PathBuf,
        hidden: PathBuf,
        #[source]
        source: warden_sys::Error,
    },
    /// The thread building the split ended without a result.
    #[error("landlock: the thread giving the rules of the directories above hidden paths ended without them; refused")]
    SplitLost,
    /// Hard mode: the ruleset is not enforced at all.
    #[error("landlock: the ruleset is not enforced (kernel: {kernel}); file and device rules would not hold. {HOW}")]
    NotEnforced { kernel: String },
    /// Hard mode: the kernel enforces less than the session was planned for.
    #[error("landlock: the kernel enforces ABI {effective}, less than the ABI {planned} this session was planned for. {HOW}")]
    OlderAbi { effective: i32, planned: i32 },
    /// Hard mode: partly enforced on a kernel that offers the whole target ABI.
    #[error("landlock: only partly enforced although the kernel offers ABI {effective} (warden targets {target}). {HOW}")]
    Partial { effective: i32, target: i32 },
}

/// (device, inode, mode) of an open descriptor.
fn fstat_ids(fd: &std::os::fd::OwnedFd) -> std::io::Result<(u64, u64, u32)> {
    use std::os::fd::AsRawFd;
    // SAFETY: fstat into a zeroed struct on a descriptor we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino, st.st_mode))
}

/// The text, for the launcher's error pipe.
impl From<LandlockError> for String {
    fn from(e: LandlockError) -> String {
        e.to_string()
    }
}

/// Applies the ruleset to the calling (single-threaded) process. no_new_privs must be set.
///
/// `own_tty`: the agent's own pty slave (warden's, on the host's devpts, outside every
/// rule's hierarchy), which also gets read/write/ioctl so the agent can re-open its own
/// terminal (`> /dev/stdout`, `/proc/self/fd/0`); it already holds it read/write.
pub fn apply(
    plan: &LandlockPlan,
    prepared: Option<Result<Split, LandlockError>>,
    own_tty: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<RulesetStatus, LandlockError> {
    let abi = TARGET_ABI;
    let e = |what: &str, source: landlock::RulesetError| LandlockError::Ruleset {
        what: what.to_string(),
        source,
    };
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let file_bits = AccessFs::from_file(abi);
    let Split {
        created,
        mut dirs,
        hidden,
        covers,
        guarded,
    } = match prepared {
        Some(p) => p?,
        None => split_roots(create(plan)?, plan, kept_hidden(plan))?,
    };
    let mut created = match created {
        Some(c) => c,
        None => create(plan)?,
    };
    // The hiding mounts' own private inodes under a split directory (on another device than
    // the directory: the mount is in place) keep a rule, so an open of one still reads empty
    // and is seen (`crate::seen`). Only they: the host's file, or one the host renames there
    // (which takes the mount with the replaced inode), gets none.
    for (h, dir_dev) in &covers {
        let Ok(fd) = warden_sys::open_no_links(h, warden_sys::OFlags::PATH) else {
            continue;
        };
        if matches!(fstat_ids(&fd), Ok((dev, _, mode)) if dev != *dir_dev && mode & libc::S_IFMT == libc::S_IFREG)
        {
            created = created
                .add_rule(PathBeneath::new(fd, read & file_bits))
                .map_err(|x| e(&format!("rule for {}", h.display()), x))?;
        }
    }
    let dev = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev | AccessFs::ReadDir;
    let mut rules: Vec<(PathBuf, landlock::BitFlags<AccessFs>)> = Vec::new();
    // Read and write rules: opened here, without following symbolic links (a spelled root
    // through one is left to its resolved twin in the same list: the plan adds both); a
    // write root is checked against the inode the plan recorded. (Read roots include
    // `/proc` and `/dev`, which are the sandbox's own mounts here.)
    // Outermost first: a read rule beneath a directory already given every one of its
    // rights grants nothing more (Landlock walks up through mount points), and is skipped
    // (`/usr/lib` under `/usr`, the read roots under the private `$HOME`). A write root
    // always keeps its own rule, and its check against the recorded inode.
    let mut entries: Vec<(&PathBuf, landlock::BitFlags<AccessFs>, bool)> = (plan.read.iter())
        .map(|p| (p, read, false))
        .chain(plan.write.iter().map(|p| (p, all, true)))
        .collect();
    entries.sort_by_cached_key(|(p, _, _)| p.components().count());
    for (p, rights, check) in entries {
        // Split already (see [`split_roots`]), or beneath a directory given all it would.
        if !check
            && (above_hidden(p, &hidden)
                || dirs
                    .iter()
                    .any(|(d, r)| p.starts_with(d) && p != d && r.contains(rights)))
        {
            continue;
        }
        let recorded = plan.root_ids.iter().find(|(x, _)| check && x == p);
        let fd = match warden_sys::open_no_links(p, warden_sys::OFlags::PATH) {
            Ok(fd) => fd,
            // A resolved root the plan checked is a symbolic link now: swapped.
            Err(_) if recorded.is_some() && std::fs::symlink_metadata(p).is_ok() => {
                return Err(LandlockError::Swapped(p.clone()));
            }
            // Missing, or a spelled root through a symbolic link (its twin has the rule).
            Err(_) => continue,
        };
        let Ok((dev, ino, mode)) = fstat_ids(&fd) else {
            continue;
        };
        // A read root that is a directory on the way to a hidden path under another name
        // (a bind mount of it): its rule would reach the hidden path.
        if !check && guarded.contains(&(dev, ino)) {
            continue;
        }
        if let Some((_, want)) = recorded {
            if (dev, ino) != *want {
                return Err(LandlockError::Swapped(p.clone()));
            }
        }
        let kind = mode & libc::S_IFMT;
        let access = match kind {
            libc::S_IFDIR => rights,
            libc::S_IFREG => rights & file_bits,
            _ => continue,
        };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|x| e(&format!("rule for {}", p.display()), x))?;
        if kind == libc::S_IFDIR {
            dirs.push((p.clone(), access));
        }
    }
    for d in DEVICES {
        rules.push((
            PathBuf::from(d),
            if *d == "/dev/shm" { all } else { dev & all },
        ));
    }
    for (p, access) in rules {
        // Rules on missing paths are skipped: they would grant nothing.
        let Ok(md) = std::fs::metadata(&p) else {
            continue;
        };
        use std::os::unix::fs::FileTypeExt;
        let ft = md.file_type();
        if !(ft.is_dir() || ft.is_file() || ft.is_char_device()) {
            continue;
        }
        let Ok(fd) = PathFd::new(&p) else { continue };
        let is_dir = ft.is_dir();
        let access = if is_dir { access } else { access & file_bits };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|x| e(&format!("rule for {}", p.display()), x))?;
    }
    if let Some(tty) = own_tty {
        created = created
            .add_rule(PathBeneath::new(tty, dev & file_bits))
            .map_err(|x| e("rule for the agent's pty", x))?;
    }
    if let Some(ports) = &plan.connect_tcp {
        for &port in ports {
            created = created
                .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
                .map_err(|x| e("tcp rule", x))?;
        }
    }
    let st = created.restrict_self().map_err(|x| e("restrict_self", x))?;
    if plan.hard {
        judge(plan.abi, &st.ruleset, &st.landlock)?;
    }
    Ok(st.ruleset)
}

/// The hidden paths a read rule must not reach: those whose directory no write rule covers
/// (a write rule grants every right beneath it, and Landlock cannot take one back below; there
/// only the hiding mount holds, see the README's table), each also as resolved now, so a rule
/// on a resolved twin of a spelled root is split too. A hidden file the agent's user cannot
/// read today is kept as well: the host may put a readable one there (attack review 106).
fn kept_hidden(plan: &LandlockPlan) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for h in &plan.hidden {
        let resolved = h
            .parent()
            .and_then(|d| Some(std::fs::canonicalize(d).ok()?.join(h.file_name()?)));
        for x in std::iter::once(h.clone()).chain(resolved) {
            let Some(dir) = x.parent() else { continue };
            if !plan.write.iter().any(|w| dir.starts_with(w)) && !out.contains(&x) {
                out.push(x);
            }
        }
    }
    out
}

/// (device, inode) of every directory above a hidden path, and of each hidden path that
/// exists: no read rule may land on one of them, whatever name it was reached by (a bind
/// mount of such a directory under another name, a hard link to a hidden file; attack
/// review 106). The names on the way are split instead.
fn guarded_ids(hidden: &[PathBuf]) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<(u64, u64)> = Vec::new();
    for h in hidden {
        let own = std::fs::symlink_metadata(h)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let above = h
            .ancestors()
            .skip(1)
            .filter_map(|a| std::fs::metadata(a).ok().map(|m| (m.dev(), m.ino())));
        for id in own.into_iter().chain(above) {
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// The ruleset, with the rights it handles and its scopes, and no rule yet.
fn create(plan: &LandlockPlan) -> Result<landlock::RulesetCreated, LandlockError> {
    let e = |what: &str, source: landlock::RulesetError| LandlockError::Ruleset {
        what: what.to_string(),
        source,
    };
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .map_err(|x| e("handle fs", x))?;
    if plan.connect_tcp.is_some() {
        rs = rs
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|x| e("handle net", x))?;
    }
    rs = rs
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(|x| e("scope", x))?;
    rs.create().map_err(|x| e("create", x))
}

/// A ruleset holding the rules of the read roots above hidden paths (see [`split_roots`]),
/// the directories those rules gave all read rights, the hidden paths ([`kept_hidden`]),
/// those under a split root with their directory's device (to tell the hiding mount), and
/// the inodes no read rule may land on ([`guarded_ids`]).
pub struct Split {
    /// `None`: nothing was split, the agent creates the ruleset.
    created: Option<landlock::RulesetCreated>,
    dirs: Vec<(PathBuf, landlock::BitFlags<AccessFs>)>,
    hidden: Vec<PathBuf>,
    covers: Vec<(PathBuf, u64)>,
    guarded: Vec<(u64, u64)>,
}

/// [`split_roots`] on a thread, while the supervisor sets up the rest: a split lists and
/// opens every entry of the directories above a hidden path (`/etc`: ~150 entries, ~0.5 ms),
/// off the agent's start. It runs in the supervisor's mount namespace, whose roots are the
/// same inodes the view binds: no writable root is above a split directory ([`kept_hidden`]),
/// so these are the host's read-only roots. The thread must be joined ([`Prepared::wait`])
/// before any fork. With nothing to split, no thread is started and the agent makes the
/// ruleset itself, as before.
pub fn prepare(plan: &LandlockPlan) -> Prepared {
    let hidden = kept_hidden(plan);
    if !plan.read.iter().any(|p| above_hidden(p, &hidden)) {
        return Prepared(Err(Split {
            created: None,
            dirs: Vec::new(),
            hidden,
            covers: Vec::new(),
            guarded: Vec::new(),
        }));
    }
    let plan = plan.clone();
    Prepared(Ok(std::thread::spawn(move || {
        split_roots(create(&plan)?, &plan, hidden)
    })))
}

/// The split being built ([`prepare`]), or the nothing there was to split.
pub struct Prepared(Result<std::thread::JoinHandle<Result<Split, LandlockError>>, Split>);

impl Prepared {
    /// Joins the thread: its ruleset, for [`apply`] in the agent.
    pub fn wait(self) -> Result<Split, LandlockError> {
        match self.0 {
            Ok(t) => t.join().unwrap_or(Err(LandlockError::SplitLost)),
            Err(nothing) => Ok(nothing),
        }
    }
}

/// Whether `p` is a proper ancestor of a hidden path.
fn above_hidden(p: &Path, hidden: &[PathBuf]) -> bool {
    hidden.iter().any(|h| h.starts_with(p) && h != p)
}

/// Every read root above a hidden path split ([`split`]), outermost first; one beneath
/// another split root was split (or given its rule) with it.
fn split_roots(
    mut created: landlock::RulesetCreated,
    plan: &LandlockPlan,
    hidden: Vec<PathBuf>,
) -> Result<Split, LandlockError> {
    use std::os::unix::fs::MetadataExt;
    let read = AccessFs::from_read(TARGET_ABI);
    let mut roots: Vec<&PathBuf> = (plan.read.iter())
        .filter(|p| above_hidden(p, &hidden))
        .collect();
    roots.sort_by_cached_key(|p| p.components().count());
    let mut done: Vec<&Path> = Vec::new();
    let mut dirs = Vec::new();
    let guarded = if roots.is_empty() {
        Vec::new()
    } else {
        guarded_ids(&hidden)
    };
    for r in roots {
        if done.iter().any(|d| r.starts_with(d)) {
            continue;
        }
        created = split(created, r, read, &hidden, &guarded, &mut dirs)?;
        done.push(r);
    }
    let covers = (hidden.iter())
        .filter(|h| done.iter().any(|d| h.starts_with(d)))
        .filter_map(|h| Some((h.clone(), std::fs::metadata(h.parent()?).ok()?.dev())))
        .collect();
    Ok(Split {
        created: Some(created),
        dirs,
        hidden,
        covers,
        guarded,
    })
}

/// A read rule on `dir`, an ancestor of hidden paths, split so that no rule reaches them:
/// `dir` itself gets only `ReadDir`, and each of its entries gets `rights` (files: the file
/// rights among them), except a hidden path (no rule) and a directory above one (split in
/// turn). The entries are opened beneath `dir` without following links (a symbolic link gets
/// no rule: its target's own rules decide).
///
/// So a file the host creates in such a directory during the session, or puts there by
/// rename (over a hidden file, or over any other), has no rule: the agent cannot open it. That
/// is the point for a hidden name (the hiding mount goes with the replaced inode), and the
/// price for the others (stated in the README).
fn split(
    mut created: landlock::RulesetCreated,
    dir: &Path,
    rights: landlock::BitFlags<AccessFs>,
    hidden: &[PathBuf],
    guarded: &[(u64, u64)],
    dirs: &mut Vec<(PathBuf, landlock::BitFlags<AccessFs>)>,
) -> Result<landlock::RulesetCreated, LandlockError> {
    use warden_sys::OFlags;
    let e = |what: &Path, source: landlock::RulesetError| LandlockError::Ruleset {
        what: format!("rule for {}", what.display()),
        source,
    };
    let under = || {
        hidden
            .iter()
            .find(|h| h.starts_with(dir))
            .cloned()
            .unwrap_or_default()
    };
    let fd = match warden_sys::open_no_links(dir, OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        // Missing (nothing to grant) or a link (its resolved twin is split).
        Err(x) if matches!(x.errno(), Some(n) if n == warden_sys::Errno::NOENT || n == warden_sys::Errno::LOOP || n == warden_sys::Errno::XDEV || n == warden_sys::Errno::NOTDIR) => {
            return Ok(created)
        }
        Err(source) => {
            return Err(LandlockError::Split {
                dir: dir.to_path_buf(),
                hidden: under(),
                source,
            })
        }
    };
    let entries = warden_sys::dir_entries(&fd).map_err(|source| LandlockError::Split {
        dir: dir.to_path_buf(),
        hidden: under(),
        source,
    })?;
    let file_bits = AccessFs::from_file(TARGET_ABI);
    let open = |name: &std::ffi::OsStr| {
        warden_sys::open_beneath(
            &fd,
            Path::new(name),
            OFlags::PATH,
            warden_sys::Mode::empty(),
        )
        .ok()
    };
    for (name, kind) in entries {
        let path = dir.join(&name);
        // A symbolic link gets no rule (its target's own rules decide): not even opened.
        if kind == warden_sys::FileType::Symlink {
            continue;
        }
        if hidden.contains(&path) {
            continue;
        }
        // Gone since the listing: nothing to grant.
        let Some(child) = open(&name) else { continue };
        let Ok((dev, ino, mode)) = fstat_ids(&child) else {
            continue;
        };
        let kind = mode & libc::S_IFMT;
        if kind == libc::S_IFDIR && hidden.iter().any(|h| h.starts_with(&path)) {
            drop(child);
            created = split(created, &path, rights, hidden, guarded, dirs)?;
            continue;
        }
        // The same directory or file as one on the way to a hidden path, or as a hidden file,
        // under another name: no rule (a rule there would reach the hidden path).
        if guarded.contains(&(dev, ino)) {
            continue;
        }
        match kind {
            libc::S_IFDIR => {
                created = created
                    .add_rule(PathBeneath::new(child, rights))
                    .map_err(|x| e(&path, x))?;
                dirs.push((path, rights));
            }
            libc::S_IFREG => {
                created = created
                    .add_rule(PathBeneath::new(child, rights & file_bits))
                    .map_err(|x| e(&path, x))?;
            }
            _ => {}
        }
    }
    created
        .add_rule(PathBeneath::new(fd, rights & AccessFs::ReadDir))
        .map_err(|x| e(dir, x))
}

/// Hard mode's verdict on what `restrict_self` reported: the agent runs only when Landlock is
/// enforced, the kernel offers at least the ABI the session was planned for (`planned`), and
/// a partial enforcement is explained by a kernel older than [`TARGET_ABI`] (the planner
/// accepted that kernel, covering the missing rights with namespaces).
pub fn judge(
    planned: i32,
    ruleset: &RulesetStatus,
    kernel: &LandlockStatus,
) -> Result<(), LandlockError> {
    let effective = match kernel {
        LandlockStatus::Available { effective_abi, .. } => *effective_abi as i32,
        _ => 0,
    };
    if *ruleset == RulesetStatus::NotEnforced || effective == 0 {
        return Err(LandlockError::NotEnforced {
            kernel: format!("{kernel:?}"),
        });
    }
    if effective < planned.min(TARGET_ABI as i32) {
        return Err(LandlockError::OlderAbi { effective, planned });
    }
    if *ruleset == RulesetStatus::PartiallyEnforced && effective >= TARGET_ABI as i32 {
        return Err(LandlockError::Partial {
            effective,
            target: TARGET_ABI as i32,
        });
    }
    Ok(())
}

/// The Landlock ABI version the kernel offers (0 when unavailable).
pub fn abi_version() -> i32 {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION with a NULL attr only queries the version.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    if r < 0 {
        0
    } else {
        r as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(abi: ABI) -> LandlockStatus {
        LandlockStatus::Available {
            effective_abi: abi,
            kernel_abi: None,
        }
    }

    #[test]
    fn hard_mode_accepts_what_was_planned() {
        // A kernel at or past the target: everything enforced.
        judge(7, &RulesetStatus::FullyEnforced, &kernel(ABI::V7)).expect("V7 kernel");
        judge(6, &RulesetStatus::FullyEnforced, &kernel(ABI::V6)).expect("V6 kernel");
        // An older kernel the planner accepted (namespaces cover scopes and ioctl).
        judge(4, &RulesetStatus::PartiallyEnforced, &kernel(ABI::V4)).expect("V4 kernel");
    }

    #[test]
    fn hard_mode_refuses_what_would_not_hold() {
        for (planned, ruleset, k, what) in [
            (
                6,
                RulesetStatus::NotEnforced,
                LandlockStatus::NotEnabled,
                "not enforced",
            ),
            (
                6,
                RulesetStatus::NotEnforced,
                LandlockStatus::NotImplemented,
                "not enforced",
            ),
            (
                6,
                RulesetStatus::PartiallyEnforced,
                kernel(ABI::V4),
                "less than",
            ),
            (
                6,
                RulesetStatus::PartiallyEnforced,
                kernel(ABI::V6),
                "partly",
            ),
            (
                7,
                RulesetStatus::PartiallyEnforced,
                kernel(ABI::V7),
                "partly",
            ),
        ] {
            let err = judge(planned, &ruleset, &k).expect_err(what).to_string();
            assert!(err.contains(what), "{err}");
            assert!(
                err.contains("--best-effort"),
                "says how to run anyway: {err}"
            );
        }
    }

    /// A write root that is not the inode the plan recorded is refused while the rules are
    /// built (before anything is restricted, so this thread stays as it was).
    #[test]
    fn a_swapped_write_root_is_refused() {
        use std::os::unix::fs::MetadataExt;
        let d = std::env::temp_dir().join(format!("warden-lockswap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a")).unwrap();
        std::fs::create_dir_all(d.join("b")).unwrap();
        let m = std::fs::metadata(d.join("b")).unwrap();
        let plan = LandlockPlan {
            abi: 6,
            read: Vec::new(),
            write: vec![d.join("a")],
            root_ids: vec![(d.join("a"), (m.dev(), m.ino()))],
            hidden: Vec::new(),
            connect_tcp: None,
            hard: false,
        };
        match apply(&plan, None, None) {
            Err(LandlockError::Swapped(p)) => assert_eq!(p, d.join("a")),
            other => panic!("{other:?}"),
        }
        // Recorded right, but a symbolic link stands there now.
        let a = std::fs::metadata(d.join("a")).unwrap();
        std::fs::rename(d.join("a"), d.join("a.old")).unwrap();
        std::os::unix::fs::symlink(d.join("a.old"), d.join("a")).unwrap();
        let plan = LandlockPlan {
            root_ids: vec![(d.join("a"), (a.dev(), a.ino()))],
            ..plan
        };
        match apply(&plan, None, None) {
            Err(LandlockError::Swapped(p)) => assert_eq!(p, d.join("a")),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The split gives a rule to every directory beside the way to a hidden path, none to the
    /// directories on it (they get `ReadDir` only) or to the hidden path; the hidden file's
    /// inode is guarded (a hard link to it in a split directory gets no rule either); a
    /// hidden path under a write root splits nothing.
    #[test]
    fn a_read_root_is_split_around_hidden_paths_only_where_that_holds() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("warden-locksplit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let r = d.join("r");
        for dir in ["a", "sub/kept", "w"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        for f in ["f", "secret", "sub/key", "w/x", "closed"] {
            std::fs::write(r.join(f), "x").unwrap();
        }
        std::fs::hard_link(r.join("sub/key"), r.join("a/link")).unwrap();
        std::fs::set_permissions(r.join("closed"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let plan = LandlockPlan {
            abi: 6,
            read: vec![r.clone()],
            write: vec![r.join("w")],
            root_ids: Vec::new(),
            hidden: ["secret", "sub/key", "w/x", "closed"]
                .iter()
                .map(|h| r.join(h))
                .collect(),
            connect_tcp: None,
            hard: true,
        };
        let hidden = kept_hidden(&plan);
        assert!(hidden.contains(&r.join("secret")), "{hidden:?}");
        assert!(hidden.contains(&r.join("sub/key")), "{hidden:?}");
        assert!(
            !hidden.contains(&r.join("w/x")),
            "under a write root: {hidden:?}"
        );
        // Unreadable today is no reason: the host may put a readable one there.
        assert!(hidden.contains(&r.join("closed")), "{hidden:?}");
        let split = split_roots(create(&plan).unwrap(), &plan, hidden).unwrap();
        let granted: Vec<&Path> = split.dirs.iter().map(|(p, _)| p.as_path()).collect();
        for g in ["a", "sub/kept", "w"] {
            assert!(granted.contains(&r.join(g).as_path()), "{g}: {granted:?}");
        }
        for no in [r.clone(), r.join("sub")] {
            assert!(!granted.contains(&no.as_path()), "{no:?}: {granted:?}");
        }
        use std::os::unix::fs::MetadataExt;
        let link = std::fs::metadata(r.join("a/link")).unwrap();
        assert!(
            split.guarded.contains(&(link.dev(), link.ino())),
            "a hard link to a hidden file is guarded"
        );
        let covers: Vec<&Path> = split.covers.iter().map(|(p, _)| p.as_path()).collect();
        assert!(covers.contains(&r.join("secret").as_path()), "{covers:?}");
        // Nothing hidden under a read root: nothing to split, no thread.
        let plan = LandlockPlan {
            hidden: vec![r.join("w/x")],
            ..plan
        };
        assert!(matches!(prepare(&plan).0, Err(Split { created: None, .. })));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_target_abi_names_the_rights_warden_relies_on() {
        let all = AccessFs::from_all(TARGET_ABI);
        for r in [AccessFs::Refer, AccessFs::Truncate, AccessFs::IoctlDev] {
            assert!(all.contains(r), "{r:?}");
        }
        assert_eq!(
            ABI::V6,
            TARGET_ABI,
            "raising the target is a reviewed change"
        );
    }
}
