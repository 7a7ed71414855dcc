//! The transport machine driven step by step: time in microseconds, no sockets.

use super::*;

const OPEN_TIMEOUT: Duration = Duration::from_millis(400);
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

fn us(n: u64) -> Time {
    Duration::from_micros(n)
}

fn machine(transports: Transports) -> ClientTransport {
    ClientTransport::new(
        TransportConfig {
            transports,
            open_timeout: OPEN_TIMEOUT,
            probe_timeout: PROBE_TIMEOUT,
            max_queued: None,
            seed: 0xab,
        },
        PathMemory::default(),
    )
}

fn steps(m: &mut ClientTransport) -> Vec<Step> {
    steps_at(m, us(0))
}

fn steps_at(m: &mut ClientTransport, now: Time) -> Vec<Step> {
    std::iter::from_fn(|| m.poll_step(now)).collect()
}

fn text(s: &str) -> Frame {
    Frame::Text(s.to_owned())
}

fn open_packet(upgrades: &[&str], max_payload: u64) -> OpenPacket {
    OpenPacket {
        sid: "s1".to_owned(),
        upgrades: upgrades.iter().map(|&u| u.to_owned()).collect(),
        ping_interval: 25_000,
        ping_timeout: 20_000,
        max_payload,
    }
}

fn open_step(transport: Transport, t: Option<&str>, fallback: Option<&str>) -> Step {
    Step::Open {
        transport,
        t: t.map(str::to_owned),
        fallback: fallback.map(str::to_owned),
    }
}

fn get(t: &str) -> Step {
    Step::Get {
        sid: "s1".to_owned(),
        t: t.to_owned(),
    }
}

fn post(t: &str, payload: &str) -> Step {
    Step::Post {
        sid: "s1".to_owned(),
        t: t.to_owned(),
        payload: payload.to_owned(),
    }
}

fn probe() -> Step {
    Step::Probe {
        sid: "s1".to_owned(),
        request: text("2probe"),
    }
}

fn lost(why: &str) -> Step {
    Step::Lost(Failure::Transport(why.to_owned()))
}

/// A polling session of `m` past its handshake (the GET that brought it done),
/// with `upgrades` offered: returns the steps that followed.
fn polling_open(m: &mut ClientTransport, upgrades: &[&str], max_payload: u64) -> Vec<Step> {
    m.open(us(0));
    assert_eq!(
        steps(m),
        vec![open_step(Transport::Polling, Some("ab.1"), None)]
    );
    let handshake = open_packet(upgrades, max_payload);
    let body = Packet::Open(handshake.clone()).encode_text();
    assert_eq!(m.get_done(Ok(&body)), vec![text(&body)]);
    m.opened(&handshake);
    steps(m)
}

#[test]
fn websocket_only_sends_every_frame_at_once_and_a_failure_loses_it() {
    let mut m = machine(Transports::WebSocketOnly);
    m.open(us(0));
    assert_eq!(
        steps(&mut m),
        vec![open_step(Transport::WebSocket, None, None)]
    );
    assert_eq!(m.transport(), Some(Transport::WebSocket));
    m.opened(&open_packet(&[], 1_000_000));
    m.send(text("40"));
    m.send(Frame::Binary(vec![1]));
    assert_eq!(
        steps(&mut m),
        vec![Step::Send(text("40")), Step::Send(Frame::Binary(vec![1]))]
    );
    // Failures of things that are not the transport are not its business.
    assert!(m.get_done(Err("stale".to_owned())).is_empty());
    m.post_done(Err("stale".to_owned()));
    m.probe_done(Ok(text("3probe")));
    assert_eq!(steps(&mut m), vec![]);
    m.websocket_failed("reset".to_owned(), us(5));
    assert_eq!(steps(&mut m), vec![Step::Close, lost("reset")]);
    assert_eq!(m.transport(), None);
    // The session then reports the loss: nothing more to close.
    m.close();
    m.send(text("42[\"dropped\"]"));
    assert_eq!(steps(&mut m), vec![]);
}

