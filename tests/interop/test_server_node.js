#!/usr/bin/env node
'use strict';
// duplex serve <-> Node `ws` client.
//
// Starts `duplex serve --port 0` (an echo server) and drives it with the ws
// client: text and binary at the frame-length boundaries, the 16 MiB default
// limit (exactly 16 MiB echoes, one byte more closes with 1009), fragmented
// messages (including a UTF-8 character split across fragments), ping/pong
// with payload, every sendable close code round-tripped, and SIGTERM.
//
//   (cd tests/interop && npm ci) && node tests/interop/test_server_node.js --duplex build/duplex

const path = require('path');
const {
  CheckFailed, say, step, check, expectEq, parseArgs, runMain, withTimeout, startServer,
} = require('./interop_common');

let WebSocket;
try {
  WebSocket = require(path.join(__dirname, 'node_modules', 'ws'));
} catch (e) {
  say('FAIL: the ws package is not installed: run `npm ci` in tests/interop');
  process.exit(1);
}

const MIB = 1024 * 1024;
const DEFAULT_MAX = 16 * MIB;
const IO_MS = 30000;
const CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
  1013, 1014, 3000, 3999, 4000, 4999];

function patternBytes(n, seed = 0) {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i + seed) & 0xff;
  return b;
}

function patternText(n, seed = 0) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  const k = seed % alphabet.length;
  const a = alphabet.slice(k) + alphabet.slice(0, k);
  return a.repeat(Math.floor(n / a.length) + 1).slice(0, n);
}

// A ws client whose messages, pongs and close land in awaitable queues.
function open(srv) {
  return withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(srv.url('/'), { maxPayload: 64 * MIB, perMessageDeflate: false });
    const st = { ws, messages: [], pongs: [], waiters: [], closed: null };
    const wake = () => { const w = st.waiters; st.waiters = []; w.forEach((f) => f()); };
    ws.on('message', (data, isBinary) => { st.messages.push({ data, isBinary }); wake(); });
    ws.on('pong', (data) => { st.pongs.push(data); wake(); });
    ws.on('close', (code, reason) => { st.closed = { code, reason: reason.toString() }; wake(); });
    ws.on('error', (e) => { st.error = e; wake(); });
    ws.once('open', () => resolve(st));
    ws.once('error', (e) => reject(new CheckFailed(`cannot connect to duplex serve: ${e.message}`)));
  }), IO_MS, 'opening a ws connection');
}

function waitFor(st, pred, what, { ms = IO_MS, allowClosed = false } = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const poll = () => {
      const v = pred();
      if (v !== undefined) return resolve(v);
      if (st.closed && !allowClosed) {
        return reject(new CheckFailed(`${what}: connection closed instead (code=${st.closed.code} ` +
          `reason=${JSON.stringify(st.closed.reason)})`));
      }
      st.waiters.push(poll);
    };
    poll();
  }), ms, what);
}

const nextMessage = (st, what) => waitFor(st, () => st.messages.shift(), what);

