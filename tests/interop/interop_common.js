'use strict';
// Shared harness for the duplex interop suites (Node side): runs
// `duplex serve` / `duplex connect` / client_peer as children, prints every
// check, and turns the first failed check into a non-zero exit. A watchdog
// bounds the whole suite so a hung peer can never hang CTest.

const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');

const children = new Set();
const servers = []; // every duplex serve, for its stderr on failure

class CheckFailed extends Error {}

// A sanitizer build of duplex must fail these suites even when UBSan
// recovers: any report on a child's stderr is a failure.
const SANITIZER_RE = /runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: AddressSanitizer/;

function checkNoSanitizerReport(text, who) {
  const line = text.split('\n').find((l) => SANITIZER_RE.test(l));
  if (line) throw new CheckFailed(`sanitizer report from ${who}: ${line.trim()}`);
}

function say(msg) {
  process.stdout.write(msg + '\n');
}

function step(msg) {
  say('CHECK: ' + msg);
}

function check(cond, msg) {
  if (!cond) throw new CheckFailed(msg);
}

function short(v) {
  let s;
  if (Buffer.isBuffer(v)) s = `<Buffer len=${v.length} ${v.subarray(0, 16).toString('hex')}>`;
  else s = JSON.stringify(v);
  if (s !== undefined && s.length > 120) s = s.slice(0, 120) + `...(len=${v.length})`;
  return s;
}

function expectEq(got, want, what) {
  const same = Buffer.isBuffer(got) && Buffer.isBuffer(want) ? got.equals(want) : got === want;
  if (!same) throw new CheckFailed(`${what}: expected ${short(want)}, got ${short(got)}`);
}

function parseArgs(argv, needPeer) {
  const args = { duplex: null, clientPeer: null, timeout: 240 };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--duplex') args.duplex = argv[++i];
    else if (a === '--client-peer' && needPeer) args.clientPeer = argv[++i];
    else if (a === '--timeout') args.timeout = Number(argv[++i]);
    else {
      process.stderr.write(`unknown argument ${a}\n`);
      process.exit(64);
    }
  }
  if (!args.duplex) {
    process.stderr.write('usage: node SUITE.js --duplex PATH' +
      (needPeer ? ' [--client-peer PATH]' : '') + ' [--timeout S]\n');
    process.exit(64);
  }
  return args;
}

function killChildren() {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try { c.kill('SIGKILL'); } catch (e) { /* already gone */ }
    }
  }
}

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

