//! The bounded queue behind every per-connection channel: a session's command
//! [`Link`](crate::engine) and the routes' `Inbox` of polling requests.
//!
//! Many senders, one receiver (the session's task). Not a tokio channel: that
//! allocates a 32-slot block and a cache-padded header for every connection up
//! front. This one holds a few words while empty, grows with what waits (up to
//! its capacity), and gives a large backlog's memory back once it has drained.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// A backlog this long, once drained, gives its memory back.
const SHRINK_ABOVE: usize = 128;

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The receiver is gone.
    Closed,
    /// `capacity` items wait already.
    Full,
}

#[derive(Debug)]
pub(crate) struct BoundedQueue<T> {
    // A std Mutex: held only to push or pop, never across an await, and never
    // while the holder takes another lock (emitters lock a namespace then
    // queues; the receiver pops without holding anything).
    state: Mutex<State<T>>,
    ready: AtomicWaker,
    capacity: usize,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    /// The receiver is gone: nothing more is accepted.
    closed: bool,
}

impl<T> BoundedQueue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: AtomicWaker::new(),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `item` and wakes the receiver, or says why not (`item` is dropped).
    pub(crate) fn push(&self, item: T) -> Result<(), Refused> {
        let mut state = self.state();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.items.len() >= self.capacity {
            return Err(Refused::Full);
        }
        state.items.push_back(item);
        drop(state);
        self.ready.wake();
        Ok(())
    }

    /// The next item, if one is waiting.
    pub(crate) fn try_pop(&self) -> Option<T> {
        let mut state = self.state();
        let item = state.items.pop_front();
        if state.items.is_empty() && state.items.capacity() > SHRINK_ABOVE {
            state.items = VecDeque::new();
        }
        item
    }

    /// The next item. Cancel-safe: an item stays queued until returned. One
    /// receiver only (it alone is woken).
    pub(crate) async fn pop(&self) -> T {
        std::future::poll_fn(|cx| {
            if let Some(item) = self.try_pop() {
                return Poll::Ready(item);
            }
            self.ready.register(cx.waker());
            // An item pushed between the check and the registration woke
            // nobody: look again.
            match self.try_pop() {
                Some(item) => Poll::Ready(item),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// The receiver is gone: refuses new items and drops the waiting ones
    /// (outside the lock: dropping one may answer a request or an ack waiter).
    pub(crate) fn close(&self) {
        let waiting = {
            let mut state = self.state();
            state.closed = true;
            std::mem::take(&mut state.items)
        };
        drop(waiting);
    }

    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.state().items.capacity()
    }
}
