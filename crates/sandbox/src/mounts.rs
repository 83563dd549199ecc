//! Builds the agent's view of the file system inside the new mount namespace (run by the
//! sandbox's init, which holds every capability of the new user namespace). See
//! [`crate::plan`] for what the view contains. The view is a root of its own (`own_root`):
//! a tmpfs pivoted into, holding only the entries of `/` the plan shows; the host's root
//! is detached once every bind is made, and the root goes read-only.
//!
//! `/dev` is a fresh tmpfs holding only [`DEV_NODES`] (bind mounts of the host's nodes), a
//! private devpts instance and symlinks, as bubblewrap builds it: no disk, memory or other
//! device node exists in the sandbox. When warden runs as root, bind sources arrive as
//! detached mounts prepared by the supervisor (idmapped for writable roots, see
//! [`crate::idmap`]) and are attached here.
//! Protected paths and repositories inside the writable roots are locked by
//! [`crate::guard`] (fd-based: see [`crate::fsat`]).

use crate::error::SysError;
use crate::plan::Plan;
use crate::sys::{self, mount, remount_ro};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Why the view could not be built: a mount call, a file warden writes into the view, or
/// the workspace guard. The errno stays available ([`MountError::errno`]).
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Sys(#[from] SysError),
    /// A file, socket or symlink warden makes in the view (`what` names it).
    #[error("{what}: {source}")]
    File {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The workspace guard ([`crate::guard`]) could not start.
    #[error(transparent)]
    Guard(#[from] crate::guard::GuardError),
}

impl MountError {
    /// The errno behind the error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            MountError::Sys(e) => e.errno(),
            MountError::File { source, .. } => source.raw_os_error(),
            MountError::Guard(e) => e.errno(),
        }
    }
}

/// The text, for the launcher's error pipe.
impl From<MountError> for String {
    fn from(e: MountError) -> String {
        e.to_string()
    }
}

fn file(what: impl std::fmt::Display, source: std::io::Error) -> MountError {
    MountError::File {
        what: what.to_string(),
        source,
    }
}

const PRIV: &str = "/run/.warden";

/// Where the own root is staged before `pivot_root`: a directory every Linux system has,
/// and one the new root never binds from the host (`/dev` is built afresh).
const STAGE: &str = "/dev";

/// Builds a root of the sandbox's own and pivots into it: a tmpfs holding only the entries
/// of `/` the plan shows ([`Plan::top`]). A root (`/usr`, `/etc`) is bound in with every
/// mount the host has below it, `/sys` as made read-only above, `/proc` is the sandbox's own,
/// a masked directory and `/dev` are plain directories the rest of [`build_view`] mounts on,
/// and each symlink (`/bin -> usr/bin`) is recreated. The host's root is then detached:
/// what the host adds to `/` while the session runs (a directory, a socket a service
/// recreates) never appears in the view, and a socket directly in `/` is not there at all
/// (attack review 102; Landlock governs opens, not `connect(2)` nor `stat(2)`). The root is
/// made read-only once the view is built.
fn own_root(plan: &Plan, prebound: &[(PathBuf, std::os::fd::RawFd)]) -> Result<(), MountError> {
    if plan.top.is_empty() {
        // Never build a view on the host's root: an empty list is a plan without a view.
        return Err(file(
            "the sandbox's own root",
            std::io::Error::other("the plan shows no entry of /"),
        ));
    }
    let stage = Path::new(STAGE);
    mount(
        Some("tmpfs"),
        stage,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755,size=64k"),
    )?;
    let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    for top in &plan.top {
        let Some(name) = top.file_name() else {
            continue;
        };
        let at = stage.join(name);
        let md = match std::fs::symlink_metadata(top) {
            Ok(m) => m,
            // `/dev` is covered by the stage now; everything else gone since the plan: not
            // shown.
            Err(_) if top == Path::new("/dev") => {
                sys::mkdir_p(&at)?;
                continue;
            }
            Err(_) => continue,
        };
        let t = md.file_type();
        if t.is_symlink() {
            let to = std::fs::read_link(top).map_err(|e| file(top.display(), e))?;
            std::os::unix::fs::symlink(&to, &at).map_err(|e| file(at.display(), e))?;
            continue;
        }
        let plain = top == Path::new("/dev") || plan.masks.contains(top);
        if t.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&at)
                .map_err(|e| file(at.display(), e))?;
            if plain {
                continue;
            }
            if top == Path::new("/proc") {
                mount(Some("proc"), &at, Some("proc"), proc_flags, None)?;
                continue;
            }
        } else if t.is_file() {
            std::fs::write(&at, b"").map_err(|e| file(at.display(), e))?;
        } else {
            // Not a type the plan shows (changed since): left out.
            continue;
        }
        let src = top.to_str().ok_or_else(|| SysError::Nul(top.clone()))?;
        mount(Some(src), &at, None, libc::MS_BIND | libc::MS_REC, None)?;
        read_only_but_writable_roots(plan, prebound, top, &at, t.is_dir())?;
    }
    // The host's root stays attached below the new one until the view is built: the bind
    // sources opened from it must still be mounts of this namespace to be bound.
    sys::mkdir_p(&stage.join(OLD_ROOT))?;
    std::env::set_current_dir(stage).map_err(|e| file(stage.display(), e))?;
    let dot = sys::cstr(Path::new("."))?;
    let old = sys::cstr(Path::new(OLD_ROOT))?;
    // SAFETY: pivot_root with valid C strings.
    if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), old.as_ptr()) } != 0 {
        return Err(SysError::last("pivot_root into the sandbox's own root").into());
    }
    std::env::set_current_dir("/").map_err(|e| file("/", e))?;
    Ok(())
}

