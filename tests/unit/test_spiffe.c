/* tests/unit/test_spiffe.c: identity/spiffe.c against the valid and invalid forms of
 * the SPIFFE ID specification (and go-spiffe's spiffeid error cases), table-driven,
 * with the exact reason string asserted for every rejection.
 */
#include <stdlib.h>
#include <string.h>

#include "spiffe.h"
#include "zt_test.h"

typedef struct {
  const char *id;
  const char *td;      /* expected trust domain, or NULL when rejected */
  const char *path;    /* expected path */
  const char *reason;  /* expected reason when rejected */
} id_case_t;

static const id_case_t valid_ids[] = {
  {"spiffe://example.org", "example.org", "", NULL},
  {"spiffe://example.org/a", "example.org", "/a", NULL},
  {"spiffe://example.org/ns/prod/sa/api", "example.org", "/ns/prod/sa/api", NULL},
  {"spiffe://a", "a", "", NULL},
  {"spiffe://trust_domain-1.example/Path_A.b-c/9", "trust_domain-1.example",
   "/Path_A.b-c/9", NULL},
  {"spiffe://example.org/.../a", "example.org", "/.../a", NULL},
  {"spiffe://example.org/.a/a.", "example.org", "/.a/a.", NULL},
  {"spiffe://example.org/UPPER/Case", "example.org", "/UPPER/Case", NULL},
  {"spiffe://1.2.3.4/x", "1.2.3.4", "/x", NULL},
};

static const id_case_t invalid_ids[] = {
  {"", NULL, NULL, "spiffe id is empty"},
  {"example.org/a", NULL, NULL, "scheme is missing or is not \"spiffe://\""},
  {"SPIFFE://example.org/a", NULL, NULL, "scheme is missing or is not \"spiffe://\""},
  {"Spiffe://example.org", NULL, NULL, "scheme is missing or is not \"spiffe://\""},
  {"https://example.org/a", NULL, NULL, "scheme is missing or is not \"spiffe://\""},
  {"spiffe:/example.org/a", NULL, NULL, "scheme is missing or is not \"spiffe://\""},
  {"spiffe:", NULL, NULL, "scheme is missing or is not \"spiffe://\""},
  {"spiffe://", NULL, NULL, "trust domain is missing"},
  {"spiffe:///a", NULL, NULL, "trust domain is missing"},
  {"spiffe://Example.org/a", NULL, NULL, "trust domain contains an uppercase letter"},
  {"spiffe://EXAMPLE.ORG", NULL, NULL, "trust domain contains an uppercase letter"},
  {"spiffe://exa mple.org", NULL, NULL, "trust domain contains an invalid character"},
  {"spiffe://exa*mple.org", NULL, NULL, "trust domain contains an invalid character"},
  {"spiffe://ex\xc3\xa4mple.org", NULL, NULL,
   "trust domain contains an invalid character"},
  {"spiffe://example.org:8443/a", NULL, NULL, "trust domain contains a port"},
  {"spiffe://user@example.org/a", NULL, NULL, "trust domain contains userinfo"},
  {"spiffe://example.org?x=1", NULL, NULL, "spiffe id contains a query"},
  {"spiffe://example.org#frag", NULL, NULL, "spiffe id contains a fragment"},
  {"spiffe://exa%6dple.org", NULL, NULL, "spiffe id contains percent-encoding"},
  {"spiffe://example.org/", NULL, NULL, "path has a trailing slash"},
  {"spiffe://example.org/a/", NULL, NULL, "path has a trailing slash"},
  {"spiffe://example.org//", NULL, NULL, "path has an empty segment"},
  {"spiffe://example.org//a", NULL, NULL, "path has an empty segment"},
  {"spiffe://example.org/a//b", NULL, NULL, "path has an empty segment"},
  {"spiffe://example.org/.", NULL, NULL, "path has a dot segment"},
  {"spiffe://example.org/..", NULL, NULL, "path has a dot segment"},
  {"spiffe://example.org/a/./b", NULL, NULL, "path has a dot segment"},
  {"spiffe://example.org/a/../b", NULL, NULL, "path has a dot segment"},
  {"spiffe://example.org/a?b=c", NULL, NULL, "spiffe id contains a query"},
  {"spiffe://example.org/a#b", NULL, NULL, "spiffe id contains a fragment"},
  {"spiffe://example.org/a%20b", NULL, NULL, "spiffe id contains percent-encoding"},
  {"spiffe://example.org/a@b", NULL, NULL, "path segment contains an invalid character"},
  {"spiffe://example.org/a:b", NULL, NULL, "path segment contains an invalid character"},
  {"spiffe://example.org/a b", NULL, NULL, "path segment contains an invalid character"},
  {"spiffe://example.org/a*", NULL, NULL, "path segment contains an invalid character"},
  {"spiffe://example.org/a\\b", NULL, NULL,
   "path segment contains an invalid character"},
  {"spiffe://example.org/\xc3\xa4", NULL, NULL,
   "path segment contains an invalid character"},
};

ZT_TEST(valid_ids_parse_into_trust_domain_and_path) {
  size_t i;
  for (i = 0; i < sizeof(valid_ids) / sizeof(valid_ids[0]); i++) {
    const id_case_t *c = &valid_ids[i];
    zt_spiffe_id_t id;
    const char *reason = "unset";
    if (zt_spiffe_id_parse(c->id, strlen(c->id), &id, &reason) != 0) {
      fprintf(stderr, "  %s: rejected: %s\n", c->id, reason);
      ZT_ASSERT(0);
    }
    ZT_ASSERT(id.td_len == strlen(c->td) && memcmp(id.td, c->td, id.td_len) == 0);
    ZT_ASSERT(id.path_len == strlen(c->path) &&
              memcmp(id.path, c->path, id.path_len) == 0);
  }
}

