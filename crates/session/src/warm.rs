//! Warm start (`warden run --warm`): the next run's sandbox, built ahead.
//!
//! A run with `--warm` ends by starting a *spare*: the same `warden run`, with the same
//! arguments, environment, working directory and binary, detached, whose standard fds are
//! `/dev/null` (stderr a memory file) and which answers every "is this a terminal" as the run
//! did ([`warden_event::tty`]). The spare goes through the whole start of a session — the
//! plan, the placeholders, the view, the workspace guard, the agent process confined by
//! Landlock and seccomp with the exec guard attached — and holds there, before the agent's
//! execve, listening on a socket in the user's runtime directory named by the hash of those
//! inputs ([`key`]). The next `warden run --warm` with the same inputs claims it instead of
//! building its own: it passes its fds 0-2, the spare replays what it printed while it was
//! built, takes them as its own, releases the agent with them, and reports the exit code;
//! the claiming run forwards its signals and exits with that code.
//!
//! The invariant: a warm start is the cold start of the same inputs, done earlier. Every
//! input of a session's start that the running session does not follow afterwards is in the
//! key (binary, uid/gids, umask, argv, environment, working directory, which of fds 0-2 are
//! terminals, SIGPIPE's disposition) or in the spare's [`Fingerprint`] (the policy files,
//! those absent included, the trust index, the BPF daemon's socket), checked again at the
//! claim: any difference is a cold start. What a running session follows (host changes under
//! the workspace, denied paths that appear) the spare follows the same way from its start.
//!
//! Who may claim: a process of the same uid, in the spare's own user and pid namespaces (the
//! host's), through a socket in a 0700 directory of the runtime directory (`/run/...`), which
//! is not in any sandbox's view. A spare unclaimed after its time to live
//! (`WARDEN_WARM_TTL_MS`, 1 minute) ends its sandbox unstarted, as a claim that finds the
//! policy changed does.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The environment variable that makes a `warden run` a spare (its value: `ttys=` and three
/// `0`/`1`, whether fds 0-2 of the run it is made for were terminals). Removed first thing.
pub const SPARE_ENV: &str = "WARDEN_WARM_SPARE";
/// A spare's time to live without a claim, in milliseconds (part of the environment, hence
/// of the key).
pub const TTL_ENV: &str = "WARDEN_WARM_TTL_MS";
/// One minute: a spare's placeholders are on the host while it waits (`git status` lists
/// them), so it waits for a burst of runs, not for the next session an hour later.
const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// The longest time to live [`TTL_ENV`] may ask for.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// The most spares of one user that wait at once ([`spawn_spare`]).
const MAX_SPARES: usize = 4;
const CLAIM: &[u8] = b"warden-warm-claim-1";
/// The longest a claim's message or the spare's answer may take.
const CLAIM_DEADLINE: Duration = Duration::from_secs(5);
/// The socket is a stream: every message is read whole, at its fixed length (the claim,
/// 6-byte answers `OK`+pid, `NO`+length then the reason, `EX`+exit code).
const WAIT_ALL: warden_sys::fdpass::RecvOptions =
    warden_sys::fdpass::RecvOptions { wait_all: true };

/// Sends a refusal: `NO`, the reason's length, the reason.
fn refuse(conn: &UnixStream, why: &str) {
    let mut m = b"NO".to_vec();
    m.extend_from_slice(&(why.len() as u32).to_le_bytes());
    m.extend_from_slice(why.as_bytes());
    let _ = warden_sys::fdpass::send(conn, &m, &[]);
}

/// What a run's start depends on that a running session never looks at again.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub argv: Vec<OsString>,
    /// Sorted (the order is not the agent's business and a spawned spare's differs).
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub ttys: [bool; 3],
}

impl Inputs {
    /// This process's, as [`warden_event::tty`] answers for fds 0-2. Take it before anything
    /// changes the environment (the session exports its id; the advisor takes its key).
    pub fn of_this_process() -> Option<Inputs> {
        let mut env: Vec<_> = std::env::vars_os().collect();
        env.sort();
        Some(Inputs {
            argv: std::env::args_os().collect(),
            env,
            cwd: std::env::current_dir().ok()?,
            ttys: warden_event::tty::kinds(),
        })
    }
}

fn put(h: &mut sha2::Sha256, b: &[u8]) {
    use sha2::Digest;
    h.update((b.len() as u64).to_le_bytes());
    h.update(b);
}

