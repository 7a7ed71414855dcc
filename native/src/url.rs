//! Where the server is: the base URL and the Engine.IO path, and the request
//! targets built from them (`/socket.io/?EIO=4&transport=polling&t=..&sid=..`).

use protocol::engineio;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::Error;

/// A server's address and its Engine.IO path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// As written in the URL: `127.0.0.1`, `localhost`, `[::1]`.
    pub host: String,
    pub port: u16,
    /// The Engine.IO path with its leading and trailing slash: `/socket.io/`.
    pub path: String,
}

impl ServerUrl {
    /// Reads `http://host[:port][/]` (or `ws://`); TLS schemes are refused, and so
    /// is a path: the Engine.IO path comes from `path`, the namespace from the
    /// options.
    pub fn parse(base_url: &str, path: &str) -> Result<ServerUrl, Error> {
        let invalid = |why: &str| Error::InvalidUrl(format!("{base_url:?}: {why}"));
        // `http::Uri` (the one tungstenite uses) reads the URL; the rules here
        // are what this client accepts of it.
        let uri: Uri = base_url.parse().map_err(|e| invalid(&format!("{e}")))?;
        match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http" | "ws") => {}
            Some("https" | "wss") => return Err(invalid("TLS is not supported")),
            Some(_) => return Err(invalid("the scheme must be http or ws")),
            None => return Err(invalid("expected http://host:port")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("expected http://host:port"))?;
        if authority.as_str().contains('@')
            || !matches!(uri.path(), "" | "/")
            || uri.query().is_some()
        {
            return Err(invalid(
                "only scheme, host and port are allowed (no path, query or user)",
            ));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match authority.port() {
            Some(port) => port.as_u16(),
            // Something after the host that is not a port number.
            None if authority.as_str() != host => return Err(invalid("invalid port")),
            None => 80,
        };
        let mut path = path.trim_matches('/').to_owned();
        path = if path.is_empty() {
            "/".to_owned()
        } else {
            format!("/{path}/")
        };
        Ok(ServerUrl {
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The URL of a long-polling request: `t` busts caches, `sid` is absent for
    /// the handshake.
    pub fn polling_url(&self, sid: Option<&str>, t: &str) -> String {
        format!(
            "http://{}:{}{}?{}",
            self.host,
            self.port,
            self.path,
            engineio::polling_query(sid, t)
        )
    }

    /// The URL of a WebSocket: a new session without `sid`, an upgrade with it.
    pub fn websocket_url(&self, sid: Option<&str>) -> String {
        format!(
            "ws://{}:{}{}?{}",
            self.host,
            self.port,
            self.path,
            engineio::websocket_query(sid)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<ServerUrl, Error> {
        ServerUrl::parse(url, "/socket.io/")
    }

    #[test]
    fn hosts_and_ports() {
        let e = parse("http://127.0.0.1:3000").expect("valid");
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 3000));
        let e = parse("http://localhost/").expect("valid");
        assert_eq!((e.host.as_str(), e.port), ("localhost", 80));
        let e = parse("ws://[::1]:8124").expect("valid");
        assert_eq!((e.host.as_str(), e.port), ("[::1]", 8124));
        let e = parse("HTTP://[::1]").expect("valid");
        assert_eq!((e.host.as_str(), e.port), ("[::1]", 80));
    }

    #[test]
    fn refused_urls() {
        for url in [
            "127.0.0.1:3000",
            "https://example.com",
            "ftp://x",
            "http://x:port",
            "http://x:3000/chat",
            "http://:3000",
            "http://user@x",
        ] {
            assert!(matches!(parse(url), Err(Error::InvalidUrl(_))), "{url}");
        }
    }

    #[test]
    fn targets() {
        let e = ServerUrl::parse("http://127.0.0.1:3000", "socket.io").expect("valid");
        assert_eq!(e.path, "/socket.io/");
        assert_eq!(
            e.polling_url(None, "P1a"),
            "http://127.0.0.1:3000/socket.io/?EIO=4&transport=polling&t=P1a"
        );
        assert_eq!(
            e.polling_url(Some("ab+c/d="), "2"),
            "http://127.0.0.1:3000/socket.io/?EIO=4&transport=polling&t=2&sid=ab%2Bc%2Fd%3D"
        );
        assert_eq!(
            e.websocket_url(Some("x_y-z")),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket&sid=x_y-z"
        );
        assert_eq!(ServerUrl::parse("http://h", "/").expect("valid").path, "/");
    }
}
