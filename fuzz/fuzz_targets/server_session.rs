//! The server session fed an arbitrary sequence of frames and clock ticks: it must
//! never panic, and never leave a deadline overdue after handling the time.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use protocol::Frame;
use protocol::session::{ServerConfig, ServerEvent, ServerSession, Transport};

fuzz_target!(|data: &[u8]| {
    let config = ServerConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(1000),
        max_payload: 4096,
        ..ServerConfig::default()
    };
    let transport = if data.first().is_some_and(|b| b & 1 == 0) {
        Transport::Polling
    } else {
        Transport::WebSocket
    };
    let mut session = ServerSession::new("sid".into(), config, transport, Duration::ZERO);
    let mut now = Duration::ZERO;
    // Records: [tag, len, bytes...]; tag picks text/binary/probe/tick.
    let mut rest = data.get(1..).unwrap_or_default();
    while let [tag, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        now += Duration::from_millis(u64::from(*tag >> 2) * 10);
        match tag & 3 {
            0 => {
                let text = String::from_utf8_lossy(body).into_owned();
                let _ = session.handle_frame(Frame::Text(text), now);
            }
            1 => {
                let _ = session.handle_frame(Frame::Binary(body.to_vec()), now);
            }
            2 => {
                let text = String::from_utf8_lossy(body).into_owned();
                let _ = session.handle_probe_frame(Frame::Text(text));
            }
            _ => session.handle_timeout(now),
        }
        session.handle_timeout(now);
        while let Some(event) = session.poll_event() {
            if let ServerEvent::Connect { nsp, .. } = event {
                session.accept_connect(&nsp, "socket");
            }
        }
        while session.poll_transmit().is_some() {}
        assert!(session.poll_timeout().is_none_or(|t| t > now));
    }
});
