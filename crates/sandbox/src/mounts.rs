//! Builds the agent's view of the file system inside the new mount namespace (run by the
//! sandbox's init, which holds every capability of the new user namespace). See
//! [`crate::plan`] for what the view contains.

use crate::plan::Plan;
use crate::sys::{self, mount, remount_ro};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const PRIV: &str = "/run/.warden";

fn tmpfs_mode(p: &Path, plan: &Plan) -> String {
    if p == plan.home {
        // SAFETY: trivial getters.
        let (u, g) = unsafe { (libc::getuid(), libc::getgid()) };
        format!("mode=0700,uid={u},gid={g}")
    } else if p == Path::new("/run") {
        "mode=0755".into()
    } else {
        "mode=1777".into()
    }
}

pub fn build_view(plan: &Plan) -> Result<(), String> {
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_SLAVE,
        None,
    )?;
    mount(
        Some("proc"),
        Path::new("/proc"),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    // Sources of bind mounts, opened before the trees that hold them are masked.
    let mut sources = Vec::new();
    for b in &plan.binds {
        sources.push((b, sys::open_path(&b.path)?));
    }
    let mut done: Vec<PathBuf> = Vec::new();
    for m in &plan.masks {
        if !m.exists() {
            if done.iter().any(|d| m.starts_with(d)) {
                sys::mkdir_p(m)?;
            } else {
                continue;
            }
        }
        let opts = tmpfs_mode(m, plan);
        mount(
            Some("tmpfs"),
            m,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&opts),
        )?;
        done.push(m.clone());
    }
    if let Some(text) = &plan.gate_policy {
        place_gate_policy(text)?;
    }
    let priv_dir = Path::new(PRIV);
    sys::mkdir_p(priv_dir)?;
    let empty = priv_dir.join("empty");
    std::fs::write(&empty, b"").map_err(|e| format!("{}: {e}", empty.display()))?;
    for (b, fd) in &sources {
        if b.is_dir {
            sys::mkdir_p(&b.path)?;
        } else {
            sys::touch(&b.path)?;
        }
        let src = format!("/proc/self/fd/{}", fd.as_raw_fd());
        mount(
            Some(&src),
            &b.path,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        if !b.writable {
            remount_ro(&b.path)?;
        }
    }
    drop(sources);
    for h in &plan.hide {
        let md = match std::fs::symlink_metadata(h) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if md.is_dir() {
            mount(
                Some("tmpfs"),
                h,
                Some("tmpfs"),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some("mode=000,size=4k"),
            )?;
        } else if md.file_type().is_symlink() {
            // A symlink cannot be a mount point; its target is covered by its own rule.
            continue;
        } else {
            mount(
                Some(empty.to_str().unwrap_or_default()),
                h,
                None,
                libc::MS_BIND,
                None,
            )?;
            remount_ro(h)?;
        }
    }
    for (i, p) in plan.protect.iter().enumerate() {
        lock_path(&p.path, p.placeholder_content, priv_dir, i)?;
    }
    Ok(())
}

/// Writes the run's effective policy for the gate onto its own small tmpfs under the
/// private `/run`, then makes that mount read-only: the agent (no capabilities, no mount
/// syscalls) can neither change nor remove it, and its presence tells `warden hook` that it
/// runs inside this session.
fn place_gate_policy(text: &str) -> Result<(), String> {
    let dir = Path::new(warden_policy::session::GATE_DIR);
    sys::mkdir_p(dir)?;
    let size = format!("mode=0755,size={}", (text.len() / 4096 + 2) * 4096);
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(&size),
    )?;
    let file = Path::new(warden_policy::session::GATE_FILE);
    std::fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    remount_ro(dir)
}

/// Makes `path` read-only in this mount namespace (bind onto itself, or onto a private file
/// holding `content` for an absent file's placeholder).
fn lock_path(path: &Path, content: Option<&str>, priv_dir: &Path, i: usize) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_err() {
        // The placeholder was removed between its creation and now: make it again here
        // (in the sandbox's view, which shares the workspace) rather than leave it open.
        let made = if content.is_some() {
            sys::touch(path)
        } else {
            sys::mkdir_p(path)
        };
        made.map_err(|e| {
            format!(
                "protected path {} vanished and cannot be recreated: {e}",
                path.display()
            )
        })?;
    }
    match content {
        Some(text) => {
            let f = priv_dir.join(format!("ph-{i}"));
            std::fs::write(&f, text).map_err(|e| format!("{}: {e}", f.display()))?;
            mount(
                Some(f.to_str().unwrap_or_default()),
                path,
                None,
                libc::MS_BIND,
                None,
            )?;
        }
        None => {
            let s = path
                .to_str()
                .ok_or_else(|| format!("{}: not UTF-8", path.display()))?;
            mount(Some(s), path, None, libc::MS_BIND | libc::MS_REC, None)?;
        }
    }
    remount_ro(path)
}

