/* identity/issue.c: issuing CA certificates and X.509-SVIDs with wolfSSL certgen.
 *
 * One path for both kinds: fill a wolfSSL Cert (subject, SANs we encode ourselves as
 * raw GeneralNames, raw validity dates, extensions), wc_MakeCert over the subject's
 * key, wc_SignCert with the signer's key, then write key and certificate as PEM. The
 * generated DER is parsed back with zt_svid_check_leaf() before anything is written,
 * so a certificate we cannot read ourselves never reaches disk.
 *
 * Ownership: every wolfSSL object (RNG, keys, Cert and its cached DecodedCert) lives
 * in one function and is released in its single cleanup block; private-key bytes are
 * wiped before their buffers are freed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkstemp, fchmod, fsync, gmtime_r */
#endif

#include "issue.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spiffe.h"

#define CERT_DER_MAX (CTC_MAX_ALT_SIZE + 4096)
#define KEY_DER_MAX 512
#define KEY_PEM_MAX 1024
#define SERIAL_LEN 16

static void wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n--) *v++ = 0;
}

/* ---- files ------------------------------------------------------------------ */

/* Write data to path through a temporary file in the same folder and rename(2), so
 * readers (and the rotation watcher) see the old file or the new one, never half. */
static int write_file_atomic(const char *path, const void *data, size_t len,
                             mode_t mode, zt_error_t *err) {
  char tmp[4096];
  const unsigned char *p = data;
  int fd, n;

  n = snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
  if (n < 0 || (size_t)n >= sizeof(tmp))
    return zt_error_set(err, path, 0, 0, "path is too long");
  fd = mkstemp(tmp);
  if (fd < 0)
    return zt_error_set(err, path, 0, 0, "cannot create: %s", strerror(errno));
  if (fchmod(fd, mode) != 0) goto fail;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR) continue;
      goto fail;
    }
    p += w;
    len -= (size_t)w;
  }
  if (fsync(fd) != 0) goto fail;
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0) goto fail;
  return 0;

fail: {
  int e = errno;
  if (fd >= 0) close(fd);
  unlink(tmp);
  return zt_error_set(err, path, 0, 0, "cannot write: %s", strerror(e));
}
}

static int write_key_pem(ecc_key *key, const char *path, zt_error_t *err) {
  unsigned char der[KEY_DER_MAX], pem[KEY_PEM_MAX];
  int dlen, plen, rc;

  dlen = wc_EccKeyToDer(key, der, sizeof(der));
  if (dlen <= 0) return zt_error_set(err, path, 0, 0, "cannot encode the key (%d)", dlen);
  plen = wc_DerToPem(der, (word32)dlen, pem, sizeof(pem), ECC_PRIVATEKEY_TYPE);
  wipe(der, sizeof(der));
  if (plen <= 0) return zt_error_set(err, path, 0, 0, "cannot encode the key (%d)", plen);
  rc = write_file_atomic(path, pem, (size_t)plen, 0600, err);
  wipe(pem, sizeof(pem));
  return rc;
}

static int write_cert_pem(const unsigned char *der, int dlen, const char *path,
                          zt_error_t *err) {
  unsigned char *pem;
  int cap = dlen * 2 + 256, plen, rc;

  pem = malloc((size_t)cap);
  if (pem == NULL) return zt_error_set(err, path, 0, 0, "out of memory");
  plen = wc_DerToPem(der, (word32)dlen, pem, (word32)cap, CERT_TYPE);
  if (plen <= 0)
    rc = zt_error_set(err, path, 0, 0, "cannot encode the certificate (%d)", plen);
  else
    rc = write_file_atomic(path, pem, (size_t)plen, 0644, err);
  free(pem);
  return rc;
}

/* ---- encoding ---------------------------------------------------------------- */

/* DER length octets of n into out (at least 4 bytes); returns their count. */
static size_t der_length(size_t n, unsigned char *out) {
  if (n < 0x80) {
    out[0] = (unsigned char)n;
    return 1;
  }
  if (n < 0x100) {
    out[0] = 0x81;
    out[1] = (unsigned char)n;
    return 2;
  }
  out[0] = 0x82;
  out[1] = (unsigned char)(n >> 8);
  out[2] = (unsigned char)n;
  return 3;
}

