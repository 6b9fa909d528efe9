'use strict';
// The Socket.IO page (web/socketio/) in a real browser: Debian's Chromium,
// driven headless by cdp.js, against a real `duplex serve --socketio
// --static web`, the page loading the official client from npm
// (web/socketio/node_modules, installed by `npm ci` there).
//
// Page A comes from 127.0.0.1 and page B from [::1] (localhost is both on
// Debian; the server listens on every address by default), and
//   - a nick the server refuses (a tab in it) shows connect_error "invalid
//     nick" with its reason, and the page does not retry
//   - each page connects over polling and upgrades: the transport shown
//     goes polling -> websocket, with an "upgraded to websocket" line
//   - both join room "lobby" (the rooms list shows it, the other page hears
//     "joined"), messages typed in one show in the other with the sender's
//     nick, both ways, and the sender's copy turns "delivered" (the ack);
//     markup in a message is shown as text; a rename is announced
//   - Disconnect shows "io client disconnect" (no reconnect) and the other
//     page hears "left ... (client namespace disconnect)"; Connect again
//     joins the rooms again
//   - Quit (the server disconnects the socket) shows "io server disconnect"
//     (no reconnect), the other page hears "left ... (quit)"
//   - SIGTERM (a drain): both show "transport close" and reconnect
//     attempts with connect_error lines; the server restarted on the same
//     port, both reconnect by themselves, in their rooms, and talk again
//   - served from a copy of web/ without node_modules, the page says the
//     client is missing and how to get it, and so does the server
//   - no uncaught error in the pages; screenshots into --out.
//
// Usage: node test_socketio.js --duplex PATH [--chromium PATH] [--out DIR]
//          [--web DIR] [--timeout S]
// Needs Node (18 or later), Debian's chromium and `npm ci` in web/socketio.

const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const {
  CheckFailed, say, step, check, expectEq, runMain,
} = require('../interop/interop_common.js');
const {
  sleep, waitUntil, startServe, stopNode, checkChromium, withBrowser,
  PAGE_FLAGS, PAGE_DEFAULTS, parseArgs, emulate, typeAndEnter: typeInto, screenshot,
} = require('./browser_common.js');

const ROOM = 'lobby';
const BUNDLE = 'socketio/node_modules/socket.io-client/dist/socket.io.min.js';
// Reconnection comes within the client's backoff cap (5 s) of the return.
const RECONNECT_MS = 30000;

// `duplex serve --socketio --static web` on every address (the default
// host), port 0 or the one given.
function startNode(args, label, port, web = args.web) {
  return startServe(args.duplex, label,
    ['serve', '--socketio', '--port', String(port), '--static', web, '--drain-timeout', '2']);
}

// Whether this machine has an IPv6 loopback to load page B from.
function hasIpv6Loopback() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

// ---------------------------------------------------------------------------
// The pages.

async function openPage(browser, label, url, { phone = false, dark = false } = {}) {
  const page = await browser.newPage();
  page.label = label;
  await emulate(page, { phone, dark, width: 1100 });
  step(`${label}: the page loads from ${url}`);
  await page.goto(url, { timeoutMs: 25000 });
  expectEq(await page.title(), 'duplex Socket.IO chat', `${label}: page title`);
  return page;
}

// What the page shows and window.sioState, in one round trip.
function snapshot(page) {
  return page.evaluate(() => {
    const q = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);
    const all = (id, root = document) => [...root.querySelectorAll(`[data-testid="${id}"]`)];
    const s = window.sioState;
    return {
      state: s.state, transport: s.transport, transports: s.transports, id: s.id, nick: s.nick,
      reasons: s.reasons, connectErrors: s.connectErrors, connects: s.connects,
      clientMissing: s.clientMissing,
      badge: q('state').textContent,
      transportShown: q('transport').textContent,
      missingShown: !q('missing-client').hidden,
      rooms: all('room-name').map((e) => e.textContent),
      events: all('event-text').map((e) => e.textContent),
      notices: all('notice').map((e) => e.textContent),
      messages: all('message').map((li) => ({
        room: q('message-room', li).textContent,
        nick: q('message-nick', li).textContent,
        text: q('message-text', li).textContent,
        ack: q('message-ack', li) ? q('message-ack', li).textContent : null,
      })),
      elementsInLog: q('messages').querySelectorAll('img, script, b, i, iframe').length,
      pwned: window.__pwned === undefined ? null : window.__pwned,
      connectDisabled: q('connect').disabled,
    };
  });
}

