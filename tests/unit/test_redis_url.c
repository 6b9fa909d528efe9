/* redis:// URLs (src/pubsub/redis_url.c): every form dx_hub_use_redis
 * documents, percent-decoded credentials, IPv6 hosts, and a one-line reason
 * for each malformed URL; rediss:// is DX_EUNSUPPORTED (no TLS in Debian
 * 12's hiredis 0.14). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "duplex.h"
#include "pubsub/redis_url.h"

static dx__redis_url u;
static char why[200];

static int parse(const char *url) {
  why[0] = 0;
  return dx__redis_url_parse(url, &u, why, sizeof why);
}

static void test_forms(void **state) {
  (void)state;
  assert_int_equal(parse("redis://localhost"), 0);
  assert_string_equal(u.host, "localhost");
  assert_int_equal(u.port, 6379);
  assert_int_equal(u.has_pass, 0);
  assert_int_equal(u.db, 0);

  assert_int_equal(parse("REDIS://10.0.0.5:6390/3"), 0);
  assert_string_equal(u.host, "10.0.0.5");
  assert_int_equal(u.port, 6390);
  assert_int_equal(u.db, 3);

  assert_int_equal(parse("redis://host/"), 0);
  assert_int_equal(u.db, 0);

  assert_int_equal(parse("redis://:s3cret@host:7000"), 0);
  assert_int_equal(u.has_pass, 1);
  assert_string_equal(u.user, "");
  assert_string_equal(u.pass, "s3cret");
  assert_int_equal(u.port, 7000);

  assert_int_equal(parse("redis://alice:wonder@host:7000/2"), 0);
  assert_string_equal(u.user, "alice");
  assert_string_equal(u.pass, "wonder");
  assert_string_equal(u.host, "host");
  assert_int_equal(u.db, 2);

  /* An empty password is still a password (AUTH with ""). */
  assert_int_equal(parse("redis://:@host"), 0);
  assert_int_equal(u.has_pass, 1);
  assert_string_equal(u.pass, "");
}

static void test_escapes(void **state) {
  (void)state;
  assert_int_equal(parse("redis://al%69ce:p%40ss%3Aw%2Fd%25@host"), 0);
  assert_string_equal(u.user, "alice");
  assert_string_equal(u.pass, "p@ss:w/d%");
  /* Unescaped '@' and '/' in a password: the last '@' ends it. */
  assert_int_equal(parse("redis://:a@b/c@host:1/1"), 0);
  assert_string_equal(u.pass, "a@b/c");
  assert_string_equal(u.host, "host");
  assert_int_equal(u.db, 1);
}

static void test_ipv6(void **state) {
  (void)state;
  assert_int_equal(parse("redis://[::1]:6390/0"), 0);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 6390);
  assert_int_equal(parse("redis://u:p@[fe80::1]"), 0);
  assert_string_equal(u.host, "fe80::1");
  assert_int_equal(u.port, 6379);
}

/* Each malformed URL fails with its code and a reason naming the fault. */
static void test_errors(void **state) {
  (void)state;
  static const struct { const char *url; int code; const char *reason; } bad[] = {
      {"rediss://host:6380", DX_EUNSUPPORTED, "TLS"},
      {"http://host", DX_EURL, "redis://, not http://"},
      {"host:6379", DX_EURL, "must start with redis://"},
      {"redis://", DX_EURL, "no host"},
      {"redis://host:0", DX_EURL, "out of range"},
      {"redis://host:99999", DX_EURL, "out of range"},
      {"redis://host:abc", DX_EURL, "not a number"},
      {"redis://host/x", DX_EURL, "database must be a number"},
      {"redis://host/1x", DX_EURL, "unexpected 'x'"},
      {"redis://host?db=1", DX_EURL, "query"},
      {"redis://alice@host", DX_EURL, "needs a password"},
      {"redis://:ab%4@host", DX_EURL, "two hex digits"},
      {"redis://:ab%zz@host", DX_EURL, "two hex digits"},
      {"redis://:a%00b@host", DX_EURL, "NUL"},
      {"redis://[::1:6390", DX_EURL, "']'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(parse(bad[i].url), bad[i].code);
    if (!strstr(why, bad[i].reason))
      fail_msg("%s: reason \"%s\" lacks \"%s\"", bad[i].url, why, bad[i].reason);
  }
  char big[400] = "redis://:";
  memset(big + 9, 'a', 300);
  strcpy(big + 309, "@host");
  assert_int_equal(parse(big), DX_EURL);
  assert_non_null(strstr(why, "longer than"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forms),
      cmocka_unit_test(test_escapes),
      cmocka_unit_test(test_ipv6),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