// Runs fn(args) under a watchdog; prints the verdict and exits.
function runMain(fn, args) {
  const dog = setTimeout(() => {
    say(`FAIL: suite watchdog: still running after ${args.timeout} s`);
    killChildren();
    process.exit(2);
  }, args.timeout * 1000);
  Promise.resolve()
    .then(() => fn(args))
    .then(async () => {
      for (const srv of servers) {
        await srv.stop();
        checkNoSanitizerReport(srv.stderr, srv.cmd);
      }
    })
    .then(() => {
      clearTimeout(dog);
      killChildren();
      say('PASS: all checks passed');
      process.exit(0);
    }, (err) => {
      clearTimeout(dog);
      if (err instanceof CheckFailed) say(`FAIL: ${err.message}`);
      else say(`FAIL: unexpected error: ${err && err.stack ? err.stack : err}`);
      for (const srv of servers) {
        if (!srv.stderr) continue;
        say(`stderr of \`${srv.cmd}\` (last lines):`);
        for (const l of srv.stderr.trimEnd().split('\n').slice(-15)) say('  ! ' + l);
      }
      killChildren();
      process.exit(1);
    });
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`${what}: timed out after ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// `duplex serve` on every address of localhost (::1 and 127.0.0.1 on a
// stock Debian, 127.0.0.1 alone where there is no IPv6) with a
// kernel-chosen port; with tls ({cert, key} PEM files) it serves wss://
// and srv.url() names localhost, the host the test certificates carry.
// Node 18's net.connect tries only the first address of a name (Debian's
// /etc/hosts gives ::1 first); Node 20 tries them all. Listening on every
// address makes wss://localhost work with both.
async function startServer(duplex, extra = [], { tls = null } = {}) {
  const cmd = ['serve', '--host', 'localhost', '--port', '0', ...extra];
  if (tls) cmd.push('--tls-cert', tls.cert, '--tls-key', tls.key);
  say(`starting: ${duplex} ${cmd.join(' ')}`);
  const proc = track(spawn(duplex, cmd, { stdio: ['ignore', 'ignore', 'pipe'] }));
  const srv = { proc, port: null, stderr: '', cmd: `${duplex} ${cmd.join(' ')}` };
  servers.push(srv);
  const port = await withTimeout(new Promise((resolve, reject) => {
    proc.stderr.on('data', (d) => {
      srv.stderr += d.toString();
      if (srv.stderr.length > (4 << 20)) srv.stderr = srv.stderr.slice(-(1 << 20));
      const m = /listening on (\S+):(\d+)/.exec(srv.stderr);
      if (m && srv.port === null) {
        srv.port = Number(m[2]);
        resolve(srv.port);
      }
    });
    proc.on('exit', (code, sig) => reject(new CheckFailed(
      `duplex serve exited before listening (status ${code}, signal ${sig}); stderr: ${srv.stderr}`)));
    proc.on('error', (e) => reject(new CheckFailed(`cannot start ${duplex}: ${e.message}`)));
  }), 10000, "duplex serve printing 'listening on HOST:PORT'");
  say(`duplex serve is listening on port ${port}`);
  srv.url = (p = '/') => (tls ? `wss://localhost:${port}${p}` : `ws://127.0.0.1:${port}${p}`);
  // How often text occurs in what it logged. With several threads its
  // open/close lines may interleave mid-line, so checks count a fragment
  // such as ' deflate=on ' rather than read whole lines.
  srv.logCount = (text) => srv.stderr.split(text).length - 1;
  srv.alive = () => proc.exitCode === null && proc.signalCode === null;
  // 'close' comes after 'exit' once stderr is drained, so a sanitizer
  // report printed while exiting is in srv.stderr by then.
  const closed = new Promise((resolve) => proc.once('close', resolve));
  srv.stop = (timeoutMs = 5000) => new Promise((resolve) => {
    if (!srv.alive()) {
      closed.then(() => resolve({ code: proc.exitCode, signal: proc.signalCode, clean: true }));
      return;
    }
    const t = setTimeout(() => {
      proc.kill('SIGKILL');
      resolve({ code: null, signal: 'SIGKILL', clean: false });
    }, timeoutMs);
    proc.once('exit', (code, signal) => {
      clearTimeout(t);
      closed.then(() => resolve({ code, signal, clean: true }));
    });
    proc.kill('SIGTERM');
  });
  return srv;
}

const CLOSE_RE = /closed: code=(\d+) reason="(.*)" why=(.*?)\s*$/;

function parseCloseLine(stderr) {
  let found = null;
  for (const line of stderr.split('\n')) {
    const m = CLOSE_RE.exec(line);
    if (m) found = { code: Number(m[1]), reason: m[2], why: m[3] };
  }
  return found;
}