#[test]
fn polling_keeps_one_get_waiting_and_one_post_at_a_time() {
    let mut m = machine(Transports::PollingOnly);
    m.open(us(0));
    assert_eq!(
        steps(&mut m),
        vec![open_step(Transport::Polling, Some("ab.1"), None)]
    );
    // Frames before the open packet wait for the sid.
    m.send(text("40"));
    assert_eq!(steps(&mut m), vec![]);
    let handshake = open_packet(&["websocket"], 1_000_000);
    let body = format!("{}\u{1e}6", Packet::Open(handshake.clone()).encode_text());
    assert_eq!(m.get_done(Ok(&body)).len(), 2);
    m.opened(&handshake);
    // POST first, then the GET; no probe: polling only.
    assert_eq!(steps(&mut m), vec![post("ab.2", "40"), get("ab.3")]);
    // While the POST is in flight, frames gather for the next one.
    m.send(text("42[\"a\"]"));
    m.send(Frame::Binary(vec![1, 2, 3, 4]));
    assert_eq!(steps(&mut m), vec![]);
    m.post_done(Ok(()));
    assert_eq!(
        steps(&mut m),
        vec![post("ab.4", "42[\"a\"]\u{1e}bAQIDBA==")]
    );
    // An answered GET is replaced at once; an empty answer carries nothing.
    assert_eq!(m.get_done(Ok("")), vec![]);
    assert_eq!(steps(&mut m), vec![get("ab.5")]);
    assert_eq!(m.get_done(Ok("42[\"x\"]")), vec![text("42[\"x\"]")]);
    assert_eq!(steps(&mut m), vec![get("ab.6")]);
    assert_eq!(m.transport(), Some(Transport::Polling));
}

#[test]
fn a_post_splits_at_max_payload() {
    let mut m = machine(Transports::PollingOnly);
    assert_eq!(polling_open(&mut m, &[], 15), vec![get("ab.2")]);
    for s in [r#"42["a"]"#, r#"42["b"]"#, r#"42["c"]"#] {
        m.send(text(s));
    }
    // 7 + 1 + 7 = 15 bytes: two frames, then the third alone.
    assert_eq!(
        steps(&mut m),
        vec![post("ab.3", "42[\"a\"]\u{1e}42[\"b\"]")]
    );
    m.post_done(Ok(()));
    assert_eq!(steps(&mut m), vec![post("ab.4", "42[\"c\"]")]);
    // A frame larger than maxPayload goes alone (the server's refusal says why).
    m.send(text("4 too long for fifteen"));
    m.send(text("4x"));
    m.post_done(Ok(()));
    assert_eq!(steps(&mut m), vec![post("ab.5", "4 too long for fifteen")]);
    m.post_done(Ok(()));
    assert_eq!(steps(&mut m), vec![post("ab.6", "4x")]);
}

#[test]
fn a_failed_request_loses_the_transport_and_a_bad_body_is_a_protocol_error() {
    let mut m = machine(Transports::PollingOnly);
    polling_open(&mut m, &[], 100);
    m.send(text("40"));
    assert_eq!(steps(&mut m), vec![post("ab.3", "40")]);
    m.post_done(Err("long-polling POST failed: reset".to_owned()));
    assert_eq!(
        steps(&mut m),
        vec![Step::Close, lost("long-polling POST failed: reset")]
    );

    let mut m = machine(Transports::PollingOnly);
    polling_open(&mut m, &[], 100);
    assert!(m.get_done(Ok("4a\u{1e}")).is_empty());
    assert_eq!(
        steps(&mut m),
        vec![
            Step::Close,
            Step::Lost(Failure::Payload(DecodeError::Empty))
        ]
    );
}

