//! How things look in the Admin UI's events: a socket (`all_sockets`,
//! `socket_connected`), timestamps (JavaScript's `Date` as JSON, and its
//! `toString`), disconnect reasons (Socket.IO's words).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::engine::{DisconnectReason, Handshake};
use crate::socketio::Socket;

/// How much of the Engine.IO session id identifies a client in the UI: the
/// whole id is the polling session's bearer token, so it is cut (as Node cuts it).
const CLIENT_ID_LEN: usize = 12;

/// Request headers whose values are not shown.
const REDACTED: [&str; 3] = ["cookie", "authorization", "proxy-authorization"];

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The parts of the UTC time `ms` after the epoch.
struct Utc {
    year: i64,
    month: u32,
    day: u32,
    /// 0 = Sunday.
    weekday: usize,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Utc {
    fn at(ms: u64) -> Utc {
        let days = (ms / 86_400_000) as i64;
        let in_day = ms % 86_400_000;
        let (year, month, day) = crate::date::civil_from_days(days);
        Utc {
            year,
            month,
            day,
            // 1970-01-01 was a Thursday.
            weekday: ((days + 4) % 7) as usize,
            hour: in_day / 3_600_000,
            minute: in_day / 60_000 % 60,
            second: in_day / 1000 % 60,
        }
    }
}

/// JavaScript's `new Date(ms).toJSON()`: `2026-12-06T17:00:34.679Z`.
pub(crate) fn iso8601(ms: u64) -> String {
    crate::date::iso8601((ms / 1000) as i64, (ms % 1000) as u32)
}

/// JavaScript's `new Date(ms).toString()` in UTC:
/// `Sun Dec 06 2026 17:00:37 GMT+0000 (Coordinated Universal Time)`.
pub(crate) fn js_date(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = Utc::at(ms);
    format!(
        "{} {} {:02} {:04} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        DAYS[t.weekday],
        MONTHS[(t.month - 1) as usize],
        t.day,
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

/// The reason Socket.IO's server gives for a socket leaving its namespace
/// (shown on the UI's Events page); duplex's own for those Node does not have.
pub(crate) fn reason(reason: &DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
        DisconnectReason::ClientClosed => "transport close",
        DisconnectReason::PingTimeout => "ping timeout",
        DisconnectReason::Transport(_) => "transport error",
        DisconnectReason::Protocol(_) => "parse error",
        DisconnectReason::MessageTooLarge(_) => "message too large",
        DisconnectReason::SlowClient => "slow client",
        DisconnectReason::ServerShutdown => "server shutting down",
        DisconnectReason::ServerDisconnect => "server namespace disconnect",
        DisconnectReason::Replaced => "replaced by its recovered session",
    }
}

/// The client's id in the UI: the start of its Engine.IO session id.
pub(crate) fn client_id(sid: &str) -> &str {
    sid.char_indices()
        .nth(CLIENT_ID_LEN)
        .map_or(sid, |(end, _)| &sid[..end])
}

/// `%XX` escapes and `+` decoded (as a query string is), lossily as UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The handshake as Socket.IO's `socket.handshake` shows it, less `auth`
/// (the admin's own holds its password) and with credentials in headers
/// redacted. `issued`: when the socket joined its namespace (Node makes the
/// handshake then), in milliseconds since the epoch.
pub(crate) fn handshake(handshake: &Handshake, issued: u64) -> Value {
    let mut headers = Map::new();
    for (name, value) in handshake.headers.iter() {
        let value = if REDACTED.contains(&name) {
            "[redacted]"
        } else {
            value
        };
        match headers.get_mut(name) {
            // Node joins repeated headers with ", ".
            Some(Value::String(first)) => {
                first.push_str(", ");
                first.push_str(value);
            }
            _ => {
                headers.insert(name.to_owned(), Value::String(value.to_owned()));
            }
        }
    }
    let mut query = Map::new();
    for (name, value) in handshake.query() {
        query
            .entry(percent_decode(name))
            .or_insert_with(|| Value::String(percent_decode(value)));
    }
    // Behind a proxy, the client's address is in its headers (as Node reads it).
    let forwarded = handshake
        .header("cf-connecting-ip")
        .or_else(|| handshake.header("x-forwarded-for"))
        .and_then(|list| list.split(',').next())
        .map(str::trim)
        .filter(|address| !address.is_empty());
    let address = match (forwarded, handshake.remote) {
        (Some(address), _) => address.to_owned(),
        (None, Some(remote)) => remote.ip().to_string(),
        (None, None) => String::new(),
    };
    json!({
        "address": address,
        "headers": headers,
        "query": query,
        "issued": issued,
        "secure": handshake
            .header("x-forwarded-proto")
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https")),
        "time": js_date(issued),
        "url": handshake.uri,
        "xdomain": handshake.header("origin").is_some(),
    })
}

/// A socket as `all_sockets` and `socket_connected` carry it; `rooms`: those
/// it is in besides its own (which comes first).
pub(crate) fn socket<'a>(
    socket: &Socket,
    issued: u64,
    rooms: impl IntoIterator<Item = &'a String>,
) -> Value {
    let own = socket.id().to_owned();
    let rooms: Vec<Value> = std::iter::once(own)
        .chain(
            rooms
                .into_iter()
                .filter(|room| **room != socket.id())
                .cloned(),
        )
        .map(Value::String)
        .collect();
    let data = match socket.data() {
        Value::Null => json!({}),
        data => data,
    };
    json!({
        "id": socket.id(),
        "clientId": client_id(&socket.handshake().sid),
        "transport": socket.transport(),
        "nsp": socket.nsp(),
        "data": data,
        "handshake": handshake(socket.handshake(), issued),
        "rooms": rooms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_javascript_writes_them() {
        // new Date(1796576437413): the recording of docs/admin-ui-protocol.md.
        assert_eq!(iso8601(1_796_576_437_413), "2026-12-06T17:00:37.413Z");
        assert_eq!(
            js_date(1_796_576_437_413),
            "Sun Dec 06 2026 17:00:37 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            js_date(0),
            "Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)"
        );
        // A leap day, and the last millisecond of a year.
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_client_id_is_the_start_of_the_session_id() {
        assert_eq!(client_id("Rb0SJ1pIi4XtAAAB-xyz"), "Rb0SJ1pIi4Xt");
        assert_eq!(client_id("short"), "short");
    }

    #[test]
    fn the_handshake_has_the_shape_the_ui_reads() {
        let handshake = Handshake {
            sid: "Rb0SJ1pIi4XtAAAB-xyz".into(),
            uri: "/socket.io/?EIO=4&transport=polling&t=Q9CJEIV&x=a%20b+c&x=2".into(),
            headers: [
                ("host", "localhost:3000"),
                ("cookie", "io=secret"),
                ("authorization", "Bearer secret"),
                ("accept", "text/html"),
                ("accept", "*/*"),
                ("origin", "http://localhost:3000"),
            ]
            .into_iter()
            .collect(),
            websocket_accept: None,
            remote: Some("127.0.0.1:5000".parse().expect("address")),
        };
        let value = super::handshake(&handshake, 1_796_576_437_413);
        assert_eq!(
            value,
            json!({
                "address": "127.0.0.1",
                "headers": {
                    "host": "localhost:3000",
                    "cookie": "[redacted]",
                    "authorization": "[redacted]",
                    "accept": "text/html, */*",
                    "origin": "http://localhost:3000",
                },
                "query": {"EIO": "4", "transport": "polling", "t": "Q9CJEIV", "x": "a b c"},
                "issued": 1_796_576_437_413_u64,
                "secure": false,
                "time": "Sun Dec 06 2026 17:00:37 GMT+0000 (Coordinated Universal Time)",
                "url": "/socket.io/?EIO=4&transport=polling&t=Q9CJEIV&x=a%20b+c&x=2",
                "xdomain": true,
            })
        );
        assert!(!value.to_string().contains("secret"));
    }

    #[test]
    fn a_proxy_s_headers_give_the_address() {
        let behind = |headers: &[(&str, &str)]| Handshake {
            headers: headers.iter().copied().collect(),
            remote: Some("10.0.0.1:80".parse().expect("address")),
            ..Handshake::default()
        };
        let address = |h: &Handshake| super::handshake(h, 0)["address"].clone();
        assert_eq!(address(&behind(&[])), "10.0.0.1");
        assert_eq!(
            address(&behind(&[("x-forwarded-for", "203.0.113.7, 10.0.0.2")])),
            "203.0.113.7"
        );
        assert_eq!(
            address(&behind(&[
                ("x-forwarded-for", "203.0.113.7"),
                ("cf-connecting-ip", "198.51.100.1")
            ])),
            "198.51.100.1"
        );
        let tls = behind(&[("x-forwarded-proto", "https")]);
        assert_eq!(super::handshake(&tls, 0)["secure"], true);
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%e2%82%ac%zz"), "€%zz");
    }
}
