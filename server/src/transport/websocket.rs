//! The WebSocket transport: one task per connection, driving a `ServerSession`.
//!
//! The task owns the session and the socket. It waits on four things — a message
//! from the client, a request on the connection's bounded outbound queue, the
//! session's next timer, and the shutdown/kill tokens — feeds what happened to the
//! session, hands the session's events to the namespace handlers, and writes the
//! session's frames out. A client that stops reading cannot stall anyone else: its
//! queue fills, it is disconnected (see `io`), and a blocked write is abandoned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::Frame;
use protocol::session::{CloseReason, ProtocolError, ServerEvent, ServerSession};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use warp::ws::{Message, WebSocket};

use crate::io::{
    AckError, AckReply, AckResponse, ConnectRequest, Connection, DisconnectReason, Handler,
    Handshake, IncomingEvent, Io, Outbound, Socket,
};

/// How long the final frames (the close packet) may take to go out.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves one upgraded WebSocket until the session ends.
pub async fn serve(
    ws: WebSocket,
    io: Arc<Io>,
    mut handshake: Handshake,
    shutdown: CancellationToken,
) {
    let sid = crate::sid::generate();
    handshake.sid.clone_from(&sid);
    let settings = io.settings().clone();
    let (tx, rx) = mpsc::channel(settings.outbound_queue.max(1));
    let conn = Arc::new(Connection {
        tx,
        kill: CancellationToken::new(),
        kill_reason: Mutex::new(None),
    });
    let session = ServerSession::new(sid.clone(), settings.protocol.clone(), Vec::new(), io.now());
    info!(%sid, remote = ?handshake.remote, "websocket connected");
    let mut driver = Driver {
        io,
        conn,
        handshake: Arc::new(handshake),
        sockets: HashMap::new(),
        acks: HashMap::new(),
        closing: None,
        session,
    };
    driver.run(ws, rx, shutdown).await;
}

struct Driver {
    io: Arc<Io>,
    conn: Arc<Connection>,
    handshake: Arc<Handshake>,
    /// This connection's sockets, one per joined namespace, with their handler.
    sockets: HashMap<String, (Socket, Arc<dyn Handler>)>,
    /// Our emits waiting for the client's ack.
    acks: HashMap<u64, (Duration, oneshot::Sender<Result<AckResponse, AckError>>)>,
    /// Set when the server itself decided to close (shutdown, slow client, kick).
    closing: Option<DisconnectReason>,
    session: ServerSession,
}

impl Driver {
    async fn run(
        &mut self,
        ws: WebSocket,
        mut rx: mpsc::Receiver<Outbound>,
        shutdown: CancellationToken,
    ) {
        let (mut sink, mut stream) = ws.split();
        let kill = self.conn.kill.clone();
        loop {
            self.dispatch();
            if self.session.is_closed() {
                break;
            }
            let flushed = tokio::select! {
                r = flush(&mut sink, &mut self.session) => r,
                () = kill.cancelled() => Ok(()),
                () = shutdown.cancelled() => Ok(()),
            };
            if let Err(e) = flushed {
                self.session
                    .transport_closed(CloseReason::Transport(e.to_string()));
                continue;
            }
            let wake = self.session.poll_timeout().map(|t| self.io.instant(t));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => self.close_locally(DisconnectReason::ServerShutdown),
                () = kill.cancelled() => {
                    let reason = self
                        .conn
                        .kill_reason
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone()
                        .unwrap_or(DisconnectReason::ServerDisconnect);
                    self.close_locally(reason);
                }
                message = stream.next() => self.on_message(message),
                Some(out) = rx.recv() => self.on_outbound(out),
                () = sleep_until(wake) => self.session.handle_timeout(self.io.now()),
            }
        }
        self.dispatch();

