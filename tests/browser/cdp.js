'use strict';
// A small Chrome DevTools Protocol driver for the browser suite: just what
// test_chromium.js and test_chat.js need, with nothing but Node's own
// modules (runs on Node 18 and 20).
//
// Chromium is started with --remote-debugging-pipe: it reads commands from
// its fd 3 and writes replies and events to its fd 4, each message one JSON
// text followed by a NUL byte. One browser-level connection carries
// everything; each page is a target attached with flatten: true, so its
// commands and events are the same messages with a sessionId.
//
//   const browser = await Browser.launch('/usr/bin/chromium', { args });
//   browser.on('page', (page) => page.on('console', (line) => ...));
//   const page = await browser.newPage();
//   await page.goto(url);                 // Page.navigate, then its load event
//   await page.evaluate((x) => x + 1, 41); // Runtime.evaluate, by value
//   await page.screenshot('out/page.png'); // Page.captureScreenshot, PNG
//   await page.close();
//   await browser.close();                // Browser.close, else SIGKILL
//
// Every command has a deadline and fails naming its method; if Chromium
// exits, whatever is pending fails with its exit status and the last lines
// of its stderr. Page events:
//   'console'   a string "[type] text": Runtime.consoleAPICalled (console.*)
//               and Log.entryAdded ("[level/source] text": what Chromium
//               itself reports, such as a failed WebSocket handshake)
//   'pageerror' an uncaught exception's message (Runtime.exceptionThrown)

const fs = require('fs');
const os = require('os');
const path = require('path');
const { EventEmitter } = require('events');
const { spawn } = require('child_process');

class CdpError extends Error {}

const DEFAULT_COMMAND_MS = 30000;
const STDERR_LINES = 12;
// Chromium's stderr lines that say nothing about why it failed (no D-Bus in
// a container or chroot): left out of the tail an error quotes.
const STDERR_NOISE = /dbus\/(bus|object_proxy)\.cc|cpufreq\/scaling_/;

// Flags the driver itself needs (the caller's, --headless among them, come
// after): the pipe, no window, and no throttling of a page that Chromium
// deems in the background (Playwright passed these too).
const DRIVER_ARGS = [
  '--remote-debugging-pipe',
  '--no-startup-window',
  '--disable-background-timer-throttling',
  '--disable-backgrounding-occluded-windows',
  '--disable-renderer-backgrounding',
];

// The flags both suites launch Chromium with (after the driver's own):
// headless, as root, and quiet on a closed network.
const HEADLESS_ARGS = [
  '--headless',
  '--no-sandbox', // required as root
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  // Without these Chromium phones home, and this machine's closed network
  // refuses those connections in ways that disturb the test.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function secs(ms) {
  return `${ms / 1000} s`;
}

class Browser extends EventEmitter {
  // Starts Chromium on a fresh profile directory (removed by close(), or at
  // process exit whatever happens) and waits until it answers
  // Browser.getVersion. options: args (extra flags), launchTimeoutMs,
  // commandTimeoutMs (the default deadline of each command).
  static async launch(executable, { args = [], launchTimeoutMs = 60000,
    commandTimeoutMs = DEFAULT_COMMAND_MS } = {}) {
    const b = new Browser(executable, args, commandTimeoutMs);
    try {
      b.version = await b.send('Browser.getVersion', {}, { timeoutMs: launchTimeoutMs });
    } catch (e) {
      const ranOn = !b.exited; // a hang rather than an exit: quote its stderr too
      const tail = b.lastStderr();
      await b.close(3000);
      throw new CdpError(`cannot launch ${executable}: ${e.message}` + (ranOn && tail.length
        ? `; last lines of its stderr:\n    ${tail.join('\n    ')}` : ''));
    }
    return b;
  }