ZT_TEST(invalid_ids_are_rejected_with_a_precise_reason) {
  size_t i;
  for (i = 0; i < sizeof(invalid_ids) / sizeof(invalid_ids[0]); i++) {
    const id_case_t *c = &invalid_ids[i];
    const char *reason = NULL;
    zt_spiffe_id_t id;
    int rc = zt_spiffe_id_parse(c->id, strlen(c->id), &id, &reason);
    if (rc == 0) fprintf(stderr, "  accepted: %s\n", c->id);
    ZT_ASSERT(rc == -1);
    if (reason == NULL || strcmp(reason, c->reason) != 0)
      fprintf(stderr, "  %s\n", c->id);
    ZT_ASSERT_STR_EQ(reason, c->reason);
  }
}

/* Length counts from the 'len' argument, not a NUL: an embedded NUL is a character. */
ZT_TEST(embedded_nul_is_an_invalid_character) {
  const char *reason = NULL;
  static const char td_nul[] = "spiffe://exa\0mple.org";
  static const char path_nul[] = "spiffe://example.org/a\0b";
  ZT_ASSERT(zt_spiffe_id_parse(td_nul, sizeof(td_nul) - 1, NULL, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "trust domain contains an invalid character");
  ZT_ASSERT(zt_spiffe_id_parse(path_nul, sizeof(path_nul) - 1, NULL, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "path segment contains an invalid character");
}

ZT_TEST(len_bounds_the_parse_not_the_nul) {
  zt_spiffe_id_t id;
  /* Only the first 22 bytes are the ID; the rest would be invalid. */
  ZT_ASSERT(zt_spiffe_id_parse("spiffe://example.org/a//", 22, &id, NULL) == 0);
  ZT_ASSERT(id.path_len == 2);
  ZT_ASSERT(zt_spiffe_id_parse(NULL, 0, &id, NULL) == -1);
}

/* Build "spiffe://example.org/aaa...": total bytes exactly n. */
static char *id_of_len(size_t n) {
  static const char pre[] = "spiffe://example.org/";
  char *s = malloc(n + 1);
  if (s == NULL) return NULL;
  memcpy(s, pre, sizeof(pre) - 1);
  memset(s + sizeof(pre) - 1, 'a', n - (sizeof(pre) - 1));
  s[n] = '\0';
  return s;
}

ZT_TEST(id_of_2048_bytes_is_accepted_and_2049_rejected) {
  const char *reason = NULL;
  char *ok = id_of_len(2048), *big = id_of_len(2049);
  int rc_ok, rc_big;
  ZT_ASSERT(ok && big);
  rc_ok = zt_spiffe_id_parse(ok, 2048, NULL, &reason);
  rc_big = zt_spiffe_id_parse(big, 2049, NULL, &reason);
  free(ok);
  free(big);
  ZT_ASSERT(rc_ok == 0);
  ZT_ASSERT(rc_big == -1);
  ZT_ASSERT_STR_EQ(reason, "spiffe id is longer than 2048 bytes");
}

ZT_TEST(trust_domain_of_255_bytes_is_accepted_and_256_rejected) {
  char id[9 + 256 + 3];
  const char *reason = NULL;
  memcpy(id, "spiffe://", 9);
  memset(id + 9, 'a', 256);
  memcpy(id + 9 + 255, "/x", 2);  /* 255-byte trust domain, then a path */
  ZT_ASSERT(zt_spiffe_id_parse(id, 9 + 255 + 2, NULL, &reason) == 0);
  memset(id + 9, 'a', 256);
  memcpy(id + 9 + 256, "/x", 2);
  ZT_ASSERT(zt_spiffe_id_parse(id, 9 + 256 + 2, NULL, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "trust domain is longer than 255 bytes");
}

ZT_TEST(trust_domain_check_alone) {
  static const struct { const char *td; const char *reason; } cases[] = {
    {"example.org", NULL},
    {"a-b_c.d9", NULL},
    {"", "trust domain is missing"},
    {"Example.org", "trust domain contains an uppercase letter"},
    {"example.org:443", "trust domain contains a port"},
    {"u@example.org", "trust domain contains userinfo"},
    {"example.org/a", "trust domain contains an invalid character"},
    {"spiffe://example.org", "trust domain must not include the \"spiffe://\" scheme"},
  };
  size_t i;
  char long_td[257];
  const char *reason;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    reason = NULL;
    if (cases[i].reason == NULL) {
      ZT_ASSERT(zt_trust_domain_check(cases[i].td, strlen(cases[i].td), &reason) == 0);
    } else {
      ZT_ASSERT(zt_trust_domain_check(cases[i].td, strlen(cases[i].td), &reason) == -1);
      ZT_ASSERT_STR_EQ(reason, cases[i].reason);
    }
  }
  memset(long_td, 'a', sizeof(long_td));
  ZT_ASSERT(zt_trust_domain_check(long_td, 255, NULL) == 0);
  ZT_ASSERT(zt_trust_domain_check(long_td, 256, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "trust domain is longer than 255 bytes");
}

ZT_TEST_MAIN(ZT_RUN(valid_ids_parse_into_trust_domain_and_path),
             ZT_RUN(invalid_ids_are_rejected_with_a_precise_reason),
             ZT_RUN(embedded_nul_is_an_invalid_character),
             ZT_RUN(len_bounds_the_parse_not_the_nul),
             ZT_RUN(id_of_2048_bytes_is_accepted_and_2049_rejected),
             ZT_RUN(trust_domain_of_255_bytes_is_accepted_and_256_rejected),
             ZT_RUN(trust_domain_check_alone))