/// Makes a root bound directly under `/` (`/usr`, `/etc`, `/opt`, a top-level `files.read`
/// entry), staged at `at`, read-only with every mount below it, unless it is a writable
/// root itself; the writable roots below it (a workspace in `/opt`) are bound back in over
/// it, read-write, each opened without following symbolic links (run by root they arrive
/// prepared, idmapped, and are attached later). Landlock governs opens, not `chmod(2)` nor
/// `utimensat(2)`: a read-write mount let the agent change the mode and times of the host's
/// files it owns there (attack review 103).
fn read_only_but_writable_roots(
    plan: &Plan,
    prebound: &[(PathBuf, std::os::fd::RawFd)],
    top: &Path,
    at: &Path,
    is_dir: bool,
) -> Result<(), MountError> {
    let below: Vec<&PathBuf> = plan
        .writable_roots
        .iter()
        .filter(|w| w.starts_with(top))
        .collect();
    if below.iter().any(|w| *w == top) {
        return Ok(());
    }
    remount_ro(at)?;
    if is_dir {
        readonly_below(at)?;
    }
    let mut done: Vec<&PathBuf> = Vec::new();
    // Outermost first (`writable_roots` is sorted by depth): an inner one comes with it.
    for w in below {
        if done.iter().any(|d| w.starts_with(d)) || prebound.iter().any(|(p, _)| p == w) {
            continue;
        }
        // A root spelled through the user's symlink (`/opt/link/data`): the link stays, and
        // its real place is a writable root of its own, bound where it is.
        if std::fs::canonicalize(w).ok().as_deref() != Some(w.as_path()) {
            continue;
        }
        let fd = sys::open_root_checked(w, plan.root_id(w))?;
        let rel = w.strip_prefix("/").unwrap_or(w);
        let src = format!("/proc/self/fd/{}", fd.as_raw_fd());
        mount(
            Some(&src),
            &Path::new(STAGE).join(rel),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        done.push(w);
    }
    Ok(())
}

/// Where the host's root hangs below the own root while the view is built.
const OLD_ROOT: &str = ".warden-host";

/// Detaches the host's root from the own root, which then goes read-only.
fn seal_own_root() -> Result<(), MountError> {
    let old = Path::new("/").join(OLD_ROOT);
    let c = sys::cstr(&old)?;
    // SAFETY: umount2 with a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(SysError::last("umount2(the host's root)").into());
    }
    std::fs::remove_dir(&old).map_err(|e| file(old.display(), e))?;
    Ok(remount_ro(Path::new("/"))?)
}

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
fn build_dev(nodes: Vec<(&str, std::os::fd::OwnedFd)>) -> Result<(), MountError> {
    let dev = Path::new("/dev");
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
            .map_err(|e| file(format_args!("symlink /dev/{name}"), e))?;
    }
    remount_ro_tmpfs(dev)
}

