//! Landlock: file access rules and scoping, applied to the agent process right before exec.
//!
//! Read roots get execute + read; write roots get every filesystem right. A fixed set of
//! device files (`/dev/null`, `/dev/tty`, ...) gets read/write/ioctl; nothing else under
//! `/dev` is reachable, so raw disks stay closed even to a uid-0 agent. Scoping (ABI 6)
//! stops signals and abstract-unix-socket connections to anything outside the sandbox.

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use std::path::PathBuf;

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
    pub abi: i32,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    /// When the sandbox has no network namespace: TCP ports the agent may connect to.
    pub connect_tcp: Option<Vec<u16>>,
    pub hard: bool,
}

fn abi_of(n: i32) -> ABI {
    match n {
        i32::MIN..=0 => ABI::Unsupported,
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        _ => ABI::V7,
    }
}

/// Applies the ruleset to the calling (single-threaded) process. no_new_privs must be set.
pub fn apply(plan: &LandlockPlan) -> Result<RulesetStatus, String> {
    let abi = abi_of(plan.abi);
    let level = if plan.hard {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let e = |what: &str, err: &dyn std::fmt::Display| format!("landlock: {what}: {err}");
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let file_bits = AccessFs::from_file(abi);
    let mut rs = Ruleset::default()
        .set_compatibility(level)
        .handle_access(all)
        .map_err(|x| e("handle fs", &x))?;
    if plan.connect_tcp.is_some() {
        rs = rs
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|x| e("handle net", &x))?;
    }
    if plan.abi >= 6 {
        rs = rs
            .scope(Scope::Signal | Scope::AbstractUnixSocket)
            .map_err(|x| e("scope", &x))?;
    }
    let mut created = rs.create().map_err(|x| e("create", &x))?;
    let dev = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev | AccessFs::ReadDir;
    let mut rules: Vec<(PathBuf, landlock::BitFlags<AccessFs>)> = Vec::new();
    rules.extend(plan.read.iter().map(|p| (p.clone(), read)));
    rules.extend(plan.write.iter().map(|p| (p.clone(), all)));
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
            .map_err(|x| e(&format!("rule for {}", p.display()), &x))?;
    }
    if let Some(ports) = &plan.connect_tcp {
        for &port in ports {
            created = created
                .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
                .map_err(|x| e("tcp rule", &x))?;
        }
    }
    let st = created
        .restrict_self()
        .map_err(|x| e("restrict_self", &x))?;
    if plan.hard && st.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!("landlock: ruleset only {:?}", st.ruleset));
    }
    Ok(st.ruleset)
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
