//! Which blocked file attempts the supervisor can see, and seeing them.
//!
//! The sandbox blocks most file access without any hook being called: a credential under the
//! private `$HOME` simply does not exist (ENOENT), a protected path is a read-only mount
//! (EROFS, returned by the mount layer before any LSM or fanotify hook runs). Those attempts
//! leave no trace in the kernel that a listener without machine-wide state could read.
//!
//! What *can* be seen without machine-wide state: a denied file inside a visible root
//! (`/etc/shadow`, a `files.deny` entry in the workspace) is hidden by bind-mounting a private
//! empty file over it (see [`crate::mounts`]). Each hidden file gets its own empty inode on
//! the sandbox's private `/run`, and an fanotify **notification** group (no permission
//! events: the hiding mount already blocks, nothing waits on the listener) holds one inode
//! mark per hidden file, for `FAN_OPEN`. An open of a hidden file therefore queues one event
//! naming that inode, and only that: no other inode, mount or file system of the host or of
//! the sandbox is marked, so ordinary file access does not pay for it.
//!
//! - The sandbox's init (see [`crate::launch`]) opens the hidden files in its mount view
//!   (read-only: they are the private empty files) and passes them to the supervisor.
//! - Right after the fork, before the agent is let go, the supervisor creates the group
//!   (`FAN_REPORT_FID`: no fds are opened for events, and an unprivileged user may create
//!   it; run by root the group is privileged and events carry the opener's pid, otherwise
//!   the kernel reports pid 0), marks those inodes and keeps their file handles. No process
//!   of the sandbox ever holds the group.
//! - The supervisor reads events for the session and drains the queue after the sandbox is
//!   gone, so an open right before exit is not lost. Each event becomes a `sandbox` decision
//!   with the `files.deny` rule that hid the path. The group is closed on a thread of its own
//!   (its teardown waits for an SRCU grace period, ~10 ms here).
//!
//! Hidden *directories* (a mode-000 read-only tmpfs) refuse the open with EACCES before
//! fanotify runs, so they are not seen; see the README's table.

use crate::plan::Plan;
use crate::InitTask;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// fanotify file handle → index into the plan's hidden files.
type HandleIndex = Vec<(Vec<u8>, usize)>;

/// One hidden-file open, as read from the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The hidden path (as the plan names it).
    pub path: PathBuf,
    /// The opener's pid in the supervisor's pid namespace; 0 when the kernel withholds it
    /// (an unprivileged group).
    pub pid: i32,
}

/// The supervisor's side, made before the sandbox is forked: its end of the socket on which
/// the sandbox's init hands over the hidden files (see [`prepare`]).
pub struct HiddenWatch {
    table: std::os::unix::net::UnixStream,
    paths: Vec<PathBuf>,
}

/// The running reader (see [`HiddenWatch::start`]).
pub struct Running {
    stop: Arc<AtomicBool>,
    /// Write end of the reader's wake pipe: dropped by [`Running::finish`].
    wake: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<Option<OwnedFd>>>,
    recorder: Option<Arc<Recorder>>,
}

/// The hidden files of a plan, in [`Plan::hide`] order (directories and symlinks are not
/// watched: see the module doc).
fn hidden_files(plan: &Plan) -> Vec<(usize, PathBuf)> {
    plan.hide
        .iter()
        .enumerate()
        .filter(|(_, h)| {
            std::fs::symlink_metadata(h)
                .map(|m| m.file_type().is_file())
                .unwrap_or(false)
        })
        .map(|(i, h)| (i, h.clone()))
        .collect()
}