function brief(s) {
  return `state ${s.state} (badge ${s.badge}), transport ${s.transportShown}, transports ` +
    `${JSON.stringify(s.transports)}, rooms ${JSON.stringify(s.rooms)}, last events ` +
    `${JSON.stringify(s.events.slice(-4))}, last notices ${JSON.stringify(s.notices.slice(-2))}`;
}

async function waitPage(page, what, pred, ms = 10000) {
  let last = null;
  return waitUntil(`${page.label}: ${what}`, async () => {
    last = await snapshot(page);
    return pred(last) ? last : null;
  }, ms, async () => (last ? brief(last) : 'no snapshot'));
}

function click(page, testid) {
  return page.evaluate((id) => document.querySelector(`[data-testid="${id}"]`).click(), testid);
}

function fill(page, testid, value) {
  return page.evaluate((a) => {
    document.querySelector(`[data-testid="${a.id}"]`).value = a.value;
  }, { id: testid, value });
}

// Connects with nick and waits for the upgrade: the transport shown goes
// from polling to websocket.
async function connectAndUpgrade(page, nick) {
  step(`${page.label}: Connect as ${nick}: connected over polling, then upgraded to websocket`);
  const before = (await snapshot(page)).transports.length;
  await fill(page, 'nick-input', nick);
  await click(page, 'connect');
  const s = await waitPage(page, 'connected, on websocket',
    (x) => x.state === 'connected' && x.transport === 'websocket' &&
      x.transports.length >= before + 2, 15000);
  expectEq(JSON.stringify(s.transports.slice(before)), JSON.stringify(['polling', 'websocket']),
    `${page.label}: transports used by this connection, in order`);
  expectEq(s.badge, 'connected', `${page.label}: state shown`);
  expectEq(s.transportShown, 'websocket', `${page.label}: transport shown`);
  expectEq(s.nick, nick, `${page.label}: the nick the server welcomed`);
  check(s.events.some((e) => e === 'upgraded to websocket'),
    `${page.label}: no "upgraded to websocket" line in ${JSON.stringify(s.events)}`);
  page.nick = nick;
  return s;
}

async function joinRoom(page, room) {
  step(`${page.label}: joins #${room}; the rooms list shows it`);
  await fill(page, 'room-input', room);
  await click(page, 'join');
  return waitPage(page, `#${room} in the rooms list`, (x) => x.rooms.includes(`#${room}`));
}

// Types text into the message field and presses Enter.
function typeAndEnter(page, text) {
  return typeInto(page, 'message-input', text);
}

// from sends text to the room: its own copy turns "delivered" (the ack),
// and `to` shows it under from's nick.
async function exchange(from, to, text) {
  step(`${from.label} -> ${to.label}: ${JSON.stringify(text)}: acked "delivered", shown ` +
    `with the sender's nick`);
  await typeAndEnter(from, text);
  await waitPage(from, `own ${JSON.stringify(text)} acked "delivered"`,
    (s) => s.messages.some((m) => m.text === text && m.ack === 'delivered'));
  const got = await waitPage(to, `${JSON.stringify(text)} from ${from.nick}`,
    (s) => s.messages.some((m) => m.text === text && m.ack === null));
  const m = got.messages.find((x) => x.text === text);
  expectEq(m.nick, from.nick, `${to.label}: sender shown`);
  expectEq(m.room, `#${ROOM}`, `${to.label}: room shown`);
}

// Waits for a disconnect with `reason` in the page's log (a line naming it),
// the page's state and whether it says it reconnects.
async function expectDisconnect(page, reason, reconnecting) {
  step(`${page.label}: shows the disconnect reason "${reason}" and ` +
    `${reconnecting ? 'reconnects' : 'does not reconnect'}`);
  const line = `disconnect: ${reason}; ${reconnecting ? 'reconnecting' : 'not reconnecting'}`;
  const s = await waitPage(page, `the line "${line}"`, (x) => x.events.includes(line));
  expectEq(s.reasons[s.reasons.length - 1], reason, `${page.label}: last disconnect reason`);
  if (!reconnecting) {
    expectEq(s.badge, 'disconnected', `${page.label}: state shown`);
    expectEq(s.transportShown, 'no transport', `${page.label}: transport shown`);
    expectEq(s.rooms.length, 0, `${page.label}: rooms shown while disconnected`);
  }
  return s;
}

