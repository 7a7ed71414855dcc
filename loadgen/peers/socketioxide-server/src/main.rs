//! The bench's socketioxide peer, serving the same contract as duplex's news app:
//!
//! - on connection to `/`: emit `news` `{"hello":"world"}`;
//! - `publish` `{"text":..}`: emit `news` `{"hello":text,"from":sid}` to everyone
//!   (acked with `{"delivered":..}` when the client asks);
//! - any other event: emitted back to its sender under the same name, and acked
//!   with the same data when the sender asked.
//!
//! `socketioxide-server PORT`: listens on 127.0.0.1 with a backlog of 1024.
//! socketioxide's settings are its defaults (a 128-packet buffer per socket,
//! ping every 25 s), as a user would start it.

use axum::Router;
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, Event, SocketRef};

#[derive(Deserialize)]
struct Publish {
    text: String,
}

async fn publish(socket: SocketRef, io: SocketIo, Data(data): Data<Value>, ack: AckSender) {
    let Ok(Publish { text }) = serde_json::from_value::<Publish>(data) else {
        ack.send(&json!({ "error": "expected {text}" })).ok();
        return;
    };
    let news = json!({ "hello": text, "from": socket.id.to_string() });
    // A broadcast skips (and reports) sockets whose buffer is full.
    io.emit("news", &news).await.ok();
    ack.send(&json!({ "delivered": io.sockets().len() })).ok();
}

async fn echo(socket: SocketRef, Event(event): Event, Data(data): Data<Value>, ack: AckSender) {
    socket.emit(&*event, &data).ok();
    ack.send(&data).ok();
}

async fn on_connect(socket: SocketRef) {
    socket.emit("news", &json!({ "hello": "world" })).ok();
    socket.on("publish", publish);
    socket.on_fallback(echo);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(3000);
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", on_connect);
    let app = Router::new().layer(layer);
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], port).into())?;
    let listener = socket.listen(1024)?;
    println!("listening {port}");
    axum::serve(listener, app).await?;
    Ok(())
}
