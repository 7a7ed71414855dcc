//! One session's behaviour, without I/O: the protocol's `ClientSession` plus what
//! this page does with it.
//!
//! `socket.rs` moves frames, timer ticks and transports between the browser and a
//! [`Connection`]; the connection turns session events into page [`Action`]s,
//! tells the driver when to drop its transport and open another
//! ([`TransportRequest`]), and carries out the page's behaviour: answer every
//! `news` with `my other event` (the tutorial), refuse to retry after the server
//! refused us, and re-join the page's news channels when a reconnect lands on a
//! new server session. One connection lives across every transport that
//! reconnection opens. Keeping this apart from the gloo-net shell means the page's
//! reactions are unit-tested natively, with the same time-as-a-parameter style as
//! the protocol.

use std::collections::VecDeque;

use protocol::app::{
    Channel, Channels, Handshake, JoinChannel, LeaveChannel, MyData, MyOtherEvent, News, Publish,
    PublishNews, valid_channel,
};
use protocol::engineio::OpenPacket;
use protocol::event::{self, Event};
use protocol::session::client::ClientState;
use protocol::session::{Backoff, ClientConfig, ClientEvent, ClientSession, CloseReason};
use protocol::{Frame, Time};
use serde_json::{Value, json};

use crate::state::{AckMap, Action, Dir, json_text};

/// Most emits the page keeps while it is not connected; one more is refused and
/// the user is told (`#event-error`). Emits are made by hand, so a few dozen
/// waiting means the server has been gone for a while; far fewer than the
/// protocol's default, so a page left reconnecting does not hoard them.
pub const MAX_BUFFERED: usize = 100;

/// The session settings of the page: Socket.IO's reconnection defaults (1 s
/// doubling to 5 s, ±50% jitter, forever), jitter drawn from `seed` (real
/// randomness in the browser, so pages dropped together spread out), and the
/// `token`, if any, as the CONNECT auth `{"token": ...}`.
pub fn page_config(token: Option<&str>, seed: u64) -> ClientConfig {
    ClientConfig {
        auth: token.map(|token| json!({ "token": token })),
        reconnection: Some(Backoff::default()),
        seed,
        max_buffered: MAX_BUFFERED,
        ..ClientConfig::default()
    }
}

/// What the page asks of its connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Emit any event; with `ack`, the reply (or its timeout) comes back as an action.
    Emit {
        event: String,
        args: Vec<Value>,
        ack: bool,
    },
    /// Ask the server to broadcast a news item.
    Publish(Publish),
    /// Subscribe to a news channel.
    Join(String),
    /// Unsubscribe from a news channel.
    Leave(String),
    /// The network is back: skip what is left of the reconnection delay.
    RetryNow,
    /// Leave the namespace and close the session; cancels reconnection.
    Disconnect,
}

/// What the driver must do with its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportRequest {
    /// The transport is lost (or given up on): close it and read no more from it.
    Close,
    /// Open a new transport to the same server and feed its frames to this
    /// connection (or call [`Connection::transport_closed`] if it cannot be opened).
    Open,
}

/// Which way a channel request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelOp {
    Join,
    Leave,
}

impl ChannelOp {
    fn verb(self) -> &'static str {
        match self {
            ChannelOp::Join => "join",
            ChannelOp::Leave => "leave",
        }
    }
}

/// A client session and the page's reactions to it.
#[derive(Debug)]
pub struct Connection {
    session: ClientSession,
    actions: VecDeque<Action>,
    transport: VecDeque<TransportRequest>,
    /// The channels the server last said we are in (or that a new session starts
    /// with): re-joined whenever the server starts a new session for us.
    channels: Vec<String>,
    /// Our join/leave requests awaiting the server's [`Channels`] answer.
    channel_acks: AckMap<(ChannelOp, String)>,
    /// The namespace accepted us before: the next accept is a reconnect.
    was_connected: bool,
    /// Why the last transport was lost.
    lost: Option<String>,
}

impl Default for Connection {
    fn default() -> Self {
        Connection::new(ClientConfig::default(), Vec::new())
    }
}

impl Connection {
    /// A connection whose first transport is opening; `channels` are joined once
    /// the namespace accepts us (the page's channels when "Reconnect" starts over).
    pub fn new(config: ClientConfig, channels: Vec<String>) -> Self {
        Connection {
            session: ClientSession::new(config),
            actions: VecDeque::new(),
            transport: VecDeque::new(),
            channels,
            channel_acks: AckMap::default(),
            was_connected: false,
            lost: None,
        }
    }

