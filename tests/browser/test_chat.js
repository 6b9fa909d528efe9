'use strict';
// The chat page (web/) in a real browser: Debian's Chromium, driven
// headless by cdp.js, against real `duplex serve --rooms` processes.
//
// One node (browser/chat, the default): this script serves web/ itself on
// one port and the page is told the WebSocket server with
// ?ws=ws://127.0.0.1:PORT. Two pages (a light desktop one, a dark phone
// one) join room "lobby" under different names and
//   - the page asks for nothing but its own files (web/ only)
//   - each page's badge reads OPEN; a message typed in one (Enter sends)
//     shows in the other with its sender's name and time, both ways
//   - markup from a peer (a raw non-JSON message, a JSON one with tags in
//     its name and text) is shown as text: no element made of it, no script
//     run
//   - SIGKILL of the server: both pages show CLOSED, close code 1006 and a
//     "reconnecting in N s (attempt k)" line; once the server is back on the
//     same port both get back to OPEN by themselves and talk again
//   - Leave on one page: CLOSED with 1000 "user left", and no reconnect
//     over several backoff periods (no new socket in the page, no new
//     connection at the server, the other page's messages no longer arrive)
//   - no uncaught error in either page; screenshots into --out.
//
// Two nodes (browser/chat_two_nodes, --two-nodes): a real redis-server and
// two `duplex serve --rooms --static web --redis redis://...` nodes; page A
// comes from node 1 and page B from node 2 (each node's own --static, no
// ?ws), they talk both ways across the nodes; SIGKILL of node 1: page A
// shows the drop while B stays OPEN, node 1 comes back and A reconnects and
// talks again. Needs a duplex whose `serve --help` lists --static and
// --redis: otherwise it fails saying so.
//
// Usage: node test_chat.js --duplex PATH [--chromium PATH] [--out DIR]
//          [--web DIR] [--timeout S] [--two-nodes [--redis-server PATH]]
// Needs only Node (18 or later) and Debian's chromium (and redis-server
// for --two-nodes); no npm package.

const fs = require('fs');
const http = require('http');
const path = require('path');
const { execFileSync } = require('child_process');

const {
  CheckFailed, say, step, check, expectEq, runMain, withTimeout, startRedis,
} = require('../interop/interop_common.js');
const {
  sleep, waitUntil, startServe, killNode, stopNode, checkChromium, withBrowser,
  PAGE_FLAGS, PAGE_DEFAULTS, parseArgs, emulate, typeAndEnter: typeInto, screenshot,
} = require('./browser_common.js');

const ROOM = 'lobby';
// Long enough for full jitter over a few doublings (0.5 + 1 + 2 s caps).
const LEAVE_WATCH_MS = 4000;
// A reconnect comes within the backoff cap (10 s) of the server's return.
const RECONNECT_MS = 30000;

function parseChatArgs(argv) {
  return parseArgs(argv, 'node test_chat.js --duplex PATH [--chromium PATH] [--out DIR] ' +
    '[--web DIR] [--timeout S] [--two-nodes [--redis-server PATH]]',
  { ...PAGE_DEFAULTS(), twoNodes: false, redisServer: 'redis-server' },
  { ...PAGE_FLAGS, '--two-nodes': ['twoNodes', true], '--redis-server': 'redisServer' });
}

// ---------------------------------------------------------------------------
// Processes: duplex serve nodes, redis-server.

// `duplex serve --rooms` on 127.0.0.1:port (0: a free one) plus extra
// options; resolves once it says where it listens.
function startNode(duplex, label, port, extra = []) {
  return startServe(duplex, label,
    ['serve', '--rooms', '--host', '127.0.0.1', '--port', String(port), ...extra]);
}

// ---------------------------------------------------------------------------
// The web/ directory over HTTP, for the one-node test (until --static).

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
};

function startWebServer(webDir) {
  const files = new Map([['/', 'index.html']]);
  for (const f of fs.readdirSync(webDir)) if (TYPES[path.extname(f)]) files.set(`/${f}`, f);
  const misses = []; // what was asked for and is not there
  const srv = http.createServer((req, res) => {
    const file = files.get(new URL(req.url, 'http://x').pathname);
    if (req.method !== 'GET' || !file) {
      misses.push(`${req.method} ${req.url}`);
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)], 'Cache-Control': 'no-store' });
    res.end(fs.readFileSync(path.join(webDir, file)));
  });
  srv.misses = misses;
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

