//! How other threads reach a shard: an inbox they append to, and one wake
//! (an eventfd write, through `mio::Waker`) per batch of appends, skipped
//! while the shard has a wake pending.
//!
//! A connection's [`ConnWaker`] is the waker its subscriber queue parks. Woken
//! on its own shard's thread (the delivery path: the shard drains a lane and
//! pushes into its members' queues) it only appends the connection to that
//! thread's dirty list, with no lock and no syscall; woken from elsewhere (the
//! heartbeat, a drain, a room deletion) it goes through the inbox.
//!
//! The inbox's lock is a leaf: held for one append or one swap, never while
//! taking another lock.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Wake;

use super::Adoption;
use crate::room::Room;

/// What other threads asked of a shard since it last looked.
#[derive(Default)]
pub struct Pending {
    /// Connections handed over by the control plane.
    pub adopt: Vec<Adoption>,
    /// Rooms whose lane for this shard has broadcasts to deliver.
    pub drains: Vec<Arc<Room>>,
    /// Connections whose queue was pushed to or closed from another thread.
    pub ready: Vec<u32>,
    /// The shard's socket of the QUIC port, once the node is built.
    pub serve_quic: Option<super::quic::QuicSetup>,
    /// The node began to drain.
    pub draining: bool,
    /// The heartbeat's tick (`Dataplane::heartbeat`).
    pub heartbeat: bool,
    pub stop: bool,
}

pub struct Inbox {
    pending: Mutex<Pending>,
    /// The shard is gone (`close`): what is posted now is dropped, not kept.
    /// Read and set under `pending`'s lock.
    closed: AtomicBool,
    /// A wake is on its way: later appends need not write the eventfd again.
    notified: AtomicBool,
    waker: mio::Waker,
}

thread_local! {
    /// The inbox of the shard running on this thread, if any.
    static CURRENT: Cell<*const Inbox> = const { Cell::new(std::ptr::null()) };
    /// Connections of this thread's shard woken on this thread.
    static DIRTY: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

impl Inbox {
    pub fn new(waker: mio::Waker) -> Inbox {
        Inbox { pending: Mutex::default(), closed: AtomicBool::new(false), notified: AtomicBool::new(false), waker }
    }

    /// Appends with `add` and wakes the shard unless a wake is pending. Once
    /// the inbox is closed, `add` is dropped unused, and what it would have
    /// added (a connection handed over late, with its socket and permit) with it.
    pub fn post(&self, add: impl FnOnce(&mut Pending)) {
        {
            let mut pending = self.pending.lock().expect("shard inbox lock");
            if self.closed.load(Ordering::Relaxed) {
                return;
            }
            add(&mut pending);
        }
        if !self.notified.swap(true, Ordering::AcqRel) {
            // Fails only if the eventfd is gone, i.e. the shard has stopped.
            let _ = self.waker.wake();
        }
    }

    /// Moves everything posted into `into` (which must be empty). The flag
    /// is cleared first, so an append that misses this swap wakes again.
    pub fn take(&self, into: &mut Pending) {
        self.notified.store(false, Ordering::Release);
        std::mem::swap(&mut *self.pending.lock().expect("shard inbox lock"), into);
    }

    /// The shard has stopped: drops what waits here and anything posted
    /// later. A connection handed over after the shard's last look would
    /// otherwise be kept by the inbox, and through its join the node's state.
    pub fn close(&self) {
        let left = {
            let mut pending = self.pending.lock().expect("shard inbox lock");
            self.closed.store(true, Ordering::Relaxed);
            std::mem::take(&mut *pending)
        };
        // Dropped outside the lock: a connection dropped here leaves its rooms,
        // which may wake a queue and so post to an inbox.
        drop(left);
    }

    /// Marks the calling thread as this inbox's shard.
    pub fn enter(self: &Arc<Self>) {
        CURRENT.with(|current| current.set(Arc::as_ptr(self)));
    }
}

/// Whether connections were woken on this thread since the last
/// [`take_dirty`]: then the shard must not sleep before writing them.
pub fn dirty_pending() -> bool {
    DIRTY.with(|dirty| !dirty.borrow().is_empty())
}

/// Moves the connections woken on this thread into `into`.
pub fn take_dirty(into: &mut Vec<u32>) {
    DIRTY.with(|dirty| into.append(&mut dirty.borrow_mut()));
}

/// The waker a shard-owned connection's queue parks.
pub struct ConnWaker {
    pub inbox: Arc<Inbox>,
    pub token: u32,
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let here = CURRENT.with(|current| std::ptr::eq(current.get(), Arc::as_ptr(&self.inbox)));
        if here {
            DIRTY.with(|dirty| dirty.borrow_mut().push(self.token));
        } else {
            self.inbox.post(|pending| pending.ready.push(self.token));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_inbox_keeps_nothing_waiting_or_posted_later() {
        let poll = mio::Poll::new().unwrap();
        let inbox = Inbox::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        inbox.post(|pending| pending.ready.push(1));
        let mut taken = Pending::default();
        inbox.take(&mut taken);
        assert_eq!(taken.ready, [1], "an open inbox delivers");
        inbox.post(|pending| pending.ready.push(2));
        inbox.close();
        inbox.post(|pending| pending.ready.push(3));
        let mut after = Pending::default();
        inbox.take(&mut after);
        assert!(after.ready.is_empty(), "dropped at the close, and refused after it: {:?}", after.ready);
    }
}
