//! One client's Socket.IO session as its transport task drives it
//! ([`SocketIoMachine`], the protocol's `ServerSession` plus this server's
//! sockets, handlers and pending acks), and how [`Io`] opens one per client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::session::{
    CloseReason, EngineConfig, EngineSession, Probe, ProtocolError, ServerEvent, ServerSession,
    Transport,
};
use protocol::{Frame, Time};
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::{debug, info};

use super::handler::{AckError, AckReply, AckResponse, ConnectRequest, Handler, IncomingEvent};
use super::socket::{AckRequest, Connection, FetchedSession, Outbound, Socket, SocketParts};
use super::{Admission, Io, Observed, Offset};
use crate::engine::{DisconnectReason, Factory, Handshake, Link, LinkReceiver, Machine};
use crate::metrics::Traffic;

/// How long a CONNECT waits for this server's cluster reader to reach the
/// offset its client brings from another server.
const CATCH_UP: Duration = Duration::from_secs(2);

impl Factory for Io {
    type Machine = SocketIoMachine;

    fn open(
        &self,
        sid: String,
        transport: Transport,
        mut handshake: Handshake,
    ) -> (SocketIoMachine, LinkReceiver<Outbound>) {
        handshake.sid.clone_from(&sid);
        let (conn, rx) = Link::new(self.settings.outbound_queue);
        if transport == Transport::WebSocket {
            conn.set_websocket();
        }
        let session =
            ServerSession::new(sid, self.settings.protocol.clone(), transport, self.now());
        let io = self
            .me
            .upgrade()
            .expect("an Io only opens sessions from the routes, which hold it");
        let metrics = crate::metrics::metrics();
        metrics.connections_opened.inc();
        metrics.connection(transport_label(transport == Transport::WebSocket), 1);
        let machine = SocketIoMachine {
            traffic: Traffic::default(),
            io,
            conn,
            handshake: Arc::new(handshake),
            sockets: HashMap::new(),
            fetching: Vec::new(),
            acks: HashMap::new(),
            closing: None,
            connect_answered: false,
            session,
        };
        (machine, rx)
    }

    fn now(&self) -> Time {
        self.epoch.elapsed()
    }

    fn instant(&self, time: Time) -> tokio::time::Instant {
        self.epoch + time
    }

    fn engine_config(&self) -> EngineConfig {
        self.settings.engine_config()
    }

    fn outbound_limit(&self) -> usize {
        self.settings.outbound_queue
    }
}

/// One client's Socket.IO session: the protocol's `ServerSession` and this
/// server's sockets, handlers and pending acks for it.
pub struct SocketIoMachine {
    io: Arc<Io>,
    conn: Arc<Connection>,
    handshake: Arc<Handshake>,
    /// This connection's sockets, one per joined namespace, with their handler.
    sockets: HashMap<String, (Socket, Arc<dyn Handler>)>,
    /// Namespaces whose CONNECT waits for its session from the cluster (a
    /// Vec: nearly always empty, and smaller than a set per connection).
    fetching: Vec<String>,
    /// Engine.IO packets and bytes not yet added to the metrics.
    traffic: Traffic,
    /// Our emits waiting for the client's ack.
    acks: HashMap<u64, (Duration, oneshot::Sender<Result<AckResponse, AckError>>)>,
    /// Set when the server itself decided to close (shutdown, slow client, kick).
    closing: Option<DisconnectReason>,
    /// A CONNECT was just accepted; the reply has not been written yet.
    connect_answered: bool,
    session: ServerSession,
}