// ---------------------------------------------------------------------------
// The scenarios.

async function refusedNick(page) {
  step(`${page.label}: a nick with a tab in it is refused: connect_error "invalid nick" ` +
    'with its reason, not retried');
  await fill(page, 'nick-input', 'al\tice');
  await click(page, 'connect');
  const s = await waitPage(page, 'a connect_error line',
    (x) => x.connectErrors.length > 0 && !x.connectDisabled);
  expectEq(s.connectErrors[0], 'invalid nick', `${page.label}: connect_error message`);
  const line = s.events.find((e) => e.startsWith('connect_error: invalid nick'));
  check(line && /control characters/.test(line) && /not retrying/.test(line),
    `${page.label}: connect_error line with the reason and "not retrying", got ` +
    `${JSON.stringify(s.events)}`);
  expectEq(s.badge, 'disconnected', `${page.label}: state shown`);
}

async function markupIsText(from, to) {
  const raw = '<img src=x onerror="window.__pwned=1"><b>not bold</b>';
  step(`${to.label}: markup in a message shows as text (${raw})`);
  await typeAndEnter(from, raw);
  const s = await waitPage(to, 'the markup message', (x) => x.messages.some((m) => m.text === raw));
  await sleep(300); // an onerror handler would have run by now
  const after = await snapshot(to);
  expectEq(after.elementsInLog, 0, `${to.label}: elements made of a message's markup`);
  expectEq(after.pwned, null, `${to.label}: window.__pwned set by a message's markup`);
  return s;
}

async function disconnectReasons(args, a, b, node) {
  // The client's own disconnect.
  await click(a, 'disconnect');
  await expectDisconnect(a, 'io client disconnect', false);
  await waitPage(b, 'notice that alice left (client namespace disconnect)',
    (x) => x.notices.includes(`alice left #${ROOM} (client namespace disconnect)`));
  await screenshot(a, args.out, 'socketio-client-disconnect.png');

  step('page A: Connect again: it joins its room again by itself');
  await connectAndUpgrade(a, 'alice');
  await waitPage(a, `#${ROOM} joined again`, (x) => x.rooms.includes(`#${ROOM}`));
  await exchange(a, b, 'alice is back');

  // The server's disconnect of this socket.
  await click(a, 'quit');
  await expectDisconnect(a, 'io server disconnect', false);
  await waitPage(b, 'notice that alice left (quit)',
    (x) => x.notices.includes(`alice left #${ROOM} (quit)`));
  await connectAndUpgrade(a, 'alice');
  await waitPage(a, `#${ROOM} joined again`, (x) => x.rooms.includes(`#${ROOM}`));

  // The server goes away (a drain), then comes back.
  step('SIGTERM: the server drains and exits 0');
  await stopNode(node);
  for (const p of [a, b]) {
    await expectDisconnect(p, 'transport close', true);
    const s = await waitPage(p, 'reconnect attempts failing (connect_error lines)',
      (x) => x.events.some((e) => /^reconnect attempt \d+$/.test(e)) &&
        x.events.some((e) => /^connect_error: /.test(e)));
    say(`    ${p.label}: ${JSON.stringify(s.events.slice(-3))}`);
    expectEq(s.badge, 'connecting', `${p.label}: state shown while the server is away`);
  }
  await screenshot(b, args.out, 'socketio-reconnecting.png');
  step(`the server restarts on the same port ${node.port}`);
  const again = await startNode(args, 'server (restarted)', node.port);
  for (const p of [a, b]) {
    step(`${p.label}: reconnects by itself, back in #${ROOM}`);
    await waitPage(p, `connected and in #${ROOM} again`,
      (x) => x.state === 'connected' && x.rooms.includes(`#${ROOM}`), RECONNECT_MS);
  }
  await exchange(a, b, 'alice after the restart');
  await exchange(b, a, 'robert after the restart');
  return again;
}

