//! `warden daemon`: owns the BPF LSM backend on a machine.
//!
//! - Loads the programs and pins links and maps under [`bpf::PIN_DIR`], or re-attaches to an
//!   existing pinned set on restart (enforcement never stops in between: the pinned links
//!   keep the programs attached while no daemon runs, and sessions stay in their maps).
//! - Creates the warden root cgroup (`<cgroup2>/warden`); the programs act only on tasks in
//!   its child cgroups, one per `warden run` session.
//! - Serves a root-owned unix socket ([`SOCKET`], mode 0666; transport in [`crate::control`]:
//!   framed requests, a deadline per request, capped connections). Peers are identified by
//!   `SO_PEERCRED`: a peer may place only its own child process (same uid) in a new session
//!   cgroup; only root outside any sandbox may unload. The sandbox cannot reach the socket
//!   (`/run` is a private tmpfs there) nor write cgroupfs.
//! - Reads the ring buffer and emits every decision as the shared event, counting what the
//!   kernel could not queue (reported, never silent).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden_event::{Decision, Layer, Verdict};
use warden_execguard::identity::{hex, Hash};
use warden_execguard::lsm::bpf::{self, Event, Pinned, SessionCfg};
use warden_proto::msg::daemon::{HashRule, Mode, Reply, Request, SessionOpened, SessionRequest};
use warden_proto::msg::ErrorCode;

/// What `State` keeps next to the socket (`daemon-state.json`).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Persisted {
    #[serde(default)]
    rules: Vec<String>,
    /// Session cgroup id → (cgroup path, session id).
    #[serde(default)]
    sessions: BTreeMap<String, (PathBuf, String)>,
}

pub const SOCKET: &str = "/run/warden/daemon.sock";

/// Why the daemon refused to start, or refused a session.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("this needs root (the BPF programs are machine-wide objects)")]
    NotRoot,
    #[error("refused inside a warden sandbox")]
    InSandbox,
    #[error("refused inside a user namespace (a sandbox); run it as real root on the host")]
    InUserNamespace,
    #[error("no cgroup2 file system is mounted")]
    NoCgroup2,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bpf(#[from] warden_execguard::lsm::bpf::BpfError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Feeder(#[from] crate::feeder::FeederError),
    #[error("no process {0}")]
    NoProcess(i32),
    #[error("process {pid} is neither the caller ({caller}) nor its child")]
    NotCallersChild { pid: i32, caller: i32 },
    #[error("process {pid} belongs to uid {uid}, not the caller's uid {caller_uid}")]
    OtherUid { pid: i32, uid: u32, caller_uid: u32 },
    #[error("process {child} under {pid} belongs to uid {child_uid}, not {uid}")]
    TreeOtherUid {
        child: i32,
        pid: i32,
        child_uid: u32,
        uid: u32,
    },
    #[error("setting pids.max on {cgroup}: {source} (is the pids controller enabled in cgroup2?)")]
    PidsMax {
        cgroup: String,
        source: std::io::Error,
    },
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.to_string();
    move |source| DaemonError::Io { what, source }
}

pub struct Opts {
    pub pin_dir: PathBuf,
    pub socket: PathBuf,
    /// Feed identities from userspace even when IMA is active (tests the no-IMA path).
    pub userspace_hashing: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            pin_dir: bpf::PIN_DIR.into(),
            socket: SOCKET.into(),
            userspace_hashing: false,
        }
    }
}

/// Refuses unless we are root in the initial user namespace and not inside a warden sandbox.
pub fn check_privileged() -> Result<(), DaemonError> {
    if !rustix::process::geteuid().is_root() {
        return Err(DaemonError::NotRoot);
    }
    if std::env::var_os("WARDEN_SANDBOX").is_some() {
        return Err(DaemonError::InSandbox);
    }
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let full = map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    if !full {
        return Err(DaemonError::InUserNamespace);
    }
    Ok(())
}

/// The cgroup2 mount point and the depth of its root (0 outside a cgroup namespace).
pub fn cgroup2_mount() -> Result<(PathBuf, u32), DaemonError> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").map_err(io("/proc/self/mountinfo"))?;
    for l in mi.lines() {
        let (pre, post) = l.split_once(" - ").unwrap_or((l, ""));
        if post.split_whitespace().next() == Some("cgroup2") {
            let f: Vec<&str> = pre.split_whitespace().collect();
            if f.len() >= 5 {
                let depth = f[3].split('/').filter(|c| !c.is_empty()).count() as u32;
                return Ok((PathBuf::from(f[4]), depth));
            }
        }
    }
    Err(DaemonError::NoCgroup2)
}

