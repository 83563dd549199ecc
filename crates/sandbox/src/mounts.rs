//! Builds the agent's view of the file system inside the new mount namespace (run by the
//! sandbox's init, which holds every capability of the new user namespace). See
//! [`crate::plan`] for what the view contains.
//!
//! `/dev` is a fresh tmpfs holding only [`DEV_NODES`] (bind mounts of the host's nodes), a
//! private devpts instance and symlinks, as bubblewrap builds it: no disk, memory or other
//! device node exists in the sandbox. When warden runs as root, bind sources arrive as
//! detached mounts prepared by the supervisor (idmapped for writable roots, see
//! [`crate::idmap`]) and are attached here.

use crate::plan::Plan;
use crate::sys::{self, mount, remount_ro};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const PRIV: &str = "/run/.warden";

fn tmpfs_mode(p: &Path, plan: &Plan) -> String {
    let mode = if p == plan.home {
        // SAFETY: trivial getters.
        let (u, g) = unsafe { (libc::getuid(), libc::getgid()) };
        format!("mode=0700,uid={u},gid={g}")
    } else if p == Path::new("/run") {
        "mode=0755".into()
    } else if crate::plan::MASKED_TREES.iter().any(|m| Path::new(m) == p) {
        "mode=1777".into()
    } else {
        // A directory masked only to reach roots below it (see plan::build): holds mount
        // points, nothing else.
        "mode=0755".into()
    };
    let size = plan.limits.tmpfs_size(p).unwrap_or(1 << 20);
    format!("{mode},size={size}")
}

/// Device nodes bound into the sandbox's `/dev` from the host (everything else there is a
/// symlink, the private devpts or the private `/dev/shm`).
pub const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks in the sandbox's `/dev`.
pub const DEV_LINKS: &[(&str, &str)] = &[
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Replaces `/dev` with a tmpfs holding only the allowlisted nodes, a new devpts instance
/// (the agent's own ptys only: the user's other terminals are not reachable) and `shm`.
fn build_dev() -> Result<(), String> {
    let dev = Path::new("/dev");
    // Open the host's nodes before covering them.
    let mut nodes = Vec::new();
    for n in DEV_NODES {
        let p = dev.join(n);
        if let Ok(fd) = sys::open_path(&p) {
            nodes.push((n, fd));
        }
    }
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=64k,nr_inodes=64"),
    )?;
    for (n, fd) in &nodes {
        let p = dev.join(n);
        sys::touch(&p)?;
        let src = format!("/proc/self/fd/{}", fd.as_raw_fd());
        mount(Some(&src), &p, None, libc::MS_BIND, None)?;
    }
    for d in ["pts", "shm"] {
        sys::mkdir_p(&dev.join(d))?;
    }
    mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    for (name, target) in DEV_LINKS {
        std::os::unix::fs::symlink(target, dev.join(name))
            .map_err(|e| format!("symlink /dev/{name}: {e}"))?;
    }
    remount_ro_tmpfs(dev)
}

/// Makes the `/dev` tmpfs itself read-only (its bind-mounted nodes keep their own flags).
fn remount_ro_tmpfs(p: &Path) -> Result<(), String> {
    mount(
        None,
        p,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=64k,nr_inodes=64"),
    )
}

/// Attaches prepared mounts (see [`crate::idmap`]) that are not under a masked tree: the
/// writable roots visible at their real paths (e.g. a workspace outside `$HOME`).
fn attach_unmasked(plan: &Plan, prebound: &[(PathBuf, std::os::fd::RawFd)]) -> Result<(), String> {
    for (p, fd) in prebound {
        if plan.masks.iter().any(|m| p.starts_with(m)) {
            continue;
        }
        crate::idmap::attach(*fd, p)?;
    }
    Ok(())
}

