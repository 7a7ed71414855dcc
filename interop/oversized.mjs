// Oversized messages from official `socket.io-client` 4 clients: each is closed with
// WebSocket close code 1009 (message too big) and a reason, while a bystander connected
// to the same server keeps doing round trips, during and after. Nothing here is specific
// to duplex: any Socket.IO 4 server with the default maxPayload (1,000,000 bytes) that
// echoes and acks `my other event` will do.
//
//   node interop/oversized.mjs <server url> [--sizes 2000000,8000000] [--rounds 1]
//        [--timeout-ms 20000] [--reason-optional]
//
// Each round runs one big client per size, at the same time; rounds follow each other
// (more rounds, more chances to catch a close that is only sometimes wrong).
// --reason-optional accepts a close without a reason (Node's `ws` sends 1009 with none).
//
// Every client uses the library's default options (long-polling, then the upgrade to
// WebSocket); each big client waits for its upgrade, so that its message goes over
// WebSocket, then emits one string of its size. On stdout: one line per big client, then
// `summary {json}`; on a failure, lines starting with `FAIL`, and the exit status is 1.

import { io } from "socket.io-client";

const started = Date.now();
const now = () => Date.now() - started;

let url;
let sizes = [2_000_000, 8_000_000];
let timeoutMs = 20_000;
let reasonRequired = true;
let rounds = 1;
const USAGE = "usage: node interop/oversized.mjs <server url> [--sizes 2000000,8000000] " +
  "[--rounds 1] [--timeout-ms 20000] [--reason-optional]";
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i];
  if (arg === "--sizes") sizes = process.argv[++i].split(",").map(Number);
  else if (arg === "--timeout-ms") timeoutMs = Number(process.argv[++i]);
  else if (arg === "--reason-optional") reasonRequired = false;
  else if (arg === "--rounds") rounds = Number(process.argv[++i]);
  else if (!arg.startsWith("--") && !url) url = arg;
  else {
    console.error(USAGE);
    process.exit(2);
  }
}
if (!url || !sizes.every((n) => n > 0) || !(timeoutMs > 0) || !(rounds > 0)) {
  console.error(USAGE);
  process.exit(2);
}
const deadline = started + timeoutMs;
const failures = [];
const fail = (message) => {
  failures.push(message);
  console.log(`FAIL ${message}`);
};

setTimeout(() => {
  console.log(`FAIL the script did not finish within ${timeoutMs + 5000} ms`);
  process.exit(1);
}, timeoutMs + 5000).unref();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with `value()` once it is not undefined, or undefined at the deadline. */
async function waitFor(value, until = deadline) {
  for (;;) {
    const v = value();
    if (v !== undefined) return v;
    if (Date.now() >= until) return undefined;
    await sleep(10);
  }
}

function describe(detail) {
  if (detail === undefined || detail === null) return "";
  if (detail instanceof Error) return detail.message;
  if (typeof detail !== "object") return String(detail);
  const context = detail.context;
  const parts = [detail.description && String(detail.description)];
  if (context && typeof context === "object") {
    parts.push(`code ${context.code}`, `reason ${JSON.stringify(String(context.reason ?? ""))}`);
  }
  return parts.filter(Boolean).join(", ");
}

// --- the bystander: round trips all along ---

const bystander = io(url, { forceNew: true });
const bystanderTrouble = [];
bystander.on("disconnect", (reason, details) =>
  bystanderTrouble.push(`${now()} ms disconnect ${reason} ${describe(details)}`));
bystander.on("connect_error", (err) => bystanderTrouble.push(`${now()} ms connect_error ${err.message}`));

const roundTrips = { done: 0, failed: [], slowestMs: 0 };
let stopRoundTrips = false;
async function roundTripLoop() {
  for (let i = 0; !stopRoundTrips; i++) {
    const sent = { my: `round trip ${i}` };
    const t0 = Date.now();
    try {
      const reply = await bystander.timeout(2000).emitWithAck("my other event", sent);
      if (reply?.my !== sent.my) {
        roundTrips.failed.push(`${now()} ms: round trip ${i} acked with ${JSON.stringify(reply)}`);
      } else {
        roundTrips.done += 1;
        roundTrips.slowestMs = Math.max(roundTrips.slowestMs, Date.now() - t0);
      }
    } catch (err) {
      roundTrips.failed.push(`${now()} ms: round trip ${i}: ${err.message}`);
    }
    await sleep(20);
  }
}

