//! The native clients of `native_client_under_chaos`: 50 `duplex-native` clients behind
//! the proxy, half polling-then-upgrade and half WebSocket only, each recording what
//! arrived and what happened to its connection, and a publisher connected directly;
//! a client that missed, repeated or reordered items is described with its timeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use duplex_e2e::chaos::Rng;
use duplex_e2e::chaos::script::CutPhases;
use duplex_native::{Backoff, Client, Options, Status, Transports};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{
    CLIENTS, Chaos, EXCHANGE_TIMEOUT, ITEMS, MIN_CUTS, NATIVE_CONNECT_TIMEOUT, print_stopped,
};

/// What arrived at one native client, and what happened to its connection.
struct Record {
    index: usize,
    transports: Transports,
    /// Item numbers in the order they arrived (with repeats).
    arrivals: Vec<usize>,
    counts: Vec<u32>,
    distinct: usize,
    /// Items and notes, with the milliseconds since the test started.
    log: Vec<(u64, Entry)>,
    sids: Vec<String>,
    ever_connected: bool,
    /// When it first connected (milliseconds since the test started).
    first_connected: u64,
    /// Connections after the first, recovered or fresh (at least: the status is a
    /// watch, which an observer may see skip a step).
    recovered: usize,
    fresh: usize,
}

enum Entry {
    Item(usize),
    Note(String),
}

/// Missing, duplicated and out-of-order items of one client.
struct Check {
    missing: Vec<usize>,
    duplicated: Vec<usize>,
    reordered: Vec<usize>,
}

impl Record {
    fn new(index: usize, transports: Transports) -> Record {
        Record {
            index,
            transports,
            arrivals: Vec::new(),
            counts: vec![0; ITEMS],
            distinct: 0,
            log: Vec::new(),
            sids: Vec::new(),
            ever_connected: false,
            first_connected: 0,
            recovered: 0,
            fresh: 0,
        }
    }

    fn item(&mut self, at: u64, k: usize) {
        self.log.push((at, Entry::Item(k)));
        self.arrivals.push(k);
        if let Some(count) = self.counts.get_mut(k) {
            if *count == 0 {
                self.distinct += 1;
            }
            *count += 1;
        }
    }

    fn note(&mut self, at: u64, note: String) {
        self.log.push((at, Entry::Note(note)));
    }

    fn status(&mut self, at: u64, status: &Status) {
        match status {
            Status::Connected { sid, recovered } => {
                if self.ever_connected {
                    if *recovered {
                        self.recovered += 1;
                    } else {
                        self.fresh += 1;
                    }
                } else {
                    self.first_connected = at;
                }
                self.ever_connected = true;
                if !self.sids.contains(sid) {
                    self.sids.push(sid.clone());
                }
                self.note(at, format!("connected sid={sid} recovered={recovered}"));
            }
            Status::Reconnecting {
                attempt,
                delay,
                reason,
                ..
            } => self.note(
                at,
                format!("reconnecting (attempt {attempt} in {delay:?}): {reason:?}"),
            ),
            Status::Connecting { attempt } => self.note(at, format!("connecting {attempt:?}")),
            Status::Refused(message) => self.note(at, format!("refused: {message}")),
            Status::Closed(reason) => self.note(at, format!("closed: {reason:?}")),
        }
    }

    fn check(&self) -> Check {
        let missing = (0..ITEMS).filter(|&k| self.counts[k] == 0).collect();
        let duplicated = (0..ITEMS)
            .flat_map(|k| std::iter::repeat_n(k, self.counts[k].saturating_sub(1) as usize))
            .collect();
        let mut seen = vec![false; ITEMS];
        let mut highest = None;
        let mut reordered = Vec::new();
        for &k in self.arrivals.iter().filter(|&&k| k < ITEMS) {
            if std::mem::replace(&mut seen[k], true) {
                continue;
            }
            if highest.is_some_and(|h| k < h) {
                reordered.push(k);
            }
            highest = highest.max(Some(k));
        }
        Check {
            missing,
            duplicated,
            reordered,
        }
    }

