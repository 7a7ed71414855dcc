//! Property tests: every packet the codecs can encode decodes back to itself, and
//! no input, however hostile, makes a decoder or a session panic.

use std::time::Duration;

use proptest::prelude::*;
use protocol::engineio::{self, Frame, frames_to_payload, payload_to_frames};
use protocol::session::{ServerConfig, ServerSession, Transport};
use protocol::socketio::{self, Decoder, Limits};
use protocol::{Time, base64};
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[^\u{0}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6).prop_map(|m| {
                Value::Object(m.into_iter().filter(|(k, _)| k != "_placeholder").collect())
            }),
        ]
    })
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-z0-9_-]{1,20}"]
}

fn ack_id() -> impl Strategy<Value = u64> {
    0u64..(1u64 << 53)
}

fn socketio_packet() -> impl Strategy<Value = socketio::Packet> {
    use socketio::Packet as P;
    let attachments = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..3);
    let args_with = |attachments: Vec<Vec<u8>>| {
        prop::collection::vec(json_value(), 0..4).prop_map(move |mut args| {
            // Each attachment referenced once, by a placeholder.
            args.extend((0..attachments.len()).map(socketio::placeholder));
            (args, attachments.clone())
        })
    };
    prop_oneof![
        (
            namespace(),
            prop::option::of(json_value().prop_map(|v| {
                let mut m = serde_json::Map::new();
                m.insert("auth".into(), v);
                Value::Object(m)
            }))
        )
            .prop_map(|(nsp, data)| P::Connect { nsp, data }),
        namespace().prop_map(|nsp| P::Disconnect { nsp }),
        (
            namespace(),
            prop::option::of(ack_id()),
            "[^\u{0}]{0,10}",
            attachments.clone()
        )
            .prop_flat_map(move |(nsp, id, name, a)| {
                args_with(a).prop_map(move |(args, attachments)| P::Event {
                    nsp: nsp.clone(),
                    id,
                    name: name.clone(),
                    args: args.into(),
                    attachments,
                })
            }),
        (namespace(), ack_id(), attachments).prop_flat_map(move |(nsp, id, a)| {
            args_with(a).prop_map(move |(args, attachments)| P::Ack {
                nsp: nsp.clone(),
                id,
                args: args.into(),
                attachments,
            })
        }),
        (namespace(), "[^\u{0}]{0,20}").prop_map(|(nsp, m)| P::ConnectError {
            nsp,
            data: serde_json::json!({ "message": m }),
        }),
    ]
}

fn engineio_packet() -> impl Strategy<Value = engineio::Packet> {
    use engineio::Packet as P;
    prop_oneof![
        Just(P::Close),
        Just(P::Upgrade),
        Just(P::Noop),
        "[^\u{1e}]{0,10}".prop_map(P::Ping),
        "[^\u{1e}]{0,10}".prop_map(P::Pong),
        "[^\u{1e}]{0,40}".prop_map(P::Message),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(P::Binary),
    ]
}

