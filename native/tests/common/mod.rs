//! Scenarios both servers must pass — duplex's (in-process) and the official Node
//! `socket.io` one (in `interop/`) — run by the native client over each transport
//! mode.

#![allow(dead_code)] // each test binary uses a different part

use std::time::Duration;

use duplex_native::{Client, Incoming, Options, Transport, Transports, connect};
use protocol::app::{MyData, MyOtherEvent, News, NewsItem};
use protocol::socketio::{placeholder, placeholder_num};
use serde_json::{Value, json};

/// How long to wait for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub const MODES: [Transports; 3] = [
    Transports::WebSocketOnly,
    Transports::PollingOnly,
    Transports::PollingThenUpgrade,
];

/// What the server sends on connection besides `news`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// The Node tutorial server: `news` only.
    NewsOnly,
    /// duplex: `news`, then `handshake`.
    NewsThenHandshake,
}

/// Logs to the test's output, filtered by `RUST_LOG` (nothing by default).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub async fn connect_with(url: &str, transports: Transports) -> Client {
    init_tracing();
    let options = Options {
        transports,
        ..Options::default()
    };
    tokio::time::timeout(PATIENCE, connect(url, options))
        .await
        .unwrap_or_else(|_| panic!("connect over {transports:?} timed out"))
        .unwrap_or_else(|e| panic!("connect over {transports:?}: {e}"))
}

/// The next event, within [`PATIENCE`].
pub async fn next(client: &mut Client) -> Incoming {
    tokio::time::timeout(PATIENCE, client.next_event())
        .await
        .expect("an event in time")
        .expect("the connection is open")
}

/// The greeting: `news` {"hello":"world"} (then duplex's `handshake`).
pub async fn expect_greeting(client: &mut Client, greeting: Greeting) -> Option<Incoming> {
    let news = next(client).await;
    assert_eq!(news.name, "news");
    assert_eq!(news.args[0], json!({"hello": "world"}));
    // With connection state recovery on, the server appends the offset.
    assert!(
        news.args.len() == 1 || (news.args.len() == 2 && news.args[1].is_string()),
        "{:?}",
        news.args
    );
    assert_eq!(
        news.decode::<News>().expect("typed news"),
        NewsItem {
            hello: "world".into(),
            from: None,
            channel: None,
        }
    );
    match greeting {
        Greeting::NewsOnly => None,
        Greeting::NewsThenHandshake => {
            let handshake = next(client).await;
            assert_eq!(handshake.name, "handshake");
            Some(handshake)
        }
    }
}

/// The tutorial's exchange, an echo, acks and a binary round trip over one
/// transport mode.
pub async fn tutorial_exchange(url: &str, transports: Transports, greeting: Greeting) {
    let mut client = connect_with(url, transports).await;
    assert!(!client.sid().is_empty());
    if transports == Transports::WebSocketOnly {
        assert_eq!(client.transport(), Transport::WebSocket);
    }
    expect_greeting(&mut client, greeting).await;

    // The tutorial: `my other event` {"my":"data"}, echoed.
    client
        .emit_event::<MyOtherEvent>(&MyData { my: "data".into() })
        .await
        .expect("emit");
    let echo = next(&mut client).await;
    assert_eq!(echo.name, "my other event");
    assert_eq!(echo.args, vec![json!({"my": "data"})]);
    assert_eq!(
        echo.decode::<MyOtherEvent>().expect("typed echo"),
        MyData { my: "data".into() }
    );

    // Any event: echoed, and acked with the same arguments.
    let args = vec![json!(1), json!("two"), json!({"three": [3, null, true]})];
    let ack = client
        .emit_with_ack("question", args.clone())
        .await
        .expect("acked");
    assert_eq!(ack.args, args);
    assert!(ack.attachments.is_empty());
    let echo = next(&mut client).await;
    assert_eq!((echo.name.as_str(), &echo.args), ("question", &args));
    assert_eq!(echo.ack, None);

    let ack = client.emit_with_ack("empty", vec![]).await.expect("acked");
    assert_eq!(ack.args, Vec::<Value>::new());
    assert_eq!(next(&mut client).await.name, "empty");

    // Binary: a BINARY_EVENT comes back with its bytes.
    let bytes = vec![0u8, 1, 2, 0x1e, 0xff, b'b'];
    client
        .emit_binary(
            "binary",
            vec![json!("label"), json!({"data": placeholder(0)})],
            vec![bytes.clone()],
        )
        .await
        .expect("emit binary");
    let echo = next(&mut client).await;
    assert_eq!(echo.name, "binary");
    assert_eq!(echo.args[0], json!("label"));
    assert_eq!(placeholder_num(&echo.args[1]["data"]), Some(0), "{echo:?}");
    assert_eq!(echo.attachments, vec![bytes]);

    // Still the same transport unless upgrading.
    match transports {
        Transports::WebSocketOnly => assert_eq!(client.transport(), Transport::WebSocket),
        Transports::PollingOnly => assert_eq!(client.transport(), Transport::Polling),
        Transports::PollingThenUpgrade => {
            assert!(
                client.wait_upgraded(PATIENCE).await,
                "upgraded to websocket"
            );
        }
    }
    client.disconnect().await;
}