#[test]
fn upgrade_waits_for_the_requests_in_flight_and_nothing_overtakes() {
    let mut m = machine(Transports::PollingThenUpgrade);
    assert_eq!(
        polling_open(&mut m, &["websocket"], 1_000_000),
        vec![get("ab.2"), probe()]
    );
    m.send(text("40"));
    assert_eq!(steps(&mut m), vec![post("ab.3", "40")]);
    // The probe is answered while the GET and the POST are in flight: paused.
    m.probe_done(Ok(text("3probe")));
    m.send(text("42[\"a\"]"));
    assert_eq!(steps(&mut m), vec![]);
    m.post_done(Ok(()));
    // The GET is still out: no new POST, no upgrade yet.
    assert_eq!(steps(&mut m), vec![]);
    assert_eq!(m.get_done(Ok("42[\"news\"]")), vec![text("42[\"news\"]")]);
    m.send(text("42[\"b\"]"));
    assert_eq!(steps(&mut m), vec![Step::Upgrade(text("5"))]);
    // While `5` is being sent, frames still wait.
    m.send(text("42[\"c\"]"));
    assert_eq!(steps(&mut m), vec![]);
    m.upgrade_sent(Ok(()));
    assert_eq!(
        steps(&mut m),
        vec![
            Step::Upgraded,
            Step::Send(text("42[\"a\"]")),
            Step::Send(text("42[\"b\"]")),
            Step::Send(text("42[\"c\"]")),
        ]
    );
    assert_eq!(m.transport(), Some(Transport::WebSocket));
    m.send(text("42[\"d\"]"));
    assert_eq!(steps(&mut m), vec![Step::Send(text("42[\"d\"]"))]);
    // Polling's stale results mean nothing now; the WebSocket failing loses it.
    assert!(m.get_done(Ok("6")).is_empty());
    m.websocket_failed("closed".to_owned(), us(9));
    assert_eq!(steps(&mut m), vec![Step::Close, lost("closed")]);
}

#[test]
fn upgrade_with_nothing_in_flight_goes_at_once() {
    let mut m = machine(Transports::PollingThenUpgrade);
    polling_open(&mut m, &["websocket"], 1_000_000);
    assert_eq!(m.get_done(Ok("")), vec![]);
    m.probe_done(Ok(text("3probe")));
    assert_eq!(steps(&mut m), vec![Step::Upgrade(text("5"))]);
}

#[test]
fn a_failed_probe_leaves_polling_going_and_is_not_repeated() {
    let mut m = machine(Transports::PollingThenUpgrade);
    polling_open(&mut m, &["websocket"], 1_000_000);
    m.probe_done(Err("refused".to_owned()));
    assert_eq!(steps(&mut m), vec![Step::ProbeFailed("refused".to_owned())]);
    assert_eq!(m.get_done(Ok("")), vec![]);
    m.send(text("40"));
    assert_eq!(steps(&mut m), vec![post("ab.3", "40"), get("ab.4")]);

    // A wrong answer fails it too.
    let mut m = machine(Transports::PollingThenUpgrade);
    polling_open(&mut m, &["websocket"], 1_000_000);
    m.probe_done(Ok(text("3nope")));
    assert_eq!(
        steps(&mut m),
        vec![Step::ProbeFailed(
            "the probe was not answered with 3probe: \
             unexpected engine.io packet: invalid probe response"
                .to_owned()
        )]
    );
    // No probe when the server offers none.
    let mut m = machine(Transports::PollingThenUpgrade);
    assert_eq!(polling_open(&mut m, &[], 1_000_000), vec![get("ab.2")]);
}

#[test]
fn a_failed_upgrade_packet_resumes_polling() {
    let mut m = machine(Transports::PollingThenUpgrade);
    polling_open(&mut m, &["websocket"], 1_000_000);
    m.probe_done(Ok(text("3probe")));
    m.send(text("42[\"a\"]"));
    m.get_done(Ok(""));
    assert_eq!(steps(&mut m), vec![Step::Upgrade(text("5"))]);
    m.upgrade_sent(Err("cannot send".to_owned()));
    assert_eq!(
        steps(&mut m),
        vec![
            Step::ProbeFailed("cannot send".to_owned()),
            post("ab.3", "42[\"a\"]"),
            get("ab.4"),
        ]
    );
    assert_eq!(m.transport(), Some(Transport::Polling));
}

