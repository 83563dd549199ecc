//! Directories a session's end removes, freed after warden has exited.
//!
//! On a file system mounted with `discard` (this CI machine's `/`, many cloud images), the
//! last reference to a removed directory frees its block with a synchronous discard, waited
//! for inside `rmdir` itself: 60–300 µs a directory here, while `rmdir`'s own work is ~4 µs.
//! A session ends by removing its directory placeholders (`.claude/`, `.vscode/`, `.agents/`,
//! … six to twenty) and its private `/tmp`: ~1 ms of every `warden run`, all of it waiting.
//!
//! So a remover opens a directory (`O_PATH`) before it unlinks it and hands the descriptor
//! to [`keep`]: the name is gone at once (nothing of the session is left in the user's tree
//! when warden exits), and the inode, unreachable, lives as long as the descriptor. At the
//! very end, [`release`] starts a small child that holds the descriptors until warden has
//! exited and then closes them: the discards run after the user has their prompt back.
//!
//! The child is a `clone(CLONE_VM)` of the supervisor on a stack of its own (no copy of the
//! address space; the stack and its arguments are leaked, so nothing the supervisor frees
//! is under it), born with every signal blocked. Its first act is to close every
//! descriptor but the kept ones and its end of a pipe (a terminal, a pipe the caller reads
//! to its end, the audit store: none of them may outlive warden in it); it then waits on
//! the pipe, whose other end only the supervisor holds, so its `read` returns when the
//! supervisor is gone, and it exits. Only raw system calls run in it.
//!
//! Off unless [`enable`]d (`warden run`): anything else that removes a directory frees it
//! at once, as before. When the child cannot be started, the descriptors close in
//! [`release`] (the old cost, nothing lost).

use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static ON: AtomicBool = AtomicBool::new(false);
static KEPT: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// Most descriptors the child holds (the rest close in [`release`]).
const MAX: usize = 256;

/// Turns keeping on for this process (`warden run`'s session end).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

/// Keeps `fd` (a directory about to be unlinked) open until after warden's exit, or drops
/// it now when keeping is off.
pub fn keep(fd: OwnedFd) {
    if ON.load(Ordering::Relaxed) {
        if let Ok(mut k) = KEPT.lock() {
            k.push(fd);
        }
    }
}

#[repr(C)]
struct Args {
    /// Sorted: the kept descriptors and the pipe's read end.
    fds: [i32; MAX + 1],
    n: usize,
    pipe_r: i32,
}

/// Hands the kept descriptors to a child that closes them after this process has exited.
/// Call last, just before exit.
pub fn release() {
    let kept: Vec<OwnedFd> = match KEPT.lock() {
        Ok(mut k) => std::mem::take(&mut *k),
        Err(_) => return,
    };
    if kept.is_empty() {
        return;
    }
    let Ok((pipe_r, pipe_w)) = warden_sys::pipe_cloexec() else {
        return;
    };
    let mut fds: Vec<i32> = kept.iter().take(MAX).map(|f| f.as_raw_fd()).collect();
    fds.push(pipe_r.as_raw_fd());
    fds.sort_unstable();
    let mut args = Box::new(Args {
        fds: [-1; MAX + 1],
        n: fds.len(),
        pipe_r: pipe_r.as_raw_fd(),
    });
    args.fds[..fds.len()].copy_from_slice(&fds);
    let stack = vec![0u8; 16 * 1024].leak();
    // The stack grows down: its top, 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let args: &'static Args = Box::leak(args);
    // SAFETY: the child runs `hold` on a leaked stack with leaked arguments (never freed, so
    // the supervisor's exit or frees cannot pull them away) and makes only raw system calls;
    // every signal is blocked in it from birth.
    let pid = unsafe {
        crate::sys::clone_signals_blocked(
            hold,
            top,
            libc::CLONE_VM | libc::SIGCHLD,
            args as *const Args as *mut libc::c_void,
        )
    };
    if pid <= 0 {
        return; // `kept` closes here: freed now, as without this module.
    }
    // The child has its own copies; this process's close as it exits. The pipe's write end
    // stays open in this process until it exits (leaked on purpose).
    drop(kept);
    drop(pipe_r);
    let _ = pipe_w.into_raw_fd();
}

/// The child: closes every descriptor but `fds`, waits for the supervisor's exit (the pipe's
/// end of file), exits (the kept descriptors close, their directories are freed).
extern "C" fn hold(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the leaked `Args` (see `release`); only raw system calls follow.
    unsafe {
        let a = &*(arg as *const Args);
        let mut next: u32 = 0;
        for &fd in &a.fds[..a.n] {
            let fd = fd as u32;
            if fd > next {
                libc::syscall(libc::SYS_close_range, next, fd - 1, 0);
            }
            next = fd + 1;
        }
        libc::syscall(libc::SYS_close_range, next, u32::MAX, 0);
        let mut b = 0u8;
        loop {
            let r = libc::read(a.pipe_r, &mut b as *mut u8 as *mut libc::c_void, 1);
            if r >= 0 || *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A kept directory is unlinked at once and still open; released, the child holds it
    /// (this process's copy closed) and no other descriptor of this process.
    #[test]
    fn a_kept_directory_outlives_its_name_in_the_child_only() {
        let d = std::env::temp_dir().join(format!("warden-lateclose-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        let fd = crate::fsat::open_root(&d).unwrap();
        enable();
        let raw = fd.as_fd().as_raw_fd();
        keep(fd);
        std::fs::remove_dir(&d).unwrap();
        assert!(!d.exists());
        let before = std::fs::read_dir("/proc/self/fd").unwrap().count();
        release();
        // Ours is closed (the child has its own); the child waits for our exit.
        assert!(std::fs::read_link(format!("/proc/self/fd/{raw}")).is_err());
        let after = std::fs::read_dir("/proc/self/fd").unwrap().count();
        assert!(after < before + 1, "{before} -> {after}");
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let kids =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/children")).unwrap_or_default();
        let holds = |pid: &str| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|rd| {
                    let links: Vec<String> = rd
                        .flatten()
                        .filter_map(|e| std::fs::read_link(e.path()).ok())
                        .map(|l| l.to_string_lossy().into_owned())
                        .collect();
                    links.iter().any(|l| l.contains("warden-lateclose"))
                        && !links.iter().any(|l| l.starts_with("/dev/pts"))
                        && links.len() == 2
                })
                .unwrap_or(false)
        };
        // The child closes the rest first thing: give it a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !kids.split_whitespace().any(holds) {
            assert!(
                std::time::Instant::now() < deadline,
                "no child holds the directory alone: {kids}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
