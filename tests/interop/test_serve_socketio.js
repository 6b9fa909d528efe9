#!/usr/bin/env node
'use strict';
// duplex serve --socketio (src/cli/serve_sio.c) <-> the official
// socket.io-client from npm, in Node (18 or later): the chat namespace
// /chat as a Socket.IO user meets it.
//
//   - auth: a nick is welcomed, none gets "guest-XXXX" (the id's start),
//     bad ones are refused with connect_error "invalid nick" and a reason;
//     another namespace is refused ("Invalid namespace")
//   - rooms: join/leave acked with the room list, "joined"/"left" heard by
//     the room, chat messages to the room's other members only, acked with
//     the time they carry; at most 8 rooms; a socket's own-id room cannot
//     be joined to read its traffic; a rename heard once by a member
//     sharing several rooms
//   - every bad argument (wrong types, sizes, control characters, binaries,
//     a room not joined, an unknown event) answered with an error ack, and
//     the socket goes on working; without an ack, nothing breaks either
//   - why a member left, as its room hears it and as the server logs it:
//     client namespace disconnect, quit ("io server disconnect" at the
//     client, its ack first), transport close; SIGTERM: the clients see
//     "transport close", the server logs "server shutting down", exits 0
//   - the rest of the port as before: a plain WebSocket echo, /healthz
//   - --threads 2 with --rooms: polling, WebSocket and upgrading members on
//     both loops all get a room's message once; /rooms/NAME still works
//   - --redis: two nodes sharing a redis-server, a message crosses
//   - the combinations refused: --redis alone, --echo-self without
//     --rooms, limits with --socketio on several threads
//
//   (cd tests/interop && npm ci) &&
//   node tests/interop/test_serve_socketio.js --duplex build/duplex

const { spawnSync } = require('child_process');
const {
  CheckFailed, step, check, expectEq, parseArgs, runMain, withTimeout, startServer,
  requireWs, startRedis, requireSocketIoClient, makeCerts,
} = require('./interop_common');

const ioc = requireSocketIoClient();

const IO_MS = 10000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A client of /chat that keeps every event it hears: s.heard.EVENT = [...].
function client(port, opts = {}, scheme = 'http') {
  const s = ioc.io(`${scheme}://localhost:${port}/chat`, { forceNew: true, reconnection: false, ...opts });
  s.heard = {};
  s.onAny((ev, ...args) => { (s.heard[ev] = s.heard[ev] || []).push(args); });
  return s;
}

async function connected(s, what) {
  if (s.connected) return;
  await withTimeout(new Promise((res, rej) => {
    s.once('connect', res);
    s.once('connect_error', (e) => rej(new CheckFailed(`${what}: connect_error ${e.message}`)));
  }), IO_MS, `${what} connecting`);
}

async function refused(s, what) {
  return withTimeout(new Promise((res, rej) => {
    s.once('connect', () => rej(new CheckFailed(`${what}: connected, expected a refusal`)));
    s.once('connect_error', res);
  }), IO_MS, `${what} refused`);
}

// emit with an ack; resolves with the ack's single argument.
function ask(s, ...args) {
  return withTimeout(s.timeout(IO_MS).emitWithAck(...args), IO_MS + 1000, `ack of ${args[0]}`);
}

// Waits until s has heard `event` n times; resolves with the arguments.
async function heard(s, event, n = 1, ms = IO_MS) {
  const deadline = Date.now() + ms;
  while (!(s.heard[event] && s.heard[event].length >= n)) {
    if (Date.now() > deadline) {
      throw new CheckFailed(`${s.label || 'a client'}: heard "${event}" ` +
        `${(s.heard[event] || []).length} times, expected ${n}; heard ` +
        `${JSON.stringify(Object.keys(s.heard))}`);
    }
    await sleep(20);
  }
  return s.heard[event][n - 1];
}

// Waits until s has heard `event` with a first argument for which pred
// holds; resolves with that argument.
async function heardWhere(s, event, pred, what) {
  const deadline = Date.now() + IO_MS;
  for (;;) {
    const hit = (s.heard[event] || []).find((args) => pred(args[0]));
    if (hit) return hit[0];
    if (Date.now() > deadline) {
      throw new CheckFailed(`${s.label || 'a client'}: never heard "${event}" ${what}; heard ` +
        `${JSON.stringify(s.heard[event] || [])}`);
    }
    await sleep(20);
  }
}

