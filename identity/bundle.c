/* identity/bundle.c: trust bundles per trust domain, CRLs, and per-trust-domain
 * chain verification (see bundle.h for the rules).
 *
 * Each trust domain owns its root DERs and one wolfSSL certificate manager loaded
 * with exactly those roots. A leaf signed directly by a root is verified in that
 * shared manager; a chain with intermediates in a private manager made for the call
 * (the TD's roots, then each intermediate from the root side down, each verified
 * before it is added as a CA: wolfSSL accepts any CA it is given as an anchor, so an
 * unverified intermediate must never be added).
 *
 * CRLs are parsed here with a minimal DER reader (wolfSSL's CRL engine insists on a
 * CRL for every issuer once enabled, and keeps its own signer lookup); a CRL is the
 * issuer name, the revoked serials, the dates, and the signed bytes with their
 * signature, checked with wc_SignatureVerify against the issuer's public key.
 */
#include "bundle.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/signature.h>

#include <stdlib.h>
#include <string.h>

typedef struct {
  unsigned char *der;
  size_t len;
  size_t subj_off, subj_len; /* subject Name content (wolfSSL's subjectRaw) in der */
  unsigned char skid[KEYID_SIZE]; /* subject key identifier, as wolfSSL reads it */
} root_t;

typedef struct {
  char name[ZT_TRUST_DOMAIN_MAX + 1];
  root_t *roots;
  size_t n_roots;
  WOLFSSL_CERT_MANAGER *cm;
} td_t;

typedef struct {
  unsigned char *der;        /* the whole CRL, owned; everything below points in */
  size_t len;
  const unsigned char *issuer; size_t issuer_len;   /* Name content (no SEQ header) */
  const unsigned char *tbs; size_t tbs_len;         /* signed bytes */
  const unsigned char *sig; size_t sig_len;         /* BIT STRING content sans pad */
  int hash, rsa;             /* wc_HashType; 1 RSA PKCS#1 v1.5, 0 ECDSA */
  int64_t this_update, next_update;                 /* next_update 0: none */
  const unsigned char **serials; size_t *serial_lens; size_t n_serials; /* magnitude */
  long td;                   /* the TD whose root verified it, or -1 */
} crl_t;

struct zt_bundle_set {
  td_t *tds;
  size_t n_tds;
  crl_t *crls;
  size_t n_crls;
};

zt_bundle_set_t *zt_bundle_set_new(void) { return calloc(1, sizeof(zt_bundle_set_t)); }

void zt_bundle_set_free(zt_bundle_set_t *s) {
  size_t i, j;
  if (s == NULL) return;
  for (i = 0; i < s->n_tds; i++) {
    for (j = 0; j < s->tds[i].n_roots; j++) free(s->tds[i].roots[j].der);
    free(s->tds[i].roots);
    if (s->tds[i].cm) wolfSSL_CertManagerFree(s->tds[i].cm);
  }
  free(s->tds);
  for (i = 0; i < s->n_crls; i++) {
    free(s->crls[i].der);
    free(s->crls[i].serials);
    free(s->crls[i].serial_lens);
  }
  free(s->crls);
  free(s);
}

size_t zt_bundle_set_count(const zt_bundle_set_t *s) { return s->n_tds; }
const char *zt_bundle_set_td(const zt_bundle_set_t *s, size_t i) {
  return i < s->n_tds ? s->tds[i].name : NULL;
}
size_t zt_bundle_set_root_count(const zt_bundle_set_t *s, size_t i) {
  return i < s->n_tds ? s->tds[i].n_roots : 0;
}
const unsigned char *zt_bundle_set_root(const zt_bundle_set_t *s, size_t i, size_t j,
                                        size_t *len) {
  if (i >= s->n_tds || j >= s->tds[i].n_roots) return NULL;
  *len = s->tds[i].roots[j].len;
  return s->tds[i].roots[j].der;
}
size_t zt_bundle_set_crl_count(const zt_bundle_set_t *s) { return s->n_crls; }

