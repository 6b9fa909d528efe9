'use strict';
// Real-browser suite: Debian's Chromium, driven headless over the Chrome
// DevTools Protocol by cdp.js (next to this file), loads a page served by
// this script (origin http://127.0.0.1:PORT) and from it talks to
// `duplex serve` over ws:// and wss://:
//   - permessage-deflate is negotiated (ws.extensions, the server's log line)
//   - the subprotocol is chosen (--protocol chat, the page offers ['chat'])
//   - text and binary messages (100 KiB pseudo-random bytes, an empty one,
//     1 MiB of compressible text) echo back identical and in order
//   - the page closes with 4001 "bye"; the browser's onclose sees 4001 with
//     wasClean true and the server logs code=4001 why=closed by peer
//   - `duplex serve --origin http://allowed.example` refuses the page (the
//     browser sees 1006 and an error event, its console a 403; a raw request
//     gets 403 and a one-line body) and accepts a raw request from that
//     origin; a server allowing http://allowed.example:PORT accepts the page
//     loaded from there (Chromium maps that name to loopback).
//
// Usage: node test_chromium.js --duplex PATH [--chromium PATH] [--timeout S]
// Needs only Node (18 or later) and Debian's chromium (apt-get install
// nodejs chromium); no npm package at all, and no browser is ever
// downloaded.
//
// Why our own driver rather than Playwright: the suite must run on what a
// stock Debian 12 (bookworm) ships, and its nodejs is 18.x, while
// playwright-core 1.5x and later (1.65.1 was pinned here) refuses to start
// below Node 20 ("Playwright requires Node.js 20 or higher"). Chromium's
// --remote-debugging-pipe needs nothing but Node and the browser: cdp.js
// speaks CDP over that pipe (NUL-separated JSON on fds 3 and 4), with the
// few commands used here (Target.createTarget / attachToTarget,
// Page.navigate and its load event, Runtime.evaluate), the page's console
// (Runtime.consoleAPICalled, and Log.entryAdded, where Chromium reports a
// refused handshake's 403) and its errors (Runtime.exceptionThrown).

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { execFileSync } = require('child_process');

const {
  CheckFailed, say, step, check, expectEq, runMain, withTimeout, startServer,
} = require('../interop/interop_common.js');
const { Browser, CdpError, HEADLESS_ARGS } = require('./cdp.js');
const { COMMON_FLAGS, parseArgs, checkChromium } = require('./browser_common.js');

// cdp.js adds --remote-debugging-pipe and --user-data-dir (a fresh
// temporary profile it removes again).
const CHROMIUM_ARGS = [
  ...HEADLESS_ARGS,
  '--ignore-certificate-errors', // the wss server uses the throwaway test CA
];

// The page's origin is http://127.0.0.1:PORT. For the "allowed origin"
// control the page is also loaded as http://allowed.example:PORT, which this
// rule resolves to loopback without any DNS.
const ALLOWED_HOST = 'allowed.example';

// ---------------------------------------------------------------------------
// Shared between this process and the page (the page gets their source), so
// the expected payloads are computed independently on both sides.