async function expectError(s, args, re, what) {
  const r = await ask(s, ...args);
  check(r && r.ok === false && typeof r.error === 'string' && re.test(r.error),
    `${what}: expected {ok: false, error: ~${re}}, got ${JSON.stringify(r)}`);
}

// Waits for a line of the server's stderr.
async function logLine(srv, re, what) {
  const deadline = Date.now() + IO_MS;
  while (!re.test(srv.stderr)) {
    if (Date.now() > deadline) {
      throw new CheckFailed(`${what}: no line ~${re} in the server's log:\n${srv.stderr}`);
    }
    await sleep(20);
  }
}

async function stopClean(srv, what) {
  const r = await srv.stop(10000);
  expectEq(r.code, 0, `${what}: exit status after SIGTERM`);
  check(!/runtime error:|AddressSanitizer|LeakSanitizer/.test(srv.stderr),
    `${what}: sanitizer report:\n${srv.stderr}`);
}

// ---------------------------------------------------------------------------

async function tAuth(port) {
  step('auth {nick: "ada"} is welcomed as ada; no auth gets "guest-" and the id\'s start');
  const ada = client(port, { auth: { nick: 'ada' } });
  const anon = client(port);
  await connected(ada, 'ada');
  await connected(anon, 'anonymous');
  expectEq((await heard(ada, 'welcome'))[0].nick, 'ada', 'welcome of ada');
  expectEq((await heard(anon, 'welcome'))[0].nick, `guest-${anon.id.slice(0, 4)}`,
    'welcome without a nick');
  ada.close();
  anon.close();

  for (const [nick, label] of [['', 'empty'], ['x'.repeat(33), '33 bytes'], ['a\tb', 'a tab'],
    ['   ', 'only spaces'], [5, 'a number'], [{ n: 1 }, 'an object'], ['a\u0000b', 'a NUL']]) {
    step(`a nick that is ${label} is refused: connect_error "invalid nick" with a reason`);
    const s = client(port, { auth: { nick } });
    const e = await refused(s, `nick ${label}`);
    expectEq(e.message, 'invalid nick', `connect_error for a nick that is ${label}`);
    check(e.data && /1 to 32 bytes/.test(e.data.reason),
      `connect_error data: expected a reason, got ${JSON.stringify(e.data)}`);
    s.close();
  }
  step('another namespace is refused: "Invalid namespace"');
  const other = ioc.io(`http://localhost:${port}/nope`, { forceNew: true, reconnection: false });
  expectEq((await refused(other, '/nope')).message, 'Invalid namespace', 'connect_error of /nope');
  other.close();
}