pub fn build_view(
    plan: &Plan,
    prebound: &[(PathBuf, std::os::fd::RawFd)],
    precache: &[(PathBuf, std::os::fd::RawFd)],
) -> Result<(), String> {
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
    // Sources of bind mounts, opened before the trees that hold them are masked (or
    // prepared by the supervisor when it is root).
    let mut sources = Vec::new();
    for b in &plan.binds {
        let pre = prebound
            .iter()
            .find(|(p, _)| *p == b.path)
            .map(|(_, fd)| *fd);
        let fd = match pre {
            Some(_) => None,
            None => Some(sys::open_path(b.source.as_deref().unwrap_or(&b.path))?),
        };
        sources.push((b, fd, pre));
    }
    // Caches that cannot be opened are left out (they are conveniences, not policy).
    // Run by root, the supervisor prepared them idmapped (the agent's uid may copy up).
    let cache_sources: Vec<(&PathBuf, CacheSrc)> = plan
        .caches
        .iter()
        .filter_map(|c| match precache.iter().find(|(p, _)| p == c) {
            Some((_, fd)) => Some((c, CacheSrc::Detached(*fd))),
            None if precache.is_empty() => {
                sys::open_path(c).ok().map(|fd| (c, CacheSrc::Opened(fd)))
            }
            // Root run, but the supervisor could not prepare it: leave it out.
            None => None,
        })
        .collect();
    attach_unmasked(plan, prebound)?;
    build_dev()?;
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
    let priv_dir = Path::new(PRIV);
    sys::mkdir_p(priv_dir)?;
    let empty = priv_dir.join("empty");
    std::fs::write(&empty, b"").map_err(|e| format!("{}: {e}", empty.display()))?;
    for (b, fd, pre) in &sources {
        // A mount point that already exists (inside another bound root) is used as is:
        // creating it would write into that root, which may be read-only.
        if std::fs::symlink_metadata(&b.path).is_err() {
            if b.is_dir {
                sys::mkdir_p(&b.path)?;
            } else {
                sys::touch(&b.path)?;
            }
        }
        if let Some(pre) = pre {
            crate::idmap::attach(*pre, &b.path)?;
        } else if let Some(fd) = fd {
            let src = format!("/proc/self/fd/{}", fd.as_raw_fd());
            mount(
                Some(&src),
                &b.path,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
        }
        if !b.writable {
            remount_ro(&b.path)?;
        }
    }
    drop(sources);
    for (i, (c, src)) in cache_sources.iter().enumerate() {
        if mount_cache(c, src, priv_dir, i).is_err() {
            // No overlay (e.g. a kernel without unprivileged overlayfs): the cache stays
            // visible read-only, as any other read root.
            let _ = std::fs::create_dir_all(c);
            let bound = match src {
                CacheSrc::Opened(fd) => {
                    let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
                    mount(Some(&p), c, None, libc::MS_BIND | libc::MS_REC, None).is_ok()
                }
                // An attached detached tree cannot be attached twice; leave it out.
                CacheSrc::Detached(_) => false,
            };
            if bound {
                remount_ro(c)?;
            }
        }
    }
    drop(cache_sources);
    // Symlinks on the way to bound roots (`~/.local/bin/claude -> ../share/...`), recreated
    // in the private trees. One that already exists (inside a bound root) is left alone.
    for (link, target) in &plan.links {
        if std::fs::symlink_metadata(link).is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            if sys::mkdir_p(parent).is_err() {
                continue;
            }
        }
        let _ = std::os::unix::fs::symlink(target, link);
    }
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
    // Views: a private read-only copy with warden's content over a (locked) protected file.
    for (i, v) in plan.views.iter().enumerate() {
        let f = priv_dir.join(format!("view-{i}"));
        std::fs::write(&f, &v.content).map_err(|e| format!("{}: {e}", f.display()))?;
        mount(
            Some(f.to_str().unwrap_or_default()),
            &v.path,
            None,
            libc::MS_BIND,
            None,
        )?;
        remount_ro(&v.path)?;
    }
    Ok(())
}

/// Shows the cache directory `dir` (opened as `fd` before the private trees were mounted)
/// as an overlay: the host's copy read-only below, a private tmpfs layer above. Writes
/// never reach the host's cache.
/// Where a cache's lower layer comes from.
enum CacheSrc {
    /// Opened by init (an `O_PATH` fd): bind-mounted.
    Opened(std::os::fd::OwnedFd),
    /// A detached, idmapped tree from the supervisor (root runs): attached.
    Detached(std::os::fd::RawFd),
}

fn mount_cache(dir: &Path, src: &CacheSrc, priv_dir: &Path, i: usize) -> Result<(), String> {
    let base = priv_dir.join(format!("cache-{i}"));
    let (lower, upper, work) = (base.join("lower"), base.join("upper"), base.join("work"));
    for d in [&lower, &upper, &work] {
        sys::mkdir_p(d)?;
    }
    match src {
        CacheSrc::Opened(fd) => {
            let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
            mount(Some(&p), &lower, None, libc::MS_BIND | libc::MS_REC, None)?;
        }
        CacheSrc::Detached(fd) => crate::idmap::attach(*fd, &lower)?,
    }
    remount_ro(&lower)?;
    sys::mkdir_p(dir)?;
    let opts = |extra: &str| {
        format!(
            "lowerdir={},upperdir={},workdir={}{extra}",
            lower.display(),
            upper.display(),
            work.display()
        )
    };
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    mount(
        Some("overlay"),
        dir,
        Some("overlay"),
        flags,
        Some(&opts(",userxattr")),
    )
    .or_else(|_| {
        mount(
            Some("overlay"),
            dir,
            Some("overlay"),
            flags,
            Some(&opts("")),
        )
    })
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