/// The hash of `inputs` and of the process's identity: binary (device, inode, size, change
/// times of `/proc/self/exe`), uid, gid and groups, umask, SIGPIPE's disposition.
pub fn key(inputs: &Inputs) -> Option<[u8; 32]> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    put(&mut h, b"warden-warm-key-1");
    let exe = std::fs::metadata("/proc/self/exe").ok()?;
    for v in [
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime() as u64,
        exe.mtime_nsec() as u64,
        exe.ctime() as u64,
        exe.ctime_nsec() as u64,
    ] {
        h.update(v.to_le_bytes());
    }
    // SAFETY: plain getters; umask is set back at once (single-threaded callers).
    let (uid, gid, mask) = unsafe {
        let m = libc::umask(0o077);
        libc::umask(m);
        (libc::getuid(), libc::getgid(), m)
    };
    h.update(uid.to_le_bytes());
    h.update(gid.to_le_bytes());
    h.update(mask.to_le_bytes());
    let mut groups = [0 as libc::gid_t; 256];
    // SAFETY: getgroups fills at most the given count.
    let n = unsafe { libc::getgroups(groups.len() as i32, groups.as_mut_ptr()) };
    for g in groups.iter().take(n.max(0) as usize) {
        h.update(g.to_le_bytes());
    }
    h.update([
        warden_sandbox::launch::SIGPIPE_WAS_IGNORED.load(std::sync::atomic::Ordering::Relaxed)
            as u8,
    ]);
    h.update(inputs.ttys.map(u8::from));
    // What else the sandbox inherits from the run (attack review 116, F2: a claim with other
    // limits, another nice value or OOM score took a spare built with the first ones): every
    // resource limit, the nice value, the OOM score adjustment, the cgroup, the capability
    // sets, no_new_privs, seccomp and the CPU and memory-node masks.
    // Linux has 16 (`RLIMIT_NLIMITS`); a limit the kernel lacks reads as 0 here and there.
    for r in 0..16 {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit into a local struct.
        unsafe { libc::getrlimit(r as _, &mut l) };
        h.update(l.rlim_cur.to_le_bytes());
        h.update(l.rlim_max.to_le_bytes());
    }
    // SAFETY: a plain getter (errno is not looked at: -1 is a valid nice value too).
    h.update(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }.to_le_bytes());
    for f in ["/proc/self/oom_score_adj", "/proc/self/cgroup"] {
        put(&mut h, &std::fs::read(f).unwrap_or_default());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status.lines().filter(|l| {
        [
            "Cap",
            "NoNewPrivs:",
            "Seccomp:",
            "Cpus_allowed:",
            "Mems_allowed:",
        ]
        .iter()
        .any(|k| l.starts_with(k))
    }) {
        put(&mut h, line.as_bytes());
    }
    // The signal mask the run started with (its agent gets it).
    let mask = warden_sandbox::launch::start_mask();
    for sig in 1..=64 {
        // SAFETY: sigismember reads a set.
        let m = mask.is_some_and(|m| unsafe { libc::sigismember(&m, sig) } == 1);
        h.update([u8::from(m)]);
    }
    let cwd = std::fs::metadata(&inputs.cwd).ok()?;
    put(&mut h, inputs.cwd.as_os_str().as_bytes());
    h.update(cwd.dev().to_le_bytes());
    h.update(cwd.ino().to_le_bytes());
    h.update((inputs.argv.len() as u64).to_le_bytes());
    for a in &inputs.argv {
        put(&mut h, a.as_bytes());
    }
    h.update((inputs.env.len() as u64).to_le_bytes());
    for (k, v) in &inputs.env {
        put(&mut h, k.as_bytes());
        put(&mut h, v.as_bytes());
    }
    Some(h.finalize().into())
}

/// The directory of this user's spares: `$XDG_RUNTIME_DIR/warden-warm` when that is a
/// directory of ours under `/run` that no one else may enter, or (root, the variable unset)
/// `/run/warden/warm`.
/// Made 0700 and checked (ours, not a link, 0700); None when there is no such place (no warm
/// start). Under `/run` only: every sandbox has a private `/run`, so no agent can place,
/// rename or remove a socket there (attack review 115: a runtime directory in the workspace
/// let an agent listen in a spare's place).
pub fn dir() -> Option<PathBuf> {
    // SAFETY: a plain getter.
    let uid = unsafe { libc::getuid() };
    let private = |p: &Path| {
        std::fs::symlink_metadata(p)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
    };
    // No link anywhere on the way, and below `/run`.
    let under_run = |p: &Path| {
        p.starts_with("/run")
            && p != Path::new("/run")
            && std::fs::canonicalize(p).is_ok_and(|c| c == p)
    };
    let base = match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(x) if x.is_absolute() && under_run(&x) && private(&x) => x.join("warden-warm"),
        // Set, but no such place: no warm start (never a fallback the user did not name).
        Some(_) => return None,
        None if uid == 0 => {
            let _ = std::fs::create_dir_all("/run/warden");
            PathBuf::from("/run/warden/warm")
        }
        _ => return None,
    };
    match std::fs::create_dir(&base) {
        Ok(()) => {
            let _ = std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700));
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    private(&base).then_some(base)
}

