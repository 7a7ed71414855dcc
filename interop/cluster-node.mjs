// A Node.js Socket.IO 4 server in a cluster on Redis through the official
// @socket.io/redis-streams-adapter (default options): the peer of duplex's
// cluster tests (server/tests/cluster.rs).
//
//   node cluster-node.mjs <redis-url> [--recovery]
//
// --recovery turns on connection state recovery (maxDisconnectionDuration 120 s,
// as duplex's default window): sessions and offsets through the adapter.
// Listens on 127.0.0.1 (a free port), prints `listening <port>`, and exits when
// its standard input closes (the test that started it ended) or after 120 s.
//
// Events of a client (each acked):
//   publish [value]            io.emit("news", value)
//   to [room, value]           io.to(room).emit("news", value)
//   join [room]                the socket joins room; ack: its rooms
//   rooms []                   ack: the socket's rooms
//   select-join [room, other]  io.in(room).socketsJoin(other)
//   select-leave [room, other] io.in(room).socketsLeave(other)
//   select-disconnect [room]   io.in(room).disconnectSockets()
//   fetch [room or null]       ack: the ids of io.in(room).fetchSockets(), sorted
//   ask [ms]                   io.timeout(ms).emit("question"); ack: {err, responses}
//   sse [name, withAck]        io.serverSideEmit(name, "node") (ack "sent"), or with
//                              withAck io.serverSideEmitWithAck(name) (5 s timeout)
//                              (ack: {responses} sorted, or {error})
// Server-side events: ping → answers "pong-node"; hello [who] → io.local.emit("news",
// "server said <who>").

import { createServer } from "node:http";
import { Server } from "socket.io";
import { createClient } from "redis";
import { createAdapter } from "@socket.io/redis-streams-adapter";

const [url] = process.argv.slice(2);
const recovery = process.argv.includes("--recovery");
if (!url) {
  console.error("usage: node cluster-node.mjs <redis-url>");
  process.exit(2);
}

const redis = createClient({ url });
redis.on("error", (e) => console.error(`redis: ${e.message}`));
await redis.connect();

const http = createServer();
const io = new Server(http, {
  adapter: createAdapter(redis),
  ...(recovery ? { connectionStateRecovery: { maxDisconnectionDuration: 120_000 } } : {}),
});

io.on("ping", (...args) => {
  const ack = args[args.length - 1];
  if (typeof ack === "function") ack("pong-node");
});
io.on("hello", (who) => io.local.emit("news", `server said ${who}`));

io.on("connection", (socket) => {
  const done = (ack, value = "ok") => typeof ack === "function" && ack(value);
  socket.on("publish", (value, ack) => {
    io.emit("news", value);
    done(ack);
  });
  socket.on("to", (room, value, ack) => {
    io.to(room).emit("news", value);
    done(ack);
  });
  socket.on("join", (room, ack) => {
    socket.join(room);
    done(ack, [...socket.rooms]);
  });
  socket.on("rooms", (ack) => done(ack, [...socket.rooms]));
  socket.on("select-join", (room, other, ack) => {
    io.in(room).socketsJoin(other);
    done(ack);
  });
  socket.on("select-leave", (room, other, ack) => {
    io.in(room).socketsLeave(other);
    done(ack);
  });
  socket.on("select-disconnect", (room, ack) => {
    io.in(room).disconnectSockets();
    done(ack);
  });
  socket.on("fetch", async (room, ack) => {
    try {
      const sockets = await (room ? io.in(room) : io).fetchSockets();
      done(ack, sockets.map((s) => s.id).sort());
    } catch (e) {
      done(ack, { error: e.message });
    }
  });
  socket.on("sse", async (name, withAck, ack) => {
    if (!withAck) {
      io.serverSideEmit(name, "node");
      return done(ack, "sent");
    }
    try {
      const responses = await io.serverSideEmitWithAck(name);
      done(ack, { responses: responses.map(String).sort() });
    } catch (e) {
      done(ack, { error: e.message });
    }
  });
  socket.on("ask", (ms, ack) => {
    io.timeout(ms).emit("question", (err, responses) => {
      done(ack, { err: err ? err.message : null, responses });
    });
  });
});

http.listen(0, "127.0.0.1", () => {
  console.log(`listening ${http.address().port}`);
});

const stop = () => {
  io.close();
  redis.quit().catch(() => {});
  setTimeout(() => process.exit(0), 200).unref();
};
process.stdin.on("end", stop);
process.stdin.resume();
setTimeout(stop, 120_000).unref();