// Runs `duplex connect URL` feeding lines on stdin. keepStdinOpen leaves
// stdin open so the peer must end the connection; stdinDelayMs waits before
// EOF so echoes can come back first.
// extra: options such as ['--ca', FILE].
function runConnect(duplex, url, lines, { keepStdinOpen = false, timeoutMs = 30000,
  stdinDelayMs = 0, extra = [] } = {}) {
  // -v: the `closed:` line also on a clean close (the checks read it).
  say(`running: ${duplex} connect -v ${[...extra, url].join(' ')}  (${lines.length} stdin ` +
    `line(s)${keepStdinOpen ? ', stdin kept open' : ''})`);
  return new Promise((resolve, reject) => {
    const proc = track(spawn(duplex, ['connect', '-v', ...extra, url],
      { stdio: ['pipe', 'pipe', 'pipe'] }));
    const out = [];
    const err = [];
    proc.stdout.on('data', (d) => out.push(d));
    proc.stderr.on('data', (d) => err.push(d));
    proc.stdin.on('error', () => { /* EPIPE once duplex has exited */ });
    proc.on('error', (e) => reject(new CheckFailed(`cannot start ${duplex}: ${e.message}`)));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new CheckFailed(`duplex connect ${url} did not exit within ${timeoutMs / 1000} s; ` +
        `stdout so far ${short(Buffer.concat(out).toString())}, stderr so far ` +
        `${JSON.stringify(Buffer.concat(err).toString())}`));
    }, timeoutMs);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      let text = stdout.endsWith('\n') ? stdout.slice(0, -1) : stdout;
      const res = { code, signal, stdout, stderr, lines: text ? text.split('\n') : [],
        close: parseCloseLine(stderr) };
      say(`  exit status ${code}${signal ? ' signal ' + signal : ''}; close line ` +
        `${JSON.stringify(res.close)}`);
      try {
        checkNoSanitizerReport(stderr, `duplex connect ${url}`);
      } catch (e) {
        reject(e);
        return;
      }
      resolve(res);
    });
    for (const l of lines) proc.stdin.write(l + '\n');
    if (!keepStdinOpen) {
      if (stdinDelayMs) setTimeout(() => proc.stdin.end(), stdinDelayMs);
      else proc.stdin.end();
    }
  });
}

// Runs the C client_peer with options (such as --ca=FILE, --deflate) and a
// script; rejects on a non-zero exit, else resolves with its output.
function runClientPeer(peer, url, script, timeoutMs = 60000, opts = []) {
  say(`running: ${peer} ${[...opts, url, ...script].join(' ')}`);
  return new Promise((resolve, reject) => {
    const proc = track(spawn(peer, [...opts, url, ...script],
      { stdio: ['ignore', 'pipe', 'pipe'] }));
    const out = [];
    proc.stdout.on('data', (d) => out.push(d));
    proc.stderr.on('data', (d) => out.push(d));
    proc.on('error', (e) => reject(new CheckFailed(`cannot start ${peer}: ${e.message}`)));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new CheckFailed(`client_peer did not finish within ${timeoutMs / 1000} s; ` +
        `output: ${Buffer.concat(out).toString()}`));
    }, timeoutMs);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      const text = Buffer.concat(out).toString();
      for (const l of text.split('\n')) if (l) say('  | ' + l);
      try {
        checkNoSanitizerReport(text, 'client_peer');
      } catch (e) {
        reject(e);
        return;
      }
      if (code !== 0) {
        reject(new CheckFailed(`client_peer exited with status ${code}` +
          `${signal ? ' signal ' + signal : ''} (script ${script.join(' ')})`));
      } else resolve(text);
    });
  });
}

// ------------------------------------------------------------ ws peers

// The pinned ws from tests/interop/node_modules; exits with a FAIL line
// when it is not installed.
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A throwaway redis-server on 127.0.0.1: no persistence, its own temporary
// directory (removed at exit).
async function startRedis(executable) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'duplex-redis-'));
  process.on('exit', () => {
    try { fs.rmSync(dir, { recursive: true, force: true }); } catch (e) { /* best effort */ }
  });
  const port = await freePort();
  const argv = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no'];
  say(`starting redis: ${executable} ${argv.map((a) => a || "''").join(' ')}`);
  const proc = track(spawn(executable, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  await withTimeout(new Promise((resolve, reject) => {
    const onData = (d) => {
      out += d.toString();
      if (/Ready to accept connections/.test(out)) resolve();
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', (code, sig) => reject(new CheckFailed(`redis-server exited at start ` +
      `(status ${code}, signal ${sig}): ${out.trim().split('\n').slice(-5).join(' | ')}`)));
    proc.once('error', (e) => reject(new CheckFailed(`cannot start ${executable}: ` +
      `${e.message} (apt-get install -y redis-server)`)));
  }), 15000, 'redis-server getting ready');
  say(`redis-server ready on 127.0.0.1:${port}`);
  return { proc, port, url: `redis://127.0.0.1:${port}` };
}

