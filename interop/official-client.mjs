// The official `socket.io-client` 4 against a duplex server: the tutorial's
// exchange, echoes and acks (binary too), the polling → WebSocket upgrade, and
// publish between two clients.
//
//   node interop/official-client.mjs http://127.0.0.1:<port>
//
// The first client uses the library's DEFAULT options: it opens over HTTP
// long-polling and upgrades to WebSocket on its own. One line per check on stdout;
// on the first failure, or if everything has not passed within 10 s, it prints
// what went wrong on stderr and exits with status 1.

import { isDeepStrictEqual, inspect } from "node:util";
import { io } from "socket.io-client";

const OVERALL_TIMEOUT_MS = 10_000;
const ACK_TIMEOUT_MS = 5_000;

const url = process.argv[2];
if (!url) {
  console.error("usage: node interop/official-client.mjs <server url, e.g. http://127.0.0.1:8124>");
  process.exit(2);
}

/** What the script is waiting for, for the timeout message. */
let waitingFor = "the first connection";

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

function pass(message) {
  console.log(`ok - ${message}`);
}

setTimeout(
  () => fail(`no result within ${OVERALL_TIMEOUT_MS} ms; still waiting for ${waitingFor}`),
  OVERALL_TIMEOUT_MS,
).unref();

const show = (value) => inspect(value, { depth: 5, breakLength: Infinity });

/** Binary arrives as a Buffer or an ArrayBuffer depending on the transport: compare bytes. */
function normalize(value) {
  if (value instanceof ArrayBuffer) {
    return Buffer.from(new Uint8Array(value));
  }
  if (ArrayBuffer.isView(value)) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  if (Array.isArray(value)) {
    return value.map(normalize);
  }
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  }
  return value;
}