impl SocketIoMachine {
    fn on_connect(&mut self, nsp: String, auth: Option<Value>) {
        let sid = &self.handshake.sid;
        if self.fetching.contains(&nsp) {
            // The first CONNECT is still being answered.
            debug!(%sid, %nsp, "a second CONNECT while the first waits for its session: ignored");
            return;
        }
        let Some(handler) = self.io.handler(&nsp) else {
            info!(%sid, %nsp, "connect refused: invalid namespace");
            self.session.reject_connect(&nsp, "Invalid namespace");
            return;
        };
        let auth = auth.unwrap_or_else(|| serde_json::json!({}));
        let request = ConnectRequest {
            nsp: &nsp,
            auth: &auth,
            handshake: &self.handshake,
        };
        if let Err(message) = handler.authorize(&request) {
            info!(%sid, %nsp, %message, "connect refused by middleware");
            self.session.reject_connect(&nsp, &message);
            return;
        }
        // Recovery credentials travel in the auth object (`pid`, `offset`), as the
        // Socket.IO client sends them; the application sees the rest.
        let mut auth = auth;
        // A client that got no event since it connected has a pid and no
        // offset: it resumes from where its socket joined.
        let recover = match auth.as_object_mut() {
            Some(map) => match (map.remove("pid"), map.remove("offset")) {
                (Some(Value::String(pid)), Some(Value::String(offset))) => {
                    Some((pid, Some(offset)))
                }
                (Some(Value::String(pid)), None | Some(Value::Null)) => Some((pid, None)),
                _ => None,
            },
            None => None,
        };
        let parts = SocketParts {
            id: crate::sid::generate(),
            nsp: nsp.clone(),
            auth,
            pid: None,
            recovered: false,
            base_offset: super::adapter::Offset::default(),
            data: Value::Null,
            handshake: self.handshake.clone(),
        };
        // The CONNECT answer must precede the replayed packets. Joining queues the
        // replay on the link, which the task reads only after this dispatch; the
        // answer is written to the session now, so it goes first either way.
        match self.io.join_namespace(parts, recover, &self.conn) {
            Admission::Joined(socket) => self.connected(nsp, socket, handler),
            // Only namespaces with a handler are served; checked above.
            Admission::Refused => self.session.reject_connect(&nsp, "Invalid namespace"),
            Admission::Fetch { parts, pid, offset } => {
                self.fetching.push(nsp);
                self.fetch_session(*parts, pid, offset);
            }
        }
    }

