//! The wire of Socket.IO's cluster adapters as `@socket.io/redis-streams-adapter`
//! 0.3 writes it (socket.io-adapter's `cluster-adapter.ts`), so that duplex
//! nodes and Node.js nodes on one Redis understand each other.
//!
//! A [`Message`] is `{uid, nsp, type, data}`. On the stream it is an entry with
//! the fields `uid`, `nsp`, `type` (a decimal string) and `data`: compact JSON,
//! or, when the data holds binary, the base64 of its msgpack encoding (a reader
//! tells them apart by a leading `{`) — [`Message::to_entry`],
//! [`Message::from_entry`]. On pub/sub it is the msgpack map of the whole
//! message, `type` an integer — [`Message::to_pubsub`], [`Message::from_pubsub`].
//!
//! Binary arguments travel as msgpack `bin` in place; here, as in the Socket.IO
//! packets of the rest of the server, they are placeholders
//! (`{"_placeholder":true,"num":n}`) in the arguments plus a list of
//! attachments, converted at this boundary.

use rmpv::Value as Mp;
use serde_json::{Map, Number, Value};
use thiserror::Error;

/// Why a cluster message could not be read.
#[derive(Debug, Error, PartialEq)]
pub enum WireError {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{0}` has the wrong type")]
    Type(&'static str),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid msgpack: {0}")]
    Msgpack(String),
    #[error("invalid base64 in `data`")]
    Base64,
    #[error("unknown message type {0}")]
    UnknownType(u64),
}

/// Which sockets an operation applies to: Socket.IO's `BroadcastOptions`
/// (`{rooms, except, flags}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Opts {
    /// Sockets in any of these rooms; all when empty.
    pub rooms: Vec<String>,
    /// Minus the sockets in any of these (a socket's own room names it).
    pub except: Vec<String>,
    /// `volatile`, `compress`, `timeout`, … as sent; kept to be sent on.
    pub flags: Map<String, Value>,
}

impl Opts {
    pub fn volatile(&self) -> bool {
        self.flags.get("volatile").and_then(Value::as_bool) == Some(true)
    }
}

/// An event for the clients, as the cluster carries it: the Socket.IO EVENT
/// packet's `data` (name first) and `id` when the emit wants an ack.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPacket {
    /// The event name and its arguments, binary ones as placeholders.
    pub data: Vec<Value>,
    pub attachments: Vec<Vec<u8>>,
    /// The ack id, for an emit to one socket with an ack under recovery.
    pub id: Option<u64>,
}

/// What a cluster message says; the number is its `type` on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// 3: emit to the matching sockets; with `request_id`, each must ack.
    Broadcast {
        packet: EventPacket,
        opts: Opts,
        request_id: Option<String>,
    },
    /// 4: the matching sockets join `rooms`.
    SocketsJoin { opts: Opts, rooms: Vec<String> },
    /// 5: the matching sockets leave `rooms`.
    SocketsLeave { opts: Opts, rooms: Vec<String> },
    /// 6: the matching sockets are disconnected (`close`: their whole connection).
    DisconnectSockets { opts: Opts, close: bool },
    /// 7: which sockets match.
    FetchSockets { opts: Opts, request_id: String },
    /// 8: the answer: `[{id, handshake, rooms, data}]`.
    FetchSocketsResponse {
        request_id: String,
        sockets: Vec<Value>,
    },
    /// 9: an event for the other servers (`io.serverSideEmit`).
    ServerSideEmit {
        packet: Vec<Value>,
        request_id: Option<String>,
    },
    /// 10: a server's ack of a server-side emit (its first argument).
    ServerSideEmitResponse { request_id: String, packet: Value },
    /// 11: how many of a server's clients a broadcast with acks reached.
    BroadcastClientCount {
        request_id: String,
        client_count: u64,
    },
    /// 12: one client's ack of a broadcast (its first argument).
    BroadcastAck { request_id: String, packet: Value },
}