// ---------------------------------------------------------------------------
// The pages.

// A tab sized like a desktop window or (phone) a phone, light or dark,
// that records every URL it asks for.
async function openPage(browser, label, { phone = false, dark = false } = {}) {
  const page = await browser.newPage();
  page.label = label;
  page.requests = [];
  page.waitFor('Network.requestWillBeSent', (p) => {
    page.requests.push(p.request.url);
    return false;
  });
  await page.send('Network.enable');
  await emulate(page, { phone, dark });
  return page;
}

async function load(page, url) {
  step(`${page.label}: the chat page loads from ${url}`);
  await withTimeout(page.goto(url, { timeoutMs: 25000 }), 20000, `${page.label}: loading ${url}`);
  expectEq(await page.title(), 'duplex chat', `${page.label}: page title`);
  const origin = new URL(url).origin;
  const foreign = page.requests.filter((u) => !u.startsWith(origin + '/') && !u.startsWith('data:'));
  step(`${page.label}: it fetched nothing but its own files (${page.requests.length} requests)`);
  check(foreign.length === 0, `${page.label}: requests outside ${origin}: ` +
    `${JSON.stringify(foreign)}`);
  const s = await snapshot(page);
  step(`${page.label}: before joining the badge reads CLOSED and nothing can be sent`);
  expectEq(s.badge, 'CLOSED', `${page.label}: badge before joining`);
  expectEq(s.sendDisabled, true, `${page.label}: Send disabled before joining`);
}

// What the page shows and window.chatState, in one round trip.
function snapshot(page) {
  return page.evaluate(() => {
    const q = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);
    const shownText = (id) => (q(id).hidden ? null : q(id).textContent.trim());
    const s = window.chatState;
    const log = q('messages');
    return {
      state: s.state, lastClose: s.lastClose, attempts: s.attempts,
      reconnecting: s.reconnecting, connects: s.connects, left: s.left, url: s.url,
      badge: q('state').textContent,
      closeInfo: shownText('close-info'),
      reconnectInfo: q('reconnect-info').hidden ? null : q('reconnect-text').textContent,
      sendDisabled: q('send').disabled,
      messages: [...log.querySelectorAll('[data-testid="message"]')].map((li) => ({
        name: q('message-name', li).textContent,
        text: q('message-text', li).textContent,
        mine: li.classList.contains('mine'),
        time: li.querySelector('time').textContent,
        datetime: li.querySelector('time').dateTime,
      })),
      elementsInLog: log.querySelectorAll('img, script, b, i, iframe').length,
      pwned: window.__pwned === undefined ? null : window.__pwned,
    };
  });
}

function brief(s) {
  return `page state ${s.state}, badge ${s.badge}, lastClose ${JSON.stringify(s.lastClose)}, ` +
    `attempts ${s.attempts}, connects ${s.connects}, close line ${JSON.stringify(s.closeInfo)}, ` +
    `reconnect line ${JSON.stringify(s.reconnectInfo)}, last messages ` +
    `${JSON.stringify(s.messages.slice(-3).map((m) => `${m.name}: ${m.text}`))}`;
}

// Waits until pred(snapshot) holds; on the deadline fails with the page's
// last snapshot.
async function waitPage(page, what, pred, ms) {
  let last = null;
  return waitUntil(`${page.label}: ${what}`, async () => {
    last = await snapshot(page);
    return pred(last) ? last : null;
  }, ms, async () => (last ? brief(last) : 'no snapshot'));
}

async function join(page, name, room) {
  step(`${page.label}: joins "${room}" as ${name}; the badge goes to OPEN`);
  await page.evaluate((a) => {
    const q = (id) => document.querySelector(`[data-testid="${id}"]`);
    q('name-input').value = a.name;
    q('room-input').value = a.room;
    q('join').click();
  }, { name, room });
  page.name = name;
  const s = await waitPage(page, `badge OPEN on .../rooms/${room} after joining`,
    (x) => x.state === 'OPEN' && x.badge === 'OPEN' && x.url.endsWith(`/rooms/${room}`), 15000);
  say(`    ${page.label}: ${s.url}`);
  return s;
}

// Types text into the message field and presses Enter.
function typeAndEnter(page, text) {
  return typeInto(page, 'message-input', text);
}

