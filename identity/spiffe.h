/* identity/spiffe.h: SPIFFE IDs, parsed and validated exactly per the SPIFFE ID
 * specification. Pure functions: no allocation, no I/O.
 *
 *   spiffe://<trust-domain><path>
 *   trust domain: 1..255 chars of [a-z0-9.-_] (lowercase only)
 *   path: empty, or segments "/seg" of [a-zA-Z0-9.-_]; no empty segment, no "." or
 *         "..", no trailing slash; no query, fragment, percent-encoding, userinfo, port
 *   whole ID: at most 2048 bytes
 */
#ifndef ZT_SPIFFE_H
#define ZT_SPIFFE_H

#include <stddef.h>

#define ZT_SPIFFE_ID_MAX 2048
#define ZT_TRUST_DOMAIN_MAX 255

typedef struct {
  const char *td;   size_t td_len;    /* points into the parsed string */
  const char *path; size_t path_len;  /* "" (len 0) or "/a/b" */
} zt_spiffe_id_t;

/* 0 and *out filled when s[0..len) is a valid SPIFFE ID; -1 otherwise, with *reason
 * (if reason != NULL) set to a static sentence such as "trust domain contains an
 * invalid character". */
int zt_spiffe_id_parse(const char *s, size_t len, zt_spiffe_id_t *out,
                       const char **reason);

/* 0 when s[0..len) is a valid trust domain name (without the scheme). */
int zt_trust_domain_check(const char *s, size_t len, const char **reason);

#endif