// xorshift32 bytes: incompressible, reproducible from the seed.
function makeBytes(n, seed) {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

// Compressible text of exactly n UTF-16 units, with a non-ASCII character
// on every line so the UTF-8 path is exercised too.
function makeText(n) {
  let s = '';
  for (let i = 0; s.length < n; i++) {
    s += 'line ' + String(i).padStart(6, '0') + ': the quick brown fox \u2713 jumps over the lazy dog\n';
  }
  return s.slice(0, n);
}

// FNV-1a 32-bit over bytes.
function fnv1a(bytes) {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

// Builds a message from its description: {kind: 'text'|'binary',
// gen: 'literal'|'text'|'bytes', value, n, seed}.
function buildMessage(m) {
  if (m.kind === 'text') {
    const str = m.gen === 'literal' ? m.value : makeText(m.n);
    return { kind: 'text', payload: str, bytes: new TextEncoder().encode(str) };
  }
  const bytes = m.gen === 'bytes' ? makeBytes(m.n, m.seed) : new Uint8Array(0);
  return { kind: 'binary', payload: bytes.buffer, bytes };
}

// Runs in the page: opens a WebSocket, sends messages[0], waits for its
// echo, then sends the rest in one burst; once every echo is back it closes
// with closeCode/closeReason. Resolves (never rejects) with what it saw.
function runScenario(opts) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const res = {
      url: opts.url, opened: false, extensions: null, protocol: null, echoes: [],
      errorEvents: 0, close: null, timedOut: false, log: [], constructorError: null,
    };
    const note = (s) => res.log.push(Math.round(performance.now() - t0) + ' ms: ' + s);
    const outgoing = opts.messages.map(buildMessage);
    let done = false;
    let timer = null;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      res.elapsedMs = Math.round(performance.now() - t0);
      resolve(res);
    };
    let ws;
    try {
      ws = opts.protocols ? new WebSocket(opts.url, opts.protocols) : new WebSocket(opts.url);
    } catch (e) {
      res.constructorError = String(e);
      finish();
      return;
    }
    ws.binaryType = 'arraybuffer';
    timer = setTimeout(() => {
      res.timedOut = true;
      res.readyState = ws.readyState;
      note('page-side timeout, readyState ' + ws.readyState);
      finish();
    }, opts.timeoutMs);
    const closeNow = () => {
      note('close(' + opts.closeCode + ', ' + JSON.stringify(opts.closeReason) + ')');
      ws.close(opts.closeCode, opts.closeReason);
    };
    ws.onopen = () => {
      res.opened = true;
      res.extensions = ws.extensions;
      res.protocol = ws.protocol;
      note('open, extensions ' + JSON.stringify(ws.extensions) + ', protocol ' +
        JSON.stringify(ws.protocol));
      if (outgoing.length === 0) closeNow();
      else ws.send(outgoing[0].payload);
    };
    ws.onmessage = (ev) => {
      const i = res.echoes.length;
      const want = outgoing[i];
      const d = ev.data;
      const kind = typeof d === 'string' ? 'text' : d instanceof ArrayBuffer ? 'binary' : typeof d;
      const got = kind === 'text' ? new TextEncoder().encode(d)
        : kind === 'binary' ? new Uint8Array(d) : new Uint8Array(0);
      let firstDiff = -1;
      if (want) {
        const n = Math.min(got.length, want.bytes.length);
        for (let k = 0; k < n; k++) if (got[k] !== want.bytes[k]) { firstDiff = k; break; }
        if (firstDiff < 0 && got.length !== want.bytes.length) firstDiff = n;
      }
      res.echoes.push({ kind, len: got.length, fnv: fnv1a(got), same: !!want && firstDiff < 0,
        firstDiff });
      note('message ' + i + ': ' + kind + ' ' + got.length + ' bytes');
      if (i === 0) for (let k = 1; k < outgoing.length; k++) ws.send(outgoing[k].payload);
      if (res.echoes.length === outgoing.length) closeNow();
    };
    ws.onerror = () => {
      res.errorEvents++;
      note('error event');
    };
    ws.onclose = (ev) => {
      res.close = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
      note('close event ' + JSON.stringify(res.close));
      finish();
    };
  });
}