typedef struct {
  unsigned char buf[CTC_MAX_ALT_SIZE];
  size_t len;          /* GeneralName elements, after a 4-byte hole for the header */
} sans_t;

static int sans_add(sans_t *s, unsigned char tag, const char *v) {
  unsigned char l[4];
  size_t n = strlen(v), ln = der_length(n, l);
  if (4 + s->len + 1 + ln + n > sizeof(s->buf)) return -1;
  s->buf[4 + s->len] = tag;
  memcpy(s->buf + 4 + s->len + 1, l, ln);
  memcpy(s->buf + 4 + s->len + 1 + ln, v, n);
  s->len += 1 + ln + n;
  return 0;
}

/* Wrap the elements into GeneralNames and store them in the Cert. */
static int sans_finish(sans_t *s, Cert *c) {
  unsigned char l[4];
  size_t ln;
  if (s->len == 0) {
    c->altNamesSz = 0;
    return 0;
  }
  ln = der_length(s->len, l);
  if (1 + ln + s->len > sizeof(c->altNames)) return -1;
  c->altNames[0] = ASN_SEQUENCE | ASN_CONSTRUCTED;
  memcpy(c->altNames + 1, l, ln);
  memcpy(c->altNames + 1 + ln, s->buf + 4, s->len);
  c->altNamesSz = (int)(1 + ln + s->len);
  return 0;
}

/* Encoded Time (tag, length, content) for t: UTCTime for 1950..2049 as RFC 5280
 * requires, GeneralizedTime otherwise. */