fn socket_name(key: &[u8; 32]) -> String {
    format!("{}.sock", key_name(key))
}

fn key_name(key: &[u8; 32]) -> String {
    key[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a spare that ended unclaimed leaves what it printed (its stderr is a memory file
/// that only a claim replays): the next claim of the same inputs that finds no spare says
/// why there was none. Removed when the next spare of the key listens.
fn ended_name(key: &[u8; 32]) -> String {
    format!("{}.ended", key_name(key))
}

/// The most of a spare's output [`ENDED`](ended_name) keeps (its end).
const ENDED_MAX: usize = 8192;

/// The key of this spare ([`note_spare_key`]), for [`finish`]'s record of an unclaimed end.
static SPARE_KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Tells a spare its key, as soon as it is known (before the start can fail).
pub fn note_spare_key(key: &[u8; 32]) {
    if IS_SPARE.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = SPARE_KEY.set(*key);
    }
}

/// An unclaimed spare's end: what it printed (the end of it) and its exit code go to
/// [`ended_name`] in the warm directory, 0600, never through a link.
fn record_end(code: i32) {
    let (Some(key), Some(dir)) = (SPARE_KEY.get(), dir()) else {
        return;
    };
    let mut text = read_own_stderr();
    if text.len() > ENDED_MAX {
        text.drain(..text.len() - ENDED_MAX);
    }
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(ended_name(key)))
    else {
        return;
    };
    let _ = writeln!(
        f,
        "the spare (pid {}) ended unclaimed, exit code {code}",
        std::process::id()
    );
    let _ = f.write_all(&text);
}

/// What [`record_end`] left for `key`, if anything: its last lines, printable.
fn ended_note(dir: &Path, key: &[u8; 32]) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(dir.join(ended_name(key)))
        .ok()?;
    let mut text = Vec::new();
    f.take(ENDED_MAX as u64 + 256).read_to_end(&mut text).ok()?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("warden-timing:"))
        .collect();
    let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
    Some(warden_event::text::printable(&tail))
}

/// The state of the files a session's start read and does not follow: each one's device,
/// inode, size, mode and change times (the file a link names, and the link), or that it is
/// absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<Stamp>);

/// A path; device, inode, size, mode, mtime and ctime (s, ns) of what it names; the link's
/// inode and change time.
type Stamp = (PathBuf, Option<[i64; 8]>, Option<[i64; 2]>);

impl Fingerprint {
    pub fn take(paths: impl IntoIterator<Item = PathBuf>) -> Fingerprint {
        let mut v: Vec<_> = paths
            .into_iter()
            .map(|p| {
                // An empty file says what an absent one does (a policy file, the agent's
                // state): one is also what a placeholder is, which sessions on the same tree
                // make and remove as they start and end.
                // A directory (`.git`) by its identity only: what it holds changes with every
                // commit.
                let f = std::fs::metadata(&p)
                    .ok()
                    .filter(|m| !(m.is_file() && m.len() == 0))
                    .map(|m| {
                        if m.is_dir() {
                            return [
                                m.dev() as i64,
                                m.ino() as i64,
                                0,
                                m.mode() as i64,
                                0,
                                0,
                                0,
                                0,
                            ];
                        }
                        [
                            m.dev() as i64,
                            m.ino() as i64,
                            m.size() as i64,
                            m.mode() as i64,
                            m.mtime(),
                            m.mtime_nsec(),
                            m.ctime(),
                            m.ctime_nsec(),
                        ]
                    });
                // A link's own identity (a link swapped for another to the same file).
                let l = std::fs::symlink_metadata(&p)
                    .ok()
                    .filter(|m| m.file_type().is_symlink())
                    .map(|m| [m.ino() as i64, m.ctime_nsec() ^ m.ctime()]);
                (p, f, l)
            })
            .collect();
        v.sort();
        v.dedup();
        Fingerprint(v)
    }

    /// The first path whose state differs now.
    pub fn changed(&self) -> Option<PathBuf> {
        let now = Fingerprint::take(self.0.iter().map(|e| e.0.clone()));
        self.0
            .iter()
            .zip(&now.0)
            .find(|(a, b)| a != b)
            .map(|(a, _)| a.0.clone())
    }

    /// The state now, if it is this one (the placeholders the session made are empty files:
    /// absent, as [`Fingerprint::take`] sees them); else the first path that changed.
    fn renewed(&self) -> Result<Fingerprint, PathBuf> {
        match self.changed() {
            Some(p) => Err(p),
            None => Ok(Fingerprint::take(self.0.iter().map(|e| e.0.clone()))),
        }
    }
}

