//! Socket.IO v5 packets, carried inside Engine.IO messages.
//!
//! Text form: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`, the
//! namespace written only when it is not `/`. A packet with binary attachments
//! (BINARY_EVENT `5`, BINARY_ACK `6`) replaces each one by
//! `{"_placeholder":true,"num":N}` in its JSON and is followed by N binary messages;
//! [`Decoder`] puts them back together.

use serde_json::Value;
use thiserror::Error;

use crate::args::Args;
#[cfg(feature = "text-args")]
use crate::args::{self, Shape};
use crate::engineio::Frame;

/// The namespace every client may connect to.
pub const MAIN_NAMESPACE: &str = "/";

/// Limits applied while decoding untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most binary attachments one packet may announce.
    pub max_attachments: usize,
    /// Longest namespace name, in bytes.
    pub max_namespace_len: usize,
    /// Deepest nesting of JSON arrays and objects accepted in a payload.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attachments: 10,
            max_namespace_len: 256,
            max_depth: 64,
        }
    }
}

/// A Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// `0`: a client asks to join a namespace (with an optional auth object), or the
    /// server accepts (`{"sid":...}`).
    Connect { nsp: String, data: Option<Value> },
    /// `1`: leave a namespace; the Engine.IO session stays open.
    Disconnect { nsp: String },
    /// `2`/`5`: an event, `name` then its arguments, maybe asking for an ack.
    Event {
        nsp: String,
        id: Option<u64>,
        name: String,
        args: Args,
        /// Binary attachments, referenced from `args` by placeholders.
        attachments: Vec<Vec<u8>>,
    },
    /// `3`/`6`: the reply to an event that asked for an ack.
    Ack {
        nsp: String,
        id: u64,
        args: Args,
        attachments: Vec<Vec<u8>>,
    },
    /// `4`: the server refuses a CONNECT: `{"message":"..."}`.
    ConnectError { nsp: String, data: Value },
}

/// Why a message is not a valid Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown socket.io packet type {0:?}")]
    UnknownType(char),
    #[error("invalid attachment count")]
    InvalidAttachments,
    #[error("{0} attachments announced, more than the limit of {1}")]
    TooManyAttachments(usize, usize),
    #[error("namespace longer than {0} bytes")]
    NamespaceTooLong(usize),
    #[error("ack id is not a valid number")]
    InvalidAckId,
    #[error("invalid JSON payload: {0}")]
    InvalidJson(String),
    #[error("{0} payload must be {1}")]
    InvalidPayload(&'static str, &'static str),
    #[error("binary attachment received while none was expected")]
    UnexpectedBinary,
    #[error("text packet received while {0} binary attachments were still expected")]
    ExpectedBinary(usize),
    #[error("placeholders do not match the {0} announced attachments")]
    PlaceholderMismatch(usize),
    #[error("JSON nested deeper than {0} levels")]
    TooDeep(usize),
}

impl Packet {
    /// The namespace the packet belongs to.
    pub fn nsp(&self) -> &str {
        match self {
            Packet::Connect { nsp, .. }
            | Packet::Disconnect { nsp }
            | Packet::Event { nsp, .. }
            | Packet::Ack { nsp, .. }
            | Packet::ConnectError { nsp, .. } => nsp,
        }
    }

    /// An event in namespace `nsp` without attachments.
    pub fn event(nsp: &str, name: &str, args: Vec<Value>) -> Packet {
        Packet::Event {
            nsp: nsp.to_owned(),
            id: None,
            name: name.to_owned(),
            args: args.into(),
            attachments: Vec::new(),
        }
    }

    /// Encodes the packet: the text of an Engine.IO message, then its binary
    /// attachments, each to be sent as a binary message in order.
    pub fn encode(&self) -> (String, &[Vec<u8>]) {
        let mut out = Vec::with_capacity(self.size_hint());
        let attachments = self.encode_into(&mut out);
        (into_string(out), attachments)
    }

    /// Encodes the packet straight into the Engine.IO message frame that carries
    /// it (`4` then the packet), then its binary attachments: one buffer, written
    /// once, what a server sends.
    pub fn encode_frame(&self) -> (Frame, &[Vec<u8>]) {
        let mut out = Vec::with_capacity(1 + self.size_hint());
        out.push(b'4');
        let attachments = self.encode_into(&mut out);
        (Frame::Text(into_string(out)), attachments)
    }