/// Locks `.git/hooks` and `.git/config` once `git init` creates them inside the sandbox
/// (when the workspace had no `.git` at start). After locking, anything already planted in
/// the hooks directory is removed and a config with keys beyond `git init`'s defaults is
/// reset, through descriptors opened before the lock.
pub struct GitGuard {
    git: PathBuf,
    /// `.git/config`'s (inode, mtime, size) when last seen, and since when it is unchanged.
    last: Option<((u64, i64, i64, u64), std::time::Instant)>,
    /// When `.git/config` first appeared: the lock is taken at most [`GIT_MAX_WAIT`] later,
    /// quiet or not (an agent touching the config forever must not keep it unlocked).
    first: Option<std::time::Instant>,
}

/// `git init` writes its config in several lock-and-rename steps; locking in between would
/// make the next rename fail (EBUSY on the mount point). The config must be quiet this long.
const GIT_SETTLE: std::time::Duration = std::time::Duration::from_millis(150);
const GIT_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

const GIT_INIT_KEYS: &[&str] = &[
    "repositoryformatversion",
    "filemode",
    "bare",
    "logallrefupdates",
    "ignorecase",
    "precomposeunicode",
    "symlinks",
    "defaultbranch",
    "objectformat",
];

impl GitGuard {
    pub fn new(plan: &Plan) -> Option<GitGuard> {
        plan.git_watch.then(|| GitGuard {
            git: plan.workspace.join(".git"),
            last: None,
            first: None,
        })
    }

    /// Returns true when done (locked).
    pub fn poll(&mut self) -> bool {
        std::thread::sleep(std::time::Duration::from_millis(10));
        let hooks = self.git.join("hooks");
        let config = self.git.join("config");
        use std::os::unix::fs::MetadataExt;
        let Ok(md) = std::fs::symlink_metadata(&config) else {
            return false;
        };
        if !md.is_file() {
            return false;
        }
        let overdue = self
            .first
            .get_or_insert_with(std::time::Instant::now)
            .elapsed()
            > GIT_MAX_WAIT;
        let stamp = (md.ino(), md.mtime(), md.mtime_nsec(), md.size());
        let quiet = match self.last {
            Some((s, since)) if s == stamp => since.elapsed() >= GIT_SETTLE,
            _ => {
                self.last = Some((stamp, std::time::Instant::now()));
                false
            }
        };
        if !overdue && (!quiet || self.git.join("config.lock").exists()) {
            return false;
        }
        if !hooks.exists() && std::fs::create_dir(&hooks).is_err() {
            return false;
        }
        let hooks_fd = std::fs::File::open(&hooks).ok();
        let cfg_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&config)
            .ok();
        let pd = Path::new(PRIV);
        if lock_path(&hooks, None, pd, 1000).is_err() || lock_path(&config, None, pd, 1001).is_err()
        {
            return false;
        }
        if let Some(d) = hooks_fd {
            sanitize_hooks(&d);
        }
        if let Some(mut f) = cfg_file {
            sanitize_config(&mut f);
        }
        true
    }
}

fn sanitize_hooks(dir: &std::fs::File) {
    let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let Ok(rd) = std::fs::read_dir(&path) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".sample") {
            continue;
        }
        if let Ok(c) = std::ffi::CString::new(name.as_encoded_bytes()) {
            // SAFETY: unlinkat relative to the pre-lock directory fd.
            unsafe {
                if libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) != 0 {
                    libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR);
                }
            }
        }
    }
}

fn sanitize_config(f: &mut std::fs::File) {
    use std::io::{Read, Seek, Write};
    let mut text = String::new();
    if f.read_to_string(&mut text).is_err() {
        return;
    }
    let clean = text.lines().all(|l| {
        let t = l.trim();
        t.is_empty()
            || t.starts_with('#')
            || t.starts_with(';')
            || t == "[core]"
            || t == "[init]"
            || t == "[extensions]"
            || t.split('=')
                .next()
                .is_some_and(|k| GIT_INIT_KEYS.contains(&k.trim().to_ascii_lowercase().as_str()))
    });
    if !clean {
        let default = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n";
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = f.write_all(default.as_bytes());
    }
}
