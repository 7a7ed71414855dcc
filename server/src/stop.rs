//! One-shot stops that a session task watches on every turn at the cost of one
//! atomic load: a connection's kill switch and the server's shutdown.
//!
//! A [`CancellationToken`]'s future locks a mutex and polls a `Notify` each time
//! it is polled; a session task waits on two of them in every `select!`, twice
//! per turn, which was 4 % of the server's time per echo round trip. Here the
//! token's future is polled once, to put the task on its list of waiters, and
//! afterwards only the [`Stop`]'s flag is read: the flag is set before the
//! token is cancelled, so the wake-up that the cancellation sends finds it set.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// A stop that fires once, for every task that watches it.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    fired: AtomicBool,
    token: CancellationToken,
}

impl Stop {
    pub(crate) fn new() -> Self {
        Stop::default()
    }

    /// Fires the stop: every watcher wakes (firing twice does nothing more).
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.token.cancel();
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// What a task pins once and hands to [`Watch::fired`] on every turn.
    pub(crate) fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }
}

/// One task's watch on a [`Stop`]: whether the task is on the token's list of
/// waiters yet, and whether it has seen the stop (which it handles once).
#[derive(Debug, Default)]
pub(crate) struct Watch {
    registered: bool,
    seen: bool,
}

impl Watch {
    /// Completes once, when `stop` has fired; after that, never (the task has
    /// handled the stop). `wait` is `stop`'s [`cancelled`](Stop::cancelled)
    /// future, pinned by the task for its whole life: it is polled only the
    /// first time, which registers the task's waker; later polls read the flag.
    /// Only for futures polled by one task (whose waker wakes that task
    /// whatever poll it came from).
    pub(crate) fn fired<'a>(
        &'a mut self,
        stop: &'a Stop,
        mut wait: Pin<&'a mut WaitForCancellationFuture<'_>>,
    ) -> impl Future<Output = ()> + 'a {
        poll_fn(move |cx| {
            if self.seen {
                return Poll::Pending;
            }
            let fired = stop.is_fired()
                || (!std::mem::replace(&mut self.registered, true)
                    && wait.as_mut().poll(cx).is_ready());
            if fired {
                self.seen = true;
                return Poll::Ready(());
            }
            Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_watching_task_wakes_when_the_stop_fires_after_many_turns() {
        let stop = Arc::new(Stop::new());
        let (turn_tx, mut turn_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let watched = stop.clone();
        let task = tokio::spawn(async move {
            let wait = watched.cancelled();
            tokio::pin!(wait);
            let mut watch = Watch::default();
            let mut turns = 0;
            loop {
                tokio::select! {
                    () = watch.fired(&watched, wait.as_mut()) => return turns,
                    Some(()) = turn_rx.recv() => {
                        turns += 1;
                        done_tx.send(()).expect("test alive");
                    }
                }
            }
        });
        // Many turns, each polling the watch without the stop having fired.
        for _ in 0..100 {
            turn_tx.send(()).expect("task alive");
            done_rx.recv().await.expect("turn done");
        }
        assert!(!task.is_finished());
        stop.fire();
        let turns = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("woken by the stop")
            .expect("task");
        assert_eq!(turns, 100);
        assert!(stop.is_fired());
    }

    #[tokio::test]
    async fn a_watch_completes_once() {
        use futures_util::FutureExt;

        let stop = Stop::new();
        let wait = stop.cancelled();
        tokio::pin!(wait);
        let mut watch = Watch::default();
        assert_eq!(watch.fired(&stop, wait.as_mut()).now_or_never(), None);
        stop.fire();
        assert_eq!(watch.fired(&stop, wait.as_mut()).now_or_never(), Some(()));
        assert_eq!(watch.fired(&stop, wait.as_mut()).now_or_never(), None);
    }

    #[tokio::test]
    async fn a_stop_fired_before_the_watch_begins_is_seen_at_once() {
        let stop = Stop::new();
        stop.fire();
        stop.fire();
        let wait = stop.cancelled();
        tokio::pin!(wait);
        let mut watch = Watch::default();
        tokio::time::timeout(Duration::from_secs(1), watch.fired(&stop, wait.as_mut()))
            .await
            .expect("fired already");
    }
}
