//! The stream: the writer task that publishes the outbox in order, and the
//! reader task that applies what the other servers wrote.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    BACKOFF, BATCH, COMMAND_TIMEOUT, Outgoing, RedisCluster, entry_fields, pause, retry_after,
    server_side_emit, target,
};
use crate::cluster::wire::{Body, Message};
use crate::socketio::{Broadcast, Io, Offset};
use protocol::Args;

impl RedisCluster {
    /// Writes the outbox to Redis in order, reconnecting as needed.
    pub(super) async fn write(
        self: Arc<Self>,
        mut outbox: mpsc::Receiver<Outgoing>,
        io: Weak<Io>,
        shutdown: CancellationToken,
    ) {
        let mut connection = None;
        let mut delay = BACKOFF.0;
        // Taken from the outbox, not written yet (in order).
        let mut pending = VecDeque::new();
        loop {
            // Connected first (readiness tells), then waiting for messages.
            let conn = match &mut connection {
                Some(conn) => conn,
                None => match self.connect(Some(COMMAND_TIMEOUT)).await {
                    Ok(conn) => {
                        info!("connected to Redis (writer)");
                        self.writer_up.store(true, Ordering::Relaxed);
                        delay = BACKOFF.0;
                        connection.insert(conn)
                    }
                    Err(error) => {
                        self.hold_while_down(&mut outbox, &mut pending, &io);
                        let what = "writer; messages wait in the outbox";
                        if !retry_after(&error, what, &self.writer_up, &mut delay, &shutdown).await
                        {
                            return;
                        }
                        continue;
                    }
                },
            };
            if pending.is_empty() {
                tokio::select! {
                    message = outbox.recv() => match message {
                        Some(message) => pending.push_back(message),
                        None => return,
                    },
                    () = shutdown.cancelled() => return,
                }
            }
            while pending.len() < BATCH {
                match outbox.try_recv() {
                    Ok(message) => pending.push_back(message),
                    Err(_) => break,
                }
            }
            let batch: Vec<Outgoing> = pending.drain(..pending.len().min(BATCH)).collect();
            let mut pipe = redis::pipe();
            for outgoing in &batch {
                self.add_to(&mut pipe, outgoing);
            }
            if let Err(error) = pipe.query_async::<()>(conn).await {
                self.lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
                warn!(%error, lost = batch.len(), "writing to Redis failed; reconnecting");
                self.writer_up.store(false, Ordering::Relaxed);
                connection = None;
                // This server's ordered broadcasts in the pipeline may never
                // come back from the stream: its own sockets get them now
                // (without offset), and they are skipped if they do.
                if let Some(io) = io.upgrade() {
                    for outgoing in &batch {
                        self.deliver_here(&io, outgoing);
                    }
                }
                self.hold_while_down(&mut outbox, &mut pending, &io);
            }
        }
    }

    /// While Redis is away: the ordered broadcasts queued before that was
    /// known reach this server's sockets now, rather than when Redis is back
    /// (they are written then, and skipped here when read). They are taken
    /// from the outbox into `pending`, up to the outbox's bound; what does not
    /// fit stays in the outbox.
    fn hold_while_down(
        &self,
        outbox: &mut mpsc::Receiver<Outgoing>,
        pending: &mut VecDeque<Outgoing>,
        io: &Weak<Io>,
    ) {
        let Some(io) = io.upgrade() else {
            return;
        };
        for outgoing in pending.iter() {
            self.deliver_here(&io, outgoing);
        }
        while pending.len() < self.options.outbox {
            let Ok(outgoing) = outbox.try_recv() else {
                break;
            };
            self.deliver_here(&io, &outgoing);
            pending.push_back(outgoing);
        }
    }

    /// Adds `outgoing`'s command to `pipe`.
    fn add_to(&self, pipe: &mut redis::Pipeline, outgoing: &Outgoing) {
        match outgoing {
            Outgoing::Message {
                message,
                to: Some(channel),
                ..
            } => {
                pipe.publish(channel, message.to_pubsub()).ignore();
            }
            Outgoing::Message { message, mid, .. } if !message.body.is_ephemeral() => {
                let fields = message.to_entry();
                let command = pipe
                    .cmd("XADD")
                    .arg(&self.options.stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.options.max_len)
                    .arg("*")
                    .arg(&fields[..]);
                if let Some(mid) = mid {
                    command.arg(MID).arg(mid);
                }
                command.ignore();
            }
            Outgoing::Message { message, .. } => {
                pipe.publish(format!("socket.io#{}#", message.nsp), message.to_pubsub())
                    .ignore();
            }
            Outgoing::Session { key, value, ttl } => {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
                    .ignore();
            }
        }
    }

    /// An ordered broadcast of this server's that may not come back from the
    /// stream soon (or ever): delivered to this server's sockets now, without
    /// offset, unless it was already; skipped when read.
    fn deliver_here(&self, io: &Arc<Io>, outgoing: &Outgoing) {
        let Outgoing::Message {
            message,
            mid: Some(mid),
            ..
        } = outgoing
        else {
            return;
        };
        if !self.skip_mid(*mid) {
            // Delivered already (when emitted, Redis being away then).
            return;
        }
        if let Body::Broadcast { packet, opts, .. } = &message.body {
            let mut data = packet.data.iter().cloned();
            if let Some(Value::String(name)) = data.next() {
                let args: Args = data.collect::<Vec<_>>().into();
                io.emit_to(
                    &message.nsp,
                    &target(opts.clone()),
                    &name,
                    args,
                    packet.attachments.clone(),
                    false,
                    true,
                );
            }
        }
    }