const PAGE_TITLE = 'duplex browser test';
const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>${PAGE_TITLE}</title></head>
<body><p>duplex browser test page</p>
<script>
${makeBytes.toString()}
${makeText.toString()}
${fnv1a.toString()}
${buildMessage.toString()}
window.runScenario = ${runScenario.toString()};
</script></body></html>
`;

// ---------------------------------------------------------------------------
// This process's side.

// The page server: GET / is the page, anything else 404.
function startPageServer() {
  const srv = http.createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/' || req.url.startsWith('/?'))) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(PAGE_HTML);
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

// What the page sends in the data scenarios.
const MESSAGES = [
  { kind: 'text', gen: 'literal', value: 'hello from Chromium \u2713 \u00fc\u00f1\u00ef\u00e7\u00f8d\u00e9 \ud83d\ude80' },
  { kind: 'binary', gen: 'bytes', n: 100 * 1024, seed: 0x2545f491 },
  { kind: 'binary', gen: 'empty' },
  { kind: 'text', gen: 'text', n: 1024 * 1024 },
  { kind: 'text', gen: 'literal', value: 'last' },
];

function describeMessage(m, bytes) {
  const what = m.gen === 'bytes' ? `${bytes.length} pseudo-random bytes`
    : m.gen === 'text' ? `${bytes.length}-byte compressible text`
    : m.gen === 'empty' ? 'empty' : JSON.stringify(m.value);
  return `${m.kind} ${what}`;
}

// Expected echoes, computed here rather than in the page.
function expectedEchoes(messages) {
  return messages.map((m) => {
    const b = buildMessage(m).bytes;
    return { kind: m.kind, len: b.length, fnv: fnv1a(b), label: describeMessage(m, b) };
  });
}

function printPageLog(r) {
  for (const l of r.log) say(`    page: ${l}`);
}

function checkEchoes(r, messages, label) {
  const want = expectedEchoes(messages);
  step(`${label}: ${want.length} messages echo back identical and in order ` +
    `(${want.map((w) => w.label).join('; ')})`);
  expectEq(r.echoes.length, want.length, `${label}: number of echoes the page received`);
  want.forEach((w, i) => {
    const e = r.echoes[i];
    expectEq(e.kind, w.kind, `${label}: echo ${i} (${w.label}) type`);
    expectEq(e.len, w.len, `${label}: echo ${i} (${w.label}) length in bytes`);
    check(e.same, `${label}: echo ${i} (${w.label}): expected the bytes sent, got bytes that ` +
      `differ from offset ${e.firstDiff}`);
    expectEq(e.fnv, w.fnv, `${label}: echo ${i} (${w.label}) FNV-1a hash`);
  });
}

// Waits until the server's stderr, from offset `mark`, has a whole line
// matching re (the last piece, not yet ended by a newline, may be a line
// still being written: a pipe can deliver a line in parts).
async function waitServerLine(srv, mark, re, what, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const line = srv.stderr.slice(mark).split('\n').slice(0, -1).find((l) => re.test(l));
    if (line) return line;
    if (Date.now() > deadline) {
      throw new CheckFailed(`${what}: expected a server stderr line matching ${re}, got ` +
        `${JSON.stringify(srv.stderr.slice(mark))}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function evaluateScenario(page, opts, label) {
  say(`  ${label}: page opens ${opts.url}` +
    (opts.protocols ? ` offering ${JSON.stringify(opts.protocols)}` : ''));
  // The driver's own deadline (Runtime.evaluate) is a little later than
  // this one, which names the scenario.
  const r = await withTimeout(page.evaluate((o) => window.runScenario(o), opts,
    { timeoutMs: opts.timeoutMs + 15000 }), opts.timeoutMs + 10000,
  `${label}: page.evaluate(runScenario)`);
  printPageLog(r);
  check(r.constructorError === null,
    `${label}: new WebSocket(${opts.url}) threw: ${r.constructorError}`);
  check(!r.timedOut, `${label}: the page gave up after ${opts.timeoutMs / 1000} s ` +
    `(readyState ${r.readyState}, ${r.echoes.length} echoes, close ${JSON.stringify(r.close)})`);
  return r;
}

