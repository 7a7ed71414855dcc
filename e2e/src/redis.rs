//! A real `redis-server` (Debian's package; `cargo xtask test` installs it) on a
//! free loopback port, with no persistence, for the cluster tests; stopped when
//! dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const REDIS_SERVER: &str = "/usr/bin/redis-server";

pub struct RedisServer {
    addr: SocketAddr,
    child: Child,
}

impl RedisServer {
    /// Starts a Redis on a free port and waits until it answers `PING`.
    pub fn start() -> Result<RedisServer> {
        if !Path::new(REDIS_SERVER).exists() {
            bail!(
                "{REDIS_SERVER} is missing: `cargo xtask test` installs it (Debian's redis-server)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let server = RedisServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers() {
            if Instant::now() > deadline {
                bail!("redis-server on {} did not answer within 10 s", server.addr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(self.addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