    /// Reads the stream and does here what the other servers did.
    pub(super) async fn read(self: Arc<Self>, io: Weak<Io>, shutdown: CancellationToken) {
        // Where to read from: the stream's end when this server joined, then
        // after each entry read; kept across reconnections.
        let mut last: Option<String> = None;
        let mut delay = BACKOFF.0;
        let block = self.options.block;
        let read_options = StreamReadOptions::default()
            .count(self.options.read_count)
            .block(block.as_millis().try_into().unwrap_or(usize::MAX));
        loop {
            let mut conn = match self.connect(Some(block + COMMAND_TIMEOUT)).await {
                Ok(conn) => conn,
                Err(error) => {
                    let what = "reader; retrying";
                    if !retry_after(&error, what, &self.reader_up, &mut delay, &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            if last.is_none() {
                match self.stream_end(&mut conn).await {
                    Ok(end) => {
                        // What was written before cannot be replayed from here.
                        if let (Some(io), Some(offset)) = (io.upgrade(), Offset::parse(&end)) {
                            io.missing_up_to(offset);
                        }
                        last = Some(end);
                    }
                    Err(error) => {
                        warn!(%error, "reading the stream's end failed; retrying");
                        if !pause(&mut delay, &shutdown).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            info!("connected to Redis (reader)");
            self.reader_up.store(true, Ordering::Relaxed);
            delay = BACKOFF.0;
            loop {
                let from = last.clone().unwrap_or_else(|| "0-0".to_owned());
                let stream = [self.options.stream.as_str()];
                let ids = [from.as_str()];
                let read = tokio::select! {
                    read = conn.xread_options::<_, _, Option<StreamReadReply>>(&stream, &ids, &read_options) => read,
                    () = shutdown.cancelled() => return,
                };
                match read {
                    Ok(reply) => {
                        let Some(io) = io.upgrade() else {
                            return;
                        };
                        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                            self.receive(&io, &entry);
                            last = Some(entry.id);
                        }
                    }
                    Err(error) => {
                        warn!(%error, "reading the Redis stream failed; reconnecting");
                        self.reader_up.store(false, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }

    /// The id of the stream's last entry, `0-0` when it has none.
    async fn stream_end(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<String> {
        let last: redis::streams::StreamRangeReply = conn
            .xrevrange_count(&self.options.stream, "+", "-", 1)
            .await?;
        Ok(last
            .ids
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |entry| entry.id))
    }

    fn receive(&self, io: &Arc<Io>, entry: &redis::streams::StreamId) {
        let fields: Vec<(&str, &[u8])> = entry_fields(entry).collect();
        match Message::from_entry(fields.iter().copied()) {
            Ok(Some(message)) if message.uid != self.uid => apply(io, &entry.id, message),
            Ok(Some(message)) => {
                // One of this server's: its ordered broadcasts are delivered
                // here now (unless they were already); the rest were done when
                // they happened.
                let mid = fields
                    .iter()
                    .find(|(name, _)| *name == MID)
                    .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse().ok());
                if let Some(mid) = mid
                    && !self.skipped(mid)
                {
                    apply(io, &entry.id, message);
                }
            }
            Ok(None) => {}
            Err(error) => {
                debug!(id = %entry.id, %error, "skipping a stream entry that is not a cluster message")
            }
        }
    }
}

/// The extra field of this server's ordered broadcasts (see
/// `RedisCluster::publish_ordered`).
const MID: &str = "mid";

/// Does on this server's sockets what another server did on its own (or what
/// this one left to the stream's order): entry `id`'s message.
fn apply(io: &Arc<Io>, id: &str, message: Message) {
    let nsp = message.nsp.as_str();
    match message.body {
        Body::Broadcast {
            packet,
            opts,
            request_id: None,
        } => {
            let mut data = packet.data.into_iter();
            let Some(Value::String(name)) = data.next() else {
                return;
            };
            let volatile = opts.volatile();
            let target = target(opts);
            let args: Args = data.collect::<Vec<_>>().into();
            match Offset::parse(id) {
                // Socket.IO's cluster adapter gives every broadcast but a
                // volatile one its entry id as offset.
                Some(offset) if !volatile && packet.id.is_none() => {
                    io.deliver_logged(nsp, offset, &target, &name, args, packet.attachments);
                }
                _ => {
                    io.emit_to(
                        nsp,
                        &target,
                        &name,
                        args,
                        packet.attachments,
                        volatile,
                        true,
                    );
                }
            }
        }
        Body::SocketsJoin { opts, rooms } => {
            let selection = Broadcast::targeted(io.clone(), nsp, target(opts), false).local();
            for room in rooms {
                selection.join(&room);
            }
        }
        Body::SocketsLeave { opts, rooms } => {
            let selection = Broadcast::targeted(io.clone(), nsp, target(opts), false).local();
            for room in rooms {
                selection.leave(&room);
            }
        }
        Body::DisconnectSockets { opts, close } => {
            let selection = Broadcast::targeted(io.clone(), nsp, target(opts), false).local();
            if close {
                selection.close();
            } else {
                selection.disconnect();
            }
        }
        // The Redis Streams emitter writes server-side emits to the stream.
        Body::ServerSideEmit {
            packet,
            request_id: None,
        } => server_side_emit(io, nsp, packet, None),
        other => debug!(kind = other.kind(), "not a stream message; skipped"),
    }
}
