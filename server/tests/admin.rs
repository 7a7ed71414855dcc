//! The Admin UI's `/admin` namespace on the wire, as `@socket.io/admin-ui`
//! 0.5.1 speaks it (docs/admin-ui-protocol.md): login, what a new admin socket
//! gets and in which order, the events that follow the app's sockets, the
//! commands, read-only and production modes, `server_stats`, and the bundle's
//! routes. The browser test (e2e/tests/admin_ui.rs) drives the real UI.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{PATIENCE, RawClient, TestServer};
use duplex_server::Config;
use duplex_server::admin::{AdminAuth, AdminConfig, AdminMode};
use serde_json::{Value, json};

const PASSWORD: &str = "s3cret password";

fn admin_config(auth: AdminAuth) -> AdminConfig {
    AdminConfig {
        auth,
        readonly: false,
        mode: AdminMode::Development,
        server_id: Some("test-server".into()),
        ui_dist: None,
    }
}

/// Basic auth with a bcrypt hash of [`PASSWORD`] (cost 4: fast).
fn basic() -> AdminAuth {
    AdminAuth::Basic {
        username: "admin".into(),
        password: bcrypt::hash(PASSWORD, 4).expect("bcrypt hash"),
    }
}

async fn start(admin: AdminConfig) -> TestServer {
    TestServer::start(Config {
        dist: std::env::temp_dir().join("duplex-no-bundle"),
        admin: Some(admin),
        ..Config::default()
    })
    .await
}

/// A packet of the admin namespace: an event's name and arguments.
fn admin_event(text: &str) -> Option<(String, Vec<Value>)> {
    let json = text.strip_prefix("42/admin,")?;
    let mut values: Vec<Value> = serde_json::from_str(json).ok()?;
    if values.is_empty() {
        return None;
    }
    let name = values.remove(0).as_str()?.to_owned();
    Some((name, values))
}

/// Opens a WebSocket session and sends a CONNECT to `/admin` with `auth`;
/// returns the client and the answer (`40/admin,…` or `44/admin,…`).
async fn connect_admin(server: &TestServer, auth: Value) -> (RawClient, String) {
    let mut c = RawClient::open(&server.ws_url()).await;
    let open = c.recv_text().await;
    assert!(open.starts_with("0{"), "{open}");
    c.send(&format!("40/admin,{auth}")).await;
    let answer = c.recv_text().await;
    (c, answer)
}

