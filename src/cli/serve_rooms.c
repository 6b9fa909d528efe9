/* duplex serve --rooms: the URL path names the room (/rooms/NAME), and
 * every message a client sends goes to the other members of its room
 * (--echo-self: to the sender too), through the process's hub: on every
 * thread's loop and, with --redis, on every node. */
#include <string.h>

#include "serve_rooms.h"

/* The room a path names: the bytes after "/rooms/" up to a query, when
 * they are a single non-empty segment. NULL otherwise. */
static const char *room_of(const char *path, size_t *len) {
  static const char prefix[] = "/rooms/";
  if (strncmp(path, prefix, sizeof prefix - 1) != 0) return NULL;
  const char *name = path + sizeof prefix - 1;
  size_t n = strcspn(name, "?#");
  if (n == 0 || n > DX_TOPIC_MAX || memchr(name, '/', n)) return NULL;
  *len = n;
  return name;
}

int serve_rooms_accept(dx_conn *c, const dx_request *req) {
  (void)c;
  size_t plen, len;
  const char *path = dx_request_path(req, &plen);
  char buf[2048];
  if (plen >= sizeof buf) return 414;
  memcpy(buf, path, plen);
  buf[plen] = 0;
  return room_of(buf, &len) ? 0 : 404;
}

int serve_rooms_join(dx_conn *c, dx_hub *hub) {
  (void)hub;
  size_t len;
  const char *room = room_of(dx_conn_path(c), &len);
  return room ? dx_subscribe(c, room, len) : DX_EINVAL;
}

int serve_rooms_say(dx_conn *c, dx_hub *hub, int echo_self, dx_msg_type type,
                    const uint8_t *data, size_t len) {
  size_t rlen;
  const char *room = room_of(dx_conn_path(c), &rlen);
  if (!room) return DX_EINVAL;
  return dx_publish(hub, room, rlen, type, data, len, echo_self ? NULL : c);
}
