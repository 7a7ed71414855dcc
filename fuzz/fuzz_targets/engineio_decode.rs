//! Engine.IO: WebSocket frames and long-polling bodies from arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::engineio::{self, Frame};

fuzz_target!(|data: &[u8]| {
    let _ = engineio::Packet::decode(Frame::Binary(data.to_vec()));
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(packet) = engineio::Packet::decode_text(text) {
            // What decodes re-encodes to something that decodes the same.
            assert_eq!(engineio::Packet::decode(packet.encode()), Ok(packet));
        }
        if let Ok(frames) = engineio::payload_to_frames(text) {
            let body = engineio::frames_to_payload(&frames);
            assert_eq!(engineio::payload_to_frames(&body), Ok(frames));
        }
        let _ = engineio::decode_payload(text);
    }
});