function expectEqual(what, actual, expected) {
  if (!isDeepStrictEqual(normalize(actual), normalize(expected))) {
    fail(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

/** Every event a socket receives, kept until a check takes it: nothing is missed
 * because it arrived before the check started waiting. */
class Inbox {
  constructor(socket) {
    this.items = [];
    this.waiters = [];
    socket.onAny((event, ...args) => {
      this.items.push({ event, args });
      this.deliver();
    });
  }

  deliver() {
    for (const waiter of [...this.waiters]) {
      const i = this.items.findIndex(
        (item) => item.event === waiter.event && waiter.accept(...item.args),
      );
      if (i >= 0) {
        const [item] = this.items.splice(i, 1);
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(item.args);
      }
    }
  }

  /** The arguments of the next `event` whose arguments `accept` takes. */
  next(event, what, accept = () => true) {
    waitingFor = what;
    return new Promise((resolve) => {
      this.waiters.push({ event, accept, resolve });
      this.deliver();
    });
  }
}

/** A client whose unexpected disconnects and connection errors fail the run. */
function client(name, options) {
  const socket = options ? io(url, options) : io(url);
  const inbox = new Inbox(socket);
  const connected = new Promise((resolve) => socket.once("connect", resolve));
  socket.on("connect_error", (err) => fail(`${name}: cannot connect to ${url}: ${err.message}`));
  socket.on("disconnect", (reason) => {
    if (!socket.leaving) {
      fail(`${name}: disconnected unexpectedly: ${reason}`);
    }
  });
  return { socket, inbox, connected };
}

/** Emits with a callback ack (all its arguments), failing on timeout. */
function emitWithFullAck(socket, event, ...args) {
  return new Promise((resolve) => {
    socket.timeout(ACK_TIMEOUT_MS).emit(event, ...args, (err, ...reply) => {
      if (err) {
        fail(`no ack for ${event} within ${ACK_TIMEOUT_MS} ms: ${err.message}`);
      }
      resolve(reply);
    });
  });
}

async function main() {
  // --- the first client, default options ---
  const first = client("client 1");
  const { socket, inbox } = first;
  let initialTransport = null;
  socket.io.on("open", () => {
    initialTransport = socket.io.engine.transport.name;
  });

  await first.connected;
  pass(`connected to ${url} (socket id ${socket.id})`);
  if (initialTransport !== "polling") {
    fail(`the default client should open over polling, opened over ${initialTransport}`);
  }
  pass("the session opened over HTTP long-polling");

  const [news] = await inbox.next("news", "the news greeting");
  expectEqual("news", news, { hello: "world" });
  pass(`received news ${show(news)}`);

  const [handshake] = await inbox.next("handshake", "the handshake event");
  if (!handshake || typeof handshake !== "object") {
    fail(`handshake: expected an object, got ${show(handshake)}`);
  }
  pass("received handshake");

  socket.emit("my other event", { my: "data" });
  const echoed = await inbox.next("my other event", "the echo of my other event");
  expectEqual("my other event echo", echoed, [{ my: "data" }]);
  pass("my other event {my: 'data'} echoed");

  waitingFor = "the ack of custom (emitWithAck)";
  let firstArg;
  try {
    firstArg = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("custom", { n: 1 }, "two");
  } catch (err) {
    fail(`custom: no ack within ${ACK_TIMEOUT_MS} ms: ${err.message}`);
  }
  // emitWithAck resolves with the ack's first argument.
  expectEqual("custom ack (emitWithAck)", firstArg, { n: 1 });
  pass("custom acked through emitWithAck");
  const customEcho = await inbox.next("custom", "the echo of custom");
  expectEqual("custom echo", customEcho, [{ n: 1 }, "two"]);
  pass("custom echoed with the same arguments");

  waitingFor = "the ack of custom (callback)";
  const fullAck = await emitWithFullAck(socket, "custom", { n: 1 }, "two");
  expectEqual("custom ack (callback)", fullAck, [{ n: 1 }, "two"]);
  await inbox.next("custom", "the second echo of custom");
  pass("custom acked with the same arguments");

  // --- binary ---
  const bytes = Buffer.from([0, 1, 2, 127, 128, 254, 255]);
  const nested = { label: "blob", data: Uint8Array.from([9, 8, 7]) };
  waitingFor = "the ack of bytes";
  const bytesAck = await emitWithFullAck(socket, "bytes", bytes, nested);
  expectEqual("bytes ack", bytesAck, [bytes, nested]);
  pass("binary acked with the same bytes");
  const bytesEcho = await inbox.next("bytes", "the echo of bytes");
  expectEqual("bytes echo", bytesEcho, [bytes, nested]);
  pass("binary echoed with the same bytes");

  // --- the upgrade ---
  if (socket.io.engine.transport.name !== "websocket") {
    waitingFor = "the upgrade to WebSocket";
    await new Promise((resolve) => socket.io.engine.once("upgrade", resolve));
  }
  if (socket.io.engine.transport.name !== "websocket") {
    fail(`expected the WebSocket transport after the upgrade, got ${socket.io.engine.transport.name}`);
  }
  pass("upgraded to WebSocket");
  socket.emit("my other event", { my: "data after the upgrade" });
  const afterUpgrade = await inbox.next("my other event", "the echo after the upgrade");
  expectEqual("echo after the upgrade", afterUpgrade, [{ my: "data after the upgrade" }]);
  const afterAck = await emitWithFullAck(socket, "bytes", bytes);
  expectEqual("binary ack after the upgrade", afterAck, [bytes]);
  await inbox.next("bytes", "the binary echo after the upgrade");
  pass("echo and binary ack round trips over WebSocket");

  // --- publish, seen by a second client ---
  // A second connection (not multiplexed with the first), default transports.
  const second = client("client 2", { forceNew: true });
  await second.connected;
  await second.inbox.next("news", "the second client's greeting", (n) => n?.hello === "world");
  pass(`second client connected (socket id ${second.socket.id})`);

  const text = `extra, extra ${Date.now()}`;
  socket.emit("publish", { text });
  const isPublished = (n) => n?.hello === text;
  const [toSecond] = await second.inbox.next("news", "the published news on client 2", isPublished);
  expectEqual("news on client 2", toSecond, { hello: text, from: socket.id });
  const [toFirst] = await inbox.next("news", "the published news on client 1", isPublished);
  expectEqual("news on client 1", toFirst, { hello: text, from: socket.id });
  pass("publish reached both clients as news from the publisher");

  // --- clean disconnect ---
  for (const [name, c] of [["client 1", first], ["client 2", second]]) {
    c.socket.leaving = true;
    const gone = new Promise((resolve) => c.socket.once("disconnect", resolve));
    c.socket.disconnect();
    waitingFor = `${name}'s disconnect`;
    const reason = await gone;
    if (reason !== "io client disconnect") {
      fail(`${name}: disconnect reason ${reason}`);
    }
  }
  pass("both clients disconnected cleanly");
  process.exit(0);
}

main().catch((err) => fail(err?.stack ?? String(err)));
