// The Socket.IO tutorial's app on the official Node server, for interop tests.
//
//   node interop/tutorial-server.mjs [port]
//
// Listens on 127.0.0.1 (port 0 = any free port) and prints `listening <port>` on
// stdout once it does. On connection it emits `news` {hello: "world"}; `my other
// event` is logged and echoed; any other event is echoed to its sender with the
// same arguments (binary included) and acked with them when the sender asked.
// It exits when stdin closes, so a test that spawned it cannot leak it, and on
// SIGTERM/SIGINT.

import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 0);

const httpServer = createServer();
const io = new Server(httpServer, {
  // Any origin, with credentials (cookies), as the duplex server allows.
  cors: { origin: true, credentials: true },
});

io.on("connection", (socket) => {
  socket.emit("news", { hello: "world" });

  socket.on("my other event", (data) => {
    console.log(data);
    socket.emit("my other event", data);
  });

  // onAny sees every event, `my other event` included: that one is answered above.
  socket.onAny((event, ...args) => {
    if (event === "my other event") {
      return;
    }
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    socket.emit(event, ...args);
    if (ack) {
      ack(...args);
    }
  });
});

httpServer.listen(port, "127.0.0.1", () => {
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
