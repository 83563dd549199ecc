//! The session's stop switch: freeze, thaw and kill the whole sandboxed process tree at once.
//!
//! Every session gets a cgroup v2 leaf where the machine has a writable cgroup v2 hierarchy
//! (also on hybrid layouts, at `/sys/fs/cgroup/unified`: `cgroup.freeze` and `cgroup.kill`
//! are core files of every non-root v2 cgroup, no controller needed). The sandbox's first
//! process joins it before it forks anything, so the agent's whole tree is inside.
//! - freeze: `cgroup.freeze = 1`, then wait until `cgroup.events` says `frozen 1` (the kernel
//!   has stopped every task, including ones forked meanwhile);
//! - kill: `cgroup.kill = 1` (Linux 5.14+), else freeze and SIGKILL every member until empty;
//! - fallback without a usable v2 hierarchy: SIGSTOP / SIGCONT / SIGKILL of the agent's
//!   tree from outside, repeated until stable (weaker: a process forked between two passes
//!   runs until the next pass; after a kill the sandbox's init kills what is left). Like the
//!   leaf, it never touches stage 1 or init. `warden doctor` says which one is used.
//!
//! The agent cannot thaw itself: cgroupfs is not writable from its view (`/sys` and every mount below it are read-only, and the
//! leaf lives outside its mount namespace's reach), and it holds no capability.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const V2_ROOTS: &[&str] = &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

/// How a session is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freezer {
    /// A cgroup v2 leaf (the strong mechanism).
    Cgroup(PathBuf),
    /// Signals to every process of the agent's tree, found from `/proc` through the pid of
    /// the sandbox's first process (`root`, stage 1): its descendants `below` levels down and
    /// deeper. With namespaces `below` is 2 (stage 1, its init, then the agent): as the
    /// cgroup leaf holds only the agent's tree, stage 1 and init are never stopped or killed,
    /// so init ends the sandbox in order once the agent is gone (`kill(-1)` of what is left,
    /// the workspace guard's last pass, its exit report). Without namespaces stage 1 is the
    /// agent: `below` is 0.
    Signals { root: i32, below: u32 },
}

fn is_v2(root: &Path) -> bool {
    root.join("cgroup.controllers").exists() && root.join("cgroup.procs").exists()
}

/// Where session leaves are made: a writable cgroup v2 directory, preferring our own cgroup
/// (delegated to the user by systemd) over the hierarchy's root.
pub fn leaf_parent() -> Option<PathBuf> {
    for root in V2_ROOTS.iter().map(Path::new).filter(|r| is_v2(r)) {
        // Our own v2 cgroup ("0::/path").
        let own = warden_sys::procfs::cgroup(warden_sys::procfs::Proc::Me)
            .ok()
            .and_then(|s| warden_sys::procfs::cgroup_v2_path(&s).map(str::to_string))
            .unwrap_or_default();
        let own_dir = root.join(own.trim_start_matches('/'));
        // A process may not sit in an inner node with controllers enabled; a sibling
        // subtree under our own cgroup's parent is not ours to make. So: a child of the
        // hierarchy root when writable (root, or delegated root), else nothing.
        if warden_sys::writable(root) {
            return Some(root.join("warden-sessions"));
        }
        if own != "/" && warden_sys::writable(&own_dir) {
            return Some(own_dir.join("warden-sessions"));
        }
    }
    None
}

/// A session's cgroup v2 leaf; removed on drop once empty (members are killed first).
#[derive(Debug)]
pub struct SessionLeaf {
    /// The agent's tree's cgroup (`<parent>/<session>/agent`): what is frozen and killed.
    pub path: PathBuf,
    /// The session's directory around it ([`crate::cgroup::Nest`]).
    pub nest: crate::cgroup::Nest,
}

impl SessionLeaf {
    /// Makes `<parent>/<session>`. The session id must be a plain name.
    pub fn create(session: &str) -> io::Result<SessionLeaf> {
        if session.is_empty()
            || session.contains('/')
            || session.starts_with('.')
            || session.len() > 128
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad session id {session:?}"),
            ));
        }
        let parent = leaf_parent().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "no writable cgroup v2 hierarchy",
            )
        })?;
        match std::fs::create_dir(&parent) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        // Those of supervisors that were killed, and what stage 1 and init held at the end.
        crate::cgroup::sweep_nests(&parent);
        let nest = crate::cgroup::Nest::create(parent.join(session))?;
        Ok(SessionLeaf {
            path: nest.agent(),
            nest,
        })
    }

    pub fn procs(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    pub fn freezer(&self) -> Freezer {
        Freezer::Cgroup(self.path.clone())
    }
}