int zt_bundle_set_crl_stale(const zt_bundle_set_t *s, int64_t now) {
  size_t i;
  for (i = 0; i < s->n_crls; i++)
    if (s->crls[i].next_update != 0 && s->crls[i].next_update <= now) return 1;
  return 0;
}

int zt_bundle_set_find(const zt_bundle_set_t *s, const char *td, size_t td_len) {
  size_t i;
  for (i = 0; i < s->n_tds; i++)
    if (strlen(s->tds[i].name) == td_len && memcmp(s->tds[i].name, td, td_len) == 0)
      return (int)i;
  return -1;
}

/* ---- bundles ------------------------------------------------------------------ */

int zt_bundle_set_add(zt_bundle_set_t *s, const char *td, const unsigned char *pem,
                      size_t len, const char *source, zt_error_t *err) {
  zt_der_list_t l;
  zt_svid_info_t *info = NULL;
  zt_svid_rules_t rules;
  const char *why = NULL;
  td_t *t, *nt;
  size_t i;

  if (td == NULL || zt_trust_domain_check(td, strlen(td), &why) != 0)
    return zt_error_set(err, source, 0, 0, "invalid trust domain \"%s\": %s",
                        td ? td : "", why ? why : "");
  if (zt_bundle_set_find(s, td, strlen(td)) >= 0)
    return zt_error_set(err, source, 0, 0, "trust domain %s has a bundle already", td);
  if (zt_pem_cert_list(pem, len, 0, &l, &why) != 0)
    return zt_error_set(err, source, 0, 0, "%s", why);
  nt = realloc(s->tds, (s->n_tds + 1) * sizeof(*nt));
  info = malloc(sizeof(*info));
  if (nt == NULL || info == NULL) {
    if (nt != NULL) s->tds = nt;
    free(info);
    zt_der_list_free(&l);
    return zt_error_set(err, source, 0, 0, "out of memory");
  }
  s->tds = nt;
  t = &s->tds[s->n_tds];
  memset(t, 0, sizeof(*t));
  snprintf(t->name, sizeof(t->name), "%s", td);
  t->roots = calloc(l.n, sizeof(*t->roots));
  t->cm = wolfSSL_CertManagerNew();
  if (t->roots == NULL || t->cm == NULL) {
    zt_error_set(err, source, 0, 0, "out of memory");
    goto fail;
  }
  for (i = 0; i < l.n; i++) {
    DecodedCert dc;
    int rc;
    why = zt_svid_rules(l.der[i], l.len[i], 0, info, &rules);
    if (why != NULL && !(rules.broken & ZT_SVID_RULE_PARSES)) {
      /* Two rules a root may break, each on its own: a root without keyUsage is
       * still a CA for RFC 5280 (only CA:TRUE is needed), and a root's
       * self-signature is not relied on. Every other rule still holds. */
      unsigned broken = rules.broken;
      if (info->is_ca && !info->key_usage_set) broken &= ~(unsigned)ZT_SVID_RULE_SIGNER_CA;
      if (info->self_signed) broken &= ~(unsigned)ZT_SVID_RULE_NO_SHA1;
      why = broken & ZT_SVID_RULE_SIGNER_CA ? ZT_SVID_SIGNER_NOT_CA
            : broken & ZT_SVID_RULE_STRONG_KEY ? ZT_SVID_WEAK_KEY
            : broken & ZT_SVID_RULE_NO_SHA1 ? ZT_SVID_SHA1
            : broken ? why : NULL;
    }
    if (why != NULL) {
      zt_error_set(err, source, 0, 0, "certificate %zu of the bundle: %s (%s)", i + 1,
                   zt_svid_reason_text(why), why);
      goto fail;
    }
    wc_InitDecodedCert(&dc, l.der[i], (word32)l.len[i], NULL);
    rc = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
    if (rc == 0 && dc.subjectRaw != NULL) {
      t->roots[i].subj_off = (size_t)(dc.subjectRaw - l.der[i]);
      t->roots[i].subj_len = (size_t)dc.subjectRawLen;
      memcpy(t->roots[i].skid, dc.extSubjKeyId, KEYID_SIZE);
    }
    wc_FreeDecodedCert(&dc);
    if (wolfSSL_CertManagerLoadCABuffer(t->cm, l.der[i], (long)l.len[i],
                                        WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
      zt_error_set(err, source, 0, 0, "certificate %zu of the bundle is not accepted "
                   "as a trust anchor", i + 1);
      goto fail;
    }
    t->roots[i].der = l.der[i];
    t->roots[i].len = l.len[i];
    l.der[i] = NULL;
    t->n_roots++;
  }
  zt_der_list_free(&l); /* frees only the list: every DER moved to t->roots */
  free(info);
  s->n_tds++;
  return 0;

fail:
  for (i = 0; i < t->n_roots; i++) free(t->roots[i].der);
  free(t->roots);
  if (t->cm) wolfSSL_CertManagerFree(t->cm);
  zt_der_list_free(&l);
  free(info);
  return -1;
}

int zt_bundle_set_add_file(zt_bundle_set_t *s, const char *td, const char *path,
                           zt_error_t *err) {
  unsigned char *pem;
  size_t len;
  int rc;
  if (zt_pem_read_file(path, &pem, &len, err) != 0) return -1;
  rc = zt_bundle_set_add(s, td, pem, len, path, err);
  free(pem);
  return rc;
}

/* ---- a minimal DER reader for CRLs ---------------------------------------------- */

typedef struct {
  const unsigned char *p, *end;
} der_t;

/* Next TLV: tag, content pointer and length; advances. 0 or -1. */
static int der_next(der_t *d, unsigned char *tag, const unsigned char **c, size_t *n) {
  size_t len = 0, k;
  if (d->end - d->p < 2) return -1;
  *tag = d->p[0];
  if (d->p[1] < 0x80) {
    len = d->p[1];
    d->p += 2;
  } else {
    k = d->p[1] & 0x7f;
    if (k == 0 || k > 3 || (size_t)(d->end - d->p) < 2 + k) return -1;
    for (size_t i = 0; i < k; i++) len = len << 8 | d->p[2 + i];
    d->p += 2 + k;
  }
  if ((size_t)(d->end - d->p) < len) return -1;
  *c = d->p;
  *n = len;
  d->p += len;
  return 0;
}

static int der_peek(const der_t *d) { return d->p < d->end ? d->p[0] : -1; }

static int digits2(const unsigned char *p) {
  if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9') return -1;
  return (p[0] - '0') * 10 + (p[1] - '0');
}

static int64_t days_civil(int64_t y, int m, int d) {
  int64_t era, yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int der_time(unsigned char tag, const unsigned char *c, size_t n, int64_t *out) {
  int y, mo, d, h, mi, se;
  if (tag == ASN_UTC_TIME && n == 13 && c[12] == 'Z') {
    y = digits2(c);
    if (y < 0) return -1;
    y += y < 50 ? 2000 : 1900;
    c += 2;
  } else if (tag == ASN_GENERALIZED_TIME && n == 15 && c[14] == 'Z') {
    if (digits2(c) < 0 || digits2(c + 2) < 0) return -1;
    y = digits2(c) * 100 + digits2(c + 2);
    c += 4;
  } else {
    return -1;
  }
  mo = digits2(c);
  d = digits2(c + 2);
  h = digits2(c + 4);
  mi = digits2(c + 6);
  se = digits2(c + 8);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
      se < 0 || se > 60)
    return -1;
  *out = days_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  return 0;
}

static void strip_zeros(const unsigned char **p, size_t *n) {
  while (*n > 1 && (*p)[0] == 0) {
    (*p)++;
    (*n)--;
  }
}

/* Signature algorithm OID content -> hash and kind. 0 or -1 (unsupported). */
static int sig_alg(const unsigned char *oid, size_t n, int *hash, int *rsa) {
  static const unsigned char ecdsa[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03};
  static const unsigned char pkcs1[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01};
  if (n == sizeof(ecdsa) + 1 && memcmp(oid, ecdsa, sizeof(ecdsa)) == 0) {
    *rsa = 0;
    switch (oid[n - 1]) {
    case 2: *hash = WC_HASH_TYPE_SHA256; return 0;
    case 3: *hash = WC_HASH_TYPE_SHA384; return 0;
    case 4: *hash = WC_HASH_TYPE_SHA512; return 0;
    default: return -1;
    }
  }
  if (n == sizeof(pkcs1) + 1 && memcmp(oid, pkcs1, sizeof(pkcs1)) == 0) {
    *rsa = 1;
    switch (oid[n - 1]) {
    case 11: *hash = WC_HASH_TYPE_SHA256; return 0;
    case 12: *hash = WC_HASH_TYPE_SHA384; return 0;
    case 13: *hash = WC_HASH_TYPE_SHA512; return 0;
    default: return -1;
    }
  }
  return -1;
}

/* Parse c->der into the fields of c. 0, or -1 with *why. */
static int crl_parse(crl_t *c, const char **why) {
  der_t top = {c->der, c->der + c->len}, cl, tbs, alg, rl;
  const unsigned char *v, *oid;
  size_t n, on, cap = 0;
  unsigned char tag;

  *why = "not a DER CRL";
  if (der_next(&top, &tag, &v, &n) || tag != (ASN_SEQUENCE | ASN_CONSTRUCTED)) return -1;
  cl.p = v;
  cl.end = v + n;
  c->tbs = cl.p;
  if (der_next(&cl, &tag, &v, &n) || tag != (ASN_SEQUENCE | ASN_CONSTRUCTED)) return -1;
  c->tbs_len = (size_t)(cl.p - c->tbs);
  tbs.p = v;
  tbs.end = v + n;
  if (der_next(&cl, &tag, &v, &n) || tag != (ASN_SEQUENCE | ASN_CONSTRUCTED)) return -1;
  alg.p = v;
  alg.end = v + n;
  if (der_next(&alg, &tag, &oid, &on) || tag != ASN_OBJECT_ID) return -1;
  if (sig_alg(oid, on, &c->hash, &c->rsa) != 0) {
    *why = "the CRL's signature algorithm is not supported (ECDSA or RSA with SHA-2)";
    return -1;
  }
  if (der_next(&cl, &tag, &v, &n) || tag != ASN_BIT_STRING || n < 2 || v[0] != 0)
    return -1;
  c->sig = v + 1;
  c->sig_len = n - 1;

  /* TBSCertList */
  if (der_peek(&tbs) == ASN_INTEGER && der_next(&tbs, &tag, &v, &n)) return -1;
  if (der_next(&tbs, &tag, &v, &n) || tag != (ASN_SEQUENCE | ASN_CONSTRUCTED)) return -1;
  /* The issuer Name's content, as wolfSSL's issuerRaw/subjectRaw hold it. */
  if (der_next(&tbs, &tag, &v, &n) || tag != (ASN_SEQUENCE | ASN_CONSTRUCTED)) return -1;
  c->issuer = v;
  c->issuer_len = n;
  if (der_next(&tbs, &tag, &v, &n) || der_time(tag, v, n, &c->this_update)) return -1;
  if (der_peek(&tbs) == ASN_UTC_TIME || der_peek(&tbs) == ASN_GENERALIZED_TIME) {
    if (der_next(&tbs, &tag, &v, &n) || der_time(tag, v, n, &c->next_update)) return -1;
  }
  if (der_peek(&tbs) == (ASN_SEQUENCE | ASN_CONSTRUCTED)) {
    if (der_next(&tbs, &tag, &v, &n)) return -1;
    rl.p = v;
    rl.end = v + n;
    while (rl.p < rl.end) {
      der_t e;
      const unsigned char *sn;
      size_t sl;
      if (der_next(&rl, &tag, &v, &n) || tag != (ASN_SEQUENCE | ASN_CONSTRUCTED))
        return -1;
      e.p = v;
      e.end = v + n;
      if (der_next(&e, &tag, &sn, &sl) || tag != ASN_INTEGER || sl == 0) return -1;
      strip_zeros(&sn, &sl);
      if (c->n_serials == cap) {
        size_t nc = cap ? cap * 2 : 16;
        const unsigned char **ns = realloc(c->serials, nc * sizeof(*ns));
        size_t *nl;
        if (ns == NULL) {
          *why = "out of memory";
          return -1;
        }
        c->serials = ns;
        nl = realloc(c->serial_lens, nc * sizeof(*nl));
        if (nl == NULL) {
          *why = "out of memory";
          return -1;
        }
        c->serial_lens = nl;
        cap = nc;
      }
      c->serials[c->n_serials] = sn;
      c->serial_lens[c->n_serials++] = sl;
    }
  }
  /* crlExtensions are not interpreted: no critical extension we know changes which
   * serials are revoked except issuingDistributionPoint/deltaCRLIndicator, which
   * ztproxy's CRLs do not use. */
  *why = NULL;
  return 0;
}

/* 0 when sig over tbs verifies with the public key of the certificate der. */
static int crl_verify_with(const crl_t *c, const unsigned char *der, size_t len) {
  DecodedCert dc;
  int rc = -1;
  word32 idx = 0;

  wc_InitDecodedCert(&dc, der, (word32)len, NULL);
  if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) != 0) goto done;
  if (c->rsa && dc.keyOID == RSAk) {
    RsaKey k;
    if (wc_InitRsaKey(&k, NULL) != 0) goto done;
    if (wc_RsaPublicKeyDecode(dc.publicKey, &idx, &k, dc.pubKeySize) == 0 &&
        wc_SignatureVerify((enum wc_HashType)c->hash, WC_SIGNATURE_TYPE_RSA_W_ENC, c->tbs,
                           (word32)c->tbs_len, c->sig, (word32)c->sig_len, &k,
                           sizeof(k)) == 0)
      rc = 0;
    wc_FreeRsaKey(&k);
  } else if (!c->rsa && dc.keyOID == ECDSAk) {
    ecc_key k;
    if (wc_ecc_init(&k) != 0) goto done;
    if (wc_EccPublicKeyDecode(dc.publicKey, &idx, &k, dc.pubKeySize) == 0 &&
        wc_SignatureVerify((enum wc_HashType)c->hash, WC_SIGNATURE_TYPE_ECC, c->tbs,
                           (word32)c->tbs_len, c->sig, (word32)c->sig_len, &k,
                           sizeof(k)) == 0)
      rc = 0;
    wc_ecc_free(&k);
  }