/// The init task that opens the hidden files in the sandbox's view (read-only: they are the
/// private empty files) and hands them to the supervisor, which marks them after the fork
/// ([`HiddenWatch::start`]). The group is the supervisor's alone: no process of the sandbox
/// ever holds it, so its teardown (an SRCU grace period) never delays the sandbox's exit.
/// `None` when the plan hides no file.
pub fn prepare(plan: &Plan) -> Result<Option<(HiddenWatch, InitTask)>, crate::error::SysError> {
    let files = hidden_files(plan);
    if files.is_empty() {
        return Ok(None);
    }
    let (mine, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| crate::error::SysError::io("socketpair", e))?;
    let task: InitTask = Box::new(move || {
        let mut out = theirs;
        let mut opened = Vec::new();
        let mut index = String::new();
        for (i, p) in &files {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(p);
            if let Ok(f) = f {
                index.push_str(&format!("{i} "));
                opened.push(OwnedFd::from(f));
            }
        }
        index.push('\n');
        let raw: Vec<i32> = opened.iter().map(|f| f.as_raw_fd()).collect();
        // A failure only loses records; the hiding itself does not depend on this.
        if crate::sys::send_fds(out.as_raw_fd(), &raw).is_ok() {
            let _ = out.write_all(index.as_bytes());
        }
        Ok(Box::new(|| {}) as Box<dyn FnOnce() + Send>)
    });
    Ok(Some((
        HiddenWatch {
            table: mine,
            paths: plan.hide.clone(),
        },
        task,
    )))
}

