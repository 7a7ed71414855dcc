//! The acks slice: the custom event form's emits that wait for an ack, and what
//! became of the last one (`#ack-result`).

use std::fmt;
use std::rc::Rc;

use protocol::Time;
use protocol::session::AckId;
use serde_json::Value;
use yew::Reducible;

use super::{Action, json_text, whole_millis};

/// What became of the last emit that asked for an ack (`#ack-result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckResult {
    Waiting {
        event: String,
    },
    Received {
        event: String,
        rtt_ms: u64,
        args: String,
    },
    TimedOut {
        event: String,
    },
}

impl fmt::Display for AckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckResult::Waiting { event } => write!(f, "waiting for the ack of {event:?}…"),
            AckResult::Received { rtt_ms, args, .. } => write!(f, "ack in {rtt_ms} ms: {args}"),
            AckResult::TimedOut { event } => write!(
                f,
                "ack timeout: no ack for {event:?} in time (no reply, or the connection was lost)"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct PendingAck {
    event: String,
    sent_at: Time,
}

/// Values by ack id. A page waits for a few acks at a time, so this is a `Vec`
/// searched from the end rather than a `BTreeMap`: every map type is ~4 KB of
/// the wasm bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct AckMap<V>(Vec<(AckId, V)>);

impl<V> Default for AckMap<V> {
    fn default() -> Self {
        AckMap(Vec::new())
    }
}

impl<V> AckMap<V> {
    /// Sets the value for `id`, replacing any earlier one.
    pub fn insert(&mut self, id: AckId, value: V) {
        self.remove(id);
        self.0.push((id, value));
    }

    pub fn remove(&mut self, id: AckId) -> Option<V> {
        let at = self.0.iter().rposition(|(key, _)| *key == id)?;
        Some(self.0.remove(at).1)
    }

    pub fn contains(&self, id: AckId) -> bool {
        self.0.iter().any(|(key, _)| *key == id)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The acks slice. A new session starts from `Default`: it numbers its acks from
/// 0 again, so the old ones can never complete.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AckState {
    /// What `#ack-result` shows.
    pub last: Option<AckResult>,
    pending: AckMap<PendingAck>,
}

impl AckState {
    /// How many acks are still awaited.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Applies one of this slice's actions in place.
    fn apply(&mut self, action: Action) {
        match action {
            Action::Connecting { .. } => {
                *self = AckState {
                    // An answer stays on show; a wait for one is over.
                    last: self
                        .last
                        .take()
                        .filter(|last| !matches!(last, AckResult::Waiting { .. })),
                    ..AckState::default()
                };
            }
            Action::AckPending { id, event, at } => {
                self.last = Some(AckResult::Waiting {
                    event: event.clone(),
                });
                self.pending.insert(id, PendingAck { event, sent_at: at });
            }
            Action::AckReceived { id, args, at } => {
                if let Some(pending) = self.pending.remove(id) {
                    let rtt = at.saturating_sub(pending.sent_at);
                    self.last = Some(AckResult::Received {
                        event: pending.event,
                        rtt_ms: whole_millis(rtt, 500),
                        args: json_text(&Value::Array(args)),
                    });
                }
            }
            Action::AckTimedOut { id } => {
                if let Some(pending) = self.pending.remove(id) {
                    self.last = Some(AckResult::TimedOut {
                        event: pending.event,
                    });
                }
            }
            // Not this slice's (`reduce` returned before).
            _ => {}
        }
    }
}

impl Reducible for AckState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let reads = match &action {
            Action::Connecting { .. } | Action::AckPending { .. } => true,
            // An unknown or repeated ack changes nothing.
            Action::AckReceived { id, .. } | Action::AckTimedOut { id } => {
                self.pending.contains(*id)
            }
            _ => false,
        };
        if !reads {
            return self;
        }
        let mut next = Rc::unwrap_or_clone(self);
        next.apply(action);
        Rc::new(next)
    }
}
