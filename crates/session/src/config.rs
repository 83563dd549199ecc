//! [`SessionConfig::resolve`]: every decision `warden run` makes before it touches the host,
//! as one pure function of the effective policy, the probed machine ([`HostFeatures`]) and
//! the command line ([`RunOptions`]). Pure: it writes no file, starts no thread and changes no
//! environment variable, so it is unit-tested over a matrix of machines and `--dry-run`
//! prints its result ([`SessionConfig::describe`]).
//!
//! What it decides: the workspace guard, which required guarantees are missing (refuse, or
//! run with `--best-effort`), whether this run is nested in another warden sandbox, the
//! exec-guard backend, how the pids limit is held, how the session is frozen, the Landlock
//! plan, the proxy's mode, the risk configuration and freeze timeout, and what the audit
//! store is told at session start. What it does not decide: the sandbox's file-system view
//! ([`warden_sandbox::Plan`]), which depends on the host's files and is built at start.

use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_policy::{Loaded, Policy};
use warden_sandbox::report::Guarantee;
use warden_sandbox::Features;

/// Where session state lives: outside every path the sandbox can write (the sandbox's
/// `$HOME` is a private tmpfs, so the real directory is not even visible inside).
pub fn state_dir(home: &Path) -> PathBuf {
    home.join(".local/state/warden")
}

/// The persistent stamp → SHA-256 cache (outside anything the sandbox can write).
pub fn hash_cache_path(home: &Path) -> PathBuf {
    state_dir(home).join("hash-cache.bin")
}

/// A fresh session id: start time (ms, hex) and the supervisor's pid.
pub fn new_session_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}-{:x}", t.as_millis(), std::process::id())
}

/// The exec-guard backend the user asked for (`--exec-guard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecChoice {
    Auto,
    Bpf,
    Seccomp,
    Off,
}

/// The command line of `warden run`, already parsed.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The canonical workspace directory.
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub command: Vec<String>,
    pub session_id: String,
    pub best_effort: bool,
    pub allow_broad_workspace: bool,
    pub exec_guard: ExecChoice,
    pub no_index: bool,
    pub proxy_hosts_file: Option<PathBuf>,
    pub quiet: bool,
    pub verbose: u8,
}

/// What the machine offers, probed once before [`SessionConfig::resolve`] (which only reads
/// this). [`HostFeatures::probe`] gathers it.
#[derive(Debug, Clone)]
pub struct HostFeatures {
    pub sandbox: Features,
    /// The pid namespace has its own `pid_max` (Linux 6.14+).
    pub pidns_pid_max: bool,
    /// `WARDEN_SANDBOX=1` is set in this process's environment.
    pub warden_env: bool,
    /// The BPF LSM daemon's answer, when it was asked (`--exec-guard auto|bpf`).
    pub daemon: Option<Result<(), String>>,
}

impl HostFeatures {
    /// Probes the machine (read-only: kernel features, the environment, the daemon's socket).
    pub fn probe(best_effort: bool, simulate_no_userns: bool, exec: ExecChoice) -> HostFeatures {
        let mut sandbox = if best_effort {
            warden_sandbox::probe()
        } else {
            warden_sandbox::probe_fast()
        };
        if simulate_no_userns {
            sandbox.user_namespaces = false;
        }
        let daemon = matches!(exec, ExecChoice::Auto | ExecChoice::Bpf)
            .then(|| warden_daemon::client::status(Path::new(warden_daemon::SOCKET)).map(|_| ()));
        HostFeatures {
            sandbox,
            pidns_pid_max: warden_sandbox::pidns_pid_max_supported(),
            warden_env: std::env::var_os("WARDEN_SANDBOX").is_some_and(|v| v == "1"),
            daemon,
        }
    }
}