/// The host's [`DEV_NODES`], opened before the host's root is left.
fn host_dev_nodes() -> Vec<(&'static str, std::os::fd::OwnedFd)> {
    DEV_NODES
        .iter()
        .filter_map(|n| Some((*n, sys::open_path(&Path::new("/dev").join(n)).ok()?)))
        .collect()
}

/// Makes the `/dev` tmpfs itself read-only (its bind-mounted nodes keep their own flags).
fn remount_ro_tmpfs(p: &Path) -> Result<(), MountError> {
    Ok(mount(
        None,
        p,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=64k,nr_inodes=64"),
    )?)
}

/// Makes every mount below the bind at `p` read-only too (`mount_setattr` with
/// `AT_RECURSIVE`). A kernel without it (before 5.12) leaves them as the host has them.
fn readonly_below(p: &Path) -> Result<(), MountError> {
    crate::fsat::readonly_tree(p)
        .map(|_| ())
        .map_err(|source| MountError::File {
            what: format!("read-only below {}", p.display()),
            source,
        })
}

/// Shows the directory `dir` (the host's, open as `fd`) as a tmpfs of the sandbox's own
/// ([`Plan::shelter`]): each entry as it is now, bound (read-only, recursively) through `fd`;
/// a hidden path as an empty file or directory of the tmpfs (the hiding mount goes over it
/// next); a denied path that did not exist at the plan and does now, left out; a directory on
/// the way to a denied path, sheltered the same way in turn; a symbolic link recreated with
/// its target; anything else left out. Each tmpfs is read-only once filled. Nothing is
/// resolved through a link: entries are reached through `fd` only.
fn shelter(
    fd: std::os::fd::OwnedFd,
    dir: &Path,
    hide: &[PathBuf],
    absent: &[PathBuf],
) -> Result<(), MountError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let listed = |e: warden_sys::Error| MountError::File {
        what: format!("shelter {}", dir.display()),
        source: e.into(),
    };
    let entries = warden_sys::dir_entries(&fd).map_err(listed)?;
    if entries.len() > crate::plan::SHELTER_MAX {
        return Err(MountError::File {
            what: format!(
                "shelter {}: more than {} entries now",
                dir.display(),
                crate::plan::SHELTER_MAX
            ),
            source: std::io::Error::from_raw_os_error(libc::E2BIG),
        });
    }
    let md = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| file(dir.display(), e))?;
    let opts = format!(
        "mode={:o},size=64k,nr_inodes={}",
        md.mode() & 0o7777,
        crate::plan::SHELTER_MAX * 2 + 8
    );
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // Owned as the directory is, where its owner is mapped in the sandbox (an unmapped one,
    // the overflow id, is refused: the tmpfs is then init's).
    let owned = format!("{opts},uid={},gid={}", md.uid(), md.gid());
    if mount(Some("tmpfs"), dir, Some("tmpfs"), flags, Some(&owned)).is_err() {
        mount(Some("tmpfs"), dir, Some("tmpfs"), flags, Some(&opts))?;
    }
    for (name, kind) in entries {
        use warden_sys::FileType as T;
        let target = dir.join(&name);
        let src = format!(
            "/proc/self/fd/{}/{}",
            fd.as_raw_fd(),
            name.to_string_lossy()
        );
        // A file system that records no types: asked (without following a link).
        let kind = match kind {
            T::Unknown => match std::fs::symlink_metadata(&src) {
                Ok(m) if m.is_dir() => T::Directory,
                Ok(m) if m.is_file() => T::RegularFile,
                Ok(m) if m.file_type().is_symlink() => T::Symlink,
                _ => T::Unknown,
            },
            k => k,
        };
        let made = |r: std::io::Result<()>| r.map_err(|e| file(target.display(), e));
        if hide.contains(&target) {
            match kind {
                T::Directory => made(std::fs::create_dir(&target))?,
                T::Symlink => {}
                _ => made(std::fs::write(&target, b""))?,
            }
            continue;
        }
        if absent.contains(&target) {
            continue;
        }
        let on_the_way = |h: &PathBuf| h.starts_with(&target) && *h != target;
        // (A symbolic link on a denied path's spelled way is recreated below: its target is
        // where the path really is, hidden there.)
        if kind == T::Directory && hide.iter().chain(absent).any(on_the_way) {
            let sub = warden_sys::open_beneath(
                &fd,
                Path::new(&name),
                warden_sys::OFlags::RDONLY | warden_sys::OFlags::DIRECTORY,
                warden_sys::Mode::empty(),
            )
            .map_err(listed)?;
            made(std::fs::create_dir(&target))?;
            shelter(sub, &target, hide, absent)?;
            continue;
        }
        match kind {
            T::Directory => {
                made(std::fs::create_dir(&target))?;
                mount(
                    Some(&src),
                    &target,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )?;
                remount_ro(&target)?;
                readonly_below(&target)?;
            }
            T::RegularFile => {
                made(std::fs::write(&target, b""))?;
                mount(Some(&src), &target, None, libc::MS_BIND, None)?;
                remount_ro(&target)?;
            }
            T::Symlink => {
                let Ok(to) = std::fs::read_link(&src) else {
                    continue;
                };
                made(std::os::unix::fs::symlink(&to, &target))?;
            }
            _ => {}
        }
    }
    Ok(mount(
        None,
        dir,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?)
}

