//! A namespace's adapter in a cluster.

use std::sync::Arc;

use serde_json::Value;

use super::{RedisCluster, opts};
use crate::cluster::wire::{Body, EventPacket, Message};
use crate::socketio::{Adapter, Forward, InMemoryAdapter, Session, Target};
use protocol::{Frame, Time};

/// A namespace's adapter in a cluster: this server's sockets in memory, and
/// what the others must hear forwarded.
#[derive(Debug)]
pub(super) struct RedisAdapter {
    pub(super) local: InMemoryAdapter,
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
    fn del_all(&mut self, id: &str) -> std::collections::HashSet<String> {
        self.local.del_all(id)
    }
    fn socket_rooms(&self, id: &str) -> Option<&std::collections::HashSet<String>> {
        self.local.socket_rooms(id)
    }
    fn members(&self, room: &str) -> Option<&std::collections::HashSet<String>> {
        self.local.members(room)
    }
    fn rooms(&self) -> Vec<String> {
        self.local.rooms()
    }
    fn recovery_enabled(&self) -> bool {
        self.local.recovery_enabled()
    }
    fn next_offset(&mut self) -> Option<u64> {
        self.local.next_offset()
    }
    fn last_offset(&self) -> u64 {
        self.local.last_offset()
    }
    fn log(&mut self, offset: u64, target: Target, frames: Arc<[Frame]>, now: Time) {
        self.local.log(offset, target, frames, now);
    }
    fn persist_session(&mut self, pid: &str, session: Session, now: Time) {
        self.local.persist_session(pid, session, now);
    }
    fn persisted(&mut self, pid: &str, now: Time) -> Option<&Session> {
        self.local.persisted(pid, now)
    }
    fn restore_session(&mut self, pid: &str) -> Option<Session> {
        self.local.restore_session(pid)
    }
    fn missed(
        &self,
        offset: u64,
        id: &str,
        rooms: &std::collections::HashSet<String>,
    ) -> Option<Vec<Frame>> {
        self.local.missed(offset, id, rooms)
    }

    fn on_empty(&mut self, now: Time) {
        self.local.on_empty(now);
    }

    fn forward(&mut self, op: Forward<'_>) {
        let body = match op {
            Forward::Broadcast {
                target,
                name,
                args,
                attachments,
                volatile,
            } => {
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
        self.cluster.publish(Message {
            uid: self.cluster.uid.clone(),
            nsp: self.nsp.clone(),
            body,
        });
    }
}
