/* identity/spiffe.c: SPIFFE ID and trust domain validation per the SPIFFE ID
 * specification (standards/SPIFFE-ID.md), with go-spiffe's spiffeid package as the
 * reference for which strings are rejected. Everything downstream (SVID checks, policy
 * matching, access logs) trusts an ID only after it passed zt_spiffe_id_parse, so this
 * file is strict rather than forgiving: no normalisation, no case folding, no
 * percent-decoding. A single left-to-right pass, no allocation; the failure reasons are
 * static strings so they can go straight into a log line or a zt_error_t.
 */
#include "spiffe.h"

#include <string.h>

#define SCHEME "spiffe://"
#define SCHEME_LEN (sizeof(SCHEME) - 1)

static int td_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
         c == '_';
}

static int path_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '-' || c == '_';
}

static int fail(const char **reason, const char *why) {
  if (reason) *reason = why;
  return -1;
}

/* Characters that are legal in some URI but never in a SPIFFE ID get a reason naming
 * the URI component they would start, so an operator sees "contains a port" rather
 * than a bare "invalid character". NULL when c has no special meaning. */
static const char *uri_component(unsigned char c) {
  switch (c) {
  case '?': return "spiffe id contains a query";
  case '#': return "spiffe id contains a fragment";
  case '%': return "spiffe id contains percent-encoding";
  case '@': return "trust domain contains userinfo";
  case ':': return "trust domain contains a port";
  default: return NULL;
  }
}

static int td_check(const char *s, size_t len, const char **reason) {
  size_t i;
  if (len == 0) return fail(reason, "trust domain is missing");
  if (len > ZT_TRUST_DOMAIN_MAX)
    return fail(reason, "trust domain is longer than 255 bytes");
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *why;
    if (td_char(c)) continue;
    if (c >= 'A' && c <= 'Z')
      return fail(reason, "trust domain contains an uppercase letter");
    why = uri_component(c);
    return fail(reason, why ? why : "trust domain contains an invalid character");
  }
  return 0;
}

int zt_trust_domain_check(const char *s, size_t len, const char **reason) {
  /* The likeliest operator mistake; "contains a port" would point at the wrong fix. */
  if (len >= SCHEME_LEN && memcmp(s, SCHEME, SCHEME_LEN) == 0)
    return fail(reason, "trust domain must not include the \"spiffe://\" scheme");
  return td_check(s, len, reason);
}

/* path is "" or starts with '/'. */
static int path_check(const char *p, size_t len, const char **reason) {
  size_t i = 0;
  while (i < len) {
    size_t start = ++i; /* skip the '/' that begins every segment */
    while (i < len && p[i] != '/') {
      unsigned char c = (unsigned char)p[i];
      if (!path_char(c)) {
        const char *why = uri_component(c);
        /* '@' and ':' are legal URI path characters but not SPIFFE ones. */
        if (c == '@' || c == ':') why = NULL;
        return fail(reason, why ? why : "path segment contains an invalid character");
      }
      i++;
    }
    if (i == start) {
      return fail(reason, i == len ? "path has a trailing slash"
                                   : "path has an empty segment");
    }
    if ((i - start == 1 && p[start] == '.') ||
        (i - start == 2 && p[start] == '.' && p[start + 1] == '.'))
      return fail(reason, "path has a dot segment");
  }
  return 0;
}

int zt_spiffe_id_parse(const char *s, size_t len, zt_spiffe_id_t *out,
                       const char **reason) {
  size_t td_end;
  const char *td;
  if (s == NULL || len == 0) return fail(reason, "spiffe id is empty");
  if (len > ZT_SPIFFE_ID_MAX) return fail(reason, "spiffe id is longer than 2048 bytes");
  if (len < SCHEME_LEN || memcmp(s, SCHEME, SCHEME_LEN) != 0)
    return fail(reason, "scheme is missing or is not \"spiffe://\"");
  td = s + SCHEME_LEN;
  for (td_end = SCHEME_LEN; td_end < len && s[td_end] != '/'; td_end++)
    ;
  if (td_check(td, td_end - SCHEME_LEN, reason)) return -1;
  if (path_check(s + td_end, len - td_end, reason)) return -1;
  if (out) {
    out->td = td;
    out->td_len = td_end - SCHEME_LEN;
    out->path = s + td_end;
    out->path_len = len - td_end;
  }
  return 0;
}