impl Drop for SessionLeaf {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                break;
            }
            let _ = Freezer::Cgroup(self.path.clone()).kill();
            std::thread::sleep(Duration::from_millis(20));
        }
        self.nest.remove_soon();
    }
}

fn members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn events_say(dir: &Path, key: &str, want: &str) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| {
            s.lines().any(|l| {
                let mut it = l.split_whitespace();
                it.next() == Some(key) && it.next() == Some(want)
            })
        })
        .unwrap_or(false)
}

/// The processes of the tree rooted at `root` that are `below` levels under it or deeper
/// (`0`: root included), from /proc.
fn tree(root: i32, below: u32) -> Vec<i32> {
    levels(root)
        .into_iter()
        .filter(|(_, d)| *d >= below)
        .map(|(p, _)| p)
        .collect()
}

/// Every process of the tree rooted at `root`, with its depth below it (`root` at 0).
fn levels(root: i32) -> Vec<(i32, u32)> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = vec![(root, 0u32)];
    let mut i = 0;
    while i < out.len() {
        let (p, d) = out[i];
        out.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == p)
                .map(|(c, _)| (*c, d + 1)),
        );
        i += 1;
    }
    out
}

/// Whether the kernel shows every thread of `pid` stopped (or gone): state `T`/`t`, a
/// zombie, or no entry. Every thread, not the process's own stat: once its main thread has
/// exited (`SYS_exit`) that reads `Z` while the other threads run on.
fn stopped(pid: i32) -> bool {
    threads(pid).iter().all(|(_, dir)| {
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            return true;
        };
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|st| matches!(st, "T" | "t" | "Z" | "X"))
    })
}

/// The threads of `pid` (id, `/proc/PID/task/TID`); none once it is gone.
fn threads(pid: i32) -> Vec<(i32, PathBuf)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| Some((t.file_name().to_str()?.parse().ok()?, t.path())))
        .collect()
}

fn signal_all(pids: &[i32], sig: i32) {
    for &p in pids {
        if p > 1 {
            // SAFETY: kill(2) on pids of the session's own tree.
            unsafe { libc::kill(p, sig) };
        }
    }
}

