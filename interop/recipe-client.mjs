// The official `socket.io-client` 4 with its default transports (HTTP long-polling,
// then the upgrade to WebSocket) through a deployment recipe, e.g. nginx terminating
// TLS with a self-signed certificate (deploy/nginx-tls.conf): e2e/tests/recipes.rs.
//
//   node interop/recipe-client.mjs https://127.0.0.1:<port>
//
// Certificates are not checked (`rejectUnauthorized: false`: the test made its own).
// Once it has the greeting `news`, has upgraded and got the echo of `my other event`
// over the WebSocket, it prints one JSON line — {"opened": <first transport>,
// "transport": <transport now>, "news": <the greeting>, "echo": <the echo>} — and exits
// 0; on a connection error, a disconnect, or after 15 s, it prints why on stderr and
// exits 1.

import { io } from "socket.io-client";

const TIMEOUT_MS = 15_000;

const url = process.argv[2];
if (!url) {
  console.error("usage: node interop/recipe-client.mjs <url, e.g. https://127.0.0.1:8443>");
  process.exit(2);
}

const state = { opened: null, transport: null, news: null, echo: null };

function fail(message) {
  console.error(`FAIL: ${message}; so far: ${JSON.stringify(state)}`);
  process.exit(1);
}

setTimeout(() => fail(`not done within ${TIMEOUT_MS} ms`), TIMEOUT_MS).unref();

const socket = io(url, { rejectUnauthorized: false, reconnection: false });
const engine = socket.io.engine;
state.opened = engine.transport?.name ?? null;
// The echo is asked for once the session is on the WebSocket.
engine.on("upgrade", () => socket.emit("my other event", { my: "data" }));
socket.on("connect_error", (err) => fail(`cannot connect to ${url}: ${err.message}`));
socket.on("disconnect", (reason) => fail(`disconnected: ${reason}`));
socket.on("news", (news) => {
  state.news ??= news;
});
socket.on("my other event", (echo) => {
  state.echo = echo;
  state.transport = socket.io.engine.transport.name;
  if (state.news === null) {
    fail("the echo came before the greeting");
  }
  console.log(JSON.stringify(state));
  socket.off("disconnect");
  socket.disconnect();
  process.exit(0);
});