// --- the big clients ---

async function bigClient(size) {
  const socket = io(url, { forceNew: true });
  const result = { size, upgraded: false };
  if (!(await waitFor(() => (socket.connected ? true : undefined)))) {
    fail(`${size} B client: not connected`);
    socket.close();
    return result;
  }
  const upgraded = await waitFor(() =>
    socket.io.engine?.transport?.name === "websocket" ? true : undefined);
  result.upgraded = Boolean(upgraded);
  if (!upgraded) {
    fail(`${size} B client: no upgrade to WebSocket (transport ${socket.io.engine?.transport?.name})`);
    socket.close();
    return result;
  }
  // One close to look at, not a reconnection loop after it.
  socket.io.reconnection(false);
  let engineClose;
  socket.io.engine.on("close", (reason, description) => {
    engineClose = { reason, description };
  });
  let disconnect;
  socket.on("disconnect", (reason, details) => {
    disconnect = { reason, details };
  });
  result.emittedAt = now();
  socket.emit("big", "x".repeat(size));
  const closed = await waitFor(() => disconnect);
  if (!closed) {
    fail(`${size} B client: still connected ${now() - result.emittedAt} ms after its emit`);
    socket.close();
    return result;
  }
  const context = closed.details?.context ?? engineClose?.description?.context;
  result.closedAfterMs = now() - result.emittedAt;
  result.reason = closed.reason;
  result.description = closed.details?.description;
  result.code = context?.code;
  result.closeReason = context?.reason === undefined ? undefined : String(context.reason);
  console.log(
    `${size} B client: disconnect ${JSON.stringify(closed.reason)} after ${result.closedAfterMs} ms, ` +
      `close code ${result.code}, reason ${JSON.stringify(result.closeReason)}`,
  );
  if (result.code !== 1009) fail(`${size} B client: close code ${result.code}, expected 1009 (${describe(closed.details)})`);
  if (reasonRequired && !result.closeReason) fail(`${size} B client: the close has no reason (${describe(closed.details)})`);
  socket.close();
  return result;
}

async function main() {
  if (!(await waitFor(() => (bystander.connected ? true : undefined)))) {
    fail(`the bystander could not connect to ${url}: ${bystanderTrouble.join("; ")}`);
    return finish([]);
  }
  const loop = roundTripLoop();
  await sleep(200);
  const before = roundTrips.done;
  const results = [];
  for (let round = 0; round < rounds; round++) {
    results.push(...(await Promise.all(sizes.map(bigClient))));
  }
  const during = roundTrips.done - before;
  // And after: the server still answers the bystander.
  const afterStart = roundTrips.done;
  await sleep(1000);
  stopRoundTrips = true;
  await loop;
  const after = roundTrips.done - afterStart;
  if (during + before < 5) fail(`the bystander did only ${before + during} round trips before and during the big messages`);
  if (after < 5) fail(`the bystander did only ${after} round trips in the second after the big messages`);
  for (const f of roundTrips.failed) fail(`bystander ${f}`);
  for (const t of bystanderTrouble) fail(`bystander ${t}`);
  finish(results, { before, during, after });
}

function finish(results, counts = {}) {
  const summary = {
    ok: failures.length === 0,
    clients: results,
    bystander: { ...counts, roundTrips: roundTrips.done, failedRoundTrips: roundTrips.failed.length,
      slowestMs: roundTrips.slowestMs, disconnects: bystanderTrouble.length },
    elapsedMs: now(),
  };
  console.log(`summary ${JSON.stringify(summary)}`);
  process.exit(failures.length === 0 ? 0 : 1);
}

main().catch((err) => {
  console.log(`FAIL ${err?.stack ?? err}`);
  process.exit(1);
});
