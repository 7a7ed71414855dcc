//! Prometheus metrics (`GET /metrics`, when turned on): what a server's
//! operator watches — who is connected, on which transport, why they leave,
//! how much flows, how recovery and the cluster are doing.
//!
//! One set per process ([`metrics`]), written from wherever the thing happens
//! with atomic adds. The hot paths stay cheap: Engine.IO packets and bytes are
//! counted by each connection and added here once per turn of its task, and
//! labelled series are found once (the label sets are small and fixed: the
//! served namespaces, two transports, a dozen reasons, at most
//! [`MAX_EVENT_NAMES`] event names, then `_other`). Rendering goes through
//! `prometheus-client` (the Prometheus organisation's Rust client), in the
//! OpenMetrics text format that Prometheus scrapes.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::engine::DisconnectReason;

/// Event names counted under their own label; later new names count as `_other`
/// (a client chooses its event names: they must not grow the series without bound).
pub const MAX_EVENT_NAMES: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SocketLabels {
    pub namespace: String,
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub namespace: String,
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub sockets: Family<SocketLabels, Gauge>,
    pub connections: Family<TransportLabels, Gauge>,
    pub connections_opened: Counter,
    pub connections_closed: Family<ReasonLabels, Counter>,
    pub packets: Family<DirectionLabels, Counter>,
    pub bytes: Family<DirectionLabels, Counter>,
    events_received: Family<EventLabels, Counter>,
    /// The counters of `events_received` by namespace and name (`_other`
    /// among them), found without allocating: an event is a hot path.
    event_counters: RwLock<HashMap<String, HashMap<String, Counter>>>,
    /// Names with a label of their own (at most [`MAX_EVENT_NAMES`]).
    event_names: Mutex<HashSet<String>>,
    /// `engineio_packets` and `engineio_bytes` in and out, resolved once: a
    /// connection adds to them every turn of its task.
    traffic_counters: [Counter; 4],
    /// `connections` on polling and on WebSocket, resolved once.
    connection_gauges: [Gauge; 2],
    pub acks_sent: Counter,
    pub acks_received: Counter,
    pub ack_timeouts: Counter,
    pub volatile_dropped: Counter,
    pub slow_client_disconnects: Counter,
    pub recoveries: Family<ResultLabels, Counter>,
    pub upgrades: Counter,
    pub refusals: Family<ReasonLabels, Counter>,
    pub cluster_connected: Gauge,
    pub cluster_dropped: Gauge,
    pub cluster_lost: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("duplex");
        let m = Metrics {
            registry: Registry::default(),
            sockets: Family::default(),
            connections: Family::default(),
            connections_opened: Counter::default(),
            connections_closed: Family::default(),
            packets: Family::default(),
            bytes: Family::default(),
            events_received: Family::default(),
            event_counters: RwLock::new(HashMap::new()),
            event_names: Mutex::new(HashSet::new()),
            traffic_counters: Default::default(),
            connection_gauges: Default::default(),
            acks_sent: Counter::default(),
            acks_received: Counter::default(),
            ack_timeouts: Counter::default(),
            volatile_dropped: Counter::default(),
            slow_client_disconnects: Counter::default(),
            recoveries: Family::default(),
            upgrades: Counter::default(),
            refusals: Family::default(),
            cluster_connected: Gauge::default(),
            cluster_dropped: Gauge::default(),
            cluster_lost: Gauge::default(),
        };
        registry.register(
            "sockets",
            "Sockets connected, by namespace and transport",
            m.sockets.clone(),
        );
        registry.register(
            "connections",
            "Engine.IO connections open, by transport",
            m.connections.clone(),
        );
        registry.register(
            "connections_opened",
            "Engine.IO connections opened",
            m.connections_opened.clone(),
        );
        registry.register(
            "connections_closed",
            "Engine.IO connections closed, by reason",
            m.connections_closed.clone(),
        );
        registry.register(
            "engineio_packets",
            "Engine.IO packets, in (from clients) and out",
            m.packets.clone(),
        );
        registry.register(
            "engineio_bytes",
            "Bytes of Engine.IO packets, in and out",
            m.bytes.clone(),
        );
        registry.register(
            "events_received",
            "Events received from clients, by namespace and name (names past the first 64: _other)",
            m.events_received.clone(),
        );
        registry.register("acks_sent", "Acks sent to clients", m.acks_sent.clone());
        registry.register(
            "acks_received",
            "Acks received from clients",
            m.acks_received.clone(),
        );
        registry.register(
            "ack_timeouts",
            "Emits whose ack did not come in time",
            m.ack_timeouts.clone(),
        );
        registry.register(
            "volatile_dropped",
            "Volatile packets skipped for a client that could not take them",
            m.volatile_dropped.clone(),
        );
        registry.register(
            "slow_client_disconnects",
            "Clients disconnected because their outbound queue was full",
            m.slow_client_disconnects.clone(),
        );
        registry.register(
            "recoveries",
            "Reconnections that asked for their session: recovered, or fresh",
            m.recoveries.clone(),
        );
        registry.register(
            "upgrades",
            "Connections upgraded from long-polling to WebSocket",
            m.upgrades.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused: payload_too_large, origin, capacity",
            m.refusals.clone(),
        );
        registry.register(
            "cluster_connected",
            "1 when every connection to the cluster's Redis is up (0 without a cluster)",
            m.cluster_connected.clone(),
        );
        registry.register(
            "cluster_outbox_dropped",
            "Messages for the other servers dropped because the outbox was full",
            m.cluster_dropped.clone(),
        );
        registry.register(
            "cluster_lost",
            "Messages in a write to Redis that failed in flight",
            m.cluster_lost.clone(),
        );
        // Each found in a call of its own: a family's read guard must be gone
        // before the next series of it is created.
        let counter = |family: &Family<DirectionLabels, Counter>, direction| {
            family.get_or_create(&DirectionLabels { direction }).clone()
        };
        let traffic_counters = [
            counter(&m.packets, "in"),
            counter(&m.bytes, "in"),
            counter(&m.packets, "out"),
            counter(&m.bytes, "out"),
        ];
        let gauge = |transport| {
            m.connections
                .get_or_create(&TransportLabels { transport })
                .clone()
        };
        let connection_gauges = [gauge("polling"), gauge("websocket")];
        Metrics {
            registry,
            traffic_counters,
            connection_gauges,
            ..m
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// Counts an event `name` received on `namespace`.
    pub fn event_received(&self, namespace: &str, name: &str) {
        let known = self
            .event_counters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .and_then(|names| names.get(name))
            .cloned();
        known
            .unwrap_or_else(|| self.event_counter(namespace, name))
            .inc();
    }

    /// The counter of a (namespace, name) pair met for the first time: its own
    /// label while there are fewer than [`MAX_EVENT_NAMES`], else `_other`.
    fn event_counter(&self, namespace: &str, name: &str) -> Counter {
        let labelled = {
            let mut names = self
                .event_names
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            names.contains(name) || (names.len() < MAX_EVENT_NAMES && names.insert(name.to_owned()))
        };
        let labels = EventLabels {
            namespace: namespace.to_owned(),
            event: if labelled { name } else { "_other" }.to_owned(),
        };
        let counter = self.events_received.get_or_create(&labels).clone();
        self.event_counters
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(namespace.to_owned())
            .or_default()
            .insert(name.to_owned(), counter.clone());
        counter
    }

    /// A socket of `namespace` joined (`delta` 1) or left (-1) on `transport`.
    pub fn socket(&self, namespace: &str, transport: &'static str, delta: i64) {
        self.sockets
            .get_or_create(&SocketLabels {
                namespace: namespace.to_owned(),
                transport,
            })
            .inc_by(delta);
    }

    /// An Engine.IO connection opened (`delta` 1) or went (-1) on `transport`.
    pub fn connection(&self, transport: &'static str, delta: i64) {
        self.connection_gauges[usize::from(transport == "websocket")].inc_by(delta);
    }

    /// Open Engine.IO connections: all of them, and those still on long-polling.
    pub fn open_connections(&self) -> (i64, i64) {
        let [polling, websocket] = &self.connection_gauges;
        (polling.get() + websocket.get(), polling.get())
    }

    /// Engine.IO packets and bytes, in and out, reported so far by every
    /// connection (each reports once per turn of its task).
    pub fn traffic_totals(&self) -> Traffic {
        let [packets_in, bytes_in, packets_out, bytes_out] = &self.traffic_counters;
        Traffic {
            packets_in: packets_in.get(),
            bytes_in: bytes_in.get(),
            packets_out: packets_out.get(),
            bytes_out: bytes_out.get(),
        }
    }

    /// Engine.IO connections closed so far, by reason label; the reasons that
    /// never happened are left out.
    pub fn closed_totals(&self) -> Vec<(&'static str, u64)> {
        REASON_LABELS
            .iter()
            .filter_map(|&reason| {
                let closed = self.connections_closed.get(&ReasonLabels { reason })?.get();
                (closed > 0).then_some((reason, closed))
            })
            .collect()
    }

    /// An Engine.IO connection closed for `reason`.
    pub fn closed(&self, reason: &DisconnectReason) {
        let reason = reason_label(reason);
        self.connections_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
        match reason {
            "slow_client" => {
                self.slow_client_disconnects.inc();
            }
            // Over WebSocket a message past the limit closes with 1009: a
            // refusal as much as a long-polling POST answered 413.
            "message_too_large" => self.refused("payload_too_large"),
            _ => {}
        }
    }

    /// A request refused for `reason`.
    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A reconnection that asked for its session: `recovered` or not.
    pub fn recovery(&self, recovered: bool) {
        let result = if recovered { "recovered" } else { "fresh" };
        self.recoveries
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Packets and bytes a connection counted since it last reported.
    pub fn traffic(&self, traffic: &mut Traffic) {
        let [packets_in, bytes_in, packets_out, bytes_out] = &self.traffic_counters;
        if traffic.packets_in > 0 {
            packets_in.inc_by(traffic.packets_in);
            bytes_in.inc_by(traffic.bytes_in);
        }
        if traffic.packets_out > 0 {
            packets_out.inc_by(traffic.packets_out);
            bytes_out.inc_by(traffic.bytes_out);
        }
        *traffic = Traffic::default();
    }
}

/// What one connection counted of its Engine.IO traffic and not yet reported.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
}

impl Traffic {
    pub fn count_in(&mut self, frame: &protocol::Frame) {
        self.packets_in += 1;
        self.bytes_in += frame_len(frame);
    }

    pub fn count_out(&mut self, frame: &protocol::Frame) {
        self.packets_out += 1;
        self.bytes_out += frame_len(frame);
    }
}

fn frame_len(frame: &protocol::Frame) -> u64 {
    match frame {
        protocol::Frame::Text(text) => text.len() as u64,
        protocol::Frame::Binary(bytes) => bytes.len() as u64,
    }
}

/// Every label [`reason_label`] gives.
pub const REASON_LABELS: [&str; 10] = [
    "client_namespace_disconnect",
    "client_closed",
    "ping_timeout",
    "transport_error",
    "protocol_error",
    "message_too_large",
    "slow_client",
    "server_shutdown",
    "server_disconnect",
    "replaced",
];

/// The label of a disconnect reason: a fixed set.
pub fn reason_label(reason: &DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::ClientNamespaceDisconnect => "client_namespace_disconnect",
        DisconnectReason::ClientClosed => "client_closed",
        DisconnectReason::PingTimeout => "ping_timeout",
        DisconnectReason::Transport(_) => "transport_error",
        DisconnectReason::Protocol(_) => "protocol_error",
        DisconnectReason::MessageTooLarge(_) => "message_too_large",
        DisconnectReason::SlowClient => "slow_client",
        DisconnectReason::ServerShutdown => "server_shutdown",
        DisconnectReason::ServerDisconnect => "server_disconnect",
        DisconnectReason::Replaced => "replaced",
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_past_the_bound_fold_into_other() {
        let m = Metrics::new();
        for i in 0..MAX_EVENT_NAMES + 10 {
            m.event_received("/", &format!("e{i}"));
        }
        m.event_received("/", "e0");
        let text = m.render();
        assert!(
            text.contains(r#"duplex_events_received_total{namespace="/",event="e0"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"duplex_events_received_total{namespace="/",event="_other"} 10"#),
            "{text}"
        );
        let series = text
            .lines()
            .filter(|l| l.starts_with("duplex_events_received_total{"))
            .count();
        assert_eq!(series, MAX_EVENT_NAMES + 1);
    }

    #[test]
    fn totals_read_back_without_creating_series() {
        let m = Metrics::new();
        assert_eq!(m.closed_totals(), []);
        assert_eq!(m.traffic_totals().bytes_in, 0);
        m.closed(&DisconnectReason::PingTimeout);
        m.closed(&DisconnectReason::PingTimeout);
        m.closed(&DisconnectReason::ClientClosed);
        let mut t = Traffic::default();
        t.count_in(&protocol::Frame::Text("4hi".into()));
        m.traffic(&mut t);
        assert_eq!(
            m.closed_totals(),
            [("client_closed", 1), ("ping_timeout", 2)]
        );
        let totals = m.traffic_totals();
        assert_eq!((totals.packets_in, totals.bytes_in), (1, 3));
        assert_eq!((totals.packets_out, totals.bytes_out), (0, 0));
        for reason in REASON_LABELS {
            assert!(!m.render().contains(&format!("reason=\"{reason}\"}} 0")));
        }
    }

    #[test]
    fn traffic_is_added_in_batches() {
        let m = Metrics::new();
        let mut t = Traffic::default();
        t.count_in(&protocol::Frame::Text("42[\"a\"]".into()));
        t.count_out(&protocol::Frame::Binary(vec![1, 2, 3]));
        t.count_out(&protocol::Frame::Text("3".into()));
        m.traffic(&mut t);
        assert_eq!(t.packets_out, 0, "reported and reset");
        let text = m.render();
        assert!(
            text.contains(r#"duplex_engineio_packets_total{direction="out"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"duplex_engineio_bytes_total{direction="out"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"duplex_engineio_bytes_total{direction="in"} 7"#),
            "{text}"
        );
    }
}