async function tRooms(port) {
  const a = client(port, { auth: { nick: 'ann' } });
  const b = client(port, { auth: { nick: 'ben' }, transports: ['websocket'] });
  const c = client(port, { auth: { nick: 'cy' }, transports: ['polling'] });
  a.label = 'ann';
  b.label = 'ben';
  c.label = 'cy';
  await Promise.all([connected(a, 'ann'), connected(b, 'ben'), connected(c, 'cy')]);

  step('join acks {ok, room, rooms}; the room hears "joined" with the nick');
  expectEq(JSON.stringify(await ask(b, 'join', 'lobby')),
    JSON.stringify({ ok: true, room: 'lobby', rooms: ['lobby'] }), 'ben joins lobby');
  expectEq(JSON.stringify(await ask(a, 'join', 'lobby')),
    JSON.stringify({ ok: true, room: 'lobby', rooms: ['lobby'] }), 'ann joins lobby');
  expectEq(JSON.stringify((await heard(b, 'joined'))[0]),
    JSON.stringify({ room: 'lobby', nick: 'ann' }), 'ben hears ann join');
  expectEq(JSON.stringify((await ask(a, 'join', 'lobby')).rooms), '["lobby"]',
    'ann joins lobby again: still one room');
  await ask(c, 'join', 'annex');

  step('a chat message reaches the room\'s other members, not the sender nor other rooms; ' +
    'its ack carries the time the message does');
  const ack = await ask(a, 'chat message', 'lobby', 'héllo ✓');
  check(ack.ok === true && ack.room === 'lobby' && Number.isInteger(ack.ts),
    `ack of a chat message: ${JSON.stringify(ack)}`);
  const [m] = await heard(b, 'chat message');
  expectEq(JSON.stringify(m), JSON.stringify({ room: 'lobby', nick: 'ann', text: 'héllo ✓',
    ts: ack.ts }), 'the message ben got');
  check(Math.abs(ack.ts - Date.now()) < 60000, `ts ${ack.ts}: not near now`);
  await ask(b, 'chat message', 'lobby', 'back to ann');
  await heard(a, 'chat message');
  await sleep(200);
  expectEq((a.heard['chat message'] || []).length, 1, 'messages ann got (not her own)');
  expectEq((c.heard['chat message'] || []).length, 0, 'messages cy (in annex) got');

  step('at most 8 rooms at once');
  for (let i = 1; i < 8; i++) await ask(a, 'join', `r${i}`);
  await expectError(a, ['join', 'r8'], /at most 8 rooms/, 'a ninth room');
  step('leave acks the rooms left; the room hears "left" with reason "left"');
  const left = await ask(a, 'leave', 'r7');
  expectEq(left.rooms.length, 7, 'rooms after leaving r7');
  check(!left.rooms.includes('r7'), `r7 still listed: ${JSON.stringify(left.rooms)}`);
  await expectError(a, ['leave', 'r7'], /not in room r7/, 'leaving r7 twice');
  for (let i = 1; i < 7; i++) await ask(a, 'leave', `r${i}`);
  await ask(c, 'join', 'lobby');
  await ask(c, 'leave', 'lobby');
  const [l] = await heard(b, 'left');
  expectEq(JSON.stringify(l), JSON.stringify({ room: 'lobby', nick: 'cy', reason: 'left' }),
    'what ben heard when cy left');

  step('a room named by another socket\'s id is a room of the chat, not that socket\'s own');
  const before = (b.heard['chat message'] || []).length;
  await ask(c, 'join', b.id);
  await ask(c, 'chat message', b.id, 'psst');
  await sleep(300);
  expectEq((b.heard['chat message'] || []).length, before, 'messages ben got through his id');

  step('a rename is heard once by a member sharing several rooms with the renamed one');
  await ask(a, 'join', 'annex');
  await ask(b, 'join', 'annex');
  const r = await ask(a, 'nick', 'anna');
  expectEq(JSON.stringify(r), JSON.stringify({ ok: true, nick: 'anna', was: 'ann' }), 'nick ack');
  expectEq(JSON.stringify((await heard(b, 'nick'))[0]),
    JSON.stringify({ nick: 'anna', was: 'ann' }), 'what ben heard');
  await sleep(300);
  expectEq(b.heard.nick.length, 1, '"nick" events ben heard (two rooms shared)');
  await ask(b, 'chat message', 'lobby', 'hi anna');
  await heard(a, 'chat message', 2);
  await ask(a, 'chat message', 'lobby', 'renamed');
  expectEq((await heard(b, 'chat message', 2))[0].nick, 'anna', 'nick on the next message');
  return { a, b, c };
}

