/* identity/idset.h: a complete workload identity (SVID chain, private key, trust
 * bundles of every trust domain, CRLs) loaded and checked into memory, without any
 * TLS context: what `ztproxy run` loads at start and what rotation builds off the data
 * path to decide whether a new set of files may replace the one in force.
 *
 * The set keeps the exact bytes it validated (cert_pem, key_pem) so the TLS layer
 * loads those, not files that may have changed again since.
 */
#ifndef ZT_IDSET_H
#define ZT_IDSET_H

#include <stddef.h>
#include <stdint.h>

#include "bundle.h"
#include "svid.h"
#include "zt_error.h"

typedef struct {
  const char *trust_domain;
  const char *bundle;          /* PEM file */
} zt_federated_t;

typedef struct {
  const char *cert;            /* PEM: leaf, then intermediates */
  const char *key;             /* PEM private key (EC or RSA; SEC1, PKCS#1, PKCS#8) */
  const char *bundle;          /* PEM roots of the SVID's own trust domain */
  const zt_federated_t *federated; size_t n_federated;
  const char *const *crls; size_t n_crls; /* PEM "X509 CRL" files */
  int64_t now;                 /* unix seconds */
  const char *expect_id;       /* NULL, or the SPIFFE ID the SVID must have (rotation:
                                  the ID in force, unless the config allows a change) */
} zt_idset_opts_t;

/* Negative results of zt_idset_load, one per thing an operator (or the rotation
 * metrics) must tell apart. */
enum {
  ZT_IDSET_E_FILE = -1,          /* a file cannot be read */
  ZT_IDSET_E_PARSE = -2,         /* garbage, empty or half-written certificate file */
  ZT_IDSET_E_SVID = -3,          /* the chain breaks an X.509-SVID rule */
  ZT_IDSET_E_KEY = -4,           /* no usable key, or it does not match the SVID */
  ZT_IDSET_E_EXPIRED = -5,
  ZT_IDSET_E_NOT_YET_VALID = -6,
  ZT_IDSET_E_ID_CHANGED = -7,    /* SPIFFE ID differs from expect_id */
  ZT_IDSET_E_BUNDLE = -8,        /* a bundle file is bad */
  ZT_IDSET_E_CRL = -9,           /* a CRL file is bad */
  ZT_IDSET_E_CHAIN = -10,        /* the SVID does not verify against its own bundle,
                                    or is revoked */
  ZT_IDSET_E_NOMEM = -11,
};

typedef struct {
  unsigned char *cert_pem; size_t cert_pem_len; /* the bytes validated */
  unsigned char *key_pem; size_t key_pem_len;   /* wiped before free */
  zt_der_list_t chain;                          /* DER, leaf first */
  zt_svid_info_t svid;                          /* the leaf (svid.spiffe points into
                                                   svid.id: do not copy the struct) */
  zt_bundle_set_t *bundles;                     /* own TD first, then federated */
  const char *reason;                           /* on E_SVID/E_CHAIN: the code */
} zt_idset_t;

/* Load and check everything. 0 with *out set (free with zt_idset_free), or one of the
 * ZT_IDSET_E_ codes with err as "file: what is wrong". */
int zt_idset_load(const zt_idset_opts_t *o, zt_idset_t **out, zt_error_t *err);
void zt_idset_free(zt_idset_t *s);

/* A short name of a result code ("key_mismatch", "expired", ...), for logs/metrics. */
const char *zt_idset_strerror(int code);

#endif