// One full data exchange against a running server: open, deflate, protocol,
// echoes, close 4001 seen by both sides.
async function dataScenario(page, srv, scheme, { protocols, wantProtocol, label }) {
  const wsPath = `/chromium-${scheme}`;
  const url = `${scheme}://127.0.0.1:${srv.port}${wsPath}`;
  const mark = srv.stderr.length;
  const r = await evaluateScenario(page, {
    url, protocols, messages: MESSAGES, closeCode: 4001, closeReason: 'bye', timeoutMs: 40000,
  }, label);

  step(`${label}: the browser opened the connection`);
  check(r.opened, `${label}: expected onopen, got none (error events ${r.errorEvents}, ` +
    `close ${JSON.stringify(r.close)})`);

  step(`${label}: ws.extensions names permessage-deflate`);
  check(/(^|,\s*)permessage-deflate(\s*;|\s*,|$)/.test(r.extensions),
    `${label}: ws.extensions: expected to contain "permessage-deflate", got ` +
    `${JSON.stringify(r.extensions)}`);

  step(`${label}: ws.protocol is ${JSON.stringify(wantProtocol)}`);
  expectEq(r.protocol, wantProtocol, `${label}: ws.protocol`);

  step(`${label}: the server logged the open with path, protocol and deflate=on`);
  const open = await waitServerLine(srv, mark, /^open: /, `${label}: server open line`);
  say(`    server: ${open}`);
  const om = /^open: path="(.*)" protocol="(.*)" deflate=(\w+) connections=(\d+)$/.exec(open);
  check(om, `${label}: server open line: expected 'open: path="..." protocol="..." ` +
    `deflate=on|off connections=N', got ${JSON.stringify(open)}`);
  expectEq(om[1], wsPath, `${label}: server open line path`);
  expectEq(om[2], wantProtocol, `${label}: server open line protocol`);
  expectEq(om[3], 'on', `${label}: server open line deflate`);
  check(Number(om[4]) >= 1, `${label}: server open line connections: expected >= 1, got ${om[4]}`);

  checkEchoes(r, MESSAGES, label);

  step(`${label}: the browser's onclose sees code 4001, wasClean true, no error event`);
  check(r.close, `${label}: expected an onclose event, got none`);
  expectEq(r.close.code, 4001, `${label}: browser onclose event.code`);
  expectEq(r.close.wasClean, true, `${label}: browser onclose event.wasClean`);
  expectEq(r.errorEvents, 0, `${label}: number of error events in the page`);
  say(`    browser onclose reason: ${JSON.stringify(r.close.reason)}`);

  step(`${label}: the server logged close code=4001 reason="bye" why=closed by peer`);
  const close = await waitServerLine(srv, mark, /^close: /, `${label}: server close line`);
  say(`    server: ${close}`);
  const cm = /^close: code=(\d+) reason="(.*)" why=(.*)$/.exec(close);
  check(cm, `${label}: server close line: expected 'close: code=C reason="R" why=W', got ` +
    `${JSON.stringify(close)}`);
  expectEq(Number(cm[1]), 4001, `${label}: server close line code`);
  expectEq(cm[2], 'bye', `${label}: server close line reason`);
  expectEq(cm[3], 'closed by peer', `${label}: server close line why`);
  step(`${label}: the server stays up`);
  check(srv.alive(), `${label}: duplex serve exited (status ${srv.proc.exitCode}, signal ` +
    `${srv.proc.signalCode})`);
}

// A raw upgrade request with the given Origin; resolves with the status,
// headers and body (for 101, the socket is destroyed at once).
function rawUpgrade(port, origin) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: '/raw', method: 'GET',
      headers: {
        Host: `127.0.0.1:${port}`,
        Upgrade: 'websocket',
        Connection: 'Upgrade',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
        'Sec-WebSocket-Version': '13',
        Origin: origin,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: '' });
    });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', (e) => reject(new CheckFailed(`raw upgrade to port ${port} with Origin ` +
      `${origin}: ${e.message}`)));
    req.end();
  }), 10000, `raw upgrade request with Origin ${origin}`);
}

