//! Replaying from the stream itself: what a recovering client missed before
//! this server's own log begins (the server started after the client's last
//! event, as in a rolling restart behind a sticky balancer).

use redis::streams::StreamRangeReply;
use serde_json::Value;

use super::{RedisCluster, entry_fields, target};
use crate::cluster::wire::{Body, Message};
use crate::socketio::{Offset, Session, event_frames};
use protocol::{Args, Frame};

/// Entries read at once.
const PAGE: usize = 500;

impl RedisCluster {
    /// See [`Cluster::replay`](crate::socketio::Cluster::replay).
    pub(super) async fn read_range(
        &self,
        nsp: &str,
        after: Offset,
        until: Offset,
        session: &Session,
    ) -> Option<Vec<Frame>> {
        if after.ms == 0 {
            // Not a stream id.
            return None;
        }
        let stream = &self.options.stream;
        let after_id = after.to_string();
        // `after` must still be in the stream: else what followed it may have
        // been trimmed away, and the replay would have a gap.
        let mut check = redis::pipe();
        check
            .cmd("XRANGE")
            .arg(stream)
            .arg(&after_id)
            .arg(&after_id)
            .arg("COUNT")
            .arg(1);
        let (exists,): (StreamRangeReply,) = self.query(&check).await.ok()?;
        if exists.ids.is_empty() {
            return None;
        }
        let mut rooms = session.rooms.clone();
        rooms.insert(session.socket_id.clone());
        let mut frames = Vec::new();
        let mut from = after_id;
        loop {
            let mut page = redis::pipe();
            page.cmd("XRANGE")
                .arg(stream)
                .arg(format!("({from}"))
                .arg(until.to_string())
                .arg("COUNT")
                .arg(PAGE);
            let (entries,): (StreamRangeReply,) = self.query(&page).await.ok()?;
            let read = entries.ids.len();
            for entry in entries.ids {
                from.clone_from(&entry.id);
                let Ok(Some(Message {
                    nsp: entry_nsp,
                    body:
                        Body::Broadcast {
                            packet,
                            opts,
                            request_id: None,
                        },
                    ..
                })) = Message::from_entry(entry_fields(&entry))
                else {
                    continue;
                };
                // As live: volatile packets and those awaiting an ack carry no offset.
                if entry_nsp != nsp || opts.volatile() || packet.id.is_some() {
                    continue;
                }
                if !target(opts).matches(&session.socket_id, &rooms) {
                    continue;
                }
                let (Some(offset), mut data) = (Offset::parse(&entry.id), packet.data.into_iter())
                else {
                    continue;
                };
                let Some(Value::String(name)) = data.next() else {
                    continue;
                };
                let args: Args = data.collect::<Vec<_>>().into();
                frames.extend(
                    event_frames(nsp, &name, args, packet.attachments, Some(offset))
                        .iter()
                        .cloned(),
                );
            }
            if read < PAGE {
                return Some(frames);
            }
        }
    }
}