/// Attaches prepared mounts (see [`crate::idmap`]) that are not under a masked tree: the
/// writable roots visible at their real paths (e.g. a workspace outside `$HOME`).
fn attach_unmasked(
    plan: &Plan,
    prebound: &[(PathBuf, std::os::fd::RawFd)],
) -> Result<(), MountError> {
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
) -> Result<crate::guard::Guard, MountError> {
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_SLAVE,
        None,
    )?;
    // The host's sysfs, with every mount below it (cgroupfs: the session's own cgroup
    // files), read-only. Landlock governs opens, not `chmod`/`chown`: an agent-owned file
    // there could be made writable to anyone (attack review 65), and without Landlock
    // (`--best-effort`) a file mode alone would stand between the agent and cgroupfs.
    crate::fsat::readonly_tree(Path::new("/sys")).map_err(|e| MountError::File {
        what: "/sys read-only".into(),
        source: e,
    })?;
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
            None => Some(match &b.source {
                // A supervisor-made copy in warden's own directory.
                Some(src) => sys::open_path(src)?,
                None => sys::open_root_checked(&b.path, plan.root_id(&b.path))?,
            }),
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
            None if precache.is_empty() => sys::open_root_checked(c, plan.cache_id(c))
                .ok()
                .map(|fd| (c, CacheSrc::Opened(fd))),
            // Root run, but the supervisor could not prepare it: leave it out.
            None => None,
        })
        .collect();
    let dev_nodes = host_dev_nodes();
    own_root(plan, prebound)?;
    attach_unmasked(plan, prebound)?;
    build_dev(dev_nodes)?;
    let mut done: Vec<PathBuf> = Vec::new();
    for m in &plan.masks {
        if plan.reach_only(m) {
            // A directory of the own root (read-only once the view is built) that only holds
            // the mount points of roots below it: no tmpfs of its own.
            done.push(m.clone());
            continue;
        }
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
    std::fs::write(&empty, b"").map_err(|e| file(empty.display(), e))?;
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
            // And every mount the host has below it (the bind is recursive): one left
            // writable was written through, Landlock allowing it below the private home
            // (attack review 91 wrote a host directory mounted inside a `files.read` one).
            readonly_below(&b.path)?;
        }
    }
    drop(sources);
    // Private copies (the user's git configuration without its credentials): plain files of
    // the private home, nothing of the host's under them.
    for v in &plan.copies {
        if let Some(parent) = v.path.parent() {
            sys::mkdir_p(parent)?;
        }
        std::fs::write(&v.path, &v.content).map_err(|e| file(v.path.display(), e))?;
    }
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
                readonly_below(c)?;
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
    for d in &plan.shelter {
        let fd = warden_sys::open_no_links(
            d,
            warden_sys::OFlags::RDONLY | warden_sys::OFlags::DIRECTORY,
        )
        .map_err(|e| MountError::File {
            what: format!("shelter {}", d.display()),
            source: e.into(),
        })?;
        shelter(fd, d, &plan.hide, &plan.hide_absent)?;
    }
    for (i, h) in plan.hide.iter().enumerate() {
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
            // Each hidden file gets its own empty inode, so an open of it names the rule
            // that hid it (see crate::seen).
            let own = priv_dir.join(format!("hide-{i}"));
            std::fs::write(&own, b"").map_err(|e| file(own.display(), e))?;
            mount(
                Some(own.to_str().unwrap_or_default()),
                h,
                None,
                libc::MS_BIND,
                None,
            )?;
            remount_ro(h)?;
        }
    }
    // Every mount point is made.
    seal_own_root()?;
    warden_event::timing::mark("init: view mounted");
    let guard = crate::guard::Guard::start(plan, priv_dir)?;
    // Views: a private read-only copy with warden's content over a (locked) protected file.
    for (i, v) in plan.views.iter().enumerate() {
        let f = priv_dir.join(format!("view-{i}"));
        std::fs::write(&f, &v.content).map_err(|e| file(f.display(), e))?;
        mount(
            Some(f.to_str().unwrap_or_default()),
            &v.path,
            None,
            libc::MS_BIND,
            None,
        )?;
        remount_ro(&v.path)?;
    }
    Ok(guard)
}