/// Reads admin events until `name` comes (others, e.g. `server_stats`, are
/// skipped); its arguments.
async fn wait_event(c: &mut RawClient, name: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{name}` in time"
        );
        let text = c.recv_text().await;
        if let Some((event, args)) = admin_event(&text)
            && event == name
        {
            return args;
        }
    }
}

/// Reads admin events for `window`, and returns those named `name`.
async fn collect(c: &mut RawClient, name: &str, window: Duration) -> Vec<Vec<Value>> {
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, c.recv()).await {
        if let Some((event, args)) = message.to_text().ok().and_then(admin_event)
            && event == name
        {
            found.push(args);
        }
    }
    found
}

/// An app client on `/` (greeted) that joined channel `x` (room `channel:x`).
async fn app_client_in_channel_x(server: &TestServer) -> (RawClient, String) {
    let (mut app, id) = RawClient::connect_greeted(server).await;
    app.send(r#"421["join",{"channel":"x"}]"#).await;
    let ack = app.recv_text().await;
    assert!(ack.starts_with(r#"431[{"channels":["x"]"#), "{ack}");
    (app, id)
}

#[tokio::test]
async fn admin_refuses_a_wrong_password_with_the_message_the_ui_knows() {
    let server = start(admin_config(basic())).await;
    for auth in [
        json!({"username": "admin", "password": "wrong"}),
        json!({"username": "root", "password": PASSWORD}),
        json!({"sessionId": null}),
        json!({"sessionId": "0123456789abcdef"}),
        json!({}),
    ] {
        let (_c, answer) = connect_admin(&server, auth.clone()).await;
        assert_eq!(
            answer, r#"44/admin,{"message":"invalid credentials"}"#,
            "auth {auth}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn admin_gets_session_config_then_all_sockets_after_its_connect() {
    let server = start(admin_config(basic())).await;
    let (_app, app_id) = app_client_in_channel_x(&server).await;

    let (mut admin, answer) =
        connect_admin(&server, json!({"username": "admin", "password": PASSWORD})).await;
    // The CONNECT answer first: the UI registers its listeners on `connect`.
    assert!(answer.starts_with(r#"40/admin,{"sid":""#), "{answer}");
    let admin_id =
        serde_json::from_str::<Value>(&answer["40/admin,".len()..]).expect("json")["sid"]
            .as_str()
            .expect("sid")
            .to_owned();
    let mut order = Vec::new();
    let mut all_sockets = None;
    let mut session = None;
    while all_sockets.is_none() {
        let text = admin.recv_text().await;
        let (name, args) = admin_event(&text).unwrap_or_else(|| panic!("unexpected {text}"));
        match name.as_str() {
            "session" => session = args[0].as_str().map(str::to_owned),
            "config" => assert_eq!(
                args[0],
                json!({"supportedFeatures": ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN",
                    "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS", "ALL_EVENTS"]})
            ),
            "all_sockets" => all_sockets = Some(args[0].clone()),
            _ => {}
        }
        order.push(name);
    }
    let position = |name: &str| order.iter().position(|n| n == name);
    assert!(position("session") < position("config"), "{order:?}");
    assert!(position("config") < position("all_sockets"), "{order:?}");

    let all_sockets = all_sockets.expect("all_sockets");
    let text = all_sockets.to_string();
    assert!(!text.contains(PASSWORD), "the admin's auth leaked: {text}");
    assert!(!text.contains("\"auth\""), "{text}");
    let sockets = all_sockets.as_array().expect("an array");
    let app = sockets
        .iter()
        .find(|s| s["id"] == app_id.as_str())
        .unwrap_or_else(|| panic!("the app's socket in {all_sockets}"));
    assert_eq!(app["nsp"], "/");
    assert_eq!(app["transport"], "websocket");
    assert_eq!(app["rooms"], json!([app_id, "channel:x"]));
    assert_eq!(app["clientId"].as_str().map(str::len), Some(12));
    assert_eq!(app["data"], json!({}));
    let handshake = &app["handshake"];
    assert_eq!(handshake["address"], "127.0.0.1");
    assert!(handshake["issued"].is_u64(), "{handshake}");
    assert!(handshake["headers"].is_object() && handshake["query"].is_object());
    assert_eq!(handshake["query"]["EIO"], "4");
    assert!(
        handshake["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("/socket.io/?"))
    );
    // The admin socket itself is listed, in its namespace.
    assert!(
        sockets
            .iter()
            .any(|s| s["id"] == admin_id.as_str() && s["nsp"] == "/admin"),
        "{all_sockets}"
    );

    // The session lets a reloaded UI back in without the password.
    let session = session.expect("a session id");
    let (_again, answer) = connect_admin(&server, json!({ "sessionId": session })).await;
    assert!(answer.starts_with("40/admin,"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn admin_follows_and_commands_the_app_s_sockets() {
    let server = start(admin_config(basic())).await;
    let (mut admin, answer) =
        connect_admin(&server, json!({"username": "admin", "password": PASSWORD})).await;
    assert!(answer.starts_with("40/admin,"), "{answer}");
    wait_event(&mut admin, "all_sockets").await;

    let (mut app, app_id) = app_client_in_channel_x(&server).await;
    let connected = wait_event(&mut admin, "socket_connected").await;
    assert_eq!(connected[0]["id"], app_id.as_str());
    assert!(connected[1].as_str().is_some_and(|ts| ts.ends_with('Z')));
    // `channel:x` once: in the snapshot or as `room_joined`, never both.
    let joined = collect(&mut admin, "room_joined", Duration::from_millis(300)).await;
    let in_snapshot = connected[0]["rooms"]
        .as_array()
        .is_some_and(|rooms| rooms.contains(&json!("channel:x")));
    assert_eq!(
        usize::from(in_snapshot) + joined.len(),
        1,
        "{connected:?} then {joined:?}"
    );

    // The app's events are reported, the admin's own commands are not.
    app.send(r#"42["hello",1,{"a":2}]"#).await;
    let received = wait_event(&mut admin, "event_received").await;
    assert_eq!(
        received[..3],
        [json!("/"), json!(app_id), json!(["hello", 1, {"a": 2}])]
    );
    // And what the app sends: its echo.
    let sent = wait_event(&mut admin, "event_sent").await;
    assert_eq!(sent[..2], [json!("/"), json!(app_id)]);
    // (With recovery on, the echo carries its offset as a fourth argument.)
    let event = sent[2].as_array().expect("[event, ...args]");
    assert_eq!(event[..3], [json!("hello"), json!(1), json!({"a": 2})]);

    // The Sockets page's Disconnect button.
    admin
        .send(&format!(r#"42/admin,["_disconnect","/",false,"{app_id}"]"#))
        .await;
    loop {
        let text = app.recv_text().await;
        if text == "41" {
            break;
        }
    }
    let gone = wait_event(&mut admin, "socket_disconnected").await;
    assert_eq!(
        gone[..3],
        [
            json!("/"),
            json!(app_id),
            json!("server namespace disconnect")
        ]
    );
    let mut left = vec![wait_event(&mut admin, "room_left").await];
    left.push(wait_event(&mut admin, "room_left").await);
    let rooms: Vec<&Value> = left.iter().map(|args| &args[1]).collect();
    assert_eq!(rooms, [&json!(app_id), &json!("channel:x")]);
    assert!(
        collect(&mut admin, "event_received", Duration::from_millis(300))
            .await
            .is_empty(),
        "the admin's command was reported as an event"
    );
    server.stop().await;
}

#[tokio::test]
async fn admin_hears_of_an_upgrade_to_websocket() {
    use common::eio::{Client, Endpoint, Flavor, Transport};

    let server = start(admin_config(AdminAuth::None)).await;
    let (mut admin, _) = connect_admin(&server, json!({})).await;
    wait_event(&mut admin, "all_sockets").await;

    // A default client: long-polling first, then the upgrade.
    let endpoint = Endpoint {
        addr: server.addr,
        path: "/socket.io/",
        flavor: Flavor::SocketIo,
    };
    let mut app = Client::open(endpoint, Transport::Polling).await;
    app.send("40").await;
    let answer = app.recv_text().await;
    let id = serde_json::from_str::<Value>(answer.strip_prefix("40").expect("CONNECT answer"))
        .expect("json")["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let connected = wait_event(&mut admin, "socket_connected").await;
    assert_eq!(connected[0]["id"], id.as_str());
    assert_eq!(connected[0]["transport"], "polling");
    assert_eq!(
        connected[0]["clientId"].as_str(),
        app.sid.get(..12),
        "the start of the Engine.IO session id"
    );

    app.upgrade().await;
    let updated = wait_event(&mut admin, "socket_updated").await;
    assert_eq!(
        updated,
        [json!({"id": id, "nsp": "/", "transport": "websocket"})]
    );
    server.stop().await;
}

#[tokio::test]
async fn admin_join_leave_and_emit_reach_the_app_s_sockets() {
    let server = start(admin_config(AdminAuth::None)).await;
    let (mut app, app_id) = RawClient::connect_greeted(&server).await;
    let (mut admin, answer) = connect_admin(&server, json!({"sessionId": null})).await;
    assert!(answer.starts_with("40/admin,"), "no auth: anyone, {answer}");
    wait_event(&mut admin, "all_sockets").await;

    admin
        .send(&format!(r#"42/admin,["join","/","room1","{app_id}"]"#))
        .await;
    let joined = wait_event(&mut admin, "room_joined").await;
    assert_eq!(joined[..3], [json!("/"), json!("room1"), json!(app_id)]);

    admin
        .send(r#"42/admin,["emit","/","room1","news",{"hello":"admin"}]"#)
        .await;
    assert_eq!(app.recv_text().await, r#"42["news",{"hello":"admin"}]"#);

    // "Clear room": no filter.
    admin.send(r#"42/admin,["leave","/","room1"]"#).await;
    let left = wait_event(&mut admin, "room_left").await;
    assert_eq!(left[..3], [json!("/"), json!("room1"), json!(app_id)]);

    // An unknown namespace is ignored; the app is still there.
    admin.send(r#"42/admin,["_disconnect","/nope",true]"#).await;
    app.round_trip(7).await;

    // The whole connection.
    admin
        .send(&format!(r#"42/admin,["_disconnect","/",true,"{app_id}"]"#))
        .await;
    app.expect_closed(PATIENCE).await;
    server.stop().await;
}

#[tokio::test]
async fn admin_read_only_announces_no_action_and_ignores_commands() {
    let server = start(AdminConfig {
        readonly: true,
        ..admin_config(AdminAuth::None)
    })
    .await;
    let (mut app, app_id) = RawClient::connect_greeted(&server).await;
    let (mut admin, _) = connect_admin(&server, json!({})).await;
    let config = wait_event(&mut admin, "config").await;
    assert_eq!(
        config[0],
        json!({"supportedFeatures": ["AGGREGATED_EVENTS", "ALL_EVENTS"]})
    );
    admin
        .send(&format!(r#"42/admin,["_disconnect","/",false,"{app_id}"]"#))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.round_trip(1).await;
    server.stop().await;
}

#[tokio::test]
async fn admin_production_mode_sends_config_and_server_stats_only() {
    let server = start(AdminConfig {
        mode: AdminMode::Production,
        ..admin_config(AdminAuth::None)
    })
    .await;
    let (mut admin, _) = connect_admin(&server, json!({})).await;
    let config = wait_event(&mut admin, "config").await;
    assert_eq!(
        config[0]["supportedFeatures"].as_array().map(Vec::len),
        Some(8)
    );
    let (_app, _) = RawClient::connect_greeted(&server).await;
    let mut names = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, admin.recv()).await {
        if let Some((name, _)) = message.to_text().ok().and_then(admin_event) {
            names.push(name);
        }
    }
    assert!(names.contains(&"server_stats".to_owned()), "{names:?}");
    assert!(names.iter().all(|n| n == "server_stats"), "{names:?}");
    server.stop().await;
}

#[tokio::test]
async fn admin_server_stats_name_the_server_and_count_its_namespaces() {
    let server = start(admin_config(AdminAuth::None)).await;
    let (_app, _) = RawClient::connect_greeted(&server).await;
    let (mut admin, _) = connect_admin(&server, json!({})).await;
    let stats = wait_event(&mut admin, "server_stats").await;
    let stats = &stats[0];
    assert_eq!(stats["serverId"], "test-server");
    assert!(stats["hostname"].is_string());
    assert_eq!(stats["pid"], std::process::id());
    assert!(stats["uptime"].is_f64());
    assert!(
        stats["clientsCount"].as_i64().is_some_and(|n| n >= 2),
        "{stats}"
    );
    assert!(stats["pollingClientsCount"].is_i64());
    assert!(stats["aggregatedEvents"].is_array());
    assert_eq!(
        stats["namespaces"],
        json!([{"name": "/", "socketsCount": 1}, {"name": "/admin", "socketsCount": 1}])
    );
    server.stop().await;
}

/// A bundle in a fresh directory: `index.html` and `css/app.css`.
fn bundle() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("duplex-admin-ui-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("css")).expect("create the bundle");
    std::fs::write(dir.join("index.html"), "<title>Socket.IO Admin UI</title>").expect("write");
    std::fs::write(dir.join("css/app.css"), "body{}").expect("write");
    dir
}

#[tokio::test]
async fn admin_ui_bundle_is_served_at_admin_ui() {
    let dir = bundle();
    let server = start(AdminConfig {
        ui_dist: Some(dir.clone()),
        ..admin_config(AdminAuth::None)
    })
    .await;
    let get = |path: &'static str| common::http::request(server.addr, "GET", path, None);
    let index = get("/admin-ui/").await.expect("GET /admin-ui/");
    assert_eq!(index.status, 200);
    assert!(index.text().contains("Admin UI"));
    let css = get("/admin-ui/css/app.css").await.expect("GET css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css"));
    let bare = get("/admin-ui").await.expect("GET /admin-ui");
    assert_eq!(bare.status, 307);
    assert_eq!(bare.header("location"), Some("admin-ui/"));
    assert_eq!(get("/admin-ui/nope.js").await.expect("GET").status, 404);
    server.stop().await;

    // Without --admin-ui-dist: nothing there.
    let server = start(admin_config(AdminAuth::None)).await;
    for path in ["/admin-ui/", "/admin-ui"] {
        let reply = common::http::request(server.addr, "GET", path, None)
            .await
            .expect("GET");
        assert_eq!(reply.status, 404, "{path}");
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
