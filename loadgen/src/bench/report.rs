//! Medians of the repeats and the markdown tables: the servers side by side, the
//! chaos section's totals per server and client mode (in [`chaos`]), and the client
//! section's figures beside their targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::client::ClientResults;
use super::peers::Server;
use super::scenarios::{Sample, Scenario, Sizes};

mod chaos;
pub use chaos::{ChaosRow, chaos_markdown, chaos_rows, duplex_target_met, percent};

/// The medians of one server on one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Median {
    pub server: String,
    pub scenario: String,
    pub repeats: usize,
    pub metrics: BTreeMap<String, f64>,
    pub server_cpu_pct: f64,
    pub generator_cpu_pct: f64,
    pub other_cpu_pct: f64,
    pub softirq_cpu_pct: f64,
    /// Totals over the repeats: nothing is hidden by a median.
    pub out_of_order_total: u64,
    pub missing_total: u64,
    pub failed_connections_total: u64,
    pub first_error: Option<String>,
}

/// The median of the finite values (NaN when there is none).
pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

pub fn medians(samples: &[Sample]) -> Vec<Median> {
    let mut groups: BTreeMap<(String, String), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        groups
            .entry((s.server.clone(), s.scenario.clone()))
            .or_default()
            .push(s);
    }
    groups
        .into_iter()
        .map(|((server, scenario), group)| {
            let keys: std::collections::BTreeSet<&String> =
                group.iter().flat_map(|s| s.metrics.keys()).collect();
            let metrics = keys
                .into_iter()
                .map(|k| {
                    let values = group
                        .iter()
                        .filter_map(|s| s.metrics.get(k).copied())
                        .collect();
                    (k.clone(), median(values))
                })
                .collect();
            Median {
                server,
                scenario,
                repeats: group.len(),
                metrics,
                server_cpu_pct: median(group.iter().map(|s| s.server_cpu_pct).collect()),
                generator_cpu_pct: median(group.iter().map(|s| s.generator_cpu_pct).collect()),
                other_cpu_pct: median(group.iter().map(|s| s.other_cpu_pct).collect()),
                softirq_cpu_pct: median(group.iter().map(|s| s.softirq_cpu_pct).collect()),
                out_of_order_total: group.iter().map(|s| s.out_of_order).sum(),
                missing_total: group.iter().map(|s| s.missing).sum(),
                failed_connections_total: group.iter().map(|s| s.failed_connections).sum(),
                first_error: group.iter().find_map(|s| s.first_error.clone()),
            }
        })
        .collect()
}

/// One line of the main table.
struct Row {
    scenario: String,
    metric: &'static str,
    label: String,
    higher_is_better: bool,
}

fn rows(sizes: &Sizes) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, scenario) in sizes.scenarios().iter().enumerate() {
        let key = scenario.key();
        let mut add = |metric, label: String, higher_is_better| {
            rows.push(Row {
                scenario: key.clone(),
                metric,
                label,
                higher_is_better,
            });
        };
        match *scenario {
            Scenario::Connect(n) => {
                add("conn_per_s", format!("connect {n}: connections/s"), true);
                add(
                    "server_cpu_us_per_conn",
                    format!("connect {n}: server CPU per connection (µs)"),
                    false,
                );
                if i == 0 {
                    add(
                        "rss_per_conn_kib",
                        format!("idle RSS per connection at {n} (KiB)"),
                        false,
                    );
                }
            }
            Scenario::Echo { clients, in_flight } => {
                let name = if in_flight == 1 {
                    format!("echo C={clients}")
                } else {
                    format!("echo C={clients} x{in_flight} in flight")
                };
                add("rt_per_s", format!("{name}: round trips/s"), true);
                add("p50_us", format!("{name}: p50 (µs)"), false);
                add("p99_us", format!("{name}: p99 (µs)"), false);
                add("p999_us", format!("{name}: p99.9 (µs)"), false);
                add(
                    "server_cpu_us_per_rt",
                    format!("{name}: server CPU per round trip (µs)"),
                    false,
                );
            }
            Scenario::Fanout {
                subscribers,
                publishes,
            } => {
                let name = format!("fan-out {subscribers} subs x {publishes} publishes");
                add("deliveries_per_s", format!("{name}: deliveries/s"), true);
                add(
                    "time_ms",
                    format!("{name}: time to deliver all (ms)"),
                    false,
                );
                add(
                    "server_cpu_ns_per_delivery",
                    format!("{name}: server CPU per delivery (ns)"),
                    false,
                );
            }
        }
    }
    rows
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "–".to_owned(),
        Some(v) if !v.is_finite() => "–".to_owned(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The markdown report: figures with ratios, then integrity and CPU.
pub fn markdown(
    sizes: &Sizes,
    servers: &[(Server, Option<String>)],
    medians: &[Median],
    repeat: usize,
) -> String {
    let find = |server: Server, scenario: &str| {
        medians
            .iter()
            .find(|m| m.server == server.name() && m.scenario == scenario)
    };
    let value = |server: Server, row: &Row| {
        find(server, &row.scenario).and_then(|m| m.metrics.get(row.metric).copied())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Median of {repeat} run(s) per figure; ratios are duplex / other (for µs, ms and KiB lower is better)."
    );
    for (server, missing) in servers {
        if let Some(why) = missing {
            let _ = writeln!(out, "- **{} not measured**: {why}", server.name());
        }
    }
    let _ = writeln!(out);
    // duplex, then every other server's figure, then duplex's ratio to each.
    let others: Vec<Server> = Server::ALL
        .into_iter()
        .filter(|&s| s != Server::Duplex)
        .collect();
    let _ = write!(out, "| figure | duplex |");
    for other in &others {
        let _ = write!(out, " {} |", other.name());
    }
    for other in &others {
        let _ = write!(out, " duplex/{} |", other.name());
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|---|---:|{}", "---:|".repeat(2 * others.len()));
    for row in rows(sizes) {
        let d = value(Server::Duplex, &row);
        let ratio = |other: Server| match (d, value(other, &row)) {
            (Some(d), Some(o)) if d.is_finite() && o.is_finite() && o != 0.0 => {
                format!("{:.2}", d / o)
            }
            _ => "–".to_owned(),
        };
        let arrow = if row.higher_is_better { "↑" } else { "↓" };
        let _ = write!(out, "| {} {arrow} | {} |", row.label, fmt_value(d));
        for &other in &others {
            let _ = write!(out, " {} |", fmt_value(value(other, &row)));
        }
        for &other in &others {
            let _ = write!(out, " {} |", ratio(other));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Integrity and CPU: out-of-order / missing deliveries / failed connections (totals over the runs); \
         CPU of the server, the generator, the kernel's interrupts (mostly loopback networking) and other \
         processes (median, % of one core; the machine has {} cores; 'other' well above zero means the \
         figures were disturbed; CPU over scenarios shorter than a second is coarse: 10 ms ticks).",
        std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| scenario | server | out of order | missing | failed conns | server CPU % | generator CPU % | softirq CPU % | other CPU % |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for scenario in sizes.scenarios() {
        for (server, _) in servers {
            if let Some(m) = find(*server, &scenario.key()) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
                    m.scenario,
                    m.server,
                    m.out_of_order_total,
                    m.missing_total,
                    m.failed_connections_total,
                    m.server_cpu_pct,
                    m.generator_cpu_pct,
                    m.softirq_cpu_pct,
                    m.other_cpu_pct
                );
            }
        }
    }
    let errors: Vec<_> = medians
        .iter()
        .filter_map(|m| m.first_error.as_ref().map(|e| (m, e)))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out);
        for (m, e) in errors {
            let _ = writeln!(out, "- {} / {}: first error: {e}", m.server, m.scenario);
        }
    }
    out
}