impl Body {
    pub fn kind(&self) -> u64 {
        match self {
            Body::Broadcast { .. } => 3,
            Body::SocketsJoin { .. } => 4,
            Body::SocketsLeave { .. } => 5,
            Body::DisconnectSockets { .. } => 6,
            Body::FetchSockets { .. } => 7,
            Body::FetchSocketsResponse { .. } => 8,
            Body::ServerSideEmit { .. } => 9,
            Body::ServerSideEmitResponse { .. } => 10,
            Body::BroadcastClientCount { .. } => 11,
            Body::BroadcastAck { .. } => 12,
        }
    }

    /// Whether it goes over pub/sub rather than the stream, as the Node
    /// adapter decides (requests and their responses are not kept).
    pub fn is_ephemeral(&self) -> bool {
        match self {
            Body::Broadcast { request_id, .. } => request_id.is_some(),
            Body::SocketsJoin { .. }
            | Body::SocketsLeave { .. }
            | Body::DisconnectSockets { .. } => false,
            _ => true,
        }
    }
}

/// A message between the servers of a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The sending server's id (the Redis Streams emitter's is `emitter`).
    pub uid: String,
    pub nsp: String,
    pub body: Body,
}

/// The message types of Socket.IO's cluster protocol that this reader skips:
/// heartbeats (1, 2) and `ADAPTER_CLOSE` (13), which the 0.3 adapter no longer
/// sends but older ones did.
pub fn is_ignored_type(kind: u64) -> bool {
    matches!(kind, 1 | 2 | 13)
}

