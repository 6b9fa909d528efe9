/* The client endpoint: ws:// URLs, the non-blocking connect, and the
 * client side of the opening handshake. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "endpoint.h"
#include "net/resolve.h"
#include "proto/handshake.h"
#include "proto/url.h"

/* A client connection owns its endpoint (there is no server to share one);
 * the endpoint comes first so conn.c can free it through c->ep. */
typedef struct dx__client_ep {
  dx__endpoint ep;
  char key[DX__WS_KEY_LEN + 1];
  dx_client *reconnecting; /* the reconnecting client this belongs to, if any */
} dx__client_ep;

/* The response head cannot be taken: the status is the one a server would
 * answer with; a client has no one to tell but its application. */
static void client_refuse(dx_conn *c, int status, const char *why) {
  (void)status;
  dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_ABNORMAL, why);
}

/* The server's Sec-WebSocket-Extensions against our offer. 0, or -1 when
 * the connection was failed. */
static int accept_extensions(dx_conn *c, const dx__http_response *res) {
  const dx_options *opt = &c->ep->opt;
  const char *vals[16];
  size_t lens[16], n = 0;
  int too_many = 0;
  for (size_t i = 0; i < res->num_headers; i++) {
    const dx__http_header *h = &res->headers[i];
    if (h->name_len == 24 && !strncasecmp(h->name, "Sec-WebSocket-Extensions", 24)) {
      if (n == sizeof vals / sizeof vals[0]) {
        too_many = 1;
        break;
      }
      vals[n] = h->value;
      lens[n++] = h->value_len;
    }
  }
  if (!n) return 0;
  char why[160] = "Sec-WebSocket-Extensions: the server chose an extension we did not offer";
  dx__pmd_params params;
  int r = DX_EHANDSHAKE;
  /* A line left unchecked could name an extension we did not offer (RFC
   * 6455 §4.1: the client must fail then), so more lines than we look at
   * fail the connection; a real answer, naming one extension, needs one. */
  if (too_many)
    snprintf(why, sizeof why, "more than 16 Sec-WebSocket-Extensions headers");
  else if (opt->pmd.enabled)
    r = dx__pmd_client_verify(&opt->pmd, vals, lens, n, &params, why, sizeof why);
  if (r < 0) {
    /* RFC 6455 §9.1: the client fails the connection; 1010 names what went
     * wrong (the extension), though on the wire nothing is sent yet. */
    dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_EXTENSION, why);
    return -1;
  }
  if (r == 1) {
    dx__pmd *pmd = dx__pmd_new(&params, &opt->pmd, 0, &dx__alloc_std);
    if (!pmd) {
      dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_ABNORMAL, "out of memory");
      return -1;
    }
    dx__session_set_pmd(&c->sess, pmd);
  }
  return 0;
}

static int client_on_head(dx_conn *c, const char *head, size_t len) {
  dx__http_response res;
  char why[160];
  if (dx__http_parse_response(head, len, &res) != 0) {
    dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_ABNORMAL,
                    "malformed HTTP response from the server");
    return -1;
  }
  const dx__client_ep *cep = (const dx__client_ep *)c->ep;
  if (dx__ws_check_response(&res, cep->key, why, sizeof why) != 0) {
    if (res.status != 101) c->http_status = (int16_t)res.status;
    dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_ABNORMAL, why);
    return -1;
  }
  const char *proto;
  size_t proto_len;
  const dx__strlist *offered = &c->ep->opt.protocols;
  if (dx__ws_check_protocol(&res, offered->p, offered->len, &proto, &proto_len, why,
                            sizeof why)) {
    dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_PROTOCOL_ERROR, why);
    return -1;
  }
  if (proto && dx__conn_set_protocol(c, proto, proto_len)) {
    dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_ABNORMAL, "out of memory");
    return -1;
  }
  return accept_extensions(c, &res);
}

