/* The few calls conn.c makes into the role-specific endpoints. */
#ifndef DX_SERVER_INTERNAL_H
#define DX_SERVER_INTERNAL_H
#include "duplex.h"

/* Server: forget a finished connection. */
void dx__server_detach(dx_server *s, dx_conn *c);
/* Server: answer the handshake with an HTTP error and close. */
void dx__server_refuse(dx_conn *c, int status, const char *why);
/* Client, while connecting: the resolver answered, or the non-blocking TCP
 * connect finished (well or not). */
void dx__client_connected(dx_conn *c);
/* Client, while connecting: this address took too long; try the next. */
void dx__client_attempt_expired(dx_conn *c);
#endif
