use super::*;
use serde_json::json;

fn decode(text: &str) -> Result<Packet, DecodeError> {
    Packet::decode(text, &Limits::default())
}

fn round_trip(packet: Packet, wire: &str) {
    let (text, attachments) = packet.encode();
    assert_eq!(text, wire);
    let mut decoder = Decoder::default();
    let mut result = decoder.feed_text(&text).expect("valid header");
    for a in attachments {
        assert!(result.is_none());
        result = decoder.feed_binary(a.clone()).expect("expected attachment");
    }
    assert_eq!(result, Some(packet));
}

#[test]
fn frames_from_borrowed_parts_match_the_packets() {
    let args = vec![
        json!({"seq": 1, "b": {"_placeholder": true, "num": 0}}),
        json!("x"),
    ];
    for nsp in ["/", "/admin"] {
        for attachments in [Vec::new(), vec![vec![1u8, 2, 3]]] {
            for id in [None, Some(12)] {
                let event = Packet::Event {
                    nsp: nsp.into(),
                    id,
                    name: "echo".into(),
                    args: args.clone().into(),
                    attachments: attachments.clone(),
                };
                assert_eq!(
                    event_frame(nsp, id, "echo", &args.clone().into(), attachments.len()),
                    event.encode_frame().0
                );
            }
            let ack = Packet::Ack {
                nsp: nsp.into(),
                id: 7,
                args: args.clone().into(),
                attachments: attachments.clone(),
            };
            assert_eq!(
                ack_frame(nsp, 7, &args.clone().into(), attachments.len()),
                ack.encode_frame().0
            );
        }
    }
    assert_eq!(
        event_frame(
            "/",
            Some(3),
            "news",
            &vec![json!({"hello": "world"})].into(),
            0
        ),
        Frame::Text(r#"423["news",{"hello":"world"}]"#.into())
    );
    assert_eq!(
        ack_frame("/chat", 3, &Args::new(), 1),
        Frame::Text("461-/chat,3[]".into())
    );
}

#[test]
fn numbers_are_written_in_decimal() {
    for n in [0, 7, 10, 99, 1234567890, u64::MAX] {
        let mut out = Vec::new();
        push_number(&mut out, n);
        assert_eq!(out, n.to_string().into_bytes());
    }
}

#[test]
fn connect_packets_from_spec() {
    round_trip(
        Packet::Connect {
            nsp: "/".into(),
            data: None,
        },
        "0",
    );
    round_trip(
        Packet::Connect {
            nsp: "/admin".into(),
            data: Some(json!({"token": "123"})),
        },
        r#"0/admin,{"token":"123"}"#,
    );
    round_trip(
        Packet::Connect {
            nsp: "/".into(),
            data: Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"})),
        },
        r#"0{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
    );
    round_trip(
        Packet::ConnectError {
            nsp: "/".into(),
            data: json!({"message": "Not authorized"}),
        },
        r#"4{"message":"Not authorized"}"#,
    );
    round_trip(
        Packet::Disconnect {
            nsp: "/admin".into(),
        },
        "1/admin,",
    );
    round_trip(Packet::Disconnect { nsp: "/".into() }, "1");
}

#[test]
fn event_and_ack_packets_from_spec() {
    round_trip(
        Packet::event("/", "news", vec![json!({"hello": "world"})]),
        r#"2["news",{"hello":"world"}]"#,
    );
    round_trip(
        Packet::Event {
            nsp: "/admin".into(),
            id: Some(12),
            name: "foo".into(),
            args: vec![].into(),
            attachments: vec![],
        },
        r#"2/admin,12["foo"]"#,
    );
    round_trip(
        Packet::Ack {
            nsp: "/admin".into(),
            id: 13,
            args: vec![json!("bar")].into(),
            attachments: vec![],
        },
        r#"3/admin,13["bar"]"#,
    );
    round_trip(
        Packet::Ack {
            nsp: "/".into(),
            id: 12,
            args: vec![].into(),
            attachments: vec![],
        },
        "312[]",
    );
}

#[test]
fn binary_packets_from_spec() {
    round_trip(
        Packet::Event {
            nsp: "/".into(),
            id: None,
            name: "baz".into(),
            args: vec![placeholder(0)].into(),
            attachments: vec![vec![1, 2, 3, 4]],
        },
        r#"51-["baz",{"_placeholder":true,"num":0}]"#,
    );
    round_trip(
        Packet::Ack {
            nsp: "/admin".into(),
            id: 15,
            args: vec![json!({"a": placeholder(1), "b": [placeholder(0)]})].into(),
            attachments: vec![vec![1], vec![2, 3]],
        },
        r#"62-/admin,15[{"a":{"_placeholder":true,"num":1},"b":[{"_placeholder":true,"num":0}]}]"#,
    );
}

#[test]
fn malformed_packets_are_errors() {
    assert_eq!(decode(""), Err(DecodeError::Empty));
    assert_eq!(decode("abc"), Err(DecodeError::UnknownType('a')));
    assert_eq!(decode("9"), Err(DecodeError::UnknownType('9')));
    assert!(matches!(
        decode("2{}"),
        Err(DecodeError::InvalidPayload(..))
    ));
    assert!(matches!(
        decode("2[]"),
        Err(DecodeError::InvalidPayload(..))
    ));
    assert!(matches!(
        decode("2[1]"),
        Err(DecodeError::InvalidPayload(..))
    ));
    assert!(matches!(decode("2"), Err(DecodeError::InvalidPayload(..))));
    assert!(matches!(
        decode(r#"2abc["a"]"#),
        Err(DecodeError::InvalidJson(_))
    ));
    assert!(matches!(
        decode(r#"2["a""#),
        Err(DecodeError::InvalidJson(_))
    ));
    assert_eq!(decode("3[]"), Err(DecodeError::InvalidAckId));
    assert_eq!(
        decode(r#"299999999999999999999999["a"]"#),
        Err(DecodeError::InvalidAckId)
    );
    assert_eq!(
        decode("0/admin"),
        Ok(Packet::Connect {
            nsp: "/admin".into(),
            data: None
        })
    );
    assert_eq!(
        decode("1/admin"),
        Ok(Packet::Disconnect {
            nsp: "/admin".into()
        })
    );
    assert!(matches!(
        decode("0[1]"),
        Err(DecodeError::InvalidPayload(..))
    ));
    assert!(matches!(decode("1x"), Err(DecodeError::InvalidJson(_))));
    assert_eq!(decode("5-[\"a\"]"), Err(DecodeError::InvalidAttachments));
    assert_eq!(decode("51[\"a\"]"), Err(DecodeError::InvalidAttachments));
    assert_eq!(
        decode("599-[\"a\"]"),
        Err(DecodeError::TooManyAttachments(99, 10))
    );
    assert_eq!(
        decode(r#"51-["a"]"#),
        Err(DecodeError::PlaceholderMismatch(1))
    );
    assert_eq!(
        decode(r#"51-["a",{"_placeholder":true,"num":3}]"#),
        Err(DecodeError::PlaceholderMismatch(1))
    );
    let long = format!("0/{},", "x".repeat(300));
    assert_eq!(decode(&long), Err(DecodeError::NamespaceTooLong(256)));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("2[\"a\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(decode(&deep), Err(DecodeError::TooDeep(64)));
    // 64 levels in all (the event array is the first) are fine...
    let ok = format!("2[\"a\",{}{}]", "[".repeat(63), "]".repeat(63));
    assert!(decode(&ok).is_ok());
    // ...and brackets inside strings do not count.
    let quoted = format!("2[\"a\",\"{}\\\"{}\"]", "[".repeat(100), "{".repeat(100));
    assert!(decode(&quoted).is_ok(), "{quoted}");
    let over = format!("2[\"a\",{}{}]", "{\"k\":".repeat(64), "}".repeat(64));
    assert_eq!(decode(&over), Err(DecodeError::TooDeep(64)));
}

/// Found by `cargo fuzz` (socketio_decode): a number that did not survive
/// decode → encode → decode before serde_json's `float_roundtrip` was enabled.
/// An echo must send numbers back exactly as they came.
#[cfg(feature = "exact-numbers")]
#[test]
fn regression_numbers_round_trip_exactly() {
    let text = r#"0{"{)\"":12140001000400000000067,"{ ":2014}"#;
    let packet = decode(text).expect("valid CONNECT");
    let (encoded, _) = packet.encode();
    assert_eq!(decode(&encoded), Ok(packet));
    for n in [
        "1.2140001000399999e22",
        "0.1",
        "5e-324",
        "1.7976931348623157e308",
    ] {
        let text = format!("2[\"n\",{n}]");
        let packet = decode(&text).expect("valid");
        assert_eq!(decode(&packet.encode().0), Ok(packet));
    }
}

#[test]
fn decoder_enforces_attachment_order() {
    let mut decoder = Decoder::default();
    assert_eq!(
        decoder.feed_binary(vec![1]),
        Err(DecodeError::UnexpectedBinary)
    );
    assert_eq!(
        decoder
            .feed_text(r#"52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#),
        Ok(None)
    );
    assert!(decoder.is_waiting());
    assert_eq!(decoder.feed_binary(vec![1]), Ok(None));
    assert_eq!(
        decoder.feed_text("2[\"b\"]"),
        Err(DecodeError::ExpectedBinary(1))
    );
    assert!(matches!(
        decoder.feed_binary(vec![2]),
        Ok(Some(Packet::Event { .. }))
    ));
    assert!(!decoder.is_waiting());
}
