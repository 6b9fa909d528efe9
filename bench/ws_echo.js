#!/usr/bin/env node
// bench/ws_echo.js — the Node `ws` reference for bench/extra.sh: an echo
// server with permessage-deflate enabled, as `duplex serve` negotiates it by
// default. Every message goes back with its type; a client that does not
// offer permessage-deflate gets plain frames.
//
// usage: node bench/ws_echo.js PORT [HOST]      (HOST default 127.0.0.1)
// env:   WS_MODULE  where to load ws from (default: the interop suite's copy,
//                   tests/interop/node_modules/ws)
//        WS_NO_DEFLATE=1  do not negotiate permessage-deflate
//        WS_TLS_CERT, WS_TLS_KEY  serve wss:// with this certificate chain
//                  and key (PEM); the idle-memory rows of bench/README.md
//
// ws's own defaults otherwise, stated here because they shape the figures:
// zlib level is zlib's default (6) and memLevel 8, both ways a 15-bit window
// with context takeover unless the client asks otherwise; messages under
// 1024 bytes go uncompressed (threshold); at most 10 zlib jobs run at once
// (concurrencyLimit), on libuv's thread pool, so compression can use cores
// other than the JavaScript thread's.
'use strict';

const path = require('path');

const port = Number(process.argv[2]);
const host = process.argv[3] || '127.0.0.1';
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('usage: node ws_echo.js PORT [HOST]');
  process.exit(2);
}

const wsPath =
  process.env.WS_MODULE || path.join(__dirname, '..', 'tests', 'interop', 'node_modules', 'ws');
const { WebSocketServer } = require(wsPath);

// wss://: ws rides on an https server that listens in its place.
let tlsServer = null;
if (process.env.WS_TLS_CERT) {
  const fs = require('fs');
  tlsServer = require('https').createServer({
    cert: fs.readFileSync(process.env.WS_TLS_CERT),
    key: fs.readFileSync(process.env.WS_TLS_KEY),
  });
}

const wss = new WebSocketServer({
  ...(tlsServer ? { server: tlsServer } : { host, port }),
  perMessageDeflate: process.env.WS_NO_DEFLATE !== '1',
  // Large enough for the 1 MiB rows; ws's default is 100 MiB anyway.
  maxPayload: 64 * 1024 * 1024,
  clientTracking: false,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', () => {}); // a peer's protocol error closes it; nothing to log
});

const listening = () => {
  console.error(`listening on ${host}:${port}${tlsServer ? ' (TLS)' : ''} (ws ${require(path.join(wsPath, 'package.json')).version})`);
};
if (tlsServer) tlsServer.listen(port, host, listening);
else wss.on('listening', listening);

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