/// A spare: this `warden run` was started by [`spawn_spare`].
pub struct Spare {
    ttl: Duration,
}

/// This process is a spare ([`Spare::from_env`]).
static IS_SPARE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process is a spare that no run claimed (yet): its agent never ran.
pub fn unclaimed_spare() -> bool {
    IS_SPARE.load(std::sync::atomic::Ordering::SeqCst) && CLAIMED.get().is_none()
}

/// The claiming run's connection, once claimed: [`report`] writes the exit code to it.
static CLAIMED: OnceLock<Mutex<Option<UnixStream>>> = OnceLock::new();

impl Spare {
    /// Whether this process is a spare ([`SPARE_ENV`], removed here, before anything reads the
    /// environment); sets the terminal answers of the run it is made for.
    pub fn from_env() -> Option<Spare> {
        let v = std::env::var_os(SPARE_ENV)?;
        std::env::remove_var(SPARE_ENV);
        let t = v.as_bytes().strip_prefix(b"ttys=")?;
        if t.len() != 3 || t.iter().any(|b| *b != b'0' && *b != b'1') {
            return None;
        }
        warden_event::tty::set_override([t[0] == b'1', t[1] == b'1', t[2] == b'1']);
        IS_SPARE.store(true, std::sync::atomic::Ordering::SeqCst);
        // Unnamed, it is counted as a session that could write (the safe side).
        let _ = warden_sys::procfs::set_own_name(warden_sys::procfs::SPARE_COMM);
        let ttl = std::env::var(TTL_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TTL)
            .min(MAX_TTL);
        Some(Spare { ttl })
    }