// from types text and presses Enter: it shows as its own at once, and
// arrives at `to` under from's name with a time. With retries, a message
// that does not arrive within 3 s is sent again (a node may still be
// subscribing to the room on Redis right after the socket opened).
async function exchange(from, to, text, { retries = 0 } = {}) {
  step(`${from.label} -> ${to.label}: ${JSON.stringify(text)} (typed, Enter) shows on both, ` +
    `with name and time`);
  for (let attempt = 0; ; attempt++) {
    const sent = attempt ? `${text} (again ${attempt})` : text;
    const before = Date.now();
    await typeAndEnter(from, sent);
    const mine = await waitPage(from, `own message ${JSON.stringify(sent)} shown, field cleared`,
      (s) => s.messages.some((m) => m.mine && m.text === sent), 5000);
    const cleared = await from.evaluate(() =>
      document.querySelector('[data-testid="message-input"]').value);
    expectEq(cleared, '', `${from.label}: message field after Enter`);
    check(mine.messages.find((m) => m.text === sent).name === `${from.name} (you)`,
      `${from.label}: own message: expected the name "${from.name} (you)"`);
    let got;
    try {
      got = await waitPage(to, `message ${JSON.stringify(sent)} from ${from.name}`,
        (s) => s.messages.some((m) => !m.mine && m.text === sent), retries ? 3000 : 10000);
    } catch (e) {
      if (attempt < retries) {
        say(`    not delivered within 3 s; sending again`);
        continue;
      }
      throw e;
    }
    const m = got.messages.find((x) => x.text === sent);
    expectEq(m.name, from.name, `${to.label}: sender name shown`);
    check(/\d/.test(m.time), `${to.label}: a time shown with the message, got ${JSON.stringify(m.time)}`);
    const at = Date.parse(m.datetime);
    check(Math.abs(at - before) < 60000, `${to.label}: message time ${m.datetime}: expected ` +
      `within a minute of ${new Date(before).toISOString()}`);
    if (attempt) say(`    delivered on attempt ${attempt + 1}`);
    return;
  }
}

// After a SIGKILL: CLOSED, 1006 with its meaning, and a reconnect line.
async function expectDrop(page) {
  step(`${page.label}: shows the drop: badge CLOSED, close code 1006 with its meaning, ` +
    `"Reconnecting in N s (attempt k)"`);
  const s = await waitPage(page, 'CLOSED with 1006 and a reconnecting line',
    (x) => x.badge === 'CLOSED' && x.lastClose && x.lastClose.code === 1006 &&
      x.reconnectInfo && /reconnecting/i.test(x.reconnectInfo), 10000);
  say(`    ${page.label}: ${JSON.stringify(s.closeInfo)} / ${JSON.stringify(s.reconnectInfo)}`);
  check(/1006/.test(s.closeInfo) && /abnormal/i.test(s.closeInfo),
    `${page.label}: close line: expected the code 1006 and "abnormal", got ` +
    `${JSON.stringify(s.closeInfo)}`);
  check(/attempt \d+/.test(s.reconnectInfo), `${page.label}: reconnect line: expected ` +
    `"(attempt k)", got ${JSON.stringify(s.reconnectInfo)}`);
  expectEq(s.sendDisabled, true, `${page.label}: Send disabled while disconnected`);
  return s;
}

async function expectReconnect(page) {
  step(`${page.label}: reconnects by itself: badge OPEN, the reconnect line gone`);
  const t0 = Date.now();
  const s = await waitPage(page, 'OPEN again after the node came back',
    (x) => x.badge === 'OPEN' && x.reconnectInfo === null, RECONNECT_MS);
  say(`    ${page.label}: OPEN ${((Date.now() - t0) / 1000).toFixed(1)} s after the restart, ` +
    `${s.connects} sockets so far`);
  expectEq(s.attempts, 0, `${page.label}: attempts once OPEN again`);
}