fn ino(p: &Path) -> Result<u64, DaemonError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p)
        .map(|m| m.ino())
        .map_err(io(p.display()))
}

/// The warden root cgroup: (path, kernfs id, level).
pub fn root_cgroup() -> Result<(PathBuf, u64, u32), DaemonError> {
    let (mnt, depth) = cgroup2_mount()?;
    let root = mnt.join("warden");
    if !root.exists() {
        std::fs::create_dir(&root).map_err(io(format_args!("creating {}", root.display())))?;
    }
    // Sessions carry the sandbox's pids limit: enable the controller down to them.
    let _ = std::fs::write(mnt.join("cgroup.subtree_control"), "+pids");
    let _ = std::fs::write(root.join("cgroup.subtree_control"), "+pids");
    Ok((root.clone(), ino(&root)?, depth + 1))
}

fn proc_uid_ppid(pid: i32) -> Option<(u32, i32)> {
    let st = warden_sys::procfs::Status::read(pid).ok()?;
    Some((st.uid()?, st.ppid()?))
}

struct State {
    pinned: Pinned,
    root: PathBuf,
    /// Rule index → rule name (as the policy spells it), for events.
    rules: Mutex<Vec<String>>,
    /// Session cgroup id → (cgroup path, warden run session id).
    sessions: Mutex<HashMap<u64, (PathBuf, String)>>,
    next: Mutex<u64>,
    /// Kernels without IMA: the exec-open feeder (marks each new session's file systems).
    feeder: Option<Arc<crate::feeder::Feeder>>,
    /// Rule names and sessions, kept next to the socket so a restarted daemon names the
    /// rules of sessions that outlived its predecessor.
    state_file: PathBuf,
}

