#!/usr/bin/env node
'use strict';
// permessage-deflate (RFC 7692) between duplex and Node ws.
//
// Our server <- ws clients, one per negotiation variant (perMessageDeflate
// serverNoContextTakeover, clientNoContextTakeover, both,
// serverMaxWindowBits 9..15, clientMaxWindowBits 9..15 / true / false),
// compressing everything (threshold 0): the Sec-WebSocket-Extensions of the
// 101 is checked against the offer, then 0 B, 1 B, 16 KiB of JSON-like text
// (twice), 1 MiB text, 1 MiB incompressible, 16 MiB text and binary and
// fragmented compressed messages echo. An offer duplex cannot honour
// (serverMaxWindowBits 8) is declined and the connection works uncompressed.
//
// Our client (client_peer) -> ws servers asking for each parameter, echoing
// whole and in 3 compressed fragments; and with our client asking for them.
// The raw-socket cases (strict windows, declines, bombs, bad answers) are in
// test_deflate.py.
//
//   node tests/interop/test_deflate.js --duplex build/duplex \
//       --client-peer build/tests/interop/client_peer

const path = require('path');
const {
  CheckFailed, say, step, check, expectEq, parseArgs, runMain, startServer, runClientPeer,
  wsVersion, openClient, waitEvent, roundTrip, closeWith, textOf, startWsPeer,
} = require('./interop_common');

const { parse: parseExtensions } = require(path.join(__dirname, 'node_modules', 'ws', 'lib',
  'extension'));

const MIB = 1024 * 1024;
const PMD = 'permessage-deflate';
const KNOWN = ['server_no_context_takeover', 'client_no_context_takeover',
  'server_max_window_bits', 'client_max_window_bits'];

// n characters of JSON-like text whose first 5000 come again right after
// themselves (a match only a window of 13 bits or more can use).
function jsonLike(n) {
  let s = '';
  let x = 1;
  for (let id = 0; s.length < Math.min(n, 5000); id++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    let name = '';
    for (let k = 0; k < 8; k++) name += String.fromCharCode(97 + (Math.floor(x / 8 ** k) % 26));
    s += `{"id":${id},"name":"${name}","score":${x % 1000}.${x % 97},"ok":${x % 2 === 1}},`;
  }
  s = s.slice(0, 5000);
  return n ? s.repeat(Math.ceil(n / 5000)).slice(0, n) : '';
}

// Binary with a 199-byte period: compressible even with a 9-bit window.
const periodic = (n) => Buffer.alloc(n, Buffer.from(Array.from({ length: 199 },
  (_, i) => (i * 37 + 11) & 0xff)));

// The one permessage-deflate element of a header value as {param: value
// (true for a flag)}; fails on anything else.
function extParams(value, what) {
  let parsed;
  try {
    parsed = parseExtensions(value || '');
  } catch (e) {
    throw new CheckFailed(`${what}: cannot parse Sec-WebSocket-Extensions ` +
      `${JSON.stringify(value)}: ${e.message}`);
  }
  const names = Object.keys(parsed);
  check(names.length === 1 && names[0] === PMD && parsed[PMD].length === 1,
    `${what}: expected exactly one permessage-deflate, got ${JSON.stringify(value)}`);
  const out = {};
  for (const [p, vals] of Object.entries(parsed[PMD][0])) {
    check(KNOWN.includes(p), `${what}: unknown parameter ${p} in ${JSON.stringify(value)}`);
    check(vals.length === 1, `${what}: duplicate parameter ${p} in ${JSON.stringify(value)}`);
    out[p] = vals[0];
  }
  return out;
}

// RFC 7692 section 7 for duplex serve's answer (defaults: 15-bit windows,
// context takeover, nothing added unasked) to a ws offer with these options.
function checkAnswer(o, value, what) {
  check(value !== undefined, `${what}: the 101 has no Sec-WebSocket-Extensions: declined`);
  const got = extParams(value, what);
  const has = (p) => Object.prototype.hasOwnProperty.call(got, p);
  expectEq(has('server_no_context_takeover'), !!o.serverNoContextTakeover,
    `${what}: server_no_context_takeover in the answer ${JSON.stringify(value)}`);
  if (!o.clientNoContextTakeover) {
    check(!has('client_no_context_takeover'), `${what}: client_no_context_takeover unasked`);
  }
  const bits = (p, lo, hi) => {
    const v = Number(got[p]);
    check(Number.isInteger(v) && v >= lo && v <= hi,
      `${what}: expected ${p}=${lo}..${hi}, got ${JSON.stringify(value)}`);
  };
  if (o.serverMaxWindowBits) bits('server_max_window_bits', 9, o.serverMaxWindowBits);
  else check(!has('server_max_window_bits'), `${what}: server_max_window_bits unasked`);
  if (o.clientMaxWindowBits === false) {
    check(!has('client_max_window_bits'),
      `${what}: client_max_window_bits in the answer although not offered (7.1.2.2)`);
  } else if (has('client_max_window_bits')) {
    bits('client_max_window_bits', 8, typeof o.clientMaxWindowBits === 'number'
      ? o.clientMaxWindowBits : 15);
  }
  return got;
}

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const OFFERS = [
  ['ws defaults (client_max_window_bits offered without a value)', {}],
  ['client_max_window_bits not offered', { clientMaxWindowBits: false }],
  ['serverNoContextTakeover', { serverNoContextTakeover: true }],
  ['clientNoContextTakeover', { clientNoContextTakeover: true }],
  ['both no context takeover', { serverNoContextTakeover: true, clientNoContextTakeover: true }],
  ...range(9, 15).map((b) => [`serverMaxWindowBits ${b}`, { serverMaxWindowBits: b }]),
  ...range(8, 15).map((b) => [`clientMaxWindowBits ${b}`, { clientMaxWindowBits: b }]),
];

