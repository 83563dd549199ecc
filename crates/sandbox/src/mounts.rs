//! Builds the agent's view of the file system inside the new mount namespace (run by the
//! sandbox's init, which holds every capability of the new user namespace). See
//! [`crate::plan`] for what the view contains; protected paths and repositories inside the
//! writable roots are locked by [`crate::guard`] (fd-based: see [`crate::fsat`]).

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

/// Builds the view and starts the workspace guard ([`crate::guard`]), which locks the
/// protected paths and repositories; init runs its watcher for the session.
pub fn build_view(plan: &Plan) -> Result<crate::guard::Guard, String> {
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
    crate::guard::Guard::start(plan, priv_dir)
}
