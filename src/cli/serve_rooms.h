/* duplex serve --rooms (see serve_rooms.c). */
#ifndef CLI_SERVE_ROOMS_H
#define CLI_SERVE_ROOMS_H
#include <duplex.h>

/* dx_on_accept for rooms mode: 0 for /rooms/NAME, else 404 (414 when the
 * path is too long to look at). */
int serve_rooms_accept(dx_conn *c, const dx_request *req);
/* Subscribes an opened connection to its room: dx_subscribe's result. */
int serve_rooms_join(dx_conn *c, dx_hub *hub);
/* Publishes a message to the sender's room: dx_publish's result. */
int serve_rooms_say(dx_conn *c, dx_hub *hub, int echo_self, dx_msg_type type,
                    const uint8_t *data, size_t len);
#endif