impl State {
    fn persist(&self) {
        let rules = self.rules.lock().map(|r| r.clone()).unwrap_or_default();
        let sessions = self
            .sessions
            .lock()
            .map(|s| {
                s.iter()
                    .map(|(k, (d, sid))| (k.to_string(), (d.clone(), sid.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let tmp = self.state_file.with_extension("tmp");
        let body = serde_json::to_vec(&Persisted { rules, sessions }).unwrap_or_default();
        if std::fs::write(&tmp, body).is_ok() {
            let _ = std::fs::rename(&tmp, &self.state_file);
        }
    }

    fn restore(&self) {
        let Ok(text) = std::fs::read_to_string(&self.state_file) else {
            return;
        };
        let Ok(v) = serde_json::from_str::<Persisted>(&text) else {
            return;
        };
        if let Ok(mut mine) = self.rules.lock() {
            *mine = v.rules;
        }
        if let Ok(mut mine) = self.sessions.lock() {
            for (k, e) in v.sessions {
                if let Ok(id) = k.parse::<u64>() {
                    mine.insert(id, e);
                }
            }
        }
    }

    fn rule_index(&self, name: &str) -> u32 {
        let mut r = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = r.iter().position(|n| n == name) {
            return i as u32;
        }
        r.push(name.to_string());
        (r.len() - 1) as u32
    }

    fn rule_name(&self, i: u32) -> String {
        self.rules
            .lock()
            .ok()
            .and_then(|r| r.get(i as usize).cloned())
            .unwrap_or_else(|| format!("rule#{i}"))
    }

    fn session(
        &self,
        req: &SessionRequest,
        peer_pid: i32,
        peer_uid: u32,
    ) -> Result<SessionOpened, DaemonError> {
        let pid = req.pid;
        let (uid, ppid) = proc_uid_ppid(pid).ok_or(DaemonError::NoProcess(pid))?;
        if pid != peer_pid && ppid != peer_pid {
            return Err(DaemonError::NotCallersChild {
                pid,
                caller: peer_pid,
            });
        }
        if uid != peer_uid && peer_uid != 0 {
            return Err(DaemonError::OtherUid {
                pid,
                uid,
                caller_uid: peer_uid,
            });
        }
        let mode = match req.mode {
            Mode::Denylist => bpf::MODE_DENYLIST,
            Mode::Allowlist => bpf::MODE_ALLOWLIST,
        };
        let cfg = SessionCfg {
            mode,
            enforce: req.enforce,
            allow_memfd: req.allow_memfd,
            transitive: req.transitive,
        };
        let rules: Vec<(Hash, u32, u32)> = req
            .rules
            .iter()
            .map(|r| (r.hash, r.flags, self.rule_index(&r.rule)))
            .collect();
        let n = {
            let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        // Unique across daemon restarts (the counter is not persisted).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let dir = self.root.join(format!("s{peer_pid}-{n}-{t:x}"));
        // Held until the session is complete: `reap` must not see it empty half-way.
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::create_dir(&dir).map_err(io(format_args!("creating {}", dir.display())))?;
        let cgid = ino(&dir)?;
        // Rules and settings land before any process enters the cgroup.
        if let Err(e) = self.pinned.add_session(cgid, cfg, &rules) {
            self.pinned.remove_session(cgid);
            let _ = std::fs::remove_dir(&dir);
            return Err(e.into());
        }
        if let Some(max) = req.pids_max {
            // The sandbox relies on this limit (fork bombs): no limit, no session.
            if let Err(e) = std::fs::write(dir.join("pids.max"), max.to_string()) {
                self.pinned.remove_session(cgid);
                let _ = std::fs::remove_dir(&dir);
                return Err(DaemonError::PidsMax {
                    cgroup: dir.display().to_string(),
                    source: e,
                });
            }
        }
        // The process and everything it has forked so far (a warden sandbox: stage 1, its
        // init and the agent, which waits for the go-ahead until this returns).
        for p in tree(pid) {
            let Some((pu, _)) = proc_uid_ppid(p) else {
                continue;
            }; // exited meanwhile
            if pu != uid {
                // Never leave part of the tree unenforced.
                self.pinned.remove_session(cgid);
                let _ = std::fs::remove_dir(&dir);
                return Err(DaemonError::TreeOtherUid {
                    child: p,
                    pid,
                    child_uid: pu,
                    uid,
                });
            }
            if let Err(e) = std::fs::write(dir.join("cgroup.procs"), p.to_string()) {
                if std::path::Path::new(&format!("/proc/{p}")).exists() {
                    self.pinned.remove_session(cgid);
                    let _ = std::fs::remove_dir(&dir);
                    return Err(io(format_args!("moving {p} into {}", dir.display()))(e));
                }
            }
        }
        // Without IMA, the session's own file systems (its private tmpfs) get exec-open
        // events too; the sandbox cannot mount anything later.
        if let (Some(f), Some(last)) = (&self.feeder, tree(pid).last()) {
            let n = f.mark_mounts_of(*last);
            tracing::info!(
                "session {cgid}: exec-open events on {n} more file systems (mounts of pid {last})"
            );
        }
        let sid = req.session_id.clone();
        sessions.insert(cgid, (dir.clone(), sid));
        drop(sessions);
        self.persist();
        tracing::info!(
            "session {cgid} ({}) for pid {pid}: {} rules, mode {mode}",
            dir.display(),
            rules.len()
        );
        Ok(SessionOpened {
            session: cgid,
            cgroup: dir,
        })
    }

    /// Removes sessions whose cgroup has no process left (or no longer exists).
    fn reap(&self) {
        let mut changed = false;
        {
            let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let known: Vec<u64> = self.pinned.sessions();
            for id in known {
                let dir = s.get(&id).map(|(d, _)| d.clone());
                let empty = match &dir {
                    Some(d) => std::fs::read_to_string(d.join("cgroup.events"))
                        .map(|e| e.contains("populated 0"))
                        .unwrap_or(true),
                    // A session from an earlier daemon: find its cgroup by id.
                    None => match find_by_id(&self.root, id) {
                        Some(d) => {
                            s.insert(id, (d.clone(), String::new()));
                            std::fs::read_to_string(d.join("cgroup.events"))
                                .map(|e| e.contains("populated 0"))
                                .unwrap_or(true)
                        }
                        None => true,
                    },
                };
                if empty {
                    self.pinned.remove_session(id);
                    if let Some((d, _)) = s.remove(&id) {
                        let _ = std::fs::remove_dir(&d);
                    }
                    tracing::info!("session {id} ended");
                    changed = true;
                }
            }
        }
        if changed {
            self.persist();
        }
    }
}

/// `pid` and its descendants.
fn tree(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() && out.len() < 4096 {
        let p = out[i];
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in rd.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(
                    kids.split_whitespace()
                        .filter_map(|k| k.parse::<i32>().ok()),
                );
            }
        }
        i += 1;
    }
    out
}

fn find_by_id(root: &Path, id: u64) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && ino(p).ok() == Some(id))
}

/// Turns a kernel event into the shared decision event.
pub fn decision(e: &Event, rule: String, session: &str) -> Decision {
    use bpf::types::{wg_reason as R, wg_verdict as V};
    let verdict = match V(e.verdict) {
        V::WG_V_ALLOW => Verdict::Allow,
        V::WG_V_AUDIT => Verdict::AuditDeny,
        _ => Verdict::Deny,
    };
    let rule = if R(e.reason) == R::WG_R_OK && rule.starts_with("rule#") {
        "exec.mode:denylist".to_string()
    } else {
        rule
    };
    let rule = match R(e.reason) {
        R::WG_R_NOT_ALLOWED => "exec.mode:allowlist".to_string(),
        R::WG_R_ANONYMOUS => "exec.allow_memfd".to_string(),
        R::WG_R_NO_HASH | R::WG_R_NOT_SHA256 | R::WG_R_NOT_CACHED => "exec.fail_closed".to_string(),
        R::WG_R_NO_SESSION => "daemon.session".to_string(),
        _ => rule,
    };
    let mut d = Decision::new(
        Layer::Exec,
        format!("pid {} ({})", e.pid, e.comm),
        format!("{} {}", e.kind_str(), e.name),
        rule,
        verdict,
        e.reason_str(),
    )
    .with("backend", "bpf-lsm")
    .with("cgroup", e.session)
    .with("inode", e.ino);
    if let Some(h) = &e.hash {
        d = d.with("sha256", hex(h));
    }
    if !session.is_empty() {
        d.session = session.to_string();
    }
    d
}

/// Runs the daemon until it is told to unload (or killed: enforcement then stays).
pub fn run(opts: &Opts) -> Result<(), DaemonError> {
    check_privileged()?;
    // In-kernel hashing needs IMA; without it the daemon feeds the identity map itself
    // (fanotify exec-permission events + pre-hashed libraries; see `feeder`).
    let lsms = warden_execguard::lsm::probe::lsm_list().unwrap_or_default();
    let no_ima = opts.userspace_hashing || !lsms.split(',').any(|l| l == "ima");
    let reattached = Pinned::exists(&opts.pin_dir);
    let pinned = if reattached {
        Pinned::open(&opts.pin_dir)?
    } else {
        Pinned::load(&opts.pin_dir)?
    };
    let (root, cgid, level) = root_cgroup()?;
    pinned.set_root(cgid, level, no_ima)?;
    tracing::info!(
        "{} BPF LSM programs ({}); root cgroup {} (id {cgid}, level {level})",
        if reattached {
            "re-attached to the pinned"
        } else {
            "loaded and pinned the"
        },
        opts.pin_dir.display(),
        root.display()
    );
    let state_file = opts.socket.with_file_name("daemon-state.json");
    let feeder = if no_ima {
        Some(Arc::new(crate::feeder::Feeder::new()?))
    } else {
        None
    };
    let st = Arc::new(State {
        feeder: feeder.clone(),
        pinned,
        root,
        rules: Mutex::new(Vec::new()),
        sessions: Mutex::new(HashMap::new()),
        next: Mutex::new(0),
        state_file,
    });
    if reattached {
        st.restore();
    }
    st.reap();
    if let Some(f) = feeder {
        let cache_path = opts.socket.with_file_name("hash-cache.bin");
        let cache = Arc::new(warden_execguard::cache::Cache::load(&cache_path).unwrap_or_default());
        let marked = f.mark_mounts_of(0);
        let libs = crate::feeder::prefill_libraries(&st.pinned, &cache);
        let _ = cache.save_if_dirty(&cache_path);
        tracing::info!("no IMA on this kernel: the daemon feeds identities (fanotify on {marked} file systems, {libs} libraries hashed ahead)");
        let st2 = st.clone();
        std::thread::spawn(move || {
            f.serve(&st2.pinned, &cache, |pid| {
                warden_sys::procfs::cgroup(pid).is_ok_and(|c| {
                    warden_sys::procfs::cgroup_v2_path(&c)
                        .is_some_and(|p| p.starts_with("/warden/s"))
                })
            })
        });
    }

    if let Some(d) = opts.socket.parent() {
        std::fs::create_dir_all(d).map_err(io(d.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
    }
    // Mode 0666, framed requests, deadlines and connection caps: see `control`.
    let l = crate::control::bind(&opts.socket)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Events: the ring buffer, plus the loss counter checked every second.
    {
        let st = st.clone();
        let stop = stop.clone();
        std::thread::spawn(move || events_loop(&st, &stop));
    }
    println!("warden daemon: ready ({})", opts.socket.display());
    let _ = std::io::stdout().flush();
    let h = Arc::new(Control {
        st,
        stop,
        pin_dir: opts.pin_dir.clone(),
        socket: opts.socket.clone(),
    });
    crate::control::serve(
        l,
        h,
        crate::control::Settings::default(),
        Arc::new(warden_proto::accept::Counts::default()),
    );
    Ok(())
}

/// The daemon's answers on its control socket (see `control` for the transport).
struct Control {
    st: Arc<State>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    pin_dir: PathBuf,
    socket: PathBuf,
}

impl crate::control::Handler for Control {
    fn handle(&self, req: &Request, peer: warden_proto::accept::PeerCred) -> Reply {
        let (st, pin_dir) = (&self.st, &self.pin_dir);
        let (ppid, puid) = (peer.pid, peer.uid);
        let failed = |e: &dyn std::fmt::Display| Reply::error(ErrorCode::Failed, e.to_string());
        match req {
            Request::Status => {
                let (lost, decisions) = st.pinned.counters();
                Reply::Status(warden_proto::msg::daemon::Status {
                    sessions: st.pinned.sessions().len() as u64,
                    lost,
                    decisions,
                    pin_dir: pin_dir.clone(),
                    root: st.root.clone(),
                })
            }
            Request::Session(r) => st
                .session(r, ppid, puid)
                .map_or_else(|e| failed(&e), Reply::Session),
            Request::Unload => {
                if puid != 0 {
                    Reply::error(
                        ErrorCode::Forbidden,
                        format!("unloading needs root (caller uid {puid})"),
                    )
                } else if std::fs::read_link(format!("/proc/{ppid}/ns/user")).ok()
                    != std::fs::read_link("/proc/self/ns/user").ok()
                {
                    Reply::error(
                        ErrorCode::Forbidden,
                        "unloading is refused from inside a user namespace (a sandbox)",
                    )
                } else {
                    Pinned::unload(pin_dir).map_or_else(|e| failed(&e), |_| Reply::Unloaded)
                }
            }
        }
    }

    fn session_closed(&self) {
        self.st.reap();
    }

    fn after(&self) {
        if std::fs::metadata(&self.pin_dir).is_err() {
            // Unloaded: stop serving.
            self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = std::fs::remove_file(&self.socket);
            std::process::exit(0);
        }
    }
}

fn events_loop(st: &State, stop: &std::sync::atomic::AtomicBool) {
    let mut lost_seen = st.pinned.counters().0;
    let mut b = libbpf_rs::RingBufferBuilder::new();
    let cb = |data: &[u8]| -> i32 {
        if let Some(e) = Event::parse(data) {
            let sid = st
                .sessions
                .lock()
                .ok()
                .and_then(|s| s.get(&e.session).map(|(_, sid)| sid.clone()))
                .unwrap_or_default();
            decision(&e, st.rule_name(e.rule), &sid).emit();
        }
        0
    };
    if let Err(e) = b.add(&st.pinned.events, cb) {
        tracing::error!("cannot read the decision ring buffer: {e}");
        return;
    }
    let rb = match b.build() {
        Ok(rb) => rb,
        Err(e) => {
            tracing::error!("cannot read the decision ring buffer: {e}");
            return;
        }
    };
    let mut last_reap = std::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = rb.poll(Duration::from_millis(250));
        let (lost, _) = st.pinned.counters();
        if lost > lost_seen {
            Decision::new(
                Layer::Exec,
                "kernel",
                "decision events",
                "daemon.events",
                Verdict::Observe,
                format!(
                    "{} decision events were lost (ring buffer full); {lost} in total",
                    lost - lost_seen
                ),
            )
            .with("lost", lost)
            .emit();
            lost_seen = lost;
        }
        if last_reap.elapsed() > Duration::from_secs(2) {
            st.reap();
            last_reap = std::time::Instant::now();
        }
    }
}

/// A client of the daemon (used by `warden run`).
pub mod client {
    use super::*;
    pub use crate::control::ControlError;

    /// An open session: the connection stays open for the session's life.
    pub struct Session {
        pub cgroup_id: u64,
        pub cgroup: PathBuf,
        _conn: UnixStream,
    }

    /// One framed request (see `control`); the connection is returned for sessions.
    pub fn request(socket: &Path, req: &Request) -> Result<(Reply, UnixStream), ControlError> {
        crate::control::request(socket, req, Duration::from_secs(10))
    }

    /// Places `pid` (the caller or its child) in a new enforced session.
    pub fn open_session(
        socket: &Path,
        pid: i32,
        rules: &warden_execguard::rules::ExecRules,
        builders: &[Hash],
        session_id: &str,
        pids_max: u64,
    ) -> Result<Session, ControlError> {
        // One entry per hash; flags merge, and a denied hash is never a trusted build tool.
        let mut merged: HashMap<Hash, (u32, String)> = HashMap::new();
        for (h, deny, name) in rules.rule_hashes() {
            merged.insert(h, (if deny { bpf::F_DENY } else { bpf::F_ALLOW }, name));
        }
        for b in builders {
            let e = merged.entry(*b).or_insert((0, "exec.build_tools".into()));
            if e.0 & bpf::F_DENY == 0 {
                e.0 |= bpf::F_BUILDER;
            }
        }
        let list: Vec<HashRule> = merged
            .into_iter()
            .map(|(hash, (flags, rule))| HashRule { hash, flags, rule })
            .collect();
        let req = Request::Session(SessionRequest {
            pid,
            session_id: session_id.to_string(),
            mode: if rules.mode == warden_policy::exec::ExecMode::Allowlist {
                Mode::Allowlist
            } else {
                Mode::Denylist
            },
            enforce: rules.action == warden_policy::exec::ExecAction::Enforce,
            allow_memfd: rules.allow_memfd,
            transitive: true,
            rules: list,
            pids_max: Some(pids_max),
        });
        match request(socket, &req)? {
            (Reply::Session(o), c) => Ok(Session {
                cgroup_id: o.session,
                cgroup: o.cgroup,
                _conn: c,
            }),
            (r, _) => Err(ControlError::Unexpected {
                op: "session",
                reply: format!("{r:?}"),
            }),
        }
    }

    /// The daemon's counters (an error when it is not reachable). The error is text
    /// because `warden-session` keeps it as text in its host features (`HostFeatures::daemon`).
    pub fn status(socket: &Path) -> Result<warden_proto::msg::daemon::Status, String> {
        match request(socket, &Request::Status).map_err(|e| e.to_string())? {
            (Reply::Status(s), _) => Ok(s),
            (r, _) => Err(ControlError::Unexpected {
                op: "status",
                reply: format!("{r:?}"),
            }
            .to_string()),
        }
    }

    /// Asks a running daemon to unload (root outside any sandbox only).
    pub fn unload(socket: &Path) -> Result<(), ControlError> {
        match request(socket, &Request::Unload)? {
            (Reply::Unloaded, _) => Ok(()),
            (r, _) => Err(ControlError::Unexpected {
                op: "unload",
                reply: format!("{r:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf::types::{wg_kind as K, wg_reason as R, wg_verdict as V};

    fn ev(verdict: V, reason: R) -> Event {
        Event {
            session: 9,
            ino: 1,
            pid: 42,
            kind: K::WG_K_EXEC.0,
            verdict: verdict.0,
            reason: reason.0,
            rule: 0,
            hash: None,
            comm: "sh".into(),
            name: "c2".into(),
        }
    }

    #[test]
    fn kernel_events_name_the_rule_and_verdict() {
        let d = decision(
            &ev(V::WG_V_AUDIT, R::WG_R_NOT_ALLOWED),
            "rule#0".into(),
            "s1",
        );
        assert_eq!(d.verdict, Verdict::AuditDeny);
        assert_eq!(d.rule, "exec.mode:allowlist");
        assert_eq!(d.what, "exec c2");
        let d = decision(
            &ev(V::WG_V_DENY, R::WG_R_DENIED),
            "exec.deny:curl".into(),
            "",
        );
        assert_eq!(
            (d.verdict, d.rule.as_str()),
            (Verdict::Deny, "exec.deny:curl")
        );
        let d = decision(&ev(V::WG_V_DENY, R::WG_R_NOT_CACHED), "x".into(), "");
        assert_eq!(d.rule, "exec.fail_closed");
        let d = decision(&ev(V::WG_V_DENY, R::WG_R_NO_SESSION), "x".into(), "");
        assert_eq!(d.rule, "daemon.session");
        let d = decision(&ev(V::WG_V_ALLOW, R::WG_R_OK), "rule#3".into(), "");
        assert_eq!(
            (d.verdict, d.rule.as_str()),
            (Verdict::Allow, "exec.mode:denylist")
        );
    }
}
