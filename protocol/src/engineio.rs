//! Engine.IO v4 packets: the transport session underneath Socket.IO.
//!
//! A packet is one type character (`0` open … `6` noop) and an optional payload.
//! Over WebSocket each packet is one frame ([`Frame`]); a binary frame is a message
//! carrying raw bytes. Over HTTP long-polling several packets travel in one body,
//! joined by the record separator `\x1e`, binary ones as `b` + base64
//! ([`encode_payload`], [`decode_payload`]).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::base64;

/// The record separator joining packets in a long-polling payload.
pub const RECORD_SEPARATOR: char = '\x1e';

/// One WebSocket message: text or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

impl Frame {
    /// Length in bytes of the frame's payload (what `maxPayload` limits).
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The handshake the server sends first: `0{"sid":...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPacket {
    pub sid: String,
    pub upgrades: Vec<String>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the client has to answer a ping.
    pub ping_timeout: u64,
    /// Largest payload, in bytes, the server accepts.
    pub max_payload: u64,
}

/// An Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Open(OpenPacket),
    Close,
    /// `2`, with an optional payload (`probe` during an upgrade).
    Ping(String),
    /// `3`, echoing the ping's payload.
    Pong(String),
    /// `4` + text: a message (a Socket.IO packet, for Socket.IO).
    Message(String),
    /// A binary message: a raw binary frame, or `b<base64>` when polling.
    Binary(Vec<u8>),
    Upgrade,
    Noop,
}

/// Why bytes received from a peer are not an Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown engine.io packet type {0:?}")]
    UnknownType(char),
    #[error("invalid open packet: {0}")]
    InvalidOpen(String),
    #[error("packet type {0:?} takes no payload")]
    UnexpectedPayload(char),
    #[error("invalid base64 binary packet: {0}")]
    InvalidBase64(#[from] base64::Base64Error),
}

impl Packet {
    /// The packet as a WebSocket frame.
    pub fn encode(&self) -> Frame {
        match self {
            Packet::Binary(bytes) => Frame::Binary(bytes.clone()),
            other => Frame::Text(other.encode_text()),
        }
    }

    /// Consumes the packet into a WebSocket frame without copying its payload.
    pub fn into_frame(self) -> Frame {
        match self {
            Packet::Binary(bytes) => Frame::Binary(bytes),
            Packet::Message(text) => {
                let mut s = String::with_capacity(text.len() + 1);
                s.push('4');
                s.push_str(&text);
                Frame::Text(s)
            }
            other => Frame::Text(other.encode_text()),
        }
    }

    /// The text form of the packet (binary as `b<base64>`, the polling form).
    pub fn encode_text(&self) -> String {
        match self {
            Packet::Open(open) => {
                let json = serde_json::to_string(open).expect("an open packet always serializes");
                format!("0{json}")
            }
            Packet::Close => "1".to_owned(),
            Packet::Ping(data) => format!("2{data}"),
            Packet::Pong(data) => format!("3{data}"),
            Packet::Message(text) => format!("4{text}"),
            Packet::Binary(bytes) => format!("b{}", base64::encode(bytes)),
            Packet::Upgrade => "5".to_owned(),
            Packet::Noop => "6".to_owned(),
        }
    }

    /// Decodes a WebSocket frame. A binary frame is always a binary message.
    pub fn decode(frame: Frame) -> Result<Packet, DecodeError> {
        match frame {
            Frame::Binary(bytes) => Ok(Packet::Binary(bytes)),
            // A message, nearly every frame, keeps the frame's text: its type
            // byte is taken off in place, without a copy into a new string.
            Frame::Text(mut text) if text.starts_with('4') => {
                text.remove(0);
                Ok(Packet::Message(text))
            }
            Frame::Text(text) => Packet::decode_text(&text),
        }
    }

    /// Decodes one packet in text form (a WebSocket text frame or one record of a
    /// long-polling payload, where `b` introduces base64 binary).
    pub fn decode_text(text: &str) -> Result<Packet, DecodeError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(DecodeError::Empty)?;
        let rest = chars.as_str();
        let no_payload = |packet: Packet| {
            if rest.is_empty() {
                Ok(packet)
            } else {
                Err(DecodeError::UnexpectedPayload(kind))
            }
        };
        match kind {
            '0' => serde_json::from_str(rest)
                .map(Packet::Open)
                .map_err(|e| DecodeError::InvalidOpen(e.to_string())),
            '1' => no_payload(Packet::Close),
            '2' => Ok(Packet::Ping(rest.to_owned())),
            '3' => Ok(Packet::Pong(rest.to_owned())),
            '4' => Ok(Packet::Message(rest.to_owned())),
            '5' => no_payload(Packet::Upgrade),
            '6' => no_payload(Packet::Noop),
            'b' => Ok(Packet::Binary(base64::decode(rest)?)),
            other => Err(DecodeError::UnknownType(other)),
        }
    }
}

/// Joins packets into one long-polling body: `4hello\x1ebAQIDBA==`.
pub fn encode_payload(packets: &[Packet]) -> String {
    let mut out = String::new();
    for (i, packet) in packets.iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        out.push_str(&packet.encode_text());
    }
    out
}

/// Splits a long-polling body into its packets. Any invalid record fails the whole
/// body: the protocol has no way to say "some of this was wrong".
pub fn decode_payload(body: &str) -> Result<Vec<Packet>, DecodeError> {
    body.split(RECORD_SEPARATOR)
        .map(Packet::decode_text)
        .collect()
}

/// Splits a long-polling body into the frames a WebSocket would have carried:
/// text records as they are, `b<base64>` records decoded to binary frames.
pub fn payload_to_frames(body: &str) -> Result<Vec<Frame>, DecodeError> {
    body.split(RECORD_SEPARATOR)
        .map(|record| match record.strip_prefix('b') {
            Some(b64) => Ok(Frame::Binary(base64::decode(b64)?)),
            None if record.is_empty() => Err(DecodeError::Empty),
            None => Ok(Frame::Text(record.to_owned())),
        })
        .collect()
}

/// Joins frames into one long-polling body (binary frames as `b<base64>`).
pub fn frames_to_payload<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> String {
    let mut out = String::new();
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        match frame {
            Frame::Text(text) => out.push_str(text),
            Frame::Binary(bytes) => {
                out.push('b');
                out.push_str(&base64::encode(bytes));
            }
        }
    }
    out
}

/// Takes frames from the front of `queue` for one long-polling POST: all of them,
/// or as many as fit in the server's `max_payload` (at least one: a frame larger
/// than that goes alone, and the server's refusal says why). Sizes are counted as
/// the body will be: text as it is, binary as `b` + base64, a separator between
/// records.
pub fn take_payload(queue: &mut VecDeque<Frame>, max_payload: Option<u64>) -> String {
    let limit = max_payload
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(usize::MAX);
    let mut size = 0_usize;
    let mut count = 0;
    for frame in queue.iter() {
        let cost = match frame {
            Frame::Text(text) => text.len(),
            Frame::Binary(bytes) => 1 + bytes.len().div_ceil(3) * 4,
        } + usize::from(count > 0);
        if count > 0 && size.saturating_add(cost) > limit {
            break;
        }
        size = size.saturating_add(cost);
        count += 1;
    }
    let rest = queue.split_off(count);
    let payload = frames_to_payload(&*queue);
    *queue = rest;
    payload
}

/// The query of a long-polling request: the handshake without `sid`, the
/// session's GETs and POSTs with it; `t` busts caches (`EIO=4&transport=polling&t=..&sid=..`).
pub fn polling_query(sid: Option<&str>, t: &str) -> String {
    let mut query = "EIO=4&transport=polling&t=".to_owned();
    percent_encode_into(&mut query, t);
    push_sid(&mut query, sid);
    query
}

/// The query of a WebSocket: a new session without `sid`, an upgrade with it.
pub fn websocket_query(sid: Option<&str>) -> String {
    let mut query = "EIO=4&transport=websocket".to_owned();
    push_sid(&mut query, sid);
    query
}

fn push_sid(query: &mut String, sid: Option<&str>) {
    if let Some(sid) = sid {
        query.push_str("&sid=");
        percent_encode_into(query, sid);
    }
}

/// Appends `s` with everything but RFC 3986's unreserved characters percent-encoded.
fn percent_encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> OpenPacket {
        OpenPacket {
            sid: "lv_VI97HAXpY6yYWAAAC".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        }
    }

    #[test]
    fn open_packet_matches_spec() {
        assert_eq!(
            Packet::Open(open()).encode_text(),
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        let decoded = Packet::decode_text(&Packet::Open(open()).encode_text());
        assert_eq!(decoded, Ok(Packet::Open(open())));
    }

    #[test]
    fn simple_packets_from_spec() {
        for (packet, wire) in [
            (Packet::Close, "1"),
            (Packet::Ping(String::new()), "2"),
            (Packet::Pong(String::new()), "3"),
            (Packet::Ping("probe".into()), "2probe"),
            (Packet::Pong("probe".into()), "3probe"),
            (Packet::Message("hello".into()), "4hello"),
            (Packet::Upgrade, "5"),
            (Packet::Noop, "6"),
        ] {
            assert_eq!(packet.encode(), Frame::Text(wire.into()));
            assert_eq!(packet.clone().into_frame(), Frame::Text(wire.into()));
            assert_eq!(Packet::decode(Frame::Text(wire.into())), Ok(packet));
        }
    }

    #[test]
    fn binary_frames_have_no_prefix() {
        let packet = Packet::Binary(vec![1, 2, 3, 4]);
        assert_eq!(packet.encode(), Frame::Binary(vec![1, 2, 3, 4]));
        assert_eq!(Packet::decode(Frame::Binary(vec![1, 2, 3, 4])), Ok(packet));
    }

    #[test]
    fn polling_payload_from_spec() {
        let packets = vec![
            Packet::Message("hello".into()),
            Packet::Binary(vec![1, 2, 3, 4]),
        ];
        assert_eq!(encode_payload(&packets), "4hello\x1ebAQIDBA==");
        assert_eq!(decode_payload("4hello\x1ebAQIDBA=="), Ok(packets));
        assert_eq!(
            decode_payload("4hello\x1e4€uro\x1e2"),
            Ok(vec![
                Packet::Message("hello".into()),
                Packet::Message("€uro".into()),
                Packet::Ping(String::new())
            ])
        );
    }

    #[test]
    fn payload_and_frames() {
        let frames = vec![
            Frame::Text("4hello".into()),
            Frame::Binary(vec![1, 2, 3, 4]),
        ];
        assert_eq!(frames_to_payload(&frames), "4hello\x1ebAQIDBA==");
        assert_eq!(payload_to_frames("4hello\x1ebAQIDBA=="), Ok(frames));
        assert_eq!(payload_to_frames("4a\x1e"), Err(DecodeError::Empty));
        assert!(payload_to_frames("b!").is_err());
    }

    #[test]
    fn invalid_input_is_an_error_not_a_panic() {
        assert_eq!(Packet::decode_text(""), Err(DecodeError::Empty));
        assert_eq!(Packet::decode_text("9"), Err(DecodeError::UnknownType('9')));
        assert_eq!(Packet::decode_text("é"), Err(DecodeError::UnknownType('é')));
        assert_eq!(
            Packet::decode_text("1x"),
            Err(DecodeError::UnexpectedPayload('1'))
        );
        assert!(matches!(
            Packet::decode_text("0{"),
            Err(DecodeError::InvalidOpen(_))
        ));
        assert!(matches!(
            Packet::decode_text("b!!"),
            Err(DecodeError::InvalidBase64(_))
        ));
        assert_eq!(decode_payload("4a\x1e"), Err(DecodeError::Empty));
    }

    fn text(s: &str) -> Frame {
        Frame::Text(s.to_owned())
    }

    // The POST splitting tests of the native and browser shells, moved here
    // with the function they shared.
    #[test]
    fn posts_respect_max_payload() {
        let mut outbox: VecDeque<Frame> = ["40", "42[\"a\"]", "42[\"b\"]"]
            .into_iter()
            .map(text)
            .collect();
        assert_eq!(take_payload(&mut outbox, Some(11)), "40\x1e42[\"a\"]");
        assert_eq!(take_payload(&mut outbox, Some(1)), "42[\"b\"]");
        assert!(outbox.is_empty());
        outbox.push_back(Frame::Binary(vec![1, 2, 3, 4]));
        outbox.push_back(Frame::Text("4x".to_owned()));
        assert_eq!(take_payload(&mut outbox, None), "bAQIDBA==\x1e4x");
    }

    #[test]
    fn a_post_carries_what_fits_in_max_payload() {
        let mut outbox: VecDeque<Frame> = [r#"42["a"]"#, r#"42["b"]"#, r#"42["c"]"#]
            .into_iter()
            .map(text)
            .collect();
        // 7 + 1 + 7 = 15 bytes: two frames, then the third alone.
        assert_eq!(
            take_payload(&mut outbox, Some(15)),
            "42[\"a\"]\u{1e}42[\"b\"]".to_owned()
        );
        assert_eq!(take_payload(&mut outbox, Some(15)), r#"42["c"]"#);
        assert!(outbox.is_empty());
    }

    #[test]
    fn binary_is_base64_and_an_oversized_frame_goes_alone() {
        let mut outbox = VecDeque::from([Frame::Binary(vec![1, 2, 3, 4]), text("4x")]);
        assert_eq!(
            take_payload(&mut outbox, Some(1_000_000)),
            "bAQIDBA==\u{1e}4x"
        );
        let mut outbox = VecDeque::from([text("4too long"), text("4x")]);
        assert_eq!(take_payload(&mut outbox, Some(3)), "4too long");
        assert_eq!(outbox.len(), 1);
        // Exactly at the limit: `b` + 8 base64 characters = 9 bytes, then 1 + 2.
        let mut outbox = VecDeque::from([Frame::Binary(vec![1, 2, 3, 4]), text("4x")]);
        assert_eq!(take_payload(&mut outbox, Some(12)), "bAQIDBA==\u{1e}4x");
        let mut outbox = VecDeque::from([Frame::Binary(vec![1, 2, 3, 4]), text("4x")]);
        assert_eq!(take_payload(&mut outbox, Some(11)), "bAQIDBA==");
    }

    #[test]
    fn queries() {
        assert_eq!(polling_query(None, "P1a"), "EIO=4&transport=polling&t=P1a");
        assert_eq!(
            polling_query(Some("ab+c/d="), "2"),
            "EIO=4&transport=polling&t=2&sid=ab%2Bc%2Fd%3D"
        );
        assert_eq!(websocket_query(None), "EIO=4&transport=websocket");
        assert_eq!(
            websocket_query(Some("x_y-z")),
            "EIO=4&transport=websocket&sid=x_y-z"
        );
    }
}
