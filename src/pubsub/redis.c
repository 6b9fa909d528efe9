/* The Redis engine: carries the hub's topics to the other nodes through
 * Redis pub/sub, with hiredis's asynchronous API on the engine's own loop
 * (hiredis_loop.c), so nothing here ever blocks.
 *
 * The link is two connections to one Redis, made, authenticated, lost and
 * retried together:
 *   - `sub` subscribes: channel "dx:" + topic for each topic this node has
 *     subscribers for, and a channel of its own ("dx-node:" + node id) that
 *     it never leaves (see the note on hiredis 0.14 at on_sub_reply);
 *   - `pub` publishes (a subscribed connection may not), pipelined: hiredis
 *     appends each PUBLISH to its output buffer, and the loop writes all of
 *     one iteration's in one write when the socket is writable.
 * The link is UP once both have answered their AUTH/SELECT and a first
 * command (sub: SUBSCRIBE of its own channel; pub: PING); the topics are
 * subscribed again before that, on every (re)connect.
 *
 * Every message is an envelope: a version byte (1), the sending node's id
 * (8 random bytes), the type byte (DX_TEXT 1 / DX_BINARY 2), the payload.
 * A node skips its own messages when Redis echoes them (it delivered them
 * locally already) and counts and drops anything on its channels that is
 * not an envelope, or text that is not UTF-8.
 *
 * Faults: a failed attempt or a lost link frees both connections and
 * retries after a backoff (100 ms doubling to 5 s, +-25 % jitter); an
 * attempt that takes more than 5 s, or a PING unanswered for 10 s while
 * up, counts as failed. While not UP a publish is refused (DX_ECLOSED) and
 * counted; past DX__REDIS_MAX_PENDING bytes of unwritten output too
 * (DX_EBUFFER). Publishes handed to hiredis that Redis had not answered
 * when the link dropped are counted as unconfirmed. Each state change is
 * one line on stderr; repeated identical failures are not repeated. */
#include "pubsub/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "endpoint.h"
#include "net/loop.h"
#include "net/resolve.h"
#include "proto/utf8.h"
#include "pubsub/hiredis_loop.h"
#include "pubsub/redis_url.h"

#define PREFIX "dx:"
#define PREFIX_LEN 3
#define NODE_CHANNEL "dx-node:" /* + 16 hex digits: outside PREFIX's names */
#define ENV_VERSION 1
#define ENV_HDR 10 /* version, node id (8), type */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ATTEMPT_MS 5000
#define PING_MS 10000

/* A topic this node wants (the hub has subscribers) or is still leaving. */
typedef struct topic {
  struct topic *next; /* hash chain */
  uint64_t hash;
  uint8_t wanted;     /* the hub has subscribers for it */
  uint8_t state;      /* on the current link: OFF, ON (SUBSCRIBE sent), LEAVING */
  size_t len;
  char name[];
} topic;
enum { T_OFF, T_ON, T_LEAVING };

typedef struct dx__redis {
  dx__engine base; /* first: the hub holds &base */
  dx_loop *loop;   /* NULL once the loop was freed under us (handle cut) */
  dx__handle handle;
  dx__engine_sink sink;
  dx__redis_url url;
  char where[300]; /* host:port, for the log */
  uint8_t node[8];
  char node_ch[sizeof NODE_CHANNEL + 16];
  int state;
  redisAsyncContext *sub, *pub; /* the current link's; NULL when none */
  uint8_t sub_ready, pub_ready, ping_out;
  uint8_t attempting; /* an attempt is in progress: the timer is its deadline */
  uint8_t closing, failing;
  dx__resolve *resolving;
  dx__io rio; /* the resolver's descriptor while resolving */
  unsigned addr_idx; /* which of a name's addresses the next attempt uses */
  dx__timer timer;   /* DOWN: the next attempt; attempting: its deadline */
  dx__timer health;  /* UP: the PING watchdog */
  uint32_t backoff_ms;
  uint64_t rng;
  topic **buckets;
  size_t nbuckets, ntopics, nwanted;
  uint8_t *buf; /* a PUBLISH command being built */
  size_t cap;
  dx__redis_stats st;
  /* what the last "link came up" line covered, so that the next one says
   * what was lost since */
  uint64_t said_down, said_full, said_unconfirmed;
  uint64_t said_full_at; /* loop time of the last "not keeping up" line */
  uint8_t said_malformed, said_refused; /* once per link */
  char said_fail[200]; /* the last failure logged, not to repeat it */
} dx__redis;