done:
  wc_FreeDecodedCert(&dc);
  return rc;
}

static int add_one_crl(zt_bundle_set_t *s, const unsigned char *der, size_t len,
                       const char *source, size_t index, zt_error_t *err) {
  crl_t c, *nc;
  const char *why = NULL;
  size_t i, j;
  int name_match = 0;

  memset(&c, 0, sizeof(c));
  c.td = -1;
  c.der = malloc(len);
  if (c.der == NULL) return zt_error_set(err, source, 0, 0, "out of memory");
  memcpy(c.der, der, len);
  c.len = len;
  if (crl_parse(&c, &why) != 0) {
    zt_error_set(err, source, 0, 0, "CRL %zu: %s", index, why);
    goto fail;
  }
  for (i = 0; i < s->n_tds && c.td < 0; i++)
    for (j = 0; j < s->tds[i].n_roots; j++) {
      const root_t *r = &s->tds[i].roots[j];
      if (r->subj_len != c.issuer_len ||
          memcmp(r->der + r->subj_off, c.issuer, c.issuer_len) != 0)
        continue;
      name_match = 1;
      if (crl_verify_with(&c, r->der, r->len) == 0) {
        c.td = (long)i;
        break;
      }
    }
  if (name_match && c.td < 0) {
    zt_error_set(err, source, 0, 0, "CRL %zu: its signature does not verify with the "
                 "key of the bundle CA that it names as issuer", index);
    goto fail;
  }
  nc = realloc(s->crls, (s->n_crls + 1) * sizeof(*nc));
  if (nc == NULL) {
    zt_error_set(err, source, 0, 0, "out of memory");
    goto fail;
  }
  s->crls = nc;
  s->crls[s->n_crls++] = c;
  return 0;

fail:
  free(c.der);
  free(c.serials);
  free(c.serial_lens);
  return -1;
}

