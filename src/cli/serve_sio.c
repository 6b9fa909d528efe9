/* duplex serve --socketio: a chat on the Socket.IO namespace /chat, built on
 * the public API of duplex_sio.h alone (what any application could write).
 *
 * A client connects to /chat, optionally with auth {nick: "ada"} (a nick
 * that is not 1 to 32 characters without control characters is refused:
 * connect_error "invalid nick"; none gives "guest-XXXX"), and gets
 * "welcome" {nick}. It may emit, each with an optional ack:
 *
 *   join ROOM               ack {ok, room, rooms}; ROOM hears "joined" {room, nick}
 *   leave ROOM              ack {ok, room, rooms}; ROOM hears "left" {room, nick, reason}
 *   chat message ROOM TEXT  ack {ok, room, ts}; ROOM's other members get
 *                           "chat message" {room, nick, text, ts}
 *   nick NAME               ack {ok, nick, was}; its rooms hear "nick" {nick, was}
 *   quit                    ack {ok}; then the server disconnects the socket
 *                           (the client sees "io server disconnect")
 *
 * Every ack is one object: {"ok": true, ...} or {"ok": false, "error":
 * "why"}. Arguments of the wrong type or size, a room not joined, an
 * unknown event: an error ack (or nothing, when no ack was asked for),
 * never a crash. When a socket goes, for whatever reason, each of its rooms
 * hears "left" with that reason ("client namespace disconnect", "transport
 * close", ..., "quit").
 *
 * Each handler runs on its socket's loop; with a hub the rooms span every
 * loop and node, so no state is shared between loops but the hub's. */
#include "serve_sio.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "fmt.h"

#define NAME_MAX_BYTES 32 /* a nick or a room name */
#define TEXT_MAX_BYTES 2000
#define ROOMS_MAX 8 /* rooms one socket may be in at once */

/* The demo's rooms are "room:NAME" in Socket.IO: every socket is also in
 * the room named by its id, and a client naming that room could otherwise
 * read another client's private traffic. */
static const char ROOM_PREFIX[] = "room:";
#define ROOM_KEY_MAX (sizeof ROOM_PREFIX - 1 + NAME_MAX_BYTES + 1)

/* The page's copy of the official client, below the --static directory. */
#define PAGE_DIR "socketio"
#define BUNDLE "node_modules/socket.io-client/dist/socket.io.min.js"

typedef struct member {
  bool quiet;
  bool quit; /* asked to go: its rooms hear "quit" rather than the reason */
  char nick[NAME_MAX_BYTES + 1];
  size_t n_rooms;
  char rooms[ROOMS_MAX][ROOM_KEY_MAX]; /* "room:NAME", in joining order */
} member;

/* The namespace's callbacks get whether to log through their ud. */
static const bool loud = false, hushed = true;

/* ---- arguments ---------------------------------------------------------- */

/* v's text when it is a usable nick or room name: a string of 1 to
 * NAME_MAX_BYTES bytes, without control characters (a NUL included), not
 * only spaces. NULL otherwise. */
static const char *name_of(const json_t *v) {
  const char *s = json_string_value(v);
  if (!s) return NULL;
  size_t n = json_string_length(v);
  if (n == 0 || n > NAME_MAX_BYTES || strlen(s) != n) return NULL;
  bool visible = false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) return NULL;
    if (c != ' ') visible = true;
  }
  return visible ? s : NULL;
}

/* A chat line: a string of 1 to TEXT_MAX_BYTES bytes without NUL. */
static const char *text_of(const json_t *v) {
  const char *s = json_string_value(v);
  if (!s) return NULL;
  size_t n = json_string_length(v);
  return n && n <= TEXT_MAX_BYTES && strlen(s) == n ? s : NULL;
}

static void room_key(char out[ROOM_KEY_MAX], const char *room) {
  snprintf(out, ROOM_KEY_MAX, "%s%s", ROOM_PREFIX, room);
}

static const char *room_name(const char *key) { return key + sizeof ROOM_PREFIX - 1; }

