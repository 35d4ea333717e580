/* identity/issue.h: certificate issuing for bootstrap and tests (`ztproxy identity
 * ca|issue`), over wolfSSL certgen.
 *
 * Every certificate is ECDSA P-256 with an ECDSA-SHA256 signature by default (P-384,
 * RSA and, for tests of the verifier, RSA-1024 and SHA-1 on request), a 16-byte random
 * positive serial and explicit notBefore/notAfter (UTCTime, GeneralizedTime from
 * 2050), so lifetimes can be seconds or hours and certificates can be made already
 * expired. Keys are written as PEM "EC PRIVATE KEY" with mode 0600, certificates as
 * PEM; each file is written to a temporary name in its folder and renamed into place,
 * so a watcher never sees half a file.
 *
 * Unlike the rest of identity/, this writes files; it still takes the clock from the
 * caller (`now`).
 */
#ifndef ZT_ISSUE_H
#define ZT_ISSUE_H

#include <stddef.h>
#include <stdint.h>

#include "svid.h"
#include "zt_error.h"

#define ZT_ISSUE_CA_TTL_DEFAULT (365 * 86400)   /* seconds */
#define ZT_ISSUE_SVID_TTL_DEFAULT 3600
#define ZT_ISSUE_BACKDATE_DEFAULT 30

typedef struct {
  const char *trust_domain;   /* validated with zt_trust_domain_check() */
  int64_t now;                /* unix seconds */
  int64_t ttl;                /* seconds, > 0: notAfter = now - backdate + ttl, but
                                 for an intermediate never after its parent's file
                                 (the parent and its chain) expires */
  int64_t backdate;           /* seconds, >= 0: notBefore = now - backdate */
  /* Optional (NULL/0 = the defaults above). */
  const char *ca_cert;        /* parent CA: make an intermediate signed by it (the  */
  const char *ca_key;         /* cert file then holds it plus the parent's chain)  */
  const char *key_type;       /* "p256" (default), "p384", "rsa2048", "rsa3072";
                                 test only: "rsa1024" */
  const char *sig;            /* "sha256" (default); test only: "sha1" */
  const char *key_usage;      /* test only: wolfSSL key-usage list replacing
                                 "keyCertSign,cRLSign,digitalSignature" ("" = no
                                 keyUsage extension) */
} zt_issue_ca_opts_t;

typedef struct {
  const char *ca_cert;        /* PEM file; the first certificate is the issuer */
  const char *ca_key;         /* PEM file, EC private key (SEC1 or PKCS#8) */
  const char *id;             /* SPIFFE ID, validated; may be NULL with no_uri */
  int no_uri;                 /* test option: leave id out of the SANs */
  const char *const *extra_uris; size_t n_extra_uris; /* test option: more URI SANs,
                                 any absolute "scheme://..." URI, not validated */
  const char *const *dns; size_t n_dns;                /* DNS SANs */
  int is_ca;                  /* test option: CA:TRUE, keyCertSign (a CA as a leaf) */
  int64_t now;                /* unix seconds */
  int64_t ttl;                /* seconds, > 0: notAfter = now - backdate + ttl, but
                                 never after a certificate of the CA file (the
                                 issuer and its chain) expires */
  int64_t backdate;           /* seconds, >= 0: notBefore = now - backdate */
  /* Optional. */
  const char *key_type;       /* as for the CA */
  const char *sig;            /* as for the CA */
  const char *key_usage;      /* test only: replaces "digitalSignature" ("" = no
                                 keyUsage extension at all) */
} zt_issue_svid_opts_t;

typedef struct {
  const char *ca_cert, *ca_key; /* the CRL issuer: a CA with cRLSign (or keyCertSign
                                   when it has no keyUsage) */
  const char *const *serials; size_t n_serials; /* hex, as `identity show` prints */
  int64_t now;                /* thisUpdate, and revocationDate of every entry */
  int64_t ttl;                /* nextUpdate = now + ttl, > 0 */
  uint64_t number;            /* cRLNumber; 0: now */
} zt_issue_crl_opts_t;

typedef struct {
  char serial[ZT_SVID_SERIAL_HEX_MAX + 1];  /* lowercase hex */
  int64_t not_before, not_after;            /* unix seconds, as encoded */
  int capped;                               /* not_after is the issuing CA's, not
                                               the one the ttl asked for */
} zt_issue_result_t;

/* Self-signed CA for the trust domain: CA:TRUE, keyUsage keyCertSign, cRLSign and
 * digitalSignature, URI SAN "spiffe://<td>", subject O=ztproxy, CN=ztproxy CA <td>
 * (truncated to 64 bytes), SKID and AKID. Writes cert_path and key_path.
 * 0, or -1 with err filled. res may be NULL. */
int zt_issue_ca(const zt_issue_ca_opts_t *o, const char *cert_path,
                const char *key_path, zt_issue_result_t *res, zt_error_t *err);

/* X.509-SVID signed by the CA in o->ca_cert / o->ca_key (which must be a CA whose
 * public key matches the key): URI SANs (o->id, then o->extra_uris), DNS SANs,
 * CA:FALSE, keyUsage digitalSignature, extKeyUsage serverAuth+clientAuth, SKID, AKID
 * from the CA, subject O=ztproxy. Writes cert_path (the leaf only) and key_path.
 * 0, or -1 with err filled. res may be NULL. */
int zt_issue_svid(const zt_issue_svid_opts_t *o, const char *cert_path,
                  const char *key_path, zt_issue_result_t *res, zt_error_t *err);

/* A v2 CRL (RFC 5280 5.1) signed by the CA: issuer = the CA's subject, byte for
 * byte; thisUpdate/nextUpdate; one entry per serial; extensions authorityKeyIdentifier
 * (from the CA's SKID when it has one) and cRLNumber. ECDSA-SHA256 or SHA256-RSA.
 * wolfSSL 5.5.4 has no CRL generation, so the DER is encoded here. Writes PEM
 * "X509 CRL" to out_path. 0, or -1 with err filled. */
int zt_issue_crl(const zt_issue_crl_opts_t *o, const char *out_path, zt_error_t *err);

#endif