    /// The wait for a claim (see [`crate::Session::hold_before_release`]): listens on the
    /// socket of `key` once the sandbox holds, takes the first valid claim, and releases the
    /// agent with the claiming run's fds; an error (time to live out, the policy changed)
    /// ends the sandbox unstarted.
    pub fn hold(
        self,
        inputs: Inputs,
        key: [u8; 32],
        fingerprint: Fingerprint,
    ) -> crate::supervise::Hold {
        let _ = SUCCESSOR.set((inputs, key));
        Box::new(move |session| {
            // The placeholders are made now (`.warden.toml` among them): the state to keep
            // from here on, if nothing else changed since the policy was read.
            let fingerprint = fingerprint
                .renewed()
                .map_err(|p| format!("{} changed while the spare was built", p.display()))?;
            let dir = dir().ok_or("no private runtime directory")?;
            let path = dir.join(socket_name(&key));
            // Bound under a name of its own, then renamed into place: a client never finds
            // a socket that does not listen yet.
            let tmp = dir.join(format!(".{}.{}", socket_name(&key), std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            let listener = UnixListener::bind(&tmp).map_err(|e| format!("bind: {e}"))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("rename: {e}"))?;
            // An earlier spare's end is no reason for a claim of this one to start cold.
            let _ = std::fs::remove_file(dir.join(ended_name(&key)));
            let ino = std::fs::symlink_metadata(&path).map(|m| m.ino()).ok();
            let unlink = || {
                if std::fs::symlink_metadata(&path).map(|m| m.ino()).ok() == ino {
                    let _ = std::fs::remove_file(&path);
                }
            };
            // The held agent process: a signal to the spare (SIGTERM, SIGINT, SIGHUP) goes to
            // it, as to any session's agent, and its end ends the wait.
            let agent = session
                .agent_pidfd()
                .ok_or("the agent process has no pidfd")?;
            let end = Instant::now() + self.ttl;
            loop {
                let left = end.saturating_duration_since(Instant::now());
                match wait_either(listener.as_fd(), agent.as_fd(), left) {
                    Wake::Listener => {}
                    Wake::Other => {
                        unlink();
                        return Err("the held agent process ended (a signal)".into());
                    }
                    Wake::Timeout => {
                        unlink();
                        return Err(format!("unclaimed for {} s", self.ttl.as_secs()));
                    }
                }
                let Ok((conn, _)) = listener.accept() else {
                    continue;
                };
                warden_event::timing::mark("warm: connection accepted");
                match serve(&conn, &key, &fingerprint) {
                    Ok(fds) => {
                        warden_event::timing::mark("warm: claim accepted");
                        unlink();
                        drop(listener);
                        // No longer a waiting spare (other sessions' integrity reports
                        // count it from here on): before the agent may run. Still named
                        // a spare, its agent's writes would go unnamed there: refused.
                        if let Err(e) = warden_sys::procfs::set_own_name("warden") {
                            let why = format!("stale: cannot rename the spare: {e}");
                            refuse(&conn, &why);
                            return Err(why);
                        }
                        // From here on the workspace guard treats what appears as the
                        // agent's; until here it locked what the host made as a cold start
                        // would. Refused when it failed to: the claim starts cold.
                        if let Err(e) = session.unlatch() {
                            let why = format!("stale: {e}");
                            refuse(&conn, &why);
                            return Err(why);
                        }
                        warden_event::timing::mark("warm: unlatched");
                        // The answer goes first: a claiming run that is gone takes nothing.
                        let mut ok = b"OK".to_vec();
                        ok.extend_from_slice(&std::process::id().to_le_bytes());
                        warden_sys::fdpass::send(&conn, &ok, &[])
                            .map_err(|e| format!("the claiming run went away: {e}"))?;
                        replay_stderr(fds[2].as_fd());
                        for (i, fd) in fds.iter().enumerate() {
                            // SAFETY: dup2 onto our own standard fds.
                            if unsafe { libc::dup2(fd.as_raw_fd(), i as i32) } < 0 {
                                return Err(format!("dup2: {}", std::io::Error::last_os_error()));
                            }
                        }
                        drop(fds);
                        // The claiming run's end ends the sandbox, as warden's own death does
                        // a cold one's (`timeout -s KILL`): once it is gone before the exit
                        // code was reported, stage 1 is killed.
                        if let (Some(stage1), Ok(watch)) =
                            (session.stage1_pidfd(), conn.try_clone())
                        {
                            std::thread::spawn(move || {
                                let mut p = libc::pollfd {
                                    fd: watch.as_raw_fd(),
                                    events: libc::POLLRDHUP,
                                    revents: 0,
                                };
                                // SAFETY: poll on one pollfd we own, until the peer is gone.
                                while unsafe { libc::poll(&mut p, 1, -1) } < 0 {}
                                if !REPORTED.load(std::sync::atomic::Ordering::SeqCst) {
                                    let _ = warden_sys::pidfd::send_signal(&stage1, libc::SIGKILL);
                                }
                            });
                        }
                        *CLAIMED
                            .get_or_init(Mutex::default)
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(conn);
                        // SAFETY: fds 0-2 are open (the dup2 above) for the call.
                        let std = unsafe { [0, 1, 2].map(|f| BorrowedFd::borrow_raw(f)) };
                        return session.release_with(std);
                    }
                    Err(Refusal::Retry(why)) => refuse(&conn, &why),
                    Err(Refusal::Stale(why)) => {
                        unlink();
                        refuse(&conn, &why);
                        return Err(why);
                    }
                }
            }
        })
    }
}

enum Refusal {
    /// This claim is refused; the spare waits for another.
    Retry(String),
    /// The spare is out of date: it ends.
    Stale(String),
}

/// Checks a claim: the peer (same uid, the spare's own user and pid namespaces), the message
/// (the key, fds 0-2), the fingerprint. Returns the claiming run's fds 0-2.
fn serve(conn: &UnixStream, key: &[u8; 32], fp: &Fingerprint) -> Result<[OwnedFd; 3], Refusal> {
    let cred = rustix::net::sockopt::socket_peercred(conn)
        .map_err(|e| Refusal::Retry(format!("peer credentials: {e}")))?;
    // SAFETY: a plain getter.
    if cred.uid.as_raw() != unsafe { libc::getuid() } {
        return Err(Refusal::Retry("another user".into()));
    }
    let pid = cred.pid.as_raw_nonzero().get();
    for ns in ["user", "pid"] {
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{ns}")).map(|m| m.ino());
        let ours = std::fs::metadata(format!("/proc/self/ns/{ns}")).map(|m| m.ino());
        match (theirs, ours) {
            (Ok(a), Ok(b)) if a == b => {}
            _ => {
                return Err(Refusal::Retry(format!(
                    "the claiming process is not in this {ns} namespace"
                )))
            }
        }
    }
    let _ = conn.set_read_timeout(Some(CLAIM_DEADLINE));
    let want = CLAIM.len() + 32;
    let mut buf = [0u8; CLAIM.len() + 32];
    let m = warden_sys::fdpass::recv(conn, &mut buf, 3, WAIT_ALL)
        .map_err(|e| Refusal::Retry(format!("the claim: {e}")))?;
    if m.len != want || !buf.starts_with(CLAIM) || m.fds.len() != 3 {
        return Err(Refusal::Retry("not a claim".into()));
    }
    if buf[CLAIM.len()..want] != key[..] {
        return Err(Refusal::Retry("made for other inputs".into()));
    }
    warden_event::timing::mark("warm: claim read");
    if let Some(p) = fp.changed() {
        return Err(Refusal::Stale(format!(
            "{} changed since it was built",
            p.display()
        )));
    }
    let mut it = m.fds.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(c)) => Ok([a, b, c]),
        _ => Err(Refusal::Retry("not a claim".into())),
    }
}

