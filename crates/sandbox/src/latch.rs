//! The agent's release, as the sandbox's init sees it: one word of memory shared by the
//! supervisor, stage 1 and init (an anonymous `MAP_SHARED` page made before the fork; the
//! agent process loses it at its `execve`), which says whether agent code may run yet.
//!
//! Until the supervisor releases the agent, nothing the agent chose has run: whatever
//! appears in the workspace is the host's doing, and init's workspace guard treats it as it
//! treats what it finds at the start (a repository is locked as it is, never rewritten).
//! That matters for a warm spare ([`crate::launch::Session::release_with`]), whose sandbox
//! waits, built, for up to an hour: a repository the host makes meanwhile is locked as a
//! cold start at the claim would lock it, instead of having its hooks and configuration
//! stripped as one made by the agent.
//!
//! The guard's passes and the release exclude each other: a pass that treats what it finds
//! as the host's takes the word from `HELD` to `BUSY` and back, and the release takes it
//! from `HELD` to `RELEASED` only, waiting (bounded) while a pass is busy. So no pass can
//! observe a repository before the release and lock it after agent code ran. A pass that
//! failed leaves `BROKEN`, and the release refuses (the session does not start).
//!
//! The guard lets what the host's `git` writes settle before it locks it (a lock in the
//! middle of `git init` makes git's next rename fail), and keeps the word `BUSY` from one
//! pass to the next while something of the host's waits to settle: the release cannot slip
//! in between. A second word says a release waits ([`Latch::release_wanted`]): the guard
//! then decides at once, as a cold start at that moment would.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELD: u32 = 0;
const BUSY: u32 = 1;
const RELEASED: u32 = 2;
const BROKEN: u32 = 3;

struct Page(*mut AtomicU32);

// SAFETY: the page is only ever accessed through the atomic.
unsafe impl Send for Page {}
// SAFETY: as above.
unsafe impl Sync for Page {}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: unmapping the page this value mapped (in this process).
        unsafe { libc::munmap(self.0.cast(), page_size()) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// See the module doc. Clones share the word (and, across a fork, so do the processes).
#[derive(Clone)]
pub struct Latch(Arc<Page>);

/// Why the agent was not released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReleased {
    /// The workspace guard failed while it locked what the host made before the release.
    Broken,
    /// A pass of the workspace guard outlasted the deadline.
    Busy,
}

impl std::fmt::Display for NotReleased {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotReleased::Broken => "the workspace guard failed while it locked what the host changed in the workspace before the agent's start",
            NotReleased::Busy => "the workspace guard was still locking what the host changed in the workspace before the agent's start",
        })
    }
}

impl Latch {
    /// A new word, `HELD`. Made before the sandbox is forked.
    pub fn new() -> std::io::Result<Latch> {
        // SAFETY: a fresh anonymous shared mapping of one page; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // The page is zero-filled: HELD.
        Ok(Latch(Arc::new(Page(p.cast()))))
    }

    fn word(&self) -> &AtomicU32 {
        // SAFETY: the page stays mapped while `self` lives, and is aligned for a u32.
        unsafe { &*self.0 .0 }
    }

    /// The second word of the page: 1 once a release was asked for.
    fn wanted(&self) -> &AtomicU32 {
        // SAFETY: as `word`; the page holds far more than two u32s.
        unsafe { &*self.0 .0.add(1) }
    }

    /// Whether a release waits (or came): the guard's pass decides what is queued now.
    pub fn release_wanted(&self) -> bool {
        self.wanted().load(Ordering::SeqCst) != 0
    }

    /// Whether the agent was released (agent code may have run since).
    pub fn released(&self) -> bool {
        self.word().load(Ordering::SeqCst) == RELEASED
    }

    /// Init's guard, before a pass: `true` when the agent is not released yet, and will not
    /// be until [`Latch::end_pass`] (what the pass finds is the host's).
    pub fn begin_pass(&self) -> bool {
        self.word()
            .compare_exchange(HELD, BUSY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Ends a pass [`Latch::begin_pass`] began; `ok`: it locked all it had to (else the
    /// release is refused for good). A pass that leaves something of the host's to settle
    /// does not call this: the word stays `BUSY` into the next pass.
    pub fn end_pass(&self, ok: bool) {
        let _ = self.word().compare_exchange(
            BUSY,
            if ok { HELD } else { BROKEN },
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// The supervisor, before the agent may exec: `HELD` to `RELEASED`, waiting at most
    /// `deadline` for a pass of the guard. Released already: Ok.
    pub fn release(&self, deadline: Duration) -> Result<(), NotReleased> {
        self.wanted().store(1, Ordering::SeqCst);
        let until = Instant::now() + deadline;
        loop {
            match self
                .word()
                .compare_exchange(HELD, RELEASED, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) | Err(RELEASED) => return Ok(()),
                Err(BROKEN) => return Err(NotReleased::Broken),
                Err(_) if Instant::now() >= until => return Err(NotReleased::Busy),
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_and_the_release_exclude_each_other_across_a_fork() {
        let l = Latch::new().unwrap();
        assert!(l.begin_pass());
        // Busy: the release waits, then gives up.
        assert!(!l.release_wanted());
        assert_eq!(l.release(Duration::from_millis(5)), Err(NotReleased::Busy));
        assert!(l.release_wanted());
        // A child (another process, as init is) ends the pass; the release then goes.
        // SAFETY: the child only does atomics and _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            l.end_pass(true);
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(0) };
        }
        assert!(l.release(Duration::from_secs(5)).is_ok());
        // SAFETY: reaping our child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        assert!(l.released());
        // Released: no pass treats what it finds as the host's any more.
        assert!(!l.begin_pass());
        let b = Latch::new().unwrap();
        assert!(b.begin_pass());
        b.end_pass(false);
        assert_eq!(b.release(Duration::from_secs(1)), Err(NotReleased::Broken));
        assert!(!b.begin_pass());
    }
}
