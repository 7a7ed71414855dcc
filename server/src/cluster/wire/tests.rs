//! The bytes below were written by Node (socket.io 4.8.4 with
//! @socket.io/redis-streams-adapter 0.3.1, recorded with `redis-cli MONITOR`).

use super::*;
use serde_json::json;

fn entry<'a>(uid: &'a str, kind: &'a str, data: &'a str) -> Vec<(&'a str, &'a [u8])> {
    vec![
        ("uid", uid.as_bytes()),
        ("nsp", b"/".as_slice()),
        ("type", kind.as_bytes()),
        ("data", data.as_bytes()),
    ]
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Reads the entry, checks what it says, and writes it back to the same text.
fn round_trip(kind: &str, data: &str) -> Message {
    let message = Message::from_entry(entry("3bb77af3dfb0ea42", kind, data))
        .expect("valid entry")
        .expect("a known type");
    let fields = message.to_entry();
    assert_eq!(fields[2], ("type", kind.to_owned()));
    assert_eq!(
        fields[3],
        ("data", data.to_owned()),
        "written back as Node wrote it"
    );
    message
}

#[test]
fn a_node_broadcast_entry_reads_and_writes_back() {
    let m = round_trip(
        "3",
        r#"{"packet":{"type":2,"data":["plain",1,"two",{"three":[3]}]},"opts":{"rooms":[],"except":[],"flags":{}}}"#,
    );
    assert_eq!(m.uid, "3bb77af3dfb0ea42");
    assert_eq!(m.nsp, "/");
    let Body::Broadcast {
        packet,
        opts,
        request_id,
    } = m.body
    else {
        panic!("a broadcast: {m:?}");
    };
    assert_eq!(
        packet.data,
        vec![
            json!("plain"),
            json!(1),
            json!("two"),
            json!({"three": [3]})
        ]
    );
    assert!(packet.attachments.is_empty() && packet.id.is_none() && request_id.is_none());
    assert_eq!(opts, Opts::default());

    let m = round_trip(
        "3",
        r#"{"packet":{"type":2,"data":["vol","x"]},"opts":{"rooms":[],"except":[],"flags":{"volatile":true}}}"#,
    );
    assert!(matches!(m.body, Body::Broadcast { ref opts, .. } if opts.volatile()));
    round_trip(
        "3",
        r#"{"packet":{"type":2,"data":["to-self-ack","y"],"id":0},"opts":{"rooms":["2SNcuj38qScMfkN6AAAA"],"except":[],"flags":{"timeout":500}}}"#,
    );
}

#[test]
fn binary_travels_as_base64_msgpack_with_bin_in_place() {
    // io.to("room1").except("room2").emit("bin", Buffer.from([1,2,3]), {nested: Buffer.from("hi")})
    let data = "gqZwYWNrZXSCpHR5cGUCpGRhdGGTo2JpbsQDAQIDgaZuZXN0ZWTEAmhppG9wdHODpXJvb21zkaVyb29tMaZleGNlcHSRpXJvb20ypWZsYWdzgA==";
    let m = round_trip("3", data);
    let Body::Broadcast { packet, opts, .. } = m.body else {
        panic!("a broadcast");
    };
    assert_eq!(
        packet.data,
        vec![
            json!("bin"),
            json!({"_placeholder": true, "num": 0}),
            json!({"nested": {"_placeholder": true, "num": 1}})
        ]
    );
    assert_eq!(packet.attachments, vec![vec![1, 2, 3], b"hi".to_vec()]);
    assert_eq!(
        (opts.rooms, opts.except),
        (vec!["room1".to_owned()], vec!["room2".to_owned()])
    );
}

#[test]
fn room_and_disconnect_operations() {
    let m = round_trip(
        "4",
        r#"{"opts":{"rooms":[],"except":[],"flags":{}},"rooms":["room3"]}"#,
    );
    assert_eq!(
        m.body,
        Body::SocketsJoin {
            opts: Opts::default(),
            rooms: vec!["room3".to_owned()]
        }
    );
    let m = round_trip(
        "5",
        r#"{"opts":{"rooms":["room3"],"except":[],"flags":{}},"rooms":["room1"]}"#,
    );
    assert!(
        matches!(m.body, Body::SocketsLeave { ref opts, ref rooms } if opts.rooms == ["room3"] && rooms == &["room1"])
    );
    let m = round_trip(
        "6",
        r#"{"opts":{"rooms":["nobody"],"except":[],"flags":{}},"close":true}"#,
    );
    assert!(matches!(
        m.body,
        Body::DisconnectSockets { close: true, .. }
    ));
}

#[test]
fn the_emitter_entries_are_read() {
    // What @socket.io/redis-streams-emitter XADDs (uid "emitter", packet.nsp, another key order).
    let m = Message::from_entry(entry(
        "emitter",
        "3",
        r#"{"packet":{"type":2,"data":["hi"],"nsp":"/"},"opts":{"rooms":[],"flags":{},"except":[]}}"#,
    ))
    .expect("valid")
    .expect("known");
    assert_eq!(m.uid, "emitter");
    assert!(
        matches!(m.body, Body::Broadcast { ref packet, .. } if packet.data == vec![json!("hi")])
    );
    let m = Message::from_entry(entry("emitter", "9", r#"{"packet":["hello","world"]}"#))
        .expect("valid")
        .expect("known");
    assert_eq!(
        m.body,
        Body::ServerSideEmit {
            packet: vec![json!("hello"), json!("world")],
            request_id: None
        }
    );
}

#[test]
fn pubsub_messages_read_and_write_back_byte_for_byte() {
    for hex in [
        // BROADCAST_CLIENT_COUNT {requestId: "e7723a46ff43f1e5", clientCount: 1}
        "84a4747970650ba46461746182a9726571756573744964b065373732336134366666343366316535ab636c69656e74436f756e7401a3756964b036636265653432646366373637393964a36e7370a12f",
        // SERVER_SIDE_EMIT {packet: ["ping-sse", "noack"]}
        "84a47479706509a46461746181a67061636b657492a870696e672d737365a56e6f61636ba3756964b033626237376166336466623065613432a36e7370a12f",
    ] {
        let bytes = unhex(hex);
        let m = Message::from_pubsub(&bytes).expect("valid").expect("known");
        assert_eq!(m.to_pubsub(), bytes, "{m:?}");
    }
    let m = Message::from_pubsub(&unhex(
        "84a4747970650ba46461746182a9726571756573744964b065373732336134366666343366316535ab636c69656e74436f756e7401a3756964b036636265653432646366373637393964a36e7370a12f",
    ))
    .expect("valid")
    .expect("known");
    assert_eq!(m.uid, "6cbee42dcf76799d");
    assert_eq!(
        m.body,
        Body::BroadcastClientCount {
            request_id: "e7723a46ff43f1e5".to_owned(),
            client_count: 1
        }
    );
}

#[test]
fn every_body_survives_both_transports() {
    let opts = Opts {
        rooms: vec!["a".to_owned()],
        except: vec!["b".to_owned()],
        flags: json!({"timeout": 2000})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let bodies = vec![
        Body::Broadcast {
            packet: EventPacket {
                data: vec![
                    json!("ev"),
                    json!({"_placeholder": true, "num": 0}),
                    json!(-1.5),
                ],
                attachments: vec![vec![0, 255]],
                id: None,
            },
            opts: opts.clone(),
            request_id: Some("0123456789abcdef".to_owned()),
        },
        Body::FetchSockets {
            opts: opts.clone(),
            request_id: "r".to_owned(),
        },
        Body::FetchSocketsResponse {
            request_id: "r".to_owned(),
            sockets: vec![json!({"id": "s", "handshake": {}, "rooms": ["s"], "data": {}})],
        },
        Body::ServerSideEmit {
            packet: vec![json!("ping"), json!(u64::MAX), json!(-7)],
            request_id: Some("q".to_owned()),
        },
        Body::ServerSideEmitResponse {
            request_id: "q".to_owned(),
            packet: json!("pong"),
        },
        Body::BroadcastAck {
            request_id: "r".to_owned(),
            packet: json!({"ok": true}),
        },
    ];
    for body in bodies {
        let m = Message {
            uid: "u".to_owned(),
            nsp: "/chat".to_owned(),
            body,
        };
        let read = Message::from_pubsub(&m.to_pubsub())
            .expect("valid")
            .expect("known");
        assert_eq!(read, m);
        let fields = m.to_entry();
        let read = Message::from_entry(fields.iter().map(|(k, v)| (*k, v.as_bytes())))
            .expect("valid")
            .expect("known");
        assert_eq!(read, m);
    }
}

#[test]
fn dates_read_as_javascript_writes_them_to_json() {
    assert_eq!(
        timestamp(&unhex("6b156f69")).as_deref(),
        Some("2026-12-06T14:21:29.000Z")
    );
    assert_eq!(
        timestamp(&unhex("7735940038bb0c00")).as_deref(),
        Some("2000-02-29T00:00:00.500Z")
    );
    assert_eq!(
        timestamp(&[0; 4]).as_deref(),
        Some("1970-01-01T00:00:00.000Z")
    );
    assert_eq!(timestamp(&[1, 2]), None);
}

#[test]
fn bad_input_is_an_error_and_old_types_are_skipped() {
    assert_eq!(
        Message::from_entry(entry("u", "2", "{}")),
        Ok(None),
        "a heartbeat of an older adapter"
    );
    assert_eq!(
        Message::from_entry(vec![("uid", b"u".as_slice())]),
        Err(WireError::Missing("type"))
    );
    assert_eq!(
        Message::from_entry(entry("u", "3", "!!notbase64")),
        Err(WireError::Base64)
    );
    assert!(matches!(
        Message::from_entry(entry(
            "u",
            "3",
            r#"{"packet":{"type":2,"data":[]},"opts":{}}"#
        )),
        Err(WireError::Type("packet.data"))
    ));
    assert_eq!(
        Message::from_entry(entry("u", "99", "{}")),
        Err(WireError::UnknownType(99))
    );
    assert!(Message::from_pubsub(&[0xc1]).is_err());
    assert!(Message::from_pubsub(&[0x91, 0x01]).is_err());
}

/// A session Node 4.8.4 stored (`SET sio:session:idvdkPYW9uANo7jIAAAB … PX 60000`,
/// recorded with `redis-cli MONITOR`): duplex reads it, and writes the same bytes.
#[test]
fn sessions_are_stored_as_node_stores_them() {
    let node = "hKNzaWS0TEh4ZVJ5aF9jc0R4ZGgzWkFBQUGjcGlktGlkdmRrUFlXOXVBTm83aklBQUFCpXJvb21zkrRMSHhlUnloX2NzRHhkaDNaQUFBQaVyb29tM6RkYXRhgaR1c2Vyo2JvYg==";
    let session = StoredSession::decode(node).expect("Node's session");
    assert_eq!(
        session,
        StoredSession {
            sid: "LHxeRyh_csDxdh3ZAAAA".into(),
            pid: "idvdkPYW9uANo7jIAAAB".into(),
            rooms: vec!["LHxeRyh_csDxdh3ZAAAA".into(), "room3".into()],
            data: json!({"user": "bob"}),
            base: None,
        }
    );
    assert_eq!(session.encode(), node);
    let ours = StoredSession {
        base: Some("1796566870302-0".into()),
        ..session
    };
    assert_eq!(StoredSession::decode(&ours.encode()), Ok(ours));
    assert!(StoredSession::decode("not base64!").is_err());
    assert!(
        StoredSession::decode("gA==").is_err(),
        "an empty map has no sid"
    );
}
