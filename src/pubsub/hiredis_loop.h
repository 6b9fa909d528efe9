/* hiredis's asynchronous API on a dx_loop: the five hooks a
 * redisAsyncContext calls (add/del read, add/del write, cleanup) mapped to
 * one epoll registration on the loop, so Redis runs on the loop's own
 * thread beside the connections, with no second loop and no thread. */
#ifndef DX_PUBSUB_HIREDIS_LOOP_H
#define DX_PUBSUB_HIREDIS_LOOP_H
#include <hiredis/async.h>

#include "duplex.h"

/* Binds ac (fresh from redisAsyncConnect, no error) to loop l: from here on
 * the loop calls redisAsyncHandleRead/Write when its socket is ready.
 * hiredis releases the binding itself when it frees ac (its cleanup hook).
 * Returns 0 or DX_ENOMEM (nothing bound; the caller frees ac). */
int dx__hiredis_attach(dx_loop *l, redisAsyncContext *ac);

#endif