// Markup from a peer: page `from` opens a raw socket to the room and sends
// a non-JSON text and a JSON message with tags in it; `to` shows both as
// text and makes no element of them.
async function markupIsText(from, to, wsUrl) {
  const raw = '<img src=x onerror="window.__pwned=1"><b>not bold</b>';
  const json = JSON.stringify({ name: '<i>eve</i>', text: '<script>window.__pwned=2</script>',
    ts: Date.now() });
  step(`${to.label}: markup from a peer shows as text (${raw}; a JSON name "<i>eve</i>")`);
  await from.evaluate((a) => new Promise((resolve, reject) => {
    const ws = new WebSocket(a.url);
    ws.onopen = () => {
      ws.send(a.raw);
      ws.send(a.json);
      ws.close(1000);
    };
    ws.onclose = () => resolve();
    ws.onerror = () => reject(new Error('raw socket failed'));
  }), { url: wsUrl, raw, json });
  const s = await waitPage(to, 'both markup messages shown',
    (x) => x.messages.some((m) => m.text === raw) &&
      x.messages.some((m) => m.name === '<i>eve</i>'), 10000);
  expectEq(s.messages.find((m) => m.name === '<i>eve</i>').text,
    '<script>window.__pwned=2</script>', `${to.label}: JSON text with tags, as shown`);
  await sleep(300); // an onerror handler would have run by now
  const after = await snapshot(to);
  expectEq(after.elementsInLog, 0, `${to.label}: elements made of peer markup in the log`);
  expectEq(after.pwned, null, `${to.label}: window.__pwned set by peer markup`);
}

// ---------------------------------------------------------------------------
// The scenarios.

async function oneNode(browser, args) {
  const web = await startWebServer(args.web);
  const webUrl = `http://127.0.0.1:${web.address().port}/`;
  say(`web/ served at ${webUrl}`);
  try {
    let node = await startNode(args.duplex, 'node', 0);
    const wsBase = `ws://127.0.0.1:${node.port}`;
    const pageUrl = `${webUrl}?ws=${encodeURIComponent(wsBase)}`;

    const a = await openPage(browser, 'page A');
    const b = await openPage(browser, 'page B (phone, dark)', { phone: true, dark: true });
    await load(a, pageUrl);
    await load(b, pageUrl);
    step('every file the pages asked for is in web/');
    expectEq(web.misses.length, 0, `requests for files not in web/ ${JSON.stringify(web.misses)}; count`);
    await join(a, 'alice', ROOM);
    await join(b, 'bob', ROOM);

    await exchange(a, b, 'hello from alice \u2713');
    await exchange(b, a, 'hi alice, bob here: gr\u00fc\u00dfe \u00a1hola!');
    await markupIsText(b, a, `${wsBase}/rooms/${ROOM}`);

    await killNode(node);
    await expectDrop(a);
    await expectDrop(b);
    await sleep(1500); // down for a while: the pages keep trying
    await screenshot(a, args.out, 'chat-reconnecting.png');
    const down = await snapshot(a);
    say(`    page A: attempt ${down.attempts} while the node is down`);

    step(`the node restarts on the same port ${node.port}`);
    node = await startNode(args.duplex, 'node (restarted)', node.port);
    await expectReconnect(a);
    await expectReconnect(b);
    await exchange(a, b, 'alice again, after the restart');
    await exchange(b, a, 'bob again, after the restart');

    // Switching rooms closes the old socket on purpose: it must not come
    // back as a "reconnect" to the old room.
    const before = await snapshot(b);
    const switched = await join(b, 'bob', 'annex');
    expectEq(switched.connects, before.connects + 1, 'page B: sockets after switching to annex');
    step('page B: in "annex" it does not get what is said in "lobby"');
    await typeAndEnter(a, 'lobby only');
    await waitPage(a, 'own message shown', (x) => x.messages.some((m) => m.text === 'lobby only'),
      5000);
    await sleep(1000);
    check(!(await snapshot(b)).messages.some((m) => m.text === 'lobby only'),
      'page B: got a lobby message while in annex');
    const back = await join(b, 'bob', ROOM);
    await sleep(2000);
    step('page B: two room switches, two sockets: the rooms it left were not reconnected');
    expectEq((await snapshot(b)).connects, back.connects, 'page B: sockets 2 s after switching back');
    expectEq(back.connects, before.connects + 2, 'page B: sockets after switching back to lobby');
    await exchange(a, b, 'welcome back to the lobby');

    step('page A: Leave closes with 1000 "user left"; badge CLOSED, "Not reconnecting"');
    await a.evaluate(() => document.querySelector('[data-testid="leave"]').click());
    const left = await waitPage(a, 'CLOSED with 1000 after Leave',
      (x) => x.badge === 'CLOSED' && x.lastClose && x.lastClose.code === 1000, 10000);
    expectEq(left.lastClose.reason, 'user left', 'page A: close reason after Leave');
    expectEq(left.left, true, 'page A: chatState.left');
    check(/1000/.test(left.closeInfo) && /user left/.test(left.closeInfo),
      `page A: close line: expected 1000 and "user left", got ${JSON.stringify(left.closeInfo)}`);
    check(/not reconnecting/i.test(left.reconnectInfo || ''),
      `page A: expected "Not reconnecting", got ${JSON.stringify(left.reconnectInfo)}`);

    step(`page A: no reconnect within ${LEAVE_WATCH_MS / 1000} s (several backoff periods)`);
    const opensBefore = node.opens();
    await typeAndEnter(b, 'anyone there?');
    await sleep(LEAVE_WATCH_MS);
    const later = await snapshot(a);
    expectEq(later.badge, 'CLOSED', 'page A: badge after waiting');
    expectEq(later.connects, left.connects, 'page A: sockets opened after Leave (chatState.connects)');
    expectEq(node.opens(), opensBefore, 'connections the node accepted after Leave');
    check(!later.messages.some((m) => m.text === 'anyone there?'),
      'page A: got a room message after leaving');
    const bNow = await snapshot(b);
    expectEq(bNow.badge, 'OPEN', 'page B: badge while page A is away');

    await screenshot(a, args.out, 'chat-left.png');
    await screenshot(b, args.out, 'chat-phone-dark.png');
    await stopNode(node);
  } finally {
    web.close();
  }
}