async function tServerVariants(args) {
  const srv = await startServer(args.duplex);
  for (const [name, o] of OFFERS) {
    step(`ws offers permessage-deflate with ${name}: duplex serve accepts per RFC 7692`);
    const logged = srv.logCount(' deflate=on ');
    const st = await openClient(srv.url('/'), { perMessageDeflate: { ...o, threshold: 0 } });
    const value = st.upgrade['sec-websocket-extensions'];
    checkAnswer(o, value, name);
    say(`  answer: ${value}`);
    check(st.ws.extensions.startsWith(PMD), `${name}: ws did not activate the extension`);
    step(`  ${name}: 0 B to 16 MiB, text and binary, whole and fragmented, echo`);
    await roundTrip(st, '', false, `${name}: empty text`);
    await roundTrip(st, Buffer.from([7]), true, `${name}: 1-byte binary`);
    const doc = jsonLike(16384);
    await roundTrip(st, doc, false, `${name}: 16 KiB JSON-like text`);
    await roundTrip(st, doc, false, `${name}: the same 16 KiB again`);
    await roundTrip(st, textOf(MIB, 3), false, `${name}: 1 MiB text`);
    await roundTrip(st, require('crypto').randomBytes(MIB), true, `${name}: 1 MiB incompressible`);
    await roundTrip(st, textOf(16 * MIB, 5), false, `${name}: 16 MiB text`);
    await roundTrip(st, periodic(16 * MIB), true, `${name}: 16 MiB binary`);
    await roundTrip(st, doc, false, `${name}: JSON-like text in 4 compressed fragments`,
      [doc.slice(0, 5000), doc.slice(5000, 5001), doc.slice(5001, 12000), doc.slice(12000)]);
    const blob = periodic(MIB);
    await roundTrip(st, blob, true, `${name}: 1 MiB binary in 3 compressed fragments`,
      [blob.subarray(0, 1000), blob.subarray(1000, 600000), blob.subarray(600000)]);
    await closeWith(st, name);
    check(srv.logCount(' deflate=on ') > logged,
      `${name}: duplex serve did not log deflate=on; stderr tail ${srv.stderr.slice(-300)}`);
  }

  step('a ping between two compressed fragments is answered, and the message arrives whole');
  let st = await openClient(srv.url('/'), { perMessageDeflate: { threshold: 0 } });
  const doc = jsonLike(16384);
  st.ws.send(doc.slice(0, 9000), { fin: false });
  st.ws.ping(Buffer.from('between'));
  st.ws.send(doc.slice(9000), { fin: true });
  const pong = await waitEvent(st, () => st.pongs.shift(), 'pong between compressed fragments');
  expectEq(pong, Buffer.from('between'), 'pong payload');
  const m = await waitEvent(st, () => st.messages.shift(), 'echo of the fragmented message');
  expectEq(`${m.isBinary} ${m.data.length}`, `false ${doc.length}`, 'echo type and length');
  check(m.data.toString() === doc, 'the echo of the fragmented message differs');
  await roundTrip(st, 'after', false, 'a message after the fragmented one');
  await closeWith(st, 'ping between fragments');

  step('ws offers serverMaxWindowBits 8: duplex serve declines; the connection works ' +
    'uncompressed');
  st = await openClient(srv.url('/'), { perMessageDeflate: { serverMaxWindowBits: 8 } });
  expectEq(st.upgrade['sec-websocket-extensions'], undefined,
    'Sec-WebSocket-Extensions answering server_max_window_bits=8');
  expectEq(st.ws.extensions, '', 'extensions active after the decline');
  await roundTrip(st, jsonLike(16384), false, '16 KiB after a declined offer');
  await closeWith(st, 'declined offer');

  step('ws without perMessageDeflate: no Sec-WebSocket-Extensions, echoes work');
  st = await openClient(srv.url('/'), { perMessageDeflate: false });
  expectEq(st.upgrade['sec-websocket-extensions'], undefined, 'Sec-WebSocket-Extensions');
  await roundTrip(st, textOf(MIB), false, '1 MiB uncompressed');
  await closeWith(st, 'no offer');
  check(srv.alive(), 'duplex serve died during the variants');
}