static int room_index(const member *m, const char *key) {
  for (size_t i = 0; i < m->n_rooms; i++)
    if (!strcmp(m->rooms[i], key)) return (int)i;
  return -1;
}

/* ---- answers ------------------------------------------------------------ */

/* Answers ack (when the client asked for one) with the object `res`, whose
 * reference this takes. */
static void answer(dx_sio_ack *ack, json_t *res) {
  if (!ack) {
    json_decref(res);
    return;
  }
  json_t *args = json_array();
  int r = args && res && json_array_append_new(args, res) == 0 ? dx_sio_ack_send(ack, args)
                                                               : DX_ENOMEM;
  if (!args) json_decref(res);
  /* Sent or not (the socket gone), the ack is released; only these two
   * leave it ours. */
  if (r == DX_EINVAL || r == DX_ENOMEM) dx_sio_ack_drop(ack);
  json_decref(args);
}

__attribute__((format(printf, 2, 3))) static void fail(dx_sio_ack *ack, const char *fmt, ...) {
  if (!ack) return;
  char why[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  answer(ack, json_pack("{s:b, s:s}", "ok", 0, "error", why));
}

/* {"ok": true, "room": ROOM, "rooms": [every room of m]}. */
static json_t *rooms_answer(const member *m, const char *room) {
  json_t *list = json_array(), *res = json_pack("{s:b, s:s}", "ok", 1, "room", room);
  for (size_t i = 0; list && i < m->n_rooms; i++)
    json_array_append_new(list, json_string(room_name(m->rooms[i])));
  if (!list || !res || json_object_set_new(res, "rooms", list)) {
    json_decref(res);
    return NULL;
  }
  return res;
}

/* Emits event with the single argument `obj` (whose reference this takes)
 * to room `key`'s members but s. */
static void tell_room(dx_sio_socket *s, const char *key, const char *event, json_t *obj) {
  json_t *args = json_array();
  if (args && obj && json_array_append_new(args, obj) == 0)
    dx_sio_emit_to(dx_sio_socket_nsp(s), key, s, event, args);
  else if (!args)
    json_decref(obj);
  json_decref(args);
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- events ------------------------------------------------------------- */

static const char ROOM_RULE[] =
    "a room name is a string of 1 to 32 bytes without control characters";

/* The room args[0] names, with its key in key; NULL after answering ack
 * with what `usage` expects. */
static const char *room_arg(const json_t *args, dx_sio_ack *ack, const char *usage,
                            char key[ROOM_KEY_MAX]) {
  const char *room = name_of(json_array_get(args, 0));
  if (room) room_key(key, room);
  else fail(ack, "%s: %s", usage, ROOM_RULE);
  return room;
}

static void on_join(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  member *m = dx_sio_socket_user(s);
  char key[ROOM_KEY_MAX];
  const char *room = room_arg(args, ack, "join ROOM", key);
  if (!room) return;
  if (room_index(m, key) < 0) {
    if (m->n_rooms == ROOMS_MAX) return fail(ack, "at most %d rooms at once: leave one first", ROOMS_MAX);
    int r = dx_sio_join(s, key);
    if (r) return fail(ack, "cannot join: %s", dx_strerror(r));
    memcpy(m->rooms[m->n_rooms++], key, sizeof key);
    tell_room(s, key, "joined", json_pack("{s:s, s:s}", "room", room, "nick", m->nick));
  }
  answer(ack, rooms_answer(m, room));
}

static void on_leave(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  member *m = dx_sio_socket_user(s);
  char key[ROOM_KEY_MAX];
  const char *room = room_arg(args, ack, "leave ROOM", key);
  if (!room) return;
  int i = room_index(m, key);
  if (i < 0) return fail(ack, "not in room %s", room);
  int r = dx_sio_leave(s, key);
  if (r) return fail(ack, "cannot leave: %s", dx_strerror(r));
  memmove(m->rooms[i], m->rooms[i + 1], (m->n_rooms - (size_t)i - 1) * sizeof m->rooms[0]);
  m->n_rooms--;
  tell_room(s, key, "left", json_pack("{s:s, s:s, s:s}", "room", room, "nick", m->nick,
                                      "reason", "left"));
  answer(ack, rooms_answer(m, room));
}

static void on_chat(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  member *m = dx_sio_socket_user(s);
  char key[ROOM_KEY_MAX];
  const char *room = room_arg(args, ack, "chat message ROOM TEXT", key);
  if (!room) return;
  const char *text = text_of(json_array_get(args, 1));
  if (!text)
    return fail(ack, "chat message ROOM TEXT: the text is a string of 1 to %d bytes",
                TEXT_MAX_BYTES);
  if (room_index(m, key) < 0) return fail(ack, "join room %s first", room);
  long long ts = now_ms();
  json_t *msg = json_pack("{s:s, s:s, s:s, s:I}", "room", room, "nick", m->nick, "text", text,
                          "ts", (json_int_t)ts);
  json_t *out = json_array();
  int r = msg && out && json_array_append(out, msg) == 0
              ? dx_sio_emit_to(dx_sio_socket_nsp(s), key, s, "chat message", out)
              : DX_ENOMEM;
  json_decref(msg);
  json_decref(out);
  if (r) return fail(ack, "not sent: %s", dx_strerror(r));
  answer(ack, json_pack("{s:b, s:s, s:I}", "ok", 1, "room", room, "ts", (json_int_t)ts));
}

static void on_nick(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  member *m = dx_sio_socket_user(s);
  const char *nick = name_of(json_array_get(args, 0));
  if (!nick) return fail(ack, "nick NAME: a nick is a string of 1 to 32 bytes without control characters");
  char was[sizeof m->nick];
  memcpy(was, m->nick, sizeof was);
  snprintf(m->nick, sizeof m->nick, "%s", nick);
  if (m->n_rooms && strcmp(was, nick)) {
    /* One emit for all its rooms: a member sharing several hears it once. */
    const char *keys[ROOMS_MAX];
    for (size_t i = 0; i < m->n_rooms; i++) keys[i] = m->rooms[i];
    dx_sio_target t = {keys, m->n_rooms, NULL, 0, s};
    json_t *out = json_pack("[{s:s, s:s}]", "nick", nick, "was", was);
    if (out) dx_sio_broadcast(dx_sio_socket_nsp(s), &t, "nick", out);
    json_decref(out);
  }
  answer(ack, json_pack("{s:b, s:s, s:s}", "ok", 1, "nick", nick, "was", was));
}

static void on_quit(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)args, (void)ud;
  member *m = dx_sio_socket_user(s);
  m->quit = true;
  /* The ack is queued ahead of the DISCONNECT, so the client has it first. */
  answer(ack, json_pack("{s:b}", "ok", 1));
  dx_sio_disconnect(s, 0); /* s and m are gone once it returns */
}

/* "*": every event without a handler of its own (args[0] is its name). */
static void on_other(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)s, (void)ud, (void)args;
  fail(ack, "unknown event: /chat takes join, leave, chat message, nick and quit");
}

