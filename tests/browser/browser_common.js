'use strict';
// What the page suites (test_chat.js, test_socketio.js) share: polling a
// page until it shows something, `duplex serve` processes, and a headless
// Chromium run under a deadline with the pages' console kept.

const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');

const {
  CheckFailed, say, step, check, expectEq, withTimeout, track,
} = require('../interop/interop_common.js');
const { Browser, CdpError, HEADLESS_ARGS } = require('./cdp.js');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn (async) every 100 ms until it returns something truthy; on the
// deadline fails with what, and the last thing describe() says.
async function waitUntil(what, fn, ms, describe = async () => '') {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new CheckFailed(`${what}: not within ${ms / 1000} s; ${await describe()}`);
    }
    await sleep(100);
  }
}

// `duplex ARGV...` (a serve command line); resolves once it says where it
// listens, with node.port the port it bound and node.stderr all it wrote.
async function startServe(duplex, label, argv) {
  say(`starting ${label}: ${duplex} ${argv.join(' ')}`);
  const proc = track(spawn(duplex, argv, { stdio: ['ignore', 'ignore', 'pipe'] }));
  const node = { label, proc, port: null, stderr: '', argv };
  node.exited = new Promise((resolve) => proc.once('close', (code, signal) => {
    resolve({ code, signal });
  }));
  node.alive = () => proc.exitCode === null && proc.signalCode === null;
  // Connections the node accepted (one "open:" line each).
  node.opens = () => node.stderr.split('\nopen: ').length - 1 +
    (node.stderr.startsWith('open: ') ? 1 : 0);
  node.port = await withTimeout(new Promise((resolve, reject) => {
    proc.stderr.on('data', (d) => {
      node.stderr += d.toString();
      const m = /listening on \S+:(\d+)/.exec(node.stderr);
      if (m && node.port === null) resolve(Number(m[1]));
    });
    proc.once('exit', (code, sig) => reject(new CheckFailed(`${label} exited before ` +
      `listening (status ${code}, signal ${sig}); stderr: ${node.stderr.trim()}`)));
    proc.once('error', (e) => reject(new CheckFailed(`cannot start ${duplex}: ${e.message}`)));
  }), 10000, `${label} printing 'listening on HOST:PORT'`);
  say(`${label} listens on port ${node.port} (pid ${proc.pid})`);
  return node;
}

async function killNode(node) {
  say(`SIGKILL to ${node.label} (pid ${node.proc.pid})`);
  node.proc.kill('SIGKILL');
  const how = await withTimeout(node.exited, 10000, `${node.label} exiting after SIGKILL`);
  expectEq(how.signal, 'SIGKILL', `${node.label}: how it ended`);
}

// SIGTERM (a drain), then a check that it exited 0 with nothing from a
// sanitizer on its stderr.
async function stopNode(node) {
  if (!node.alive()) return;
  node.proc.kill('SIGTERM');
  const how = await withTimeout(node.exited, 15000, `${node.label} draining after SIGTERM`);
  expectEq(how.code, 0, `${node.label}: exit status after SIGTERM`);
  const bad = node.stderr.split('\n').find((l) =>
    /runtime error:|AddressSanitizer|LeakSanitizer|ThreadSanitizer/.test(l));
  check(!bad, `${node.label}: sanitizer report: ${bad}`);
}

// The flags every page suite takes: each names the key of args it sets
// from the next word, or [key, parse].
const COMMON_FLAGS = {
  '--duplex': 'duplex', '--chromium': 'chromium', '--timeout': ['timeout', Number],
};
// Those of the suites that serve web/: where it is, where screenshots go.
const PAGE_FLAGS = { ...COMMON_FLAGS, '--out': 'out', '--web': 'web' };
const PAGE_DEFAULTS = () => ({
  duplex: null, chromium: '/usr/bin/chromium', timeout: 150, out: process.cwd(),
  web: path.join(__dirname, '..', '..', 'web'),
});

// Parses a suite's command line: flags maps a flag to the key of args it
// sets from the next word, to [key, parse] (parse(word) is the value), or
// to [key, true] (a flag without a value). --duplex must be there; an
// unknown argument or a missing --duplex exits 64 with usage.
function parseArgs(argv, usage, defaults, flags) {
  const args = { ...defaults };
  for (let i = 2; i < argv.length; i++) {
    const f = flags[argv[i]];
    if (!f) {
      process.stderr.write(`unknown argument ${argv[i]}\n`);
      process.exit(64);
    }
    const [key, how] = Array.isArray(f) ? f : [f, String];
    args[key] = how === true ? true : how(argv[++i]);
  }
  if (!args.duplex) {
    process.stderr.write(`usage: ${usage}\n`);
    process.exit(64);
  }
  return args;
}