/// Why recording hidden-file opens could not start (said at `info`; never fatal).
#[derive(Debug, thiserror::Error)]
enum ArmError {
    #[error(transparent)]
    Sys(#[from] crate::error::SysError),
    /// Reading what init handed over (`what` names it).
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Init's hand-over did not make sense.
    #[error("{0}")]
    Protocol(String),
}

/// A notification group reporting file ids (an unprivileged user may create it; run by
/// root it is privileged and events carry the opener's pid).
fn new_group() -> Result<OwnedFd, crate::error::SysError> {
    // SAFETY: plain syscall; the fd is owned below.
    let fd = unsafe {
        libc::fanotify_init(
            libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_REPORT_FID,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u32,
        )
    };
    if fd < 0 {
        return Err(crate::error::SysError::last("fanotify_init"));
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Marks the inode behind `f` for opens.
fn mark(group: &OwnedFd, f: &OwnedFd) -> Result<(), crate::error::SysError> {
    // SAFETY: plain syscall; a NULL path marks the object `f` refers to.
    let r = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            libc::FAN_MARK_ADD,
            libc::FAN_OPEN,
            f.as_raw_fd(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(crate::error::SysError::last("fanotify_mark"));
    }
    Ok(())
}

/// `handle_type` (4 bytes, native order) followed by the handle's bytes: the same bytes an
/// fanotify FID record carries after its `handle_bytes` field.
fn handle_of(f: &OwnedFd) -> Option<Vec<u8>> {
    const MAX: usize = 128;
    let mut buf = vec![0u8; 8 + MAX];
    let mut mount_id = 0;
    // AT_HANDLE_FID (6.5+): the identifier fanotify reports; plain handles on older kernels
    // (the same bytes for tmpfs).
    const AT_HANDLE_FID: i32 = 0x200;
    let ok = [AT_HANDLE_FID, 0].into_iter().any(|flags| {
        buf[..4].copy_from_slice(&(MAX as u32).to_ne_bytes());
        // SAFETY: buf holds a file_handle header and MAX bytes of handle; "" with
        // AT_EMPTY_PATH names `f` itself.
        unsafe {
            libc::name_to_handle_at(
                f.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr() as *mut libc::file_handle,
                &mut mount_id,
                flags | libc::AT_EMPTY_PATH,
            ) == 0
        }
    });
    if !ok {
        return None;
    }
    let n = u32::from_ne_bytes(buf[..4].try_into().ok()?) as usize;
    Some(buf[4..8 + n.min(MAX)].to_vec())
}

impl HiddenWatch {
    /// Right after the fork, before the agent is let go (threads may exist by then): takes
    /// the hidden files from init, creates the group, marks them, and starts the reader,
    /// which calls `on` for every open of a hidden file. A failure here records nothing
    /// (said at `info`); it never affects the sandbox.
    pub fn start(self, on: impl Fn(Seen) + Send + 'static) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let idle = |stop| Running {
            stop,
            wake: None,
            thread: None,
            recorder: None,
        };
        let (group, table) = match self.arm() {
            Ok(x) => x,
            Err(e) => {
                tracing::info!("opens of hidden files are not recorded: {e}");
                return idle(stop);
            }
        };
        let s = stop.clone();
        // Closing the write end wakes the reader at once (no polling interval at the end).
        let (wake_r, wake_w) = match pipe() {
            Some(p) => (Some(p.0), Some(p.1)),
            None => (None, None),
        };
        let paths = self.paths;
        let thread = std::thread::spawn(move || read_events(group, &table, &paths, &s, wake_r, on));
        Running {
            stop,
            wake: wake_w,
            thread: Some(thread),
            recorder: None,
        }
    }

    /// (group, handle → plan index) for the files init handed over.
    fn arm(&self) -> Result<(OwnedFd, HandleIndex), ArmError> {
        let _ = self
            .table
            .set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let sock = OwnedFd::from(self.table.try_clone().map_err(|source| ArmError::Io {
            what: "hidden-file socket",
            source,
        })?);
        let (files, _) = crate::sys::recv_fds(&sock)?
            .ok_or_else(|| ArmError::Protocol("the sandbox's init sent no hidden files".into()))?;
        let mut line = String::new();
        BufReader::new(&self.table)
            .read_line(&mut line)
            .map_err(|source| ArmError::Io {
                what: "hidden-file index",
                source,
            })?;
        let index: Vec<usize> = line
            .split_whitespace()
            .map(|x| {
                x.parse()
                    .map_err(|_| ArmError::Protocol(format!("hidden-file index: `{x}`")))
            })
            .collect::<Result<_, _>>()?;
        if index.len() != files.len() {
            return Err(ArmError::Protocol(
                "hidden-file index does not match the files".into(),
            ));
        }
        let group = new_group()?;
        let mut table = Vec::new();
        for (f, i) in files.iter().zip(index) {
            if mark(&group, f).is_ok() {
                if let Some(h) = handle_of(f) {
                    table.push((h, i));
                }
            }
        }
        if table.is_empty() {
            return Err(ArmError::Protocol("no hidden file could be marked".into()));
        }
        Ok((group, table))
    }
}

/// The reader: events until stopped, then what is still queued. Returns the group, which
/// the caller closes off the session's critical path (its teardown waits for an SRCU grace
/// period).
fn read_events(
    group: OwnedFd,
    table: &[(Vec<u8>, usize)],
    paths: &[PathBuf],
    stop: &AtomicBool,
    wake: Option<OwnedFd>,
    on: impl Fn(Seen),
) -> Option<OwnedFd> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let done = stop.load(Ordering::Acquire);
        let mut pfd = [
            libc::pollfd {
                fd: group.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_ref().map_or(-1, |w| w.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Without the wake pipe, a short timeout so the stop flag is seen.
        let timeout = match (done, &wake) {
            (true, _) => 0,
            (false, Some(_)) => -1,
            (false, None) => 100,
        };
        // SAFETY: poll on fds we own (a negative fd is ignored by the kernel).
        unsafe { libc::poll(pfd.as_mut_ptr(), 2, timeout) };
        loop {
            // SAFETY: reading into our buffer.
            let n = unsafe {
                libc::read(
                    group.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n <= 0 {
                break;
            }
            for (h, pid) in parse_events(&buf[..n as usize]) {
                if let Some((_, i)) = table.iter().find(|(x, _)| *x == h) {
                    if let Some(path) = paths.get(*i) {
                        on(Seen {
                            path: path.clone(),
                            pid,
                        });
                    }
                }
            }
        }
        if done {
            return Some(group);
        }
    }
}

/// Turns [`Seen`] opens into `sandbox` decisions naming the `files.deny` entry that hid the
/// path. At most [`PER_PATH`] decisions per path; the rest are counted into one summary.
pub struct Recorder {
    /// (expanded entry; the entry as written).
    entries: Vec<(PathBuf, String)>,
    /// The entries and their resolved forms, worked out at the first decision (the
    /// canonical forms cost a `realpath` each, ~50 with the default policy, on every
    /// session's start path otherwise; they only name the rule).
    rules: std::sync::OnceLock<Vec<(PathBuf, String)>>,
    counts: std::sync::Mutex<std::collections::HashMap<PathBuf, u64>>,
}

/// Decisions recorded per hidden path before the rest are only counted.
pub const PER_PATH: u64 = 100;

impl Recorder {
    pub fn new(policy: &warden_policy::Policy, anchors: &warden_policy::Anchors) -> Recorder {
        let entries = policy
            .files
            .deny
            .iter()
            .map(|e| (anchors.expand(e.trim_end_matches('/')), e.clone()))
            .collect();
        Recorder {
            entries,
            rules: std::sync::OnceLock::new(),
            counts: Default::default(),
        }
    }

    fn rules(&self) -> &[(PathBuf, String)] {
        self.rules.get_or_init(|| {
            let mut rules = Vec::new();
            for (p, e) in &self.entries {
                if let Ok(real) = std::fs::canonicalize(p) {
                    if real != *p {
                        rules.push((real, e.clone()));
                    }
                }
                rules.push((p.clone(), e.clone()));
            }
            rules
        })
    }

    /// `files.deny:<entry as written>` for the longest entry covering `path`.
    pub fn rule_for(&self, path: &std::path::Path) -> String {
        self.rules()
            .iter()
            .filter(|(p, _)| path.starts_with(p))
            .max_by_key(|(p, _)| p.as_os_str().len())
            .map(|(_, e)| format!("files.deny:{e}"))
            .unwrap_or_else(|| "files.deny".to_string())
    }

    pub fn decision(&self, s: &Seen) -> warden_event::Decision {
        let rule = self.rule_for(&s.path);
        let who = if s.pid > 0 {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", s.pid)).unwrap_or_default();
            match comm.trim() {
                "" => format!("pid {}", s.pid),
                c => format!("pid {} ({c})", s.pid),
            }
        } else {
            "sandbox".to_string()
        };
        warden_event::Decision::new(
            warden_event::Layer::Sandbox,
            who,
            s.path.display().to_string(),
            rule.clone(),
            warden_event::Verdict::Deny,
            format!(
                "opened a hidden path: the sandbox shows an empty read-only file in its place ({rule}); a human can lift it only by removing that entry from the policy outside the sandbox"
            ),
        )
        .with("access", "open")
        .with("seen_by", "fanotify")
    }

    /// Records one open (or counts it past [`PER_PATH`]).
    pub fn record(&self, s: &Seen) {
        let n = {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let n = c.entry(s.path.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if n <= PER_PATH {
            self.decision(s).emit();
        }
    }

    /// One summary decision per path opened more than [`PER_PATH`] times.
    pub fn summarize(&self) {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for (p, n) in c.iter().filter(|(_, n)| **n > PER_PATH) {
            self.decision(&Seen {
                path: p.clone(),
                pid: 0,
            })
            .with("count", *n)
            .with("unrecorded", *n - PER_PATH)
            .emit();
        }
    }
}

/// For the exec guard: the rule that hides an absolute path from a session's view, for an
/// exec that failed with ENOENT (see `warden_execguard::unotify::HiddenLookup`). The host is
/// only *looked at* (`lstat`, and the canonical form the policy judges): nothing is opened.
/// - `files.deny`: always recorded (an attempt on a credential path);
/// - not under any readable root (`default`) or under a private tree (`private`: the
///   sandbox's own `/tmp` and `$HOME` hide the host's): recorded when the host has it.
pub fn hidden_lookup(
    policy: &warden_policy::Policy,
    anchors: &warden_policy::Anchors,
) -> impl Fn(&std::path::Path) -> Option<(String, String)> + Send + Sync + 'static {
    use warden_policy::files::{Access, FileRules};
    let rules = FileRules::session(policy, anchors);
    let rec = Recorder::new(policy, anchors);
    move |path: &std::path::Path| {
        let d = rules.decide(path, Access::Read);
        let on_host = std::fs::symlink_metadata(path).is_ok();
        match (d.allowed, d.rule) {
            (false, "files.deny") => {
                let rule = rec.rule_for(path);
                Some((
                    rule.clone(),
                    format!("exec of a hidden path: it does not exist in the sandbox's view (No such file or directory) because of {rule}; a human can lift it only by removing that entry from the policy outside the sandbox"),
                ))
            }
            (false, "default") if on_host => Some((
                "default".to_string(),
                format!("exec of a path the sandbox does not show (No such file or directory): it is not under any readable root; a human adds it (or its directory) to files.read in ~/.config/warden/policy.toml outside the sandbox: read = [\"{}\"]", path.parent().unwrap_or(path).display()),
            )),
            (true, "private" | "tmpdir") if on_host => {
                let tree = d.entry.as_ref().map(|e| e.display().to_string()).unwrap_or_default();
                Some((
                    format!("private:{tree}"),
                    format!("exec of a host file under {tree}: the sandbox's {tree} is a private tmpfs, so the host's file does not exist in its view (No such file or directory); copy it into the workspace, or a human adds its directory to files.read outside the sandbox"),
                ))
            }
            _ => None,
        }
    }
}

/// The entry of `list` (as written) that covers `path`, longest first.
fn entry_for(
    list: &[String],
    anchors: &warden_policy::Anchors,
    path: &std::path::Path,
) -> Option<String> {
    list.iter()
        .map(|e| (anchors.expand(e.trim_end_matches('/')), e))
        .filter(|(p, _)| path.starts_with(p))
        .max_by_key(|(p, _)| p.as_os_str().len())
        .map(|(_, e)| e.clone())
}

/// For the exec guard's write observation: the rule behind a path that lies on a read-only
/// mount of the view (the kernel refuses the write with EROFS). `files.protect` entries
/// first, then the workspace guard's git locks at any depth (`.git/hooks`, `.git/config`),
/// then whatever makes the path unwritable (a read-only root such as `files.read`).
pub fn readonly_lookup(
    policy: &warden_policy::Policy,
    anchors: &warden_policy::Anchors,
) -> impl Fn(&std::path::Path) -> Option<(String, String)> + Send + Sync + 'static {
    use warden_policy::files::{Access, FileRules};
    let rules = FileRules::session(policy, anchors);
    let protect = policy.files.protect.clone();
    let anchors = anchors.clone();
    move |path: &std::path::Path| {
        if let Some(e) = entry_for(&protect, &anchors, path) {
            return Some((
                format!("files.protect:{e}"),
                format!("write to a protected path (Read-only file system): `{e}` stays read-only so nothing the agent writes runs or loads on the host without a human seeing it; make the change outside the sandbox, or a human removes it from files.protect"),
            ));
        }
        let names: Vec<_> = path.components().map(|c| c.as_os_str()).collect();
        let in_git = names.windows(2).any(|w| {
            w[0] == ".git" && (w[1] == "hooks" || w[1] == "config" || w[1] == "config.worktree")
        });
        if in_git {
            return Some((
                "builtin:git-guard".to_string(),
                "write to a git repository's hooks or config (Read-only file system): the workspace guard locks them in every repository, at any depth, so git on the host never runs what the agent wrote; make the change outside the sandbox".to_string(),
            ));
        }
        let d = rules.decide(path, Access::Write);
        let rule = match &d.entry {
            Some(e) if !d.allowed => format!("{}:{}", d.rule, e.display()),
            _ if !d.allowed => d.rule.to_string(),
            _ => "readonly".to_string(),
        };
        Some((
            rule.clone(),
            format!("write to a read-only part of the sandbox's view (Read-only file system; {rule}): only the workspace, the private TMPDIR and files.write are writable; a human adds the directory to files.write outside the sandbox"),
        ))
    }
}

impl HiddenWatch {
    /// [`HiddenWatch::start`] with a [`Recorder`]; [`Running::finish`] writes its summary.
    pub fn start_recording(self, rec: Recorder) -> Running {
        let rec = Arc::new(rec);
        let r = rec.clone();
        let mut running = self.start(move |s| r.record(&s));
        running.recorder = Some(rec);
        running
    }
}

impl Running {
    /// Tells the reader to read what is still queued (the sandbox is gone) and stop, without
    /// waiting for it ([`Running::finish`] does).
    pub fn signal(&mut self) {
        self.stop.store(true, Ordering::Release);
        drop(self.wake.take());
    }

    /// Reads what is still queued (the sandbox is gone) and stops.
    pub fn finish(mut self) {
        self.signal();
        if let Some(t) = self.thread.take() {
            if let Ok(Some(group)) = t.join() {
                // Closing the group waits for an SRCU grace period: not on the session's
                // critical path, nor on its exit.
                crate::sys::close_elsewhere(group);
            }
        }
        if let Some(r) = self.recorder.take() {
            r.summarize();
        }
    }
}

fn pipe() -> Option<(OwnedFd, OwnedFd)> {
    warden_sys::pipe_cloexec().ok()
}

/// (handle type + handle bytes, pid) of each FID event in `buf`. Malformed records end the
/// parse (the kernel writes whole events; nothing here trusts lengths beyond the buffer).
fn parse_events(buf: &[u8]) -> Vec<(Vec<u8>, i32)> {
    let mut out = Vec::new();
    let meta = std::mem::size_of::<libc::fanotify_event_metadata>();
    let mut off = 0;
    while off + meta <= buf.len() {
        let rd = |o: usize, n: usize| buf.get(off + o..off + o + n);
        let Some(len) = rd(0, 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
        else {
            break;
        };
        let len = len as usize;
        let Some(mlen) = rd(6, 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_ne_bytes)
        else {
            break;
        };
        let Some(pid) = rd(20, 4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes)
        else {
            break;
        };
        if len < meta || off + len > buf.len() {
            break;
        }
        // Info records: header (type u8, pad u8, len u16), fsid (8), handle_bytes (4),
        // handle_type (4), handle.
        let mut i = off + mlen as usize;
        while i + 4 <= off + len {
            let ilen = u16::from_ne_bytes([buf[i + 2], buf[i + 3]]) as usize;
            if ilen < 4 || i + ilen > off + len {
                break;
            }
            if buf[i] == 1 /* FAN_EVENT_INFO_TYPE_FID */ && ilen >= 4 + 8 + 8 {
                let hb = u32::from_ne_bytes([buf[i + 12], buf[i + 13], buf[i + 14], buf[i + 15]])
                    as usize;
                let start = i + 16;
                if start + 4 + hb <= i + ilen {
                    out.push((buf[start..start + 4 + hb].to_vec(), pid));
                }
            }
            i += ilen;
        }
        off += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ignores_truncated_and_reads_fid() {
        assert!(parse_events(&[1, 2, 3]).is_empty());
        let mut ev = Vec::new();
        let handle = [8u8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let info_len = 4 + 8 + 4 + handle.len();
        let total = 24 + info_len;
        ev.extend_from_slice(&(total as u32).to_ne_bytes());
        ev.push(3);
        ev.push(0);
        ev.extend_from_slice(&24u16.to_ne_bytes());
        ev.extend_from_slice(&libc::FAN_OPEN.to_ne_bytes());
        ev.extend_from_slice(&(-1i32).to_ne_bytes());
        ev.extend_from_slice(&42i32.to_ne_bytes());
        ev.push(1);
        ev.push(0);
        ev.extend_from_slice(&(info_len as u16).to_ne_bytes());
        ev.extend_from_slice(&[0u8; 8]);
        ev.extend_from_slice(&(8u32).to_ne_bytes());
        ev.extend_from_slice(&handle[..4]);
        ev.extend_from_slice(&handle[4..]);
        let got = parse_events(&ev);
        assert_eq!(got, vec![(handle.to_vec(), 42)]);
        // A length that runs past the buffer is not trusted.
        let mut bad = ev.clone();
        bad[0] = 200;
        assert!(parse_events(&bad).is_empty());
    }
}
