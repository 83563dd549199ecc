//! The agent's standard streams when warden runs as root.
//!
//! Run by root, the agent's host identity is an unprivileged uid ([`crate::idmap`]). A
//! pipe or pty is created owned by its creator with mode 0600 (pty slaves here: 0600 or
//! 0620 with group tty), so the agent could write to its fd 1 but not *re-open* it:
//! `echo x > /dev/stdout` opens `/proc/self/fd/1`, and that open checks the inode's owner
//! and mode against the agent's host uid (EACCES; the agent sees a `nobody` fifo).
//!
//! [`hand_to_agent`] gives the stdio objects the supervisor itself created for the agent,
//! the pty slave and the filtered output pipes, to the agent's host uid/gid with `fchown`
//! on the fd (never by path): the agent is their only user.
//!
//! Everything else keeps its owner, by design, and the agent cannot re-open it: the pipes
//! `warden run`'s caller passes as fd 0/1/2 (`cat x | warden run ...`, `$(warden run ...)`),
//! a regular file (`warden run ... > out.txt`), a named fifo or a device, and the other fds
//! warden passes on (the hook-event pipe, the advisor socket). A pipe handed over would
//! outlive the session in the caller's hands: re-opened for writing through
//! `/proc/self/fd/0`, the caller's stdin pipe would carry the agent's text to whatever reads
//! it next (`... | bash` runs it as root). The agent writes such fds through the fd it was
//! given; `echo x > /dev/stdout` there fails with EACCES (README: known limits).
//! Failures leave the object as it was (the agent then gets EACCES on a re-open, as before):
//! this widens nothing that an enforcement decision depends on.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

fn fchown(fd: RawFd, uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: fchown on an fd this process holds; no pointers.
    if unsafe { libc::fchown(fd, uid, gid) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the stdio objects the supervisor made for the agent (`created`: the pty slave,
/// the filtered output pipes) to the agent's host `uid`/`gid` (see the module doc). Returns
/// the fds that could not be changed, with the error (for a debug note).
pub fn hand_to_agent(
    uid: u32,
    gid: u32,
    created: &[BorrowedFd<'_>],
) -> Vec<(RawFd, std::io::Error)> {
    let mut failed = Vec::new();
    for fd in created {
        if let Err(e) = fchown(fd.as_raw_fd(), uid, gid) {
            failed.push((fd.as_raw_fd(), e));
        }
    }
    failed
}