function supportsCluster(duplex) {
  const help = execFileSync(duplex, ['serve', '--help'], { encoding: 'utf8' });
  return /--static\b/.test(help) && /--redis\b/.test(help);
}

async function twoNodes(browser, args) {
  const redis = await startRedis(args.redisServer);
  const extra = ['--static', args.web, '--redis', redis.url];
  let n1 = await startNode(args.duplex, 'node 1', 0, extra);
  const n2 = await startNode(args.duplex, 'node 2', 0, extra);

  const a = await openPage(browser, 'page A (node 1)');
  const b = await openPage(browser, 'page B (node 2, phone, dark)', { phone: true, dark: true });
  await load(a, `http://127.0.0.1:${n1.port}/`);
  await load(b, `http://127.0.0.1:${n2.port}/`);
  await join(a, 'alice', ROOM);
  await join(b, 'bob', ROOM);
  await exchange(a, b, 'alice on node 1', { retries: 2 });
  await exchange(b, a, 'bob on node 2', { retries: 2 });

  await killNode(n1);
  await expectDrop(a);
  step('page B (on node 2) stays OPEN');
  expectEq((await snapshot(b)).badge, 'OPEN', 'page B: badge while node 1 is down');
  await sleep(1500);
  await screenshot(a, args.out, 'chat-two-nodes-drop.png');

  step(`node 1 restarts on the same port ${n1.port}`);
  n1 = await startNode(args.duplex, 'node 1 (restarted)', n1.port, extra);
  await expectReconnect(a);
  await exchange(a, b, 'alice back on node 1', { retries: 2 });
  await exchange(b, a, 'bob still on node 2', { retries: 2 });

  await screenshot(a, args.out, 'chat-two-nodes-a.png');
  await screenshot(b, args.out, 'chat-two-nodes-b.png');
  await stopNode(n1);
  await stopNode(n2);
  redis.proc.kill('SIGTERM');
}

async function main(args) {
  checkChromium(args);
  say(`node ${process.version}; web/ at ${args.web}; screenshots into ${path.resolve(args.out)}`);
  fs.mkdirSync(args.out, { recursive: true });
  const cluster = supportsCluster(args.duplex);
  if (args.twoNodes) {
    step(`${args.duplex} serve --help lists --static and --redis`);
    check(cluster, 'two-node test: needs --static and --redis (not in this build)');
  } else {
    say('note: the two-node test (Redis, --static) is browser/chat_two_nodes, registered ' +
      'when configured with -DDX_BROWSER_CHAT_TWO_NODES=ON' +
      (cluster ? '' : '; two-node test: needs --static and --redis (not in this build)'));
  }
  await withBrowser(args, (browser) => (args.twoNodes ? twoNodes : oneNode)(browser, args));
}

runMain(main, parseChatArgs(process.argv));