        // Say goodbye: the remaining frames (the close packet), then a close frame
        // whose code and reason tell the client why — bounded in time, since a
        // client that stopped reading may never take them.
        let reason = self.reason();
        let (code, text) = close_code(&reason);
        let goodbye = async {
            flush(&mut sink, &mut self.session).await?;
            sink.send(Message::close_with(code, text)).await?;
            sink.close().await
        };
        if let Err(e) = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, goodbye)
            .await
            .unwrap_or(Ok(()))
        {
            debug!(sid = %self.handshake.sid, error = %e, "closing the websocket failed");
        }
        info!(sid = %self.handshake.sid, %reason, "websocket closed");
    }

    /// Why the connection ended, as the application sees it.
    fn reason(&self) -> DisconnectReason {
        self.closing.clone().unwrap_or_else(|| {
            self.session
                .close_reason()
                .map_or(DisconnectReason::ClientClosed, DisconnectReason::from)
        })
    }

    fn close_locally(&mut self, reason: DisconnectReason) {
        self.closing.get_or_insert(reason);
        self.session.close();
    }

    fn on_message(&mut self, message: Option<Result<Message, warp::Error>>) {
        let now = self.io.now();
        let frame = match message {
            Some(Ok(m)) if m.is_text() => match m.to_str() {
                Ok(text) => Frame::Text(text.to_owned()),
                Err(()) => Frame::Binary(m.into_bytes().to_vec()),
            },
            Some(Ok(m)) if m.is_binary() => Frame::Binary(m.into_bytes().to_vec()),
            Some(Ok(m)) if m.is_close() => {
                self.session.transport_closed(CloseReason::PeerClosed);
                return;
            }
            // WebSocket-level ping/pong frames are answered by the library.
            Some(Ok(_)) => return,
            Some(Err(e)) => {
                warn!(sid = %self.handshake.sid, error = %e, "websocket error");
                self.session
                    .transport_closed(CloseReason::Transport(e.to_string()));
                return;
            }
            None => {
                self.session
                    .transport_closed(CloseReason::Transport("connection lost".into()));
                return;
            }
        };
        if let Err(e) = self.session.handle_frame(frame, now) {
            warn!(sid = %self.handshake.sid, error = %e, "closing connection: invalid input");
        }
    }

    fn on_outbound(&mut self, out: Outbound) {
        match out {
            Outbound::Frame(frame) => self.session.send_frame(frame),
            Outbound::Packet(packet) => self.session.send(&packet),
            Outbound::EmitWithAck {
                packet,
                timeout,
                reply,
            } => {
                if let protocol::socketio::Packet::Event {
                    nsp,
                    name,
                    args,
                    attachments,
                    ..
                } = packet
                {
                    let id = self.session.emit_with_ack(
                        &nsp,
                        &name,
                        args,
                        attachments,
                        timeout,
                        self.io.now(),
                    );
                    self.acks.insert(id, (timeout, reply));
                }
            }
            Outbound::DisconnectNamespace(nsp) => {
                self.session.disconnect_namespace(&nsp);
                self.leave(&nsp, &DisconnectReason::ServerDisconnect);
            }
        }
    }

    /// Hands every pending session event to the application.
    fn dispatch(&mut self) {
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
                    if let Some((socket, handler)) = self.sockets.get(&nsp) {
                        let ack = id.map(|id| AckReply {
                            id,
                            nsp: nsp.clone(),
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
                        // The caller may have stopped waiting; nothing to do then.
                        let _ = reply.send(Ok(AckResponse { args, attachments }));
                    }
                }
                ServerEvent::AckTimeout { id, .. } => {
                    if let Some((timeout, reply)) = self.acks.remove(&id) {
                        let _ = reply.send(Err(AckError::Timeout(timeout)));
                    }
                }
                ServerEvent::Disconnect { nsp } => {
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
                    // Dropping the senders tells every waiting caller `Closed`.
                    self.acks.clear();
                }
            }
        }
    }

    fn on_connect(&mut self, nsp: String, auth: Option<Value>) {
        let sid = &self.handshake.sid;
        let Some(handler) = self.io.handler(&nsp) else {
            info!(%sid, %nsp, "connect refused: invalid namespace");
            self.session.reject_connect(&nsp, "Invalid namespace");
            return;
        };
        let auth = auth.unwrap_or_else(|| json!({}));
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
        let socket_id = crate::sid::generate();
        self.session.accept_connect(&nsp, &socket_id);
        let socket = Socket::new(
            socket_id,
            nsp.clone(),
            auth,
            self.handshake.clone(),
            self.conn.clone(),
            Arc::downgrade(&self.io),
        );
        debug!(%sid, %nsp, socket = socket.id(), "namespace joined");
        self.io.register(&socket);
        handler.on_connect(&socket);
        self.sockets.insert(nsp, (socket, handler));
    }

    fn leave(&mut self, nsp: &str, reason: &DisconnectReason) {
        if let Some((socket, handler)) = self.sockets.remove(nsp) {
            self.io.unregister(&socket);
            handler.on_disconnect(&socket, reason);
        }
    }
}

/// Writes every frame the session has for the client, then flushes.
async fn flush(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    session: &mut ServerSession,
) -> Result<(), warp::Error> {
    if session.pending_transmits() == 0 {
        return Ok(());
    }
    while let Some(frame) = session.poll_transmit() {
        let message = match frame {
            Frame::Text(text) => Message::text(text),
            Frame::Binary(bytes) => Message::binary(bytes),
        };
        sink.feed(message).await?;
    }
    sink.flush().await
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The WebSocket close code and reason for a disconnect (RFC 6455 §7.4.1).
fn close_code(reason: &DisconnectReason) -> (u16, String) {
    let code = match reason {
        DisconnectReason::MessageTooLarge(_) => 1009,
        DisconnectReason::Protocol(_) => 1002,
        DisconnectReason::SlowClient => 1008,
        DisconnectReason::ServerShutdown => 1001,
        _ => 1000,
    };
    // A close reason must fit in a control frame: 123 bytes.
    let mut text = reason.to_string();
    if text.len() > 123 {
        let mut end = 120;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    (code, text)
}

impl From<ProtocolError> for DisconnectReason {
    fn from(e: ProtocolError) -> Self {
        DisconnectReason::from(&CloseReason::Protocol(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_say_why() {
        assert_eq!(close_code(&DisconnectReason::ServerShutdown).0, 1001);
        assert_eq!(
            close_code(&DisconnectReason::MessageTooLarge("x".into())).0,
            1009
        );
        let (_, text) = close_code(&DisconnectReason::Protocol("é".repeat(100)));
        assert!(text.len() <= 123);
    }
}