static int time_encode(int64_t t, byte *out, int *out_len) {
  struct tm tm;
  time_t tt = (time_t)t;
  char s[32];
  int n;
  if ((int64_t)tt != t || gmtime_r(&tt, &tm) == NULL) return -1;
  if (tm.tm_year + 1900 < 1 || tm.tm_year + 1900 > 9999) return -1;
  if (tm.tm_year + 1900 >= 1950 && tm.tm_year + 1900 < 2050) {
    n = snprintf(s, sizeof(s), "%02d%02d%02d%02d%02d%02dZ", tm.tm_year % 100,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    out[0] = ASN_UTC_TIME;
  } else {
    n = snprintf(s, sizeof(s), "%04d%02d%02d%02d%02d%02dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    out[0] = ASN_GENERALIZED_TIME;
  }
  if (n != 13 && n != 15) return -1;
  out[1] = (byte)n;
  memcpy(out + 2, s, (size_t)n);
  *out_len = n + 2;
  return 0;
}

static int set_validity(Cert *c, int64_t now, int64_t backdate, int64_t ttl,
                        zt_error_t *err) {
  if (ttl <= 0 || backdate < 0 || ttl > (int64_t)100 * 366 * 86400 ||
      backdate > (int64_t)100 * 366 * 86400)
    return zt_error_set(err, NULL, 0, 0, "ttl must be positive and backdate not "
                                         "negative, both under 100 years");
  if (time_encode(now - backdate, c->beforeDate, &c->beforeDateSz) != 0 ||
      time_encode(now - backdate + ttl, c->afterDate, &c->afterDateSz) != 0)
    return zt_error_set(err, NULL, 0, 0, "validity dates out of range");
  return 0;
}

static int set_serial(Cert *c, WC_RNG *rng) {
  if (wc_RNG_GenerateBlock(rng, c->serial, SERIAL_LEN) != 0) return -1;
  c->serial[0] &= 0x7f;               /* positive */
  if (c->serial[0] == 0) c->serial[0] = 0x01; /* and exactly SERIAL_LEN bytes */
  c->serialSz = SERIAL_LEN;
  return 0;
}

/* "scheme://..." as wolfSSL's parser demands of URI SANs (RFC 5280 4.2.1.6). */
static int absolute_uri(const char *u) {
  const char *p = u;
  if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) return 0;
  while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
         (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' || *p == '.')
    p++;
  if (strncmp(p, "://", 3) != 0) return 0;
  for (; *p; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) return 0;
  return 1;
}

static int dns_name_ok(const char *d) {
  size_t n = strlen(d), i;
  if (n == 0 || n > 253) return 0;
  for (i = 0; i < n; i++) {
    char ch = d[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '*'))
      return 0;
  }
  return 1;
}

/* wc_MakeCert then wc_SignCert into a malloc'd *der; parse it back into res. */
static int make_and_sign(Cert *c, ecc_key *subject, ecc_key *signer, WC_RNG *rng,
                         unsigned char **der, int *der_len, zt_issue_result_t *res,
                         zt_error_t *err) {
  unsigned char *buf;
  zt_svid_info_t *info;
  const char *why = NULL;
  int n;

  buf = malloc(CERT_DER_MAX);
  info = malloc(sizeof(*info));
  if (buf == NULL || info == NULL) {
    free(buf);
    free(info);
    return zt_error_set(err, NULL, 0, 0, "out of memory");
  }
  n = wc_MakeCert(c, buf, CERT_DER_MAX, NULL, subject, rng);
  if (n < 0) {
    zt_error_set(err, NULL, 0, 0, "wc_MakeCert: %s (%d)", wc_GetErrorString(n), n);
    goto fail;
  }
  n = wc_SignCert(c->bodySz, c->sigType, buf, CERT_DER_MAX, NULL, signer, rng);
  if (n < 0) {
    zt_error_set(err, NULL, 0, 0, "wc_SignCert: %s (%d)", wc_GetErrorString(n), n);
    goto fail;
  }
  if (zt_svid_check_leaf(buf, (size_t)n, info, &why) != 0 &&
      strcmp(why, ZT_SVID_MALFORMED) == 0) {
    zt_error_set(err, NULL, 0, 0, "the generated certificate does not parse");
    goto fail;
  }
  if (res != NULL) {
    memcpy(res->serial, info->serial, sizeof(res->serial));
    res->not_before = info->not_before;
    res->not_after = info->not_after;
  }
  free(info);
  *der = buf;
  *der_len = n;
  return 0;

fail:
  free(buf);
  free(info);
  return -1;
}

/* Copy s into a CertName field, truncated to fit: the name is cosmetic, the
 * identity is in the URI SAN. */
static void name_copy(char *dst, size_t cap, const char *s) {
  size_t n = strlen(s);
  if (n > cap - 1) n = cap - 1;
  memcpy(dst, s, n);
  dst[n] = '\0';
}

static void set_name(CertName *n, const char *org, const char *cn) {
  name_copy(n->org, sizeof(n->org), org);
  n->orgEnc = CTC_UTF8;
  if (cn != NULL) {
    name_copy(n->commonName, sizeof(n->commonName), cn);
    n->commonNameEnc = CTC_UTF8;
  }
}

/* ---- CA ----------------------------------------------------------------------- */

int zt_issue_ca(const zt_issue_ca_opts_t *o, const char *cert_path,
                const char *key_path, zt_issue_result_t *res, zt_error_t *err) {
  WC_RNG rng;
  ecc_key key;
  Cert *c = NULL;
  sans_t *sans = NULL;
  unsigned char *der = NULL;
  int der_len = 0, rc = -1, have_rng = 0, have_key = 0;
  const char *why = NULL;
  char uri[ZT_TRUST_DOMAIN_MAX + 16], cn[ZT_TRUST_DOMAIN_MAX + 16];

  if (o->trust_domain == NULL ||
      zt_trust_domain_check(o->trust_domain, strlen(o->trust_domain), &why) != 0)
    return zt_error_set(err, NULL, 0, 0, "invalid trust domain \"%s\": %s",
                        o->trust_domain ? o->trust_domain : "",
                        why ? why : "not a trust domain name");
  snprintf(uri, sizeof(uri), "spiffe://%s", o->trust_domain);
  snprintf(cn, sizeof(cn), "ztproxy CA %s", o->trust_domain);

  c = malloc(sizeof(*c));
  sans = calloc(1, sizeof(*sans));
  if (c == NULL || sans == NULL) {
    zt_error_set(err, NULL, 0, 0, "out of memory");
    goto done;
  }
  if (wc_InitRng(&rng) != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot initialise the random generator");
    goto done;
  }
  have_rng = 1;
  if (wc_ecc_init(&key) != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot initialise a key");
    goto done;
  }
  have_key = 1;
  if (wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot generate a P-256 key");
    goto done;
  }
  if (wc_InitCert(c) != 0) {
    zt_error_set(err, NULL, 0, 0, "wc_InitCert failed");
    goto done;
  }
  c->sigType = CTC_SHA256wECDSA;
  c->keyType = ECC_KEY;
  c->isCA = 1;
  c->selfSigned = 1;
  set_name(&c->subject, "ztproxy", cn);
  if (set_validity(c, o->now, o->backdate, o->ttl, err) != 0) goto done;
  if (set_serial(c, &rng) != 0 || sans_add(sans, ASN_CONTEXT_SPECIFIC | ASN_URI_TYPE,
                                           uri) != 0 || sans_finish(sans, c) != 0 ||
      wc_SetKeyUsage(c, "keyCertSign,cRLSign,digitalSignature") != 0 ||
      wc_SetSubjectKeyIdFromPublicKey(c, NULL, &key) != 0 ||
      wc_SetAuthKeyIdFromPublicKey(c, NULL, &key) != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot set the certificate's extensions");
    goto done;
  }
  if (make_and_sign(c, &key, &key, &rng, &der, &der_len, res, err) != 0) goto done;
  if (write_key_pem(&key, key_path, err) != 0) goto done;
  if (write_cert_pem(der, der_len, cert_path, err) != 0) goto done;
  rc = 0;

done:
  free(der);
  if (c != NULL) {
#ifdef WOLFSSL_CERT_GEN_CACHE
    wc_SetCert_Free(c); /* else each wc_Set*FromCert freed its own DecodedCert */
#endif
    free(c);
  }
  free(sans);
  if (have_key) wc_ecc_free(&key);
  if (have_rng) wc_FreeRng(&rng);
  return rc;
}

/* ---- SVID --------------------------------------------------------------------- */

typedef struct {
  unsigned char *cert_der;  /* first certificate of the CA file */
  size_t cert_len;
  ecc_key key;
  int have_key;
  int raw_issuer_ok;        /* its subject DER can go through wc_SetIssuerRaw */
} ca_t;

static void ca_free(ca_t *ca) {
  free(ca->cert_der);
  if (ca->have_key) wc_ecc_free(&ca->key);
}

/* Load the CA certificate and key and check they belong together: a CA certificate
 * allowed to sign certificates, whose public key is the key's. */
static int ca_load(ca_t *ca, const char *cert_path, const char *key_path,
                   zt_error_t *err) {
  unsigned char *pem = NULL, *kder = NULL;
  unsigned char spki_key[256], spki_cert[256];
  size_t pem_len;
  word32 idx = 0, cert_spki_len = sizeof(spki_cert);
  int n, rc = -1, key_spki_len, is_ca, ku_ok;
  DecodedCert dc;

  memset(ca, 0, sizeof(*ca));
  if (zt_pem_read_file(cert_path, &pem, &pem_len, err) != 0) return -1;
  if (zt_pem_first_cert_der(pem, pem_len, &ca->cert_der, &ca->cert_len) != 0) {
    free(pem);
    return zt_error_set(err, cert_path, 0, 0, "no PEM certificate in the file");
  }
  free(pem);
  pem = NULL;

  wc_InitDecodedCert(&dc, ca->cert_der, (word32)ca->cert_len, NULL);
  n = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
  is_ca = n == 0 && dc.isCA;
  ku_ok = !dc.extKeyUsageSet || (dc.extKeyUsage & KEYUSE_KEY_CERT_SIGN);
  if (n == 0 && wc_GetPubKeyDerFromCert(&dc, spki_cert, &cert_spki_len) != 0)
    cert_spki_len = 0;
  /* wolfSSL sizes the raw issuer with strlen(), so only a name without 0x00 bytes
   * that leaves room for a terminator can be copied raw. */
  ca->raw_issuer_ok = n == 0 && dc.subjectRaw != NULL && dc.subjectRawLen > 0 &&
                      (size_t)dc.subjectRawLen < sizeof(CertName) &&
                      memchr(dc.subjectRaw, 0, (size_t)dc.subjectRawLen) == NULL;
  wc_FreeDecodedCert(&dc);
  if (n != 0) {
    zt_error_set(err, cert_path, 0, 0, "cannot parse the certificate: %s",
                 wc_GetErrorString(n));
    goto fail;
  }
  if (!is_ca || !ku_ok) {
    zt_error_set(err, cert_path, 0, 0, "not a CA certificate (needs CA:TRUE and "
                                       "keyCertSign)");
    goto fail;
  }

  if (zt_pem_read_file(key_path, &pem, &pem_len, err) != 0) goto fail;
  kder = malloc(pem_len + 1);
  if (kder == NULL) {
    zt_error_set(err, key_path, 0, 0, "out of memory");
    goto fail;
  }
  n = wc_KeyPemToDer(pem, (int)pem_len, kder, (int)pem_len + 1, NULL);
  if (n <= 0) {
    zt_error_set(err, key_path, 0, 0, "no PEM private key in the file");
    goto fail;
  }
  if (wc_ecc_init(&ca->key) != 0) {
    zt_error_set(err, key_path, 0, 0, "cannot initialise a key");
    goto fail;
  }
  ca->have_key = 1;
  if (wc_EccPrivateKeyDecode(kder, &idx, &ca->key, (word32)n) != 0) {
    /* PKCS#8 "PRIVATE KEY": skip to the SEC1 key inside, then try again. */
    idx = 0;
    if (wc_GetPkcs8TraditionalOffset(kder, &idx, (word32)n) < 0 ||
        wc_EccPrivateKeyDecode(kder, &idx, &ca->key, (word32)n) != 0) {
      zt_error_set(err, key_path, 0, 0, "not an EC private key");
      goto fail;
    }
  }
  key_spki_len = wc_EccPublicKeyToDer(&ca->key, spki_key, sizeof(spki_key), 1);
  if (key_spki_len <= 0 || cert_spki_len != (word32)key_spki_len ||
      memcmp(spki_key, spki_cert, cert_spki_len) != 0) {
    zt_error_set(err, key_path, 0, 0, "the key does not match the CA certificate %s",
                 cert_path);
    goto fail;
  }
  rc = 0;

fail:
  if (pem != NULL) {
    wipe(pem, pem_len);
    free(pem);
  }
  if (kder != NULL) {
    wipe(kder, pem_len + 1);
    free(kder);
  }
  if (rc != 0) {
    ca_free(ca);
    memset(ca, 0, sizeof(*ca));
  }
  return rc;
}

int zt_issue_svid(const zt_issue_svid_opts_t *o, const char *cert_path,
                  const char *key_path, zt_issue_result_t *res, zt_error_t *err) {
  WC_RNG rng;
  ecc_key key;
  ca_t ca;
  Cert *c = NULL;
  sans_t *sans = NULL;
  unsigned char *der = NULL;
  int der_len = 0, rc = -1, have_rng = 0, have_key = 0, have_ca = 0;
  const char *why = NULL;
  zt_spiffe_id_t sid;
  size_t i;

  /* Arguments first: nothing is generated or read for a request that cannot work. */
  if (!o->no_uri) {
    if (o->id == NULL)
      return zt_error_set(err, NULL, 0, 0, "a SPIFFE ID is required");
    if (zt_spiffe_id_parse(o->id, strlen(o->id), &sid, &why) != 0)
      return zt_error_set(err, NULL, 0, 0, "invalid SPIFFE ID \"%s\": %s", o->id,
                          why ? why : "not a SPIFFE ID");
  }
  for (i = 0; i < o->n_extra_uris; i++)
    if (!absolute_uri(o->extra_uris[i]))
      return zt_error_set(err, NULL, 0, 0, "extra URI \"%s\" is not an absolute "
                          "URI (scheme://...)", o->extra_uris[i]);
  for (i = 0; i < o->n_dns; i++)
    if (!dns_name_ok(o->dns[i]))
      return zt_error_set(err, NULL, 0, 0, "invalid DNS name \"%s\"", o->dns[i]);

  if (ca_load(&ca, o->ca_cert, o->ca_key, err) != 0) return -1;
  have_ca = 1;

  c = malloc(sizeof(*c));
  sans = calloc(1, sizeof(*sans));
  if (c == NULL || sans == NULL) {
    zt_error_set(err, NULL, 0, 0, "out of memory");
    goto done;
  }
  if (wc_InitRng(&rng) != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot initialise the random generator");
    goto done;
  }
  have_rng = 1;
  if (wc_ecc_init(&key) != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot initialise a key");
    goto done;
  }
  have_key = 1;
  if (wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot generate a P-256 key");
    goto done;
  }
  if (wc_InitCert(c) != 0) {
    zt_error_set(err, NULL, 0, 0, "wc_InitCert failed");
    goto done;
  }
  c->sigType = CTC_SHA256wECDSA;
  c->keyType = ECC_KEY;
  c->isCA = o->is_ca ? 1 : 0;
  c->basicConstSet = 1; /* an explicit (empty, so CA:FALSE) basicConstraints */
  set_name(&c->subject, "ztproxy", NULL);
  if (set_validity(c, o->now, o->backdate, o->ttl, err) != 0) goto done;

  if (!o->no_uri && sans_add(sans, ASN_CONTEXT_SPECIFIC | ASN_URI_TYPE, o->id) != 0)
    goto too_many;
  for (i = 0; i < o->n_extra_uris; i++)
    if (sans_add(sans, ASN_CONTEXT_SPECIFIC | ASN_URI_TYPE, o->extra_uris[i]) != 0)
      goto too_many;
  for (i = 0; i < o->n_dns; i++)
    if (sans_add(sans, ASN_CONTEXT_SPECIFIC | ASN_DNS_TYPE, o->dns[i]) != 0)
      goto too_many;
  if (sans_finish(sans, c) != 0) goto too_many;

  if (set_serial(c, &rng) != 0 ||
      wc_SetKeyUsage(c, o->is_ca ? "keyCertSign,cRLSign,digitalSignature"
                                 : "digitalSignature") != 0 ||
      wc_SetExtKeyUsage(c, "serverAuth,clientAuth") != 0 ||
      wc_SetSubjectKeyIdFromPublicKey(c, NULL, &key) != 0 ||
      wc_SetAuthKeyIdFromCert(c, ca.cert_der, (int)ca.cert_len) != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot set the certificate's extensions");
    goto done;
  }
  /* Issuer: the CA's subject, byte for byte when wolfSSL can take it raw (so chain
   * building matches names exactly), else re-encoded from its fields. */
  if (wc_SetIssuerBuffer(c, ca.cert_der, (int)ca.cert_len) != 0 ||
      (ca.raw_issuer_ok &&
       wc_SetIssuerRaw(c, ca.cert_der, (int)ca.cert_len) != 0)) {
    zt_error_set(err, o->ca_cert, 0, 0, "cannot take the issuer name");
    goto done;
  }
  if (make_and_sign(c, &key, &ca.key, &rng, &der, &der_len, res, err) != 0) goto done;
  if (write_key_pem(&key, key_path, err) != 0) goto done;
  if (write_cert_pem(der, der_len, cert_path, err) != 0) goto done;
  rc = 0;
  goto done;

too_many:
  zt_error_set(err, NULL, 0, 0, "the subject alternative names do not fit in %d bytes",
               (int)CTC_MAX_ALT_SIZE);
done:
  free(der);
  if (c != NULL) {
#ifdef WOLFSSL_CERT_GEN_CACHE
    wc_SetCert_Free(c); /* else each wc_Set*FromCert freed its own DecodedCert */
#endif
    free(c);
  }
  free(sans);
  if (have_key) wc_ecc_free(&key);
  if (have_rng) wc_FreeRng(&rng);
  if (have_ca) ca_free(&ca);
  return rc;
}
