//! The `/admin` namespace: who may connect, what a new admin socket is sent,
//! and the UI's commands.
//!
//! A new admin socket gets, after its CONNECT answer (the handler's
//! `on_connect` runs once that answer is queued), `session` (when it logged
//! in with the credentials), `config`, then — from the pump, in order with
//! the events — `all_sockets`. Sending them before the CONNECT would lose
//! them: the UI registers its listeners in its `connect` handler.
//!
//! The commands (`_disconnect`, `join`, `leave`, `emit`) name a namespace and
//! a `filter`: a room, or a socket id (every socket is in its own room), or
//! nothing for the whole namespace. They apply to the whole cluster, as
//! Node's do; an unknown namespace, and every command in read-only mode, is
//! ignored without an answer (the UI expects none).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value, json};
use tracing::{debug, info};

use super::Shared;
use super::auth::INVALID_CREDENTIALS;
use super::pump::Message;
use crate::engine::DisconnectReason;
use crate::socketio::{Broadcast, ConnectRequest, Handler, IncomingEvent, Io, Socket};

/// The actions the UI may offer, in Node's order (none when read-only).
const ACTIONS: [&str; 7] = [
    "EMIT",
    "JOIN",
    "LEAVE",
    "DISCONNECT",
    "MJOIN",
    "MLEAVE",
    "MDISCONNECT",
];

pub(crate) struct AdminNamespace {
    shared: Arc<Shared>,
}

impl AdminNamespace {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        AdminNamespace { shared }
    }
}

/// The features `config` announces: the actions unless `readonly`, the server
/// statistics always, every socket's events in development mode.
pub(crate) fn features(readonly: bool, development: bool) -> Vec<&'static str> {
    let mut features = Vec::new();
    if !readonly {
        features.extend(ACTIONS);
    }
    features.push("AGGREGATED_EVENTS");
    if development {
        features.push("ALL_EVENTS");
    }
    features
}

impl Handler for AdminNamespace {
    fn authorize(&self, request: &ConnectRequest<'_>) -> Result<(), String> {
        let shared = &self.shared;
        if shared.credentials.open()
            || shared.sessions.check(request.auth, Instant::now())
            || shared.credentials.check(request.auth)
        {
            return Ok(());
        }
        info!(address = ?request.handshake.remote, "admin UI login refused");
        Err(INVALID_CREDENTIALS.to_owned())
    }

    fn on_connect(&self, socket: &Socket) {
        let shared = &self.shared;
        shared.admins.fetch_add(1, Ordering::Relaxed);
        info!(socket = socket.id(), "admin UI connected");
        // Logged in with the credentials: a session lets the UI back in after a
        // reload without asking again (it only keeps the id it gets after the
        // CONNECT).
        if !shared.credentials.open() && socket.auth().get("username").is_some() {
            let session = shared.sessions.create(Instant::now());
            let _ = socket.emit_raw("session", vec![json!(session)]);
        }
        let features = features(shared.config.readonly, shared.development());
        let _ = socket.emit_raw("config", vec![json!({ "supportedFeatures": features })]);
        if shared.development() {
            shared.send(Message::Welcome(socket.clone()));
        }
    }

    fn on_event(&self, socket: &Socket, event: IncomingEvent) {
        if self.shared.config.readonly {
            debug!(socket = socket.id(), command = %event.name, "read-only: admin command ignored");
            return;
        }
        let io = socket.io();
        let args = event.args.values();
        let done = match Command::parse(&event.name, args) {
            Some(command) => command.apply(&io),
            None => false,
        };
        if done {
            let args = serde_json::Value::from(args.to_vec());
            info!(socket = socket.id(), command = %event.name, %args, "admin command");
        } else {
            debug!(socket = socket.id(), command = %event.name, "admin command ignored");
        }
    }

    fn on_disconnect(&self, socket: &Socket, reason: &DisconnectReason) {
        self.shared.admins.fetch_sub(1, Ordering::Relaxed);
        info!(socket = socket.id(), %reason, "admin UI disconnected");
    }
}

/// A command of the UI, read from its arguments.
#[derive(Debug, PartialEq)]
pub(crate) enum Command<'a> {
    /// `_disconnect(nsp, close, filter)`: out of the namespace, or (`close`)
    /// the whole connection.
    Disconnect {
        nsp: &'a str,
        close: bool,
        filter: Option<&'a str>,
    },
    /// `join(nsp, room, filter)`.
    Join {
        nsp: &'a str,
        room: &'a str,
        filter: Option<&'a str>,
    },
    /// `leave(nsp, room, filter)`.
    Leave {
        nsp: &'a str,
        room: &'a str,
        filter: Option<&'a str>,
    },
    /// `emit(nsp, filter, event, ...args)`.
    Emit {
        nsp: &'a str,
        filter: Option<&'a str>,
        event: &'a str,
        args: &'a [Value],
    },
}