  constructor(executable, args, commandTimeoutMs) {
    super();
    this.executable = executable;
    this.commandTimeoutMs = commandTimeoutMs;
    this.userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'duplex-chromium-profile-'));
    this.argv = [...DRIVER_ARGS, ...args, `--user-data-dir=${this.userDataDir}`];
    this.nextId = 1;
    this.pending = new Map(); // id -> { method, sessionId, resolve, reject, timer }
    this.sessions = new Map(); // sessionId -> Page
    this.stderrTail = [];
    this.stderrPartial = '';
    this.exited = null; // { code, signal } once Chromium is gone
    this.exitError = null; // what pending and later commands fail with
    this.inChunks = [];

    // Its own process group (as Playwright does), so the kill fallback ends
    // its helpers (renderer, GPU, zygote) too, at once, before the profile
    // they write into is removed. A Chromium whose pipe closes (this
    // process gone) exits by itself.
    this.proc = spawn(executable, this.argv, {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'], detached: true,
    });
    this.pid = this.proc.pid;
    this.exitPromise = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        if (this.exited) return;
        this.exited = { code, signal };
        // Let the last of stderr arrive before quoting it.
        setTimeout(() => {
          this.failAll(this.exitMessage());
          resolve(this.exited);
        }, 100);
      });
      this.proc.once('error', (e) => {
        // Spawning failed (ENOENT, EACCES): there may be no exit event.
        if (this.exited) return;
        this.exited = { code: null, signal: null, spawnError: e.message };
        this.failAll(this.exitMessage());
        resolve(this.exited);
      });
    });
    this.proc.stdout.on('data', () => { /* headless Chromium prints nothing useful */ });
    this.proc.stderr.on('data', (d) => this.onStderr(d.toString('utf8')));
    this.out = this.proc.stdio[3];
    this.in = this.proc.stdio[4];
    this.out.on('error', () => { /* EPIPE once Chromium is gone: reported by the exit */ });
    this.in.on('error', () => { /* likewise */ });
    this.in.on('data', (d) => this.onData(d));

    // A watchdog's process.exit() must still leave no Chromium or profile.
    this.onProcessExit = () => {
      this.killGroup();
      try {
        fs.rmSync(this.userDataDir,
          { recursive: true, force: true, maxRetries: 3, retryDelay: 100 });
      } catch (e) { /* best effort */ }
    };
    process.on('exit', this.onProcessExit);
  }

  // SIGKILL to Chromium's process group (its pid), helpers included.
  killGroup() {
    if (!this.pid) return;
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch (e) {
      if (!this.exited) {
        try { this.proc.kill('SIGKILL'); } catch (e2) { /* already gone */ }
      }
    }
  }

  onStderr(text) {
    const lines = (this.stderrPartial + text).split('\n');
    this.stderrPartial = lines.pop();
    for (const l of lines) if (l.trim() && !STDERR_NOISE.test(l)) this.stderrTail.push(l);
    const extra = this.stderrTail.length - STDERR_LINES;
    if (extra > 0) this.stderrTail.splice(0, extra);
  }

  lastStderr() {
    const lines = [...this.stderrTail];
    if (this.stderrPartial.trim()) lines.push(this.stderrPartial);
    return lines.slice(-STDERR_LINES);
  }

  exitMessage() {
    const x = this.exited;
    const how = x.spawnError ? `${this.executable} could not be started (${x.spawnError})`
      : `Chromium (pid ${this.pid}) exited (status ${x.code}, signal ${x.signal})`;
    const tail = this.lastStderr();
    return how + (tail.length ? `; last lines of its stderr (D-Bus noise left out):\n    ` +
      tail.join('\n    ') : '; nothing on its stderr (D-Bus noise left out)');
  }

  // Rejects every pending command (and every later one) with why.
  failAll(why) {
    if (!this.exitError) this.exitError = why;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new CdpError(`CDP ${p.method}: ${why}`));
    }
  }

  onData(chunk) {
    let start = 0;
    for (;;) {
      const nul = chunk.indexOf(0, start);
      if (nul < 0) break;
      this.inChunks.push(chunk.subarray(start, nul));
      const text = Buffer.concat(this.inChunks).toString('utf8');
      this.inChunks = [];
      start = nul + 1;
      let msg;
      try {
        msg = JSON.parse(text);
      } catch (e) {
        this.failAll(`unparsable message from Chromium: ${text.slice(0, 200)}`);
        continue;
      }
      this.dispatch(msg);
    }
    if (start < chunk.length) this.inChunks.push(chunk.subarray(start));
  }

  dispatch(msg) {
    if (msg.id !== undefined) {
      const p = this.pending.get(msg.id);
      if (!p) return; // its deadline passed already
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) {
        p.reject(new CdpError(`CDP ${p.method} failed: ${msg.error.message} (code ` +
          `${msg.error.code}${msg.error.data ? ', ' + msg.error.data : ''})`));
      } else p.resolve(msg.result || {});
      return;
    }
    if (msg.sessionId) {
      const page = this.sessions.get(msg.sessionId);
      if (page) page.onEvent(msg.method, msg.params || {});
      return;
    }
    if (msg.method === 'Target.detachedFromTarget') {
      const page = this.sessions.get(msg.params.sessionId);
      if (page) page.onDetached('the page was detached (closed or crashed)');
    }
    this.emit('cdp:' + msg.method, msg.params || {});
  }

  // Sends method with params (to a page when sessionId is given); resolves
  // with its result. options.timeoutMs overrides the default deadline.
  send(method, params = {}, { sessionId, timeoutMs = this.commandTimeoutMs } = {}) {
    if (this.exitError) return Promise.reject(new CdpError(`CDP ${method}: ${this.exitError}`));
    const id = this.nextId++;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CdpError(`CDP ${method} timed out after ${secs(timeoutMs)} (no reply from ` +
          `Chromium pid ${this.pid}${this.exited ? ', which has exited' : ', still running'})`));
      }, timeoutMs);
      this.pending.set(id, { method, sessionId, resolve, reject, timer });
      this.out.write(JSON.stringify(msg) + '\0');
    });
  }

  // Opens a tab on about:blank, attached with its own session; emits 'page'
  // before enabling its events, so a listener sees all of them.
  async newPage() {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true });
    const page = new Page(this, targetId, sessionId);
    this.sessions.set(sessionId, page);
    this.emit('page', page);
    await Promise.all([
      page.send('Page.enable'),
      page.send('Page.setLifecycleEventsEnabled', { enabled: true }),
      page.send('Runtime.enable'),
      page.send('Log.enable'),
    ]);
    return page;
  }

  // Browser.close, then waits for the exit; SIGKILL when it does not come
  // within timeoutMs. Removes the profile directory. Never rejects.
  async close(timeoutMs = 10000) {
    if (!this.exited) {
      this.send('Browser.close', {}, { timeoutMs }).catch(() => { /* exits before replying */ });
      let timer;
      const gone = await Promise.race([
        this.exitPromise.then(() => true),
        new Promise((r) => { timer = setTimeout(() => r(false), timeoutMs); }),
      ]);
      clearTimeout(timer);
      if (!gone) {
        this.killGroup();
        await Promise.race([this.exitPromise, new Promise((r) => setTimeout(r, 5000))]);
      }
    }
    this.failAll('the browser was closed');
    for (const s of [this.out, this.in, this.proc.stdout, this.proc.stderr]) {
      if (s) s.destroy();
    }
    // Helpers of a killed Chromium may still write into the profile for a
    // moment: retry.
    try {
      fs.rmSync(this.userDataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    } catch (e) { /* the exit hook tries again */ }
    process.removeListener('exit', this.onProcessExit);
    this.onProcessExit();
    return this.exited;
  }
}