    /// Looks session `pid` up in the cluster, then comes back to this
    /// connection with it ([`Outbound::Admit`]). The client waits for its
    /// CONNECT answer meanwhile. If the cluster's reader here is behind the
    /// offset the client brings (it comes from a server that read further), it
    /// waits for it a moment, so that nothing after that offset is missed.
    fn fetch_session(&self, parts: SocketParts, pid: String, offset: Option<String>) {
        let (io, conn) = (self.io.clone(), self.conn.clone());
        tokio::spawn(async move {
            let cluster = io.cluster().cloned();
            let mut session = match &cluster {
                Some(cluster) => cluster.clone().take_session(&parts.nsp, &pid).await,
                None => None,
            };
            if let (Some(_), Some(offset)) = (&session, &offset) {
                let deadline = tokio::time::Instant::now() + CATCH_UP;
                while !io.has_reached(&parts.nsp, offset) && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            // An offset from before this server's log began (it started after
            // the client's last event): what lies between comes from the
            // cluster's record, or the session cannot be recovered.
            let mut replayed = None;
            if let (Some(found), Some(cluster)) = (&session, &cluster) {
                let from = match offset.as_deref() {
                    Some(text) => Offset::parse(text),
                    None => Some(found.base),
                };
                let floor = io.with_namespace(&parts.nsp, |ns| ns.floor());
                if let (Some(from), Some(floor)) = (from, floor)
                    && from < floor
                {
                    match cluster.clone().replay(&parts.nsp, from, floor, found).await {
                        Some(frames) => replayed = Some((floor, frames)),
                        None => session = None,
                    }
                }
            }
            let nsp = parts.nsp.clone();
            let kept = session.clone().map(|session| (pid.clone(), session));
            let sent = conn.send(Outbound::Admit(Box::new(FetchedSession {
                parts,
                pid,
                offset,
                session,
                replayed,
            })));
            if let (Err(_), Some((pid, session))) = (sent, kept) {
                // The connection went meanwhile: the session goes back where it
                // was, for the client's next attempt.
                let now = io.now();
                io.with_namespace(&nsp, |ns| ns.save(&pid, session, now));
            }
        });
    }

    /// Answers the CONNECT of `socket`, admitted to `nsp`.
    fn connected(&mut self, nsp: String, socket: Socket, handler: Arc<dyn Handler>) {
        let sid = &self.handshake.sid;
        let mut reply = serde_json::Map::new();
        reply.insert("sid".into(), Value::String(socket.id().to_owned()));
        if let Some(pid) = socket.pid() {
            reply.insert("pid".into(), Value::String(pid.to_owned()));
        }
        self.session.accept_connect_with(&nsp, Value::Object(reply));
        self.connect_answered = true;
        debug!(%sid, %nsp, socket = socket.id(), recovered = socket.recovered(), "namespace joined");
        crate::metrics::metrics().socket(&nsp, socket.transport(), 1);
        self.io.observe(Observed::Connected(&socket));
        handler.on_connect(&socket);
        self.sockets.insert(nsp, (socket, handler));
    }

    fn leave(&mut self, nsp: &str, reason: &DisconnectReason) {
        if let Some((socket, handler)) = self.sockets.remove(nsp) {
            // Its rooms, read before it leaves them, only for an observer: a
            // disconnect otherwise neither locks the namespace twice nor allocates.
            let rooms = self.io.is_observed().then(|| socket.rooms());
            self.io.leave_namespace(&socket, reason);
            crate::metrics::metrics().socket(nsp, socket.transport(), -1);
            if let Some(rooms) = rooms {
                self.io.observe(Observed::Disconnected {
                    socket: &socket,
                    reason,
                    rooms: &rooms,
                });
            }
            handler.on_disconnect(&socket, reason);
        }
    }

    /// The connection is on WebSocket now: its sockets move there.
    fn upgraded(&mut self) {
        self.conn.set_websocket();
        let metrics = crate::metrics::metrics();
        metrics.upgrades.inc();
        metrics.connection("polling", -1);
        metrics.connection("websocket", 1);
        for (nsp, (socket, _)) in &self.sockets {
            metrics.socket(nsp, "polling", -1);
            metrics.socket(nsp, "websocket", 1);
            self.io.observe(Observed::Upgraded(socket));
        }
    }
}

impl Drop for SocketIoMachine {
    fn drop(&mut self) {
        let metrics = crate::metrics::metrics();
        // What the last turn wrote.
        metrics.traffic(&mut self.traffic);
        metrics.connection(transport_label(self.conn.is_websocket()), -1);
    }
}

/// Removes `nsp` from `list`; whether it was there.
fn remove(list: &mut Vec<String>, nsp: &str) -> bool {
    let before = list.len();
    list.retain(|n| n != nsp);
    list.len() != before
}

fn transport_label(websocket: bool) -> &'static str {
    if websocket { "websocket" } else { "polling" }
}

impl Machine for SocketIoMachine {
    type Command = Outbound;

    fn engine(&self) -> &EngineSession {
        self.session.engine()
    }

    fn handle_frame(&mut self, frame: Frame, now: Time) -> Result<(), ProtocolError> {
        self.traffic.count_in(&frame);
        self.session.handle_frame(frame, now)
    }

    fn handle_probe_frame(&mut self, frame: Frame) -> Result<Probe, ProtocolError> {
        self.traffic.count_in(&frame);
        let probe = self.session.handle_probe_frame(frame);
        if let Ok(Probe::Upgraded) = probe {
            self.upgraded();
        }
        probe
    }

    fn probe_failed(&mut self) {
        self.session.probe_failed();
    }

    fn handle_timeout(&mut self, now: Time) {
        self.session.handle_timeout(now);
    }

