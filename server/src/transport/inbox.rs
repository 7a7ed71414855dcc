//! [`Inbox`]: the requests the routes hand to a session's task (a polling GET
//! or POST, an upgrading WebSocket), bounded, and [`PollError`], why a polling
//! request is refused.

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::oneshot;

use super::ws::WebSocket;
use crate::queue::{BoundedQueue, Refused};

/// Most requests waiting in a session's [`Inbox`]. Each polling request waits for
/// its reply, so a client has at most a GET, a POST and an upgrade in flight.
const INBOX: usize = 8;

/// Requests from the routes to a session's task.
#[derive(Debug)]
pub(crate) enum Input {
    /// A long-polling GET, with its cache buster (`t`).
    Get {
        reply: oneshot::Sender<Result<String, PollError>>,
        t: Option<String>,
    },
    Post {
        body: String,
        reply: oneshot::Sender<Result<(), PollError>>,
        t: Option<String>,
    },
    Upgrade(Box<WebSocket>),
    /// A POST's connection failed before its body was complete: the client
    /// saw the request fail and gives this transport up.
    PostFailed,
}

/// Why a polling request was refused (HTTP 400 with this message).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PollError {
    #[error("session upgraded to websocket: polling is closed")]
    Upgraded,
    #[error("a GET is already pending for this session")]
    DuplicateGet,
    #[error("invalid payload: {0}")]
    BadPayload(String),
    #[error("session closed")]
    Closed,
    #[error("too many requests waiting for this session")]
    Busy,
}

/// The routes' requests to one session's task: at most [`INBOX`] waiting; past
/// that a request is refused (400). WebSocket sessions almost never get one, and
/// the queue allocates only when one arrives ([`BoundedQueue`]).
#[derive(Debug)]
pub(crate) struct Inbox(BoundedQueue<Input>);

impl Inbox {
    pub(super) fn new() -> Self {
        Inbox(BoundedQueue::new(INBOX))
    }

    /// Queues `input` for the session's task. Refused (and dropped, which answers
    /// it) if the session ended or [`INBOX`] requests are waiting already.
    pub(crate) fn send(&self, input: Input) -> Result<(), PollError> {
        self.0.push(input).map_err(|refused| match refused {
            Refused::Closed => PollError::Closed,
            Refused::Full => PollError::Busy,
        })
    }

    /// The next request. Cancel-safe: a request stays queued until returned.
    pub(super) async fn recv(&self) -> Input {
        self.0.pop().await
    }
}

/// The task's end of an [`Inbox`]: when the task ends, however it ends, the
/// inbox refuses new requests and the waiting ones are answered (dropped).
pub(super) struct InboxReceiver(pub(super) Arc<Inbox>);

impl Drop for InboxReceiver {
    fn drop(&mut self) {
        self.0.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_inbox_is_bounded_and_refuses_once_the_task_ended() {
        let inbox = Arc::new(Inbox::new());
        let receiver = InboxReceiver(inbox.clone());
        let mut replies = Vec::new();
        for _ in 0..INBOX {
            let (reply, response) = oneshot::channel();
            assert!(inbox.send(Input::Get { reply, t: None }).is_ok());
            replies.push(response);
        }
        let (reply, _) = oneshot::channel();
        assert_eq!(
            inbox.send(Input::Get { reply, t: None }).err(),
            Some(PollError::Busy)
        );
        assert!(matches!(receiver.0.recv().await, Input::Get { .. }));
        let (reply, _) = oneshot::channel();
        assert!(inbox.send(Input::Get { reply, t: None }).is_ok());
        drop(receiver);
        // The waiting requests are answered (their reply channels dropped)...
        for response in replies.into_iter().skip(1) {
            assert!(response.await.is_err());
        }
        // ...and new ones refused.
        let (reply, _) = oneshot::channel();
        assert_eq!(
            inbox.send(Input::Get { reply, t: None }).err(),
            Some(PollError::Closed)
        );
    }
}
