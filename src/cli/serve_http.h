/* duplex serve's HTTP routes, on the WebSocket port: /healthz (always),
 * /metrics (--metrics), /publish/<topic> (--publish-token), and static
 * files (--static DIR) for every other GET/HEAD path. */
#ifndef DUPLEX_CLI_SERVE_HTTP_H
#define DUPLEX_CLI_SERVE_HTTP_H
#include <stdbool.h>

#include <duplex.h>

typedef struct serve_http serve_http;

/* The routes' settings (strings borrowed for the life of the object;
 * static_dir is opened now). NULL after reporting why (cli_error). */
serve_http *serve_http_new(bool metrics, const char *publish_token, const char *static_dir);
/* --rooms' hub (borrowed; set before any worker serves): /publish
 * publishes on it, /metrics reports its counters. */
void serve_http_set_hub(serve_http *h, dx_hub *hub);
/* A worker's server, once created: /metrics sums over every one. Called on
 * the main thread while earlier workers may already serve. */
void serve_http_add_server(serve_http *h, dx_server *s);
/* From now on /healthz answers 503 (any thread). */
void serve_http_set_draining(serve_http *h);
/* Answers a request (on_http of every worker's server). */
void serve_http_handle(serve_http *h, dx_http_request *r);
/* After every server and loop was freed. */
void serve_http_free(serve_http *h);
#endif