// Text of a console.* call's arguments, as the DevTools console shows them.
function remoteObjectText(o) {
  if (o.type === 'undefined') return 'undefined';
  if ('unserializableValue' in o) return o.unserializableValue;
  if ('value' in o) return typeof o.value === 'string' ? o.value : JSON.stringify(o.value);
  return o.description || `<${o.type}>`;
}

class Page extends EventEmitter {
  constructor(browser, targetId, sessionId) {
    super();
    this.browser = browser;
    this.targetId = targetId;
    this.sessionId = sessionId;
    this.detached = null;
    this.waiters = new Set(); // event waiters: { method, pred, resolve, reject }
  }

  send(method, params = {}, { timeoutMs } = {}) {
    if (this.detached) return Promise.reject(new CdpError(`CDP ${method}: ${this.detached}`));
    return this.browser.send(method, params, { sessionId: this.sessionId, timeoutMs });
  }

  onEvent(method, params) {
    if (method === 'Runtime.consoleAPICalled') {
      const text = (params.args || []).map(remoteObjectText).join(' ');
      this.emit('console', `[${params.type}] ${text}`);
    } else if (method === 'Log.entryAdded') {
      const e = params.entry;
      this.emit('console', `[${e.level}/${e.source}] ${e.text}`);
    } else if (method === 'Runtime.exceptionThrown') {
      const d = params.exceptionDetails;
      this.emit('pageerror', (d.exception && d.exception.description) || d.text);
    } else if (method === 'Inspector.targetCrashed') {
      this.onDetached('the page crashed');
    }
    for (const w of this.waiters) {
      if (w.method === method && w.pred(params)) {
        this.waiters.delete(w);
        w.resolve(params);
      }
    }
  }

