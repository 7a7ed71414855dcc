// The bench's Node peer: the app contract on the official socket.io 4 server.
//
//   node loadgen/peers/node-server.mjs PORT [--recovery] [--ping-interval MS] [--ping-timeout MS]
//                                          [--redis URL]
//
// Same contract as duplex's news app, as far as the bench uses it:
// - on connection: emit `news` {hello: "world"};
// - `publish` {text}: emit `news` {hello: text, from: socket.id} to everyone
//   (acked with {delivered} when the client asks);
// - any other event: emitted back to its sender with the same arguments, and
//   acked with them when the sender asked.
// With --recovery, connection state recovery is on (a 2 minute window, as
// duplex's default): the chaos scenario compares the two on lost transports.
// --ping-interval and --ping-timeout (ms) set the heartbeat, as duplex's flags
// of the same names do (the chaos section runs both with 5000 and 5000).
// --redis URL joins a cluster on that Redis with @socket.io/redis-streams-adapter
// (its default options), as the cluster section of the bench runs it.
// Listens on 127.0.0.1 with a backlog of 1024; exits when stdin closes (so the
// harness cannot leak it), on SIGTERM and on SIGINT.

import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 3000);
const recovery = process.argv.includes("--recovery");
/** The number after `flag`, if given. */
function millis(flag) {
  const i = process.argv.indexOf(flag);
  if (i < 0) return undefined;
  const ms = Number(process.argv[i + 1]);
  if (!(ms > 0)) {
    console.error(`${flag} needs a number of milliseconds`);
    process.exit(2);
  }
  return ms;
}
const pingInterval = millis("--ping-interval");
const pingTimeout = millis("--ping-timeout");

const redisAt = process.argv.indexOf("--redis");
let adapter;
if (redisAt >= 0) {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-streams-adapter");
  const client = createClient({ url: process.argv[redisAt + 1] });
  client.on("error", (e) => console.error(`redis: ${e.message}`));
  await client.connect();
  adapter = createAdapter(client);
}

const httpServer = createServer();
// Defaults (pingInterval 25 s, pingTimeout 20 s, no recovery), as a user would
// start it, unless told otherwise; recovery as its documentation shows it.
const io = new Server(httpServer, {
  ...(adapter ? { adapter } : {}),
  ...(pingInterval ? { pingInterval } : {}),
  ...(pingTimeout ? { pingTimeout } : {}),
  ...(recovery
    ? { connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true } }
    : {}),
});

io.on("connection", (socket) => {
  socket.emit("news", { hello: "world" });
  socket.onAny((event, ...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (event === "publish") {
      const text = args[0] && typeof args[0].text === "string" ? args[0].text : null;
      if (text === null) {
        if (ack) ack({ error: "expected {text}" });
        return;
      }
      io.emit("news", { hello: text, from: socket.id });
      if (ack) ack({ delivered: io.engine.clientsCount });
      return;
    }
    socket.emit(event, ...args);
    if (ack) ack(...args);
  });
});

httpServer.listen({ port, host: "127.0.0.1", backlog: 1024 }, () => {
  console.log(`listening ${httpServer.address().port}`);
});

const exit = () => {
  io.close();
  process.exit(0);
};
process.stdin.on("end", exit);
process.stdin.on("close", exit);
process.stdin.resume();
process.on("SIGTERM", exit);
process.on("SIGINT", exit);
