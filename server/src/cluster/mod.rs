//! Several servers as one: what a server does to its sockets (broadcasts, room
//! changes, disconnects) reaches the sockets of the others through Redis, on
//! the wire of Socket.IO's `@socket.io/redis-streams-adapter`, so that Node.js
//! Socket.IO servers using that adapter are members too.
//!
//! - [`wire`]: the cluster messages and their two encodings (stream entries,
//!   pub/sub payloads), byte for byte as Node writes them.
//! - [`redis`]: [`RedisCluster`], this server's membership: the adapter each
//!   namespace gets ([`RedisCluster::adapter`]), the task that publishes what it
//!   forwards and the task that reads what the others published.

pub mod redis;
pub mod wire;

pub use self::redis::{ClusterError, RedisCluster, RedisOptions};
