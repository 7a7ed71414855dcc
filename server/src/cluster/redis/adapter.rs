//! A namespace's adapter in a cluster.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{RedisCluster, opts};
use crate::cluster::wire::{Body, EventPacket, Message, StoredSession};
use crate::socketio::{Adapter, Forward, InMemoryAdapter, Offset, RecoveryConfig, Session, Target};
use protocol::{Frame, Time};

/// A namespace's adapter in a cluster: this server's sockets in memory, and
/// what the others must hear forwarded.
///
/// With recovery, the cluster's stream orders every broadcast: this server's
/// own come back to it from the stream and are delivered then, like the other
/// servers', with the entry id as offset; every one is logged here (whoever
/// its recipients), so that a client of any server can recover here. Sessions
/// of departed sockets are kept in Redis, for any server to take.
#[derive(Debug)]
pub(super) struct RedisAdapter {
    pub(super) local: InMemoryAdapter,
    pub(super) recovery: Option<RecoveryConfig>,
    pub(super) nsp: String,
    pub(super) cluster: Arc<RedisCluster>,
}

impl Adapter for RedisAdapter {
    fn add(&mut self, id: &str, room: String) {
        self.local.add(id, room);
    }
    fn del(&mut self, id: &str, room: &str) {
        self.local.del(id, room);
    }
    fn del_all(&mut self, id: &str) -> HashSet<String> {
        self.local.del_all(id)
    }
    fn socket_rooms(&self, id: &str) -> Option<&HashSet<String>> {
        self.local.socket_rooms(id)
    }
    fn members(&self, room: &str) -> Option<&HashSet<String>> {
        self.local.members(room)
    }
    fn rooms(&self) -> Vec<String> {
        self.local.rooms()
    }
    fn recovery_enabled(&self) -> bool {
        self.local.recovery_enabled()
    }
    /// None: offsets are the stream's entry ids, given by the reader. What is
    /// delivered here without going through the stream (a `local` emit, or an
    /// emit while Redis is away) has no offset, as in Node's adapter.
    fn next_offset(&mut self) -> Option<Offset> {
        None
    }
    fn last_offset(&self) -> Offset {
        self.local.last_offset()
    }
    fn log(&mut self, offset: Offset, target: Target, frames: Arc<[Frame]>, now: Time) {
        self.local.log(offset, target, frames, now);
    }
    fn persist_session(&mut self, pid: &str, session: Session, _now: Time) {
        let Some(recovery) = self.recovery else {
            return;
        };
        let mut rooms = vec![session.socket_id.clone()];
        rooms.extend(session.rooms);
        self.cluster.persist(
            &StoredSession {
                sid: session.socket_id,
                pid: pid.to_owned(),
                rooms,
                // Node's sockets always have data (`{}` by default).
                data: match session.data {
                    Value::Null => Value::Object(Map::new()),
                    data => data,
                },
                base: Some(session.base.to_string()),
            },
            recovery.window,
        );
    }
    fn persisted(&mut self, _pid: &str, _now: Time) -> Option<&Session> {
        // Kept in Redis, taken from there (`sessions_elsewhere`).
        None
    }
    fn restore_session(&mut self, _pid: &str) -> Option<Session> {
        None
    }
    fn missed(&self, offset: Offset, id: &str, rooms: &HashSet<String>) -> Option<Vec<Frame>> {
        self.local.missed(offset, id, rooms)
    }
    fn sessions_elsewhere(&self) -> bool {
        self.recovery.is_some()
    }
    fn missing_up_to(&mut self, offset: Offset) {
        self.local.missing_up_to(offset);
    }
    fn floor(&self) -> Offset {
        self.local.floor()
    }

    fn on_empty(&mut self, now: Time) {
        self.local.on_empty(now);
    }

    fn forward(&mut self, op: Forward<'_>) -> bool {
        let mut ordered = false;
        let body = match op {
            Forward::Broadcast {
                target,
                name,
                args,
                attachments,
                volatile,
            } => {
                // Volatile broadcasts are not kept for recovery: delivered now.
                ordered = self.recovery.is_some() && !volatile;
                let mut data = Vec::with_capacity(args.values().len() + 1);
                data.push(Value::String(name.to_owned()));
                data.extend(args.values().iter().cloned());
                Body::Broadcast {
                    packet: EventPacket {
                        data,
                        attachments: attachments.to_vec(),
                        id: None,
                    },
                    opts: opts(target, volatile),
                    request_id: None,
                }
            }
            Forward::Join { target, room } => Body::SocketsJoin {
                opts: opts(target, false),
                rooms: vec![room.to_owned()],
            },
            Forward::Leave { target, room } => Body::SocketsLeave {
                opts: opts(target, false),
                rooms: vec![room.to_owned()],
            },
            Forward::Disconnect { target, close } => Body::DisconnectSockets {
                opts: opts(target, false),
                close,
            },
        };
        let message = Message {
            uid: self.cluster.uid.clone(),
            nsp: self.nsp.clone(),
            body,
        };
        if ordered {
            self.cluster.publish_ordered(message)
        } else {
            self.cluster.publish(message);
            false
        }
    }
}
