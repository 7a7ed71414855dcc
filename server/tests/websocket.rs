//! The server's RFC 6455 framing, spoken byte by byte over a raw TCP socket:
//! fragmentation, frames split across reads and many in one read, pings, the
//! closing handshake, and the close codes of invalid frames.

mod common;

use std::time::Duration;

use common::{PATIENCE, TestServer};
use protocol::websocket::{OpCode, encode_masked};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// A client frame with FIN set.
fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_masked(&mut out, true, opcode, MASK, payload);
    out
}

fn fragment(first: bool, fin: bool, payload: &[u8]) -> Vec<u8> {
    let opcode = if first {
        OpCode::Text
    } else {
        OpCode::Continuation
    };
    let mut out = Vec::new();
    encode_masked(&mut out, fin, opcode, MASK, payload);
    out
}

/// What the server sent: a frame's opcode bits and payload, or the end.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Frame(u8, Vec<u8>),
    End,
}

struct Raw {
    stream: TcpStream,
}

impl Raw {
    /// Upgrades by hand and checks the `101` and `Sec-WebSocket-Accept`.
    async fn open(server: &TestServer) -> Raw {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            stream.read_exact(&mut byte).await.expect("response head");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        Raw { stream }
    }

    /// Opens and joins `/`, reading the open packet, `40{..}` and the greeting.
    async fn connected(server: &TestServer) -> Raw {
        let mut c = Raw::open(server).await;
        assert!(c.text().await.starts_with("0{"));
        c.write(&frame(OpCode::Text, b"40")).await;
        assert!(c.text().await.starts_with("40{"));
        assert!(c.text().await.starts_with(r#"42["news""#));
        assert!(c.text().await.starts_with(r#"42["handshake""#));
        c
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    async fn recv(&mut self) -> Got {
        tokio::time::timeout(PATIENCE, self.read_frame())
            .await
            .expect("a frame or the end in time")
    }

    async fn read_frame(&mut self) -> Got {
        let mut head = [0u8; 2];
        if self.stream.read_exact(&mut head).await.is_err() {
            return Got::End;
        }
        assert_eq!(head[0] & 0x70, 0, "no reserved bits");
        assert_eq!(head[0] & 0x80, 0x80, "the server does not fragment");
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => u64::from(self.stream.read_u16().await.expect("length")),
            127 => self.stream.read_u64().await.expect("length"),
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).expect("length")];
        self.stream.read_exact(&mut payload).await.expect("payload");
        Got::Frame(head[0] & 0x0f, payload)
    }

    /// The next text message, skipping nothing.
    async fn text(&mut self) -> String {
        match self.recv().await {
            Got::Frame(0x1, payload) => String::from_utf8(payload).expect("UTF-8"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The close frame's code and reason (skipping data frames), then the end.
    async fn close_code(&mut self) -> u16 {
        loop {
            match self.recv().await {
                Got::Frame(0x8, payload) => {
                    assert!(payload.len() >= 2, "a close code: {payload:?}");
                    std::str::from_utf8(&payload[2..]).expect("a UTF-8 reason");
                    assert_eq!(self.recv().await, Got::End, "the end after the close");
                    return u16::from_be_bytes([payload[0], payload[1]]);
                }
                Got::Frame(..) => {}
                Got::End => panic!("the connection ended without a close frame"),
            }
        }
    }

    /// An ack round trip through the echo.
    async fn round_trip(&mut self, id: u32) {
        let event = format!(r#"42{id}["probe",{id}]"#);
        self.write(&frame(OpCode::Text, event.as_bytes())).await;
        assert_eq!(self.text().await, format!(r#"42["probe",{id}]"#));
        assert_eq!(self.text().await, format!("43{id}[{id}]"));
    }
}

#[tokio::test]
async fn frames_split_across_reads_and_fragmented_messages() {
    let server = TestServer::default().await;
    let mut c = Raw::open(&server).await;
    assert!(c.text().await.starts_with("0{"));
    // "40" one byte per write, with pauses so each is its own read.
    for byte in frame(OpCode::Text, b"40") {
        c.write(&[byte]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(c.text().await.starts_with("40{"));
    c.text().await;
    c.text().await;
    // An event in three fragments with a ping between them: the pong comes
    // first, then the echo of the whole message.
    let mut bytes = fragment(true, false, br#"421["probe","#);
    bytes.extend(frame(OpCode::Ping, b"are you there"));
    bytes.extend(fragment(false, false, b"\"fragmented"));
    bytes.extend(fragment(false, true, br#""]"#));
    c.write(&bytes).await;
    assert_eq!(c.recv().await, Got::Frame(0xa, b"are you there".to_vec()));
    assert_eq!(c.text().await, r#"42["probe","fragmented"]"#);
    assert_eq!(c.text().await, r#"431["fragmented"]"#);
    c.round_trip(2).await;
    server.stop().await;
}

#[tokio::test]
async fn many_messages_in_one_write_are_all_answered_in_order() {
    let server = TestServer::default().await;
    let mut c = Raw::connected(&server).await;
    let mut burst = Vec::new();
    for id in 0..500u32 {
        burst.extend(frame(
            OpCode::Text,
            format!(r#"42{id}["e",{id}]"#).as_bytes(),
        ));
    }
    // Large messages too, so that some frames straddle the reads.
    let big = "y".repeat(100_000);
    burst.extend(frame(
        OpCode::Text,
        format!(r#"42500["e","{big}"]"#).as_bytes(),
    ));
    c.write(&burst).await;
    for id in 0..500u32 {
        assert_eq!(c.text().await, format!(r#"42["e",{id}]"#));
        assert_eq!(c.text().await, format!("43{id}[{id}]"));
    }
    assert_eq!(c.text().await, format!(r#"42["e","{big}"]"#));
    assert_eq!(c.text().await, format!(r#"43500["{big}"]"#));
    c.round_trip(501).await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_close_is_answered_with_its_code() {
    let server = TestServer::default().await;
    let mut c = Raw::connected(&server).await;
    let mut close = 4000u16.to_be_bytes().to_vec();
    close.extend(b"bye");
    c.write(&frame(OpCode::Close, &close)).await;
    assert_eq!(c.close_code().await, 4000);
    server.stop().await;
}

#[tokio::test]
async fn invalid_frames_close_with_the_rfc_codes() {
    let server = TestServer::default().await;
    let mut bystander = Raw::connected(&server).await;
    let unmasked = vec![0x81, 0x02, b'4', b'2'];
    let mut reserved_bits = frame(OpCode::Text, b"42");
    reserved_bits[0] |= 0x40;
    let mut reserved_opcode = frame(OpCode::Text, b"42");
    reserved_opcode[0] = 0x83;
    let long_ping = frame(OpCode::Ping, &[0; 126]);
    let continuation = fragment(false, true, b"42");
    let mut unfinished = fragment(true, false, b"4");
    unfinished.extend(frame(OpCode::Text, b"2"));
    let bad_close = frame(OpCode::Close, &[0x03]);
    let invalid_utf8 = frame(OpCode::Text, &[b'4', b'2', 0xc3, 0x28]);
    // Only the header of a 2 MB frame: refused without waiting for its payload.
    let mut too_large = vec![0x81, 0xff];
    too_large.extend(2_000_000u64.to_be_bytes());
    too_large.extend(MASK);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", unmasked, 1002),
        ("reserved bits", reserved_bits, 1002),
        ("reserved opcode", reserved_opcode, 1002),
        ("ping of 126 bytes", long_ping, 1002),
        ("continuation first", continuation, 1002),
        ("text inside a fragmented message", unfinished, 1002),
        ("close of 1 byte", bad_close, 1002),
        ("invalid UTF-8", invalid_utf8, 1007),
        ("too large", too_large, 1009),
    ];
    for (i, (name, bytes, code)) in cases.into_iter().enumerate() {
        let mut c = Raw::connected(&server).await;
        c.write(&bytes).await;
        assert_eq!(c.close_code().await, code, "case {name:?}");
        bystander.round_trip(i as u32).await;
    }
    server.stop().await;
}