static void link_fail(dx__redis *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One line on stderr, in one write so lines from several threads or
 * processes do not mix. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[600];
  int n = snprintf(line, sizeof line, "redis: ");
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  n += m < 0 ? 0 : m > (int)(sizeof line - (size_t)n - 2) ? (int)(sizeof line - (size_t)n - 2) : m;
  line[n++] = '\n';
  ssize_t w = write(2, line, (size_t)n);
  (void)w;
}

static void set_state(dx__redis *e, int s) {
  if (e->state == s) return;
  e->state = s;
  if (!e->closing && e->sink.state) e->sink.state(e->sink.hub, s);
}

/* ---- the topic set -------------------------------------------------------- */

static uint64_t hash_of(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
  return h;
}

static topic *topic_find(dx__redis *e, const char *name, size_t len) {
  if (!e->nbuckets) return NULL;
  uint64_t h = hash_of(name, len);
  for (topic *t = e->buckets[h & (e->nbuckets - 1)]; t; t = t->next)
    if (t->hash == h && t->len == len && !memcmp(t->name, name, len)) return t;
  return NULL;
}

static topic *topic_add(dx__redis *e, const char *name, size_t len) {
  if (e->ntopics >= e->nbuckets) {
    size_t n = e->nbuckets ? e->nbuckets * 2 : 64;
    topic **b = calloc(n, sizeof *b);
    if (!b) return NULL;
    for (size_t i = 0; i < e->nbuckets; i++) {
      for (topic *t = e->buckets[i], *next; t; t = next) {
        next = t->next;
        t->next = b[t->hash & (n - 1)];
        b[t->hash & (n - 1)] = t;
      }
    }
    free(e->buckets);
    e->buckets = b;
    e->nbuckets = n;
  }
  topic *t = malloc(sizeof *t + len);
  if (!t) return NULL;
  t->hash = hash_of(name, len);
  t->wanted = 0;
  t->state = T_OFF;
  t->len = len;
  memcpy(t->name, name, len);
  topic **b = &e->buckets[t->hash & (e->nbuckets - 1)];
  t->next = *b;
  *b = t;
  e->ntopics++;
  return t;
}

static void topic_remove(dx__redis *e, topic *t) {
  for (topic **p = &e->buckets[t->hash & (e->nbuckets - 1)]; *p; p = &(*p)->next) {
    if (*p == t) {
      *p = t->next;
      free(t);
      e->ntopics--;
      return;
    }
  }
}

/* Calls fn on every topic; fn may remove the one it is given. */
static void topic_each(dx__redis *e, void (*fn)(dx__redis *e, topic *t)) {
  for (size_t i = 0; i < e->nbuckets; i++) {
    for (topic *t = e->buckets[i], *next; t; t = next) {
      next = t->next;
      fn(e, t);
    }
  }
}

/* ---- commands on the subscriber connection ------------------------------- */

static void on_sub_reply(redisAsyncContext *ac, void *r, void *priv);

/* SUBSCRIBE or UNSUBSCRIBE "dx:" + name (or a channel as it is, with no
 * prefix), binary-safe. hiredis keeps the channel's callback itself. */
static void sub_command(dx__redis *e, const char *verb, const char *name, size_t len,
                        int prefix) {
  char ch[PREFIX_LEN + DX_TOPIC_MAX];
  size_t n = 0;
  if (prefix) {
    memcpy(ch, PREFIX, PREFIX_LEN);
    n = PREFIX_LEN;
  }
  memcpy(ch + n, name, len);
  const char *argv[2] = {verb, ch};
  const size_t lens[2] = {strlen(verb), n + len};
  redisAsyncCommandArgv(e->sub, on_sub_reply, NULL, 2, argv, lens);
}

