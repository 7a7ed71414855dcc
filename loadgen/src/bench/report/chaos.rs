//! The chaos section's tables: the runs' totals per server and client mode, whether
//! duplex met its target (100.000 %, nothing duplicated or reordered, in every run),
//! and every run with its seed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::fmt_value;
use crate::bench::chaos::{ChaosResults, ChaosRun, ClientMode};
use crate::bench::peers::Server;

/// The chaos runs' totals for one server and one client mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChaosRow {
    pub server: Server,
    pub mode: ClientMode,
    pub runs: usize,
    /// Runs that printed no summary: not in the totals.
    pub unmeasured: usize,
    /// Runs in which some client did not have every item at the script's deadline
    /// (their counts are in the totals, as they stood then).
    pub timed_out: usize,
    pub expected: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub reconnects: u64,
    pub recovered: u64,
    pub fresh: u64,
    /// The proxy's cuts, FIN and RST.
    pub cuts: u64,
    /// The server's CPU time over the measured runs per item delivered in them, µs.
    pub server_cpu_us_per_item: Option<f64>,
}

/// The totals of `runs` per server and client mode (duplex first, default transports
/// first).
pub fn chaos_rows(runs: &[ChaosRun]) -> Vec<ChaosRow> {
    let mut rows: BTreeMap<(Server, ClientMode), (ChaosRow, u64, u64)> = BTreeMap::new();
    for run in runs {
        let (row, cpu_ms, cpu_items) = rows.entry((run.server, run.mode)).or_insert_with(|| {
            (
                ChaosRow {
                    server: run.server,
                    mode: run.mode,
                    runs: 0,
                    unmeasured: 0,
                    timed_out: 0,
                    expected: 0,
                    delivered: 0,
                    missing: 0,
                    duplicated: 0,
                    reordered: 0,
                    reconnects: 0,
                    recovered: 0,
                    fresh: 0,
                    cuts: 0,
                    server_cpu_us_per_item: None,
                },
                0,
                0,
            )
        });
        row.runs += 1;
        row.cuts += run.cuts.total();
        let Some(s) = &run.summary else {
            row.unmeasured += 1;
            continue;
        };
        row.timed_out += usize::from(s.timed_out());
        row.expected += s.expected;
        row.delivered += s.delivered;
        row.missing += s.missing;
        row.duplicated += s.duplicated;
        row.reordered += s.reordered;
        row.reconnects += s.reconnects;
        row.recovered += s.recovered;
        row.fresh += s.fresh;
        if let Some(ms) = run.server_cpu_ms {
            *cpu_ms += ms;
            *cpu_items += s.delivered;
        }
    }
    rows.into_values()
        .map(|(mut row, cpu_ms, cpu_items)| {
            row.server_cpu_us_per_item =
                (cpu_items > 0).then(|| cpu_ms as f64 * 1000.0 / cpu_items as f64);
            row
        })
        .collect()
}

/// Whether duplex met its target in every one of its runs: every item to every
/// client (100.000 %), none twice, none out of order. `None` when duplex did not run.
pub fn duplex_target_met(runs: &[ChaosRun]) -> Option<bool> {
    let mut duplex = runs
        .iter()
        .filter(|r| r.server == Server::Duplex)
        .peekable();
    duplex.peek()?;
    Some(duplex.all(|r| r.summary.as_ref().is_some_and(|s| s.perfect())))
}

/// `delivered / expected` in percent with 3 decimals, rounded down: 100.000 only when
/// nothing is missing.
pub fn percent(delivered: u64, expected: u64) -> String {
    if expected == 0 {
        return "–".to_owned();
    }
    let thousandths = u128::from(delivered) * 100_000 / u128::from(expected);
    format!("{}.{:03}", thousandths / 1000, thousandths % 1000)
}