function firstDiff(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

async function expectEcho(st, want, isBinary, what) {
  const m = await nextMessage(st, what);
  expectEq(m.isBinary, isBinary, `${what}: message is ${isBinary ? 'binary' : 'text'}`);
  const wantBuf = Buffer.isBuffer(want) ? want : Buffer.from(want, 'utf8');
  check(m.data.equals(wantBuf), `${what}: echo differs (sent ${wantBuf.length} bytes, got ` +
    `${m.data.length}; first difference at ${firstDiff(wantBuf, m.data)})`);
}

async function echo(st, data, isBinary, what) {
  st.ws.send(data, { binary: isBinary });
  await expectEcho(st, data, isBinary, what);
}

async function closeOk(st, what, code = 1000, reason = 'bye') {
  const t0 = Date.now();
  st.ws.close(code, reason);
  const c = await waitFor(st, () => st.closed || undefined, `${what}: close`,
    { allowClosed: true });
  expectEq(c.code, code, `${what}: close code echoed by the server`);
  const took = (Date.now() - t0) / 1000;
  // ws emits 'close' once TCP is gone; a slow close means duplex did not
  // end TCP after its close reply.
  check(took < 3, `${what}: closing handshake took ${took} s (server did not close TCP promptly)`);
  return c;
}

async function sendFragments(st, parts, isBinary) {
  for (let i = 0; i < parts.length; i++) {
    st.ws.send(parts[i], { binary: isBinary, fin: i === parts.length - 1 });
  }
}

async function tSizes(srv) {
  const st = await open(srv);
  for (const n of [0, 1, 125, 126, 127, 65535, 65536, 65537, MIB]) {
    step(`text message of ${n} bytes is echoed as text`);
    await echo(st, patternText(n, n), false, `text ${n}`);
    step(`binary message of ${n} bytes is echoed as binary`);
    await echo(st, patternBytes(n, n), true, `binary ${n}`);
  }
  step('multi-byte UTF-8 text is echoed unchanged');
  await echo(st, 'h\u00e9llo \u2713 \u{1F642} \u4e2d\u6587 \u0000 end', false, 'utf-8 text');
  await closeOk(st, 'sizes');
}

async function tFragments(srv) {
  const st = await open(srv);
  step('text sent as 3 fragments comes back as one text message');
  await sendFragments(st, ['Hel', 'lo, ', 'world'], false);
  await expectEcho(st, 'Hello, world', false, 'text fragments');

  step('a UTF-8 character split across fragments is accepted and echoed whole');
  const smile = Buffer.from('a\u{1F642}b', 'utf8'); // 61 f0 9f 99 82 62
  await sendFragments(st, [smile.subarray(0, 2), smile.subarray(2, 3), smile.subarray(3, 5),
    smile.subarray(5)], false);
  await expectEcho(st, smile, false, 'split UTF-8 character');

  step('binary sent as 4 fragments (one empty) comes back as one binary message');
  const parts = [Buffer.from([0, 1]), Buffer.alloc(0), patternBytes(300), Buffer.from([0xff])];
  await sendFragments(st, parts, true);
  await expectEcho(st, Buffer.concat(parts), true, 'binary fragments');

  step('fragments crossing 126 / 65536 length encodings are reassembled');
  const big = [patternBytes(125), patternBytes(126), patternBytes(65535), patternBytes(65536)];
  await sendFragments(st, big, true);
  await expectEcho(st, Buffer.concat(big), true, 'boundary fragments');

  step('a ping between fragments is answered and the message still arrives');
  st.ws.send('frag-1 ', { binary: false, fin: false });
  st.ws.ping(Buffer.from('between'));
  st.ws.send('frag-2', { binary: false, fin: true });
  const pong = await waitFor(st, () => st.pongs.shift(), 'pong for ping between fragments');
  expectEq(pong, Buffer.from('between'), 'pong payload for ping between fragments');
  await expectEcho(st, 'frag-1 frag-2', false, 'message with a ping between its fragments');
  await closeOk(st, 'fragments');
}

async function tDefaultLimit(srv) {
  let st = await open(srv);
  step('binary message of exactly 16 MiB (the default max) is echoed');
  await echo(st, patternBytes(DEFAULT_MAX, 7), true, 'binary 16 MiB');
  step('text message of exactly 16 MiB is echoed');
  await echo(st, patternText(DEFAULT_MAX, 3), false, 'text 16 MiB');
  await closeOk(st, '16 MiB');

  for (const [kind, data, isBinary] of [['binary', patternBytes(DEFAULT_MAX + 1), true],
    ['text', patternText(DEFAULT_MAX + 1), false]]) {
    step(`${kind} message of 16 MiB + 1 byte closes the connection with 1009`);
    st = await open(srv);
    st.ws.send(data, { binary: isBinary });
    const c = await waitFor(st, () => st.closed || undefined, `16 MiB + 1 ${kind}: close`,
      { allowClosed: true });
    check(st.messages.length === 0, `16 MiB + 1 ${kind}: got an echo instead of a close`);
    expectEq(c.code, 1009, `16 MiB + 1 ${kind}: close code from the server`);
  }
}

async function tPing(srv) {
  const st = await open(srv);
  for (const payload of [Buffer.alloc(0), Buffer.from('hello'), patternBytes(125, 5)]) {
    step(`ping with ${payload.length}-byte payload is answered by a pong with the same payload`);
    st.ws.ping(payload);
    const got = await waitFor(st, () => st.pongs.shift(), 'pong', { ms: 10000 });
    expectEq(got, payload, 'pong payload');
  }
  step('an unsolicited pong is ignored (connection keeps echoing)');
  st.ws.pong(Buffer.from('unsolicited'));
  await echo(st, Buffer.from([1, 2]), true, 'binary after unsolicited pong');
  check(st.pongs.length === 0, 'server answered an unsolicited pong');
  await closeOk(st, 'ping');
}

async function tCloseCodes(srv) {
  for (const code of CLOSE_CODES) {
    step(`close with code ${code} and a reason: the server echoes code ${code}`);
    const st = await open(srv);
    await echo(st, `before close ${code}`, false, 'echo before close');
    const c = await closeOk(st, `close ${code}`, code, `reason for ${code} \u2713`);
    say(`  server replied code=${c.code} reason=${JSON.stringify(c.reason)}`);
  }
  step('close with no code: the server replies (ws reports 1005)');
  const st = await open(srv);
  st.ws.close();
  const c = await waitFor(st, () => st.closed || undefined, 'close without code',
    { allowClosed: true });
  expectEq(c.code, 1005, 'close without a code: code ws reports for the reply');
}

async function tConcurrent(srv) {
  step('20 clients at once, each sends 50 messages, all echo in order');
  await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const st = await open(srv);
    for (let j = 0; j < 50; j++) st.ws.send(`client ${i} message ${j}`);
    for (let j = 0; j < 50; j++) {
      await expectEcho(st, `client ${i} message ${j}`, false, `client ${i} echo ${j}`);
    }
    await closeOk(st, `client ${i}`);
  }));
}

async function main(args) {
  say(`ws ${require(path.join(__dirname, 'node_modules', 'ws', 'package.json')).version}`);
  const srv = await startServer(args.duplex);
  try {
    await tSizes(srv);
    await tFragments(srv);
    await tPing(srv);
    await tCloseCodes(srv);
    await tDefaultLimit(srv);
    await tConcurrent(srv);
    check(srv.alive(), `duplex serve died during the suite; stderr: ${srv.stderr.slice(-2000)}`);
    step('SIGTERM stops duplex serve within 5 s');
    const r = await srv.stop();
    check(r.clean, 'duplex serve did not exit within 5 s of SIGTERM');
    say(`  duplex serve exited with status ${r.code} signal ${r.signal}`);
  } finally {
    if (srv.alive()) await srv.stop();
  }
}

runMain(main, parseArgs(process.argv, false));