const PEER_SCRIPT = ['text:0', 'binary:1', 'json:16384', 'json:16384', 'text:1048576',
  'noise:1048576', 'plain:70000', 'binary:4194304', 'ping:x'];

const THEIR_SERVERS = [
  ['defaults', {}],
  ['serverNoContextTakeover', { serverNoContextTakeover: true }],
  ['clientNoContextTakeover', { clientNoContextTakeover: true }],
  ['both no context takeover', { serverNoContextTakeover: true, clientNoContextTakeover: true }],
  ...range(9, 15).map((b) => [`serverMaxWindowBits ${b}`, { serverMaxWindowBits: b }]),
  ...range(8, 15).map((b) => [`clientMaxWindowBits ${b}`, { clientMaxWindowBits: b }]),
];

// The parameters a ws server configured with o must have put in its answer.
function wanted(o) {
  const w = {};
  if (o.serverNoContextTakeover) w.server_no_context_takeover = true;
  if (o.clientNoContextTakeover) w.client_no_context_takeover = true;
  if (o.serverMaxWindowBits) w.server_max_window_bits = String(o.serverMaxWindowBits);
  if (o.clientMaxWindowBits) w.client_max_window_bits = String(o.clientMaxWindowBits);
  return w;
}

function expectCarries(value, want, what) {
  const got = extParams(value, what);
  for (const [p, v] of Object.entries(want)) {
    check(got[p] === v, `${what}: expected ${p}${v === true ? '' : '=' + v} in ` +
      `${JSON.stringify(value)}`);
  }
}

const headerOf = (lines, name) => {
  const l = (lines || []).find((h) => h.toLowerCase().startsWith(name.toLowerCase() + ':'));
  return l === undefined ? undefined : l.slice(name.length + 1).trim();
};

async function tClientVariants(args) {
  for (const [name, o] of THEIR_SERVERS) {
    const peer = await startWsPeer({ perMessageDeflate: { ...o, threshold: 0 } });
    try {
      for (const p of ['/', '/frag']) {
        step(`client_peer -> ws server asking for ${name}${p === '/frag'
          ? ', echoing in 3 compressed fragments' : ''}: echoes of 0 B to 4 MiB`);
        await runClientPeer(args.clientPeer, peer.url(p), PEER_SCRIPT, 60000,
          ['--deflate', '--expect-compressed=1']);
        const rec = peer.conns[peer.conns.length - 1];
        expectCarries(headerOf(rec.response, 'Sec-WebSocket-Extensions'), wanted(o),
          `${name}: the ws server's answer`);
      }
    } finally {
      peer.stop();
    }
  }
  const peer = await startWsPeer({ perMessageDeflate: { threshold: 0 } });
  try {
    step('client_peer -> ws (defaults): 16 MiB text and binary, compressed');
    await runClientPeer(args.clientPeer, peer.url('/'), ['text:16777216', 'binary:16777216'],
      120000, ['--deflate', '--expect-compressed=1']);
    const ours = [
      [['--deflate-no-context=1,0'], { server_no_context_takeover: true }],
      [['--deflate-no-context=0,1'], { client_no_context_takeover: true }],
      [['--deflate-window=9,15'], { server_max_window_bits: '9' }],
      [['--deflate-window=15,9'], { client_max_window_bits: '9' }],
      [['--deflate-window=11,10', '--deflate-no-context=1,1'], { server_max_window_bits: '11',
        client_max_window_bits: '10', server_no_context_takeover: true,
        client_no_context_takeover: true }],
    ];
    for (const [opts, want] of ours) {
      const what = `client_peer ${opts.join(' ')}`;
      step(`${what}: the offer carries ${JSON.stringify(want)}; ws accepts; echoes work`);
      await runClientPeer(args.clientPeer, peer.url('/frag'), PEER_SCRIPT, 60000,
        ['--deflate', '--expect-compressed=1', ...opts]);
      const rec = peer.conns[peer.conns.length - 1];
      expectCarries(rec.request['sec-websocket-extensions'], want, `${what} (our offer)`);
      say(`  offer ${JSON.stringify(rec.request['sec-websocket-extensions'])}, answer ` +
        `${JSON.stringify(headerOf(rec.response, 'Sec-WebSocket-Extensions'))}`);
    }
  } finally {
    peer.stop();
  }
}

async function main(args) {
  say(`ws ${wsVersion()}, node ${process.version}, zlib ${process.versions.zlib}`);
  await tServerVariants(args);
  if (args.clientPeer) await tClientVariants(args);
  else say('NOTE: --client-peer not given; client API checks skipped');
}

runMain(main, parseArgs(process.argv, true));