/// The chaos section's tables: totals per server and client mode, whether duplex met
/// its target, then every run with its seed.
pub fn chaos_markdown(c: &ChaosResults) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Chaos: {} official socket.io-client 4 clients per run behind a seeded chaos proxy (every \
         chunk delayed 0–150 ms, bytes in order; FIN and RST cuts while connecting, publishing and \
         2–10 s after, at least {} a run; then delays only), {} `news` items broadcast by a \
         publisher connected directly, 2–5 ms apart; both servers with connection state recovery \
         and pingInterval {} ms / pingTimeout {} ms; clients with `timeout` {} ms, the script \
         gives up after {} ms. The same seed, script and sizes for both servers; {} run(s) per \
         row, totals over the runs.",
        c.sizes.clients,
        c.sizes.min_cuts,
        c.sizes.items,
        c.ping_interval_ms,
        c.ping_timeout_ms,
        c.client_connect_timeout_ms,
        c.exchange_timeout_ms,
        c.repeat
    );
    for status in &c.statuses {
        if let Some(why) = &status.missing_because {
            let _ = writeln!(out, "- **{} not measured**: {why}", status.server.name());
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| server | clients | runs | delivered % ↑ | missing ↓ | duplicated ↓ | reordered ↓ | reconnects (recovered / fresh) | cuts | server CPU per delivered item (µs) ↓ |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &c.rows {
        let mut runs = row.runs.to_string();
        if row.timed_out > 0 {
            let _ = write!(runs, ", {} timed out", row.timed_out);
        }
        if row.unmeasured > 0 {
            let _ = write!(runs, ", {} unmeasured", row.unmeasured);
        }
        let _ = writeln!(
            out,
            "| {} | {} | {runs} | {} | {} | {} | {} | {} ({} / {}) | {} | {} |",
            row.server.name(),
            row.mode.label(),
            percent(row.delivered, row.expected),
            row.missing,
            row.duplicated,
            row.reordered,
            row.reconnects,
            row.recovered,
            row.fresh,
            row.cuts,
            fmt_value(row.server_cpu_us_per_item),
        );
    }
    let _ = writeln!(out);
    match c.duplex_target_met {
        Some(true) => {
            let _ = writeln!(
                out,
                "duplex target (100.000 %, 0 duplicated, 0 reordered in every run): met in all {} runs.",
                c.runs.iter().filter(|r| r.server == Server::Duplex).count()
            );
        }
        Some(false) => {
            let misses: Vec<String> = c
                .runs
                .iter()
                .filter(|r| {
                    r.server == Server::Duplex && !r.summary.as_ref().is_some_and(|s| s.perfect())
                })
                .map(|r| format!("{} seed {}", r.mode.name(), r.seed))
                .collect();
            let _ = writeln!(
                out,
                "duplex target (100.000 %, 0 duplicated, 0 reordered in every run): **not met** in {} run(s): {}.",
                misses.len(),
                misses.join(", ")
            );
        }
        None => {
            let _ = writeln!(
                out,
                "duplex target (100.000 %, 0 duplicated, 0 reordered in every run): duplex did not run."
            );
        }
    }
    if !c.runs.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| run | seed | server | clients | delivered % | missing | duplicated | reordered | reconnects (recovered / fresh) | cuts (connecting / publishing / after) | complete clients | server CPU (s) | note |"
        );
        let _ = writeln!(
            out,
            "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        let show = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
        for r in &c.runs {
            let cuts = format!(
                "{} ({} / {} / {})",
                r.cuts.total(),
                show(r.cuts.while_connecting),
                show(r.cuts.while_publishing),
                show(r.cuts.after_publishing)
            );
            let cpu = r
                .server_cpu_ms
                .map_or("?".to_owned(), |ms| format!("{:.2}", ms as f64 / 1000.0));
            let note = match (&r.summary, &r.error) {
                (_, Some(e)) => e.lines().next().unwrap_or_default().replace('|', "\\|"),
                (Some(s), None) if s.timed_out() => format!(
                    "timed out: {} of {} clients incomplete",
                    s.clients - s.complete_clients,
                    s.clients
                ),
                _ => String::new(),
            };
            match &r.summary {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} ({} / {}) | {cuts} | {}/{} | {cpu} | {note} |",
                        r.rep + 1,
                        r.seed,
                        r.server.name(),
                        r.mode.label(),
                        percent(s.delivered, s.expected),
                        s.missing,
                        s.duplicated,
                        s.reordered,
                        s.reconnects,
                        s.recovered,
                        s.fresh,
                        s.complete_clients,
                        s.clients,
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | – | – | – | – | – | {cuts} | – | {cpu} | {note} |",
                        r.rep + 1,
                        r.seed,
                        r.server.name(),
                        r.mode.label(),
                    );
                }
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Delivered %: distinct items received over clients × items, rounded down; missing: items a \
         client never got; duplicated: arrivals after an item's first; reordered: items that first \
         arrived after a later one; reconnects: connections after a client's first, recovered \
         (`socket.recovered`: the server replayed what the client missed) or fresh (a new session, \
         whatever was broadcast meanwhile is lost). `DUPLEX_CHAOS_SEED=<seed>` replays a run's \
         cuts and delays as closely as the scheduler allows."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bench::chaos::{ChaosSizes, ChaosStatus, Cuts, Summary};

    fn summary(expected: u64, delivered: u64, duplicated: u64, reordered: u64) -> Summary {
        Summary {
            ok: delivered == expected && duplicated == 0 && reordered == 0,
            clients: 10,
            items: expected / 10,
            expected,
            delivered,
            missing: expected - delivered,
            duplicated,
            reordered,
            reconnects: 5,
            recovered: 4,
            fresh: 1,
            complete_clients: if delivered == expected { 10 } else { 9 },
            ..Summary::default()
        }
    }

    fn run(server: Server, mode: ClientMode, seed: u64, s: Option<Summary>) -> ChaosRun {
        ChaosRun {
            server,
            mode,
            rep: 0,
            seed,
            summary: s,
            cuts: Cuts {
                accepted: 40,
                fin: 10,
                rst: 12,
                while_connecting: Some(5),
                while_publishing: Some(10),
                after_publishing: Some(7),
            },
            server_cpu_ms: Some(500),
            wall_ms: 12_000,
            exit: Some("exit status: 0".to_owned()),
            error: None,
            fail_lines: Vec::new(),
        }
    }

    fn results(runs: Vec<ChaosRun>) -> ChaosResults {
        ChaosResults {
            sizes: ChaosSizes::quick(),
            repeat: 1,
            ping_interval_ms: 5000,
            ping_timeout_ms: 5000,
            client_connect_timeout_ms: 5000,
            exchange_timeout_ms: 40_000,
            proxy: String::new(),
            statuses: vec![ChaosStatus {
                server: Server::Socketioxide,
                missing_because: Some("no connection state recovery".to_owned()),
            }],
            rows: chaos_rows(&runs),
            duplex_target_met: duplex_target_met(&runs),
            runs,
        }
    }

    #[test]
    fn percent_has_three_decimals_and_never_rounds_up_to_100() {
        assert_eq!(percent(50_000, 50_000), "100.000");
        assert_eq!(percent(49_999, 50_000), "99.998");
        assert_eq!(percent(999_999, 1_000_000), "99.999");
        assert_eq!(percent(1, 3), "33.333");
        assert_eq!(percent(0, 10), "0.000");
        assert_eq!(percent(0, 0), "–");
    }

    #[test]
    fn chaos_rows_total_the_runs_per_server_and_mode() {
        let runs = vec![
            run(
                Server::Node,
                ClientMode::Default,
                1,
                Some(summary(1000, 990, 2, 1)),
            ),
            run(
                Server::Duplex,
                ClientMode::Default,
                1,
                Some(summary(1000, 1000, 0, 0)),
            ),
            run(
                Server::Duplex,
                ClientMode::Default,
                2,
                Some(summary(1000, 1000, 0, 0)),
            ),
            run(Server::Duplex, ClientMode::WebsocketOnly, 1, None),
        ];
        let rows = chaos_rows(&runs);
        let keys: Vec<(Server, ClientMode)> = rows.iter().map(|r| (r.server, r.mode)).collect();
        assert_eq!(
            keys,
            [
                (Server::Duplex, ClientMode::Default),
                (Server::Duplex, ClientMode::WebsocketOnly),
                (Server::Node, ClientMode::Default)
            ]
        );
        let duplex = &rows[0];
        assert_eq!(
            (duplex.runs, duplex.unmeasured, duplex.timed_out),
            (2, 0, 0)
        );
        assert_eq!(
            (duplex.expected, duplex.delivered, duplex.missing),
            (2000, 2000, 0)
        );
        assert_eq!(
            (duplex.reconnects, duplex.recovered, duplex.fresh),
            (10, 8, 2)
        );
        assert_eq!(duplex.cuts, 44);
        // 2 x 500 ms of CPU over 2000 items.
        assert_eq!(duplex.server_cpu_us_per_item, Some(500.0));
        let unmeasured = &rows[1];
        assert_eq!((unmeasured.runs, unmeasured.unmeasured), (1, 1));
        assert_eq!(unmeasured.expected, 0);
        assert_eq!(unmeasured.server_cpu_us_per_item, None);
        let node = &rows[2];
        assert_eq!((node.missing, node.duplicated, node.reordered), (10, 2, 1));
        assert_eq!(node.timed_out, 1);
    }

    #[test]
    fn the_duplex_target_needs_every_run_perfect() {
        let perfect = || Some(summary(1000, 1000, 0, 0));
        let node_misses = run(
            Server::Node,
            ClientMode::Default,
            1,
            Some(summary(1000, 900, 0, 0)),
        );
        assert_eq!(duplex_target_met(std::slice::from_ref(&node_misses)), None);
        let good = run(Server::Duplex, ClientMode::Default, 1, perfect());
        assert_eq!(duplex_target_met(&[good.clone(), node_misses]), Some(true));
        for bad in [
            Some(summary(1000, 999, 0, 0)),
            Some(summary(1000, 1000, 1, 0)),
            Some(summary(1000, 1000, 0, 1)),
            None,
        ] {
            let bad = run(Server::Duplex, ClientMode::WebsocketOnly, 2, bad);
            assert_eq!(duplex_target_met(&[good.clone(), bad]), Some(false));
        }
    }

    #[test]
    fn chaos_markdown_shows_totals_the_target_and_every_run() {
        let mut failed = run(Server::Duplex, ClientMode::WebsocketOnly, 9, None);
        failed.error = Some("the script printed no summary | killed\nmore".to_owned());
        let md = chaos_markdown(&results(vec![
            run(
                Server::Duplex,
                ClientMode::Default,
                7,
                Some(summary(1000, 1000, 0, 0)),
            ),
            run(
                Server::Node,
                ClientMode::Default,
                7,
                Some(summary(1000, 990, 3, 2)),
            ),
            failed,
        ]));
        assert!(md.contains("- **socketioxide not measured**: no connection state recovery"));
        assert!(md.contains(
            "| duplex | default (polling → WebSocket) | 1 | 100.000 | 0 | 0 | 0 | 5 (4 / 1) | 22 | 500 |"
        ));
        assert!(md.contains(
            "| node | default (polling → WebSocket) | 1, 1 timed out | 99.000 | 10 | 3 | 2 | 5 (4 / 1) | 22 | 505 |"
        ));
        assert!(md.contains("| duplex | WebSocket only | 1, 1 unmeasured | – |"));
        assert!(md.contains("**not met** in 1 run(s): websocket-only seed 9."));
        // Every run, with its seed and where the cuts fell; a note for the odd ones.
        assert!(md.contains("| 1 | 7 | node | default (polling → WebSocket) | 99.000 | 10 | 3 | 2 | 5 (4 / 1) | 22 (5 / 10 / 7) | 9/10 | 0.50 | timed out: 1 of 10 clients incomplete |"));
        assert!(md.contains("the script printed no summary \\| killed |"));
        let all_good = chaos_markdown(&results(vec![run(
            Server::Duplex,
            ClientMode::Default,
            7,
            Some(summary(1000, 1000, 0, 0)),
        )]));
        assert!(all_good.contains(
            "duplex target (100.000 %, 0 duplicated, 0 reordered in every run): met in all 1 runs."
        ));
    }
}