    /// The log with runs of consecutive items folded into one line each.
    fn timeline(&self) -> Vec<String> {
        /// A run of items (`first..=last`, from `at` to `until`), or a note.
        struct Line<'a> {
            at: u64,
            until: u64,
            items: Option<(usize, usize)>,
            note: &'a str,
        }
        let mut lines: Vec<Line<'_>> = Vec::new();
        for (at, entry) in &self.log {
            let at = *at;
            match entry {
                Entry::Item(k) => match lines.last_mut() {
                    Some(Line {
                        until,
                        items: Some((_, last)),
                        ..
                    }) if *k == *last + 1 => {
                        *last = *k;
                        *until = at;
                    }
                    _ => lines.push(Line {
                        at,
                        until: at,
                        items: Some((*k, *k)),
                        note: "",
                    }),
                },
                Entry::Note(note) => lines.push(Line {
                    at,
                    until: at,
                    items: None,
                    note,
                }),
            }
        }
        lines
            .into_iter()
            .map(
                |Line {
                     at,
                     until,
                     items,
                     note,
                 }| match items {
                    Some((first, last)) if first == last => format!("{at} ms item {first}"),
                    Some((first, last)) => format!("{at}-{until} ms items {first}..{last}"),
                    None => format!("{at} ms {note}"),
                },
            )
            .collect()
    }

    /// Lines naming this client, its problems, the events around the first one and its
    /// connection history.
    fn describe(&self, check: &Check, detailed: bool) -> String {
        let mut problems = Vec::new();
        for (what, items) in [
            ("missing", &check.missing),
            ("duplicated", &check.duplicated),
            ("out of order", &check.reordered),
        ] {
            if !items.is_empty() {
                problems.push(format!("{what} {} [{}]", items.len(), ranges(items)));
            }
        }
        let mut text = format!(
            "client {} ({:?}; sids {}; {} recovered, {} fresh reconnects): {}\n",
            self.index,
            self.transports,
            self.sids.join(", "),
            self.recovered,
            self.fresh,
            problems.join("; ")
        );
        if !detailed {
            return text;
        }
        let timeline = self.timeline();
        let first = check
            .missing
            .first()
            .or(check.duplicated.first())
            .or(check.reordered.first());
        if let Some(&first) = first {
            let _ = writeln!(text, "  around item {first}:");
            let index = timeline
                .iter()
                .position(|line| {
                    items_of(line).is_some_and(|(a, b)| {
                        if check.missing.is_empty() {
                            a <= first && first <= b
                        } else {
                            b > first
                        }
                    })
                })
                .unwrap_or(timeline.len());
            for line in &timeline[index.saturating_sub(5)..(index + 4).min(timeline.len())] {
                let _ = writeln!(text, "    {line}");
            }
        }
        let history: Vec<&String> = timeline
            .iter()
            .filter(|line| items_of(line).is_none())
            .collect();
        let _ = writeln!(text, "  connection history ({} entries):", history.len());
        for line in history.iter().rev().take(40).rev() {
            let _ = writeln!(text, "    {line}");
        }
        text
    }
}

/// The item range of a timeline line, if it is one.
fn items_of(line: &str) -> Option<(usize, usize)> {
    let (_, rest) = line.split_once(" ms item")?;
    let rest = rest.trim_start_matches('s').trim();
    match rest.split_once("..") {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => {
            let k = rest.parse().ok()?;
            Some((k, k))
        }
    }
}

/// `1, 4..9, 12`, at most 12 runs.
fn ranges(numbers: &[usize]) -> String {
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i;
        while j + 1 < numbers.len() && numbers[j + 1] == numbers[j] + 1 {
            j += 1;
        }
        runs.push(if i == j {
            numbers[i].to_string()
        } else {
            format!("{}..{}", numbers[i], numbers[j])
        });
        i = j + 1;
    }
    if runs.len() > 12 {
        format!("{}, … ({} runs)", runs[..12].join(", "), runs.len())
    } else {
        runs.join(", ")
    }
}

type Shared = Arc<Mutex<Record>>;

fn lock(record: &Shared) -> std::sync::MutexGuard<'_, Record> {
    record
        .lock()
        .expect("a record's lock is never held by a panicking thread")
}

/// The item number of a `news` event `{"hello": "item-<k>"}`.
fn item_number(event: &duplex_native::Incoming) -> Option<usize> {
    if event.name != "news" {
        return None;
    }
    event.args.first()?["hello"]
        .as_str()?
        .strip_prefix("item-")?
        .parse()
        .ok()
}

