/* Error names (from the one table in duplex_codes.h) and close-reason names. */
#include <stdio.h>

#include "duplex.h"
#include "endpoint.h"

static __thread char last_error[256];

const char *dx_last_error(void) { return last_error; }

void dx__set_last_error(const char *msg) {
  snprintf(last_error, sizeof last_error, "%s", msg ? msg : "");
}

const char *dx_strerror(int err) {
  switch (err) {
    case DX_OK: return "success";
#define DX__ERR_MSG(name, value, msg) case DX_##name: return msg;
    DX_ERRNO_MAP(DX__ERR_MSG)
#undef DX__ERR_MSG
  }
  return "unknown error";
}

const char *dx_err_name(int err) {
  switch (err) {
    case DX_OK: return "DX_OK";
#define DX__ERR_NAME(name, value, msg) case DX_##name: return "DX_" #name;
    DX_ERRNO_MAP(DX__ERR_NAME)
#undef DX__ERR_NAME
  }
  return "DX_UNKNOWN";
}

const char *dx_why_name(dx_why why) {
  switch (why) {
    case DX_WHY_PEER: return "closed by peer";
    case DX_WHY_LOCAL: return "closed locally";
    case DX_WHY_PING_TIMEOUT: return "ping timeout";
    case DX_WHY_TRANSPORT_CLOSE: return "transport close";
    case DX_WHY_TRANSPORT_ERROR: return "transport error";
    case DX_WHY_PROTOCOL_ERROR: return "protocol error";
    case DX_WHY_SERVER_SHUTDOWN: return "server shutting down";
    case DX_WHY_HANDSHAKE_FAILED: return "handshake failed";
    case DX_WHY_INTERNAL_ERROR: return "internal error";
  }
  return "unknown";
}