// An npm package of tests/interop/node_modules (npm ci there installs
// them as package-lock.json pins them), or a FAIL saying how to get it.
function requireNpm(name) {
  try {
    return require(path.join(__dirname, 'node_modules', name));
  } catch (e) {
    say(`FAIL: ${name === 'ws' ? 'the ws package' : name} is not installed: run \`npm ci\` in tests/interop`);
    process.exit(1);
  }
  return null;
}

const requireWs = () => requireNpm('ws');
// The official Socket.IO client.
const requireSocketIoClient = () => requireNpm('socket.io-client');

function wsVersion() {
  return require(path.join(__dirname, 'node_modules', 'ws', 'package.json')).version;
}

// Throwaway certificates from tests/certs/make.sh (see there), in a
// temporary folder removed on exit: { ca, server, wrong, self } where each
// but ca is { cert, key }.
function makeCerts() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'duplex-certs-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync('sh', [path.join(__dirname, '..', 'certs', 'make.sh'), dir],
    { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) {
    throw new CheckFailed(`tests/certs/make.sh failed (status ${r.status}): ` +
      `${(r.stdout || '') + (r.stderr || '')}${r.error ? r.error.message : ''}`.slice(-2000));
  }
  const pair = (n) => ({ cert: path.join(dir, `${n}.pem`), key: path.join(dir, `${n}.key`) });
  return { dir, ca: path.join(dir, 'ca.pem'), server: pair('server'), wrong: pair('wrong'),
    self: pair('self') };
}

// A ws client (url, ws options) whose messages, pongs and close land in
// awaitable queues; st.upgrade holds the headers of the server's 101.
function openClient(url, wsOptions = {}, ms = 30000) {
  const WebSocket = requireWs();
  return withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: 64 << 20, ...wsOptions });
    const st = { ws, messages: [], pongs: [], waiters: [], closed: null, upgrade: null };
    const wake = () => { const w = st.waiters; st.waiters = []; w.forEach((f) => f()); };
    ws.on('upgrade', (res) => { st.upgrade = res.headers; });
    ws.on('message', (data, isBinary) => { st.messages.push({ data, isBinary }); wake(); });
    ws.on('pong', (data) => { st.pongs.push(data); wake(); });
    ws.on('close', (code, reason) => {
      st.closed = { code, reason: reason.toString() };
      wake();
    });
    ws.on('error', (e) => { st.error = e; wake(); });
    ws.once('open', () => resolve(st));
    ws.once('error', (e) => reject(new CheckFailed(`cannot connect to ${url}: ${e.message}`)));
  }), ms, `opening ${url}`);
}

// Resolves with pred()'s first defined value, re-checked on every event of
// st; rejects when the connection closes first (unless allowClosed).
function waitEvent(st, pred, what, { ms = 30000, allowClosed = false } = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const poll = () => {
      const v = pred();
      if (v !== undefined) return resolve(v);
      if (st.closed && !allowClosed) {
        return reject(new CheckFailed(`${what}: connection closed instead (code=` +
          `${st.closed.code} reason=${JSON.stringify(st.closed.reason)})`));
      }
      st.waiters.push(poll);
      return undefined;
    };
    poll();
  }), ms, what);
}

// Sends data (whole, or as fragments when parts is given) and expects it
// back whole with the same type.
async function roundTrip(st, data, isBinary, what, parts = null) {
  if (!parts) st.ws.send(data, { binary: isBinary });
  else parts.forEach((p, i) => st.ws.send(p, { binary: isBinary, fin: i === parts.length - 1 }));
  const m = await waitEvent(st, () => st.messages.shift(), what);
  const want = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
  expectEq(m.isBinary, isBinary, `${what}: message is ${isBinary ? 'binary' : 'text'}`);
  if (!m.data.equals(want)) {
    let i = 0;
    while (i < want.length && i < m.data.length && want[i] === m.data[i]) i++;
    throw new CheckFailed(`${what}: echo differs (sent ${want.length} bytes, got ` +
      `${m.data.length}; first difference at ${i})`);
  }
}

