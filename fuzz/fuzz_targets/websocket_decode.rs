//! WebSocket framing: arbitrary client bytes, split into arbitrary reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::websocket::{Decoder, Message};

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the read size, how many messages the caller takes per
    // read (0: all) and the size limit; the rest is what the client sent.
    let [read, take, max, bytes @ ..] = data else {
        return;
    };
    let read = usize::from(*read).max(1);
    let mut decoder = Decoder::new(usize::from(*max) * 64);
    for chunk in bytes.chunks(read) {
        let messages: Vec<_> = match *take {
            0 => decoder.decode(chunk).collect(),
            n => decoder.decode(chunk).take(usize::from(n % 4)).collect(),
        };
        for message in messages {
            match message {
                Ok(Message::Ping(p) | Message::Pong(p)) => assert!(p.len() <= 125),
                Ok(Message::Close(Some((_, reason)))) => assert!(reason.len() <= 123),
                Ok(_) => {}
                Err(_) => {
                    // The decoder discarded everything it held.
                    assert_eq!(decoder.pending_len(), 0);
                    return;
                }
            }
        }
    }
    assert!(decoder.pending_len() <= bytes.len());
});