enum Wake {
    Listener,
    Other,
    Timeout,
}

/// Waits until `listener` has a connection, `other` is readable (a pidfd: its process
/// ended), or `within` passed. A failed poll is an end.
fn wait_either(listener: BorrowedFd<'_>, other: BorrowedFd<'_>, within: Duration) -> Wake {
    let mut p = [listener, other].map(|fd| libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let end = Instant::now() + within;
    loop {
        let ms = end
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(i32::MAX as u128) as i32;
        // SAFETY: poll on two pollfds we own.
        let n = unsafe { libc::poll(p.as_mut_ptr(), 2, ms) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return match n {
            0 => Wake::Timeout,
            n if n > 0 && p[1].revents == 0 => Wake::Listener,
            _ => Wake::Other,
        };
    }
}

/// What the spare printed while it was built (its stderr is a memory file), written to the
/// claiming run's stderr.
fn replay_stderr(to: BorrowedFd<'_>) {
    let text = read_own_stderr();
    if let Ok(f) = to.try_clone_to_owned() {
        let _ = std::fs::File::from(f).write_all(&text);
    }
}

/// A spare's stderr so far (the memory file), from its start.
fn read_own_stderr() -> Vec<u8> {
    // SAFETY: fd 2 is open for the whole call; the File is not dropped (ManuallyDrop).
    let mine = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(2) });
    let mut text = Vec::new();
    use std::io::{Read, Seek};
    if (&*mine).seek(std::io::SeekFrom::Start(0)).is_err()
        || (&*mine).read_to_end(&mut text).is_err()
    {
        return Vec::new();
    }
    text
}

/// The exit code was sent (or is being sent): the claiming run's end is expected.
static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A claimed spare's exit code, as soon as it is known and everything the session prints
/// is printed (the session's end, before its cgroups are removed); [`finish`] sends it
/// otherwise. Once.
pub fn report(code: i32) {
    let Some(c) = CLAIMED.get() else {
        return;
    };
    let Some(conn) = c.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    REPORTED.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut m = b"EX".to_vec();
    m.extend_from_slice(&code.to_le_bytes());
    let _ = warden_sys::fdpass::send(&conn, &m, &[]);
}

/// What a spare's successor is made of: its own inputs and key ([`Spare::hold`]).
static SUCCESSOR: OnceLock<(Inputs, [u8; 32])> = OnceLock::new();

/// A claimed spare's end (its `main` calls this last): the claiming run exits with `code`,
/// then the spare starts its successor, off that run's time. An unclaimed spare leaves why it
/// ended for the next claim ([`record_end`]); nothing when this process is not a spare.
pub fn finish(code: i32) {
    if unclaimed_spare() {
        record_end(code);
        return;
    }
    if CLAIMED.get().is_none() {
        return;
    }
    report(code);
    if let Some((inputs, key)) = SUCCESSOR.get() {
        if let Err(e) = spawn_spare(inputs, key) {
            tracing::debug!("warm: no successor: {e}");
        }
    }
}

/// Why a `--warm` run started cold.
pub enum Claim {
    Claimed(Claimed),
    Cold(String),
}

/// A claimed spare runs the agent: [`Claimed::wait`].
pub struct Claimed {
    conn: UnixStream,
    spare: OwnedFd,
}