impl Message {
    /// The stream entry's fields, in the order Node writes them.
    pub fn to_entry(&self) -> [(&'static str, String); 4] {
        let data = self.data();
        let data = if has_binary(&self.body) {
            let mut bytes = Vec::new();
            // Writing to a Vec cannot fail.
            let _ = rmpv::encode::write_value(&mut bytes, &to_mp(&data, &attachments(&self.body)));
            protocol::base64::encode(&bytes)
        } else {
            data.to_string()
        };
        [
            ("uid", self.uid.clone()),
            ("nsp", self.nsp.clone()),
            ("type", self.body.kind().to_string()),
            ("data", data),
        ]
    }

    /// Reads a stream entry's fields. `Ok(None)` for a type this reader skips.
    pub fn from_entry<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Option<Message>, WireError> {
        let (mut uid, mut nsp, mut kind, mut data) = (None, None, None, None);
        for (name, value) in fields {
            let text = || std::str::from_utf8(value).map_err(|_| WireError::Type("entry field"));
            match name {
                "uid" => uid = Some(text()?.to_owned()),
                "nsp" => nsp = Some(text()?.to_owned()),
                "type" => {
                    kind = Some(
                        text()?
                            .trim()
                            .parse::<u64>()
                            .map_err(|_| WireError::Type("type"))?,
                    )
                }
                "data" => data = Some(text()?.to_owned()),
                _ => {}
            }
        }
        let kind = kind.ok_or(WireError::Missing("type"))?;
        if is_ignored_type(kind) {
            return Ok(None);
        }
        let (data, attachments) = match data {
            Some(data) if data.starts_with('{') => (
                serde_json::from_str(&data).map_err(|e| WireError::Json(e.to_string()))?,
                Vec::new(),
            ),
            Some(data) => {
                let bytes = protocol::base64::decode(&data).map_err(|_| WireError::Base64)?;
                let value = rmpv::decode::read_value(&mut bytes.as_slice())
                    .map_err(|e| WireError::Msgpack(e.to_string()))?;
                from_mp(value)
            }
            None => (Value::Null, Vec::new()),
        };
        Ok(Some(Message {
            uid: uid.ok_or(WireError::Missing("uid"))?,
            nsp: nsp.ok_or(WireError::Missing("nsp"))?,
            body: body(kind, data, attachments)?,
        }))
    }

    /// The pub/sub payload: msgpack of `{type, data, uid, nsp}`.
    pub fn to_pubsub(&self) -> Vec<u8> {
        let data = to_mp(&self.data(), &attachments(&self.body));
        let map = Mp::Map(vec![
            (Mp::from("type"), Mp::from(self.body.kind())),
            (Mp::from("data"), data),
            (Mp::from("uid"), Mp::from(self.uid.as_str())),
            (Mp::from("nsp"), Mp::from(self.nsp.as_str())),
        ]);
        let mut bytes = Vec::new();
        let _ = rmpv::encode::write_value(&mut bytes, &map);
        bytes
    }

    /// Reads a pub/sub payload. `Ok(None)` for a type this reader skips.
    pub fn from_pubsub(bytes: &[u8]) -> Result<Option<Message>, WireError> {
        let value = rmpv::decode::read_value(&mut &bytes[..])
            .map_err(|e| WireError::Msgpack(e.to_string()))?;
        let Mp::Map(entries) = value else {
            return Err(WireError::Type("message"));
        };
        let (mut uid, mut nsp, mut kind, mut data) = (None, None, None, None);
        for (key, value) in entries {
            match key.as_str() {
                Some("uid") => uid = value.as_str().map(str::to_owned),
                Some("nsp") => nsp = value.as_str().map(str::to_owned),
                Some("type") => kind = value.as_u64(),
                Some("data") => data = Some(value),
                _ => {}
            }
        }
        let kind = kind.ok_or(WireError::Missing("type"))?;
        if is_ignored_type(kind) {
            return Ok(None);
        }
        let (data, attachments) = data.map(from_mp).unwrap_or((Value::Null, Vec::new()));
        Ok(Some(Message {
            uid: uid.ok_or(WireError::Missing("uid"))?,
            nsp: nsp.ok_or(WireError::Missing("nsp"))?,
            body: body(kind, data, attachments)?,
        }))
    }

    /// `data` as JSON, binary as placeholders (key order as Node sends it).
    fn data(&self) -> Value {
        let mut map = Map::new();
        let mut put = |key: &str, value: Value| {
            map.insert(key.to_owned(), value);
        };
        match &self.body {
            Body::Broadcast {
                packet,
                opts,
                request_id,
            } => {
                let mut p = Map::new();
                p.insert("type".to_owned(), Value::from(2));
                p.insert("data".to_owned(), Value::Array(packet.data.clone()));
                if let Some(id) = packet.id {
                    p.insert("id".to_owned(), Value::from(id));
                }
                put("packet", Value::Object(p));
                if let Some(id) = request_id {
                    put("requestId", Value::from(id.as_str()));
                }
                put("opts", opts_json(opts));
            }
            Body::SocketsJoin { opts, rooms } | Body::SocketsLeave { opts, rooms } => {
                put("opts", opts_json(opts));
                put("rooms", Value::from(rooms.clone()));
            }
            Body::DisconnectSockets { opts, close } => {
                put("opts", opts_json(opts));
                put("close", Value::Bool(*close));
            }
            Body::FetchSockets { opts, request_id } => {
                put("opts", opts_json(opts));
                put("requestId", Value::from(request_id.as_str()));
            }
            Body::FetchSocketsResponse {
                request_id,
                sockets,
            } => {
                put("requestId", Value::from(request_id.as_str()));
                put("sockets", Value::Array(sockets.clone()));
            }
            Body::ServerSideEmit { packet, request_id } => {
                if let Some(id) = request_id {
                    put("requestId", Value::from(id.as_str()));
                }
                put("packet", Value::Array(packet.clone()));
            }
            Body::ServerSideEmitResponse { request_id, packet }
            | Body::BroadcastAck { request_id, packet } => {
                put("requestId", Value::from(request_id.as_str()));
                put("packet", packet.clone());
            }
            Body::BroadcastClientCount {
                request_id,
                client_count,
            } => {
                put("requestId", Value::from(request_id.as_str()));
                put("clientCount", Value::from(*client_count));
            }
        }
        Value::Object(map)
    }
}

fn attachments(body: &Body) -> Vec<Vec<u8>> {
    match body {
        Body::Broadcast { packet, .. } => packet.attachments.clone(),
        _ => Vec::new(),
    }
}

fn has_binary(body: &Body) -> bool {
    matches!(body, Body::Broadcast { packet, .. } if !packet.attachments.is_empty())
}

fn opts_json(opts: &Opts) -> Value {
    let mut map = Map::new();
    map.insert("rooms".to_owned(), Value::from(opts.rooms.clone()));
    map.insert("except".to_owned(), Value::from(opts.except.clone()));
    map.insert("flags".to_owned(), Value::Object(opts.flags.clone()));
    Value::Object(map)
}

fn field<'a>(data: &'a Value, name: &'static str) -> Result<&'a Value, WireError> {
    data.get(name).ok_or(WireError::Missing(name))
}

fn string(data: &Value, name: &'static str) -> Result<String, WireError> {
    field(data, name)?
        .as_str()
        .map(str::to_owned)
        .ok_or(WireError::Type(name))
}

fn strings(value: &Value, name: &'static str) -> Result<Vec<String>, WireError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(WireError::Type(name)))
            .collect(),
        _ => Err(WireError::Type(name)),
    }
}