/// Why a session was not started. [`ConfigError::kind`] maps each to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("workspace {} contains your home directory; run warden from a project directory (or pass --allow-broad-workspace)", .0.display())]
    BroadWorkspace(PathBuf),
    #[error("policy file {} is a symlink inside the workspace: the agent could replace the link and choose the next session's policy; pass the file it points to (--policy/--profile {}), or keep the policy outside the workspace", .0.display(), .1.display())]
    LinkedPolicy(PathBuf, PathBuf),
    #[error("workspace {} is inside warden's own directory {} (or is a second path, such as a bind mount, to a directory holding it): the agent could rewrite warden's policy, state or audit record there; run warden from a project directory outside it (no flag allows this)", .0.display(), .1.display())]
    WardenWorkspace(PathBuf, PathBuf),
    #[error("policy: {key} entry `{entry}` would let the agent write warden's own directory {} (its policy, audit store, hash cache and compiled seccomp programs decide later sessions); remove the entry (no flag allows this)", .dir.display())]
    WardenWritable {
        key: &'static str,
        entry: String,
        dir: PathBuf,
    },
    #[error("policy: {key} entry `{entry}` would let the agent read warden's own directory {} (the audit store holds every session's commands); remove the entry (no flag allows this)", .dir.display())]
    WardenReadable {
        key: &'static str,
        entry: String,
        dir: PathBuf,
    },
    #[error("policy: {key} entry `{entry}` is reached through the symlink {}, which lies inside the agent-writable {}: the agent could point it anywhere before a session makes it writable; name the real directory in the policy (no flag allows this)", .link.display(), .root.display())]
    LinkedRoot {
        key: &'static str,
        entry: String,
        link: PathBuf,
        root: PathBuf,
    },
    #[error("policy: {key} entry `{entry}` is reached through more than one symlink ({links}): a link below `$HOME`'s own entries may lie in a directory some session's agent could write, and point this root anywhere; point the first link straight at the real directory (no flag allows this)")]
    ChainedRoot {
        key: &'static str,
        entry: String,
        links: String,
    },
    #[error("{entry} (agent.state) is a symlink to {}, which does not exist: create that directory (mkdir -p {}) or remove the link, then run warden again", .target.display(), .target.display())]
    DanglingState { entry: String, target: PathBuf },
    #[error("policy: {key} entry `{entry}` is reached through a symlink and lands at {}, inside `{protected}` ({rule}): a directory warden locks or hides is never made writable through a link (an agent of an earlier session may have pointed it there); point the link elsewhere, or name the directory itself in the policy", .target.display())]
    LinkedProtected {
        key: &'static str,
        entry: String,
        target: PathBuf,
        protected: String,
        rule: &'static str,
    },
    #[error("the BPF LSM exec-guard backend needs `warden daemon` running as root on a kernel that loads BPF LSM programs ({0}); see `warden doctor`, or use --exec-guard seccomp")]
    NoDaemon(String),
    /// The full message lists each missing guarantee.
    #[error("{0}")]
    Unsupported(String),
    #[error("network policy: {0}")]
    Network(warden_policy::RuleError),
    #[error("policy: {0}")]
    Risk(warden_risk::RiskError),
}

/// The class of a failure, which the CLI maps onto its documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The workspace is missing or unusable (exit 5).
    Workspace,
    /// The policy is invalid (exit 3).
    Policy,
    /// The machine cannot deliver the policy (exit 4).
    Unsupported,
    /// The command is not found or hidden (exit 127).
    NotFound,
    /// The command exists but cannot be executed (exit 126).
    NotExecutable,
    /// Anything else (exit 1).
    Internal,
    /// A signal (its number) ended the start before the agent ran (exit 128 + it, as a
    /// shell reports a command the signal ended).
    Interrupted(i32),
}

impl ConfigError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConfigError::BroadWorkspace(_)
            | ConfigError::WardenWorkspace(..)
            | ConfigError::LinkedPolicy(..) => ErrorKind::Workspace,
            ConfigError::NoDaemon(_) | ConfigError::Unsupported(_) => ErrorKind::Unsupported,
            ConfigError::Network(_)
            | ConfigError::Risk(_)
            | ConfigError::WardenWritable { .. }
            | ConfigError::WardenReadable { .. }
            | ConfigError::LinkedRoot { .. }
            | ConfigError::LinkedProtected { .. }
            | ConfigError::DanglingState { .. }
            | ConfigError::ChainedRoot { .. } => ErrorKind::Policy,
        }
    }
}

/// A message for the human before the session starts. `Warn` lines print as
/// `warden: warning: <text>` (coloured on terminals), `Note` lines as `warden: <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Warn(String),
    Note(String),
}

/// The exec-guard backend of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecBackend {
    /// `--exec-guard off`.
    OffByFlag,
    /// Nested in a warden sandbox: the outer exec guard traps and traces every descendant
    /// (seccomp filters stack; its tracer auto-attaches), and ptrace is denied here.
    OffNested,
    /// seccomp user notification + exec tracing, supervised by this process.
    Seccomp,
    /// BPF LSM programs of `warden daemon`: the session's cgroup is enforced in the kernel.
    Bpf,
}

impl ExecBackend {
    pub fn is_on(&self) -> bool {
        matches!(self, ExecBackend::Seccomp | ExecBackend::Bpf)
    }
}

