//! A bounded multi-producer, single-consumer queue whose memory grows with what it holds.
//!
//! `std::sync::mpsc::sync_channel(n)` allocates and initialises all `n` slots up front: for
//! the session's event queues (64 Ki slots of a few hundred bytes each) that was ~16 MiB
//! touched per queue at every session's start, a millisecond or more of page faults on the
//! start-up path. This wraps the unbounded list channel (blocks of 31 slots, allocated as
//! they fill) with a counter that enforces the bound in [`Sender::try_send`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

pub use std::sync::mpsc::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};

/// Sending half; clones share the bound.
pub struct Sender<T> {
    tx: mpsc::Sender<T>,
    len: Arc<AtomicUsize>,
    cap: usize,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
            len: self.len.clone(),
            cap: self.cap,
        }
    }
}

/// Receiving half.
pub struct Receiver<T> {
    rx: mpsc::Receiver<T>,
    len: Arc<AtomicUsize>,
}

/// A queue that holds at most `cap` messages sent with [`Sender::try_send`] (at least 1).
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel();
    let len = Arc::new(AtomicUsize::new(0));
    (
        Sender {
            tx,
            len: len.clone(),
            cap: cap.max(1),
        },
        Receiver { rx, len },
    )
}

impl<T> Sender<T> {
    /// Queues `m` unless the queue is full or the receiver is gone; never blocks.
    pub fn try_send(&self, m: T) -> Result<(), TrySendError<T>> {
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return Err(TrySendError::Full(m));
        }
        self.tx.send(m).map_err(|SendError(m)| {
            self.len.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Disconnected(m)
        })
    }

    /// Queues `m` past the bound (for the few control messages that must get through, such
    /// as a stop request); fails only when the receiver is gone.
    pub fn send(&self, m: T) -> Result<(), SendError<T>> {
        self.len.fetch_add(1, Ordering::AcqRel);
        self.tx.send(m).inspect_err(|_| {
            self.len.fetch_sub(1, Ordering::AcqRel);
        })
    }
}

impl<T> Receiver<T> {
    fn took(&self, m: T) -> T {
        self.len.fetch_sub(1, Ordering::AcqRel);
        m
    }

    /// Waits for a message; `Err` once every sender is gone and the queue is empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.rx.recv().map(|m| self.took(m))
    }

    /// Waits at most `d` for a message.
    pub fn recv_timeout(&self, d: Duration) -> Result<T, RecvTimeoutError> {
        self.rx.recv_timeout(d).map(|m| self.took(m))
    }

    /// A message if one is queued.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv().map(|m| self.took(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_and_frees_as_messages_are_taken() {
        let (tx, rx) = bounded::<u32>(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.clone().try_send(2).is_ok());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        // `send` passes the bound (control messages).
        assert!(tx.send(4).is_ok());
        assert_eq!(rx.recv(), Ok(1));
        assert!(matches!(tx.try_send(5), Err(TrySendError::Full(5))));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Ok(4));
        assert!(tx.try_send(6).is_ok());
        drop(rx);
        assert!(matches!(tx.try_send(7), Err(TrySendError::Disconnected(7))));
    }

    #[test]
    fn receiving_ends_when_every_sender_is_gone() {
        let (tx, rx) = bounded::<u32>(4);
        let t2 = tx.clone();
        tx.try_send(1).ok();
        drop(tx);
        drop(t2);
        assert_eq!(rx.recv(), Ok(1));
        assert!(rx.recv().is_err());
    }
}