fn opts(data: &Value) -> Result<Opts, WireError> {
    let opts = field(data, "opts")?;
    Ok(Opts {
        rooms: strings(opts.get("rooms").unwrap_or(&Value::Null), "opts.rooms")?,
        except: strings(opts.get("except").unwrap_or(&Value::Null), "opts.except")?,
        flags: match opts.get("flags") {
            Some(Value::Object(flags)) => flags.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(WireError::Type("opts.flags")),
        },
    })
}

fn request_id(data: &Value) -> Result<Option<String>, WireError> {
    match data.get("requestId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => Ok(Some(id.clone())),
        Some(_) => Err(WireError::Type("requestId")),
    }
}

fn body(kind: u64, data: Value, attachments: Vec<Vec<u8>>) -> Result<Body, WireError> {
    Ok(match kind {
        3 => {
            let packet = field(&data, "packet")?;
            let events = match packet.get("data") {
                Some(Value::Array(items)) if items.first().is_some_and(Value::is_string) => {
                    items.clone()
                }
                _ => return Err(WireError::Type("packet.data")),
            };
            Body::Broadcast {
                packet: EventPacket {
                    data: events,
                    attachments,
                    id: packet.get("id").and_then(Value::as_u64),
                },
                opts: opts(&data)?,
                request_id: request_id(&data)?,
            }
        }
        4 | 5 => {
            let rooms = strings(field(&data, "rooms")?, "rooms")?;
            let opts = opts(&data)?;
            if kind == 4 {
                Body::SocketsJoin { opts, rooms }
            } else {
                Body::SocketsLeave { opts, rooms }
            }
        }
        6 => Body::DisconnectSockets {
            opts: opts(&data)?,
            close: data.get("close").and_then(Value::as_bool).unwrap_or(false),
        },
        7 => Body::FetchSockets {
            opts: opts(&data)?,
            request_id: string(&data, "requestId")?,
        },
        8 => Body::FetchSocketsResponse {
            request_id: string(&data, "requestId")?,
            sockets: match field(&data, "sockets")? {
                Value::Array(sockets) => sockets.clone(),
                _ => return Err(WireError::Type("sockets")),
            },
        },
        9 => Body::ServerSideEmit {
            packet: match field(&data, "packet")? {
                Value::Array(items) if items.first().is_some_and(Value::is_string) => items.clone(),
                _ => return Err(WireError::Type("packet")),
            },
            request_id: request_id(&data)?,
        },
        10 | 12 => {
            let request_id = string(&data, "requestId")?;
            let packet = data.get("packet").cloned().unwrap_or(Value::Null);
            if kind == 10 {
                Body::ServerSideEmitResponse { request_id, packet }
            } else {
                Body::BroadcastAck { request_id, packet }
            }
        }
        11 => Body::BroadcastClientCount {
            request_id: string(&data, "requestId")?,
            client_count: field(&data, "clientCount")?
                .as_u64()
                .ok_or(WireError::Type("clientCount"))?,
        },
        other => return Err(WireError::UnknownType(other)),
    })
}

/// A departed socket's session as the adapter keeps it under
/// `sio:session:<pid>`: `{sid, pid, rooms, data}` (its rooms with its own id
/// among them), msgpack then base64. duplex adds `base`, the offset its client
/// resumes from if it got no event since it joined; Node ignores it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    pub sid: String,
    pub pid: String,
    pub rooms: Vec<String>,
    pub data: Value,
    pub base: Option<String>,
}