static void topic_join(dx__redis *e, topic *t) {
  sub_command(e, "SUBSCRIBE", t->name, t->len, 1);
  t->state = T_ON;
}

/* ---- the link --------------------------------------------------------------- */

static void on_setup_reply(redisAsyncContext *ac, void *r, void *priv);
/* What on_setup_reply is told it answers (hiredis wants a void *). */
static char tag_auth[] = "AUTH", tag_select[] = "SELECT";
static void on_pong(redisAsyncContext *ac, void *r, void *priv);

/* The link's state on the topics is gone with it: what no subscriber wants
 * any more is forgotten, the rest is subscribed again on the next link. */
static void topic_reset(dx__redis *e, topic *t) {
  t->state = T_OFF;
  if (!t->wanted) topic_remove(e, t);
}

static void stop_resolving(dx__redis *e) {
  if (!e->resolving) return;
  dx__io_stop(e->loop, &e->rio);
  close(e->rio.fd);
  dx__resolve_release(e->resolving);
  e->resolving = NULL;
}

/* Frees the current link's connections (each forgotten first, so the
 * callbacks hiredis runs while freeing it see it is not current). hiredis
 * defers the free of one whose callback is running until it returns. */
static void drop_link(dx__redis *e) {
  redisAsyncContext *s = e->sub, *p = e->pub;
  e->sub = e->pub = NULL;
  e->sub_ready = e->pub_ready = e->ping_out = 0;
  e->attempting = 0;
  if (s) redisAsyncFree(s);
  if (p) redisAsyncFree(p);
  stop_resolving(e);
  dx__timer_stop(e->loop, &e->health);
  dx__timer_stop(e->loop, &e->timer);
  topic_each(e, topic_reset);
}

static uint32_t next_backoff(dx__redis *e) {
  uint32_t base = e->backoff_ms;
  e->backoff_ms = base >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : base * 2;
  e->rng ^= e->rng << 13; /* xorshift64: jitter, so nodes do not retry in step */
  e->rng ^= e->rng >> 7;
  e->rng ^= e->rng << 17;
  return base * 3 / 4 + (uint32_t)(e->rng % (base / 2 + 1));
}

