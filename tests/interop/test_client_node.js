#!/usr/bin/env node
'use strict';
// duplex client <-> Node `ws` server.
//
// A ws server on 127.0.0.1 answers by path:
//   /echo    echoes every message (text as text, binary as binary)
//   /kick    echoes the first message, then closes with 4001 "kicked"
//   /bye     echoes the first message, then closes with 1001 "going away"
//   /drop    echoes the first message, then drops TCP without a close frame
//   /binary  echoes, then sends binary 01 02 ff after the first message
//   /refuse  refuses the upgrade (verifyClient -> HTTP 401)
// `duplex connect` is driven through stdin/stdout; with --client-peer the C
// program client_peer drives the client API (binary, sizes to 16 MiB, pings,
// close codes).
//
//   node tests/interop/test_client_node.js --duplex build/duplex \
//       --client-peer build/tests/interop/client_peer

const path = require('path');
const net = require('net');
const {
  CheckFailed, say, step, check, expectEq, short, parseArgs, runMain, runConnect,
  runClientPeer,
} = require('./interop_common');

let WebSocket;
try {
  WebSocket = require(path.join(__dirname, 'node_modules', 'ws'));
} catch (e) {
  say('FAIL: the ws package is not installed: run `npm ci` in tests/interop');
  process.exit(1);
}

function startPeer() {
  return new Promise((resolve, reject) => {
    const seenClose = {};
    const wss = new WebSocket.Server({
      host: '127.0.0.1',
      port: 0,
      maxPayload: 64 * 1024 * 1024,
      perMessageDeflate: false,
      verifyClient: (info) => info.req.url !== '/refuse',
    });
    wss.on('connection', (ws, req) => {
      const p = req.url;
      let first = true;
      ws.on('message', (data, isBinary) => {
        ws.send(data, { binary: isBinary });
        if (!first) return;
        first = false;
        if (p === '/binary') ws.send(Buffer.from([1, 2, 0xff]), { binary: true });
        else if (p === '/kick') ws.close(4001, 'kicked');
        else if (p === '/bye') ws.close(1001, 'going away');
        else if (p === '/drop') setTimeout(() => ws.terminate(), 200);
      });
      ws.on('close', (code, reason) => {
        seenClose[p] = { code, reason: reason.toString() };
      });
      ws.on('error', () => { /* a dropped peer is part of some checks */ });
    });
    wss.on('listening', () => {
      const port = wss.address().port;
      say(`ws ${require(path.join(__dirname, 'node_modules', 'ws', 'package.json')).version} ` +
        `peer server on port ${port}`);
      resolve({ wss, port, seenClose, url: (p) => `ws://127.0.0.1:${port}${p}` });
    });
    wss.on('error', reject);
  });
}

