//! Property tests of the RFC 6455 codec: whatever a client encodes, however it is
//! fragmented and however the bytes are split by the network, decodes to the same
//! messages and leaves nothing buffered; and no input makes the decoder panic.

use proptest::prelude::*;
use protocol::websocket::{
    Decoder, Message, OpCode, encode_close, encode_frame, encode_masked, frame_len,
};

const MAX: usize = 4096;

/// A message and how a client sends it: data messages in fragments, each
/// possibly followed by a ping (control frames may come between fragments).
#[derive(Debug, Clone)]
struct Sent {
    message: Message,
    /// Fragment lengths (data messages), the rest in a last fragment.
    cuts: Vec<usize>,
    pings: Vec<bool>,
    mask: [u8; 4],
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        ".{0,40}".prop_map(Message::Text),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Message::Binary),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Message::Ping),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Message::Pong),
        Just(Message::Close(None)),
        (
            prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999],
            "[a-zé]{0,30}"
        )
            .prop_map(|(code, reason)| Message::Close(Some((code, reason)))),
    ]
}

fn sent() -> impl Strategy<Value = Sent> {
    (
        message(),
        prop::collection::vec(0usize..50, 0..4),
        prop::collection::vec(any::<bool>(), 4),
        any::<[u8; 4]>(),
    )
        .prop_map(|(message, cuts, pings, mask)| Sent {
            message,
            cuts,
            pings,
            mask,
        })
}

/// What the client writes for `sent`, and the messages the server should see
/// (the pings between fragments first, then the message).
fn encode(sent: &Sent, out: &mut Vec<u8>, expected: &mut Vec<Message>) {
    let mask = sent.mask;
    let (opcode, payload) = match &sent.message {
        Message::Text(t) => (OpCode::Text, t.as_bytes().to_vec()),
        Message::Binary(b) => (OpCode::Binary, b.clone()),
        Message::Ping(p) => (OpCode::Ping, p.clone()),
        Message::Pong(p) => (OpCode::Pong, p.clone()),
        Message::Close(close) => {
            let mut payload = Vec::new();
            if let Some((code, reason)) = close {
                payload.extend(code.to_be_bytes());
                payload.extend(reason.as_bytes());
            }
            (OpCode::Close, payload)
        }
    };
    if opcode.is_control() {
        encode_masked(out, true, opcode, mask, &payload);
        expected.push(sent.message.clone());
        return;
    }
    let mut rest = payload.as_slice();
    let mut first = true;
    for (cut, ping) in sent.cuts.iter().zip(&sent.pings) {
        let (piece, after) = rest.split_at((*cut).min(rest.len()));
        let op = if first { opcode } else { OpCode::Continuation };
        encode_masked(out, false, op, mask, piece);
        if *ping {
            encode_masked(out, true, OpCode::Ping, mask, b"p");
            expected.push(Message::Ping(b"p".to_vec()));
        }
        first = false;
        rest = after;
    }
    let op = if first { opcode } else { OpCode::Continuation };
    encode_masked(out, true, op, mask, rest);
    expected.push(sent.message.clone());
}

/// Splits `bytes` at the given points (taken modulo its length).
fn chunks<'a>(bytes: &'a [u8], splits: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = splits
        .iter()
        .map(|s| if bytes.is_empty() { 0 } else { s % bytes.len() })
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points {
        out.push(&bytes[start..p]);
        start = p;
    }
    out.push(&bytes[start..]);
    out
}

proptest! {
    #[test]
    fn what_a_client_sends_decodes_back(
        messages in prop::collection::vec(sent(), 0..8),
        splits in prop::collection::vec(any::<usize>(), 0..10),
        stop_after in prop::option::of(0usize..3),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for m in &messages {
            encode(m, &mut stream, &mut expected);
        }
        let mut decoder = Decoder::new(MAX);
        let mut got = Vec::new();
        for chunk in chunks(&stream, &splits) {
            // A caller that takes only a few messages per read leaves the rest
            // for next time; it is decoded before the next read's bytes.
            match stop_after {
                Some(n) => {
                    got.extend(decoder.decode(chunk).take(n));
                }
                None => got.extend(decoder.decode(chunk)),
            }
        }
        got.extend(decoder.decode(&[]));
        let got: Result<Vec<Message>, _> = got.into_iter().collect();
        prop_assert_eq!(got, Ok(expected));
        prop_assert_eq!(decoder.allocated(), 0);
        prop_assert!(!decoder.in_message());
    }

    #[test]
    fn server_frames_are_client_frames_without_the_mask(
        opcode in prop_oneof![Just(OpCode::Text), Just(OpCode::Binary), Just(OpCode::Ping)],
        len in prop_oneof![0usize..130, 65_530usize..65_540, Just(70_000usize)],
    ) {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut server = Vec::new();
        encode_frame(&mut server, opcode, &payload);
        prop_assert_eq!(server.len(), frame_len(len));
        let mut client = Vec::new();
        encode_masked(&mut client, true, opcode, [0; 4], &payload);
        // The same bytes, but for the MASK bit and the 4 mask bytes.
        let header = frame_len(len) - len;
        prop_assert_eq!(client[1] & 0x7f, server[1]);
        prop_assert_eq!(&client[2..header], &server[2..header]);
        prop_assert_eq!(&client[header + 4..], &server[header..]);
    }

    #[test]
    fn close_reasons_always_fit(code in 1000u16..5000, reason in ".{0,200}") {
        let mut out = Vec::new();
        encode_close(&mut out, Some((code, &reason)));
        prop_assert!(out.len() <= 2 + 125);
        prop_assert!(std::str::from_utf8(&out[4..]).is_ok());
        prop_assert!(reason.as_bytes().starts_with(&out[4..]));
    }

    #[test]
    fn decoder_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        splits in prop::collection::vec(any::<usize>(), 0..8),
        max in 0usize..300,
        stop_after in prop::option::of(0usize..3),
    ) {
        let mut decoder = Decoder::new(max);
        for chunk in chunks(&bytes, &splits) {
            let taken: Vec<_> = match stop_after {
                Some(n) => decoder.decode(chunk).take(n).collect(),
                None => decoder.decode(chunk).collect(),
            };
            prop_assert!(taken.iter().filter(|m| m.is_err()).count() <= 1);
        }
        // Nothing kept beyond what was fed.
        prop_assert!(decoder.pending_len() <= bytes.len());
    }

    #[test]
    fn headers_that_look_valid_never_panic(
        b0 in prop_oneof![Just(0x80u8), Just(0x00), Just(0x81), Just(0x82), Just(0x88), Just(0x89), Just(0x01), any::<u8>()],
        len in prop_oneof![Just(126u8), Just(127), 0u8..126],
        ext in any::<[u8; 8]>(),
        rest in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = vec![b0, 0x80 | len];
        bytes.extend(ext);
        bytes.extend(rest);
        let mut decoder = Decoder::new(150);
        let _: Vec<_> = decoder.decode(&bytes).collect();
        let _: Vec<_> = decoder.decode(&bytes).collect();
    }
}