async function tBadArguments(port) {
  const s = client(port, { auth: { nick: 'eve' } });
  await connected(s, 'eve');
  await ask(s, 'join', 'lobby');
  const ROOM = /a room name is a string of 1 to 32 bytes/;
  const cases = [
    [['join'], ROOM], [['join', 5], ROOM], [['join', null], ROOM], [['join', ''], ROOM],
    [['join', 'x'.repeat(33)], ROOM], [['join', 'a\nb'], ROOM], [['join', { room: 'x' }], ROOM],
    [['join', ['lobby']], ROOM], [['join', Buffer.from('lobby')], ROOM], [['join', true], ROOM],
    [['leave', 7], ROOM], [['leave', 'nowhere'], /not in room nowhere/],
    [['chat message'], ROOM], [['chat message', 'lobby'], /the text is a string of 1 to 2000/],
    [['chat message', 'lobby', 5], /the text/], [['chat message', 'lobby', ''], /the text/],
    [['chat message', 'lobby', 'x'.repeat(2001)], /the text/],
    [['chat message', 'lobby', Buffer.from('hi')], /the text/],
    [['chat message', 'lobby', { text: 'hi' }], /the text/],
    [['chat message', 'elsewhere', 'hi'], /join room elsewhere first/],
    [['chat message', 1, 2, 3, 4], ROOM],
    [['nick'], /a nick is a string/], [['nick', 'z'.repeat(40)], /a nick is a string/],
    [['nick', '\u0007bell'], /a nick is a string/],
    [['bogus'], /unknown event: \/chat takes join, leave, chat message, nick and quit/],
    [['message', 'hi'], /unknown event/],
  ];
  step(`${cases.length} bad calls, each answered {ok: false, error} naming what is wrong`);
  for (const [args, re] of cases) {
    await expectError(s, args, re, `${args[0]} ${JSON.stringify(args.slice(1)).slice(0, 60)}`);
  }
  step('the same without asking for an ack: ignored, and the socket goes on working');
  for (const [args] of cases) s.emit(...args);
  expectEq((await ask(s, 'chat message', 'lobby', 'still here')).ok, true, 'a good call after');
  check(s.connected, 'eve is still connected');
  expectEq(s.heard.welcome.length, 1, 'eve was not reconnected');
  s.close();
}

async function tReasons(srv, port, { a, b, c }) {
  step('ann disconnects: ben hears "left" (client namespace disconnect), the server logs it');
  a.disconnect();
  const l1 = await heardWhere(b, 'left', (x) => x.nick === 'anna', 'for anna');
  expectEq(l1.reason, 'client namespace disconnect', 'reason ben heard');
  await logLine(srv, /sio: disconnect \/chat id=\S+ nick="anna" reason="client namespace disconnect"/,
    'the server\'s line for anna');

  step('cy quits: its ack first, then "io server disconnect"; the room hears "quit"');
  await ask(c, 'join', 'lobby');
  const order = [];
  const gone = new Promise((res) => c.once('disconnect', (reason) => { order.push(reason); res(); }));
  // The ack's callback itself records it: an awaited promise would resolve
  // a tick later than the callback ran.
  let q = null;
  c.emit('quit', (res) => {
    q = res;
    order.push('ack');
  });
  await withTimeout(gone, IO_MS, 'cy disconnected');
  expectEq(JSON.stringify(q), '{"ok":true}', 'ack of quit');
  expectEq(order.join(', '), 'ack, io server disconnect', 'what cy saw, in order');
  await sleep(500);
  check(!c.connected && !c.active, 'cy does not reconnect after "io server disconnect"');
  const l2 = await heardWhere(b, 'left', (x) => x.nick === 'cy' && x.room === 'lobby' && x.reason !== 'left',
    'for cy in lobby');
  expectEq(JSON.stringify(l2), JSON.stringify({ room: 'lobby', nick: 'cy', reason: 'quit' }),
    'what ben heard when cy quit');

  step('a client whose connection just ends: the room hears "transport close"');
  const d = client(port, { auth: { nick: 'dan' }, transports: ['websocket'] });
  await connected(d, 'dan');
  await ask(d, 'join', 'lobby');
  d.io.engine.close(); // the transport closes under the socket
  const l3 = await heardWhere(b, 'left', (x) => x.nick === 'dan', 'for dan');
  expectEq(JSON.stringify(l3), JSON.stringify({ room: 'lobby', nick: 'dan', reason: 'transport close' }),
    'what ben heard when dan\'s connection ended');
  d.close();
}

async function tSamePort(srv, port) {
  step('the rest of the port is served as before: a plain WebSocket echo, GET /healthz');
  const WebSocket = requireWs();
  const ws = new WebSocket(`ws://localhost:${port}/echo`);
  const echoed = await withTimeout(new Promise((res, rej) => {
    ws.on('open', () => ws.send('plain hello'));
    ws.on('message', (d) => res(d.toString()));
    ws.on('error', rej);
  }), IO_MS, 'the echo');
  expectEq(echoed, 'plain hello', 'echo on /echo');
  ws.close();
  const health = await fetch(`http://localhost:${port}/healthz`);
  expectEq(health.status, 200, 'GET /healthz');
}