/// How the pids limit is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidLimit {
    /// The sandbox's pid namespace's own `pid_max` (free; Linux 6.14+).
    PidNamespace,
    /// A pids cgroup of its own (moving a process into a cgroup v1 costs ~10 ms). Falls back
    /// to `RLIMIT_NPROC` at start if the cgroup cannot be made.
    PidsCgroup,
    /// `RLIMIT_NPROC` (per uid).
    RlimitNproc,
    /// The BPF daemon's session cgroup carries it (a process is in one cgroup only, and the
    /// programs scope by that one).
    DaemonCgroup,
}

/// How the session's whole tree is stopped (freeze, thaw, kill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerPlan {
    /// A cgroup v2 leaf per session; signals if the leaf cannot be made.
    CgroupLeaf,
    /// Signals from outside: the tree already sits in a pids cgroup or the daemon's cgroup.
    Signals,
}

/// Where the agent may connect over TCP under Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectScope {
    /// A network namespace isolates the agent; Landlock adds no TCP rules.
    Namespace,
    /// No network namespace: only the proxy's host-loopback port (Landlock rules name ports,
    /// not addresses; see the README's guarantees table). No port at all without a proxy.
    ProxyPortOnly,
}

/// The Landlock part of the sandbox (its paths come from the sandbox plan at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandlockConfig {
    pub abi: i32,
    /// Not best effort: refuse to run unless Landlock reports the ruleset enforced as
    /// planned (`warden_sandbox::lock::judge`).
    pub hard: bool,
    pub connect: ConnectScope,
}

/// Where the proxy listens and how the agent reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyMode {
    /// The agent's network namespace has only loopback; a bridge in the sandbox's init hands
    /// each connection to 127.0.0.1:3128 (and each allowed host loopback port) to the proxy.
    NetnsBridge { gateway_ports: Vec<u16> },
    /// No network namespace: the proxy listens on a host loopback port that Landlock (ABI 4+)
    /// alone lets the agent reach.
    HostLoopback,
    /// No way to confine the agent's network to a proxy: no proxy (best effort only).
    None,
}

/// What the audit store is told when the session starts (`start_ms` is set at start).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub store: PathBuf,
    pub retention: warden_audit::Retention,
    pub info: warden_audit::SessionInfo,
}

/// Every decision of one session, resolved before anything on the host changes.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub session_id: String,
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub command: Vec<String>,
    pub profile: String,
    pub policy: Policy,
    pub features: Features,
    pub best_effort: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub no_index: bool,
    /// Required guarantees this machine does not deliver (only with `--best-effort` or when
    /// nested in another sandbox).
    pub missing: Vec<Guarantee>,
    /// This run is inside a warden sandbox (nested).
    pub nested_in_warden: bool,
    /// Messages for the human, in order, before the session starts.
    pub notices: Vec<Notice>,
    pub exec: ExecBackend,
    pub pids: PidLimit,
    pub freezer: FreezerPlan,
    pub landlock: LandlockConfig,
    pub proxy: ProxyMode,
    pub proxy_hosts_file: Option<PathBuf>,
    pub risk: warden_risk::RiskConfig,
    pub freeze_timeout: Option<Duration>,
    pub audit: AuditConfig,
    pub state_dir: PathBuf,
    pub hash_cache: PathBuf,
    /// The policy files this session was started with (`--policy`, `--profile` files and
    /// their `extends`, the user's and the workspace's): locked read-only when a writable
    /// root holds them, since they decide the next session.
    pub policy_files: Vec<PathBuf>,
}

/// The workspace guard. One inside warden's own configuration, state or data directories
/// ([`warden_dirs`]) would let the agent write warden's policy, audit store, hash cache or
/// allowlist index (always refused). A workspace that is `/` or contains `$HOME` exposes
/// everything (refused unless `allow_broad`), judged by path and by identity: it is refused
/// when it is the same directory (device and inode) as `$HOME` or one of its ancestors, so a
/// symlinked or bind-mounted alias of the home directory is caught too.
pub fn check_workspace(ws: &Path, home: &Path, allow_broad: bool) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    if let Some(d) = warden_dir_conflict(ws, home) {
        return Err(ConfigError::WardenWorkspace(ws.to_path_buf(), d));
    }
    if allow_broad {
        return Ok(());
    }
    if ws == Path::new("/") || home.starts_with(ws) {
        return Err(ConfigError::BroadWorkspace(ws.to_path_buf()));
    }
    if let Some(w) = id(ws) {
        if home.ancestors().any(|a| id(a) == Some(w)) {
            return Err(ConfigError::BroadWorkspace(ws.to_path_buf()));
        }
    }
    Ok(())
}