static int is_address_literal(const char *host) {
  unsigned char a[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* "connect to ADDR: ERROR", naming the last address tried, and how many
 * were tried when there were several. */
static void connect_failure(const dx__endpoint *ep, int err, char *buf, size_t cap) {
  if (!ep->cur_addr) {
    snprintf(buf, cap, "connect: %s", strerror(err));
    return;
  }
  char addr[64];
  dx__tcp_addr_text(ep->cur_addr->ai_addr, addr, sizeof addr);
  int tried = 1;
  for (const struct addrinfo *a = ep->addrs; a && a != ep->cur_addr; a = a->ai_next) tried++;
  int n = snprintf(buf, cap, "connect to %s: %s", addr, strerror(err));
  if (tried > 1 && n > 0 && (size_t)n < cap)
    snprintf(buf + n, cap - (size_t)n, " (%d addresses tried)", tried);
}

/* Moves a connecting client to a socket for the next address. The new
 * socket takes over the old one's descriptor number (dup3), so the
 * transport, TLS state included, needs no change. 0, or -1 with errno. */
static int switch_socket(dx_conn *c, int fd) {
  dx__io_stop(dx__conn_loop(c), &c->tr.io);
  int r = dup3(fd, c->tr.io.fd, O_CLOEXEC);
  int e = errno;
  close(fd);
  if (r < 0 || dx__io_start(dx__conn_loop(c), &c->tr.io, EPOLLOUT)) {
    if (r < 0) errno = e;
    return -1;
  }
  return 0;
}

/* While addresses are left to try, an attempt that neither connects nor
 * fails (its SYN is dropped: a black-holed route, a full backlog) is
 * abandoned after its share of the handshake timeout, so every address
 * gets a turn before that timeout ends the whole attempt. The heartbeat
 * timer is free until the connection opens. */
static void arm_attempt_timer(dx_conn *c) {
  const dx__endpoint *ep = c->ep;
  if (!ep->next_addr) {
    dx__timer_stop(dx__conn_loop(c), &c->hb_timer);
    return;
  }
  unsigned n = 0;
  for (const struct addrinfo *a = ep->addrs; a; a = a->ai_next) n++;
  uint32_t total = ep->opt.handshake_timeout_ms ? ep->opt.handshake_timeout_ms : 10000;
  uint32_t slice = total / n;
  dx__timer_start(dx__conn_loop(c), &c->hb_timer, slice < 250 ? 250 : slice);
}

/* Starts a connect to the next address left. A name with several
 * addresses (localhost: ::1 and 127.0.0.1) is tried address by address, in
 * the resolver's order, until one answers; the handshake timeout bounds the
 * whole attempt. With none left, fails the connection naming the last
 * address tried and err, its error. */
static void connect_next(dx_conn *c, int err) {
  dx__endpoint *ep = (dx__endpoint *)c->ep;
  while (ep->next_addr) {
    int fd = dx__tcp_connect_next(&ep->next_addr, &ep->cur_addr);
    if (fd >= 0 && switch_socket(c, fd) == 0) {
      arm_attempt_timer(c);
      return;
    }
    err = errno;
  }
  char why[200];
  connect_failure(ep, err, why, sizeof why);
  dx__conn_finish(c, DX_WHY_TRANSPORT_ERROR, DX_CLOSE_ABNORMAL, why);
}

/* The resolver's answer is in (the connection's descriptor, until now a
 * copy of the request's eventfd, became readable). */
static void resolved(dx_conn *c) {
  dx__endpoint *ep = (dx__endpoint *)c->ep;
  char why[300];
  int r = dx__resolve_result(ep->resolving, &ep->addrs, why, sizeof why);
  dx__resolve_release(ep->resolving);
  ep->resolving = NULL;
  if (r) {
    dx__conn_finish(c, DX_WHY_TRANSPORT_ERROR, DX_CLOSE_ABNORMAL, why);
    return;
  }
  ep->next_addr = ep->addrs;
  connect_next(c, EADDRNOTAVAIL);
}

static void client_attempt_expired(dx_conn *c) { connect_next(c, ETIMEDOUT); }

static void client_connected(dx_conn *c) {
  if (c->ep->resolving) {
    resolved(c);
    return;
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->tr.io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err) {
    connect_next(c, err);
    return;
  }
  c->connecting = 0;
  dx__timer_stop(dx__conn_loop(c), &c->hb_timer);
  dx__io_update(dx__conn_loop(c), &c->tr.io, EPOLLIN);
  dx__conn_want_flush(c); /* the upgrade request is queued */
}

/* What a client connection asks of its endpoint (endpoint.h). */
static const dx__conn_owner client_owner = {
    .role = DX__ROLE_CLIENT,
    .closes_first = 0,
    .held_from_start = 1, /* dx_connect returned it */
    .conn_owns_endpoint = 1,
    .head_name = "response",
    .head = client_on_head,
    .refuse = client_refuse,
    .connected = client_connected,
    .attempt_expired = client_attempt_expired,
};

dx_client *dx_conn_client(const dx_conn *c) {
  return c->ep->owner == &client_owner ? ((const dx__client_ep *)c->ep)->reconnecting : NULL;
}

/* The upgrade request, in a buffer sized from what it carries (every
 * subprotocol offered, however many: none is ever cut short). Returns it
 * (the caller frees it) with its length in *n; NULL with *n 0 when out of
 * memory, NULL with *n 1 when a part cannot go in a request head. */
static char *build_request(const dx_options *opt, const char *host_hdr, const char *path,
                           const char *key, size_t *n) {
  char ext[256] = "";
  if (opt->pmd.enabled) dx__pmd_client_offer(&opt->pmd, ext, sizeof ext);
  /* The subprotocols as a comma list: each name and ", ". */
  size_t pcap = 1;
  for (size_t i = 0; i < opt->protocols.len; i += strlen(opt->protocols.p + i) + 1)
    pcap += strlen(opt->protocols.p + i) + 2;
  size_t cap = 256 + strlen(host_hdr) + strlen(path) + DX__WS_KEY_LEN + pcap + sizeof ext;
  char *protos = malloc(pcap), *req = malloc(cap);
  *n = 0;
  if (protos && req) {
    size_t pn = 0;
    protos[0] = '\0';
    for (size_t i = 0; i < opt->protocols.len; i += strlen(opt->protocols.p + i) + 1)
      pn += (size_t)snprintf(protos + pn, pcap - pn, "%s%s", pn ? ", " : "",
                             opt->protocols.p + i);
    *n = dx__ws_build_request(req, cap, host_hdr, path, key, protos, ext);
    if (!*n) {
      free(req);
      req = NULL;
      *n = 1;
    }
  } else {
    free(req);
    req = NULL;
  }
  free(protos);
  return req;
}

static void free_client(dx_conn *c, dx__client_ep *cep, char *path) {
  if (cep) dx__endpoint_deinit(&cep->ep);
  free(c), free(cep), free(path);
}

int dx_connect(dx_loop *loop, const char *url, const dx_options *o, dx_conn **out) {
  return dx__connect(loop, url, o, NULL, out);
}

int dx__connect(dx_loop *loop, const char *url, const dx_options *o, dx_client *reconnecting,
                dx_conn **out) {
  if (!loop || !url || !out) return DX_EINVAL;
  dx__set_last_error("");
  dx__url u;
  char why[300];
  int r = dx__url_parse(url, &u, why, sizeof why);
  if (r) {
    dx__set_last_error(why);
    return r;
  }
  char path[2048];
  int pn = snprintf(path, sizeof path, "%s%s", *u.path == '/' ? "" : "/", u.path);
  if (pn < 0 || (size_t)pn >= sizeof path) return DX_EURL;

  dx_conn *c = calloc(1, sizeof *c);
  dx__client_ep *cep = calloc(1, sizeof *cep);
  char *path_copy = strdup(path);
  char err[256] = "out of memory";
  if (!c || !cep || !path_copy ||
      dx__endpoint_init(&cep->ep, o, &client_owner, err, sizeof err)) {
    free(c), free(cep), free(path_copy);
    dx__set_last_error(err);
    return DX_ENOMEM;
  }
  cep->ep.loop = loop;
  cep->reconnecting = reconnecting;
  if (u.tls) {
    const dx_options *eo = &cep->ep.opt;
    int code;
    cep->ep.tls = dx__tls_client_ctx(eo->tls_ca, eo->tls_insecure, err, sizeof err, &code);
    if (!cep->ep.tls) {
      dx__set_last_error(err);
      free_client(c, cep, path_copy);
      return code;
    }
  }
  uint8_t raw[16];
  dx__random(NULL, raw, sizeof raw);
  dx__ws_make_key(raw, cep->key);

  size_t n;
  char *req = build_request(&cep->ep.opt, u.host_hdr, path, cep->key, &n);
  if (!req) {
    dx__set_last_error(n ? "the host or path cannot go in a request" : "out of memory");
    free_client(c, cep, path_copy);
    return n ? DX_EURL : DX_ENOMEM;
  }
  char msg[400];
  dx__endpoint *ep = &cep->ep;
  /* A name is resolved off the loop's thread, so a slow DNS server stalls
   * only this connection; an address literal needs no resolver, and with no
   * thread to be had we resolve here. */
  int fd = -1;
  if (!is_address_literal(u.host)) ep->resolving = dx__resolve_start(u.host, u.port, &fd);
  if (!ep->resolving) fd = dx__tcp_resolve(u.host, u.port, &ep->addrs, msg, sizeof msg);
  if (!ep->resolving && fd == 0) {
    ep->next_addr = ep->addrs;
    fd = dx__tcp_connect_next(&ep->next_addr, &ep->cur_addr);
    if (fd < 0) connect_failure(ep, errno, msg, sizeof msg);
  }
  if (fd < 0) {
    dx__set_last_error(msg);
    free(req);
    free_client(c, cep, path_copy);
    return fd;
  }
  c->connecting = 1;
  c->path = path_copy;
  /* While resolving, the descriptor is the resolver's eventfd (readable
   * when the answer is in), else the connecting socket (writable when
   * connected). */
  uint32_t events = ep->resolving ? EPOLLIN : EPOLLOUT;
  int start_rc = dx__conn_start(c, loop, &cep->ep, fd, events, u.host);
  int started = start_rc == 0;
  int queued = started && dx__session_queue_raw(&c->sess, req, n) == 0;
  free(req);
  if (!queued) {
    /* Undo by hand: the header promises no callback for a failed call. */
    if (started) {
      dx__io_stop(loop, &c->tr.io);
      dx__timer_stop(loop, &c->timer);
      dx__timer_unreserve(loop, 2);
      dx__handle_remove(loop, &c->handle);
      dx__loop_unref(loop);
    }
    dx__session_deinit(&c->sess);
    if (c->tr.impl) dx__tr_ops(&c->tr)->close(&c->tr);
    else close(fd);
    free_client(c, cep, path_copy);
    return started ? DX_ENOMEM : start_rc;
  }
  if (!ep->resolving) arm_attempt_timer(c);
  *out = c;
  return 0;
}