async function tDrain(srv, port) {
  step('SIGTERM: connected clients see "transport close", the server logs "server shutting ' +
    'down" for each and exits 0');
  const socks = [client(port, { auth: { nick: 'p1' }, transports: ['polling'] }),
    client(port, { auth: { nick: 'w1' }, transports: ['websocket'] }),
    client(port, { auth: { nick: 'u1' } })];
  await Promise.all(socks.map((s, i) => connected(s, `drain client ${i}`)));
  const reasons = socks.map((s) => new Promise((res) => s.once('disconnect', res)));
  await stopClean(srv, 'the server');
  const got = await withTimeout(Promise.all(reasons), IO_MS, 'the drain\'s disconnects');
  expectEq(got.join(', '), 'transport close, transport close, transport close',
    'reasons the clients saw');
  for (const n of ['p1', 'w1', 'u1']) {
    check(new RegExp(`nick="${n}" reason="server shutting down"`).test(srv.stderr),
      `the server's line for ${n}: ${srv.stderr}`);
  }
  socks.forEach((s) => s.close());
}

async function tThreads(duplex) {
  const srv = await startServer(duplex, ['--socketio', '--rooms', '--threads', '2', '--quiet']);
  check(/\(ws, 2 threads, rooms and Socket\.IO\)/.test(srv.stderr),
    `the listening line: ${srv.stderr}`);
  step('--threads 2: 9 members (polling, WebSocket, upgrading) on both loops; one message ' +
    'reaches each other member once');
  const kinds = [['polling'], ['websocket'], undefined];
  const socks = [];
  for (let i = 0; i < 9; i++) {
    const s = client(srv.port, { auth: { nick: `m${i}` }, transports: kinds[i % 3] });
    s.label = `m${i}`;
    await connected(s, `m${i}`);
    expectEq((await ask(s, 'join', 'hall')).ok, true, `m${i} joins`);
    socks.push(s);
  }
  await ask(socks[4], 'chat message', 'hall', 'to all loops');
  for (const s of socks.filter((x, i) => i !== 4)) await heard(s, 'chat message');
  await sleep(300);
  for (const [i, s] of socks.entries()) {
    expectEq((s.heard['chat message'] || []).length, i === 4 ? 0 : 1, `messages m${i} got`);
  }
  step('--rooms beside it: /rooms/NAME members still talk');
  const WebSocket = requireWs();
  const open = (u) => withTimeout(new Promise((res, rej) => {
    const w = new WebSocket(u);
    w.on('open', () => res(w));
    w.on('error', rej);
  }), IO_MS, `opening ${u}`);
  const r1 = await open(srv.url('/rooms/x'));
  const r2 = await open(srv.url('/rooms/x'));
  await sleep(200);
  const got = withTimeout(new Promise((res) => r2.once('message', (d) => res(d.toString()))),
    IO_MS, 'the room message');
  r1.send('rooms still work');
  expectEq(await got, 'rooms still work', 'what /rooms/x heard');
  r1.close();
  r2.close();
  socks.forEach((s) => s.close());
  await stopClean(srv, 'the --threads 2 server');
}

