//! What the application sees of the HTTP request that opened a session: its
//! target, headers, remote address and the WebSocket accept key answered.

use std::fmt;
use std::net::SocketAddr;

/// What the application sees of the HTTP request that opened the connection.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// The Engine.IO session id.
    pub sid: String,
    /// Request target, e.g. `/socket.io/?EIO=4&transport=websocket`.
    pub uri: String,
    /// Request headers, names in lowercase, in the order received.
    pub headers: Headers,
    /// The `Sec-WebSocket-Accept` the server answered with.
    pub websocket_accept: Option<String>,
    pub remote: Option<SocketAddr>,
}

/// The `name=value` pairs of a raw query string, as they came (not
/// percent-decoded); a name without `=` has an empty value.
pub fn query_pairs(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

impl Handshake {
    /// The pairs of the request's query string.
    pub fn query(&self) -> impl Iterator<Item = (&str, &str)> {
        query_pairs(self.uri.split_once('?').map_or("", |(_, query)| query))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// Request headers, kept for the whole connection in two allocations (one
/// buffer of text, one of offsets) rather than two strings per header: every
/// connection holds its handshake, idle or not.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Every name then its value, back to back.
    text: Box<str>,
    /// Where each name ends and its value ends, in `text`.
    ends: Box<[(u32, u32)]>,
}

impl Headers {
    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header, as received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, value_end)| {
            let (n, v) = (name_end as usize, value_end as usize);
            let header = (&self.text[start..n], &self.text[n..v]);
            start = v;
            header
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    /// Headers past 4 GiB of text in all are left out (a request that large
    /// never gets this far).
    fn from_iter<I: IntoIterator<Item = (N, V)>>(headers: I) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for (name, value) in headers {
            let (name, value) = (name.as_ref(), value.as_ref());
            let Ok(value_end) = u32::try_from(text.len() + name.len() + value.len()) else {
                break;
            };
            text.push_str(name);
            let name_end = value_end - value.len() as u32;
            text.push_str(value);
            ends.push((name_end, value_end));
        }
        Headers {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers_keep_order_and_find_names_in_any_case() {
        let headers: super::Headers = [("host", "a:1"), ("x-empty", ""), ("upgrade", "websocket")]
            .into_iter()
            .collect();
        assert_eq!(headers.len(), 3);
        assert_eq!(headers.get("Upgrade"), Some("websocket"));
        assert_eq!(headers.get("x-empty"), Some(""));
        assert_eq!(headers.get("cookie"), None);
        let all: Vec<(&str, &str)> = headers.iter().collect();
        assert_eq!(
            all,
            [("host", "a:1"), ("x-empty", ""), ("upgrade", "websocket")]
        );
        assert!(super::Headers::default().is_empty());
    }
}
