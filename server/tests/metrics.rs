//! `GET /metrics` (issue 16): scraped before and after what a server's
//! operator wants to see — a client connecting, emitting, asking for an ack,
//! a page from a forbidden origin, a client leaving — the values move as they
//! should. Metrics are per process: this file holds one test, so that nothing
//! else in its process moves them meanwhile.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{PATIENCE, RawClient, TestServer, http};
use duplex_server::Config;
use duplex_server::config::{MetricsEndpoint, OriginPolicy};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The samples of a scrape: `name{labels}` → value.
async fn scrape(server: &TestServer) -> HashMap<String, f64> {
    let response = http::get(server.addr, "/metrics").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        response.header("content-type")
    );
    let text = response.text();
    assert!(text.ends_with("# EOF\n"), "a complete exposition: {text}");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or(0.0)
}

/// Scrapes until `check` holds (the counters move as the server's tasks run).
async fn scrape_until(
    server: &TestServer,
    what: &str,
    check: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let samples = scrape(server).await;
        if check(&samples) {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen within {PATIENCE:?}; last scrape: {samples:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const SOCKETS_WS: &str = r#"duplex_sockets{namespace="/",transport="websocket"}"#;
const OPENED: &str = "duplex_connections_opened_total";
const CLOSED: &str = r#"duplex_connections_closed_total{reason="client_closed"}"#;
const EVENT: &str = r#"duplex_events_received_total{namespace="/",event="my other event"}"#;
const ACKS_SENT: &str = "duplex_acks_sent_total";
const PACKETS_IN: &str = r#"duplex_engineio_packets_total{direction="in"}"#;
const BYTES_OUT: &str = r#"duplex_engineio_bytes_total{direction="out"}"#;
const ORIGIN: &str = r#"duplex_refusals_total{reason="origin"}"#;
const TOO_LARGE: &str = r#"duplex_refusals_total{reason="payload_too_large"}"#;

#[tokio::test]
async fn metrics_move_with_connects_emits_refusals_and_disconnects() {
    let server = TestServer::start(Config {
        dist: std::env::temp_dir().join("duplex-no-bundle"),
        origins: OriginPolicy::SameOriginAnd(Vec::new()),
        metrics: MetricsEndpoint::Main,
        ..Config::default()
    })
    .await;
    let before = scrape(&server).await;
    assert_eq!(value(&before, SOCKETS_WS), 0.0);

    let (mut client, _) = RawClient::connect_greeted(&server).await;
    let connected = scrape_until(&server, "a socket on WebSocket", |s| {
        value(s, SOCKETS_WS) == 1.0
    })
    .await;
    assert_eq!(value(&connected, OPENED), value(&before, OPENED) + 1.0);
    assert_eq!(
        value(&connected, r#"duplex_connections{transport="websocket"}"#),
        1.0
    );

    // An event, and one with an ack (the app echoes and acks with the same
    // arguments).
    client.send(r#"42["my other event",{"my":"data"}]"#).await;
    client.send(r#"427["my other event",{"my":"data"}]"#).await;
    assert!(
        client
            .recv_text()
            .await
            .starts_with(r#"42["my other event""#)
    );
    let emitted = scrape_until(&server, "two events and an ack", |s| {
        value(s, EVENT) == value(&before, EVENT) + 2.0
            && value(s, ACKS_SENT) >= value(&before, ACKS_SENT) + 1.0
    })
    .await;
    assert!(value(&emitted, PACKETS_IN) >= value(&before, PACKETS_IN) + 3.0);
    assert!(value(&emitted, BYTES_OUT) > value(&before, BYTES_OUT));

    // A page from another origin is refused, and counted.
    let mut request = server.ws_url().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
    scrape_until(&server, "the origin refusal", |s| {
        value(s, ORIGIN) == value(&before, ORIGIN) + 1.0
    })
    .await;

    // A message past the payload limit over WebSocket: closed with 1009, counted.
    let (mut big, _) = RawClient::connect_greeted(&server).await;
    let payload = "x".repeat(Config::default().max_payload + 1);
    big.send(&format!(r#"42["my other event","{payload}"]"#))
        .await;
    let (code, _) = big.expect_closed(PATIENCE).await.expect("closed");
    assert_eq!(code, 1009);
    scrape_until(&server, "the payload refusal", |s| {
        value(s, TOO_LARGE) == value(&before, TOO_LARGE) + 1.0
    })
    .await;

    // The client leaves: its namespace, then its connection (a close frame).
    client.send("41").await;
    client.ws.close(None).await.expect("close frame sent");
    drop(big);
    // The sockets go when they leave, the connections when their task ends.
    scrape_until(&server, "the sockets and connections gone", |s| {
        value(s, SOCKETS_WS) == 0.0
            && value(s, CLOSED) >= value(&before, CLOSED) + 1.0
            && value(s, r#"duplex_connections{transport="websocket"}"#) == 0.0
    })
    .await;
    server.stop().await;

    // On an address of its own, and not on the app's.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let separate = TestServer::start(Config {
        dist: std::env::temp_dir().join("duplex-no-bundle"),
        metrics: MetricsEndpoint::Separate(metrics_addr),
        ..Config::default()
    })
    .await;
    assert_eq!(http::get(separate.addr, "/metrics").await.status, 404);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match http::request(metrics_addr, "GET", "/metrics", None).await {
            Ok(response) if response.status == 200 => {
                assert!(response.text().contains(OPENED));
                break;
            }
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "no metrics on {metrics_addr}: {:?}",
                other.map(|r| r.status)
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    separate.stop().await;
}