/// One native client behind the proxy: connects, then records every event and status
/// until the test ends (its task is aborted then).
async fn native_client(url: String, transports: Transports, record: Shared, started: Instant) {
    let ms = move || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let options = Options {
        transports,
        reconnection: Some(Backoff::default()),
        connect_timeout: NATIVE_CONNECT_TIMEOUT,
        ..Options::default()
    };
    // `connect` resolves once connected, retrying (with the backoff) for at most
    // `connect_timeout`; tried again until the exchange's deadline.
    let mut client: Client = loop {
        lock(&record).note(ms(), format!("connecting over {transports:?}"));
        match duplex_native::connect(&url, options.clone()).await {
            Ok(client) => break client,
            Err(e) => {
                lock(&record).note(ms(), format!("connect failed: {e}"));
                if started.elapsed() > EXCHANGE_TIMEOUT {
                    return;
                }
            }
        }
    };
    let mut status = client.status();
    let now = status.borrow_and_update().clone();
    lock(&record).status(ms(), &now);
    loop {
        tokio::select! {
            event = client.next_event() => {
                let Some(event) = event else {
                    lock(&record).note(ms(), "no more events: the client is closed".into());
                    return;
                };
                match item_number(&event) {
                    Some(k) => lock(&record).item(ms(), k),
                    None if event.name == "handshake" => {}
                    None => lock(&record).note(ms(), format!("{} {}", event.name, Value::from(event.args))),
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = status.borrow_and_update().clone();
                lock(&record).status(ms(), &now);
            }
        }
    }
}

/// 50 native clients behind the proxy, half polling-then-upgrade and half WebSocket only,
/// and a publisher connected directly; returns the summary, or an error naming the
/// clients that missed, repeated or reordered items.
pub(super) async fn native_clients(chaos: &Chaos) -> Result<Value> {
    let started = Instant::now();
    let deadline = started + EXCHANGE_TIMEOUT;
    let records: Vec<Shared> = (0..CLIENTS)
        .map(|index| {
            // Long-polling needs every request of a session on one server: not
            // behind a proxy that spreads connections over a cluster.
            let transports = if index % 2 == 0 && chaos.others.is_empty() {
                Transports::PollingThenUpgrade
            } else {
                Transports::WebSocketOnly
            };
            Arc::new(Mutex::new(Record::new(index, transports)))
        })
        .collect();
    // Dropped at the end of the test: aborts the clients, which disconnect.
    let mut clients = JoinSet::new();
    for record in &records {
        let transports = lock(record).transports;
        clients.spawn(native_client(
            chaos.proxy.url(),
            transports,
            record.clone(),
            started,
        ));
    }
    let all = |done: &dyn Fn(&Record) -> bool| records.iter().all(|r| done(&lock(r)));
    while !all(&|r| r.ever_connected) {
        if Instant::now() > deadline {
            let never: Vec<usize> = records
                .iter()
                .map(|r| lock(r))
                .filter(|r| !r.ever_connected)
                .map(|r| r.index)
                .collect();
            bail!("clients {never:?} never connected");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let last = records
            .iter()
            .map(|r| lock(r))
            .max_by_key(|r| r.first_connected)
            .expect("there are clients");
        println!(
            "connected {CLIENTS} clients at {} ms (the last: client {}, {:?})",
            started.elapsed().as_millis(),
            last.index,
            last.transports
        );
        if last.first_connected > 5000 {
            for line in last.timeline().iter().take(30) {
                println!("  client {}: {line}", last.index);
            }
        }
    }
    let mut cuts = CutPhases::new(MIN_CUTS);
    cuts.connected(Instant::now(), chaos.proxy.stats().cuts());

    let publisher = duplex_native::connect(
        &format!("http://{}", chaos.server.addr()),
        Options {
            transports: Transports::WebSocketOnly,
            ..Options::default()
        },
    )
    .await
    .context("the publisher cannot connect to the server directly")?
    // It receives every item too: drop them as they come, or its reads would stop.
    .into_emitter();
    let mut rng = Rng::new(chaos.seed ^ 0x5eed);
    let publishing = Instant::now();
    for k in 0..ITEMS {
        publisher
            .emit("publish", vec![json!({ "text": format!("item-{k}") })])
            .await
            .with_context(|| format!("publishing item {k}"))?;
        tokio::time::sleep(Duration::from_millis(2 + rng.next_u64() % 4)).await;
    }
    let publish_ms = publishing.elapsed().as_millis();
    println!("published {ITEMS} items in {publish_ms} ms");

    cuts.published(Instant::now(), chaos.proxy.stats().cuts());
    let complete = loop {
        if let Some(stopped) = cuts.tick(&chaos.proxy) {
            print_stopped(&stopped);
        }
        if all(&|r| r.distinct == ITEMS) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let settle_ms = publishing.elapsed().as_millis() - publish_ms;
    println!(
        "{} every item {settle_ms} ms after publishing",
        if complete {
            "every client has"
        } else {
            "not every client has"
        }
    );
    // Late duplicates (a replay of what had arrived already) come right behind.
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        matches!(&*publisher.status().borrow(), Status::Connected { .. }),
        "the publisher, connected directly, lost its connection: {:?}",
        publisher.status().borrow()
    );

    let mut failing = String::new();
    let mut failing_count = 0;
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &records {
        let record = lock(record);
        let check = record.check();
        *totals.entry("delivered").or_default() += record.distinct;
        *totals.entry("missing").or_default() += check.missing.len();
        *totals.entry("duplicated").or_default() += check.duplicated.len();
        *totals.entry("reordered").or_default() += check.reordered.len();
        *totals.entry("recovered").or_default() += record.recovered;
        *totals.entry("fresh").or_default() += record.fresh;
        if !(check.missing.is_empty() && check.duplicated.is_empty() && check.reordered.is_empty())
        {
            failing.push_str(&record.describe(&check, failing_count < 5));
            failing_count += 1;
        }
    }
    let summary = json!({
        "clients": CLIENTS,
        "items": ITEMS,
        "expected": CLIENTS * ITEMS,
        "totals": totals,
        "failingClients": failing_count,
        "publishMs": publish_ms,
        "settleMs": settle_ms,
        "elapsedMs": started.elapsed().as_millis(),
    });
    publisher.disconnect().await;
    if failing_count > 0 {
        bail!(
            "{failing_count} of {CLIENTS} native clients did not get every item exactly once in \
             order\n{failing}summary: {summary}\nproxy: {}",
            chaos.proxy.stats()
        );
    }
    Ok(summary)
}