#[test]
fn a_cut_during_the_pause_loses_the_transport_with_its_frames() {
    let mut m = machine(Transports::PollingThenUpgrade);
    polling_open(&mut m, &["websocket"], 1_000_000);
    m.probe_done(Ok(text("3probe")));
    m.send(text("42[\"a\"]"));
    assert!(
        m.get_done(Err("long-polling GET failed: reset".to_owned()))
            .is_empty()
    );
    assert_eq!(
        steps(&mut m),
        vec![Step::Close, lost("long-polling GET failed: reset")]
    );
    // The probe's late answer, or its `5`, change nothing.
    m.probe_done(Ok(text("3probe")));
    m.upgrade_sent(Ok(()));
    assert_eq!(steps(&mut m), vec![]);
    assert_eq!(m.transport(), None);
    assert_eq!(m.goodbye(), None);
}

#[test]
fn open_timeout_fails_a_silent_transport() {
    let mut m = machine(Transports::WebSocketOnly);
    m.open(us(1_000));
    steps(&mut m);
    assert_eq!(m.poll_timeout(), Some(us(1_000) + OPEN_TIMEOUT));
    m.handle_timeout(us(400_999));
    assert_eq!(steps(&mut m), vec![]);
    m.handle_timeout(us(401_000));
    assert_eq!(
        steps(&mut m),
        vec![Step::Close, lost("no handshake within 400ms")]
    );
    assert_eq!(m.poll_timeout(), None);

    // The open packet in time clears the deadline.
    let mut m = machine(Transports::PollingOnly);
    polling_open(&mut m, &[], 100);
    assert_eq!(m.poll_timeout(), None);
    m.handle_timeout(us(10_000_000));
    assert_eq!(steps(&mut m), vec![]);

    // A polling handshake that never comes.
    let mut m = machine(Transports::PollingOnly);
    m.open(us(0));
    steps(&mut m);
    m.handle_timeout(us(400_000));
    assert_eq!(
        steps(&mut m),
        vec![Step::Close, lost("no handshake within 400ms")]
    );
}

#[test]
fn a_websocket_failing_before_its_open_packet_falls_back_to_polling() {
    let mut m = machine(Transports::WebSocketOrPolling);
    m.open(us(0));
    assert_eq!(
        steps(&mut m),
        vec![open_step(Transport::WebSocket, None, None)]
    );
    // The WebSocket never answers: the same attempt goes on over polling, with
    // a deadline of its own.
    m.handle_timeout(us(400_000));
    assert_eq!(
        steps(&mut m),
        vec![
            Step::Close,
            open_step(
                Transport::Polling,
                Some("ab.1"),
                Some("no handshake within 400ms")
            ),
        ]
    );
    assert_eq!(m.poll_timeout(), Some(us(800_000)));
    // Polling fails too: the reason names both, and nothing is learnt.
    m.get_done(Err("long-polling GET failed: refused".to_owned()));
    assert_eq!(
        steps(&mut m),
        vec![
            Step::Close,
            lost("no handshake within 400ms; then long-polling GET failed: refused")
        ]
    );
    assert_eq!(m.memory(), PathMemory::default());

    // This time polling works: WebSockets are blocked on the way, and the next
    // session starts on polling.
    m.open(us(1_000_000));
    assert_eq!(
        steps(&mut m),
        vec![open_step(Transport::WebSocket, None, None)]
    );
    m.websocket_failed("the WebSocket connection failed".to_owned(), us(1_000_010));
    assert_eq!(
        steps(&mut m),
        vec![
            Step::Close,
            open_step(
                Transport::Polling,
                Some("ab.2"),
                Some("the WebSocket connection failed")
            ),
        ]
    );
    let handshake = open_packet(&["websocket"], 1_000_000);
    m.get_done(Ok(&Packet::Open(handshake.clone()).encode_text()));
    m.opened(&handshake);
    assert_eq!(m.memory().first(), Transport::Polling);
    // It probes the upgrade; the probe fails and is not tried again.
    assert_eq!(steps(&mut m), vec![get("ab.3"), probe()]);
    m.probe_done(Err("no answer".to_owned()));
    assert_eq!(
        steps(&mut m),
        vec![Step::ProbeFailed("no answer".to_owned())]
    );
    assert!(!m.memory().may_probe());
    // A later failure after the open packet is a loss, not a fallback.
    m.get_done(Err("reset".to_owned()));
    assert_eq!(steps(&mut m), vec![Step::Close, lost("reset")]);

    m.open(us(2_000_000));
    assert_eq!(
        steps(&mut m),
        vec![open_step(Transport::Polling, Some("ab.4"), None)]
    );
    m.get_done(Ok(&Packet::Open(handshake.clone()).encode_text()));
    m.opened(&handshake);
    assert_eq!(steps(&mut m), vec![get("ab.5")]);
}

