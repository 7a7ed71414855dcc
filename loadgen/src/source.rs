//! Client sockets bound to loopback source addresses, spread over 127.0.0.1,
//! 127.0.0.2, ... so that tens of thousands of connections (and the TIME_WAIT
//! sockets earlier runs left behind) never exhaust one address's ephemeral ports.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpSocket, TcpStream};

/// Hands out source addresses: `per_address` connections on 127.0.0.1, the next
/// `per_address` on 127.0.0.2, and so on. A bind or connect that finds the
/// address's ports used up moves every later connection to the next address.
#[derive(Debug)]
pub struct Sources {
    per_address: usize,
    next: AtomicUsize,
    highest_block: AtomicUsize,
}

/// Loopback addresses usable as sources: 127.0.0.1 ..= 127.0.254.254 (the
/// kernel routes all of 127.0.0.0/8 to `lo`).
const MAX_BLOCKS: usize = 254 * 254;

impl Sources {
    pub fn new(per_address: usize) -> Self {
        Sources {
            per_address: per_address.max(1),
            next: AtomicUsize::new(0),
            highest_block: AtomicUsize::new(0),
        }
    }

    /// A budget that leaves room for the TIME_WAIT sockets of a previous run: a
    /// third of the ephemeral range per address.
    pub fn default_per_address() -> usize {
        let (lo, hi) = crate::sys::ephemeral_ports();
        (usize::from(hi - lo) / 3).max(1000)
    }

    /// How many source addresses have been used so far.
    pub fn addresses_used(&self) -> usize {
        self.highest_block.load(Ordering::Relaxed) + 1
    }

    fn address(block: usize) -> Ipv4Addr {
        let block = block % MAX_BLOCKS;
        let third = u8::try_from(block / 254).expect("block < 254 * 254");
        let fourth = u8::try_from(1 + block % 254).expect("1 + block % 254 <= 254");
        Ipv4Addr::new(127, 0, third, fourth)
    }

    /// Opens a TCP connection to `server` from the next source address, with
    /// Nagle off (every benchmark frame is latency-sensitive).
    pub async fn connect(&self, server: SocketAddr) -> io::Result<TcpStream> {
        let mut last_err = None;
        for _ in 0..8 {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let block = index / self.per_address;
            self.highest_block.fetch_max(block, Ordering::Relaxed);
            let source = SocketAddr::V4(SocketAddrV4::new(Self::address(block), 0));
            let attempt = async {
                let socket = TcpSocket::new_v4()?;
                socket.bind(source)?;
                let stream = socket.connect(server).await?;
                stream.set_nodelay(true)?;
                Ok::<_, io::Error>(stream)
            };
            match attempt.await {
                Ok(stream) => return Ok(stream),
                Err(e) if ports_exhausted(&e) => {
                    // Skip the rest of this address's block.
                    self.next
                        .fetch_max((block + 1) * self.per_address, Ordering::Relaxed);
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no source address left")))
    }
}

fn ports_exhausted(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_loopback_and_distinct() {
        assert_eq!(Sources::address(0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(Sources::address(1), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(Sources::address(253), Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(Sources::address(254), Ipv4Addr::new(127, 0, 1, 1));
        assert!((0..MAX_BLOCKS).all(|b| Sources::address(b).is_loopback()));
    }

    #[tokio::test]
    async fn spreads_over_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = listener.local_addr().expect("addr");
        let sources = Sources::new(2);
        let mut peers = Vec::new();
        let mut streams = Vec::new();
        for _ in 0..5 {
            streams.push(sources.connect(server).await.expect("connect"));
            let (_, peer) = listener.accept().await.expect("accept");
            peers.push(peer.ip());
        }
        assert_eq!(
            peers,
            [
                "127.0.0.1",
                "127.0.0.1",
                "127.0.0.2",
                "127.0.0.2",
                "127.0.0.3"
            ]
            .map(|ip| ip.parse::<std::net::IpAddr>().expect("ip"))
        );
        assert_eq!(sources.addresses_used(), 3);
    }
}
