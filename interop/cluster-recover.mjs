// One official socket.io-client 4 client with its default options (long-polling
// first, then the upgrade; reconnection on), for the test of recovery across the
// servers of a cluster (e2e/tests/cluster_recovery.rs): the test cuts its way to
// one server and lets it reconnect to another.
//
//   node cluster-recover.mjs <url> <channel> <last item> [--timeout-ms 30000]
//        [--join-room]
//
// Joins the news channel <channel> once first connected (duplex's app:
// `join {"channel"}`; with --join-room, as interop/cluster-node.mjs takes it:
// `join "channel:<channel>"`, the room duplex's app publishes a channel to), then prints one line per
// event: `connect {"id","recovered"}`, `joined`, `news {"text","offset"}` (the
// offset: the event's last argument, which recovery appends), `disconnect <reason>`.
// Once it has the `news` item <last item> (or after the timeout) it prints
// `summary {json}` — the texts received in order, the connects — and exits.

import { io } from "socket.io-client";

const [url, channel, last] = process.argv.slice(2);
const timeoutAt = process.argv.indexOf("--timeout-ms");
const timeoutMs = timeoutAt > 0 ? Number(process.argv[timeoutAt + 1]) : 30_000;
if (!url || !channel || !last) {
  console.error("usage: node cluster-recover.mjs <url> <channel> <last item> [--timeout-ms T]");
  process.exit(2);
}

const socket = io(url);
const texts = [];
const connects = [];
let joined = false;
let done = false;

const finish = (ok) => {
  if (done) return;
  done = true;
  console.log(`summary ${JSON.stringify({ ok, texts, connects })}`);
  socket.disconnect();
  process.exit(ok ? 0 : 1);
};

socket.on("connect", () => {
  connects.push({ id: socket.id, recovered: socket.recovered === true });
  console.log(`connect ${JSON.stringify({ id: socket.id, recovered: socket.recovered === true })}`);
  if (!joined) {
    const room = process.argv.includes("--join-room") ? `channel:${channel}` : { channel };
    socket.emit("join", room, () => {
      joined = true;
      console.log("joined");
    });
  }
});
socket.on("disconnect", (reason) => console.log(`disconnect ${reason}`));
socket.on("news", (item, offset) => {
  texts.push(item.hello);
  console.log(`news ${JSON.stringify({ text: item.hello, offset: offset ?? null })}`);
  if (item.hello === last) setTimeout(() => finish(true), 500);
});
setTimeout(() => finish(false), timeoutMs);