// Checks that args.chromium can run.
function checkChromium(args) {
  step(`Chromium is installed at ${args.chromium}`);
  try {
    fs.accessSync(args.chromium, fs.constants.X_OK);
  } catch (e) {
    throw new CheckFailed(`chromium not found or not executable at ${args.chromium} ` +
      `(${e.code}): install Debian's chromium (apt-get install -y chromium, or ` +
      'scripts/deps.sh); this suite never downloads a browser');
  }
}

// Sizes a tab like a desktop window or (phone) a phone, light or dark.
async function emulate(page, { phone = false, dark = false, width = 960 } = {}) {
  await page.send('Emulation.setDeviceMetricsOverride', phone
    ? { width: 390, height: 760, deviceScaleFactor: 2, mobile: true }
    : { width, height: 700, deviceScaleFactor: 1, mobile: false });
  await page.send('Emulation.setEmulatedMedia', {
    features: [{ name: 'prefers-color-scheme', value: dark ? 'dark' : 'light' }],
  });
}

// Types text into the field `testid` of a page in front and presses
// Enter, as a person would.
async function typeAndEnter(page, testid, text) {
  await page.send('Page.bringToFront');
  await page.evaluate((id) => document.querySelector(`[data-testid="${id}"]`).focus(), testid);
  await page.send('Input.insertText', { text });
  await page.send('Input.dispatchKeyEvent', { type: 'keyDown', key: 'Enter', code: 'Enter',
    windowsVirtualKeyCode: 13, nativeVirtualKeyCode: 13, text: '\r' });
  await page.send('Input.dispatchKeyEvent', { type: 'keyUp', key: 'Enter', code: 'Enter',
    windowsVirtualKeyCode: 13, nativeVirtualKeyCode: 13 });
}

// A PNG of the page into out/name, the page brought to front first:
// Chromium may not paint a tab in the background, and a screenshot of it
// then never comes.
async function screenshot(page, out, name) {
  await page.send('Page.bringToFront');
  const file = await page.screenshot(path.join(out, name));
  say(`screenshot: ${path.resolve(file)}`);
}

// Launches headless Chromium and runs scenario(browser), under a deadline
// before runMain's watchdog (args.timeout), so that a hang still ends with
// Chromium closed and its profile removed; then checks that no page threw
// an uncaught error. On a failure the pages' last console lines are shown.
async function withBrowser(args, scenario) {
  const consoleLines = [];
  const innerMs = args.timeout * 1000 - Math.min(20000, args.timeout * 400);
  let innerTimer;
  const deadline = new Promise((_, reject) => {
    innerTimer = setTimeout(() => reject(new CheckFailed(`suite deadline: still running ` +
      `after ${innerMs / 1000} s`)), innerMs);
  });
  deadline.catch(() => {}); // raced only once Chromium is up
  let browser;
  try {
    browser = await Browser.launch(args.chromium, { args: HEADLESS_ARGS });
  } catch (e) {
    clearTimeout(innerTimer);
    throw new CheckFailed(e.message);
  }
  say(`browser: ${browser.version.product}, pid ${browser.pid}`);
  browser.on('page', (p) => {
    p.on('console', (line) => consoleLines.push(`${p.label || 'page'}: ${line}`));
    p.on('pageerror', (msg) => consoleLines.push(`[pageerror] ${p.label || 'page'}: ${msg}`));
  });
  const run = scenario(browser);
  run.catch(() => {});
  try {
    await Promise.race([run, deadline]);
    step('no uncaught error in the pages');
    const errors = consoleLines.filter((l) => l.startsWith('[pageerror]'));
    expectEq(errors.length, 0, `page errors ${JSON.stringify(errors)}; count`);
  } catch (e) {
    for (const l of consoleLines.slice(-20)) say(`  console: ${l}`);
    if (e instanceof CdpError) throw new CheckFailed(e.message);
    throw e;
  } finally {
    clearTimeout(innerTimer);
    await browser.close(15000);
  }
}

module.exports = {
  sleep, waitUntil, startServe, killNode, stopNode, checkChromium, withBrowser,
  COMMON_FLAGS, PAGE_FLAGS, PAGE_DEFAULTS, parseArgs, emulate, typeAndEnter, screenshot,
};