    /// A frame arrived from the server. A protocol error loses the transport (and
    /// reconnection follows); the error is the reason the page shows.
    pub fn handle_frame(&mut self, frame: Frame, now: Time) {
        // The error is also the loss's reason, reported by `pump`.
        let _ = self.session.handle_frame(frame, now);
        self.pump(now);
    }

    pub fn handle_command(&mut self, command: Command, now: Time) {
        match command {
            Command::Emit { event, args, ack } => self.emit(event, args, ack, now),
            Command::Publish(publish) => self.emit_typed::<PublishNews>(&publish, now),
            Command::Join(channel) => self.channel_request(ChannelOp::Join, channel, now),
            Command::Leave(channel) => self.channel_request(ChannelOp::Leave, channel, now),
            Command::RetryNow => self.session.reconnect_now(),
            Command::Disconnect => self.session.disconnect(),
        }
        self.pump(now);
    }

    /// The time from [`poll_timeout`](Self::poll_timeout) was reached.
    pub fn handle_timeout(&mut self, now: Time) {
        self.session.handle_timeout(now);
        self.pump(now);
    }

    /// The transport closed, failed, or could not be opened.
    pub fn transport_closed(&mut self, why: String, now: Time) {
        self.session
            .transport_closed(CloseReason::Transport(why), now);
        self.pump(now);
    }

    /// The current transport's Engine.IO open packet, once it arrived.
    pub fn handshake(&self) -> Option<&OpenPacket> {
        self.session.handshake()
    }

    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.session.poll_transmit()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// What the driver must do with its transport next, in order.
    pub fn poll_transport(&mut self) -> Option<TransportRequest> {
        self.transport.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.session.poll_timeout()
    }

    /// Once closed, only the frames already queued (a goodbye) remain to be sent.
    pub fn is_closed(&self) -> bool {
        *self.session.state() == ClientState::Closed
    }

    /// Turns the session's events into actions and reactions.
    fn pump(&mut self, now: Time) {
        while let Some(event) = self.session.poll_event() {
            match event {
                ClientEvent::Open(open) => self.actions.push_back(Action::Opened(open)),
                ClientEvent::Connected { sid, recovered } => {
                    let action = if self.was_connected {
                        Action::Reconnected { sid, recovered }
                    } else {
                        Action::Connected { sid }
                    };
                    self.was_connected = true;
                    self.actions.push_back(action);
                    if !recovered {
                        // A new server session knows none of our channels.
                        for channel in self.channels.clone() {
                            self.channel_request(ChannelOp::Join, channel, now);
                        }
                    }
                }
                ClientEvent::ConnectError { message, .. } => {
                    // As Socket.IO's client: a refusal by the server's middleware is
                    // final, not retried (the same auth would be refused again).
                    self.actions.push_back(Action::ConnectRefused { message });
                    self.session.disconnect();
                }
                ClientEvent::Event { id, name, args, .. } => {
                    self.on_event(&name, &args, now);
                    if let Some(id) = id {
                        // The page has no handler that answers; an empty ack at least
                        // tells the server that the event arrived.
                        let _ = self.session.ack(id, Vec::new());
                    }
                }
                ClientEvent::Ack { id, args, .. } => match self.channel_acks.remove(id) {
                    Some((op, channel)) => self.on_channels(op, &channel, &args),
                    None => {
                        self.actions
                            .push_back(Action::AckReceived { id, args, at: now });
                    }
                },
                ClientEvent::AckTimeout { id } => match self.channel_acks.remove(id) {
                    Some((op, channel)) => self.actions.push_back(Action::ChannelError {
                        message: format!(
                            "no answer to {} {channel:?} in time (the connection was lost, or the server is slow)",
                            op.verb()
                        ),
                    }),
                    None => self.actions.push_back(Action::AckTimedOut { id }),
                },
                ClientEvent::Disconnected => {
                    // Removed from the namespace by the server: as Socket.IO's client,
                    // that is not retried; the session would idle on, joined to
                    // nothing, so close it.
                    self.actions.push_back(Action::NamespaceLeft);
                    self.session.disconnect();
                }
                ClientEvent::TransportLost(reason) => {
                    self.transport.push_back(TransportRequest::Close);
                    self.lost = Some(reason.to_string());
                }
                ClientEvent::Reconnecting { attempt, delay } => {
                    self.actions.push_back(Action::Reconnecting {
                        attempt: attempt + 1,
                        due: now + delay,
                        reason: self
                            .lost
                            .clone()
                            .unwrap_or_else(|| "the transport was lost".to_owned()),
                    });
                }
                ClientEvent::OpenTransport { attempt } => {
                    self.transport.push_back(TransportRequest::Open);
                    self.actions.push_back(Action::ReconnectAttempt {
                        attempt: attempt + 1,
                    });
                }
                ClientEvent::Closed(reason) => {
                    self.actions.push_back(Action::Closed {
                        reason: reason.to_string(),
                    });
                }
            }
        }
    }

