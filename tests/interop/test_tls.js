#!/usr/bin/env node
'use strict';
// wss:// between duplex and Node ws, both ways.
//
// Certificates come from tests/certs/make.sh at run time.
//
// duplex serve --tls-cert/--tls-key <- ws client trusting the test CA: text
// and binary up to 16 MiB (compressed, as negotiated by default, and
// uncompressed), fragments, every sendable close code, 16 MiB + 1 closing
// with 1009; a ws client without the CA refuses the certificate; a ws://
// client on the TLS port fails at once and the server keeps serving.
//
// duplex client (`duplex connect --ca`, client_peer) -> https.createServer +
// WebSocketServer: echoes up to 16 MiB, pings, close codes; a certificate for
// another host name and a self-signed one are refused (exit 1, 1015,
// why=transport error, the verification failure named); --insecure accepts
// them; ws:// to the TLS server and wss:// to a plaintext one fail within a
// few seconds.
//
//   node tests/interop/test_tls.js --duplex build/duplex \
//       --client-peer build/tests/interop/client_peer

const fs = require('fs');
const {
  CheckFailed, say, step, check, expectEq, parseArgs, runMain, startServer, runConnect,
  runClientPeer, wsVersion, makeCerts, openClient, waitEvent, roundTrip, closeWith, bytesOf,
  textOf, startWsPeer,
} = require('./interop_common');

const MIB = 1024 * 1024;
const FAIL_WITHIN_MS = 5000;
const CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
  1013, 1014, 3000, 3999, 4000, 4999];
const LINES = ['hello over TLS', 'h\u00e9llo \u2713 \u{1F642}', 'z'.repeat(70000), 'last'];
const PEER_SCRIPT = ['text:0', 'binary:1', 'text:65536', 'binary:65537', 'text:1048576',
  'binary:16777216', 'text:16777216', 'ping:', 'ping:tls', 'close:1000:bye'];

// A ws client on url must fail (any error) within FAIL_WITHIN_MS.
async function expectQuickFailure(url, opts, what) {
  const t0 = Date.now();
  let st;
  try {
    st = await openClient(url, opts, FAIL_WITHIN_MS);
  } catch (e) {
    const took = Date.now() - t0;
    check(took < FAIL_WITHIN_MS, `${what}: still not failed after ${took / 1000} s (hangs)`);
    say(`  failed after ${took / 1000} s: ${e.message}`);
    return;
  }
  st.ws.terminate();
  throw new CheckFailed(`${what}: the handshake succeeded`);
}