async function missingClient(browser, args) {
  step('served from a copy of web/ without node_modules: the page and the server say the ' +
    'client is missing and how to get it');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'duplex-web-'));
  try {
    fs.mkdirSync(path.join(dir, 'socketio'));
    for (const f of ['base.css', 'socketio/index.html', 'socketio/socketio.js',
      'socketio/socketio.css']) {
      fs.copyFileSync(path.join(args.web, f), path.join(dir, f));
    }
    const node = await startNode(args, 'server (no client bundle)', 0, dir);
    check(/npm ci/.test(node.stderr) && node.stderr.includes('socket.io.min.js'),
      `the server's note about the missing client: got ${JSON.stringify(node.stderr)}`);
    const p = await openPage(browser, 'page C (no bundle)',
      `http://127.0.0.1:${node.port}/socketio/`);
    const s = await snapshot(p);
    expectEq(s.missingShown, true, 'page C: the missing-client banner shown');
    expectEq(s.clientMissing, true, 'page C: sioState.clientMissing');
    expectEq(s.connectDisabled, true, 'page C: Connect disabled');
    const text = await p.evaluate(() =>
      document.querySelector('[data-testid="missing-client"]').textContent);
    check(/npm ci/.test(text) && /scripts\/serve --socketio/.test(text),
      `page C: the banner says how to get the client, got ${JSON.stringify(text)}`);
    await screenshot(p, args.out, 'socketio-missing-client.png');
    await p.close();
    await stopNode(node);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function scenario(browser, args) {
  let node = await startNode(args, 'server', 0);
  const v6 = await hasIpv6Loopback();
  const urlA = `http://127.0.0.1:${node.port}/socketio/`;
  const urlB = v6 ? `http://[::1]:${node.port}/socketio/` : `http://localhost:${node.port}/socketio/`;
  if (!v6) say('note: no IPv6 loopback here; page B comes from localhost instead of [::1]');
  const a = await openPage(browser, 'page A', urlA);
  const b = await openPage(browser, `page B (${v6 ? '[::1]' : 'localhost'}, phone, dark)`, urlB,
    { phone: true, dark: true });

  await refusedNick(a);
  await connectAndUpgrade(a, 'alice');
  await connectAndUpgrade(b, 'bob');
  await joinRoom(a, ROOM);
  await joinRoom(b, ROOM);
  await waitPage(a, 'notice that bob joined', (x) => x.notices.includes(`bob joined #${ROOM}`));
  await exchange(a, b, 'hello bob \u2713');
  await exchange(b, a, 'hi alice: gr\u00fc\u00dfe \u00a1hola!');
  await markupIsText(b, a);

  step('page B renames itself robert: page A hears it');
  await fill(b, 'nick-input', 'robert');
  await click(b, 'rename');
  await waitPage(a, 'notice "bob is now robert"', (x) => x.notices.includes('bob is now robert'));
  b.nick = 'robert';
  await exchange(b, a, 'robert now');
  await screenshot(a, args.out, 'socketio-desktop.png');
  await screenshot(b, args.out, 'socketio-phone-dark.png');

  node = await disconnectReasons(args, a, b, node);
  await screenshot(a, args.out, 'socketio-reasons.png');
  await stopNode(node);
  await missingClient(browser, args);
}

async function main(args) {
  checkChromium(args);
  step(`the official client is installed below ${args.web} (npm ci in web/socketio)`);
  const bundle = path.join(args.web, BUNDLE);
  if (!fs.existsSync(bundle)) {
    throw new CheckFailed(`${bundle} is missing: run \`npm ci\` in ${path.join(args.web,
      'socketio')} (scripts/deps.sh test and the browser/socketio_npm_ci test do)`);
  }
  say(`node ${process.version}; web/ at ${args.web}; screenshots into ${path.resolve(args.out)}`);
  fs.mkdirSync(args.out, { recursive: true });
  await withBrowser(args, (browser) => scenario(browser, args));
}

runMain(main, parseArgs(process.argv, 'node test_socketio.js --duplex PATH [--chromium PATH] ' +
  '[--out DIR] [--web DIR] [--timeout S]', PAGE_DEFAULTS(), PAGE_FLAGS));