/// A filter argument: a room (or socket id), or nothing (`null`, `""`, absent)
/// for every socket of the namespace; `Err` for anything else.
fn filter(value: Option<&Value>) -> Result<Option<&str>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(room)) if room.is_empty() => Ok(None),
        Some(Value::String(room)) => Ok(Some(room)),
        Some(_) => Err(()),
    }
}

impl<'a> Command<'a> {
    /// `name` with `args`, if it is a well-formed command.
    pub(crate) fn parse(name: &str, args: &'a [Value]) -> Option<Command<'a>> {
        let text = |i: usize| args.get(i).and_then(Value::as_str);
        let nsp = text(0)?;
        Some(match name {
            "_disconnect" => Command::Disconnect {
                nsp,
                close: args.get(1).and_then(Value::as_bool).unwrap_or(false),
                filter: filter(args.get(2)).ok()?,
            },
            "join" => Command::Join {
                nsp,
                room: text(1).filter(|room| !room.is_empty())?,
                filter: filter(args.get(2)).ok()?,
            },
            "leave" => Command::Leave {
                nsp,
                room: text(1).filter(|room| !room.is_empty())?,
                filter: filter(args.get(2)).ok()?,
            },
            "emit" => Command::Emit {
                nsp,
                filter: filter(args.get(1)).ok()?,
                event: text(2)?,
                args: args.get(3..).unwrap_or_default(),
            },
            _ => return None,
        })
    }

    fn target(io: &Arc<Io>, nsp: &str, filter: Option<&str>) -> Option<Broadcast> {
        // `io.of` of a namespace not served would create nothing either, but
        // it would still be forwarded to the cluster: stop here.
        if !io.namespaces().iter().any(|served| served == nsp) {
            return None;
        }
        let all = io.of(nsp);
        Some(match filter {
            Some(room) => all.to(room),
            None => all,
        })
    }

    /// Carries it out; `false` for a namespace not served.
    fn apply(self, io: &Arc<Io>) -> bool {
        match self {
            Command::Disconnect { nsp, close, filter } => {
                let Some(target) = Self::target(io, nsp, filter) else {
                    return false;
                };
                if close {
                    target.close();
                } else {
                    target.disconnect();
                }
            }
            Command::Join { nsp, room, filter } => {
                let Some(target) = Self::target(io, nsp, filter) else {
                    return false;
                };
                target.join(room);
            }
            Command::Leave { nsp, room, filter } => {
                let Some(target) = Self::target(io, nsp, filter) else {
                    return false;
                };
                target.leave(room);
            }
            Command::Emit {
                nsp,
                filter,
                event,
                args,
            } => {
                let Some(target) = Self::target(io, nsp, filter) else {
                    return false;
                };
                target.emit_raw(event, args.to_vec());
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_announces_node_s_features() {
        assert_eq!(
            features(false, true),
            [
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
                "AGGREGATED_EVENTS",
                "ALL_EVENTS"
            ]
        );
        assert_eq!(features(true, true), ["AGGREGATED_EVENTS", "ALL_EVENTS"]);
        assert_eq!(features(false, false).len(), 8);
        assert_eq!(features(true, false), ["AGGREGATED_EVENTS"]);
    }

    #[test]
    fn the_ui_s_commands_are_read() {
        let args = |value: Value| value.as_array().cloned().unwrap_or_default();
        // What the Sockets page's Disconnect button sends.
        let a = args(json!(["/", false, "PeYLf3ViDWFBxjTHAAAA"]));
        assert_eq!(
            Command::parse("_disconnect", &a),
            Some(Command::Disconnect {
                nsp: "/",
                close: false,
                filter: Some("PeYLf3ViDWFBxjTHAAAA")
            })
        );
        // A client's: the whole connection.
        let a = args(json!(["/", true, "id"]));
        assert!(matches!(
            Command::parse("_disconnect", &a),
            Some(Command::Disconnect { close: true, .. })
        ));
        // "Clear room": no filter, everyone in the namespace leaves.
        let a = args(json!(["/", "channel:x"]));
        assert_eq!(
            Command::parse("leave", &a),
            Some(Command::Leave {
                nsp: "/",
                room: "channel:x",
                filter: None
            })
        );
        let a = args(json!(["/chat", "room1", "id"]));
        assert_eq!(
            Command::parse("join", &a),
            Some(Command::Join {
                nsp: "/chat",
                room: "room1",
                filter: Some("id")
            })
        );
        let a = args(json!(["/", null, "news", {"text": "hi"}, 2]));
        assert_eq!(
            Command::parse("emit", &a),
            Some(Command::Emit {
                nsp: "/",
                filter: None,
                event: "news",
                args: &[json!({"text": "hi"}), json!(2)]
            })
        );
        // Malformed: ignored.
        for (name, a) in [
            ("join", json!(["/"])),
            ("join", json!(["/", ""])),
            ("leave", json!([1, "room"])),
            ("_disconnect", json!(["/", false, 7])),
            ("emit", json!(["/", "room"])),
            ("shutdown", json!(["/"])),
            ("_disconnect", json!([])),
        ] {
            assert_eq!(Command::parse(name, &args(a.clone())), None, "{name} {a}");
        }
    }
}