/// The warden directory ([`warden_dirs`]) that a writable `p` would expose: one `p` is, or
/// lies inside (by path, resolved path, or identity: a bind-mounted alias of `~/.config` is
/// the same directory), or one that `p` holds under another path (an alias of one of its
/// ancestors, where the sandbox's lock of the spelled path would not reach it). A warden
/// directory plainly inside `p` is not a conflict: the sandbox locks it read-only there
/// (`files.protect` and [`warden_dirs`] in the plan).
pub fn warden_dir_conflict(p: &Path, home: &Path) -> Option<PathBuf> {
    WardenDirs::new(home).conflict(p)
}

type Ident = (u64, u64);

/// [`warden_dirs`] with the (device, inode) of every path looked at, each `stat`ed once:
/// a policy names dozens of roots, judged against the same few directories. Through the
/// resolver that followed the roots, which has `lstat`ed every component on their way
/// already (an ancestor that is no symlink needs no `stat` of its own).
struct WardenDirs {
    dirs: Vec<PathBuf>,
    resolver: std::cell::RefCell<warden_sandbox::resolve::Resolver>,
}

impl WardenDirs {
    fn new(home: &Path) -> WardenDirs {
        WardenDirs {
            dirs: warden_dirs(home),
            resolver: Default::default(),
        }
    }

    fn id(&self, p: &Path) -> Option<Ident> {
        self.resolver.borrow_mut().stat(p).map(|s| (s.dev, s.ino))
    }

    /// See [`warden_dir_conflict`].
    fn conflict(&self, p: &Path) -> Option<PathBuf> {
        self.conflict_at(p, p.canonicalize().ok())
    }

    /// [`WardenDirs::conflict`] for a root `p` that lands at `landing` (its symlinks
    /// followed, a missing rest as spelled): the landing lexically (a root that does not
    /// exist yet), then `p` as it resolves.
    fn conflict_landing(&self, p: &Path, landing: Option<&Path>) -> Option<PathBuf> {
        landing
            .and_then(|l| self.dirs.iter().find(|d| l.starts_with(d)).cloned())
            .or_else(|| {
                let real = landing
                    .filter(|l| self.id(l).is_some())
                    .map(Path::to_path_buf);
                self.conflict_at(p, real)
            })
    }

    /// [`WardenDirs::conflict`] with `p`'s resolved form already known (`None`: missing).
    fn conflict_at(&self, p: &Path, real: Option<PathBuf>) -> Option<PathBuf> {
        let ids: Vec<Ident> = p.ancestors().filter_map(|a| self.id(a)).collect();
        let own = self.id(p);
        self.dirs
            .iter()
            .find(|d| {
                let did = self.id(d);
                if p.starts_with(d)
                    || real.as_ref().is_some_and(|w| w.starts_with(d))
                    || did.is_some_and(|i| ids.contains(&i))
                {
                    return true;
                }
                did.is_some()
                    && own.is_some()
                    && !real.as_ref().is_some_and(|w| d.starts_with(w))
                    && !d.starts_with(p)
                    && d.ancestors().skip(1).any(|a| self.id(a) == own)
            })
            .cloned()
    }
}

