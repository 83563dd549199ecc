//! The agent's standard streams when warden runs as root.
//!
//! Run by root, the agent's host identity is an unprivileged uid ([`crate::idmap`]). A
//! pipe or pty is created owned by its creator with mode 0600 (pty slaves here: 0600 or
//! 0620 with group tty), so the agent could write to its fd 1 but not *re-open* it:
//! `echo x > /dev/stdout` opens `/proc/self/fd/1`, and that open checks the inode's owner
//! and mode against the agent's host uid (EACCES; the agent sees a `nobody` fifo).
//!
//! [`hand_to_agent`] gives the stdio objects of the session to the agent's host uid/gid
//! with `fchown` on the fd (never by path):
//!
//! - the pty slave and the filtered output pipes the supervisor itself created for the
//!   agent (the agent is their only user);
//! - the anonymous pipes (pipefs) the agent inherits as fd 0/1/2 from `warden run`'s own
//!   caller, only when owned by the supervisor's own uid (root): an anonymous pipe is a
//!   transient kernel object with no file on disk, and root keeps every access through
//!   CAP_DAC_OVERRIDE, so the change costs its owner nothing. Reaching a pipe through
//!   `/proc/<pid>/fd` also needs ptrace access to a process holding it, which the agent has
//!   only to its own processes.
//!
//! Everything else stays as it is, by design: a regular file (`warden run ... > out.txt`),
//! a named fifo or a device keeps its owner (the user's files never change owner because an
//! agent ran), a pipe owned by another user (`sudo warden run ... | x`) keeps it, and so do
//! the other fds warden passes on (the hook-event pipe, the advisor socket): the agent can
//! write them through its fd but never open a second, reading copy.
//! Failures leave the object as it was (the agent then gets EACCES on a re-open, as before):
//! this widens nothing that an enforcement decision depends on.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// `PIPEFS_MAGIC` from `linux/magic.h`: anonymous pipes.
const PIPEFS_MAGIC: i64 = 0x5049_5045;

fn fchown(fd: RawFd, uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: fchown on an fd this process holds; no pointers.
    if unsafe { libc::fchown(fd, uid, gid) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// True when `fd` is an anonymous pipe (pipefs) owned by `owner`.
fn is_anon_pipe_owned_by(fd: RawFd, owner: u32) -> bool {
    // SAFETY: fstat/fstatfs into zeroed structs on an fd number; a closed fd gives EBADF.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return false;
        }
        let mut fs: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(fd, &mut fs) != 0 {
            return false;
        }
        fs.f_type as i64 == PIPEFS_MAGIC && st.st_uid == owner
    }
}

/// Gives the session's stdio objects to the agent's host `uid`/`gid` (see the module doc):
/// `created` are the pty slave / output pipes the supervisor made for the agent; fds 0–2 of
/// this process are handed over only when they are anonymous pipes owned by `self_uid`.
/// Returns the fds that could not be changed, with the error (for a debug note).
pub fn hand_to_agent(
    uid: u32,
    gid: u32,
    self_uid: u32,
    created: &[BorrowedFd<'_>],
) -> Vec<(RawFd, std::io::Error)> {
    let mut failed = Vec::new();
    for fd in created {
        if let Err(e) = fchown(fd.as_raw_fd(), uid, gid) {
            failed.push((fd.as_raw_fd(), e));
        }
    }
    for fd in 0..=2 {
        if is_anon_pipe_owned_by(fd, self_uid) {
            if let Err(e) = fchown(fd, uid, gid) {
                failed.push((fd, e));
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn anonymous_pipe_is_recognised_and_a_file_is_not() {
        let (r, _w) = warden_sys::pipe_cloexec().expect("pipe");
        // SAFETY: trivial getter.
        let me = unsafe { libc::geteuid() };
        assert!(is_anon_pipe_owned_by(r.as_raw_fd(), me));
        assert!(!is_anon_pipe_owned_by(r.as_raw_fd(), me.wrapping_add(1)));
        let f = std::fs::File::open("/proc/self/status").expect("open");
        assert!(!is_anon_pipe_owned_by(f.as_fd().as_raw_fd(), me));
        assert!(!is_anon_pipe_owned_by(-1, me));
    }
}