/* ---- sockets ------------------------------------------------------------ */

static void log_line(const member *m, const dx_sio_socket *s, const char *what,
                     const char *key, const char *value) {
  if (m->quiet) return;
  /* Several loop threads log: hold stderr's lock for the whole line. */
  flockfile(stderr);
  fprintf(stderr, "sio: %s %s id=%s nick=\"", what, dx_sio_nsp_name(dx_sio_socket_nsp(s)),
          dx_sio_socket_id(s));
  cli_put_escaped(stderr, m->nick);
  fprintf(stderr, "\" %s=\"", key);
  cli_put_escaped(stderr, value);
  fputs("\"\n", stderr);
  funlockfile(stderr);
}

static void on_disconnect(dx_sio_socket *s, dx_sio_reason reason, void *ud) {
  (void)ud;
  member *m = dx_sio_socket_user(s);
  if (!m) return;
  const char *why = m->quit ? "quit" : dx_sio_reason_name(reason);
  /* At shutdown everyone goes at once: nobody is left to tell. */
  for (size_t i = 0; reason != DX_SIO_SERVER_SHUTTING_DOWN && i < m->n_rooms; i++)
    tell_room(s, m->rooms[i], "left", json_pack("{s:s, s:s, s:s}", "room", room_name(m->rooms[i]),
                                                "nick", m->nick, "reason", why));
  log_line(m, s, "disconnect", "reason", why);
  dx_sio_socket_set_user(s, NULL);
  free(m);
}