async function originScenario(browser, page, pagePort, duplex) {
  const srv = await startServer(duplex, ['--origin', `http://${ALLOWED_HOST}`]);
  const pageOrigin = `http://127.0.0.1:${pagePort}`;
  const label = 'origin refused';

  const consoleMark = consoleLines.length;
  let mark = srv.stderr.length;
  const r = await evaluateScenario(page, {
    url: srv.url('/refused'), protocols: null, messages: [], closeCode: 1000, closeReason: '',
    timeoutMs: 20000,
  }, label);
  step(`${label}: the page (Origin ${pageOrigin}) never opens; onerror fires and onclose ` +
    'sees 1006, wasClean false');
  check(!r.opened, `${label}: expected no onopen from a refused Origin, got one (the server ` +
    `accepted Origin ${pageOrigin})`);
  check(r.errorEvents >= 1, `${label}: expected >= 1 error event, got ${r.errorEvents}`);
  check(r.close, `${label}: expected an onclose event, got none`);
  expectEq(r.close.code, 1006, `${label}: browser onclose event.code`);
  expectEq(r.close.wasClean, false, `${label}: browser onclose event.wasClean`);

  step(`${label}: Chromium's console blames HTTP status 403`);
  // Chromium's own report (a Log entry, source network) comes before the
  // page's result in practice, but CDP promises no order across domains:
  // wait for it a little.
  for (let waited = 0; waited < 3000 &&
    !consoleLines.slice(consoleMark).some((m) => /\b403\b/.test(m)); waited += 50) {
    await new Promise((res) => setTimeout(res, 50));
  }
  const msgs = consoleLines.slice(consoleMark);
  for (const m of msgs) say(`    console: ${m}`);
  check(msgs.some((m) => /\b403\b/.test(m)), `${label}: expected a console message with the ` +
    `handshake's status 403, got ${JSON.stringify(msgs)}`);

  step(`${label}: the server logged no open (nothing, or only a 403)`);
  await new Promise((res) => setTimeout(res, 300));
  const logged = srv.stderr.slice(mark).split('\n').filter((l) => l.trim());
  for (const l of logged) say(`    server: ${l}`);
  check(!logged.some((l) => /^open: /.test(l)), `${label}: expected no 'open:' line, got ` +
    `${JSON.stringify(logged)}`);
  check(logged.every((l) => /403|origin/i.test(l)), `${label}: expected nothing or a 403 in ` +
    `the server log, got ${JSON.stringify(logged)}`);

  step(`${label}: a raw upgrade request with Origin ${pageOrigin} gets 403 and a one-line body`);
  const bad = await rawUpgrade(srv.port, pageOrigin);
  say(`    HTTP ${bad.status}, body ${JSON.stringify(bad.body)}`);
  expectEq(bad.status, 403, `${label}: raw request status`);
  check(/^[^\r\n]+\r?\n?$/.test(bad.body), `${label}: raw request body: expected exactly one ` +
    `non-empty line, got ${JSON.stringify(bad.body)}`);
  check(!bad.headers['sec-websocket-accept'], `${label}: a 403 must not carry ` +
    `Sec-WebSocket-Accept, got ${bad.headers['sec-websocket-accept']}`);

  step(`origin allowed: a raw upgrade request with Origin http://${ALLOWED_HOST} gets 101`);
  const good = await rawUpgrade(srv.port, `http://${ALLOWED_HOST}`);
  expectEq(good.status, 101, 'origin allowed: raw request status');

  // The same page, loaded as http://allowed.example:PORT (mapped to
  // loopback), sends that Origin; a server allowing exactly it accepts the
  // browser. (An Origin's port is part of it, so --origin
  // http://allowed.example alone would rightly refuse this one.)
  const label2 = 'origin allowed';
  const allowed = `http://${ALLOWED_HOST}:${pagePort}`;
  const srv2 = await startServer(duplex, ['--origin', allowed]);
  const page2 = await browser.newPage();
  try {
    await withTimeout(page2.goto(`${allowed}/`, { timeoutMs: 25000 }), 20000,
      `loading the page as ${allowed}/`);
    expectEq(await page2.evaluate(() => location.origin), allowed, 'second page origin');
    mark = srv2.stderr.length;
    const ok = await evaluateScenario(page2, {
      url: srv2.url('/allowed'), protocols: null, messages: [MESSAGES[0], MESSAGES[1]],
      closeCode: 4999, closeReason: 'done', timeoutMs: 20000,
    }, label2);
    step(`${label2}: the page from ${allowed} opens, echoes, closes 4999`);
    check(ok.opened, `${label2}: expected onopen, got none (close ${JSON.stringify(ok.close)})`);
    checkEchoes(ok, [MESSAGES[0], MESSAGES[1]], label2);
    check(ok.close, `${label2}: expected an onclose event, got none`);
    expectEq(ok.close.code, 4999, `${label2}: browser onclose event.code`);
    expectEq(ok.close.wasClean, true, `${label2}: browser onclose event.wasClean`);
    const close = await waitServerLine(srv2, mark, /^close: /, `${label2}: server close line`);
    say(`    server: ${close}`);
    check(/^close: code=4999 reason="done" why=closed by peer$/.test(close),
      `${label2}: server close line: expected 'close: code=4999 reason="done" why=closed by ` +
      `peer', got ${JSON.stringify(close)}`);
  } finally {
    await page2.close().catch(() => {});
  }
}

const consoleLines = [];

