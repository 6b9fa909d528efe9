'use strict';
// duplex Socket.IO chat: the page of `duplex serve --socketio --static web`
// (open /socketio/). Plain browser JavaScript on the official client
// (socket.io-client's dist/socket.io.min.js, loaded before this file from
// node_modules/ here: `npm ci` in web/socketio installs it).
//
// It talks to the namespace /chat of src/cli/serve_sio.c, on the page's
// own host and port: connect with auth {nick}, then emit join ROOM, leave
// ROOM, "chat message" ROOM TEXT, nick NAME and quit, each with an ack
// ({ok: true, ...} or {ok: false, error}), and hear "welcome", "chat
// message", "joined", "left" and "nick". What it shows of the connection:
// the state, the Engine.IO transport in use (polling at first, websocket
// once upgraded), and a log of every connect, upgrade, disconnect (with its
// reason), connect_error (with its message) and reconnect attempt. The
// rooms joined are joined again after a reconnect (the server forgets a
// socket's rooms when it goes).
//
// For tests, window.sioState is kept current:
//   state        'disconnected' | 'connecting' | 'connected'
//   transport    the transport in use, or null while disconnected
//   transports   every transport used, in order ('polling', 'websocket', ...)
//   id, nick     the socket's id and the nick the server gave it
//   rooms        the rooms joined, as the server's last ack listed them
//   reasons      every disconnect reason, oldest first
//   connectErrors  every connect_error's message, oldest first
//   events       the connection log: [{kind, text, at}]
//   messages     [{room, nick, text, ts, mine, ack}]: ack is 'sending',
//                'delivered', or why not, for the page's own messages
//   connects, reconnectAttempts, clientMissing
// and the controls carry data-testid attributes (see index.html).
(function () {
  const ACK_MS = 5000; // an ack not in by then is shown as not answered
  const MAX_SHOWN = 500; // lines kept in each log

  const el = (id) => document.querySelector(`[data-testid="${id}"]`);
  const ui = {
    badge: el('state'),
    transport: el('transport'),
    missing: el('missing-client'),
    connectForm: el('connect-form'),
    nick: el('nick-input'),
    connect: el('connect'),
    rename: el('rename'),
    disconnect: el('disconnect'),
    quit: el('quit'),
    joinForm: el('join-form'),
    room: el('room-input'),
    join: el('join'),
    rooms: el('rooms'),
    messages: el('messages'),
    events: el('events'),
    composer: el('composer'),
    to: el('room-select'),
    text: el('message-input'),
    send: el('send'),
  };

  const state = {
    state: 'disconnected',
    transport: null,
    transports: [],
    id: null,
    nick: null,
    rooms: [],
    reasons: [],
    connectErrors: [],
    events: [],
    messages: [],
    connects: 0,
    reconnectAttempts: 0,
    clientMissing: false,
  };
  window.sioState = state;

  let socket = null;
  const wanted = new Set(); // rooms to be in, joined again after a reconnect

  function fmtTime(ts) {
    return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  // Appends li to a log, drops the oldest past MAX_SHOWN, and follows the
  // end unless the user scrolled up to read.
  function append(log, li) {
    const follow = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(li);
    while (log.children.length > MAX_SHOWN) log.firstElementChild.remove();
    if (follow) log.scrollTop = log.scrollHeight;
  }

  // Every piece of text goes in through textContent: nothing a peer sent
  // is ever markup.
  function span(cls, testid, text) {
    const s = document.createElement('span');
    s.className = cls;
    if (testid) s.dataset.testid = testid;
    s.textContent = text;
    return s;
  }

  function logEvent(kind, text) {
    const e = { kind, text, at: Date.now() };
    state.events.push(e);
    if (state.events.length > MAX_SHOWN) state.events.shift();
    const li = document.createElement('li');
    li.className = `event ${kind}`;
    li.dataset.testid = 'event';
    li.dataset.kind = kind;
    const when = document.createElement('time');
    when.dateTime = new Date(e.at).toISOString();
    when.textContent = fmtTime(e.at);
    li.append(when, span('what', 'event-text', text));
    append(ui.events, li);
  }

  function addMessage(m) {
    state.messages.push(m);
    if (state.messages.length > MAX_SHOWN) state.messages.shift();
    const li = document.createElement('li');
    li.className = 'msg' + (m.mine ? ' mine' : '');
    li.dataset.testid = 'message';
    const when = document.createElement('time');
    when.dateTime = new Date(m.ts).toISOString();
    when.textContent = fmtTime(m.ts);
    li.append(when, span('room', 'message-room', `#${m.room}`),
      span('who', 'message-nick', m.mine ? `${m.nick} (you)` : m.nick),
      span('text', 'message-text', m.text));
    if (m.mine) {
      m.ackEl = span('ack', 'message-ack', m.ack);
      li.append(m.ackEl);
    }
    append(ui.messages, li);
    return m;
  }

  function setAck(m, ack) {
    m.ack = ack;
    m.ackEl.textContent = ack;
    m.ackEl.dataset.ack = ack === 'delivered' ? 'ok' : ack === 'sending' ? 'pending' : 'failed';
  }

  function notice(text) {
    const li = document.createElement('li');
    li.className = 'notice';
    li.dataset.testid = 'notice';
    li.textContent = text;
    append(ui.messages, li);
  }

  function setState(s) {
    state.state = s;
    ui.badge.textContent = s;
    ui.badge.dataset.state = s;
    render();
  }

  function setTransport(name) {
    state.transport = name;
    if (name) state.transports.push(name);
    ui.transport.textContent = name || 'no transport';
    ui.transport.dataset.transport = name || '';
  }

  function setRooms(rooms) {
    state.rooms = rooms.slice();
    ui.rooms.replaceChildren();
    const keep = ui.to.value;
    ui.to.replaceChildren();
    for (const r of rooms) {
      const li = document.createElement('li');
      li.dataset.testid = 'room';
      li.dataset.room = r;
      const leave = document.createElement('button');
      leave.type = 'button';
      leave.className = 'link';
      leave.dataset.testid = 'leave';
      leave.textContent = 'leave';
      leave.setAttribute('aria-label', `Leave ${r}`);
      leave.addEventListener('click', () => leaveRoom(r));
      li.append(span('name', 'room-name', `#${r}`), leave);
      ui.rooms.append(li);
      const opt = document.createElement('option');
      opt.value = r;
      opt.textContent = `#${r}`;
      ui.to.append(opt);
    }
    if (rooms.includes(keep)) ui.to.value = keep;
    render();
  }

  // Which controls make sense now.
  function render() {
    const connected = state.state === 'connected';
    // socket.active: it connects or will reconnect by itself.
    const active = !!socket && socket.active;
    ui.connect.disabled = state.clientMissing || active;
    ui.disconnect.disabled = !active;
    ui.rename.disabled = !connected;
    ui.quit.disabled = !connected;
    ui.join.disabled = !connected;
    ui.to.disabled = ui.text.disabled = ui.send.disabled = !connected || state.rooms.length === 0;
    ui.text.placeholder = !connected ? 'Connect and join a room to chat'
      : state.rooms.length ? 'Message (Enter sends)' : 'Join a room to chat';
  }

  // emit with a timeout: cb(error text or null, the ack's object).
  function request(args, cb) {
    socket.timeout(ACK_MS).emit(...args, (err, res) => {
      if (err) cb(`no answer within ${ACK_MS / 1000} s`);
      else if (!res || !res.ok) cb(res && res.error ? res.error : 'refused');
      else cb(null, res);
    });
  }

  function joinRoom(room) {
    request(['join', room], (err, res) => {
      if (err) return logEvent('error', `join ${room}: ${err}`);
      wanted.add(res.room);
      setRooms(res.rooms);
    });
  }

  function leaveRoom(room) {
    wanted.delete(room);
    request(['leave', room], (err, res) => {
      if (err) return logEvent('error', `leave ${room}: ${err}`);
      setRooms(res.rooms);
    });
  }

  // ---- the socket ---------------------------------------------------------

  function makeSocket() {
    // auth as a function: each (re)connection sends the nick of the moment.
    const s = window.io('/chat', {
      auth: (cb) => cb(state.nick || ui.nick.value.trim() ? { nick: state.nick || ui.nick.value.trim() } : {}),
    });
    // The Manager opens a new Engine.IO connection for each (re)connect:
    // follow each one's transport, and its upgrade.
    s.io.on('open', () => {
      const engine = s.io.engine;
      setTransport(engine.transport.name);
      engine.on('upgrade', (t) => {
        setTransport(t.name);
        logEvent('upgrade', `upgraded to ${t.name}`);
      });
    });
    s.io.on('reconnect_attempt', (n) => {
      state.reconnectAttempts = n;
      setState('connecting');
      logEvent('reconnect_attempt', `reconnect attempt ${n}`);
    });
    s.io.on('reconnect', (n) => logEvent('reconnect', `reconnected after ${n} attempt${n === 1 ? '' : 's'}`));
    s.io.on('reconnect_failed', () => logEvent('reconnect_failed', 'gave up reconnecting'));

    s.on('connect', () => {
      state.id = s.id;
      state.connects++;
      state.reconnectAttempts = 0;
      setState('connected');
      logEvent('connect', `connected as ${s.id} over ${state.transport}`);
      for (const r of wanted) joinRoom(r);
    });
    s.on('welcome', (w) => {
      if (w && typeof w.nick === 'string') {
        state.nick = w.nick;
        ui.nick.value = w.nick;
      }
    });
    s.on('disconnect', (reason, details) => {
      state.reasons.push(reason);
      state.id = null;
      setTransport(null);
      setRooms([]);
      const why = details && details.description && details.description.message;
      logEvent('disconnect', `disconnect: ${reason}${why ? ` (${why})` : ''}` +
        (s.active ? '; reconnecting' : '; not reconnecting'));
      setState(s.active ? 'connecting' : 'disconnected');
    });
    s.on('connect_error', (err) => {
      state.connectErrors.push(err.message);
      const why = err.data && err.data.reason;
      logEvent('connect_error', `connect_error: ${err.message}${why ? ` (${why})` : ''}` +
        (s.active ? '' : '; not retrying'));
      setState(s.active ? 'connecting' : 'disconnected');
    });

    s.on('chat message', (m) => {
      if (!m || typeof m.text !== 'string') return;
      addMessage({ room: String(m.room), nick: String(m.nick), text: m.text,
        ts: Number(m.ts) || Date.now(), mine: false });
    });
    s.on('joined', (e) => notice(`${e.nick} joined #${e.room}`));
    s.on('left', (e) => notice(`${e.nick} left #${e.room} (${e.reason})`));
    s.on('nick', (e) => notice(`${e.was} is now ${e.nick}`));
    return s;
  }

  ui.connectForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (state.clientMissing) return;
    state.nick = null; // the field's nick, for this connection
    if (!socket) socket = makeSocket();
    else socket.connect();
    setState('connecting');
  });

  ui.rename.addEventListener('click', () => {
    const nick = ui.nick.value.trim();
    request(['nick', nick], (err, res) => {
      if (err) return logEvent('error', `nick: ${err}`);
      state.nick = res.nick;
      logEvent('nick', `you are now ${res.nick}`);
    });
  });

  ui.disconnect.addEventListener('click', () => socket.disconnect());

  ui.quit.addEventListener('click', () => {
    request(['quit'], (err) => {
      if (err) logEvent('error', `quit: ${err}`);
    });
  });

  ui.joinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const room = ui.room.value.trim();
    if (room) joinRoom(room);
  });

  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const room = ui.to.value;
    const text = ui.text.value;
    if (!room || !text.trim()) return;
    ui.text.value = '';
    const m = addMessage({ room, nick: state.nick, text, ts: Date.now(), mine: true, ack: 'sending' });
    request(['chat message', room, text], (err, res) => {
      setAck(m, err ? `not delivered: ${err}` : 'delivered');
      if (res) m.ts = res.ts;
    });
  });

  // The official client comes from npm, not from this repository: say so
  // plainly when it is not there.
  if (typeof window.io !== 'function') {
    state.clientMissing = true;
    ui.missing.hidden = false;
    logEvent('error', 'the Socket.IO client (socket.io.min.js) did not load: see above');
  }
  const params = new URLSearchParams(location.search);
  if (params.get('nick')) ui.nick.value = params.get('nick');
  if (params.get('room')) ui.room.value = params.get('room');
  render();
})();
