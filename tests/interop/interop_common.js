'use strict';
// Shared harness for the duplex interop suites (Node side): runs
// `duplex serve` / `duplex connect` / client_peer as children, prints every
// check, and turns the first failed check into a non-zero exit. A watchdog
// bounds the whole suite so a hung peer can never hang CTest.

const { spawn } = require('child_process');

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

// `duplex serve` on 127.0.0.1 with a kernel-chosen port.
async function startServer(duplex, extra = []) {
  const cmd = ['serve', '--host', '127.0.0.1', '--port', '0', ...extra];
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
  srv.url = (path = '/') => `ws://127.0.0.1:${port}${path}`;
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
function runConnect(duplex, url, lines, { keepStdinOpen = false, timeoutMs = 30000,
  stdinDelayMs = 0 } = {}) {
  say(`running: ${duplex} connect ${url}  (${lines.length} stdin line(s)` +
    `${keepStdinOpen ? ', stdin kept open' : ''})`);
  return new Promise((resolve, reject) => {
    const proc = track(spawn(duplex, ['connect', url], { stdio: ['pipe', 'pipe', 'pipe'] }));
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

// Runs the C client_peer with a script; rejects on a non-zero exit.
function runClientPeer(peer, url, script, timeoutMs = 60000) {
  say(`running: ${peer} ${url} ${script.join(' ')}`);
  return new Promise((resolve, reject) => {
    const proc = track(spawn(peer, [url, ...script], { stdio: ['ignore', 'pipe', 'pipe'] }));
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
      } else resolve();
    });
  });
}

module.exports = {
  CheckFailed, say, step, check, expectEq, short, parseArgs, runMain, withTimeout,
  startServer, runConnect, runClientPeer, parseCloseLine, track,
};