/// Claims the spare made for `key`, if there is one: passes fds 0-2 of this process.
pub fn claim(key: &[u8; 32]) -> Claim {
    let Some(dir) = dir() else {
        return Claim::Cold("no private runtime directory ($XDG_RUNTIME_DIR)".into());
    };
    let path = dir.join(socket_name(key));
    let conn = match UnixStream::connect(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Claim::Cold(match ended_note(&dir, key) {
                Some(n) => format!("no spare; the last one ended unclaimed: {n}"),
                None => "no spare".into(),
            })
        }
        Err(e) => {
            // A spare that died without removing its socket: the next one takes the name.
            if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                let _ = std::fs::remove_file(&path);
            }
            return Claim::Cold(format!("the spare: {e}"));
        }
    };
    let Ok(cred) = rustix::net::sockopt::socket_peercred(&conn) else {
        return Claim::Cold("the spare's credentials".into());
    };
    // SAFETY: a plain getter.
    if cred.uid.as_raw() != unsafe { libc::getuid() } {
        return Claim::Cold("the spare's socket is another user's".into());
    }
    // The fds go only to a warden spare: this binary, run by this user on the host (our
    // user and pid namespaces, no seccomp filter, no no_new_privs), never to whatever else
    // listens there (attack review 115, F1).
    let pid = cred.pid.as_raw_nonzero().get();
    let Ok(spare) = warden_sys::pidfd::open(pid) else {
        return Claim::Cold("the spare is gone".into());
    };
    warden_event::timing::mark("warm: connected");
    if let Err(why) = is_spare(pid) {
        return Claim::Cold(format!("not a spare: {why}"));
    }
    warden_event::timing::mark("warm: spare checked");
    // Still the process checked (its pid was not taken by another since): a pidfd polls
    // readable once its process exited.
    let mut p = libc::pollfd {
        fd: spare.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one pollfd we own, without waiting.
    if unsafe { libc::poll(&mut p, 1, 0) } != 0 {
        return Claim::Cold("the spare is gone".into());
    }
    let mut msg = CLAIM.to_vec();
    msg.extend_from_slice(key);
    // SAFETY: fds 0-2 are open (`main` makes sure) for the call.
    let std = unsafe { [0, 1, 2].map(|f| BorrowedFd::borrow_raw(f)) };
    if let Err(e) = warden_sys::fdpass::send(&conn, &msg, &std) {
        return Claim::Cold(format!("the claim: {e}"));
    }
    warden_event::timing::mark("warm: claim sent");
    let _ = conn.set_read_timeout(Some(CLAIM_DEADLINE));
    let mut buf = [0u8; 6];
    match warden_sys::fdpass::recv(&conn, &mut buf, 0, WAIT_ALL) {
        Ok(m) if m.len == 6 && buf.starts_with(b"OK") => {
            let _ = conn.set_read_timeout(None);
            Claim::Claimed(Claimed { conn, spare })
        }
        Ok(m) if m.len == 6 && buf.starts_with(b"NO") => {
            let n = u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]).min(4096) as usize;
            let mut why = vec![0u8; n];
            let got = warden_sys::fdpass::recv(&conn, &mut why, 0, WAIT_ALL).map_or(0, |m| m.len);
            Claim::Cold(format!(
                "the spare refused: {}",
                String::from_utf8_lossy(&why[..got])
            ))
        }
        Ok(_) => Claim::Cold("the spare went away".into()),
        Err(e) => {
            let _ = conn.shutdown(std::net::Shutdown::Both);
            Claim::Cold(format!("the spare's answer: {e}"))
        }
    }
}

/// Whether process `pid` (a socket's peer) is a spare: in our user and pid namespaces, running
/// this very binary, with no seccomp filter and no `no_new_privs` (every sandboxed process has
/// both).
fn is_spare(pid: i32) -> Result<(), String> {
    for ns in ["user", "pid"] {
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{ns}")).map(|m| m.ino());
        let ours = std::fs::metadata(format!("/proc/self/ns/{ns}")).map(|m| m.ino());
        match (theirs, ours) {
            (Ok(a), Ok(b)) if a == b => {}
            _ => return Err(format!("in another {ns} namespace")),
        }
    }
    let id = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    if id(format!("/proc/{pid}/exe")).is_none()
        || id(format!("/proc/{pid}/exe")) != id("/proc/self/exe".into())
    {
        return Err("another program".into());
    }
    let status = warden_sys::procfs::Status::read(pid).map_err(|e| format!("its status: {e}"))?;
    if status.seccomp() != Some(0) || status.no_new_privs() != Some(false) {
        return Err("a confined process".into());
    }
    Ok(())
}

impl Claimed {
    /// Forwards the signals a session's supervisor handles (SIGINT, SIGTERM, SIGHUP, SIGQUIT,
    /// SIGUSR1, SIGUSR2, SIGWINCH) to the spare, which treats them as its own, until it
    /// reports the exit code. None when the spare ended without one.
    pub fn wait(self) -> Option<i32> {
        // The spare puts the terminal in raw mode and back; a spare that dies leaves it so.
        // SAFETY: a zeroed termios, filled by tcgetattr on fd 0 when it is a terminal.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let tty = unsafe { libc::tcgetattr(0, &mut saved) } == 0;
        let code = self.wait_code();
        if code.is_none() && tty {
            // SAFETY: restoring the attributes read above.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
        }
        code
    }

    fn wait_code(self) -> Option<i32> {
        let set = crate::supervise::block_signals();
        // SAFETY: signalfd over the blocked set.
        let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
        if sfd < 0 {
            return None;
        }
        // SAFETY: a fresh fd we own.
        let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
        loop {
            let mut p = [
                libc::pollfd {
                    fd: self.conn.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: sfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: poll on two pollfds we own.
            if unsafe { libc::poll(p.as_mut_ptr(), 2, -1) } < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return None;
            }
            if p[1].revents != 0 {
                // SAFETY: a zeroed plain-data struct.
                let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
                // SAFETY: reading one siginfo record into a struct of its size.
                let n = unsafe {
                    libc::read(
                        sfd.as_raw_fd(),
                        &mut si as *mut _ as *mut libc::c_void,
                        std::mem::size_of::<libc::signalfd_siginfo>(),
                    )
                };
                if n == std::mem::size_of::<libc::signalfd_siginfo>() as isize {
                    let _ = warden_sys::pidfd::send_signal(&self.spare, si.ssi_signo as i32);
                }
            }
            if p[0].revents != 0 {
                let mut buf = [0u8; 6];
                return match warden_sys::fdpass::recv(&self.conn, &mut buf, 0, WAIT_ALL) {
                    Ok(m) if m.len == 6 && buf.starts_with(b"EX") => {
                        Some(i32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]))
                    }
                    _ => None,
                };
            }
        }
    }
}