async function tServer(args, certs) {
  const srv = await startServer(args.duplex, [], { tls: certs.server });
  const ca = fs.readFileSync(certs.ca);
  step('wss://localhost: the ws client trusting the test CA connects; permessage-deflate ' +
    'is negotiated (offered by ws by default, accepted by duplex serve by default)');
  let st = await openClient(srv.url('/'), { ca });
  check(/^permessage-deflate/.test(st.upgrade['sec-websocket-extensions'] || ''),
    `Sec-WebSocket-Extensions in the 101: expected permessage-deflate, got ` +
    `${JSON.stringify(st.upgrade['sec-websocket-extensions'])}`);
  for (const n of [0, 1, 125, 126, 65535, 65536, MIB, 16 * MIB]) {
    step(`over TLS: text of ${n} bytes echoes as text, binary of ${n} as binary`);
    await roundTrip(st, textOf(n, n), false, `TLS text ${n}`);
    await roundTrip(st, bytesOf(n, n), true, `TLS binary ${n}`);
  }
  step('over TLS: incompressible binary of 1 MiB echoes');
  await roundTrip(st, require('crypto').randomBytes(MIB), true, 'TLS random 1 MiB');
  step('over TLS: a 4 MiB message in 4 fragments comes back whole');
  const big = bytesOf(4 * MIB, 9);
  await roundTrip(st, big, true, 'TLS fragments',
    [0, 1, 2, 3].map((i) => big.subarray(i * MIB, (i + 1) * MIB)));
  await closeWith(st, 'TLS echo');

  step('over TLS without compression: 16 MiB binary and text echo');
  st = await openClient(srv.url('/'), { ca, perMessageDeflate: false });
  expectEq(st.upgrade['sec-websocket-extensions'], undefined,
    'Sec-WebSocket-Extensions when the client offers none');
  await roundTrip(st, bytesOf(16 * MIB, 1), true, 'TLS uncompressed binary 16 MiB');
  await roundTrip(st, textOf(16 * MIB, 2), false, 'TLS uncompressed text 16 MiB');
  await closeWith(st, 'TLS uncompressed');

  for (const code of CLOSE_CODES) {
    step(`over TLS: close ${code} with a reason is echoed by the server`);
    st = await openClient(srv.url('/'), { ca });
    await roundTrip(st, `before ${code}`, false, 'TLS echo before close');
    await closeWith(st, `TLS close ${code}`, code, `reason ${code}`);
  }

  step('over TLS: a 16 MiB + 1 byte message closes with 1009');
  st = await openClient(srv.url('/'), { ca });
  st.ws.send(bytesOf(16 * MIB + 1), { binary: true });
  const c = await waitEvent(st, () => st.closed || undefined, 'TLS 16 MiB + 1: close',
    { allowClosed: true });
  check(st.messages.length === 0, 'TLS 16 MiB + 1: got an echo instead of a close');
  expectEq(c.code, 1009, 'TLS 16 MiB + 1: close code from the server');

  step('a ws client without the test CA refuses the certificate');
  await expectQuickFailure(srv.url('/'), {}, 'wss:// client with the system CAs only');
  step(`a plaintext ws:// client on the TLS port fails within ${FAIL_WITHIN_MS / 1000} s`);
  await expectQuickFailure(srv.url('/').replace('wss://', 'ws://'), {},
    'ws:// client on the wss:// port');
  step('  the TLS server still serves wss:// afterwards');
  st = await openClient(srv.url('/'), { ca });
  await roundTrip(st, 'still fine', false, 'wss:// after a plaintext client');
  await closeWith(st, 'wss:// after a plaintext client');

  step(`a wss:// ws client on a plaintext duplex serve fails within ${FAIL_WITHIN_MS / 1000} s`);
  const plain = await startServer(args.duplex);
  await expectQuickFailure(plain.url('/').replace('ws://127.0.0.1', 'wss://localhost'), { ca },
    'wss:// client on a ws:// port');
  check(srv.alive() && plain.alive(), 'a duplex serve died during the TLS server checks');
  return { srv, plain };
}

async function tClient(args, certs) {
  const peer = await startWsPeer({ tls: certs.server, perMessageDeflate: true });
  try {
    step('duplex connect --ca: lines round-trip through a ws wss:// server');
    const res = await runConnect(args.duplex, peer.url('/'), LINES,
      { stdinDelayMs: 1000, extra: ['--ca', certs.ca] });
    expectEq(JSON.stringify(res.lines), JSON.stringify(LINES), 'lines echoed by the wss:// peer');
    expectEq(res.code, 0, 'exit status');
    expectEq((await peer.waitClose('duplex connect over TLS')).code, 1000,
      'close code the ws server received');
    if (!args.clientPeer) {
      say('NOTE: --client-peer not given; client API checks skipped');
      return;
    }
    step('client_peer --ca: text and binary to 16 MiB, pings, close 1000 over TLS');
    await runClientPeer(args.clientPeer, peer.url('/'), PEER_SCRIPT, 120000,
      [`--ca=${certs.ca}`]);
    for (const code of [1001, 3000, 4999]) {
      step(`client_peer --ca: dx_close(${code}) reaches the wss:// ws server`);
      await runClientPeer(args.clientPeer, peer.url('/'), ['binary:10', `close:${code}:c${code}`],
        60000, [`--ca=${certs.ca}`]);
      const got = await peer.waitClose(`dx_close(${code}) over TLS`);
      expectEq(`${got.code} ${got.reason}`, `${code} c${code}`, 'close the ws server received');
    }
    step('client_peer --ca --deflate: compressed echoes (also as fragments) over TLS');
    await runClientPeer(args.clientPeer, peer.url('/frag'),
      ['json:16384', 'json:16384', 'binary:1048576', 'text:1048576'], 60000,
      [`--ca=${certs.ca}`, '--deflate', '--expect-compressed=1']);
  } finally {
    peer.stop();
  }
}

