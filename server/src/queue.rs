//! The bounded queue behind every per-connection channel: a session's command
//! [`Link`](crate::engine) and the routes' `Inbox` of polling requests.
//!
//! Many senders, one receiver (the session's task). Not a tokio channel: that
//! allocates a 32-slot block and a cache-padded header for every connection up
//! front. This one holds a few words while empty, grows with what waits (up to
//! its capacity), and gives a large backlog's memory back once it has drained.
//!
//! The receiver's waker lives under the same lock as the items, and a push
//! wakes only a receiver that found the queue empty and is waiting. A fan-out
//! pushes into a thousand queues whose receivers mostly run on the other core:
//! a push to a receiver already awake (draining earlier items) then touches no
//! cache line but the lock's and the slot's (an `AtomicWaker` costs a contended
//! read-modify-write per push even then; it was half of a push's time).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Poll, Waker};

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
    capacity: usize,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    /// The receiver found no item and waits for the next one: the next push
    /// takes this and wakes it (unless the receiver is `busy`).
    waiting: Option<Waker>,
    /// The receiver is running and will look at the queue before it waits
    /// again: pushes leave its waker in place and wake nobody.
    busy: bool,
    /// The receiver is gone: nothing more is accepted.
    closed: bool,
}

impl<T> BoundedQueue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                waiting: None,
                busy: false,
                closed: false,
            }),
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
        let waiting = if state.busy {
            None
        } else {
            state.waiting.take()
        };
        drop(state);
        if let Some(waker) = waiting {
            waker.wake();
        }
        Ok(())
    }

    /// The next item, if one is waiting.
    pub(crate) fn try_pop(&self) -> Option<T> {
        Self::pop_locked(&mut self.state())
    }

    fn pop_locked(state: &mut State<T>) -> Option<T> {
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
            let mut state = self.state();
            state.busy = false;
            if let Some(item) = Self::pop_locked(&mut state) {
                return Poll::Ready(item);
            }
            // Under the lock: a push either came first (and its item was just
            // popped) or comes after and finds the waker. A replaced waker is
            // dropped after the lock is released, as every waker here: dropping
            // one must never run anything while the lock is held.
            let replaced = match &state.waiting {
                Some(waker) if waker.will_wake(cx.waker()) => None,
                _ => state.waiting.replace(cx.waker().clone()),
            };
            drop(state);
            drop(replaced);
            Poll::Pending
        })
        .await
    }

    /// The receiver is busy and will look at the queue before it next waits:
    /// pushes until then wake nobody. For a receiver that pushes to itself
    /// (a connection's handlers replying through their own link), so that its
    /// replies do not schedule it again for a turn that finds nothing.
    /// The waker stays registered: a receiver that waits again with the same
    /// waker (a task's own) neither clones nor drops one per turn.
    pub(crate) fn busy(&self) {
        self.state().busy = true;
    }

    /// The receiver is gone: refuses new items and drops the waiting ones
    /// (outside the lock: dropping one may answer a request or an ack waiter).
    pub(crate) fn close(&self) {
        let (items, waker) = {
            let mut state = self.state();
            state.closed = true;
            (std::mem::take(&mut state.items), state.waiting.take())
        };
        drop(items);
        drop(waker);
    }

    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.state().items.capacity()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake};

    use super::*;

    /// Counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll_pop<T>(queue: &BoundedQueue<T>, waker: &Waker) -> Poll<T> {
        let mut cx = Context::from_waker(waker);
        let pop = std::pin::pin!(queue.pop());
        pop.poll(&mut cx)
    }

    #[test]
    fn only_a_waiting_receiver_is_woken_and_once() {
        let queue = BoundedQueue::new(8);
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(Arc::clone(&counter));
        assert!(poll_pop(&queue, &waker).is_pending());
        queue.push(1).unwrap();
        queue.push(2).unwrap();
        // One wake for the receiver that waited, none for the push after it.
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_pop(&queue, &waker), Poll::Ready(1));
        assert_eq!(queue.try_pop(), Some(2));
        queue.push(3).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "nobody waited");
        assert_eq!(poll_pop(&queue, &waker), Poll::Ready(3));
        assert!(poll_pop(&queue, &waker).is_pending());
        queue.push(4).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_busy_receiver_is_not_woken_and_loses_nothing() {
        let queue = BoundedQueue::new(8);
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(Arc::clone(&counter));
        assert!(poll_pop(&queue, &waker).is_pending());
        // The receiver's turn began for another reason: it will look before waiting.
        queue.busy();
        queue.push(1).unwrap();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            0,
            "no wake for a busy receiver"
        );
        assert_eq!(poll_pop(&queue, &waker), Poll::Ready(1));
        // Waiting again, it is woken again.
        assert!(poll_pop(&queue, &waker).is_pending());
        queue.push(2).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn bounded_and_closed() {
        let queue = BoundedQueue::new(2);
        queue.push(1).unwrap();
        queue.push(2).unwrap();
        assert_eq!(queue.push(3), Err(Refused::Full));
        assert_eq!(queue.try_pop(), Some(1));
        queue.push(3).unwrap();
        queue.close();
        assert_eq!(queue.push(4), Err(Refused::Closed));
        assert_eq!(queue.try_pop(), None, "what waited was dropped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receiver_on_another_thread_gets_every_item_in_order() {
        let queue = Arc::new(BoundedQueue::new(64));
        let receiver = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move {
                let mut got = Vec::new();
                while got.len() < 10_000 {
                    got.push(queue.pop().await);
                }
                got
            }
        });
        let mut sent = 0;
        while sent < 10_000 {
            match queue.push(sent) {
                Ok(()) => sent += 1,
                Err(Refused::Full) => tokio::task::yield_now().await,
                Err(Refused::Closed) => panic!("closed"),
            }
        }
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), receiver)
            .await
            .expect("the receiver missed a wake")
            .unwrap();
        assert!(got.iter().copied().eq(0..10_000));
    }
}
