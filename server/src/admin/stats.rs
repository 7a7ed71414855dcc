//! `server_stats`: who this server is, how many clients it has, what its
//! namespaces hold and what happened since the last one (`aggregatedEvents`,
//! read from the process's metrics), every 2 s (and once at startup) to the
//! admin sockets of the whole cluster: a UI attached to one server lists them
//! all on its Servers page.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::ADMIN_NAMESPACE;
use super::wire::now_ms;
use crate::metrics::{Traffic, metrics};
use crate::socketio::Io;

/// Node's interval.
const INTERVAL: Duration = Duration::from_secs(2);

/// Who this server is, in the UI.
#[derive(Debug)]
pub(crate) struct Identity {
    server_id: String,
    hostname: String,
    pid: u32,
    started: Instant,
}

impl Identity {
    /// This server, named `server_id` (the host name by default).
    pub(crate) fn new(server_id: Option<String>) -> Identity {
        let hostname = hostname();
        Identity {
            server_id: server_id.unwrap_or_else(|| hostname.clone()),
            hostname,
            pid: std::process::id(),
            started: Instant::now(),
        }
    }

    /// The `server_stats` payload, with `aggregated_events` since the last one.
    fn stats(&self, io: &Io, aggregated_events: Vec<Value>) -> Value {
        let (clients, polling) = metrics().open_connections();
        let mut names = io.namespaces();
        // Always the same order: the UI merges the list into its last one by index.
        names.sort();
        let namespaces: Vec<Value> = names
            .iter()
            .map(|name| json!({"name": name, "socketsCount": io.socket_count(name)}))
            .collect();
        json!({
            "serverId": self.server_id,
            "hostname": self.hostname,
            "pid": self.pid,
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": clients.max(0),
            "pollingClientsCount": polling.max(0),
            "aggregatedEvents": aggregated_events,
            "namespaces": namespaces,
        })
    }
}

/// The machine's name (Linux's; `localhost` where there is none to read).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The process's counters that `aggregatedEvents` reports the growth of.
#[derive(Debug, Default, Clone)]
pub(crate) struct Totals {
    opened: u64,
    closed: BTreeMap<&'static str, u64>,
    traffic: Traffic,
}

impl Totals {
    fn read() -> Totals {
        let metrics = metrics();
        Totals {
            opened: metrics.connections_opened.get(),
            closed: metrics.closed_totals().into_iter().collect(),
            traffic: metrics.traffic_totals(),
        }
    }
}

/// Node's close reason for a reason label of the metrics (the UI shows it as
/// `subType`); duplex's own label for those Node does not have.
fn sub_type(label: &'static str) -> &'static str {
    match label {
        "client_closed" => "transport close",
        "ping_timeout" => "ping timeout",
        "transport_error" => "transport error",
        "protocol_error" => "parse error",
        "server_disconnect" => "forced close",
        "server_shutdown" => "server shutting down",
        other => other,
    }
}

/// What grew from `before` to `after`, as `aggregatedEvents` entries in the
/// one-second bucket of `now` (ms since the epoch); nothing for what did not.
pub(crate) fn aggregated(before: &Totals, after: &Totals, now: u64) -> Vec<Value> {
    let timestamp = now - now % 1000;
    let mut events = Vec::new();
    let mut push = |kind: &str, sub_type: Option<&str>, count: u64| {
        if count > 0 {
            let mut event = json!({"timestamp": timestamp, "type": kind, "count": count});
            if let Some(sub_type) = sub_type {
                event["subType"] = json!(sub_type);
            }
            events.push(event);
        }
    };
    push(
        "rawConnection",
        None,
        after.opened.saturating_sub(before.opened),
    );
    for (label, closed) in &after.closed {
        let was = before.closed.get(label).copied().unwrap_or(0);
        push(
            "rawDisconnection",
            Some(sub_type(label)),
            closed.saturating_sub(was),
        );
    }
    let (a, b) = (&after.traffic, &before.traffic);
    push("packetsIn", None, a.packets_in.saturating_sub(b.packets_in));
    push("bytesIn", None, a.bytes_in.saturating_sub(b.bytes_in));
    push(
        "packetsOut",
        None,
        a.packets_out.saturating_sub(b.packets_out),
    );
    push("bytesOut", None, a.bytes_out.saturating_sub(b.bytes_out));
    events
}

/// Emits `server_stats` now and every [`INTERVAL`] until `shutdown`.
pub(crate) async fn run(identity: Identity, io: Arc<Io>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Totals::read();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // Read even when nobody looks: each report holds what happened since
        // the one before, as Node's buffer is cleared at every tick.
        let totals = Totals::read();
        let events = aggregated(&last, &totals, now_ms());
        last = totals;
        let stats = identity.stats(&io, events);
        io.of(ADMIN_NAMESPACE).emit_raw("server_stats", vec![stats]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_events_are_the_growth_in_a_one_second_bucket() {
        let before = Totals {
            opened: 4,
            closed: [("client_closed", 1)].into_iter().collect(),
            traffic: Traffic {
                packets_in: 10,
                bytes_in: 100,
                packets_out: 20,
                bytes_out: 2000,
            },
        };
        let after = Totals {
            opened: 6,
            closed: [("client_closed", 2), ("server_disconnect", 1)]
                .into_iter()
                .collect(),
            traffic: Traffic {
                packets_in: 14,
                bytes_in: 223,
                packets_out: 20,
                bytes_out: 2369,
            },
        };
        let events = aggregated(&before, &after, 1_796_576_434_567);
        let t = 1_796_576_434_000_u64;
        assert_eq!(
            events,
            [
                json!({"timestamp": t, "type": "rawConnection", "count": 2}),
                json!({"timestamp": t, "type": "rawDisconnection", "subType": "transport close", "count": 1}),
                json!({"timestamp": t, "type": "rawDisconnection", "subType": "forced close", "count": 1}),
                json!({"timestamp": t, "type": "packetsIn", "count": 4}),
                json!({"timestamp": t, "type": "bytesIn", "count": 123}),
                json!({"timestamp": t, "type": "bytesOut", "count": 369}),
            ]
        );
        assert_eq!(aggregated(&after, &after, 0), Vec::<Value>::new());
    }

    #[test]
    fn the_server_is_named_after_its_host_by_default() {
        let identity = Identity::new(None);
        assert!(!identity.hostname.is_empty());
        assert_eq!(identity.server_id, identity.hostname);
        assert_eq!(identity.pid, std::process::id());
        assert_eq!(Identity::new(Some("srv1".into())).server_id, "srv1");
    }
}