#[test]
fn a_websocket_failing_after_its_open_packet_is_lost_even_with_fallback() {
    let mut m = machine(Transports::WebSocketOrPolling);
    m.open(us(0));
    steps(&mut m);
    m.opened(&open_packet(&[], 100));
    m.websocket_failed("the WebSocket closed".to_owned(), us(5));
    assert_eq!(
        steps(&mut m),
        vec![Step::Close, lost("the WebSocket closed")]
    );
    assert_eq!(m.memory().first(), Transport::WebSocket);
}

#[test]
fn an_upgrade_after_the_fallback_unblocks_websockets() {
    let mut m = ClientTransport::new(
        TransportConfig {
            transports: Transports::WebSocketOrPolling,
            open_timeout: OPEN_TIMEOUT,
            probe_timeout: PROBE_TIMEOUT,
            max_queued: None,
            seed: 0xab,
        },
        {
            let mut memory = PathMemory::default();
            memory.polling_opened(true);
            memory
        },
    );
    assert_eq!(
        polling_open(&mut m, &["websocket"], 100),
        vec![get("ab.2"), probe()]
    );
    m.probe_done(Ok(text("3probe")));
    m.get_done(Ok(""));
    assert_eq!(steps(&mut m), vec![Step::Upgrade(text("5"))]);
    m.upgrade_sent(Ok(()));
    assert_eq!(steps(&mut m), vec![Step::Upgraded]);
    assert_eq!(m.memory().first(), Transport::WebSocket);
}

#[test]
fn reconnection_opens_a_new_transport_from_scratch() {
    let mut m = machine(Transports::PollingThenUpgrade);
    polling_open(&mut m, &["websocket"], 100);
    m.send(text("40"));
    steps(&mut m);
    // The session reports the transport lost (its own decision: a ping timeout).
    m.send(text("42[\"queued\"]"));
    m.close();
    assert_eq!(steps(&mut m), vec![Step::Close]);
    m.close();
    assert_eq!(steps(&mut m), vec![]);
    // It waits its backoff, then asks for a new transport: a handshake again, a
    // new probe for the new session, nothing of the old one.
    m.open(us(3_000_000));
    assert_eq!(
        steps(&mut m),
        vec![open_step(Transport::Polling, Some("ab.4"), None)]
    );
    assert_eq!(m.poll_timeout(), Some(us(3_000_000) + OPEN_TIMEOUT));
    let handshake = open_packet(&["websocket"], 100);
    m.get_done(Ok(&Packet::Open(handshake.clone()).encode_text()));
    m.opened(&handshake);
    assert_eq!(steps(&mut m), vec![get("ab.5"), probe()]);

    // Opening while a transport is up closes it first.
    m.open(us(4_000_000));
    assert_eq!(
        steps(&mut m),
        vec![
            Step::Close,
            open_step(Transport::Polling, Some("ab.6"), None)
        ]
    );
}

#[test]
fn a_backlog_stops_the_get_until_a_post_drains_it() {
    let mut m = ClientTransport::new(
        TransportConfig {
            transports: Transports::PollingOnly,
            open_timeout: OPEN_TIMEOUT,
            probe_timeout: PROBE_TIMEOUT,
            max_queued: Some(2),
            seed: 0xab,
        },
        PathMemory::default(),
    );
    polling_open(&mut m, &[], 1);
    m.send(text("4a"));
    assert_eq!(steps(&mut m), vec![post("ab.3", "4a")]);
    for s in ["4b", "4c", "4d"] {
        m.send(text(s));
    }
    assert!(m.is_backlogged());
    m.get_done(Ok(""));
    assert_eq!(steps(&mut m), vec![]);
    m.post_done(Ok(()));
    // One frame per POST (maxPayload 1): two still wait, so still no GET.
    assert_eq!(steps(&mut m), vec![post("ab.4", "4b")]);
    m.post_done(Ok(()));
    assert_eq!(steps(&mut m), vec![post("ab.5", "4c"), get("ab.6")]);
    assert!(!m.is_backlogged());
}

