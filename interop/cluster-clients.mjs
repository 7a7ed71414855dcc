// Official socket.io-client 4 clients with their default options (long-polling
// first, then the upgrade to WebSocket) through a load balancer in front of a
// cluster: the nginx recipe's test (server/tests/cluster.rs).
//
//   node cluster-clients.mjs <url> <clients> <items>
//
// Client i connects from 127.0.0.<2+i>, so that nginx's `hash $remote_addr`
// spreads them over the servers. Prints `ready` once every client is connected
// and upgraded, then waits until each got <items> `news` values of the form
// {k: number} (or 20 s) and prints one JSON line: per client, its transport and
// the k values in the order they came. Exits when done.

import http from "node:http";
import { io } from "socket.io-client";

const [url, clientCount, itemCount] = process.argv.slice(2);
const n = Number(clientCount);
const items = Number(itemCount);
if (!url || !n || !items) {
  console.error("usage: node cluster-clients.mjs <url> <clients> <items>");
  process.exit(2);
}

const clients = [];
for (let i = 0; i < n; i++) {
  const localAddress = `127.0.0.${2 + i}`;
  const socket = io(url, {
    agent: new http.Agent({ localAddress, keepAlive: true }),
    localAddress,
    reconnection: false,
  });
  const client = { socket, got: [], upgraded: false, error: null };
  socket.on("news", (value) => {
    if (value && typeof value.k === "number") client.got.push(value.k);
  });
  socket.on("connect_error", (e) => (client.error = `connect_error: ${e.message}`));
  socket.on("disconnect", (reason) => (client.error ??= `disconnect: ${reason}`));
  socket.io.engine.on("upgrade", () => (client.upgraded = true));
  clients.push(client);
}

const until = (check, ms) =>
  new Promise((resolve) => {
    const started = Date.now();
    const tick = () => (check() || Date.now() - started > ms ? resolve() : setTimeout(tick, 20));
    tick();
  });

await until(() => clients.every((c) => c.socket.connected && c.upgraded) || clients.some((c) => c.error), 20_000);
console.log("ready");
await until(() => clients.every((c) => c.got.length >= items) || clients.some((c) => c.error), 20_000);
console.log(
  JSON.stringify(
    clients.map((c) => ({
      transport: c.socket.io.engine?.transport?.name ?? null,
      connected: c.socket.connected,
      error: c.error,
      got: c.got,
    })),
  ),
);
for (const c of clients) c.socket.close();
setTimeout(() => process.exit(0), 100).unref();
