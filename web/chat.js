'use strict';
// duplex chat: the page `duplex serve --rooms --static web` serves. Plain
// browser JavaScript, no build step, nothing loaded from elsewhere.
//
// Where it connects: ws://HOST/rooms/ROOM (wss:// when the page came over
// https://), HOST being the page's own host and port. A page served from
// somewhere else (another port, a file server of your own, the browser
// tests' page server) names the WebSocket server with ?ws=:
//
//   http://127.0.0.1:9000/?ws=ws://127.0.0.1:8080
//
// (a path after the host is kept as a prefix: ?ws=wss://example.com/chat
// connects to wss://example.com/chat/rooms/ROOM). ?room=NAME fills in the
// room, for a link to share.
//
// Messages are JSON text: {"name": "ada", "text": "hi", "ts": 1700000000000,
// "id": "..."} (ts in ms since the epoch; id lets a page recognise its own
// message coming back from a server run with --echo-self and not show it
// twice). Anything else a peer sends is shown as it is, as plain text:
// nothing that came over the wire is ever parsed as HTML.
//
// After a drop it reconnects with exponential backoff (0.5 s doubling up to
// 10 s) and full jitter (a random delay between 0 and that), and never once
// the user has left (Leave closes with 1000 "user left") or switched rooms
// (the old room's socket is closed with 1000 and forgotten).
//
// For tests, window.chatState is kept current:
//   state       'CONNECTING' | 'OPEN' | 'CLOSING' | 'CLOSED' (readyState)
//   room, name, url
//   lastClose   {code, reason, wasClean, meaning, at} or null (reason: the
//               server's, or ours when we closed and its reply had none)
//   attempts    reconnect attempts since the last OPEN
//   reconnecting  true while a reconnect is scheduled or under way
//   reconnectDelayMs  the delay drawn for the pending attempt
//   connects    WebSockets opened so far (a reconnect adds one)
//   left        true once the user clicked Leave
//   messages    [{name, text, ts, mine, raw}] as shown, oldest first
// and the controls carry data-testid attributes (see index.html).
(function () {
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const MAX_SHOWN = 500; // messages kept on the page
  const NAME_MAX = 32;
  const ROOM_MAX = 64;
  const STATES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'];
  const STORE = { name: 'duplex-chat.name', room: 'duplex-chat.room' };

  // What a close code means, in words a user can act on (RFC 6455 §7.4.1
  // and the IANA registry).
  const CLOSE_MEANINGS = {
    1000: 'normal closure',
    1001: 'going away: the server is shutting down (or the page is leaving)',
    1002: 'protocol error',
    1003: 'the server does not accept this kind of data',
    1005: 'closed without a status code',
    1006: 'abnormal closure: the connection was lost without a close frame ' +
      '(server down, unreachable, or the network dropped)',
    1007: 'invalid data (text that is not UTF-8)',
    1008: 'policy violation (for duplex serve: a slow consumer, ' +
      'too much output waiting for this client)',
    1009: 'message too big',
    1010: 'a required extension was not negotiated',
    1011: 'internal server error',
    1012: 'the server is restarting',
    1013: 'try again later (the server is overloaded)',
    1014: 'bad gateway',
    1015: 'TLS handshake failed',
  };

  function closeMeaning(code) {
    if (CLOSE_MEANINGS[code]) return CLOSE_MEANINGS[code];
    if (code >= 4000 && code <= 4999) return 'closed by the application';
    if (code >= 3000 && code <= 3999) return 'closed by a library or framework';
    return 'unknown close code';
  }

  const el = (id) => document.querySelector(`[data-testid="${id}"]`);
  const ui = {
    badge: el('state'),
    currentRoom: el('current-room'),
    joinForm: el('join-form'),
    name: el('name-input'),
    room: el('room-input'),
    join: el('join'),
    leave: el('leave'),
    closeInfo: el('close-info'),
    reconnectInfo: el('reconnect-info'),
    reconnectText: el('reconnect-text'),
    retryNow: el('retry-now'),
    log: el('messages'),
    empty: el('empty'),
    composer: el('composer'),
    message: el('message-input'),
    send: el('send'),
  };

  const params = new URLSearchParams(location.search);

  // The base of every room URL: scheme, host and an optional prefix; null
  // with configError set when there is none to be had.
  let configError = null;
  function wsBase() {
    const override = params.get('ws');
    if (override !== null) {
      let u = null;
      try { u = new URL(override); } catch (e) { /* reported below */ }
      if (u && (u.protocol === 'ws:' || u.protocol === 'wss:')) {
        return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
      }
      configError = `?ws=${override} is not a ws:// or wss:// URL`;
      return null;
    }
    if (location.protocol !== 'http:' && location.protocol !== 'https:') {
      configError = 'this page was not served over HTTP: open it from ' +
        '`duplex serve --rooms --static web`, or add ?ws=ws://HOST:PORT';
      return null;
    }
    return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}`;
  }
  const base = wsBase();
  const roomUrl = (room) => `${base}/rooms/${encodeURIComponent(room)}`;

  const state = {
    state: 'CLOSED',
    room: null,
    name: null,
    url: null,
    lastClose: null,
    attempts: 0,
    reconnecting: false,
    reconnectDelayMs: null,
    connects: 0,
    left: false,
    messages: [],
  };
  window.chatState = state;

  let ws = null; // the current room's socket; older ones are ignored
  let wanted = false; // the user wants to be in state.room
  let retryTimer = null;
  let retryAt = 0;
  let closingReason = null; // what we closed the current socket with
  let focusOnOpen = false;
  let composerHadFocus = false;
  const sentIds = new Set();

  // localStorage can throw (storage disabled, a sandboxed frame): the page
  // works without it.
  function load(key) {
    try { return localStorage.getItem(key); } catch (e) { return null; }
  }
  function save(key, value) {
    try { localStorage.setItem(key, value); } catch (e) { /* not remembered */ }
  }

  function clip(s, n) {
    return s.length > n ? s.slice(0, n) : s;
  }

  function fmtTime(ts) {
    return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  // ---- the message log --------------------------------------------------

  function nearBottom() {
    return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
  }

  // Appends a node, drops the oldest past MAX_SHOWN, and follows the end of
  // the log unless the user scrolled up to read.
  function append(li) {
    const follow = nearBottom();
    ui.log.appendChild(li);
    while (ui.log.children.length > MAX_SHOWN) ui.log.firstElementChild.remove();
    ui.empty.hidden = true;
    if (follow) ui.log.scrollTop = ui.log.scrollHeight;
  }

  // Every piece of text goes in through textContent: a peer's name or text
  // is never markup.
  function addMessage(m) {
    state.messages.push(m);
    if (state.messages.length > MAX_SHOWN) state.messages.shift();
    const li = document.createElement('li');
    li.className = 'msg' + (m.mine ? ' mine' : '') + (m.raw ? ' raw' : '');
    li.dataset.testid = 'message';
    const meta = document.createElement('div');
    meta.className = 'meta';
    const who = document.createElement('span');
    who.className = 'who';
    who.dataset.testid = 'message-name';
    who.textContent = m.mine ? `${m.name} (you)` : m.name;
    const when = document.createElement('time');
    when.dateTime = new Date(m.ts).toISOString();
    when.textContent = fmtTime(m.ts);
    meta.append(who, when);
    const text = document.createElement('p');
    text.className = 'text';
    text.dataset.testid = 'message-text';
    text.textContent = m.text;
    li.append(meta, text);
    append(li);
  }

  function systemLine(text) {
    const li = document.createElement('li');
    li.className = 'sys';
    li.dataset.testid = 'system';
    li.textContent = `${fmtTime(Date.now())} · ${text}`;
    append(li);
  }

  function receive(data) {
    if (typeof data !== 'string') {
      addMessage({ name: '(binary)', text: `binary message, ${data.byteLength} bytes`,
        ts: Date.now(), mine: false, raw: true });
      return;
    }
    let m = null;
    try { m = JSON.parse(data); } catch (e) { /* shown as it is */ }
    if (m && typeof m === 'object' && !Array.isArray(m) && typeof m.text === 'string') {
      if (typeof m.id === 'string' && sentIds.has(m.id)) return; // our own, via --echo-self
      const name = typeof m.name === 'string' && m.name.trim()
        ? clip(m.name.trim(), NAME_MAX) : 'anonymous';
      const ts = Number.isFinite(m.ts) && Math.abs(m.ts - Date.now()) < 366 * 86400e3
        ? m.ts : Date.now();
      addMessage({ name, text: m.text, ts, mine: false, raw: false });
    } else {
      addMessage({ name: '(not JSON)', text: data, ts: Date.now(), mine: false, raw: true });
    }
  }

  // ---- the connection ---------------------------------------------------

  // Brings the badge and the controls in line with the socket. Also run on
  // a short interval: readyState turns CLOSING without an event when the
  // server starts the closing handshake.
  function sync() {
    const s = ws ? STATES[ws.readyState] : 'CLOSED';
    state.state = s;
    ui.badge.textContent = s;
    ui.badge.dataset.state = s;
    ui.badge.classList.toggle('dropped', s === 'CLOSED' && wanted);
    ui.currentRoom.hidden = !state.room || (!wanted && !ws);
    ui.currentRoom.textContent = state.room ? `#${state.room}` : '';
    ui.leave.disabled = !wanted && !ws;
    const open = s === 'OPEN';
    ui.message.placeholder = open ? `Message #${state.room}`
      : wanted ? 'Waiting for the connection…' : 'Join a room to chat';
    if (ui.message.disabled === open) {
      ui.message.disabled = !open;
      ui.send.disabled = !open;
      if (open && composerHadFocus) ui.message.focus();
    }
  }

  function showClose(c) {
    const reason = c.reason ? `"${c.reason}"` : 'no reason given';
    ui.closeInfo.textContent = `Closed: ${c.code} (${reason}): ${c.meaning}.`;
    ui.closeInfo.classList.toggle('bad', c.code !== 1000);
    ui.closeInfo.hidden = false;
  }

  function updateRetryText() {
    if (retryTimer !== null) {
      const left = Math.max(0, retryAt - Date.now()) / 1000;
      ui.reconnectText.textContent =
        `Reconnecting in ${left.toFixed(1)} s (attempt ${state.attempts})`;
      ui.retryNow.hidden = false;
    } else if (state.reconnecting) {
      ui.reconnectText.textContent = `Reconnecting now (attempt ${state.attempts})…`;
      ui.retryNow.hidden = true;
    }
  }

  let retryTick = null;
  function clearRetry() {
    if (retryTimer !== null) clearTimeout(retryTimer);
    if (retryTick !== null) clearInterval(retryTick);
    retryTimer = retryTick = null;
    state.reconnecting = false;
    state.reconnectDelayMs = null;
  }

  // Exponential backoff with full jitter: attempt k waits a random time
  // between 0 and min(10 s, 0.5 s x 2^(k-1)), so a crowd of pages dropped
  // by the same restart does not come back at the same instant.
  function scheduleReconnect() {
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** state.attempts);
    const delay = Math.random() * cap;
    state.attempts++;
    state.reconnecting = true;
    state.reconnectDelayMs = Math.round(delay);
    retryAt = Date.now() + delay;
    retryTimer = setTimeout(retryNow, delay);
    retryTick = setInterval(updateRetryText, 100);
    ui.reconnectInfo.hidden = false;
    updateRetryText();
  }

  function retryNow() {
    if (!wanted || ws) return;
    if (retryTimer !== null) clearTimeout(retryTimer);
    if (retryTick !== null) clearInterval(retryTick);
    retryTimer = retryTick = null;
    updateRetryText();
    connect();
  }

  function connect() {
    let sock;
    try {
      sock = new WebSocket(roomUrl(state.room));
    } catch (e) {
      wanted = false;
      clearRetry();
      systemLine(`Cannot connect: ${e.message}`);
      sync();
      return;
    }
    sock.binaryType = 'arraybuffer';
    ws = sock;
    closingReason = null;
    state.url = sock.url;
    state.connects++;
    sock.onopen = () => {
      if (sock !== ws) return;
      const again = state.attempts > 0;
      clearRetry();
      state.attempts = 0;
      ui.reconnectInfo.hidden = true;
      ui.closeInfo.hidden = true;
      systemLine(again ? `Reconnected to #${state.room}` : `Joined #${state.room} as ${state.name}`);
      sync();
      if (focusOnOpen) ui.message.focus();
      focusOnOpen = false;
    };
    sock.onmessage = (ev) => {
      if (sock === ws) receive(ev.data);
    };
    sock.onclose = (ev) => {
      if (sock !== ws) return; // a room we switched away from
      ws = null;
      // The reason is the server's; a server's reply to our own close
      // usually has none, so ours ("user left") is shown then.
      const c = { code: ev.code, reason: ev.reason || closingReason || '',
        wasClean: ev.wasClean, meaning: closeMeaning(ev.code), at: Date.now() };
      closingReason = null;
      state.lastClose = c;
      showClose(c);
      if (wanted) {
        if (!state.reconnecting) systemLine(`Connection lost (${c.code}): ${c.meaning}`);
        scheduleReconnect();
      } else {
        clearRetry();
        ui.reconnectText.textContent = 'Not reconnecting: you left the room.';
        ui.retryNow.hidden = true;
        ui.reconnectInfo.hidden = false;
      }
      sync();
    };
    sync();
  }

  // Closes the current socket on purpose: its close event is still shown
  // (Leave) but never leads to a reconnect.
  function leave() {
    if (!wanted && !ws) return;
    wanted = false;
    state.left = true;
    clearRetry();
    systemLine(`You left #${state.room}`);
    if (ws && ws.readyState <= WebSocket.OPEN) {
      closingReason = 'user left';
      ws.close(1000, closingReason);
    } else if (!ws) {
      ui.reconnectText.textContent = 'Not reconnecting: you left the room.';
      ui.retryNow.hidden = true;
      ui.reconnectInfo.hidden = false;
    }
    sync();
  }

  function join(name, room) {
    save(STORE.name, name);
    save(STORE.room, room);
    if (wanted && room === state.room) {
      if (name !== state.name) systemLine(`You are now ${name}`);
      state.name = name;
      if (ws && ws.readyState === WebSocket.OPEN) ui.message.focus();
      return;
    }
    if (ws) {
      // Switching rooms: forget the old socket first, so its close event
      // is ignored rather than taken for a drop.
      const old = ws;
      ws = null;
      if (old.readyState <= WebSocket.OPEN) old.close(1000, 'switching rooms');
      if (wanted) systemLine(`You left #${state.room}`);
    }
    clearRetry();
    wanted = true;
    state.left = false;
    state.attempts = 0;
    state.lastClose = null;
    state.name = name;
    state.room = room;
    ui.closeInfo.hidden = true;
    ui.reconnectInfo.hidden = true;
    focusOnOpen = true;
    connect();
  }

  // ---- the controls -----------------------------------------------------

  ui.joinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = clip(ui.name.value.trim(), NAME_MAX);
    const room = clip(ui.room.value.trim(), ROOM_MAX);
    if (!name) { ui.name.focus(); return; }
    if (!room) { ui.room.focus(); return; }
    if (!base) { systemLine(configError); return; }
    ui.name.value = name;
    ui.room.value = room;
    join(name, room);
  });

  ui.leave.addEventListener('click', leave);
  ui.retryNow.addEventListener('click', retryNow);

  // Enter in the message field submits this form.
  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = ui.message.value;
    if (!text.trim() || !ws || ws.readyState !== WebSocket.OPEN) return;
    const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    const msg = { name: state.name, text, ts: Date.now(), id };
    ws.send(JSON.stringify(msg));
    sentIds.add(id);
    if (sentIds.size > 200) sentIds.delete(sentIds.values().next().value);
    addMessage({ name: msg.name, text, ts: msg.ts, mine: true, raw: false });
    ui.message.value = '';
  });

  ui.message.addEventListener('focus', () => { composerHadFocus = true; });
  ui.message.addEventListener('blur', () => {
    // A blur caused by the field being disabled (a drop) keeps the wish
    // to type there once the connection is back.
    if (!ui.message.disabled) composerHadFocus = false;
  });

  // Back online: no need to sit out the rest of the backoff.
  window.addEventListener('online', () => { if (retryTimer !== null) retryNow(); });
  setInterval(sync, 250);

  ui.name.value = clip(load(STORE.name) || `guest-${Math.floor(1000 + Math.random() * 9000)}`,
    NAME_MAX);
  ui.room.value = clip(params.get('room') || load(STORE.room) || 'lobby', ROOM_MAX);
  if (!base) systemLine(configError);
  sync();
})();
