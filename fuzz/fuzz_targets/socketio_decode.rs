//! Socket.IO: packets (text headers, then binary attachments) from arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::socketio::{Decoder, Limits, Packet};

fuzz_target!(|data: &[u8]| {
    // The first byte says how the rest is split: a text header, then attachments.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (head, tail) = rest.split_at(at);
    let Ok(text) = std::str::from_utf8(head) else {
        return;
    };
    if let Ok(packet) = Packet::decode(text, &Limits::default()) {
        let (encoded, _) = packet.encode();
        assert_eq!(Packet::decode(&encoded, &Limits::default()), Ok(packet));
    }
    let mut decoder = Decoder::new(Limits::default());
    let _ = decoder.feed_text(text);
    for chunk in tail.chunks(7) {
        let _ = decoder.feed_binary(chunk.to_vec());
    }
});