    fn handle_command(&mut self, command: Outbound, now: Time) {
        match command {
            Outbound::Frame(frame) => self.session.send_frame(frame),
            Outbound::Frames(frames) => {
                for frame in frames {
                    self.session.send_frame(frame);
                }
            }
            Outbound::Shared(frames) => {
                for frame in frames.iter() {
                    self.session.send_frame(frame.clone());
                }
            }
            Outbound::EmitWithAck(request) => {
                let AckRequest {
                    nsp,
                    name,
                    args,
                    timeout,
                    reply,
                } = *request;
                let id = self
                    .session
                    .emit_with_ack(&nsp, &name, args, Vec::new(), timeout, now);
                self.acks.insert(id, (timeout, reply));
            }
            Outbound::DisconnectNamespace(nsp) => {
                self.session.disconnect_namespace(&nsp);
                self.leave(&nsp, &DisconnectReason::ServerDisconnect);
            }
            Outbound::Admit(fetched) => {
                let FetchedSession {
                    parts,
                    pid,
                    offset,
                    session,
                    replayed,
                } = *fetched;
                let nsp = parts.nsp.clone();
                if !remove(&mut self.fetching, &nsp) {
                    // The client left the namespace meanwhile.
                    return;
                }
                let admitted = self.io.handler(&nsp).and_then(|handler| {
                    let socket = self
                        .io
                        .admit_fetched(parts, pid, offset, session, replayed, &self.conn)?;
                    Some((socket, handler))
                });
                match admitted {
                    Some((socket, handler)) => self.connected(nsp, socket, handler),
                    None => self.session.reject_connect(&nsp, "Invalid namespace"),
                }
            }
        }
    }

    fn close(&mut self, reason: DisconnectReason) {
        self.closing.get_or_insert(reason);
        self.session.close();
    }

    fn transport_closed(&mut self, reason: CloseReason) {
        self.session.transport_closed(reason);
    }

    fn dispatch(&mut self) {
        // Once per turn of the connection's task: what it counted since.
        crate::metrics::metrics().traffic(&mut self.traffic);
        while let Some(event) = self.session.poll_event() {
            match event {
                ServerEvent::Connect { nsp, auth } => self.on_connect(nsp, auth),
                ServerEvent::Event {
                    nsp,
                    id,
                    name,
                    args,
                    attachments,
                } => {
                    crate::metrics::metrics().event_received(&nsp, &name);
                    if let Some((socket, handler)) = self.sockets.get(&nsp) {
                        self.io.observe(Observed::EventReceived {
                            socket,
                            name: &name,
                            args: &args,
                        });
                        let ack = id.map(|id| AckReply {
                            id,
                            nsp,
                            conn: self.conn.clone(),
                        });
                        handler.on_event(
                            socket,
                            IncomingEvent {
                                name,
                                args,
                                attachments,
                                ack,
                            },
                        );
                    }
                }
                ServerEvent::Ack {
                    id,
                    args,
                    attachments,
                    ..
                } => {
                    if let Some((_, reply)) = self.acks.remove(&id) {
                        crate::metrics::metrics().acks_received.inc();
                        // The caller may have stopped waiting; nothing to do then.
                        let _ = reply.send(Ok(AckResponse { args, attachments }));
                    }
                }
                ServerEvent::AckTimeout { id, .. } => {
                    if let Some((timeout, reply)) = self.acks.remove(&id) {
                        crate::metrics::metrics().ack_timeouts.inc();
                        let _ = reply.send(Err(AckError::Timeout(timeout)));
                    }
                }
                ServerEvent::Disconnect { nsp } => {
                    remove(&mut self.fetching, &nsp);
                    self.leave(&nsp, &DisconnectReason::ClientNamespaceDisconnect);
                }
                ServerEvent::Closed(reason) => {
                    let reason = self
                        .closing
                        .clone()
                        .unwrap_or_else(|| DisconnectReason::from(&reason));
                    let namespaces: Vec<String> = self.sockets.keys().cloned().collect();
                    for nsp in namespaces {
                        self.leave(&nsp, &reason);
                    }
                    crate::metrics::metrics().closed(&reason);
                    // Dropping the senders tells every waiting caller `Closed`.
                    self.acks.clear();
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.session.poll_timeout()
    }

    fn poll_transmit(&mut self) -> Option<Frame> {
        let frame = self.session.poll_transmit();
        if let Some(frame) = &frame {
            self.traffic.count_out(frame);
        }
        frame
    }

    fn take_connect_answered(&mut self) -> bool {
        std::mem::take(&mut self.connect_answered)
    }

    fn reason(&self) -> DisconnectReason {
        DisconnectReason::of(self.closing.as_ref(), self.session.close_reason())
    }
}