impl Freezer {
    /// Stops every process of the session; returns once the kernel says they are stopped
    /// (or errors at `deadline`, which the caller treats as a failure to freeze: kill).
    pub fn freeze(&self, deadline: Duration) -> io::Result<Duration> {
        let t0 = Instant::now();
        match self {
            Freezer::Cgroup(dir) => {
                std::fs::write(dir.join("cgroup.freeze"), "1")?;
                loop {
                    if events_say(dir, "frozen", "1") {
                        return Ok(t0.elapsed());
                    }
                    if t0.elapsed() > deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("{} not frozen within {deadline:?}", dir.display()),
                        ));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Freezer::Signals { root, below } => {
                // Repeat until a pass finds no new process AND the kernel shows every one
                // stopped: a process a pass has not reached yet can SIGCONT those it has
                // (red team: processes looping on kill(-1, SIGCONT) undid 3 of 10
                // freezes). A stopped process sends nothing, so once all are stopped at
                // once the tree stays stopped; past the deadline the caller kills.
                let mut seen: Vec<i32> = Vec::new();
                loop {
                    let now = tree(*root, *below);
                    signal_all(&now, libc::SIGSTOP);
                    if now.iter().all(|p| seen.contains(p))
                        && now.iter().all(|&p| p <= 1 || stopped(p))
                    {
                        return Ok(t0.elapsed());
                    }
                    seen = now;
                    if t0.elapsed() > deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the session's processes did not all stay stopped (one kept resuming the others, or the tree kept changing)",
                        ));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    pub fn thaw(&self) -> io::Result<()> {
        match self {
            Freezer::Cgroup(dir) => std::fs::write(dir.join("cgroup.freeze"), "0"),
            Freezer::Signals { root, below } => {
                signal_all(&tree(*root, *below), libc::SIGCONT);
                Ok(())
            }
        }
    }

    /// How many times each thread of the agent's tree has been run by the scheduler so far
    /// (`/proc/PID/task/TID/schedstat`, its third field), by thread id; `None` for the cgroup
    /// freezer, which nothing inside can undo. A tree frozen by signals that runs again for a
    /// moment and stops itself (a SIGCONT timer, then `raise(SIGSTOP)`) reads stopped at
    /// nearly every look: what it cannot hide is a count that went up, or a new thread.
    pub fn run_counts(&self) -> Option<std::collections::BTreeMap<i32, u64>> {
        let Freezer::Signals { root, below } = self else {
            return None;
        };
        let mut out = std::collections::BTreeMap::new();
        for pid in tree(*root, *below) {
            for (tid, dir) in threads(pid) {
                // A thread gone between the listing and the read ran no more: skipped.
                let Ok(st) = std::fs::read_to_string(dir.join("schedstat")) else {
                    continue;
                };
                let runs = st.split_whitespace().nth(2).and_then(|x| x.parse().ok());
                out.insert(tid, runs.unwrap_or(u64::MAX));
            }
        }
        Some(out)
    }

    /// Whether the tree is stopped now: the cgroup says so, or (signals) every thread of
    /// every process of the agent's tree is.
    pub fn is_frozen(&self) -> bool {
        match self {
            Freezer::Cgroup(dir) => events_say(dir, "frozen", "1"),
            // Rechecked: a stopped tree stays stopped only until a SIGCONT the kernel
            // sends for one of its processes (a POSIX timer, `F_SETSIG`) resumes it.
            Freezer::Signals { root, below } => {
                tree(*root, *below).iter().all(|&p| p <= 1 || stopped(p))
            }
        }
    }

    /// Ends every process of the session.
    pub fn kill(&self) -> io::Result<()> {
        match self {
            Freezer::Cgroup(dir) => {
                if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
                    return Ok(());
                }
                // Pre-5.14: freeze (no new forks), SIGKILL every member, thaw to let them die.
                let _ = std::fs::write(dir.join("cgroup.freeze"), "1");
                for _ in 0..100 {
                    let m = members(dir);
                    if m.is_empty() {
                        return Ok(());
                    }
                    signal_all(&m, libc::SIGKILL);
                    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(io::Error::other("members survived SIGKILL"))
            }
            Freezer::Signals { root, below } => {
                // One pass over what /proc lists, which a chain of short-lived forks
                // outruns; with namespaces, init then kills the whole namespace at once
                // (`kill(-1)`, which no fork escapes), told by its kill signal (taken from
                // outside its namespace only), not only once the agent process is reaped:
                // an agent slow to die (gigabytes to free at `SCHED_IDLE`) kept such chains
                // running for 30 s. Without namespaces stage 1 (`below` 0) is in the list.
                let all = levels(*root);
                let at = |keep: &dyn Fn(u32) -> bool| -> Vec<i32> {
                    all.iter()
                        .filter(|(_, d)| keep(*d))
                        .map(|(p, _)| *p)
                        .collect()
                };
                signal_all(&at(&|d| d >= *below), libc::SIGKILL);
                if *below >= 2 {
                    signal_all(&at(&|d| d + 1 == *below), crate::launch::kill_now_signal());
                }
                Ok(())
            }
        }
    }

    /// What `warden doctor` says about this mechanism.
    pub fn describe(&self) -> String {
        match self {
            Freezer::Cgroup(d) => format!(
                "cgroup v2 freezer ({}): the whole tree stops at once; kill via cgroup.kill",
                d.display()
            ),
            Freezer::Signals { .. } => "no writable cgroup v2: SIGSTOP/SIGKILL of the agent's processes from outside, repeated until the kernel shows every one stopped (a tree that keeps resuming itself is killed instead); the sandbox's init, never stopped, ends it in order after a kill".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_session_ids_are_refused() {
        for s in ["", "../x", "a/b", ".hidden"] {
            assert!(SessionLeaf::create(s).is_err(), "{s}");
        }
    }

    /// The signal freezer holds against processes that keep resuming each other with
    /// SIGCONT (red team: they undid 3 of 10 freezes): freeze either stops the whole tree
    /// (the heartbeat stands still) or fails, and the caller kills; never "frozen" while
    /// it runs.
    #[test]
    fn signal_freeze_holds_against_sigcont_loops() {
        let dir = std::env::temp_dir().join(format!("warden-sigfreeze-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let beat = dir.join("beat");
        let pids = dir.join("pids");
        let script = format!(
            "(while :; do printf %s \"$EPOCHREALTIME\" > {b}; done) & h=$!; \
             for i in 1 2 3; do (sleep 0.2; read -r -a p < {p}; \
               while :; do kill -CONT $$ \"${{p[@]}}\" 2>/dev/null; done) & h=\"$h $!\"; done; \
             echo \"$h\" > {p}; wait",
            b = beat.display(),
            p = pids.display()
        );
        let mut child = std::process::Command::new("/bin/bash")
            .args(["-c", &script])
            .spawn()
            .expect("spawn");
        let read = || std::fs::read_to_string(&beat).unwrap_or_default();
        std::thread::sleep(Duration::from_millis(500));
        let f = Freezer::Signals {
            root: child.id() as i32,
            below: 0,
        };
        for round in 0..5 {
            match f.freeze(Duration::from_secs(1)) {
                Ok(_) => {
                    let a = read();
                    std::thread::sleep(Duration::from_millis(150));
                    assert_eq!(
                        a,
                        read(),
                        "round {round}: frozen, yet the heartbeat advanced"
                    );
                    f.thaw().expect("thaw");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    eprintln!("round {round}: freeze refused ({e}): the caller kills");
                    break;
                }
            }
        }
        f.kill().expect("kill");
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A process whose main thread has exited (`SYS_exit`) reads `Z` in its own stat while
    /// its other threads run: it is not stopped, and a signal freeze stops it for real.
    #[test]
    fn a_process_with_an_exited_main_thread_is_not_taken_for_stopped() {
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import ctypes, threading, time\n\
                 threading.Thread(target=lambda: [time.sleep(0.005) for _ in iter(int, 1)]).start()\n\
                 time.sleep(0.1)\n\
                 ctypes.CDLL(None).syscall(60, 0)",
            ])
            .spawn()
            .expect("python3");
        let pid = child.id() as i32;
        let main_zombie = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rfind(')').map(|i| s[i + 2..i + 3].to_string()))
                == Some("Z".into())
        };
        let t0 = Instant::now();
        while !main_zombie() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(main_zombie(), "the main thread did not exit");
        let f = Freezer::Signals {
            root: pid,
            below: 0,
        };
        assert!(!stopped(pid), "a running thread was taken for stopped");
        assert!(!f.is_frozen());
        f.freeze(Duration::from_secs(2)).expect("freeze");
        assert!(f.is_frozen());
        f.kill().expect("kill");
        let _ = child.wait();
    }

    /// A real tree (a shell forking a child that ticks a counter) is frozen, stays frozen,
    /// thaws and is killed. Skips where no cgroup v2 hierarchy is writable.
    #[test]
    fn freeze_thaw_kill_a_real_tree() {
        let Ok(leaf) = SessionLeaf::create(&format!("test-{}", std::process::id())) else {
            eprintln!("skipped: no writable cgroup v2 hierarchy");
            return;
        };
        let dir = std::env::temp_dir().join(format!("warden-freeze-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let beat = dir.join("beat");
        let procs = leaf.procs();
        // The shell joins the leaf itself before forking its ticker.
        let script = format!(
            "echo $$ > {}; (while :; do date +%s%N > {}; sleep 0.01; done) & wait",
            procs.display(),
            beat.display()
        );
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .spawn()
            .expect("spawn");
        let read = || std::fs::read_to_string(&beat).unwrap_or_default();
        let t0 = Instant::now();
        while read().is_empty() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let f = leaf.freezer();
        let took = f.freeze(Duration::from_secs(2)).expect("freeze");
        assert!(f.is_frozen());
        let a = read();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(a, read(), "the heartbeat advanced while frozen");
        eprintln!("freeze latency {took:?}");
        f.thaw().expect("thaw");
        let t0 = Instant::now();
        while read() == a && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_ne!(a, read(), "the heartbeat did not resume");
        f.kill().expect("kill");
        let st = child.wait().expect("wait");
        assert!(!st.success());
        let t0 = Instant::now();
        while !members(&leaf.path).is_empty() && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(members(&leaf.path).is_empty());
        drop(leaf);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