// duplex connect and client_peer must refuse url with 1015 / transport
// error and a reason naming the verification failure.
async function refused(args, url, what, detail, extra) {
  step(`duplex connect: ${what} is refused (exit 1, 1015, why=transport error, ` +
    `reason names "${detail}")`);
  const res = await runConnect(args.duplex, url, ['never sent'], { keepStdinOpen: true, extra });
  check(res.close !== null, `${what}: no close line; stderr ${JSON.stringify(res.stderr)}`);
  expectEq(`${res.close.code} ${res.close.why}`, '1015 transport error', `${what}: code and why`);
  check(res.close.reason.includes('certificate verify failed') && res.close.reason.includes(detail),
    `${what}: expected a reason with "certificate verify failed" and "${detail}", got ` +
    `${JSON.stringify(res.close.reason)}`);
  expectEq(res.code, 1, `${what}: exit status`);
  if (args.clientPeer) {
    step(`client_peer: ${what} is refused the same way`);
    const opts = extra.length ? [`${extra[0]}=${extra[1]}`] : [];
    await runClientPeer(args.clientPeer, url, [], 30000,
      [...opts, `--expect-fail=1015:transport error:${detail}`]);
  }
}

async function tVerification(args, certs) {
  let peer = await startWsPeer({ tls: certs.wrong });
  try {
    await refused(args, peer.url('/'), 'a wrong.example certificate reached as localhost',
      'hostname mismatch', ['--ca', certs.ca]);
    step('duplex connect --insecure accepts the wrong.example certificate');
    const res = await runConnect(args.duplex, peer.url('/'), ['insecure ok'],
      { stdinDelayMs: 500, extra: ['--insecure'] });
    expectEq(`${res.code} ${res.lines.join('|')}`, '0 insecure ok', 'exit status and echo');
  } finally {
    peer.stop();
  }
  peer = await startWsPeer({ tls: certs.self });
  try {
    // OpenSSL 3 spells it "self-signed", 1.1 "self signed".
    await refused(args, peer.url('/'), 'a self-signed certificate', 'self', ['--ca', certs.ca]);
    step('duplex connect --insecure accepts the self-signed certificate');
    const res = await runConnect(args.duplex, peer.url('/'), ['self-signed ok'],
      { stdinDelayMs: 500, extra: ['--insecure'] });
    expectEq(`${res.code} ${res.lines.join('|')}`, '0 self-signed ok', 'exit status and echo');
    if (args.clientPeer) {
      step('client_peer --insecure accepts the self-signed certificate');
      await runClientPeer(args.clientPeer, peer.url('/'), ['binary:100000', 'text:5'], 30000,
        ['--insecure']);
    }
  } finally {
    peer.stop();
  }
}

async function quickFail(args, url, what, [code, why], extra = []) {
  step(`duplex connect: ${what} fails within ${FAIL_WITHIN_MS / 1000} s: exit 1, code ${code}, ` +
    `why=${why}`);
  const t0 = Date.now();
  const res = await runConnect(args.duplex, url, ['never sent'], { keepStdinOpen: true, extra });
  const took = Date.now() - t0;
  say(`  gave up after ${took / 1000} s`);
  check(took < FAIL_WITHIN_MS, `${what}: took ${took / 1000} s to fail`);
  check(res.close !== null, `${what}: no close line; stderr ${JSON.stringify(res.stderr)}`);
  expectEq(`${res.close.code} ${res.close.why}`, `${code} ${why}`, `${what}: code and why`);
  expectEq(res.code, 1, `${what}: exit status`);
}

async function tMismatch(args, certs, servers) {
  const tlsFails = [1015, 'transport error']; // TLS said no: wrong version number
  const httpFails = [1006, 'handshake failed']; // no HTTP answer: the TLS server hung up
  const plainPeer = await startWsPeer();
  const tlsPeer = await startWsPeer({ tls: certs.server });
  try {
    await quickFail(args, plainPeer.url('/', 'wss').replace('127.0.0.1', 'localhost'),
      'wss:// to a plaintext ws server', tlsFails, ['--ca', certs.ca]);
    await quickFail(args, tlsPeer.url('/', 'ws'), 'ws:// to an https ws server', httpFails);
  } finally {
    plainPeer.stop();
    tlsPeer.stop();
  }
  await quickFail(args, servers.srv.url('/').replace('wss://', 'ws://'),
    'ws:// to a TLS duplex serve', httpFails);
  await quickFail(args, servers.plain.url('/').replace('ws://127.0.0.1', 'wss://localhost'),
    'wss:// to a plaintext duplex serve', tlsFails, ['--ca', certs.ca]);
  check(servers.srv.alive() && servers.plain.alive(), 'a duplex serve died during the suite');
}

async function main(args) {
  say(`ws ${wsVersion()}, node ${process.version}, OpenSSL ${process.versions.openssl}`);
  const certs = makeCerts();
  const servers = await tServer(args, certs);
  await tClient(args, certs);
  await tVerification(args, certs);
  await tMismatch(args, certs, servers);
}

runMain(main, parseArgs(process.argv, true));
