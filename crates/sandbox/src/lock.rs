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
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(|x| e("handle fs", x))?;
    if plan.connect_tcp.is_some() {
        rs = rs
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|x| e("handle net", x))?;
    }
    rs = rs
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(|x| e("scope", x))?;
    let mut created = rs.create().map_err(|x| e("create", x))?;
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
    let mut dirs: Vec<(&Path, landlock::BitFlags<AccessFs>)> = Vec::new();
    for (p, rights, check) in entries {
        if !check
            && dirs
                .iter()
                .any(|(d, r)| p.starts_with(d) && p != d && r.contains(rights))
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
            dirs.push((p, access));
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
            connect_tcp: None,
            hard: false,
        };
        match apply(&plan, None) {
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
        match apply(&plan, None) {
            Err(LandlockError::Swapped(p)) => assert_eq!(p, d.join("a")),
            other => panic!("{other:?}"),
        }
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