/// The client section's table: each figure beside its target.
pub fn client_markdown(c: &ClientResults) -> String {
    let kib = |bytes: u64| format!("{:.1} KiB", bytes as f64 / 1024.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Client, release bundle `{}` served by the release duplex server (sizes: raw and `gzip -9`; \
         KiB = 1024 bytes; the server itself sends them uncompressed).",
        c.dist
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "| client figure | value | target |");
    let _ = writeln!(out, "|---|---:|---|");
    if let Some(why) = &c.bundle_missing_because {
        let _ = writeln!(out, "| bundle sizes | not measured: {why} | |");
    }
    for f in &c.bundle {
        let target = if f.is_wasm() {
            match f.gzip_bytes {
                Some(gz) => format!(
                    "≤ {} gzip: {}",
                    kib(c.wasm_gzip_target_bytes),
                    met(gz <= c.wasm_gzip_target_bytes)
                ),
                None => format!("≤ {} gzip", kib(c.wasm_gzip_target_bytes)),
            }
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| `{}` ↓ | {} raw ({} B) / {} gzip ({}) | {target} |",
            f.name,
            kib(f.raw_bytes),
            f.raw_bytes,
            f.gzip_bytes.map_or("?".to_owned(), kib),
            f.gzip_bytes.map_or("?".to_owned(), |g| format!("{g} B")),
        );
    }
    let target = format!("< {:.0} ms", c.news_target_ms);
    match (&c.page_load, &c.page_load_missing_because) {
        (Some(p), _) => {
            let n = p.loads.len();
            let _ = writeln!(
                out,
                "| page load → first news, median of {n} loads (ms) ↓ | {:.1} (min {:.1}, max {:.1}) | {target}: {} |",
                p.news_median_ms,
                p.news_min_ms,
                p.news_max_ms,
                met(p.news_median_ms < c.news_target_ms)
            );
            let _ = writeln!(
                out,
                "| cold: first load, empty cache (ms) ↓ | {:.1} | {target}: {} |",
                p.cold_news_ms,
                met(p.cold_news_ms < c.news_target_ms)
            );
            if let Some(warm) = p.warm_news_median_ms {
                let _ = writeln!(
                    out,
                    "| warm: median of loads 2–{n}, same browser (ms) ↓ | {warm:.1} | {target}: {} |",
                    met(warm < c.news_target_ms)
                );
            }
            let marks = |f: fn(&super::client::Load) -> Option<f64>| {
                fmt_value(Some(median(p.loads.iter().filter_map(f).collect())))
            };
            let _ = writeln!(
                out,
                "| of which (medians, ms): DOMContentLoaded / wasm fetched / load event | {} / {} / {} | |",
                marks(|l| l.dom_content_loaded_ms),
                marks(|l| l.wasm_fetched_ms),
                marks(|l| l.load_event_ms),
            );
        }
        (None, Some(why)) => {
            let verb = if c.page_load_skipped {
                "skipped"
            } else {
                "failed"
            };
            let _ = writeln!(out, "| page load → first news | {verb}: {why} | {target} |");
        }
        (None, None) => {}
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Page load → first news: `performance.now()` in the page (ms since navigation start) when the \
         first `#news li.news-item` enters the DOM, recorded by a MutationObserver injected before the \
         page's scripts; headless Chromium on 127.0.0.1."
    );
    out
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_nan() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![f64::NAN, 5.0]), 5.0);
        assert!(median(vec![]).is_nan());
    }
}
