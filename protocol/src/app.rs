//! The duplex application's events, shared by the server and the browser client.
//!
//! The tutorial's exchange: on connection the server emits `news` `{"hello":"world"}`;
//! the page answers `my other event` `{"my":"data"}`, which the server echoes. Then
//! `handshake` explains the WebSocket upgrade the server saw, and `publish` lets a
//! page send a news item to everyone.

use serde::{Deserialize, Serialize};

use crate::event;

/// A news item. The tutorial's first one is exactly `{"hello":"world"}`; items
/// published by clients also say who sent them and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewsItem {
    pub hello: String,
    /// The Socket.IO id of the client that published it, if a client did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The channel it was published to; `None` for news to everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// The tutorial's `{"my":"data"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MyData {
    pub my: String,
}

/// A news item a client asks the server to broadcast: to everyone, or to the
/// subscribers of `channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// A news channel to join or leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub channel: String,
}

/// The answer to `join` and `leave`: the channels the client is now in, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The longest channel name accepted.
pub const MAX_CHANNEL_LEN: usize = 64;

/// Whether `name` is an acceptable channel name: 1 to 64 characters, no control
/// characters, not blank.
pub fn valid_channel(name: &str) -> bool {
    !name.trim().is_empty()
        && name.chars().count() <= MAX_CHANNEL_LEN
        && !name.chars().any(char::is_control)
}

/// What the server saw of this connection's WebSocket upgrade, so the page can
/// explain it (a browser cannot read these headers itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandshakeInfo {
    /// The request line, e.g. `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1`.
    pub request: String,
    pub upgrade: String,
    pub connection: String,
    pub sec_websocket_version: String,
    pub sec_websocket_key: String,
    /// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), RFC 6455 §4.2.2.
    pub sec_websocket_accept: String,
    /// `101 Switching Protocols`.
    pub status: String,
    /// The Engine.IO session id.
    pub sid: String,
    pub ping_interval: u64,
    pub ping_timeout: u64,
}

/// The GUID RFC 6455 appends to `Sec-WebSocket-Key` before hashing.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

event!(
    /// Server → client: a news item (on connection, and every published one).
    News, "news", NewsItem
);
event!(
    /// Client → server: the tutorial's reply to `news`; the server logs and echoes it.
    MyOtherEvent, "my other event", MyData
);
event!(
    /// Client → server: broadcast a news item to every connected client.
    PublishNews, "publish", Publish
);
event!(
    /// Server → client, right after `news`: the upgrade request as the server saw it.
    Handshake, "handshake", HandshakeInfo
);
event!(
    /// Client → server: subscribe to a news channel (ack: [`Channels`]).
    JoinChannel, "join", Channel
);
event!(
    /// Client → server: unsubscribe from a news channel (ack: [`Channels`]).
    LeaveChannel, "leave", Channel
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, decode, encode};
    use crate::socketio::Packet;

    #[test]
    fn tutorial_news_is_exactly_hello_world() {
        let args = encode::<News>(&NewsItem {
            hello: "world".into(),
            from: None,
            channel: None,
        })
        .expect("serializes");
        let (text, _) = Packet::event("/", News::NAME, args).encode();
        assert_eq!(text, r#"2["news",{"hello":"world"}]"#);
    }

    #[test]
    fn my_other_event_matches_tutorial() {
        let args = encode::<MyOtherEvent>(&MyData { my: "data".into() }).expect("serializes");
        let (text, _) = Packet::event("/", MyOtherEvent::NAME, args.clone()).encode();
        assert_eq!(text, r#"2["my other event",{"my":"data"}]"#);
        assert_eq!(
            decode::<MyOtherEvent>(&args).expect("decodes"),
            MyData { my: "data".into() }
        );
    }

    #[test]
    fn channel_names() {
        assert!(valid_channel("sports"));
        assert!(valid_channel("météo du jour"));
        assert!(!valid_channel(""));
        assert!(!valid_channel("   "));
        assert!(!valid_channel("a\nb"));
        assert!(!valid_channel(&"x".repeat(65)));
    }

    #[test]
    fn publish_without_channel_is_still_accepted() {
        let p = decode::<PublishNews>(&[serde_json::json!({"text": "hi"})]).expect("decodes");
        assert_eq!(p.channel, None);
    }

    #[test]
    fn wrong_payload_is_a_typed_error() {
        let err = decode::<PublishNews>(&[serde_json::json!({"txt": 1})]).unwrap_err();
        assert!(err.to_string().contains("publish"), "{err}");
        assert!(decode::<PublishNews>(&[]).is_err());
    }
}