// An upgrade that reaches another loop than its session's is handed over
// with its TLS state (the SSL object and what it already decrypted): over
// https on three loops, clients with the default transports all end on
// websocket, whichever loop the kernel gave each connection, and talk.
async function tTlsThreads(duplex) {
  const fs = require('fs');
  const certs = makeCerts();
  const srv = await startServer(duplex, ['--socketio', '--threads', '3', '--quiet'],
    { tls: certs.server });
  const N = 24;
  step(`TLS, --threads 3: ${N} clients with the default transports (polling, then the ` +
    'upgrade) all end on websocket; a room message reaches every other member once');
  const ca = fs.readFileSync(certs.ca);
  const socks = [];
  for (let i = 0; i < N; i++) {
    const s = client(srv.port, { auth: { nick: `t${i}` }, ca }, 'https');
    await connected(s, `t${i} over TLS`);
    socks.push(s);
  }
  for (const [i, s] of socks.entries()) {
    if (s.io.engine.transport.name !== 'websocket') {
      await withTimeout(new Promise((res) => s.io.engine.once('upgrade', res)), IO_MS,
        `t${i}'s upgrade to websocket`);
    }
    expectEq(s.io.engine.transport.name, 'websocket', `t${i}'s final transport`);
    expectEq((await ask(s, 'join', 'vault')).ok, true, `t${i} joins`);
  }
  await ask(socks[0], 'chat message', 'vault', 'over TLS, across loops');
  for (const s of socks.slice(1)) await heard(s, 'chat message');
  await sleep(300);
  for (const [i, s] of socks.entries()) {
    expectEq((s.heard['chat message'] || []).length, i === 0 ? 0 : 1, `messages t${i} got`);
  }
  socks.forEach((s) => s.close());
  await stopClean(srv, 'the TLS --threads 3 server');
}

async function tRedis(duplex) {
  step('--redis: two nodes sharing a redis-server; a message to a room crosses');
  const redis = await startRedis('redis-server');
  try {
    const { url } = redis;
    const n1 = await startServer(duplex, ['--socketio', '--redis', url]);
    const n2 = await startServer(duplex, ['--socketio', '--redis', url]);
    check(/Socket\.IO shared through Redis/.test(n1.stderr), `listening line: ${n1.stderr}`);
    // WebSocket only: a polling client needs every request on its node.
    const x = client(n1.port, { auth: { nick: 'xena' }, transports: ['websocket'] });
    const y = client(n2.port, { auth: { nick: 'yves' }, transports: ['websocket'] });
    await Promise.all([connected(x, 'xena'), connected(y, 'yves')]);
    await ask(x, 'join', 'across');
    await ask(y, 'join', 'across');
    // The second node may still be subscribing on Redis: say it until heard.
    for (let i = 0; !(y.heard['chat message']); i++) {
      check(i < 20, 'yves (node 2) never got xena\'s message (node 1) through Redis');
      await ask(x, 'chat message', 'across', 'over redis');
      await sleep(250);
    }
    expectEq(y.heard['chat message'][0][0].nick, 'xena', 'sender heard on node 2');
    x.close();
    y.close();
    await stopClean(n1, 'node 1');
    await stopClean(n2, 'node 2');
  } finally {
    redis.proc.kill('SIGTERM');
  }
}

function tRefused(duplex) {
  for (const [argv, re] of [
    [['--redis', 'redis://127.0.0.1:1'], /--redis needs --rooms or --socketio/],
    [['--socketio', '--echo-self'], /--echo-self needs --rooms/],
    [['--socketio', '--threads', '2', '--max-connections', '10'],
      /--max-connections and --max-handshakes with --socketio need --threads 1/],
  ]) {
    step(`duplex serve ${argv.join(' ')}: refused, exit status 2`);
    const r = spawnSync(duplex, ['serve', '--port', '0', ...argv], { encoding: 'utf8', timeout: IO_MS });
    expectEq(r.status, 2, `exit status of serve ${argv.join(' ')}`);
    check(re.test(r.stderr), `its message: expected ~${re}, got ${JSON.stringify(r.stderr)}`);
  }
}

async function main(args) {
  tRefused(args.duplex);
  const srv = await startServer(args.duplex, ['--socketio']);
  check(/\(ws, \d+ threads?, Socket\.IO\)/.test(srv.stderr),
    `--socketio: the listening line names Socket.IO: ${srv.stderr}`);
  await tAuth(srv.port);
  const socks = await tRooms(srv.port);
  await tBadArguments(srv.port);
  await tReasons(srv, srv.port, socks);
  socks.b.close();
  await tSamePort(srv, srv.port);
  await tDrain(srv, srv.port);
  await tThreads(args.duplex);
  await tTlsThreads(args.duplex);
  await tRedis(args.duplex);
}

runMain(main, parseArgs(process.argv, false));
