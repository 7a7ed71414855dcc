//! The native client against duplex's own server, started in-process on
//! 127.0.0.1:0, over WebSocket, long-polling, and polling upgraded to WebSocket.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Greeting, MODES, PATIENCE, connect_with, expect_greeting, next};
use duplex_native::{Error, Options, Transport, Transports, connect};
use duplex_server::Config;
use protocol::app::{Handshake, News, NewsItem, Publish, PublishNews};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct TestServer {
    url: String,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start() -> TestServer {
        TestServer::start_with(Config::default()).await
    }

    async fn start_with(config: Config) -> TestServer {
        let dist = std::env::temp_dir().join("duplex-native-test-dist");
        std::fs::create_dir_all(&dist).expect("temp dist folder");
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        let listener = duplex_server::bind(addr).await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let shutdown = CancellationToken::new();
        let config = Config { dist, ..config };
        let task = tokio::spawn(duplex_server::run(listener, config, shutdown.clone()));
        TestServer {
            url: format!("http://{addr}"),
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server ran");
    }
}

#[tokio::test]
async fn tutorial_echo_ack_and_binary_over_each_transport() {
    let server = TestServer::start().await;
    for mode in MODES {
        common::tutorial_exchange(&server.url, mode, Greeting::NewsThenHandshake).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn handshake_event_describes_the_connection() {
    let server = TestServer::start().await;
    for mode in MODES {
        let mut client = connect_with(&server.url, mode).await;
        let handshake = expect_greeting(&mut client, Greeting::NewsThenHandshake)
            .await
            .expect("duplex sends handshake");
        let info = handshake
            .decode::<Handshake>()
            .expect("typed handshake info");
        assert!(
            info.request.starts_with("GET /socket.io/?EIO=4&transport="),
            "{info:?}"
        );
        assert!(!info.sid.is_empty());
        assert_eq!((info.ping_interval, info.ping_timeout), (25_000, 20_000));
        if mode == Transports::WebSocketOnly {
            assert!(info.request.contains("transport=websocket"), "{info:?}");
            assert_eq!(info.upgrade.to_lowercase(), "websocket");
            assert_eq!(info.sec_websocket_version, "13");
            assert!(!info.sec_websocket_accept.is_empty());
        }
        client.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn publish_reaches_every_client() {
    let server = TestServer::start().await;
    for (a_mode, b_mode) in [
        (Transports::WebSocketOnly, Transports::PollingOnly),
        (Transports::PollingOnly, Transports::PollingThenUpgrade),
        (Transports::PollingThenUpgrade, Transports::WebSocketOnly),
    ] {
        let mut a = connect_with(&server.url, a_mode).await;
        let mut b = connect_with(&server.url, b_mode).await;
        expect_greeting(&mut a, Greeting::NewsThenHandshake).await;
        expect_greeting(&mut b, Greeting::NewsThenHandshake).await;
        let publish = Publish {
            text: format!("from {a_mode:?} to {b_mode:?}"),
            channel: None,
        };
        let args = protocol::event::encode::<PublishNews>(&publish).expect("encodes");
        let ack = a.emit_with_ack("publish", args).await.expect("acked");
        let delivered = ack.args[0]["delivered"].as_u64().expect("delivered count");
        assert!(delivered >= 2, "{ack:?}");
        let expected = NewsItem {
            hello: publish.text.clone(),
            from: Some(a.sid()),
            channel: None,
        };
        for client in [&mut a, &mut b] {
            let news = next(client).await;
            assert!(news.is::<News>(), "{news:?}");
            assert_eq!(news.decode::<News>().expect("typed news"), expected);
        }
        a.disconnect().await;
        b.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn nothing_lost_or_reordered_across_the_upgrade() {
    let server = TestServer::start().await;
    common::ordered_across_upgrade(&server.url, Greeting::NewsThenHandshake, 100).await;
    common::concurrent_acks_during_upgrade(&server.url, Greeting::NewsThenHandshake).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_namespace_is_refused() {
    let server = TestServer::start().await;
    for mode in MODES {
        let options = Options {
            transports: mode,
            namespace: "/nope".into(),
            ..Options::default()
        };
        match connect(&server.url, options).await {
            Err(Error::ConnectRefused(message)) => assert!(!message.is_empty()),
            other => panic!("expected a refusal over {mode:?}, got {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn no_server_is_a_closed_error_and_emits_after_disconnect_fail() {
    // A port nobody listens on (bound, then released).
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    for mode in MODES {
        let options = Options {
            transports: mode,
            ..Options::default()
        };
        let result = tokio::time::timeout(PATIENCE, connect(&format!("http://{addr}"), options))
            .await
            .expect("fails fast");
        assert!(matches!(result, Err(Error::Closed(_))), "{result:?}");
    }

    let server = TestServer::start().await;
    let client = connect_with(&server.url, Transports::WebSocketOnly).await;
    assert_eq!(client.transport(), Transport::WebSocket);
    let emitter = client.emitter();
    client.disconnect().await;
    assert!(matches!(
        emitter.emit("late", vec![json!(1)]).await,
        Err(Error::Closed(_))
    ));
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_keeps_the_session_alive() {
    // Pings every 100 ms, 100 ms to answer: a client that does not pong, over
    // either transport, is dropped within a fifth of a second.
    let server = TestServer::start_with(Config {
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    let mut clients = Vec::new();
    for mode in MODES {
        let mut client = connect_with(&server.url, mode).await;
        expect_greeting(&mut client, Greeting::NewsThenHandshake).await;
        clients.push(client);
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for client in clients {
        assert_eq!(client.close_reason(), None);
        let ack = client
            .emit_with_ack("still there", vec![json!(true)])
            .await
            .expect("acked after many pings");
        assert_eq!(ack.args, vec![json!(true)]);
        client.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn server_shutdown_ends_every_client() {
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for mode in MODES {
        let mut client = connect_with(&server.url, mode).await;
        expect_greeting(&mut client, Greeting::NewsThenHandshake).await;
        clients.push(client);
    }
    server.stop().await;
    for mut client in clients {
        let end = tokio::time::timeout(PATIENCE, client.next_event())
            .await
            .expect("the client sees the close in time");
        assert_eq!(end, None);
        assert!(client.close_reason().is_some());
        assert!(matches!(
            client.emit("late", vec![]).await,
            Err(Error::Closed(_))
        ));
    }
}

#[tokio::test]
async fn a_full_event_buffer_holds_the_reading_back_without_losing_anything() {
    let server = TestServer::start().await;
    for mode in MODES {
        let options = Options {
            transports: mode,
            event_buffer: 2,
            ..Options::default()
        };
        let mut client = connect(&server.url, options).await.expect("connects");
        for i in 0..40 {
            client.emit("flood", vec![json!(i)]).await.expect("queued");
        }
        // Nobody reads for a while: the client stops reading, nothing is dropped.
        tokio::time::sleep(Duration::from_millis(300)).await;
        expect_greeting(&mut client, Greeting::NewsThenHandshake).await;
        for i in 0..40 {
            let echo = next(&mut client).await;
            assert_eq!((echo.name.as_str(), &echo.args), ("flood", &vec![json!(i)]));
        }
        client.disconnect().await;
    }
    server.stop().await;
}