static int on_auth(dx_sio_socket *s, const json_t *auth, const char **message, json_t **data,
                   void *ud) {
  (void)s, (void)ud;
  const json_t *nick = json_object_get(auth, "nick");
  if (!nick || json_is_null(nick) || name_of(nick)) return 0;
  *message = "invalid nick";
  *data = json_pack("{s:s}", "reason",
                    "a nick is a string of 1 to 32 bytes without control characters");
  return 1;
}

static void on_connection(dx_sio_socket *s, const json_t *auth, void *ud) {
  member *m = calloc(1, sizeof *m);
  if (!m) {
    dx_sio_disconnect(s, 0);
    return;
  }
  m->quiet = *(const bool *)ud;
  const char *nick = name_of(json_object_get(auth, "nick"));
  if (nick) snprintf(m->nick, sizeof m->nick, "%s", nick);
  else snprintf(m->nick, sizeof m->nick, "guest-%.4s", dx_sio_socket_id(s));
  dx_sio_socket_set_user(s, m);
  dx_sio_socket_on_disconnect(s, on_disconnect, NULL);
  static const struct {
    const char *event;
    dx_sio_on_event cb;
  } events[] = {{"join", on_join}, {"leave", on_leave}, {"chat message", on_chat},
                {"nick", on_nick}, {"quit", on_quit},   {"*", on_other}};
  for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
    if (dx_sio_on(s, events[i].event, events[i].cb, NULL)) {
      dx_sio_disconnect(s, 0); /* out of memory: on_disconnect frees m */
      return;
    }
  log_line(m, s, "connect", "transport", dx_sio_socket_transport(s));
  json_t *hello = json_pack("[{s:s}]", "nick", m->nick);
  if (hello) dx_sio_emit(s, "welcome", hello);
  json_decref(hello);
}

dx_sio *serve_sio_new(dx_loop *loop, dx_hub *hub, bool quiet) {
  dx_sio *io = dx_sio_new(loop, NULL);
  dx_sio_nsp *chat = io ? dx_sio_of(io, "/chat") : NULL;
  if (!chat) {
    cli_error("serve", "--socketio: out of memory");
    dx_sio_free(io);
    return NULL;
  }
  int r = hub ? dx_sio_use_hub(io, hub) : 0;
  if (r) {
    cli_error("serve", "--socketio: cannot share rooms between threads: %s", dx_strerror(r));
    dx_sio_free(io);
    return NULL;
  }
  dx_sio_nsp_on_auth(chat, on_auth, NULL);
  dx_sio_nsp_on_connection(chat, on_connection, (void *)(quiet ? &hushed : &loud));
  return io;
}

void serve_sio_check_page(const char *static_dir) {
  if (!static_dir) return;
  char page[4096], bundle[4096];
  snprintf(page, sizeof page, "%s/" PAGE_DIR "/index.html", static_dir);
  snprintf(bundle, sizeof bundle, "%s/" PAGE_DIR "/" BUNDLE, static_dir);
  if (access(page, R_OK) || !access(bundle, R_OK)) return;
  fprintf(stderr,
          "serve: note: the Socket.IO page (%s/" PAGE_DIR "/) needs the official client, and "
          "%s is missing: run `npm ci` in %s/" PAGE_DIR " (./scripts/serve --socketio does it)\n",
          static_dir, bundle, static_dir);
}
