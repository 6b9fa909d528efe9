// The reference side of bench/socketio.sh: npm socket.io (the version
// pinned in bench/package.json) doing what bench/sio_server.c does, event
// for event:
//
//   echo ...ARGS          acked with ARGS (nothing when no ack is asked)
//   join ROOM             joins ROOM, acked with no arguments
//   fanout ROOM PAYLOAD   "msg" PAYLOAD to every socket of ROOM
//
// Namespace "/" only; socket.io's defaults (pingInterval 25 s, pingTimeout
// 20 s, maxPayload 1 MB, both transports), with compression off both ways:
// perMessageDeflate is off by default, and httpCompression is turned off
// here (it only applies to clients sending Accept-Encoding, which the load
// client does not, but it should not depend on that).
//
// usage: node [--expose-gc] sio_ref.js PORT [HOST] [--gc-every MS]
// --gc-every (with --expose-gc) runs a full GC every MS ms: the idle-memory
// row uses it so that garbage awaiting collection is not counted against
// the reference. Prints "listening on PORT" once it listens.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const args = process.argv.slice(2);
let gcEvery = 0;
const gcAt = args.indexOf("--gc-every");
if (gcAt >= 0) {
  gcEvery = Number(args[gcAt + 1]);
  args.splice(gcAt, 2);
}
const port = Number(args[0]);
const host = args[1] || "127.0.0.1";
if (!(port > 0 && port < 65536) || args.length > 2) {
  console.error("usage: node [--expose-gc] sio_ref.js PORT [HOST] [--gc-every MS]");
  process.exit(2);
}

const server = http.createServer();
const io = new Server(server, { perMessageDeflate: false, httpCompression: false });

io.on("connection", (socket) => {
  socket.on("echo", (...a) => {
    const ack = typeof a[a.length - 1] === "function" ? a.pop() : null;
    if (ack) ack(...a);
  });
  socket.on("join", (room, ack) => {
    if (typeof room === "string") socket.join(room);
    if (typeof ack === "function") ack();
  });
  socket.on("fanout", (room, payload) => {
    if (typeof room === "string" && payload !== undefined) io.to(room).emit("msg", payload);
  });
});

server.listen(port, host, () => {
  console.log(`listening on ${port}`);
});
if (gcEvery > 0 && typeof global.gc === "function") setInterval(global.gc, gcEvery).unref();
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