/// Starts the spare for `inputs` (detached: its own session, fds 0-1 `/dev/null`, stderr a
/// memory file), unless one is there already. The spare runs this very binary
/// (`/proc/self/exe`) with `inputs`' arguments, environment and working directory.
pub fn spawn_spare(inputs: &Inputs, key: &[u8; 32]) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let dir = dir().ok_or("no private runtime directory")?;
    if std::fs::symlink_metadata(dir.join(socket_name(key))).is_ok() {
        return Ok(());
    }
    // At most `MAX_SPARES` wait (each is a whole sandbox: ~20 MB, its placeholders in its
    // workspace, an inotify walk): a script of many different `--warm` commands leaves that
    // many, not one each. A socket older than the longest time to live is a dead spare's.
    // A socket no spare listens at any more (killed, OOM) is removed, not counted (attack
    // review 116, F3: four such sockets switched warm start off for good).
    let waiting = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().as_bytes().ends_with(b".sock"))
                .filter(|e| match UnixStream::connect(e.path()) {
                    Ok(_) => true,
                    Err(err) if err.raw_os_error() == Some(libc::ECONNREFUSED) => {
                        let _ = std::fs::remove_file(e.path());
                        false
                    }
                    Err(_) => false,
                })
                .count()
        })
        .unwrap_or(0);
    if waiting >= MAX_SPARES {
        return Err(format!("{waiting} spares wait already"));
    }
    let Some((argv0, args)) = inputs.argv.split_first() else {
        return Err("no arguments".into());
    };
    let log = rustix::fs::memfd_create("warden-spare-stderr", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| format!("memfd: {e}"))?;
    let ttys: String = inputs
        .ttys
        .iter()
        .map(|t| if *t { '1' } else { '0' })
        .collect();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0(argv0)
        .args(args)
        .env_clear()
        .envs(inputs.env.iter().map(|(k, v)| (k, v)))
        .env(SPARE_ENV, format!("ttys={ttys}"))
        .current_dir(&inputs.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log));
    // The spare starts with the signal mask this run started with, not the one warden blocks
    // for its signal thread: its agent gets it, as a cold run's does (attack review 115, F3:
    // every signal the supervisor handles stayed blocked in the warm agent).
    // SAFETY: a zeroed sigset, emptied.
    let mask = warden_sandbox::launch::start_mask().unwrap_or_else(|| unsafe {
        let mut e: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut e);
        e
    });
    // SAFETY: setsid and pthread_sigmask are async-signal-safe; the child's own session keeps
    // the terminal's signals (and its hang-up) away from it.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
            Ok(())
        });
    }
    cmd.spawn().map(|_| ()).map_err(|e| format!("spawn: {e}"))
}

/// The paths whose state a spare's [`Fingerprint`] holds besides the policy's own files: the
/// machine and user policy files and the workspace's (absent ones too), `--policy`'s, the
/// trust index, the BPF daemon's socket.
pub fn watched_paths(home: &Path, workspace: &Path, policy_file: Option<&Path>) -> Vec<PathBuf> {
    let mut v = vec![
        PathBuf::from(warden_policy::load::SYSTEM_POLICY),
        warden_policy::load::user_policy_path(home),
        workspace.join(warden_policy::load::WORKSPACE_POLICY),
        warden_execguard::index::default_path(home),
        PathBuf::from(warden_daemon::SOCKET),
        // The workspace's repository as the plan found it (attack review 116, F1: a `git
        // init` on the host while a spare waited left the new `.git/hooks` and `.git/config`
        // unlocked to the agent, and the end's guard then stripped them as the agent's): its
        // `.git` (a directory by identity), config and hooks; and the git configuration the
        // sandbox shows as copies taken at the start.
        workspace.join(".git"),
        workspace.join(".git/config"),
        workspace.join(".git/hooks"),
        home.join(".gitconfig"),
        home.join(".config/git/config"),
    ];
    v.extend(policy_file.map(Path::to_path_buf));
    v
}

/// `OsStr` of a `key` for messages (its socket's name).
pub fn describe(key: &[u8; 32]) -> OsString {
    OsStr::new(&socket_name(key)).to_os_string()
}