    fn on_event(&mut self, name: &str, args: &[Value], now: Time) {
        self.actions.push_back(Action::Logged {
            dir: Dir::In,
            event: name.to_owned(),
            args: args.to_vec(),
            at: now,
        });
        if name == News::NAME {
            // A news item that does not decode is still in the log; it is just not shown
            // as news, and not answered.
            if let Ok(item) = event::decode::<News>(args) {
                self.actions.push_back(Action::News { item, at: now });
                // The tutorial: `socket.on('news', d => socket.emit('my other event', { my: 'data' }))`.
                let reply = MyData {
                    my: "data".to_owned(),
                };
                self.emit_typed::<MyOtherEvent>(&reply, now);
            }
        } else if name == Handshake::NAME
            && let Ok(info) = event::decode::<Handshake>(args)
        {
            self.actions.push_back(Action::Handshake(info));
        }
    }

    /// The server's [`Channels`] answer to a join or leave.
    fn on_channels(&mut self, op: ChannelOp, channel: &str, args: &[Value]) {
        let answer = args
            .first()
            .cloned()
            .map(serde_json::from_value::<Channels>);
        match answer {
            Some(Ok(Channels { channels, error })) => {
                self.channels.clone_from(&channels);
                self.actions.push_back(Action::Channels { channels, error });
            }
            _ => self.actions.push_back(Action::ChannelError {
                message: format!(
                    "unexpected answer to {} {channel:?}: {}",
                    op.verb(),
                    json_text(&Value::Array(args.to_vec()))
                ),
            }),
        }
    }

    /// Joins or leaves `channel`, asking for the server's [`Channels`] answer.
    fn channel_request(&mut self, op: ChannelOp, channel: String, now: Time) {
        let channel = channel.trim().to_owned();
        if !valid_channel(&channel) {
            self.actions.push_back(Action::ChannelError {
                message: format!(
                    "invalid channel name {channel:?}: 1 to {} characters, not blank",
                    protocol::app::MAX_CHANNEL_LEN
                ),
            });
            return;
        }
        let payload = Channel {
            channel: channel.clone(),
        };
        let (name, args) = match op {
            ChannelOp::Join => (JoinChannel::NAME, event::encode::<JoinChannel>(&payload)),
            ChannelOp::Leave => (LeaveChannel::NAME, event::encode::<LeaveChannel>(&payload)),
        };
        let sent = args.map_err(Into::into).and_then(|args| {
            self.session
                .emit_with_ack(name, args.clone(), now)
                .map(|id| (id, args))
        });
        match sent {
            Ok((id, args)) => {
                self.channel_acks.insert(id, (op, channel));
                self.actions.push_back(Action::Logged {
                    dir: Dir::Out,
                    event: name.to_owned(),
                    args,
                    at: now,
                });
            }
            Err(err) => self.actions.push_back(Action::ChannelError {
                message: format!("could not {} {channel:?}: {err}", op.verb()),
            }),
        }
    }

    fn emit_typed<E: Event>(&mut self, payload: &E::Payload, now: Time) {
        match event::encode::<E>(payload) {
            Ok(args) => self.emit(E::NAME.to_owned(), args, false, now),
            Err(err) => self.actions.push_back(Action::EmitRefused {
                event: E::NAME.to_owned(),
                reason: err.to_string(),
            }),
        }
    }

    fn emit(&mut self, event: String, args: Vec<Value>, ack: bool, now: Time) {
        let sent = if ack {
            self.session
                .emit_with_ack(&event, args.clone(), now)
                .map(Some)
        } else {
            self.session.emit(&event, args.clone()).map(|()| None)
        };
        match sent {
            Ok(ack_id) => {
                self.actions.push_back(Action::Logged {
                    dir: Dir::Out,
                    event: event.clone(),
                    args,
                    at: now,
                });
                if let Some(id) = ack_id {
                    self.actions
                        .push_back(Action::AckPending { id, event, at: now });
                }
            }
            Err(err) => self.actions.push_back(Action::EmitRefused {
                event,
                reason: err.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