/// Connects polling-then-upgrade and at once sends `count` events named `seq`
/// carrying 0, 1, 2...: bursts of nine queued emits then one emit with ack that
/// waits for its answer, so the upgrade (probe, pause, `5`) happens while they
/// flow. Every ack must carry its own number and the echoes must come back in
/// order, none lost or repeated; the transport must end as WebSocket.
///
/// The upgrade may win the race against the first emit; a round counts only if
/// the first emit was queued while still polling, and up to 30 rounds are run
/// until one does.
pub async fn ordered_across_upgrade(url: &str, greeting: Greeting, count: usize) {
    // Against Node about one round in three starts on polling: 30 make a miss
    // vanishingly unlikely (each round takes a few tens of milliseconds).
    const ROUNDS: usize = 30;
    for round in 1..=ROUNDS {
        if ordered_round(url, greeting, count).await {
            eprintln!("round {round}: the burst started on long-polling and ended on websocket");
            return;
        }
    }
    panic!("in {ROUNDS} rounds the upgrade always finished before the first emit");
}

/// One round of [`ordered_across_upgrade`]: whether it straddled the upgrade.
async fn ordered_round(url: &str, greeting: Greeting, count: usize) -> bool {
    let mut client = connect_with(url, Transports::PollingThenUpgrade).await;
    let emitter = client.emitter();
    let producer = tokio::spawn(async move {
        let mut first_on = None;
        for i in 0..count {
            if i % 10 == 9 {
                let ack = emitter
                    .emit_with_ack("seq", vec![json!(i)])
                    .await
                    .unwrap_or_else(|e| panic!("ack {i}: {e}"));
                assert_eq!(ack.args, vec![json!(i)]);
            } else {
                emitter
                    .emit("seq", vec![json!(i)])
                    .await
                    .unwrap_or_else(|e| panic!("emit {i}: {e}"));
            }
            // Read after the client's task took the emit: if still polling, the
            // emit went out by POST or waited out the upgrade's pause.
            first_on.get_or_insert(emitter.transport());
        }
        first_on
    });
    expect_greeting(&mut client, greeting).await;
    for expected in 0..count {
        let echo = next(&mut client).await;
        assert_eq!(echo.name, "seq");
        assert_eq!(echo.args, vec![json!(expected)], "echo out of order");
    }
    let first_on = tokio::time::timeout(PATIENCE, producer)
        .await
        .expect("producer in time")
        .expect("producer ok");
    assert!(
        client.wait_upgraded(PATIENCE).await,
        "upgraded to websocket"
    );
    // After the upgrade, one more round trip on the WebSocket.
    let ack = client
        .emit_with_ack("after", vec![json!("upgrade")])
        .await
        .expect("ack after upgrade");
    assert_eq!(ack.args, vec![json!("upgrade")]);
    assert_eq!(next(&mut client).await.name, "after");
    client.disconnect().await;
    first_on == Some(Transport::Polling)
}

/// 50 emits with ack at once, from as many tasks, while the upgrade happens:
/// every one is acked with its own arguments and every echo arrives once.
pub async fn concurrent_acks_during_upgrade(url: &str, greeting: Greeting) {
    let mut client = connect_with(url, Transports::PollingThenUpgrade).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let emitter = client.emitter();
            tokio::spawn(async move {
                let ack = emitter
                    .emit_with_ack("burst", vec![json!(i)])
                    .await
                    .unwrap_or_else(|e| panic!("ack {i}: {e}"));
                assert_eq!(ack.args, vec![json!(i)]);
            })
        })
        .collect();
    expect_greeting(&mut client, greeting).await;
    let mut seen = [false; 50];
    for _ in 0..50 {
        let echo = next(&mut client).await;
        assert_eq!(echo.name, "burst");
        let i = echo.args[0].as_u64().expect("a number");
        let slot = seen
            .get_mut(usize::try_from(i).expect("small"))
            .expect("in range");
        assert!(!*slot, "echo {i} twice");
        *slot = true;
    }
    for task in tasks {
        task.await.expect("acked");
    }
    assert!(
        client.wait_upgraded(PATIENCE).await,
        "upgraded to websocket"
    );
    client.disconnect().await;
}