/// Writes the run's effective policy for the gate onto its own small tmpfs under the
/// private `/run`, then makes that mount read-only: the agent (no capabilities, no mount
/// syscalls) can neither change nor remove it, and its presence tells `warden hook` that it
/// runs inside this session.
fn place_gate_policy(text: &str) -> Result<(), MountError> {
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
    std::fs::write(file, text).map_err(|e| self::file(file.display(), e))?;
    Ok(remount_ro(dir)?)
}

/// Where a cache's lower layer comes from.
enum CacheSrc {
    /// Opened by init (an `O_PATH` fd): bind-mounted.
    Opened(std::os::fd::OwnedFd),
    /// A detached, idmapped tree from the supervisor (root runs): attached.
    Detached(std::os::fd::RawFd),
}

/// Shows the cache directory `dir` as an overlay: the host's copy read-only below, a private
/// tmpfs layer above. Writes never reach the host's cache.
fn mount_cache(dir: &Path, src: &CacheSrc, priv_dir: &Path, i: usize) -> Result<(), MountError> {
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
    })?;
    Ok(())
}

/// Makes the hook-report socket ([`warden_policy::session::HOOK_SOCK`]) on a tmpfs of its
/// own, then makes that mount read-only (a socket on a read-only mount still accepts
/// connections; the agent can neither remove nor replace it). Returns the listening fd
/// (close-on-exec), which the supervisor serves from outside.
pub fn hook_socket() -> Result<std::os::fd::RawFd, MountError> {
    use std::os::fd::IntoRawFd;
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new(warden_policy::session::HOOK_SOCK_DIR);
    sys::mkdir_p(dir)?;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=0755,size=4k,nr_inodes=4"),
    )?;
    let path = Path::new(warden_policy::session::HOOK_SOCK);
    let l = std::os::unix::net::UnixListener::bind(path).map_err(|e| file(path.display(), e))?;
    // Any process of the sandbox may report (what it sends is a claim either way).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| file(path.display(), e))?;
    remount_ro(dir)?;
    Ok(l.into_raw_fd())
}