int zt_bundle_set_add_crl(zt_bundle_set_t *s, const unsigned char *pem, size_t len,
                          const char *source, zt_error_t *err) {
  static const char begin[] = "-----BEGIN X509 CRL-----";
  static const char end_m[] = "-----END X509 CRL-----";
  const char *p = (const char *)pem, *end = (const char *)pem + len;
  size_t count = 0;

  if (pem == NULL || len == 0)
    return zt_error_set(err, source, 0, 0, "the CRL file is empty");
  for (;;) {
    const char *b = NULL, *e = NULL, *q;
    int n;
    for (q = p; q + sizeof(begin) - 1 <= end; q++)
      if (memcmp(q, begin, sizeof(begin) - 1) == 0) {
        b = q;
        break;
      }
    if (b == NULL) break;
    for (q = b; q + sizeof(end_m) - 1 <= end; q++)
      if (memcmp(q, end_m, sizeof(end_m) - 1) == 0) {
        e = q + sizeof(end_m) - 1;
        break;
      }
    if (e == NULL)
      return zt_error_set(err, source, 0, 0, "a CRL begins but does not end (truncated "
                                             "or half-written file)");
    {
      DerBuffer *db = NULL;
      n = wc_PemToDer((const unsigned char *)b, (long)(e - b), CRL_TYPE, &db, NULL, NULL,
                      NULL);
      if (n != 0 || db == NULL) {
        wc_FreeDer(&db);
        return zt_error_set(err, source, 0, 0, "CRL %zu: the PEM block does not decode",
                            count + 1);
      }
      n = add_one_crl(s, db->buffer, db->length, source, ++count, err);
      wc_FreeDer(&db);
      if (n != 0) return -1;
    }
    p = e;
  }
  if (count == 0)
    return zt_error_set(err, source, 0, 0, "no PEM CRL (\"X509 CRL\") in the file");
  return 0;
}