impl StoredSession {
    /// The value stored: base64 of the msgpack map.
    pub fn encode(&self) -> String {
        let mut map = vec![
            (Mp::from("sid"), Mp::from(self.sid.as_str())),
            (Mp::from("pid"), Mp::from(self.pid.as_str())),
            (
                Mp::from("rooms"),
                Mp::Array(self.rooms.iter().map(|r| Mp::from(r.as_str())).collect()),
            ),
            (Mp::from("data"), to_mp(&self.data, &[])),
        ];
        if let Some(base) = &self.base {
            map.push((Mp::from("base"), Mp::from(base.as_str())));
        }
        let mut bytes = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut bytes, &Mp::Map(map));
        protocol::base64::encode(&bytes)
    }

    /// Reads a stored value (written by duplex or by Node).
    pub fn decode(text: &str) -> Result<StoredSession, WireError> {
        let bytes = protocol::base64::decode(text).map_err(|_| WireError::Base64)?;
        let value = rmpv::decode::read_value(&mut bytes.as_slice())
            .map_err(|e| WireError::Msgpack(e.to_string()))?;
        let (value, _) = from_mp(value);
        Ok(StoredSession {
            sid: string(&value, "sid")?,
            pid: string(&value, "pid")?,
            rooms: strings(field(&value, "rooms")?, "rooms")?,
            data: value.get("data").cloned().unwrap_or(Value::Null),
            base: value.get("base").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

/// JSON (binary as placeholders into `attachments`) → msgpack (binary in place).
fn to_mp(value: &Value, attachments: &[Vec<u8>]) -> Mp {
    match value {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Mp::from(u)
            } else if let Some(i) = n.as_i64() {
                Mp::from(i)
            } else {
                Mp::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => Mp::from(s.as_str()),
        Value::Array(items) => Mp::Array(items.iter().map(|v| to_mp(v, attachments)).collect()),
        Value::Object(map) => {
            if let Some(bytes) =
                protocol::socketio::placeholder_num(value).and_then(|num| attachments.get(num))
            {
                return Mp::Binary(bytes.clone());
            }
            Mp::Map(
                map.iter()
                    .map(|(k, v)| (Mp::from(k.as_str()), to_mp(v, attachments)))
                    .collect(),
            )
        }
    }
}

/// msgpack → JSON, each `bin` replaced by a placeholder and collected in order.
fn from_mp(value: Mp) -> (Value, Vec<Vec<u8>>) {
    let mut attachments = Vec::new();
    let json = from_mp_into(value, &mut attachments);
    (json, attachments)
}

fn from_mp_into(value: Mp, attachments: &mut Vec<Vec<u8>>) -> Value {
    match value {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(b),
        Mp::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            _ => Value::Null,
        },
        Mp::F32(f) => Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number),
        Mp::F64(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Mp::String(s) => Value::String(s.into_str().unwrap_or_default()),
        Mp::Binary(bytes) => {
            attachments.push(bytes);
            protocol::socketio::placeholder(attachments.len() - 1)
        }
        Mp::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| from_mp_into(v, attachments))
                .collect(),
        ),
        Mp::Map(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Mp::String(s) => s.into_str().unwrap_or_default(),
                        other => other.to_string(),
                    };
                    (key, from_mp_into(v, attachments))
                })
                .collect(),
        ),
        // A Date (@msgpack/msgpack's timestamp extension) becomes what
        // JSON.stringify makes of a Date: its ISO 8601 text.
        Mp::Ext(-1, bytes) => timestamp(&bytes).map_or(Value::Null, Value::String),
        Mp::Ext(..) => Value::Null,
    }
}

/// The msgpack timestamp extension (4, 8 or 12 bytes) as ISO 8601 UTC with
/// milliseconds, as JavaScript's `Date.prototype.toISOString` writes it.
fn timestamp(bytes: &[u8]) -> Option<String> {
    let (secs, nanos): (i64, u32) = match bytes.len() {
        4 => (i64::from(u32::from_be_bytes(bytes.try_into().ok()?)), 0),
        8 => {
            let n = u64::from_be_bytes(bytes.try_into().ok()?);
            ((n & 0x3_ffff_ffff) as i64, (n >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(bytes[4..].try_into().ok()?),
            u32::from_be_bytes(bytes[..4].try_into().ok()?),
        ),
        _ => return None,
    };
    Some(crate::date::iso8601(secs, nanos / 1_000_000))
}

#[cfg(test)]
mod tests;