proptest! {
    #[test]
    fn base64_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assert_eq!(base64::decode(&base64::encode(&bytes)), Ok(bytes));
    }

    #[test]
    fn engineio_frames_round_trip(packet in engineio_packet()) {
        prop_assert_eq!(engineio::Packet::decode(packet.encode()), Ok(packet.clone()));
        prop_assert_eq!(engineio::Packet::decode(packet.clone().into_frame()), Ok(packet));
    }

    #[test]
    fn polling_payloads_round_trip(packets in prop::collection::vec(engineio_packet(), 1..8)) {
        let body = engineio::encode_payload(&packets);
        prop_assert_eq!(engineio::decode_payload(&body), Ok(packets.clone()));
        let frames: Vec<Frame> = packets.iter().map(engineio::Packet::encode).collect();
        prop_assert_eq!(payload_to_frames(&frames_to_payload(&frames)), Ok(frames));
    }

    #[test]
    fn socketio_packets_round_trip(packet in socketio_packet()) {
        let (text, attachments) = packet.encode();
        let mut decoder = Decoder::new(Limits::default());
        let mut decoded = decoder.feed_text(&text).expect("our own encoding decodes");
        for a in attachments {
            prop_assert!(decoded.is_none());
            decoded = decoder.feed_binary(a.clone()).expect("attachment accepted");
        }
        prop_assert_eq!(decoded, Some(packet));
    }

    #[test]
    fn decoders_never_panic_on_text(text in "\\PC{0,64}") {
        let _ = engineio::Packet::decode_text(&text);
        let _ = engineio::decode_payload(&text);
        let _ = socketio::Packet::decode(&text, &Limits::default());
        let mut d = Decoder::default();
        let _ = d.feed_text(&text);
        let _ = d.feed_binary(text.clone().into_bytes());
    }

    #[test]
    fn decoders_never_panic_on_socketio_shaped_text(
        kind in "[0-9]", att in "[0-9-]{0,3}", nsp in "(/[a-z,]{0,5})?", id in "[0-9]{0,25}",
        rest in "[\\[\\]{}\":,a-z0-9_]{0,40}",
    ) {
        let text = format!("{kind}{att}{nsp}{id}{rest}");
        let _ = socketio::Packet::decode(&text, &Limits::default());
    }

    /// Events and acks keep their arguments as text: accepted exactly when the
    /// JSON parses into values, and those text arguments read back as the values.
    #[test]
    fn arguments_kept_as_text_match_parsed_values(
        kind in "[23]", id in "[0-9]{0,3}", json in "[ \\[\\]{}\":,a-z0-9._eE+-]{0,40}",
        args in prop::collection::vec(json_value(), 0..4), name in "[a-z\"\\\\]{0,6}",
    ) {
        for json in [json, serde_json::to_string(&args).unwrap(), format!(
            "[{}{}]",
            serde_json::to_string(&name).unwrap(),
            args.iter().map(|a| format!(" , {a}")).collect::<String>()
        )] {
            let text = format!("{kind}{id}{json}");
            let parsed = serde_json::from_str::<Value>(&json);
            match socketio::Packet::decode(&text, &Limits::default()) {
                Ok(socketio::Packet::Event { name, args, .. }) => {
                    let Ok(Value::Array(mut items)) = parsed else { panic!("{text} accepted") };
                    prop_assert_eq!(Value::String(name), items.remove(0));
                    prop_assert_eq!(args.len(), items.len());
                    prop_assert_eq!(args.values(), &items[..]);
                }
                Ok(socketio::Packet::Ack { args, .. }) => {
                    let Ok(Value::Array(items)) = parsed else { panic!("{text} accepted") };
                    prop_assert_eq!(args.values(), &items[..]);
                }
                Ok(other) => panic!("{text} decoded as {other:?}"),
                Err(_) => {
                    let valid = match &parsed {
                        Ok(Value::Array(items)) if kind == "2" => {
                            matches!(items.first(), Some(Value::String(_)))
                        }
                        Ok(Value::Array(_)) => !id.is_empty(),
                        _ => false,
                    };
                    prop_assert!(!valid, "{} refused", text);
                }
            }
        }
    }

    #[test]
    fn server_session_survives_any_frame_sequence(
        frames in prop::collection::vec(
            prop_oneof![
                "\\PC{0,24}".prop_map(Frame::Text),
                "4[0-6][0-9/,\\[\\]{}\"a-z]{0,20}".prop_map(Frame::Text),
                prop::collection::vec(any::<u8>(), 0..16).prop_map(Frame::Binary),
            ],
            0..24,
        ),
        ticks in prop::collection::vec(0u64..2000, 0..24),
    ) {
        let config = ServerConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(1000),
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new("sid".into(), config, Transport::Polling, Time::ZERO);
        let mut now = Time::ZERO;
        for (i, frame) in frames.into_iter().enumerate() {
            now += Duration::from_millis(ticks.get(i).copied().unwrap_or(1));
            let _ = s.handle_frame(frame, now);
            s.handle_timeout(now);
            while let Some(event) = s.poll_event() {
                if let protocol::session::ServerEvent::Connect { nsp, .. } = event {
                    s.accept_connect(&nsp, "socket");
                }
            }
            while s.poll_transmit().is_some() {}
            // Time was just handled: no deadline may be left overdue.
            prop_assert!(s.poll_timeout().is_none_or(|t| t > now), "{:?} <= {:?}", s.poll_timeout(), now);
        }
    }
}
