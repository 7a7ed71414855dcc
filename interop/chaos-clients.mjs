// Many official `socket.io-client` 4 clients behind a hostile network (a chaos proxy
// that delays and cuts their connections) while a publisher broadcasts numbered news:
// does every client get every item exactly once, in order? Nothing here is specific to
// duplex: any Socket.IO 4 server that broadcasts a `publish` {"text"} as `news`
// {"hello": text} to every client, with connection state recovery on, will do (duplex's
// app, or Node socket.io 4.8 with `connectionStateRecovery`).
//
//   node interop/chaos-clients.mjs <proxied url> <direct url> [--clients 50]
//        [--items 1000] [--websocket-only] [--seed 1] [--timeout-ms 45000]
//        [--connect-timeout-ms 20000]
//
// - <clients> clients connect to the proxied url with the library's default options
//   (HTTP long-polling, then the upgrade to WebSocket; reconnection on), or over
//   WebSocket only with --websocket-only. Each is its own connection (`forceNew`).
//   --connect-timeout-ms sets the client's `timeout` (how long a connection attempt may
//   take, 20 s by default): engine.io-client's manager, while opening, listens for the
//   engine's "open" and "error" but not for its "close", so an attempt whose WebSocket
//   is cut between the upgrade response and the Engine.IO open packet waits that long.
//   Under chaos, with the default, that wait alone can outlast a short test.
//   Another stall of the official client: when its upgrade probe is cut after the server
//   answered it, long-polling stays paused until the heartbeat times out
//   (pingInterval + pingTimeout, 45 s by default): give the server short heartbeats.
//   Each keeps every `news` it receives, and the story of its connection: connects
//   (and whether each was `socket.recovered`), disconnects with their reasons,
//   connect errors, transport upgrades.
// - Once every client has connected, a publisher connected to the direct url over
//   WebSocket emits `publish` {"text": "item-<k>"} for k = 0..items-1, 2 to 5 ms apart
//   (seeded), then prints `published` (the chaos test then stops the cuts).
// - It waits until every client has the last item, then until every client has every
//   item, then a second more for late duplicates, all within --timeout-ms.
//
// On stdout: progress lines, then `summary {json}` (delivered, missing, duplicated,
// reordered, reconnects, recovered and fresh reconnects, ...). When a client missed an
// item, got one twice or out of order, lines starting with `FAIL` name it, its missing
// items, what arrived around the first one and its connection history; the exit status
// is then 1.

import { io } from "socket.io-client";

const started = Date.now();
const now = () => Date.now() - started;

// --- arguments ---

function usage(message) {
  console.error(`${message}\nusage: node interop/chaos-clients.mjs <proxied url> <direct url> ` +
    "[--clients N] [--items M] [--websocket-only] [--seed S] [--timeout-ms T] [--connect-timeout-ms T]");
  process.exit(2);
}

const options = {
  clients: 50, items: 1000, websocketOnly: false, seed: "1", timeoutMs: 45_000, connectTimeoutMs: undefined,
};
const positional = [];
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i];
  const value = () => {
    const v = process.argv[++i];
    if (v === undefined) usage(`${arg} needs a value`);
    return v;
  };
  switch (arg) {
    case "--clients": options.clients = Number(value()); break;
    case "--items": options.items = Number(value()); break;
    case "--websocket-only": options.websocketOnly = true; break;
    case "--seed": options.seed = value(); break;
    case "--timeout-ms": options.timeoutMs = Number(value()); break;
    case "--connect-timeout-ms": options.connectTimeoutMs = Number(value()); break;
    default:
      if (arg.startsWith("--")) usage(`unknown option ${arg}`);
      positional.push(arg);
  }
}
const [proxiedUrl, directUrl] = positional;
if (!proxiedUrl || !directUrl) usage("two urls are needed");
if (!(options.clients > 0 && options.items > 0 && options.timeoutMs > 0)) usage("bad numbers");
const deadline = started + options.timeoutMs;

// A hard stop a little after the deadline, whatever the promises below do.
setTimeout(() => {
  console.log(`FAIL the script itself did not finish within ${options.timeoutMs + 5000} ms`);
  process.exit(1);
}, options.timeoutMs + 5000).unref();

