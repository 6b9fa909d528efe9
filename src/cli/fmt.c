/* Output helpers shared by the duplex commands. */
#include "fmt.h"

#include <string.h>

void cli_put_escaped(FILE *out, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", out);
    else if (*p < 0x20 || *p == 0x7f)
      fprintf(out, "\\x%02x", *p);
    else
      fputc(*p, out);  /* UTF-8 bytes above 0x7f pass through */
  }
}

void cli_put_hex(FILE *out, const uint8_t *data, size_t len, size_t max) {
  static const char digits[] = "0123456789abcdef";
  size_t n = len < max ? len : max;
  for (size_t i = 0; i < n; i++) {
    fputc(digits[data[i] >> 4], out);
    fputc(digits[data[i] & 15], out);
  }
}

const char *cli_hostport(char *buf, size_t size, const char *host,
                         unsigned port) {
  if (host == NULL || host[0] == '\0')
    snprintf(buf, size, "*:%u", port);
  else if (strchr(host, ':'))
    snprintf(buf, size, "[%s]:%u", host, port);
  else
    snprintf(buf, size, "%s:%u", host, port);
  return buf;
}

void cli_put_close(FILE *out, const char *label, int code, const char *reason,
                   dx_why why) {
  fprintf(out, "%s: code=%d reason=\"", label, code);
  cli_put_escaped(out, reason ? reason : "");
  fprintf(out, "\" why=%s\n", dx_why_name(why));
}