#[test]
fn goodbye_posts_what_is_left_on_polling_only() {
    let mut m = machine(Transports::PollingOnly);
    polling_open(&mut m, &[], 1);
    m.send(text("41"));
    m.send(text("1"));
    let first = steps(&mut m);
    assert_eq!(first[0], post("ab.3", "41"));
    // The POST in flight is the shell's to await; then the rest in one POST,
    // whatever maxPayload says.
    m.send(text("4x"));
    assert_eq!(m.goodbye(), Some(post("ab.4", "1\u{1e}4x")));
    assert_eq!(m.goodbye(), None);

    // On a WebSocket the frames are ordinary steps.
    let mut m = machine(Transports::WebSocketOnly);
    m.open(us(0));
    steps(&mut m);
    m.opened(&open_packet(&[], 1));
    m.send(text("1"));
    assert_eq!(m.goodbye(), None);
    assert_eq!(steps(&mut m), vec![Step::Send(text("1"))]);

    // Polling before the open packet: nothing to say goodbye with.
    let mut m = machine(Transports::PollingOnly);
    m.open(us(0));
    m.send(text("1"));
    assert_eq!(m.goodbye(), None);
}

#[test]
fn path_memory_websocket_first_until_polling_works_where_websocket_did_not() {
    let mut memory = PathMemory::default();
    assert_eq!(memory.first(), Transport::WebSocket);
    // The server is down: WebSocket and polling both fail, nothing is learnt.
    // Polling opened on its own (remembered earlier) teaches nothing new either.
    memory.polling_opened(false);
    assert_eq!(memory.first(), Transport::WebSocket);
    // WebSocket failed, polling worked: blocked.
    memory.polling_opened(true);
    assert_eq!(memory.first(), Transport::Polling);
}

#[test]
fn path_memory_one_failed_probe_stops_probing_and_an_upgrade_unblocks() {
    let mut memory = PathMemory::default();
    memory.polling_opened(true);
    assert!(memory.may_probe());
    memory.upgraded();
    assert_eq!(memory.first(), Transport::WebSocket);
    memory.polling_opened(true);
    memory.probe_failed();
    assert!(!memory.may_probe());
    assert_eq!(memory.first(), Transport::Polling);
}

#[test]
fn durations_are_written_in_whole_seconds_or_milliseconds() {
    for (d, text) in [
        (Duration::from_millis(400), "400ms"),
        (Duration::from_secs(20), "20s"),
        (Duration::from_millis(1_500), "1500ms"),
    ] {
        assert_eq!(DisplayDuration(d).to_string(), text);
    }
}

#[test]
fn an_unanswered_probe_fails_at_its_deadline() {
    let mut m = machine(Transports::PollingThenUpgrade);
    m.open(us(0));
    steps(&mut m);
    let handshake = open_packet(&["websocket"], 100);
    m.get_done(Ok(&Packet::Open(handshake.clone()).encode_text()));
    m.opened(&handshake);
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(steps_at(&mut m, us(50_000)), vec![get("ab.2"), probe()]);
    assert_eq!(m.poll_timeout(), Some(us(350_000)));
    m.handle_timeout(us(349_999));
    assert_eq!(steps(&mut m), vec![]);
    m.handle_timeout(us(350_000));
    assert_eq!(
        steps(&mut m),
        vec![Step::ProbeFailed(
            "no answer to the probe within 300ms".to_owned()
        )]
    );
    assert_eq!(m.poll_timeout(), None);
    // Its late answer means nothing; polling goes on, and is not probed again.
    m.probe_done(Ok(text("3probe")));
    m.get_done(Ok(""));
    assert_eq!(steps(&mut m), vec![get("ab.3")]);

    // An answer in time clears the deadline.
    let mut m = machine(Transports::PollingThenUpgrade);
    polling_open(&mut m, &["websocket"], 100);
    m.probe_done(Ok(text("3probe")));
    assert_eq!(m.poll_timeout(), None);
}