/** mulberry32, seeded from the (64-bit, decimal) seed: the publisher's pacing. */
function prng(seed) {
  const big = BigInt.asUintN(64, BigInt(seed));
  let a = Number((big ^ (big >> 32n)) & 0xffffffffn);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(options.seed);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves true once `done()` holds, false at the deadline. */
async function waitUntil(done, until = deadline) {
  while (!done()) {
    if (Date.now() >= until) return false;
    await sleep(20);
  }
  return true;
}

/** What an engine.io-client error or close detail says, without its circular parts. */
function describe(detail) {
  if (detail === undefined || detail === null) return undefined;
  if (detail instanceof Error) {
    const inner = describe(detail.description ?? detail.context);
    return inner ? `${detail.message} (${inner})` : detail.message;
  }
  if (typeof detail !== "object") return String(detail);
  const parts = [];
  if (detail.description !== undefined) parts.push(describe(detail.description));
  const context = detail.context;
  if (context && typeof context === "object") {
    if (context.code !== undefined) parts.push(`code ${context.code}`);
    if (context.reason) parts.push(`reason ${JSON.stringify(String(context.reason))}`);
    if (context.status !== undefined) parts.push(`status ${context.status}`);
    if (context.message) parts.push(context.message);
  } else if (context !== undefined) {
    parts.push(String(context));
  }
  if (detail.code !== undefined && !parts.length) parts.push(`code ${detail.code}`);
  if (detail.type && !parts.length) parts.push(String(detail.type));
  return parts.filter(Boolean).join(", ") || undefined;
}

// --- the clients ---

const ITEM = /^item-(\d+)$/;

class Client {
  constructor(index) {
    this.index = index;
    this.socket = io(proxiedUrl, {
      forceNew: true,
      ...(options.websocketOnly ? { transports: ["websocket"] } : {}),
      ...(options.connectTimeoutMs ? { timeout: options.connectTimeoutMs } : {}),
    });
    /** Item numbers in the order they arrived (with repeats). */
    this.arrivals = [];
    /** How many times each item arrived. */
    this.counts = new Uint32Array(options.items);
    this.distinct = 0;
    /** Everything that happened to this client, in order: {t, item} or {t, what}. */
    this.log = [];
    this.ids = [];
    this.connects = 0;
    this.recovered = 0;
    this.fresh = 0;
    this.connectErrors = 0;
    this.disconnectReasons = [];
    this.everConnected = false;

    const socket = this.socket;
    socket.on("connect", () => {
      this.connects += 1;
      if (!this.everConnected) this.firstConnectAt = now();
      this.everConnected = true;
      if (!this.ids.includes(socket.id)) this.ids.push(socket.id);
      const recovered = Boolean(socket.recovered);
      if (this.connects > 1) {
        if (recovered) this.recovered += 1;
        else this.fresh += 1;
      }
      const transport = socket.io.engine?.transport?.name;
      this.note(`connect id=${socket.id} recovered=${recovered} transport=${transport}`);
    });
    socket.on("disconnect", (reason, details) => {
      this.disconnectReasons.push(reason);
      const detail = describe(details);
      this.note(`disconnect ${reason}${detail ? ` (${detail})` : ""}`);
    });
    socket.on("connect_error", (err) => {
      this.connectErrors += 1;
      this.note(`connect_error ${describe(err)}`);
    });
    socket.io.on("open", () => {
      const engine = socket.io.engine;
      engine.on("upgrading", (transport) => this.note(`probe answered: pausing polling to upgrade to ${transport.name}`));
      engine.on("upgrade", (transport) => this.note(`upgrade to ${transport.name}`));
      engine.on("upgradeError", (err) => this.note(`upgrade failed: ${describe(err)}`));
    });
    socket.on("news", (payload) => {
      const match = typeof payload?.hello === "string" ? ITEM.exec(payload.hello) : null;
      if (!match) {
        this.note(`news ${JSON.stringify(payload)}`);
        return;
      }
      const k = Number(match[1]);
      this.log.push({ t: now(), item: k });
      this.arrivals.push(k);
      if (k < options.items) {
        if (this.counts[k] === 0) this.distinct += 1;
        this.counts[k] += 1;
      }
    });
  }

  note(what) {
    this.log.push({ t: now(), what });
  }

  has(k) {
    return this.counts[k] > 0;
  }

  complete() {
    return this.distinct === options.items;
  }

  /** Where the connection stands now. */
  state() {
    const engine = this.socket.io.engine;
    const transport = engine?.transport;
    return `connected=${this.socket.connected} transport=${transport?.name} ` +
      `(${transport?.readyState}) upgrading=${Boolean(engine?.upgrading)}`;
  }

  /** Missing, duplicated and out-of-order items. */
  check() {
    const missing = [];
    const duplicated = [];
    for (let k = 0; k < options.items; k++) {
      if (this.counts[k] === 0) missing.push(k);
      for (let n = 1; n < this.counts[k]; n++) duplicated.push(k);
    }
    // An item that arrives (for the first time) after a later one.
    const reordered = [];
    const seen = new Uint8Array(options.items);
    let highest = -1;
    for (const k of this.arrivals) {
      if (k >= options.items || seen[k]) continue;
      seen[k] = 1;
      if (k < highest) reordered.push(k);
      highest = Math.max(highest, k);
    }
    const unknown = this.arrivals.filter((k) => k >= options.items);
    return { missing, duplicated, reordered, unknown };
  }

  /** The log with runs of consecutive items folded into one line each. */
  timeline() {
    const lines = [];
    for (const entry of this.log) {
      const last = lines[lines.length - 1];
      if (entry.item !== undefined) {
        if (last?.first !== undefined && entry.item === last.last + 1) {
          last.last = entry.item;
          last.until = entry.t;
          continue;
        }
        lines.push({ t: entry.t, until: entry.t, first: entry.item, last: entry.item });
      } else {
        lines.push(entry);
      }
    }
    return lines;
  }
}

function ranges(numbers, max = 12) {
  const out = [];
  for (let i = 0; i < numbers.length; i++) {
    let j = i;
    while (j + 1 < numbers.length && numbers[j + 1] === numbers[j] + 1) j++;
    out.push(i === j ? `${numbers[i]}` : `${numbers[i]}..${numbers[j]}`);
    i = j;
  }
  return out.length > max ? `${out.slice(0, max).join(", ")}, … (${out.length} runs)` : out.join(", ");
}

function showLine(line) {
  if (line.first !== undefined) {
    const what = line.first === line.last ? `item ${line.first}` : `items ${line.first}..${line.last}`;
    const span = line.until > line.t ? `${line.t}-${line.until} ms` : `${line.t} ms`;
    return `${span} ${what}`;
  }
  return `${line.t} ms ${line.what}`;
}

// --- main ---

const clients = [];
const publishedAt = new Float64Array(options.items);

async function main() {
  console.log(
    `chaos-clients: ${options.clients} clients (${options.websocketOnly ? "WebSocket only" : "default transports"}) ` +
      `via ${proxiedUrl}, ${options.items} items from a publisher on ${directUrl}, seed ${options.seed}` +
      (options.connectTimeoutMs ? `, connect timeout ${options.connectTimeoutMs} ms` : ""),
  );
  for (let i = 0; i < options.clients; i++) clients.push(new Client(i));

  const allConnected = await waitUntil(() => clients.every((c) => c.everConnected));
  if (!allConnected) {
    const never = clients.filter((c) => !c.everConnected);
    for (const c of never.slice(0, 5)) {
      console.log(`FAIL client ${c.index} never connected; history:`);
      for (const line of c.timeline().slice(-20)) console.log(`FAIL     ${showLine(line)}`);
    }
    finish({ failure: `${never.length} clients never connected` });
    return;
  }
  const last = clients.reduce((a, b) => (b.firstConnectAt > a.firstConnectAt ? b : a));
  console.log(`connected ${options.clients} clients at ${now()} ms (the last: client ${last.index}, ` +
    `after ${last.connectErrors} connect errors)`);
  if (last.firstConnectAt > 5000) {
    for (const line of last.timeline().slice(0, 30)) console.log(`  client ${last.index}: ${showLine(line)}`);
  }

  const publisher = io(directUrl, { forceNew: true, transports: ["websocket"] });
  const publisherTrouble = [];
  publisher.on("disconnect", (reason) => publisherTrouble.push(`${now()} ms disconnect ${reason}`));
  publisher.on("connect_error", (err) => publisherTrouble.push(`${now()} ms connect_error ${describe(err)}`));
  const publisherUp = await waitUntil(() => publisher.connected);
  if (!publisherUp) {
    finish({ failure: `the publisher could not connect to ${directUrl}: ${publisherTrouble.join("; ")}` });
    return;
  }
  const publishStart = now();
  for (let k = 0; k < options.items; k++) {
    publisher.emit("publish", { text: `item-${k}` });
    publishedAt[k] = now();
    await sleep(2 + Math.floor(random() * 4));
  }
  const publishMs = now() - publishStart;
  console.log(`published ${options.items} items in ${publishMs} ms`);
  console.log("published");

  const lastItem = options.items - 1;
  const lastEverywhere = await waitUntil(() => clients.every((c) => c.has(lastItem)));
  console.log(`${lastEverywhere ? "every client has" : "not every client has"} item ${lastItem} at ${now()} ms`);
  const allEverywhere = await waitUntil(() => clients.every((c) => c.complete()));
  const settledAt = now();
  console.log(`${allEverywhere ? "every client has" : "not every client has"} every item at ${settledAt} ms`);
  // Late duplicates (a replay of what had arrived already) come right behind.
  await sleep(Math.max(0, Math.min(1000, deadline - Date.now())));
  finish({ publishMs, settleMs: settledAt - publishStart - publishMs, publisherTrouble });
}

function finish({ failure, publishMs, settleMs, publisherTrouble = [] }) {
  const totals = {
    delivered: 0, missing: 0, duplicated: 0, reordered: 0, unknown: 0,
    reconnects: 0, recovered: 0, fresh: 0, connectErrors: 0,
  };
  const reasons = {};
  const transports = {};
  const failing = [];
  for (const c of clients) {
    const result = c.check();
    totals.delivered += c.distinct;
    totals.missing += result.missing.length;
    totals.duplicated += result.duplicated.length;
    totals.reordered += result.reordered.length;
    totals.unknown += result.unknown.length;
    totals.reconnects += Math.max(0, c.connects - 1);
    totals.recovered += c.recovered;
    totals.fresh += c.fresh;
    totals.connectErrors += c.connectErrors;
    for (const r of c.disconnectReasons) reasons[r] = (reasons[r] ?? 0) + 1;
    const transport = c.socket.connected ? c.socket.io.engine?.transport?.name : "disconnected";
    transports[transport] = (transports[transport] ?? 0) + 1;
    if (result.missing.length || result.duplicated.length || result.reordered.length || result.unknown.length) {
      failing.push({ c, result });
    }
  }
  const ok = !failure && failing.length === 0 && publisherTrouble.length === 0;
  for (const [n, { c, result }] of failing.entries()) {
    const problems = [];
    if (result.missing.length) problems.push(`missing ${result.missing.length} [${ranges(result.missing)}]`);
    if (result.duplicated.length) problems.push(`duplicated ${result.duplicated.length} [${ranges(result.duplicated)}]`);
    if (result.reordered.length) problems.push(`out of order ${result.reordered.length} [${ranges(result.reordered)}]`);
    if (result.unknown.length) problems.push(`unknown items [${ranges(result.unknown)}]`);
    console.log(
      `FAIL client ${c.index} (socket ids ${c.ids.join(", ")}; ${c.connects} connects, ` +
        `${c.recovered} recovered, ${c.fresh} fresh): ${problems.join("; ")}`,
    );
    if (n >= 5) continue; // the first few in detail
    const timeline = c.timeline();
    const first = result.missing[0] ?? result.duplicated[0] ?? result.reordered[0];
    if (first !== undefined) {
      const at = publishedAt[first];
      console.log(`FAIL   around item ${first} (published at ${Math.round(at)} ms):`);
      // The first line holding a later item (or, for a duplicate/reorder, this item).
      let index = timeline.findIndex((line) => line.first !== undefined &&
        (result.missing.length ? line.last > first : line.first <= first && first <= line.last));
      if (index < 0) index = timeline.length;
      for (const line of timeline.slice(Math.max(0, index - 5), index + 4)) {
        console.log(`FAIL     ${showLine(line)}`);
      }
    }
    const history = timeline.filter((line) => line.what !== undefined);
    console.log(`FAIL   connection history (${history.length} entries${history.length > 40 ? ", last 40" : ""}):`);
    for (const line of history.slice(-40)) console.log(`FAIL     ${showLine(line)}`);
    console.log(`FAIL   at the end: ${c.state()}`);
  }
  if (failure) console.log(`FAIL ${failure}`);
  for (const line of publisherTrouble) console.log(`FAIL publisher: ${line}`);
  const summary = {
    ok,
    seed: options.seed,
    clients: options.clients,
    items: options.items,
    websocketOnly: options.websocketOnly,
    connectTimeoutMs: options.connectTimeoutMs ?? "default",
    expected: options.clients * options.items,
    ...totals,
    failingClients: failing.length,
    completeClients: clients.filter((c) => c.complete()).length,
    disconnectReasons: reasons,
    finalTransports: transports,
    publishMs,
    settleMs,
    elapsedMs: now(),
  };
  console.log(`summary ${JSON.stringify(summary)}`);
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.log(`FAIL ${err?.stack ?? err}`);
  process.exit(1);
});
