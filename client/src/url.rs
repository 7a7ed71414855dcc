//! Where the page connects and with what credentials: the WebSocket URL worked
//! out from the page's own location, its `?server=` query parameter and the
//! `duplex-server` meta tag; the token from `?token=` or the `duplex-token` meta tag.
//!
//! Pure string work, so it is unit-tested natively; `browser.rs` reads the
//! inputs from the page.

use std::fmt;

/// Where a Socket.IO server listens (the `path` option of the reference clients).
pub const SOCKET_IO_PATH: &str = "/socket.io/";

/// The handshake query: Engine.IO protocol 4, WebSocket from the first request (no
/// long-polling, so no upgrade dance).
pub const HANDSHAKE_QUERY: &str = "EIO=4&transport=websocket";

/// The parts of the page's `window.location` that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLocation<'a> {
    /// `location.protocol`, with its colon: `http:` or `https:`.
    pub protocol: &'a str,
    /// `location.host`: host name and port, if any.
    pub host: &'a str,
}

/// Why no WebSocket URL could be worked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// The override's scheme is neither http(s) nor ws(s).
    UnsupportedScheme(String),
    /// The override names no host.
    MissingHost(String),
    /// No override and the page itself was not served over http(s) (e.g. `file:`).
    NoOrigin(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::UnsupportedScheme(s) => write!(
                f,
                "server {s:?} has an unsupported scheme (use http, https, ws or wss)"
            ),
            UrlError::MissingHost(s) => write!(f, "server {s:?} names no host"),
            UrlError::NoOrigin(p) => write!(
                f,
                "the page was loaded over {p:?}, not http(s); add ?server=http://host:port"
            ),
        }
    }
}

impl std::error::Error for UrlError {}

/// Which server the page should talk to: the first non-blank of the query
/// parameter and the meta tag. `None` means the page's own origin.
pub fn server_override<'a>(query: Option<&'a str>, meta: Option<&'a str>) -> Option<&'a str> {
    first_non_blank(query, meta)
}

/// The token the page presents in its CONNECT auth (`{"token": ...}`): the first
/// non-blank of the `?token=` parameter and the `duplex-token` meta tag, trimmed.
/// `None` sends no auth at all.
pub fn token<'a>(query: Option<&'a str>, meta: Option<&'a str>) -> Option<&'a str> {
    first_non_blank(query, meta)
}

fn first_non_blank<'a>(query: Option<&'a str>, meta: Option<&'a str>) -> Option<&'a str> {
    [query, meta]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
}

/// The Socket.IO WebSocket URL for this page.
///
/// `server` (see [`server_override`]) is a base URL such as `http://host:port`:
/// `http`/`https` become `ws`/`wss`, a missing scheme follows the page's, and a
/// path is kept as a prefix (a server mounted under `/app/` behind a proxy). Without
/// it the page's own origin is used, `wss` when the page came over https.
pub fn socket_url(page: PageLocation<'_>, server: Option<&str>) -> Result<String, UrlError> {
    let page_scheme = match page.protocol {
        "https:" => Some("wss"),
        "http:" => Some("ws"),
        _ => None,
    };
    let (scheme, authority, prefix) = match server {
        None => {
            let scheme = page_scheme.ok_or_else(|| UrlError::NoOrigin(page.protocol.into()))?;
            if page.host.is_empty() {
                return Err(UrlError::NoOrigin(page.protocol.into()));
            }
            (scheme, page.host, "")
        }
        Some(raw) => {
            let (scheme, rest) = match raw.split_once("://") {
                Some((scheme, rest)) => {
                    let scheme = match scheme.to_ascii_lowercase().as_str() {
                        "http" | "ws" => "ws",
                        "https" | "wss" => "wss",
                        _ => return Err(UrlError::UnsupportedScheme(raw.into())),
                    };
                    (scheme, rest)
                }
                // `host:port` alone: same security as the page (ws from a file: page).
                None => (page_scheme.unwrap_or("ws"), raw),
            };
            // Drop any query or fragment; what is left is authority + path.
            let rest = rest.split(['?', '#']).next().unwrap_or_default();
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            if authority.is_empty() {
                return Err(UrlError::MissingHost(raw.into()));
            }
            (scheme, authority, path.trim_end_matches('/'))
        }
    };
    Ok(format!(
        "{scheme}://{authority}{prefix}{SOCKET_IO_PATH}?{HANDSHAKE_QUERY}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP_PAGE: PageLocation<'static> = PageLocation {
        protocol: "http:",
        host: "127.0.0.1:8124",
    };
    const HTTPS_PAGE: PageLocation<'static> = PageLocation {
        protocol: "https:",
        host: "news.example",
    };

    #[test]
    fn same_origin_follows_the_page_scheme() {
        assert_eq!(
            socket_url(HTTP_PAGE, None).expect("valid"),
            "ws://127.0.0.1:8124/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            socket_url(HTTPS_PAGE, None).expect("valid"),
            "wss://news.example/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn override_maps_http_to_ws() {
        assert_eq!(
            socket_url(HTTPS_PAGE, Some("http://127.0.0.1:8124")).expect("valid"),
            "ws://127.0.0.1:8124/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            socket_url(HTTP_PAGE, Some("HTTPS://api.example/")).expect("valid"),
            "wss://api.example/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            socket_url(HTTP_PAGE, Some("wss://api.example:9000")).expect("valid"),
            "wss://api.example:9000/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn override_without_scheme_follows_the_page() {
        assert_eq!(
            socket_url(HTTPS_PAGE, Some("api.example:9000")).expect("valid"),
            "wss://api.example:9000/socket.io/?EIO=4&transport=websocket"
        );
        let file = PageLocation {
            protocol: "file:",
            host: "",
        };
        assert_eq!(
            socket_url(file, Some("localhost:8124")).expect("valid"),
            "ws://localhost:8124/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn override_path_is_a_prefix_and_query_is_dropped() {
        assert_eq!(
            socket_url(HTTP_PAGE, Some("https://example.org/duplex/?x=1#top")).expect("valid"),
            "wss://example.org/duplex/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn bad_overrides_are_errors() {
        assert!(matches!(
            socket_url(HTTP_PAGE, Some("ftp://x")),
            Err(UrlError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            socket_url(HTTP_PAGE, Some("http:///path")),
            Err(UrlError::MissingHost(_))
        ));
        let file = PageLocation {
            protocol: "file:",
            host: "",
        };
        let err = socket_url(file, None).expect_err("invalid");
        assert!(err.to_string().contains("?server="), "{err}");
    }

    #[test]
    fn query_parameter_wins_and_blank_means_unset() {
        assert_eq!(
            server_override(Some("http://a"), Some("http://b")),
            Some("http://a")
        );
        assert_eq!(server_override(None, Some("http://b")), Some("http://b"));
        assert_eq!(
            server_override(Some("  "), Some("http://b")),
            Some("http://b")
        );
        assert_eq!(server_override(None, Some("")), None);
        assert_eq!(server_override(None, None), None);
    }

    #[test]
    fn token_from_query_or_meta() {
        assert_eq!(token(Some("s3cret"), Some("other")), Some("s3cret"));
        assert_eq!(token(None, Some(" from-meta ")), Some("from-meta"));
        // The empty meta tag shipped in index.html means "no token".
        assert_eq!(token(Some(""), Some("")), None);
        assert_eq!(token(None, None), None);
    }
}