/// The policy's writable roots (`files.write`, `agent.state`, `files.cache`), judged where
/// they land (symlinks followed, a missing rest as spelled):
/// - none may expose warden's own directories ([`warden_dir_conflict`]): the agent would
///   rewrite the policy, the audit store, the hash cache or the compiled seccomp programs
///   that later sessions load;
/// - none may be reached through a symlink that lies inside an agent-writable root (the
///   workspace, or another writable root): the agent (of this session or an earlier one)
///   could point it anywhere before a session binds it writable.
///
/// Refused whatever policy file asks (no flag allows it). The sandbox's plan checks the
/// same again on the roots as resolved when the session starts (`Plan::lock_within_writable`).
pub fn check_writable_roots(
    policy: &Policy,
    home: &Path,
    workspace: &Path,
) -> Result<(), ConfigError> {
    let anchors = warden_policy::Anchors {
        home: home.to_path_buf(),
        workspace: workspace.to_path_buf(),
    };
    let index = WardenDirs::new(home);
    let mut entries = Vec::new();
    for (key, list) in [
        ("files.write", &policy.files.write),
        ("agent.state", &policy.agent.state),
        ("files.cache", &policy.files.cache),
    ] {
        for entry in list {
            let p = anchors.expand(entry.trim_end_matches('/'));
            let chain = index.resolver.borrow_mut().chain_lenient(&p);
            // An agent state directory that is a dangling symlink (a dotfile checkout not
            // made yet): neither warden nor the agent can create it through the link.
            if key == "agent.state" && index.id(&p).is_none() {
                if let Some(c) = chain.as_ref().filter(|c| !c.links.is_empty()) {
                    return Err(ConfigError::DanglingState {
                        entry: entry.clone(),
                        target: c.target.clone(),
                    });
                }
            }
            entries.push((key, entry, p, chain));
        }
    }
    // Readable roots must not be, or lie inside, a user's warden directory either.
    let user_dirs: Vec<&PathBuf> = index.dirs.iter().filter(|d| is_user_dir(d)).collect();
    for (key, list) in [
        ("files.read", &policy.files.read),
        ("files.system", &policy.files.system),
        ("agent.install", &policy.agent.install),
    ] {
        for entry in list {
            let p = anchors.expand(entry.trim_end_matches('/'));
            let landing = index
                .resolver
                .borrow_mut()
                .chain_lenient(&p)
                .map(|c| c.target);
            if let Some(d) = index
                .conflict_landing(&p, landing.as_deref())
                .filter(|d| user_dirs.contains(&d))
            {
                return Err(ConfigError::WardenReadable {
                    key,
                    entry: entry.clone(),
                    dir: d,
                });
            }
        }
    }
    // Only a root reached through a symlink is judged against them (most policies have none).
    let linked = entries
        .iter()
        .any(|(_, _, _, c)| c.as_ref().is_some_and(|c| !c.links.is_empty()));
    let guarded = if linked {
        guarded_paths(policy, &anchors, &mut index.resolver.borrow_mut())
    } else {
        Vec::new()
    };
    let mut writable: Vec<PathBuf> = vec![workspace.to_path_buf()];
    writable.extend(workspace.canonicalize().ok());
    for (_, _, p, chain) in &entries {
        writable.push(p.clone());
        writable.extend(chain.as_ref().map(|c| c.target.clone()));
    }
    for (key, entry, p, chain) in &entries {
        let landing = chain.as_ref().map(|c| c.target.as_path());
        if let Some(d) = index.conflict_landing(p, landing) {
            return Err(ConfigError::WardenWritable {
                key,
                entry: entry.to_string(),
                dir: d,
            });
        }
        // Reached through a symlink, it must not land in a protected or hidden path (attack
        // review 56: `~/.claude -> src/dotfiles/claude`, the workspace `~/src` of an earlier
        // session replaced by a link to `~/.config/systemd/user`).
        if let Some(c) = chain.as_ref().filter(|c| !c.links.is_empty()) {
            if let Some((protected, rule)) = guarded
                .iter()
                .find(|(g, _, _)| c.target.starts_with(g))
                .map(|(_, e, r)| (e.clone(), *r))
            {
                return Err(ConfigError::LinkedProtected {
                    key,
                    entry: entry.to_string(),
                    target: c.target.clone(),
                    protected,
                    rule,
                });
            }
        }
        // More than one link on the way (besides `$HOME`'s own): a link that is not in
        // `$HOME` itself may sit in some session's workspace (`~/.claude -> dotfiles/claude`
        // then `dotfiles/claude -> ../victim`, replaced by an agent working in `~/dotfiles`;
        // attack review 57). One link from `$HOME` to the real directory is the dotfile
        // managers' layout, and the directories above the real one are pinned by any session
        // that locks something in it.
        if let Some(c) = chain.as_ref() {
            let hops: Vec<&PathBuf> = c
                .links
                .iter()
                .map(|(l, _)| l)
                .filter(|l| !home.starts_with(l))
                .collect();
            if hops.len() > 1 {
                return Err(ConfigError::ChainedRoot {
                    key,
                    entry: entry.to_string(),
                    links: hops
                        .iter()
                        .map(|l| l.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" -> "),
                });
            }
        }
        for (link, _) in chain.iter().flat_map(|c| &c.links) {
            if let Some(w) = writable.iter().find(|w| link.starts_with(w) && link != *w) {
                return Err(ConfigError::LinkedRoot {
                    key,
                    entry: entry.to_string(),
                    link: link.clone(),
                    root: w.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Protected and hidden paths (`files.protect`, `files.deny`), as spelled and where they
/// land (symlinks followed, a missing rest as spelled): (path, entry, rule). A writable root
/// reached through a symlink must not land in one ([`check_writable_roots`], and the
/// session again on the plan's resolved roots).
pub fn guarded_paths(
    policy: &Policy,
    anchors: &warden_policy::Anchors,
    resolver: &mut warden_sandbox::resolve::Resolver,
) -> Vec<(PathBuf, String, &'static str)> {
    let mut guarded = Vec::new();
    for (rule, list) in [
        ("files.protect", &policy.files.protect),
        ("files.deny", &policy.files.deny),
    ] {
        for entry in list {
            let g = anchors.expand(entry.trim_end_matches('/'));
            if let Some(t) = resolver
                .chain_lenient(&g)
                .map(|c| c.target)
                .filter(|t| *t != g)
            {
                guarded.push((t, entry.clone(), rule));
            }
            guarded.push((g, entry.clone(), rule));
        }
    }
    guarded
}

/// The per-user part of [`warden_dirs`] (policy, state, data; not `/etc/warden` or
/// `/var/lib/warden`): never readable by the agent either (the audit store holds every
/// session's commands).
pub fn user_warden_dirs(home: &Path) -> Vec<PathBuf> {
    warden_dirs(home)
        .into_iter()
        .filter(|d| is_user_dir(d))
        .collect()
}

fn is_user_dir(d: &Path) -> bool {
    !d.starts_with("/etc/warden") && !d.starts_with("/var/lib/warden")
}

/// Warden's own directories, each as spelled and as resolved (a symlinked `$HOME` or
/// `~/.config` names the same place twice): the user's policy (`~/.config/warden`), session
/// state, hash cache and audit store (`~/.local/state/warden`, `$XDG_STATE_HOME/warden`),
/// the allowlist index (`~/.local/share/warden`), and the
/// machine's (`/etc/warden`, `/var/lib/warden`).
///
/// Computed once per process and home (the policy check and the session's plan ask within
/// a millisecond; the environment it reads does not change).
pub fn warden_dirs(home: &Path) -> Vec<PathBuf> {
    type Memo = std::sync::Mutex<Vec<(PathBuf, Vec<PathBuf>)>>;
    static MEMO: Memo = std::sync::Mutex::new(Vec::new());
    let mut memo = MEMO.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, d)) = memo.iter().find(|(h, _)| h == home) {
        return d.clone();
    }
    let d = compute_warden_dirs(home);
    memo.push((home.to_path_buf(), d.clone()));
    d
}

fn compute_warden_dirs(home: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![
        home.join(".config/warden"),
        state_dir(home),
        home.join(".local/share/warden"),
        PathBuf::from("/etc/warden"),
        PathBuf::from("/var/lib/warden"),
    ];
    if let Some(x) = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        // Where the audit store goes then (`warden_audit::default_store_path`).
        dirs.push(x.join("warden"));
    }
    // The audit store moved by `WARDEN_AUDIT_DB`: its directory is warden's too (attack
    // review 50: a plain session in a tree holding it read and truncated it).
    if let Some(db) = std::env::var_os(warden_audit::STORE_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
    {
        let db = if db.is_absolute() {
            db
        } else {
            std::env::current_dir().unwrap_or_default().join(db)
        };
        dirs.extend(db.parent().map(Path::to_path_buf));
    }
    let mut out = Vec::new();
    for d in dirs {
        // The resolved form of the deepest part that exists, then the rest as spelled.
        let mut real = None;
        let mut rest = Vec::new();
        let mut cur = d.as_path();
        loop {
            if let Ok(r) = cur.canonicalize() {
                real = Some(rest.iter().rev().fold(r, |p: PathBuf, n| p.join(n)));
                break;
            }
            match (cur.parent(), cur.file_name()) {
                (Some(p), Some(n)) => {
                    rest.push(n.to_os_string());
                    cur = p;
                }
                _ => break,
            }
        }
        if let Some(r) = real.filter(|r| *r != d && r.as_path() != Path::new("/")) {
            out.push(r);
        }
        if d.as_path() != Path::new("/") {
            out.push(d);
        }
    }
    out
}

impl SessionConfig {
    /// Resolves every decision of the session. Pure (see the module doc).
    pub fn resolve(
        loaded: &Loaded,
        host: &HostFeatures,
        opts: &RunOptions,
    ) -> Result<SessionConfig, ConfigError> {
        let f = &host.sandbox;
        let policy = &loaded.policy;
        check_workspace(&opts.workspace, &opts.home, opts.allow_broad_workspace)?;
        check_writable_roots(policy, &opts.home, &opts.workspace)?;
        // Every path component up to the link's parent is resolved, so a link reached
        // through a symlinked directory of the workspace is found too.
        for l in loaded.linked_files() {
            let parent = l.parent().and_then(|d| std::fs::canonicalize(d).ok());
            if parent.is_some_and(|d| d.starts_with(&opts.workspace)) {
                let target = std::fs::canonicalize(&l).unwrap_or_else(|_| l.clone());
                return Err(ConfigError::LinkedPolicy(l, target));
            }
        }
        let mut notices = Vec::new();
        let nested_in_warden = f.nested && host.warden_env;
        let exec = if nested_in_warden {
            notices.push(Notice::Note(
                "nested in a warden sandbox: the outer exec guard covers this session".into(),
            ));
            ExecBackend::OffNested
        } else {
            match opts.exec_guard {
                ExecChoice::Off => {
                    notices.push(Notice::Warn(
                        "the exec guard is off (--exec-guard off): executables are not checked by content".into(),
                    ));
                    ExecBackend::OffByFlag
                }
                ExecChoice::Bpf => match &host.daemon {
                    Some(Ok(())) => ExecBackend::Bpf,
                    Some(Err(e)) => return Err(ConfigError::NoDaemon(e.clone())),
                    None => return Err(ConfigError::NoDaemon("not asked".into())),
                },
                ExecChoice::Auto if matches!(host.daemon, Some(Ok(()))) => ExecBackend::Bpf,
                ExecChoice::Auto | ExecChoice::Seccomp => ExecBackend::Seccomp,
            }
        };
        let missing = warden_sandbox::report::missing(f);
        let nested_ok = f.nested && !f.user_namespaces;
        if !missing.is_empty() {
            let mut msg = String::from("this machine cannot deliver the policy:\n");
            for g in &missing {
                msg.push_str(&format!(
                    "  - missing: {} (needs {})\n",
                    g.what, g.mechanism
                ));
            }
            if let Some(e) = &f.userns_error {
                msg.push_str(&format!("  user namespaces: {e}\n"));
            }
            if nested_ok {
                msg.push_str("  (running inside another sandbox: its restrictions still hold, and this one adds Landlock and seccomp on top)\n");
            }
            if !opts.best_effort && !nested_ok {
                msg.push_str("nothing was run; `warden doctor` explains, `--best-effort` runs with the guarantees above missing");
                return Err(ConfigError::Unsupported(msg.trim_end().to_string()));
            }
            notices.push(Notice::Warn(msg.trim_end().to_string()));
        }
        let net = warden_proxy::rules::NetRules::from_section(&policy.network)
            .map_err(ConfigError::Network)?;
        let proxy = if f.user_namespaces {
            ProxyMode::NetnsBridge {
                gateway_ports: net.loopback_ports().into_iter().map(|(p, _)| p).collect(),
            }
        } else if f.landlock_abi >= 4 {
            if let Some(n) = warden_proxy::gateway_unavailable_note(policy) {
                notices.push(Notice::Warn(n));
            }
            ProxyMode::HostLoopback
        } else {
            ProxyMode::None
        };
        let pids = if f.user_namespaces && host.pidns_pid_max {
            PidLimit::PidNamespace
        } else if exec == ExecBackend::Bpf {
            PidLimit::DaemonCgroup
        } else if f.cgroup_pids.is_some() {
            PidLimit::PidsCgroup
        } else {
            PidLimit::RlimitNproc
        };
        // A process is in one v2 cgroup only: a leaf of its own unless the tree already sits
        // in a pids cgroup or the daemon's cgroup.
        let freezer = if exec == ExecBackend::Bpf || pids == PidLimit::PidsCgroup {
            FreezerPlan::Signals
        } else {
            FreezerPlan::CgroupLeaf
        };
        let landlock = LandlockConfig {
            abi: f.landlock_abi,
            hard: !opts.best_effort,
            connect: if f.user_namespaces {
                ConnectScope::Namespace
            } else {
                ConnectScope::ProxyPortOnly
            },
        };
        let risk =
            warden_risk::RiskConfig::from_section(&policy.risk).map_err(ConfigError::Risk)?;
        let freeze_timeout = policy
            .risk
            .freeze_timeout_secs
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        let audit = AuditConfig {
            store: warden_audit::default_store_path(&opts.home),
            retention: warden_audit::Retention::with_policy(
                policy.audit.retention_days,
                policy.audit.max_mb,
            ),
            info: warden_audit::SessionInfo {
                id: opts.session_id.clone(),
                agent: policy
                    .agent
                    .name
                    .clone()
                    .or_else(|| opts.command.first().cloned())
                    .unwrap_or_default(),
                profile: loaded.profile.clone(),
                workspace: opts.workspace.display().to_string(),
                command: opts.command.join(" "),
                pid: None,
                start_ms: 0,
            },
        };
        Ok(SessionConfig {
            session_id: opts.session_id.clone(),
            workspace: opts.workspace.clone(),
            home: opts.home.clone(),
            command: opts.command.clone(),
            profile: loaded.profile.clone(),
            policy: policy.clone(),
            features: f.clone(),
            best_effort: opts.best_effort,
            quiet: opts.quiet,
            verbose: opts.verbose,
            no_index: opts.no_index,
            missing,
            nested_in_warden,
            notices,
            exec,
            pids,
            freezer,
            landlock,
            proxy,
            proxy_hosts_file: opts.proxy_hosts_file.clone(),
            risk,
            freeze_timeout,
            audit,
            policy_files: loaded.files(),
            state_dir: state_dir(&opts.home),
            hash_cache: hash_cache_path(&opts.home),
        })
    }

    /// The agent's name from the policy ("" when the policy names none).
    pub fn agent(&self) -> &str {
        self.policy.agent.name.as_deref().unwrap_or("")
    }

    /// Who the session's own decisions are by.
    pub fn who(&self) -> String {
        format!("warden run ({})", self.profile)
    }

    /// The decisions, as `--dry-run` prints them (before the sandbox plan).
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "profile   {}", self.profile);
        let _ = writeln!(
            s,
            "exec guard {}",
            match self.exec {
                ExecBackend::OffByFlag => "off (--exec-guard off)",
                ExecBackend::OffNested => "off here (nested: the outer warden's guard covers it)",
                ExecBackend::Seccomp => "seccomp user notification (supervised by warden run)",
                ExecBackend::Bpf => "BPF LSM (warden daemon)",
            }
        );
        for g in &self.missing {
            let _ = writeln!(s, "missing   {} (needs {})", g.what, g.mechanism);
        }
        let _ = writeln!(
            s,
            "pids limit {}",
            match self.pids {
                PidLimit::PidNamespace => "pid_max of the sandbox's pid namespace",
                PidLimit::PidsCgroup => "pids cgroup (RLIMIT_NPROC if it cannot be made)",
                PidLimit::RlimitNproc => "RLIMIT_NPROC (per uid)",
                PidLimit::DaemonCgroup => "the BPF daemon's session cgroup",
            }
        );
        let _ = writeln!(
            s,
            "stop switch {}",
            match self.freezer {
                FreezerPlan::CgroupLeaf => "cgroup v2 leaf (signals if it cannot be made)",
                FreezerPlan::Signals => "signals",
            }
        );
        let _ = writeln!(
            s,
            "landlock  ABI {}{}",
            self.landlock.abi,
            if self.landlock.hard {
                " (hard: refuses to run unless enforced as planned)"
            } else {
                ""
            }
        );
        let allow = if self.policy.network.allow.is_empty() {
            "(none)".to_string()
        } else {
            self.policy.network.allow.join(", ")
        };
        let _ = writeln!(s, "network allow {allow}");
        if !self.policy.network.deny.is_empty() {
            let _ = writeln!(s, "network deny {}", self.policy.network.deny.join(", "));
        }
        match &self.proxy {
            ProxyMode::NetnsBridge { gateway_ports } => {
                let _ = writeln!(
                    s,
                    "proxy     127.0.0.1:{} in the sandbox, bridged to warden's proxy",
                    warden_proxy::SANDBOX_PORT
                );
                if !gateway_ports.is_empty() {
                    let ports: Vec<String> = gateway_ports.iter().map(u16::to_string).collect();
                    let _ = writeln!(s, "gateway   host loopback ports {}", ports.join(", "));
                }
            }
            ProxyMode::HostLoopback => {
                let _ = writeln!(
                    s,
                    "proxy     a host loopback port (chosen at start); Landlock allows only that port"
                );
            }
            ProxyMode::None => {
                let _ = writeln!(s, "proxy     none (no network confinement on this machine)");
            }
        }
        let _ = writeln!(
            s,
            "risk      {}{}",
            if self.risk.enabled { "on" } else { "off" },
            match self.freeze_timeout {
                Some(t) => format!("; a frozen session is killed after {}s", t.as_secs()),
                None => String::new(),
            }
        );
        let _ = writeln!(s, "audit     {}", self.audit.store.display());
        s
    }
}

#[cfg(test)]
mod tests;