async function main(args) {
  // An inner deadline, before runMain's watchdog, so a hang still ends with
  // Chromium closed properly (a killed Chromium's helpers keep writing into
  // the profile directory for a moment and it could be left behind).
  const innerMs = args.timeout * 1000 - Math.min(20000, args.timeout * 400);
  let innerTimer;
  const innerDog = new Promise((_, reject) => {
    innerTimer = setTimeout(() => reject(new CheckFailed(`suite deadline: still running after ` +
      `${innerMs / 1000} s (the watchdog is at ${args.timeout} s)`)), innerMs);
  });
  innerDog.catch(() => {}); // raced only once Chromium is up
  checkChromium(args);
  say(`node ${process.version}`);

  const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'duplex-browser-certs-'));
  // Whatever happens (watchdog included), leave no keys behind (cdp.js
  // does the same for Chromium and its profile).
  process.on('exit', () => {
    try { fs.rmSync(certDir, { recursive: true, force: true }); } catch (e) { /* best effort */ }
  });
  execFileSync('sh', [path.join(__dirname, '..', 'certs', 'make.sh'), certDir],
    { stdio: ['ignore', 'ignore', 'pipe'] });

  const pageServer = await startPageServer();
  const pagePort = pageServer.address().port;
  const pageUrl = `http://127.0.0.1:${pagePort}/`;
  say(`page server: ${pageUrl}`);

  const launchArgs = [...CHROMIUM_ARGS,
    `--host-resolver-rules=MAP ${ALLOWED_HOST} 127.0.0.1`];
  say(`launching ${args.chromium}: ${launchArgs.join(' ')}`);
  let browser;
  try {
    browser = await Browser.launch(args.chromium, { args: launchArgs, launchTimeoutMs: 60000 });
  } catch (e) {
    throw new CheckFailed(e.message);
  }
  say(`Chromium pid ${browser.pid}, profile ${browser.userDataDir}, driver flags ` +
    `${browser.argv.filter((a) => !launchArgs.includes(a)).join(' ')}`);
  // Once the deadline wins, closing Chromium fails what exercise() still
  // awaits: that late rejection is expected, not an unhandled one.
  const exercised = exercise(browser, args, pagePort, pageUrl, certDir);
  exercised.catch(() => {});
  try {
    await Promise.race([exercised, innerDog]);
  } catch (e) {
    // A driver failure (a CDP deadline, an error reply, Chromium gone) is
    // a failed check, reported by its message rather than a stack.
    if (e instanceof CdpError) throw new CheckFailed(e.message);
    throw e;
  } finally {
    clearTimeout(innerTimer);
    const how = await browser.close(15000);
    say(`Chromium ended (status ${how && how.code}, signal ${how && how.signal})`);
    pageServer.close();
  }
}

async function exercise(browser, args, pagePort, pageUrl, certDir) {
  say(`browser: ${browser.version.product} (protocol ${browser.version.protocolVersion})`);
  browser.on('page', (p) => {
    p.on('console', (line) => consoleLines.push(line));
    p.on('pageerror', (msg) => consoleLines.push(`[pageerror] ${msg}`));
  });
  const page = await browser.newPage();

  step(`the page loads from ${pageUrl}`);
  await withTimeout(page.goto(pageUrl, { timeoutMs: 25000 }), 20000, `loading ${pageUrl}`);
  expectEq(await page.title(), PAGE_TITLE, 'page title');
  expectEq(await page.evaluate(() => typeof window.runScenario), 'function',
    'typeof window.runScenario in the page');
  expectEq(await page.evaluate(() => location.origin), `http://127.0.0.1:${pagePort}`,
    'page origin');

  // ws:// with --protocol chat
  const plain = await startServer(args.duplex, ['--protocol', 'chat']);
  await dataScenario(page, plain, 'ws', { protocols: ['chat'], wantProtocol: 'chat',
    label: 'ws:// chat' });
  // Offering no subprotocol: none is chosen, deflate still on.
  await dataScenario(page, plain, 'ws', { protocols: null, wantProtocol: '',
    label: 'ws:// no subprotocol' });

  // wss:// with the test certificate (--ignore-certificate-errors)
  const tls = await startServer(args.duplex, ['--protocol', 'chat',
    '--tls-cert', path.join(certDir, 'server.pem'), '--tls-key', path.join(certDir, 'server.key')]);
  await dataScenario(page, tls, 'wss', { protocols: ['chat'], wantProtocol: 'chat',
    label: 'wss:// chat' });

  await originScenario(browser, page, pagePort, args.duplex);

  step('no uncaught errors in the page');
  const pageErrors = consoleLines.filter((l) => l.startsWith('[pageerror]'));
  expectEq(pageErrors.length, 0, `page errors ${JSON.stringify(pageErrors)}; count`);
}

runMain(main, parseArgs(process.argv, 'node test_chromium.js --duplex PATH [--chromium PATH] ' +
  '[--timeout S]', { duplex: null, chromium: '/usr/bin/chromium', timeout: 150 }, COMMON_FLAGS));
