//! `duplex-loadgen`: load for the duplex server, measured from outside.
//!
//! - `soak`: N idle connections with heartbeats, then all closed; the server's
//!   memory must come back near its baseline ([`soak`]).
//! - `bench`: duplex against Node socket.io, socketioxide and a bare WebSocket
//!   server, in one run, same scenarios, medians of repeats ([`bench`]).
//! - `bare-server`: the bare WebSocket server the bench uses as its ceiling
//!   ([`bare`]), run by the bench as a child process of its own.
//!
//! The servers run as child processes so that their memory and CPU are read from
//! `/proc` apart from the generator's. Traffic goes to 127.0.0.1 only, from
//! loopback source addresses ([`source`]). Clients are tokio-tungstenite
//! WebSockets driven by the protocol crate's `ClientSession` ([`conn`]).

mod bare;
mod bench;
mod build;
mod child;
mod conn;
mod soak;
mod source;
mod sys;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Load tests for the duplex server (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Hold N connections with heartbeats, close them, check the server's memory.
    Soak(soak::SoakArgs),
    /// duplex vs Node socket.io vs socketioxide vs a bare WebSocket server.
    Bench(bench::BenchArgs),
    /// Serve the bare WebSocket echo/broadcast ceiling (used by `bench`).
    BareServer {
        #[arg(long, default_value = "127.0.0.1:8130")]
        addr: SocketAddr,
        /// Frames that may wait for one client before it is disconnected.
        #[arg(long, default_value_t = 1024)]
        queue: usize,
        /// WebSocket read buffer per connection, in bytes (tungstenite's default,
        /// 128 KiB, when not given).
        #[arg(long)]
        read_buffer: Option<usize>,
        /// What it speaks: its own tiny text format, or the app contract in
        /// Socket.IO's wire format (spliced, no Socket.IO library).
        #[arg(long, value_enum, default_value = "tiny")]
        wire: bare::Wire,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let passed = match cli.command {
        Cmd::Soak(args) => soak::run(args).await?,
        Cmd::Bench(args) => bench::run(args).await?,
        Cmd::BareServer {
            addr,
            queue,
            read_buffer,
            wire,
        } => {
            sys::raise_fd_limit()?;
            bare::serve(addr, queue, read_buffer, wire).await?;
            true
        }
    };
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}