// Closes with code and reason; resolves with the server's reply.
async function closeWith(st, what, code = 1000, reason = 'bye') {
  st.ws.close(code, reason);
  const c = await waitEvent(st, () => st.closed || undefined, `${what}: close`,
    { allowClosed: true });
  expectEq(c.code, code, `${what}: close code in the server's reply`);
  return c;
}

// n bytes cycling through every byte value; n characters of ASCII text.
const bytesOf = (n, seed = 0) =>
  Buffer.alloc(n, Buffer.from(Array.from({ length: 256 }, (_, i) => (i + seed) & 0xff)));
const textOf = (n, seed = 0) => {
  const a = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  const k = seed % a.length;
  return (a.slice(k) + a.slice(0, k)).repeat(Math.ceil(n / a.length) + 1).slice(0, n);
};

// A Node ws echo server (over https when tls is {cert, key}); on /frag it
// echoes a message of 3 or more bytes as 3 fragments. wsOptions go to
// WebSocketServer (perMessageDeflate, handleProtocols, ...). Each
// connection is recorded in peer.conns: { path, request, response (the
// 101's header lines), protocol, extensions, close }.
function startWsPeer({ tls = null, ...wsOptions } = {}) {
  const WebSocket = requireWs();
  const http = require(tls ? 'https' : 'http');
  const server = tls
    ? http.createServer({ cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) })
    : http.createServer();
  const wss = new WebSocket.WebSocketServer({ server, maxPayload: 64 << 20, ...wsOptions });
  const peer = { server, wss, conns: [], pending: [] };
  wss.on('headers', (headers) => peer.pending.push(headers.slice()));
  wss.on('connection', (ws, req) => {
    const rec = { path: req.url, request: req.headers, response: peer.pending.shift(),
      protocol: ws.protocol, extensions: ws.extensions, close: null };
    peer.conns.push(rec);
    ws.on('message', (data, isBinary) => {
      if (req.url === '/frag' && data.length >= 3) {
        const k = Math.floor(data.length / 3);
        const parts = [data.subarray(0, k), data.subarray(k, 2 * k), data.subarray(2 * k)];
        parts.forEach((p, i) => ws.send(p, { binary: isBinary, fin: i === 2 }));
      } else ws.send(data, { binary: isBinary });
    });
    ws.on('close', (code, reason) => { rec.close = { code, reason: reason.toString() }; });
    ws.on('error', () => { /* failures are what some checks provoke */ });
  });
  // The server records a client's close asynchronously: wait for it.
  peer.waitClose = async (what, ms = 3000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const last = peer.conns[peer.conns.length - 1];
      if (last && last.close) return last.close;
      if (Date.now() > deadline) throw new CheckFailed(`${what}: the ws server saw no close`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  peer.stop = () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.close();
  };
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      peer.port = server.address().port;
      peer.url = (p = '/', scheme = tls ? 'wss' : 'ws') =>
        `${scheme}://${tls ? 'localhost' : '127.0.0.1'}:${peer.port}${p}`;
      say(`ws ${wsVersion()} peer server on port ${peer.port} (${tls ? 'TLS' : 'plain'}` +
        `${Object.keys(wsOptions).length ? ', ' + JSON.stringify(wsOptions) : ''})`);
      resolve(peer);
    });
  });
}

module.exports = {
  CheckFailed, say, step, check, expectEq, short, parseArgs, runMain, withTimeout,
  startServer, runConnect, runClientPeer, parseCloseLine, track,
  requireWs, wsVersion, makeCerts, openClient, waitEvent, roundTrip, closeWith, bytesOf, textOf,
  startWsPeer, freePort, startRedis, requireSocketIoClient,
};