int zt_bundle_set_add_crl_file(zt_bundle_set_t *s, const char *path, zt_error_t *err) {
  unsigned char *pem;
  size_t len;
  int rc;
  if (zt_pem_read_file(path, &pem, &len, err) != 0) return -1;
  rc = zt_bundle_set_add_crl(s, pem, len, path, err);
  free(pem);
  return rc;
}

/* ---- verification -------------------------------------------------------------- */

static const char *wolf_reason(int rc) {
  switch (rc) {
  case ASN_NO_SIGNER_E: return ZT_REASON_UNKNOWN_CA;
  case ASN_AFTER_DATE_E: return ZT_REASON_EXPIRED;
  case ASN_BEFORE_DATE_E: return ZT_REASON_NOT_YET_VALID;
  case ASN_SIG_CONFIRM_E: case ASN_SIG_OID_E: case ASN_SIG_HASH_E: case ASN_SIG_KEY_E:
    return ZT_REASON_BAD_SIGNATURE;
  default: return ZT_REASON_UNKNOWN_CA;
  }
}

/* Verify the chain to a root of t with wolfSSL. NULL when it does, else a reason. */
static const char *chain_verify(const td_t *t, const unsigned char *const *ders,
                                const size_t *lens, size_t n) {
  WOLFSSL_CERT_MANAGER *cm = t->cm;
  const char *why = NULL;
  size_t i;
  int rc;

  if (n > 1) {
    cm = wolfSSL_CertManagerNew();
    if (cm == NULL) return ZT_REASON_TLS_ERROR;
    for (i = 0; i < t->n_roots; i++)
      if (wolfSSL_CertManagerLoadCABuffer(cm, t->roots[i].der, (long)t->roots[i].len,
                                          WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
        why = ZT_REASON_TLS_ERROR;
        goto done;
      }
    /* From the intermediate next to the root down to the leaf's issuer: verify each
     * against what is already trusted, only then trust it. */
    for (i = n - 1; i >= 1; i--) {
      rc = wolfSSL_CertManagerVerifyBuffer(cm, ders[i], (long)lens[i],
                                           WOLFSSL_FILETYPE_ASN1);
      if (rc != WOLFSSL_SUCCESS) {
        why = wolf_reason(rc);
        goto done;
      }
      if (wolfSSL_CertManagerLoadCABuffer(cm, ders[i], (long)lens[i],
                                          WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
        why = ZT_SVID_SIGNER_NOT_CA;
        goto done;
      }
    }
  }
  rc = wolfSSL_CertManagerVerifyBuffer(cm, ders[0], (long)lens[0], WOLFSSL_FILETYPE_ASN1);
  if (rc != WOLFSSL_SUCCESS) why = wolf_reason(rc);
done:
  if (cm != t->cm) wolfSSL_CertManagerFree(cm);
  return why;
}

int zt_bundle_set_is_path(const zt_bundle_set_t *s, size_t td_index,
                          const unsigned char *const *ders, const size_t *lens,
                          size_t n) {
  const unsigned char *issuer = NULL;   /* of the previous certificate */
  size_t issuer_len = 0, i, j;
  unsigned char akid[KEYID_SIZE];
  const td_t *t;
  if (td_index >= s->n_tds || n == 0) return 0;
  t = &s->tds[td_index];
  for (i = 0; i < n; i++) {
    DecodedCert dc;
    int ok;
    wc_InitDecodedCert(&dc, ders[i], (word32)lens[i], NULL);
    ok = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) == 0 && dc.extAuthKeyIdSet &&
         dc.subjectRaw != NULL && dc.issuerRaw != NULL &&
         (i == 0 || (issuer_len == (size_t)dc.subjectRawLen &&
                     memcmp(issuer, dc.subjectRaw, issuer_len) == 0 &&
                     memcmp(akid, dc.extSubjKeyId, KEYID_SIZE) == 0));
    if (ok) {                        /* issuerRaw points into ders[i], which outlives dc */
      issuer = dc.issuerRaw;
      issuer_len = (size_t)dc.issuerRawLen;
      memcpy(akid, dc.extAuthKeyId, KEYID_SIZE);
    }
    wc_FreeDecodedCert(&dc);
    if (!ok) return 0;
  }
  for (j = 0; j < t->n_roots; j++)     /* the last certificate's issuer */
    if (t->roots[j].subj_len == issuer_len &&
        memcmp(t->roots[j].der + t->roots[j].subj_off, issuer, issuer_len) == 0 &&
        memcmp(t->roots[j].skid, akid, KEYID_SIZE) == 0)
      return 1;
  return 0;
}

typedef struct {
  const unsigned char *issuer; size_t issuer_len;
  const unsigned char *serial; size_t serial_len;
} cert_ref_t;

static int cert_ref(const unsigned char *der, size_t len, cert_ref_t *r) {
  DecodedCert dc;
  int rc;
  /* The reference points into der: only the offsets are taken from the parser. */
  wc_InitDecodedCert(&dc, der, (word32)len, NULL);
  rc = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
  if (rc == 0 && dc.issuerRaw != NULL) {
    r->issuer = dc.issuerRaw;
    r->issuer_len = (size_t)dc.issuerRawLen;
  } else {
    rc = -1;
  }
  wc_FreeDecodedCert(&dc);
  if (rc != 0) return -1;
  /* The serial: TBSCertificate's [0] version then INTEGER; read it ourselves. */
  {
    der_t d = {der, der + len}, tbs;
    unsigned char tag;
    const unsigned char *v;
    size_t n;
    if (der_next(&d, &tag, &v, &n)) return -1;
    d.p = v;
    d.end = v + n;
    if (der_next(&d, &tag, &v, &n)) return -1;
    tbs.p = v;
    tbs.end = v + n;
    if (der_peek(&tbs) == (ASN_CONTEXT_SPECIFIC | ASN_CONSTRUCTED | 0) &&
        der_next(&tbs, &tag, &v, &n))
      return -1;
    if (der_next(&tbs, &tag, &v, &n) || tag != ASN_INTEGER || n == 0) return -1;
    strip_zeros(&v, &n);
    r->serial = v;
    r->serial_len = n;
  }
  return 0;
}

/* A certificate of the chain is revoked when a CRL of its issuer's name lists its
 * serial and that issuer signed the CRL: a root of t (verified when the CRL was
 * loaded) or any certificate further up the chain. The peer chooses the order it
 * sends its chain in, so the next certificate is not taken for the issuer: with it, a
 * revoked SVID followed by some other CA certificate of the trust domain would find
 * no CRL that verifies, and pass. */
int zt_bundle_set_revoked(const zt_bundle_set_t *s, size_t td_index,
                          const unsigned char *const *ders, const size_t *lens,
                          size_t n) {
  size_t i, j, k, m;
  if (td_index >= s->n_tds || n == 0) return 0;
  for (i = 0; i < n; i++) {
    cert_ref_t r;
    if (cert_ref(ders[i], lens[i], &r) != 0) return 1; /* fail closed */
    for (k = 0; k < s->n_crls; k++) {
      const crl_t *c = &s->crls[k];
      int hit = 0;
      if (c->issuer_len != r.issuer_len || memcmp(c->issuer, r.issuer, r.issuer_len))
        continue;
      for (m = 0; m < c->n_serials && !hit; m++)
        hit = c->serial_lens[m] == r.serial_len &&
              memcmp(c->serials[m], r.serial, r.serial_len) == 0;
      if (!hit) continue;
      if (c->td == (long)td_index) return 1;
      for (j = i + 1; j < n; j++)
        if (crl_verify_with(c, ders[j], lens[j]) == 0) return 1;
    }
  }
  return 0;
}

int zt_bundle_set_verify(const zt_bundle_set_t *s, const unsigned char *const *ders,
                         const size_t *lens, size_t n, int64_t now,
                         zt_svid_info_t *leaf_out, const char **reason) {
  zt_svid_info_t *leaf = leaf_out, *tmp = NULL;
  const char *why = NULL;
  size_t i;
  int td;

  if (leaf == NULL) {
    tmp = malloc(sizeof(*tmp));
    if (tmp == NULL) {
      if (reason) *reason = ZT_REASON_TLS_ERROR;
      return -1;
    }
    leaf = tmp;
  }
  if (zt_svid_check_chain(ders, lens, n, leaf, &why) != 0) goto fail;
  td = zt_bundle_set_find(s, leaf->spiffe.td, leaf->spiffe.td_len);
  if (td < 0) {
    why = ZT_REASON_FOREIGN_TD;
    goto fail;
  }
  /* Dates at the caller's clock, leaf first so the leaf's own state is what is
   * reported. */
  if (now < leaf->not_before) {
    why = ZT_REASON_NOT_YET_VALID;
    goto fail;
  }
  if (now >= leaf->not_after) {
    why = ZT_REASON_EXPIRED;
    goto fail;
  }
  if (n > 1) {
    zt_svid_info_t *ci = malloc(sizeof(*ci));
    if (ci == NULL) {
      why = ZT_REASON_TLS_ERROR;
      goto fail;
    }
    for (i = 1; i < n && why == NULL; i++) {
      zt_svid_rules(ders[i], lens[i], 0, ci, NULL);
      if (now < ci->not_before) why = ZT_REASON_NOT_YET_VALID;
      else if (now >= ci->not_after) why = ZT_REASON_EXPIRED;
    }
    free(ci);
    if (why != NULL) goto fail;
  }
  why = chain_verify(&s->tds[td], ders, lens, n);
  if (why != NULL) goto fail;
  if (zt_bundle_set_revoked(s, (size_t)td, ders, lens, n)) {
    why = ZT_REASON_REVOKED;
    goto fail;
  }
  free(tmp);
  return 0;

fail:
  if (leaf_out != NULL) {
    leaf_out->id[0] = '\0';
    leaf_out->id_len = 0;
    memset(&leaf_out->spiffe, 0, sizeof(leaf_out->spiffe));
  }
  free(tmp);
  if (reason) *reason = why;
  return -1;
}