// The server records the client's close asynchronously: wait for it.
async function closeSeen(peer, p, what, ms = 3000) {
  const deadline = Date.now() + ms;
  while (peer.seenClose[p] === undefined) {
    if (Date.now() > deadline) throw new CheckFailed(`${what}: the ws server never saw a close`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return peer.seenClose[p];
}

function expectClose(res, code, what, { reason, why } = {}) {
  check(res.close !== null, `${what}: no \`closed: code=C reason="R" why=W\` line on stderr; ` +
    `stderr was ${JSON.stringify(res.stderr)}`);
  expectEq(res.close.code, code, `${what}: close code in the stderr close line`);
  if (reason !== undefined) expectEq(res.close.reason, reason, `${what}: close reason`);
  if (why !== undefined) expectEq(res.close.why, why, `${what}: why in the stderr close line`);
}

function sameLines(got, want) {
  return got.length === want.length && got.every((l, i) => l === want[i]);
}

async function tConnectEcho(duplex, peer) {
  const lines = ['hello', 'h\u00e9llo \u2713 \u{1F642} \u4e2d\u6587', 'y'.repeat(65536),
    'tab\there', 'last line'];
  // With EOF right away duplex connect sends its close right behind the
  // lines; ws echoes each message before it answers the close, so every
  // echo still arrives (RFC 6455 only discards data after *receiving* a
  // close) and must be printed.
  for (const delay of [1000, 0]) {
    const when = delay ? 'after 1 s' : 'right away';
    step(`duplex connect: ${lines.length} lines round-trip through the echo server, EOF ${when}`);
    delete peer.seenClose['/echo'];
    const res = await runConnect(duplex, peer.url('/echo'), lines, { stdinDelayMs: delay });
    if (!sameLines(res.lines, lines)) {
      throw new CheckFailed(`echoed lines (EOF ${when}): expected ${lines.length} lines ` +
        `${short(lines)}, got ${res.lines.length} lines ${short(res.lines)}`);
    }
    step('  the 65536-char line came back intact; exit status 0; close line code=1000');
    expectEq(res.code, 0, 'exit status after a clean close on EOF');
    expectClose(res, 1000, 'EOF close');
    step('  the ws server received close code 1000 from duplex connect');
    const seen = await closeSeen(peer, '/echo', 'EOF close');
    expectEq(seen.code, 1000, 'close code the ws server received');
  }
}

async function tConnectBinary(duplex, peer) {
  step('a binary message from the server is printed on its own line as binary:... hex');
  const res = await runConnect(duplex, peer.url('/binary'), ['go'], { stdinDelayMs: 1000 });
  check(res.lines.length === 2, `expected 2 stdout lines (echo, binary), got ${short(res.lines)}`);
  expectEq(res.lines[0], 'go', 'text echo before the binary message');
  check(res.lines[1].startsWith('binary:') && res.lines[1].includes('0102ff'),
    `binary message line: expected 'binary:' and the hex 0102ff, got ${JSON.stringify(res.lines[1])}`);
  expectEq(res.code, 0, 'exit status');
}

async function tConnectPeerClose(duplex, peer) {
  step('server closes with 4001 "kicked": duplex connect reports it and exits non-zero');
  let res = await runConnect(duplex, peer.url('/kick'), ['knock knock'], { keepStdinOpen: true });
  check(sameLines(res.lines, ['knock knock']), `echo before the kick: got ${short(res.lines)}`);
  expectClose(res, 4001, 'kick', { reason: 'kicked', why: 'closed by peer' });
  check(res.code > 0, 'exit status after a 4001 close: expected a non-zero exit, got ' +
    `${res.code}${res.signal ? ' signal ' + res.signal : ''}`);

  step('server closes with 1001 "going away": duplex connect exits 0');
  res = await runConnect(duplex, peer.url('/bye'), ['hi'], { keepStdinOpen: true });
  check(sameLines(res.lines, ['hi']), `echo before the 1001 close: got ${short(res.lines)}`);
  expectClose(res, 1001, '1001 close', { reason: 'going away', why: 'closed by peer' });
  expectEq(res.code, 0, 'exit status after a clean 1001 close from the server');

  step('server drops TCP without a close frame: code 1006, why transport close, non-zero');
  res = await runConnect(duplex, peer.url('/drop'), ['ping me'], { keepStdinOpen: true });
  check(sameLines(res.lines, ['ping me']), `echo before the drop: got ${short(res.lines)}`);
  expectClose(res, 1006, 'drop', { why: 'transport close' });
  check(res.code > 0, 'exit status after a dropped connection: expected a non-zero exit, got ' +
    `${res.code}${res.signal ? ' signal ' + res.signal : ''}`);
}

async function tConnectFailures(duplex, peer) {
  step('handshake refused (HTTP 401): duplex connect exits non-zero');
  let res = await runConnect(duplex, peer.url('/refuse'), ['never sent'], { keepStdinOpen: true });
  check(res.code > 0, 'exit status after a refused handshake: expected a non-zero exit, got ' +
    `${res.code}${res.signal ? ' signal ' + res.signal : ''}`);
  check(res.lines.length === 0, `stdout after a refused handshake: got ${short(res.lines)}`);

  step('nothing listening: duplex connect exits non-zero');
  const port = await new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  res = await runConnect(duplex, `ws://127.0.0.1:${port}/`, [], { keepStdinOpen: true });
  check(res.code > 0, 'exit status when the connection is refused: expected a non-zero exit, got ' +
    `${res.code}${res.signal ? ' signal ' + res.signal : ''}`);
}

async function tClientPeer(cp, peer) {
  const sizes = [0, 1, 125, 126, 127, 65535, 65536, 65537];
  const script = [...sizes.map((n) => `text:${n}`), ...sizes.map((n) => `binary:${n}`),
    'binary:1048576', 'text:1048576', 'binary:16777216', 'text:16777216',
    'ping:', 'ping:hello', 'ping:' + 'p'.repeat(125), 'text:5', 'close:1000:bye'];
  step(`client API: text and binary of sizes ${sizes}, 1 MiB and 16 MiB, pings, close 1000`);
  await runClientPeer(cp, peer.url('/echo'), script, 120000);
  for (const code of [1001, 3000, 4999]) {
    step(`client API: dx_close(${code}) completes with the server's reply`);
    // A path of its own (any other path echoes): the previous connection's
    // close may be recorded a little later.
    const path = `/echo-${code}`;
    await runClientPeer(cp, peer.url(path), ['binary:10', `close:${code}:code ${code}`]);
    const seen = await closeSeen(peer, path, `dx_close(${code})`);
    expectEq(seen.code, code, `close code the ws server received for dx_close(${code})`);
    expectEq(seen.reason, `code ${code}`, `close reason the ws server received for dx_close(${code})`);
  }
  step('client API: server-initiated 4001 "kicked" reaches on_close (why=peer)');
  await runClientPeer(cp, peer.url('/kick'), ['binary:300', 'expect-close:4001:kicked']);
}

async function main(args) {
  const peer = await startPeer();
  try {
    await tConnectEcho(args.duplex, peer);
    await tConnectBinary(args.duplex, peer);
    await tConnectPeerClose(args.duplex, peer);
    await tConnectFailures(args.duplex, peer);
    if (args.clientPeer) await tClientPeer(args.clientPeer, peer);
    else say('NOTE: --client-peer not given; client API checks skipped');
  } finally {
    for (const c of peer.wss.clients) c.terminate();
    peer.wss.close();
  }
}

runMain(main, parseArgs(process.argv, true));