/* The attempt failed or the link dropped: free it, go DOWN, retry later. */
static void link_fail(dx__redis *e, const char *fmt, ...) {
  if (e->closing || e->failing) return;
  e->failing = 1;
  char why[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  int was_up = e->state == DX__ENGINE_UP;
  drop_link(e);
  snprintf(e->st.last_error, sizeof e->st.last_error, "%s", why);
  uint32_t delay = next_backoff(e);
  e->addr_idx++;
  if (was_up) {
    say("link to %s lost (%s); retrying in %.1f s", e->where, why, delay / 1000.0);
  } else if (strcmp(why, e->said_fail)) {
    say("cannot connect to %s (%s); retrying in %.1f s, then with backoff up to %d s", e->where,
        why, delay / 1000.0, BACKOFF_MAX_MS / 1000);
  }
  snprintf(e->said_fail, sizeof e->said_fail, "%s", why);
  set_state(e, DX__ENGINE_DOWN);
  dx__timer_start(e->loop, &e->timer, delay); /* a reserved slot: cannot fail */
  e->failing = 0;
}

/* The connection was the current link's: forget it (hiredis is freeing it). */
static int forget(dx__redis *e, const redisAsyncContext *ac) {
  if (ac == e->sub) e->sub = NULL;
  else if (ac == e->pub) e->pub = NULL;
  else return 0;
  return 1;
}

static void on_connect(const redisAsyncContext *ac, int status) {
  dx__redis *e = ac->data;
  if (status == REDIS_OK) {
    /* A peer that vanishes (power, partition) sends no reset: keepalive
     * finds an idle one within ~25 s, TCP_USER_TIMEOUT one with unsent
     * data within 20 s. */
    int fd = ac->c.fd, on = 1, idle = 10, intvl = 5, cnt = 3;
    unsigned tmo = 20000;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &tmo, sizeof tmo);
    return;
  }
  /* hiredis frees ac when this returns. */
  if (!e->closing && forget(e, ac)) link_fail(e, "%s", ac->c.errstr[0] ? ac->c.errstr : "connect failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  dx__redis *e = ac->data;
  if (!e->closing && forget(e, ac))
    link_fail(e, "%s", ac->c.errstr[0] ? ac->c.errstr : "connection closed");
}

/* A connection to ip with this engine's callbacks, on its loop; NULL with
 * the reason in why. */
static redisAsyncContext *open_conn(dx__redis *e, const char *ip, char *why, size_t cap) {
  redisAsyncContext *ac = redisAsyncConnect(ip, (int)e->url.port);
  if (!ac) {
    snprintf(why, cap, "out of memory");
    return NULL;
  }
  if (ac->err || dx__hiredis_attach(e->loop, ac)) {
    snprintf(why, cap, "%s", ac->err ? ac->errstr : "out of memory");
    redisAsyncFree(ac);
    return NULL;
  }
  ac->data = e;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  return ac;
}

/* AUTH and SELECT, first on each connection (hiredis sends commands in
 * order, and buffers them until the connect completes). */
static void setup(dx__redis *e, redisAsyncContext *ac) {
  const dx__redis_url *u = &e->url;
  if (u->has_pass) {
    const char *argv[3] = {"AUTH", u->user, u->pass};
    size_t lens[3] = {4, strlen(u->user), strlen(u->pass)};
    if (u->user[0]) redisAsyncCommandArgv(ac, on_setup_reply, tag_auth, 3, argv, lens);
    else {
      argv[1] = u->pass;
      lens[1] = lens[2];
      redisAsyncCommandArgv(ac, on_setup_reply, tag_auth, 2, argv, lens);
    }
  }
  if (u->db) redisAsyncCommand(ac, on_setup_reply, tag_select, "SELECT %u", u->db);
}

static void connect_to(dx__redis *e, const char *ip) {
  char why[200];
  redisAsyncContext *s = open_conn(e, ip, why, sizeof why);
  redisAsyncContext *p = s ? open_conn(e, ip, why, sizeof why) : NULL;
  if (!p) {
    if (s) redisAsyncFree(s);
    link_fail(e, "%s", why);
    return;
  }
  e->sub = s;
  e->pub = p;
  setup(e, s);
  /* The topics before the node's own channel: once Redis has answered
   * that one, it has subscribed them all, and the link is UP. */
  for (size_t i = 0; i < e->nbuckets; i++)
    for (topic *t = e->buckets[i]; t; t = t->next)
      if (t->wanted) topic_join(e, t);
  sub_command(e, "SUBSCRIBE", e->node_ch, strlen(e->node_ch), 0);
  setup(e, p);
  redisAsyncCommand(p, on_pong, NULL, "PING");
}

static void on_resolved(dx__io *io, uint32_t events) {
  (void)events;
  dx__redis *e = (dx__redis *)((char *)io - offsetof(dx__redis, rio));
  struct addrinfo *res = NULL;
  char why[300], ip[INET6_ADDRSTRLEN];
  int r = dx__resolve_result(e->resolving, &res, why, sizeof why);
  stop_resolving(e);
  if (r) {
    link_fail(e, "%s", why);
    return;
  }
  /* A name with several addresses (localhost: ::1 and 127.0.0.1): each
   * attempt takes the next one, so one that does not answer is not tried
   * forever. */
  unsigned n = 0;
  for (struct addrinfo *a = res; a; a = a->ai_next) n++;
  struct addrinfo *a = res;
  for (unsigned i = e->addr_idx % n; i > 0; i--) a = a->ai_next;
  r = getnameinfo(a->ai_addr, a->ai_addrlen, ip, sizeof ip, NULL, 0, NI_NUMERICHOST);
  freeaddrinfo(res);
  if (r) link_fail(e, "cannot use the address of %s: %s", e->url.host, gai_strerror(r));
  else connect_to(e, ip);
}

static int is_address_literal(const char *host) {
  unsigned char a[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static void start_attempt(dx__redis *e) {
  e->st.attempts++;
  e->attempting = 1;
  set_state(e, DX__ENGINE_CONNECTING);
  dx__timer_start(e->loop, &e->timer, ATTEMPT_MS);
  if (is_address_literal(e->url.host)) {
    connect_to(e, e->url.host);
    return;
  }
  /* A name is resolved off the loop's thread (getaddrinfo may wait for a
   * DNS server for seconds). */
  int fd = -1;
  e->resolving = dx__resolve_start(e->url.host, e->url.port, &fd);
  if (!e->resolving) {
    link_fail(e, "cannot start resolving %s (out of memory or descriptors)", e->url.host);
    return;
  }
  e->rio.fd = fd;
  dx__io_set_cb(&e->rio, on_resolved);
  if (dx__io_start(e->loop, &e->rio, EPOLLIN)) {
    e->rio.events = 0;
    link_fail(e, "cannot watch the resolver's descriptor");
  }
}

static void on_timer(dx__timer *t) {
  dx__redis *e = (dx__redis *)((char *)t - offsetof(dx__redis, timer));
  if (!e->attempting) start_attempt(e);
  else link_fail(e, "no answer within %d s", ATTEMPT_MS / 1000);
}

static void on_health(dx__timer *t) {
  dx__redis *e = (dx__redis *)((char *)t - offsetof(dx__redis, health));
  if (e->ping_out) {
    link_fail(e, "Redis did not answer a PING within %d s", PING_MS / 1000);
    return;
  }
  e->ping_out = 1;
  redisAsyncCommand(e->pub, on_pong, NULL, "PING");
  dx__timer_start(e->loop, &e->health, PING_MS);
}

/* Both connections answered: the link is UP. Says what was lost while it
 * was not. */
static void maybe_up(dx__redis *e) {
  if (!e->sub_ready || !e->pub_ready || e->state == DX__ENGINE_UP) return;
  e->attempting = 0;
  dx__timer_stop(e->loop, &e->timer);
  e->backoff_ms = BACKOFF_MIN_MS;
  e->st.ups++;
  e->st.last_error[0] = 0;
  e->said_fail[0] = 0;
  e->said_malformed = e->said_refused = 0;
  say("connected to %s%s%s; %zu topic%s subscribed", e->where, e->url.user[0] ? " as " : "",
      e->url.user, e->nwanted, e->nwanted == 1 ? "" : "s");
  uint64_t down = e->st.lost_down - e->said_down, full = e->st.lost_full - e->said_full;
  uint64_t unconf = e->st.unconfirmed - e->said_unconfirmed;
  if (down)
    say("%llu message%s could not be published while the link was down (lost)",
        (unsigned long long)down, down == 1 ? "" : "s");
  if (full)
    say("%llu message%s refused while Redis was not keeping up (%zu MiB waited; lost)",
        (unsigned long long)full, full == 1 ? "" : "s", DX__REDIS_MAX_PENDING >> 20);
  if (unconf)
    say("%llu message%s sent before the link dropped had no answer from Redis (maybe lost)",
        (unsigned long long)unconf, unconf == 1 ? "" : "s");
  e->said_down = e->st.lost_down;
  e->said_full = e->st.lost_full;
  e->said_unconfirmed = e->st.unconfirmed;
  dx__timer_start(e->loop, &e->health, PING_MS);
  set_state(e, DX__ENGINE_UP);
}

/* AUTH or SELECT (priv names it) answered. */
static void on_setup_reply(redisAsyncContext *ac, void *r, void *priv) {
  dx__redis *e = ac->data;
  redisReply *rep = r;
  if (!rep || e->closing || (ac != e->sub && ac != e->pub)) return;
  if (rep->type != REDIS_REPLY_ERROR) return;
  if (priv == tag_auth) link_fail(e, "authentication failed: %s", rep->str);
  else link_fail(e, "%s failed: %s", (const char *)priv, rep->str);
}

static void on_pong(redisAsyncContext *ac, void *r, void *priv) {
  (void)priv;
  dx__redis *e = ac->data;
  redisReply *rep = r;
  if (!rep || e->closing || ac != e->pub) return;
  if (rep->type == REDIS_REPLY_ERROR) {
    link_fail(e, "%s", rep->str); /* NOAUTH, LOADING, ... */
    return;
  }
  e->ping_out = 0;
  e->pub_ready = 1;
  maybe_up(e);
}

static void on_pub_reply(redisAsyncContext *ac, void *r, void *priv) {
  (void)priv;
  dx__redis *e = ac->data;
  redisReply *rep = r;
  if (!rep) {
    e->st.unconfirmed++; /* the link dropped (or the engine closed) first */
  } else if (rep->type == REDIS_REPLY_ERROR) {
    e->st.refused++;
    if (!e->said_refused && !e->closing)
      say("Redis refused a PUBLISH: %s (counted; said once per link)", rep->str);
    e->said_refused = 1;
  } else {
    e->st.confirmed++;
  }
}

/* A message on one of our channels: deliver it unless it is our own or no
 * envelope. */
static void on_message(dx__redis *e, const redisReply *ch, const redisReply *msg) {
  if (ch->len < PREFIX_LEN || memcmp(ch->str, PREFIX, PREFIX_LEN)) return;
  const uint8_t *m = (const uint8_t *)msg->str;
  size_t n = msg->len;
  int ok = msg->type == REDIS_REPLY_STRING && n >= ENV_HDR && m[0] == ENV_VERSION &&
           (m[9] == DX_TEXT || m[9] == DX_BINARY);
  if (ok && !memcmp(m + 1, e->node, sizeof e->node)) {
    e->st.own++; /* delivered locally when it was published */
    return;
  }
  if (ok && m[9] == DX_TEXT) ok = dx__utf8_validate(m + ENV_HDR, n - ENV_HDR) == 0;
  if (!ok) {
    e->st.malformed++;
    if (!e->said_malformed)
      say("ignored a message on %.*s that is not a duplex envelope (counted; said once per link)",
          (int)(ch->len > 80 ? 80 : ch->len), ch->str);
    e->said_malformed = 1;
    return;
  }
  e->st.received++;
  e->sink.deliver(e->sink.hub, ch->str + PREFIX_LEN, ch->len - PREFIX_LEN, (dx_msg_type)m[9],
                  m + ENV_HDR, n - ENV_HDR);
}

/* Every reply of the subscriber connection: messages, and the
 * confirmations of SUBSCRIBE and UNSUBSCRIBE.
 *
 * hiredis 0.14 keeps one callback per channel and removes it when an
 * UNSUBSCRIBE is confirmed, even if a SUBSCRIBE for the same channel was
 * sent in between: the channel would then stay subscribed at Redis with
 * its messages dropped. So a topic is subscribed again only once its
 * UNSUBSCRIBE is confirmed (T_LEAVING until then). And when the count of
 * subscriptions Redis reports falls to 0, hiredis leaves subscribed mode
 * and aborts on the next confirmation; the node's own channel, never left,
 * keeps the count above 0. */
static void on_sub_reply(redisAsyncContext *ac, void *r, void *priv) {
  (void)priv;
  dx__redis *e = ac->data;
  redisReply *rep = r;
  if (!rep || e->closing || ac != e->sub) return;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
      rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
    return;
  const char *kind = rep->element[0]->str;
  const redisReply *ch = rep->element[1];
  if (!strcasecmp(kind, "message")) {
    on_message(e, ch, rep->element[2]);
    return;
  }
  if (ch->len == strlen(e->node_ch) && !memcmp(ch->str, e->node_ch, ch->len)) {
    if (!strcasecmp(kind, "subscribe")) {
      e->sub_ready = 1;
      maybe_up(e);
    }
    return;
  }
  if (strcasecmp(kind, "unsubscribe") || ch->len < PREFIX_LEN) return;
  topic *t = topic_find(e, ch->str + PREFIX_LEN, ch->len - PREFIX_LEN);
  if (!t || t->state != T_LEAVING) return;
  t->state = T_OFF;
  if (t->wanted) topic_join(e, t); /* a subscriber came back meanwhile */
  else topic_remove(e, t);
}

/* ---- the engine interface ------------------------------------------------- */

static int r_publish(dx__engine *base, const char *topic_name, size_t tlen, dx_msg_type type,
                     const uint8_t *data, size_t len) {
  dx__redis *e = (dx__redis *)base;
  if (tlen == 0 || tlen > DX_TOPIC_MAX || (type != DX_TEXT && type != DX_BINARY))
    return DX_EINVAL;
  if (e->state != DX__ENGINE_UP || !e->pub) {
    e->st.lost_down++;
    return DX_ECLOSED;
  }
  /* The command in RESP, built here and appended by hiredis as it is: one
   * copy of the payload, not the two of redisAsyncCommandArgv plus the
   * envelope's. */
  char head[96];
  int hn = snprintf(head, sizeof head, "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n", PREFIX_LEN + tlen);
  char mid[32];
  int mn = snprintf(mid, sizeof mid, "\r\n$%zu\r\n", ENV_HDR + len);
  size_t n = (size_t)hn + PREFIX_LEN + tlen + (size_t)mn + ENV_HDR + len + 2;
  /* Refused once the bound is reached, not when this message would pass
   * it: one message larger than the bound (a client may send up to its
   * max_message) would otherwise never cross, even to an idle Redis, and
   * be reported as Redis not keeping up. Memory stays bounded: the bound
   * plus one message, whose size the caller bounds. */
  if (sdslen(e->pub->c.obuf) >= DX__REDIS_MAX_PENDING) {
    e->st.lost_full++;
    /* Said when it starts, at most every 10 s under a sustained overload. */
    uint64_t now = dx__loop_now(e->loop);
    if (!e->said_full_at || now - e->said_full_at >= 10000) {
      say("%s is not keeping up: %zu MiB of output wait for it; refusing messages "
          "(lost, counted) until it drains; %llu refused so far",
          e->where, DX__REDIS_MAX_PENDING >> 20, (unsigned long long)e->st.lost_full);
      e->said_full_at = now;
    }
    return DX_EBUFFER;
  }
  if (n > e->cap) {
    uint8_t *b = malloc(n);
    if (!b) return DX_ENOMEM;
    free(e->buf);
    e->buf = b;
    e->cap = n;
  }
  uint8_t *p = e->buf;
  memcpy(p, head, (size_t)hn), p += hn;
  memcpy(p, PREFIX, PREFIX_LEN), p += PREFIX_LEN;
  memcpy(p, topic_name, tlen), p += tlen;
  memcpy(p, mid, (size_t)mn), p += mn;
  *p++ = ENV_VERSION;
  memcpy(p, e->node, sizeof e->node), p += sizeof e->node;
  *p++ = (uint8_t)type;
  if (len) memcpy(p, data, len), p += len;
  *p++ = '\r';
  *p++ = '\n';
  int r = redisAsyncFormattedCommand(e->pub, on_pub_reply, NULL, (const char *)e->buf, n);
  if (e->cap > (1u << 20)) { /* one large message does not keep its buffer */
    free(e->buf);
    e->buf = NULL;
    e->cap = 0;
  }
  if (r != REDIS_OK) {
    e->st.lost_down++;
    return DX_ECLOSED;
  }
  e->st.published++;
  return 0;
}

static void r_subscribe(dx__engine *base, const char *name, size_t len) {
  dx__redis *e = (dx__redis *)base;
  if (len == 0 || len > DX_TOPIC_MAX) return;
  topic *t = topic_find(e, name, len);
  if (!t && !(t = topic_add(e, name, len))) {
    say("out of memory: topic %.*s not subscribed on Redis", (int)(len > 80 ? 80 : len), name);
    return;
  }
  if (t->wanted) return;
  t->wanted = 1;
  e->nwanted++;
  /* With no connection yet, the next link subscribes it; while leaving,
   * the confirmation of the UNSUBSCRIBE does (on_sub_reply). */
  if (e->sub && t->state == T_OFF) topic_join(e, t);
}

static void r_unsubscribe(dx__engine *base, const char *name, size_t len) {
  dx__redis *e = (dx__redis *)base;
  topic *t = len && len <= DX_TOPIC_MAX ? topic_find(e, name, len) : NULL;
  if (!t || !t->wanted) return;
  t->wanted = 0;
  e->nwanted--;
  if (e->sub && t->state == T_ON) {
    sub_command(e, "UNSUBSCRIBE", t->name, t->len, 1);
    t->state = T_LEAVING;
  } else if (t->state == T_OFF) {
    topic_remove(e, t);
  }
}

/* Ends the link and lets go of the loop, with no sink call: from r_free,
 * or from dx_loop_free (the handle's cut) when the loop goes first. */
static void detach(dx__redis *e) {
  if (!e->loop) return;
  e->closing = 1;
  drop_link(e);
  dx__timer_unreserve(e->loop, 2);
  dx__handle_remove(e->loop, &e->handle);
  e->loop = NULL;
}

/* The loop is being freed before the engine: the link ends, and the hub
 * learns that the loop it posts the engine's work to is going away. */
static void on_cut(dx__handle *h) {
  dx__redis *e = (dx__redis *)((char *)h - offsetof(dx__redis, handle));
  detach(e);
  if (e->sink.gone) e->sink.gone(e->sink.hub);
}

static void r_free(dx__engine *base) {
  dx__redis *e = (dx__redis *)base;
  detach(e);
  for (size_t i = 0; i < e->nbuckets; i++) {
    for (topic *t = e->buckets[i], *next; t; t = next) {
      next = t->next;
      free(t);
    }
  }
  free(e->buckets);
  free(e->buf);
  free(e);
}

static const dx__engine_ops redis_ops = {r_publish, r_subscribe, r_unsubscribe, r_free};

void dx__redis_engine_stats(dx__engine *base, dx__redis_stats *out) {
  dx__redis *e = (dx__redis *)base;
  *out = e->st;
  out->state = e->state;
  out->topics = e->nwanted;
}

dx__engine *dx__redis_engine_new(dx_loop *loop, const char *url, const dx__engine_sink *sink,
                                 int *err) {
  char why[300];
  dx__redis_url u;
  int r = DX_EINVAL;
  if (!loop || !url || !sink || !sink->deliver) snprintf(why, sizeof why, "no loop, URL or sink");
  else r = dx__redis_url_parse(url, &u, why, sizeof why);
  if (r) {
    dx__set_last_error(why);
    *err = r;
    return NULL;
  }
  dx__redis *e = calloc(1, sizeof *e);
  if (!e || dx__timer_reserve(loop, 2)) {
    free(e);
    e = NULL;
  } else if (dx__handle_add(loop, &e->handle, on_cut)) { /* no room for a kind */
    dx__timer_unreserve(loop, 2);
    free(e);
    e = NULL;
  }
  if (!e) {
    dx__set_last_error("out of memory");
    *err = DX_ENOMEM;
    return NULL;
  }
  e->base.ops = &redis_ops;
  e->loop = loop;
  e->sink = *sink;
  e->url = u;
  snprintf(e->where, sizeof e->where, strchr(u.host, ':') ? "[%s]:%u" : "%s:%u", u.host, u.port);
  /* The node id only has to differ from every other node's on this Redis:
   * 64 random bits. getrandom fails only before the kernel's pool is
   * seeded (early boot) or without the syscall; the clock, the address of
   * this engine and the pid then make a collision between two nodes
   * unlikely enough. */
  if (getrandom(e->node, sizeof e->node, GRND_NONBLOCK) != (ssize_t)sizeof e->node) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)e ^
                 ((uint64_t)getpid() << 48);
    memcpy(e->node, &x, sizeof x);
  }
  memcpy(e->node_ch, NODE_CHANNEL, sizeof NODE_CHANNEL - 1);
  for (size_t i = 0; i < sizeof e->node; i++)
    snprintf(e->node_ch + sizeof NODE_CHANNEL - 1 + 2 * i, 3, "%02x", e->node[i]);
  memcpy(&e->rng, e->node, sizeof e->rng);
  e->rng |= 1;
  e->backoff_ms = BACKOFF_MIN_MS;
  e->state = DX__ENGINE_CONNECTING;
  dx__timer_init(&e->timer, on_timer);
  dx__timer_init(&e->health, on_health);
  /* The first attempt starts on the loop's next iteration, so that no
   * sink call comes before this returns. */
  dx__timer_start(loop, &e->timer, 0);
  return &e->base;
}