    /// A guess at the encoded length, to allocate once in the common case.
    fn size_hint(&self) -> usize {
        match self {
            Packet::Event { nsp, name, .. } => SIZE_HINT + nsp.len() + name.len(),
            Packet::Ack { nsp, .. } => SIZE_HINT + nsp.len(),
            _ => 32,
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> &[Vec<u8>] {
        match self {
            Packet::Connect { nsp, data } => {
                push_header(out, b'0', 0, nsp);
                if let Some(data) = data {
                    push_json(out, data);
                }
            }
            Packet::Disconnect { nsp } => push_header(out, b'1', 0, nsp),
            Packet::Event {
                nsp,
                id,
                name,
                args,
                attachments,
            } => {
                push_event(out, nsp, *id, name, args, attachments.len());
                return attachments;
            }
            Packet::Ack {
                nsp,
                id,
                args,
                attachments,
            } => {
                push_ack(out, nsp, *id, args, attachments.len());
                return attachments;
            }
            Packet::ConnectError { nsp, data } => {
                push_header(out, b'4', 0, nsp);
                push_json(out, data);
            }
        }
        &[]
    }

    /// Decodes a packet that has no binary attachments. Packets announcing
    /// attachments need a [`Decoder`].
    pub fn decode(text: &str, limits: &Limits) -> Result<Packet, DecodeError> {
        match decode_header(text, limits)? {
            (packet, 0) => Ok(packet),
            (_, n) => Err(DecodeError::ExpectedBinary(n)),
        }
    }
}

fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing JSON values and strings to memory cannot fail: no I/O, no non-string
    // map keys.
    serde_json::to_writer(out, value).expect("a JSON value always serializes");
}

fn push_number(out: &mut Vec<u8>, mut n: u64) {
    // Digits from the last, without the formatting machinery: this runs for
    // every ack.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// The encoder's buffer as text: everything it writes is UTF-8 (ASCII, the
/// namespace, and JSON from serde_json).
fn into_string(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("the encoder writes UTF-8 only")
}

/// What an event's or an ack's encoding needs beyond its namespace and name,
/// in the common case: the first guess of the buffer's size.
const SIZE_HINT: usize = 48;

/// The Engine.IO message frame of an EVENT (`2`, or `5` announcing
/// `attachments` binary messages to follow) from borrowed parts: the same text
/// as [`Packet::encode_frame`] of the equivalent packet, for a sender that keeps
/// its arguments (an echo that also acks with them) instead of building a
/// [`Packet`] from copies.
pub fn event_frame(
    nsp: &str,
    id: Option<u64>,
    name: &str,
    args: &Args,
    attachments: usize,
) -> Frame {
    let mut out = Vec::with_capacity(1 + SIZE_HINT + nsp.len() + name.len());
    out.push(b'4');
    push_event(&mut out, nsp, id, name, args, attachments);
    Frame::Text(into_string(out))
}

/// The Engine.IO message frame of an ACK (`3`, or `6` announcing `attachments`
/// binary messages) from borrowed parts, as [`event_frame`] for events.
pub fn ack_frame(nsp: &str, id: u64, args: &Args, attachments: usize) -> Frame {
    let mut out = Vec::with_capacity(1 + SIZE_HINT + nsp.len());
    out.push(b'4');
    push_ack(&mut out, nsp, id, args, attachments);
    Frame::Text(into_string(out))
}

/// Type, attachment count and namespace: what every packet starts with.
fn push_header(out: &mut Vec<u8>, kind: u8, attachments: usize, nsp: &str) {
    out.push(kind);
    if attachments > 0 {
        push_number(out, attachments as u64);
        out.push(b'-');
    }
    if nsp != MAIN_NAMESPACE && !nsp.is_empty() {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
}

/// An EVENT packet (BINARY_EVENT when it has attachments).
fn push_event(
    out: &mut Vec<u8>,
    nsp: &str,
    id: Option<u64>,
    name: &str,
    args: &Args,
    attachments: usize,
) {
    push_header(
        out,
        if attachments == 0 { b'2' } else { b'5' },
        attachments,
        nsp,
    );
    if let Some(id) = id {
        push_number(out, id);
    }
    out.push(b'[');
    push_json(out, name);
    if !args.is_empty() {
        out.push(b',');
        args.push_elements(out);
    }
    out.push(b']');
}

/// An ACK packet (BINARY_ACK when it has attachments).
fn push_ack(out: &mut Vec<u8>, nsp: &str, id: u64, args: &Args, attachments: usize) {
    push_header(
        out,
        if attachments == 0 { b'3' } else { b'6' },
        attachments,
        nsp,
    );
    push_number(out, id);
    out.push(b'[');
    args.push_elements(out);
    out.push(b']');
}

/// The placeholder standing for attachment `num` in a binary packet's JSON.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

/// If `value` is an attachment placeholder, its number.
pub fn placeholder_num(value: &Value) -> Option<usize> {
    let map = value.as_object()?;
    if map.get("_placeholder")?.as_bool()? {
        map.get("num")?
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
    } else {
        None
    }
}

fn count_placeholders(value: &Value, seen: &mut Vec<bool>) -> bool {
    if let Some(num) = placeholder_num(value) {
        return match seen.get_mut(num) {
            Some(slot) if !*slot => {
                *slot = true;
                true
            }
            _ => false,
        };
    }
    match value {
        Value::Array(items) => items.iter().all(|v| count_placeholders(v, seen)),
        Value::Object(map) => map.values().all(|v| count_placeholders(v, seen)),
        _ => true,
    }
}

/// Parses everything but the attachments; returns how many are announced.
fn decode_header(text: &str, limits: &Limits) -> Result<(Packet, usize), DecodeError> {
    let bytes = text.as_bytes();
    let kind = *bytes.first().ok_or(DecodeError::Empty)?;
    if !(b'0'..=b'6').contains(&kind) {
        let c = text.chars().next().unwrap_or_default();
        return Err(DecodeError::UnknownType(c));
    }
    let mut pos = 1;

    let mut attachments = 0usize;
    if kind == b'5' || kind == b'6' {
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == start || pos >= bytes.len() || bytes[pos] != b'-' || pos - start > 6 {
            return Err(DecodeError::InvalidAttachments);
        }
        attachments = text[start..pos]
            .parse()
            .map_err(|_| DecodeError::InvalidAttachments)?;
        if attachments > limits.max_attachments {
            return Err(DecodeError::TooManyAttachments(
                attachments,
                limits.max_attachments,
            ));
        }
        pos += 1;
    }

    let mut nsp = MAIN_NAMESPACE.to_owned();
    if bytes.get(pos) == Some(&b'/') {
        // The namespace runs to the next ',' or, as the reference parser reads
        // `40/admin`, to the end of the packet.
        let end = text[pos..].find(',').map_or(bytes.len(), |i| pos + i);
        if end - pos > limits.max_namespace_len {
            return Err(DecodeError::NamespaceTooLong(limits.max_namespace_len));
        }
        nsp = text[pos..end].to_owned();
        pos = (end + 1).min(bytes.len());
    }

    let id_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let id = if pos > id_start {
        // Socket.IO ack ids are non-negative integers; anything beyond u64 (or
        // past what JavaScript can represent exactly) is refused.
        let id: u64 = text[id_start..pos]
            .parse()
            .map_err(|_| DecodeError::InvalidAckId)?;
        if id > (1u64 << 53) {
            return Err(DecodeError::InvalidAckId);
        }
        Some(id)
    } else {
        None
    };

    let rest = &text[pos..];
    check_depth(rest, limits.max_depth)?;
    #[cfg(feature = "text-args")]
    if kind == b'2' || kind == b'3' {
        // Events and acks without attachments, the bulk of the traffic: the
        // arguments are validated and kept as text (see `Args`).
        return Ok((decode_args(kind, nsp, id, rest)?, 0));
    }
    let json = if rest.is_empty() {
        None
    } else {
        Some(
            serde_json::from_str::<Value>(rest)
                .map_err(|e| DecodeError::InvalidJson(e.to_string()))?,
        )
    };

    let packet = match kind {
        b'0' => {
            if id.is_some() {
                return Err(DecodeError::InvalidAckId);
            }
            match &json {
                None | Some(Value::Object(_)) => Packet::Connect { nsp, data: json },
                Some(_) => return Err(DecodeError::InvalidPayload("CONNECT", "an object")),
            }
        }
        b'1' => {
            if id.is_some() || json.is_some() {
                return Err(DecodeError::InvalidPayload("DISCONNECT", "empty"));
            }
            Packet::Disconnect { nsp }
        }
        b'2' | b'5' => {
            let Some(Value::Array(mut items)) = json else {
                return Err(DecodeError::InvalidPayload("EVENT", "a non-empty array"));
            };
            if items.is_empty() {
                return Err(DecodeError::InvalidPayload("EVENT", "a non-empty array"));
            }
            let Value::String(name) = items.remove(0) else {
                return Err(DecodeError::InvalidPayload("EVENT", NAMED));
            };
            Packet::Event {
                nsp,
                id,
                name,
                args: items.into(),
                attachments: Vec::new(),
            }
        }
        b'3' | b'6' => {
            let Some(id) = id else {
                return Err(DecodeError::InvalidAckId);
            };
            let Some(Value::Array(args)) = json else {
                return Err(DecodeError::InvalidPayload("ACK", "an array"));
            };
            Packet::Ack {
                nsp,
                id,
                args: args.into(),
                attachments: Vec::new(),
            }
        }
        b'4' => {
            if id.is_some() {
                return Err(DecodeError::InvalidAckId);
            }
            match json {
                Some(data @ (Value::Object(_) | Value::String(_))) => {
                    Packet::ConnectError { nsp, data }
                }
                _ => return Err(DecodeError::InvalidPayload("CONNECT_ERROR", "an object")),
            }
        }
        other => return Err(DecodeError::UnknownType(char::from(other))),
    };

    if attachments > 0 {
        let mut seen = vec![false; attachments];
        let args = match &packet {
            Packet::Event { args, .. } | Packet::Ack { args, .. } => args.values(),
            _ => unreachable!("only types 5 and 6 announce attachments"),
        };
        if !args.iter().all(|a| count_placeholders(a, &mut seen)) || seen.contains(&false) {
            return Err(DecodeError::PlaceholderMismatch(attachments));
        }
    }
    Ok((packet, attachments))
}

/// What an EVENT's JSON must be.
const NAMED: &str = "an array starting with the event name";

/// An EVENT (`2`) or an ACK (`3`) whose JSON is `rest`: validated exactly as
/// parsing it into values would, and kept as text.
#[cfg(feature = "text-args")]
fn decode_args(kind: u8, nsp: String, id: Option<u64>, rest: &str) -> Result<Packet, DecodeError> {
    let shape = if rest.is_empty() {
        Shape::Other
    } else {
        args::validate(rest).map_err(|e| DecodeError::InvalidJson(e.to_string()))?
    };
    if kind == b'2' {
        return match shape {
            Shape::Array {
                first: Some(Some(name)),
            } => Ok(Packet::Event {
                nsp,
                id,
                name,
                args: args::after_name(rest),
                attachments: Vec::new(),
            }),
            Shape::Array { first: Some(None) } => Err(DecodeError::InvalidPayload("EVENT", NAMED)),
            _ => Err(DecodeError::InvalidPayload("EVENT", "a non-empty array")),
        };
    }
    let Some(id) = id else {
        return Err(DecodeError::InvalidAckId);
    };
    match shape {
        Shape::Array { .. } => Ok(Packet::Ack {
            nsp,
            id,
            args: args::whole(rest),
            attachments: Vec::new(),
        }),
        _ => Err(DecodeError::InvalidPayload("ACK", "an array")),
    }
}

/// Refuses JSON nested deeper than `max`, in one pass over the bytes and before
/// any parsing, so hostile nesting costs neither stack nor allocations.
fn check_depth(json: &str, max: usize) -> Result<(), DecodeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(DecodeError::TooDeep(max));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Reassembles packets from Engine.IO messages: a binary packet's header, then its
/// attachments one binary message each.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    pending: Option<(Packet, usize)>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            pending: None,
        }
    }

    /// Whether a binary packet is waiting for attachments.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Feeds a text message. Returns a packet when one is complete.
    pub fn feed_text(&mut self, text: &str) -> Result<Option<Packet>, DecodeError> {
        if let Some((_, missing)) = &self.pending {
            return Err(DecodeError::ExpectedBinary(*missing));
        }
        match decode_header(text, &self.limits)? {
            (packet, 0) => Ok(Some(packet)),
            (packet, n) => {
                self.pending = Some((packet, n));
                Ok(None)
            }
        }
    }

    /// Feeds a binary message (an attachment). Returns the packet once it has all.
    pub fn feed_binary(&mut self, bytes: Vec<u8>) -> Result<Option<Packet>, DecodeError> {
        let Some((mut packet, missing)) = self.pending.take() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        if let Packet::Event { attachments, .. } | Packet::Ack { attachments, .. } = &mut packet {
            attachments.push(bytes);
        }
        if missing > 1 {
            self.pending = Some((packet, missing - 1));
            Ok(None)
        } else {
            Ok(Some(packet))
        }
    }
}

#[cfg(test)]
mod tests;