  onDetached(why) {
    if (this.detached) return;
    this.detached = why;
    for (const [id, p] of this.browser.pending) {
      if (p.sessionId !== this.sessionId) continue;
      this.browser.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new CdpError(`CDP ${p.method}: ${why}`));
    }
    for (const w of this.waiters) w.reject(new CdpError(`waiting for ${w.method}: ${why}`));
    this.waiters.clear();
  }

  // A waiter registered now (before the command that causes the event);
  // .promise resolves with the first matching event's params.
  waitFor(method, pred = () => true) {
    const w = { method, pred };
    w.promise = new Promise((resolve, reject) => { w.resolve = resolve; w.reject = reject; });
    w.promise.catch(() => {});
    if (this.detached) w.reject(new CdpError(`waiting for ${method}: ${this.detached}`));
    else this.waiters.add(w);
    w.cancel = () => this.waiters.delete(w);
    return w;
  }

  // Page.navigate, then the load event of that very navigation (the main
  // frame's lifecycle event "load" with its loaderId).
  async goto(url, { timeoutMs = this.browser.commandTimeoutMs } = {}) {
    const loads = [];
    const seen = this.waitFor('Page.lifecycleEvent', (p) => {
      if (p.name === 'load') loads.push(p);
      return false;
    });
    try {
      const nav = await this.send('Page.navigate', { url }, { timeoutMs });
      if (nav.errorText) throw new CdpError(`Page.navigate to ${url}: ${nav.errorText}`);
      const match = (p) => p.name === 'load' && p.frameId === nav.frameId &&
        (!nav.loaderId || p.loaderId === nav.loaderId);
      if (loads.some(match)) return nav;
      const w = this.waitFor('Page.lifecycleEvent', match);
      let timer;
      try {
        await Promise.race([w.promise, new Promise((_, reject) => {
          timer = setTimeout(() => reject(new CdpError(`Page.navigate to ${url}: no load event ` +
            `(Page.lifecycleEvent "load") within ${secs(timeoutMs)}`)), timeoutMs);
        })]);
      } finally {
        clearTimeout(timer);
        w.cancel();
      }
      return nav;
    } finally {
      seen.cancel();
    }
  }

  // Runs fn(arg) in the page (arg as JSON) and resolves with its result,
  // awaited if it is a promise, by value. An exception in the page rejects.
  async evaluate(fn, arg, { timeoutMs } = {}) {
    const expression = typeof fn === 'function'
      ? `(${fn.toString()})(${arg === undefined ? '' : JSON.stringify(arg)})` : String(fn);
    const r = await this.send('Runtime.evaluate', {
      expression, awaitPromise: true, returnByValue: true, userGesture: false,
    }, { timeoutMs });
    if (r.exceptionDetails) {
      const d = r.exceptionDetails;
      throw new CdpError(`Runtime.evaluate: exception in the page: ` +
        `${(d.exception && d.exception.description) || d.text}`);
    }
    return r.result.type === 'undefined' ? undefined : r.result.value;
  }

  title() {
    return this.evaluate('document.title');
  }

  // Page.captureScreenshot as PNG, written to file (its directory is
  // created); resolves with file.
  async screenshot(file, { timeoutMs } = {}) {
    const { data } = await this.send('Page.captureScreenshot', { format: 'png' }, { timeoutMs });
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.from(data, 'base64'));
    return file;
  }

  async close() {
    if (!this.detached) {
      await this.browser.send('Target.closeTarget', { targetId: this.targetId });
    }
    this.onDetached('the page was closed');
    this.browser.sessions.delete(this.sessionId);
  }
}

module.exports = { Browser, Page, CdpError, HEADLESS_ARGS };
