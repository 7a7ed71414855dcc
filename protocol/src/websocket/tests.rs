use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn all(decoder: &mut Decoder, input: &[u8]) -> Vec<Result<Message, FrameError>> {
    decoder.decode(input).collect()
}

fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_masked(&mut out, fin, opcode, MASK, payload);
    out
}

/// RFC 6455 §5.7: a single-frame masked text message.
const MASKED_HELLO: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

#[test]
fn rfc_masked_hello() {
    let mut d = Decoder::new(1000);
    assert_eq!(
        all(&mut d, &MASKED_HELLO),
        vec![Ok(Message::Text("Hello".into()))]
    );
    assert_eq!(d.allocated(), 0);
    assert_eq!(masked(true, OpCode::Text, b"Hello"), MASKED_HELLO);
}

#[test]
fn rfc_unmasked_examples_are_what_the_server_sends() {
    // §5.7: unmasked "Hello", then the fragmented one's first frame.
    let mut out = Vec::new();
    encode_frame(&mut out, OpCode::Text, b"Hello");
    assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    // §5.7: an unmasked ping with "Hello", and 256 / 65536 bytes of binary.
    out.clear();
    encode_frame(&mut out, OpCode::Ping, b"Hello");
    assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    out.clear();
    encode_frame(&mut out, OpCode::Binary, &[0; 256]);
    assert_eq!(out[..4], [0x82, 0x7e, 0x01, 0x00]);
    assert_eq!(out.len(), 4 + 256);
    out.clear();
    encode_frame(&mut out, OpCode::Binary, &[0; 65536]);
    assert_eq!(out[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(out.len(), frame_len(65536));
}

#[test]
fn rfc_fragmented_hello() {
    // §5.7: "Hel" then "lo", here masked as a client sends them.
    let mut input = masked(false, OpCode::Text, b"Hel");
    input.extend(masked(true, OpCode::Continuation, b"lo"));
    let mut d = Decoder::new(1000);
    assert_eq!(all(&mut d, &input), vec![Ok(Message::Text("Hello".into()))]);
    assert!(!d.in_message());
    assert_eq!(d.allocated(), 0);
}

#[test]
fn control_frames_between_fragments() {
    let mut input = masked(false, OpCode::Binary, &[1, 2]);
    input.extend(masked(true, OpCode::Ping, b"Hello"));
    input.extend(masked(false, OpCode::Continuation, &[3]));
    input.extend(masked(true, OpCode::Pong, b""));
    input.extend(masked(true, OpCode::Continuation, &[4]));
    let mut d = Decoder::new(1000);
    assert_eq!(
        all(&mut d, &input),
        vec![
            Ok(Message::Ping(b"Hello".to_vec())),
            Ok(Message::Pong(vec![])),
            Ok(Message::Binary(vec![1, 2, 3, 4])),
        ]
    );
}

#[test]
fn bytes_one_at_a_time() {
    let mut input = masked(true, OpCode::Text, &[b'a'; 300]);
    input.extend(masked(true, OpCode::Binary, &[7; 70_000]));
    input.extend(masked(true, OpCode::Close, &[0x03, 0xe8, b'b', b'y', b'e']));
    let mut d = Decoder::new(100_000);
    let mut got = Vec::new();
    for byte in &input {
        got.extend(d.decode(std::slice::from_ref(byte)));
    }
    assert_eq!(
        got,
        vec![
            Ok(Message::Text("a".repeat(300))),
            Ok(Message::Binary(vec![7; 70_000])),
            Ok(Message::Close(Some((1000, "bye".into())))),
        ]
    );
    assert_eq!(d.allocated(), 0, "nothing kept once the frames are whole");
}

#[test]
fn only_an_incomplete_frame_is_kept() {
    let mut input = masked(true, OpCode::Text, b"one");
    let second = masked(true, OpCode::Text, b"two");
    input.extend(&second[..4]);
    let mut d = Decoder::new(100);
    assert_eq!(all(&mut d, &input), vec![Ok(Message::Text("one".into()))]);
    assert_eq!(d.pending_len(), 4);
    assert_eq!(
        all(&mut d, &second[4..]),
        vec![Ok(Message::Text("two".into()))]
    );
    assert_eq!(d.pending_len(), 0);
    assert_eq!(d.allocated(), 0);
}

#[test]
fn stopping_early_keeps_the_rest_for_next_time() {
    let mut input = Vec::new();
    for text in ["a", "b", "c"] {
        input.extend(masked(true, OpCode::Text, text.as_bytes()));
    }
    let mut d = Decoder::new(100);
    let first = d.decode(&input).next();
    assert_eq!(first, Some(Ok(Message::Text("a".into()))));
    assert_eq!(d.pending_len(), input.len() - 7);
    assert_eq!(d.decode(&[]).next(), Some(Ok(Message::Text("b".into()))));
    let tail = masked(true, OpCode::Text, b"d");
    assert_eq!(
        all(&mut d, &tail),
        vec![Ok(Message::Text("c".into())), Ok(Message::Text("d".into()))]
    );
    assert_eq!(d.allocated(), 0);
}

fn first_error(input: &[u8], max: usize) -> Option<FrameError> {
    Decoder::new(max).decode(input).find_map(Result::err)
}

#[test]
fn header_violations_are_protocol_errors() {
    let hello = MASKED_HELLO;
    let mut rsv = hello;
    rsv[0] |= 0x40;
    assert_eq!(first_error(&rsv, 100), Some(FrameError::ReservedBits));
    let mut reserved = hello;
    reserved[0] = 0x83;
    assert_eq!(
        first_error(&reserved, 100),
        Some(FrameError::ReservedOpcode(3))
    );
    assert_eq!(
        first_error(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'], 100),
        Some(FrameError::Unmasked)
    );
    let fragmented_ping = masked(false, OpCode::Ping, b"");
    assert_eq!(
        first_error(&fragmented_ping, 100),
        Some(FrameError::FragmentedControl)
    );
    let long_ping = masked(true, OpCode::Ping, &[0; 126]);
    assert_eq!(
        first_error(&long_ping, 1000),
        Some(FrameError::ControlTooLong(126))
    );
    let huge = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(first_error(&huge, 100), Some(FrameError::LengthOverflow));
    assert_eq!(
        first_error(&masked(true, OpCode::Continuation, b"x"), 100),
        Some(FrameError::UnexpectedContinuation)
    );
    let mut twice = masked(false, OpCode::Text, b"a");
    twice.extend(masked(true, OpCode::Text, b"b"));
    assert_eq!(
        first_error(&twice, 100),
        Some(FrameError::UnfinishedMessage)
    );
    for e in [FrameError::ReservedBits, FrameError::Unmasked] {
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn non_minimal_lengths_are_accepted() {
    // "Hi" with a 16-bit and a 64-bit length.
    let mut input = vec![0x81, 0xfe, 0, 2, 0, 0, 0, 0, b'H', b'i'];
    input.extend([0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, b'H', b'i']);
    let mut d = Decoder::new(100);
    assert_eq!(
        all(&mut d, &input),
        vec![
            Ok(Message::Text("Hi".into())),
            Ok(Message::Text("Hi".into()))
        ]
    );
}

#[test]
fn invalid_utf8_is_refused_on_the_whole_message() {
    // "é" split across two fragments is valid.
    let mut split = masked(false, OpCode::Text, &[0xc3]);
    split.extend(masked(true, OpCode::Continuation, &[0xa9]));
    let mut d = Decoder::new(100);
    assert_eq!(all(&mut d, &split), vec![Ok(Message::Text("é".into()))]);
    let bad = masked(true, OpCode::Text, &[b'4', b'2', 0xc3, 0x28]);
    let e = first_error(&bad, 100);
    assert_eq!(e, Some(FrameError::InvalidUtf8));
    assert_eq!(e.map(|e| e.close_code()), Some(1007));
}

#[test]
fn a_fragmented_text_fails_at_the_frame_that_makes_it_invalid() {
    // Autobahn 6.4.x: the first fragment is invalid; the message is failed
    // before its end (which may never come).
    let first = masked(
        false,
        OpCode::Text,
        &[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xf4, 0x90],
    );
    let mut d = Decoder::new(100);
    assert_eq!(all(&mut d, &first), vec![Err(FrameError::InvalidUtf8)]);
    // A continuation that makes it invalid fails at once too.
    let mut d = Decoder::new(100);
    assert_eq!(
        all(&mut d, &masked(false, OpCode::Text, b"ok \xc3")),
        vec![]
    );
    assert_eq!(
        all(&mut d, &masked(false, OpCode::Continuation, &[0x28])),
        vec![Err(FrameError::InvalidUtf8)]
    );
    // A character cut at the end of a fragment waits for the next one.
    let mut d = Decoder::new(100);
    let mut input = masked(false, OpCode::Text, &[0xe2, 0x82]);
    input.extend(masked(false, OpCode::Continuation, &[0xac, b' ']));
    input.extend(masked(true, OpCode::Continuation, b"!"));
    assert_eq!(all(&mut d, &input), vec![Ok(Message::Text("€ !".into()))]);
    // Binary messages are not checked.
    let mut d = Decoder::new(100);
    let mut input = masked(false, OpCode::Binary, &[0xff]);
    input.extend(masked(true, OpCode::Continuation, &[0xfe]));
    assert_eq!(
        all(&mut d, &input),
        vec![Ok(Message::Binary(vec![0xff, 0xfe]))]
    );
}

#[test]
fn close_payloads() {
    let decode = |payload: &[u8]| {
        Decoder::new(100)
            .decode(&masked(true, OpCode::Close, payload))
            .next()
    };
    assert_eq!(decode(&[]), Some(Ok(Message::Close(None))));
    assert_eq!(decode(&[0x03]), Some(Err(FrameError::TruncatedClose)));
    assert_eq!(
        decode(&[0x0f, 0xa0]),
        Some(Ok(Message::Close(Some((4000, String::new())))))
    );
    assert_eq!(
        decode(&[0x03, 0xed]),
        Some(Err(FrameError::InvalidCloseCode(1005)))
    );
    assert_eq!(
        decode(&[0x03, 0xe8, 0xff]),
        Some(Err(FrameError::InvalidUtf8))
    );
    let mut out = Vec::new();
    let reason = "é".repeat(100);
    encode_close(&mut out, Some((1002, &reason)));
    assert_eq!(out[..2], [0x88, 124]);
    assert_eq!(out[2..4], [0x03, 0xea]);
    assert!(std::str::from_utf8(&out[4..]).is_ok());
    out.clear();
    encode_close(&mut out, None);
    assert_eq!(out, [0x88, 0]);
}

#[test]
fn too_large_is_refused_from_the_header() {
    // Only the header of a 1 MB frame has arrived: refused already.
    let header = [0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4];
    let e = first_error(&header, 1000);
    assert_eq!(
        e,
        Some(FrameError::TooLarge {
            size: 0x10_0000,
            max: 1000
        })
    );
    assert_eq!(e.map(|e| e.close_code()), Some(1009));
    // Fragments that add up past the limit.
    let mut input = masked(false, OpCode::Binary, &[0; 600]);
    input.extend(&masked(true, OpCode::Continuation, &[0; 600])[..8]);
    assert_eq!(
        first_error(&input, 1000),
        Some(FrameError::TooLarge {
            size: 1200,
            max: 1000
        })
    );
    // Exactly the limit is fine.
    let mut d = Decoder::new(1000);
    let exact = masked(true, OpCode::Binary, &[9; 1000]);
    assert_eq!(
        all(&mut d, &exact),
        vec![Ok(Message::Binary(vec![9; 1000]))]
    );
}

#[test]
fn an_error_ends_the_call_and_discards_what_was_held() {
    let mut input = masked(false, OpCode::Text, b"a");
    input.extend(masked(true, OpCode::Text, b"b"));
    input.extend(masked(true, OpCode::Text, b"c"));
    let mut d = Decoder::new(100);
    let got = all(&mut d, &input);
    assert_eq!(got, vec![Err(FrameError::UnfinishedMessage)]);
    assert_eq!(d.allocated(), 0);
    assert!(!d.in_message());
}
