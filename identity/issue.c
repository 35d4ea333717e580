/* identity/issue.c: issuing CA certificates and X.509-SVIDs with wolfSSL certgen.
 *
 * One path for both kinds: fill a wolfSSL Cert (subject, SANs we encode ourselves as
 * raw GeneralNames, raw validity dates, extensions), wc_MakeCert over the subject's
 * key, wc_SignCert with the signer's key, then write key and certificate as PEM. The
 * generated DER is parsed back with zt_svid_check_leaf() before anything is written,
 * so a certificate we cannot read ourselves never reaches disk.
 *
 * Keys are EC (P-256 by default, P-384) or RSA; RSA-1024 and SHA-1 signatures exist
 * only so tests can make the certificates the verifier must refuse. An intermediate
 * CA is a CA signed by another (zt_issue_ca with ca_cert/ca_key); its file holds it
 * and its parent's chain, and an SVID it issues is written with that chain after it.
 * zt_issue_crl encodes a v2 CRL by hand (wolfSSL 5.5.4 has no CRL generation).
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
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/signature.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spiffe.h"

#define CERT_DER_MAX (CTC_MAX_ALT_SIZE + 4096)
#define KEY_DER_MAX 4096
#define KEY_PEM_MAX 8192
#define SERIAL_LEN 16

static void wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n--) *v++ = 0;
}

/* ---- keys: EC or RSA ------------------------------------------------------- */

typedef struct {
  int type; /* ECC_KEY or RSA_KEY; 0 while not initialised */
  ecc_key ecc;
  RsaKey rsa;
} zkey_t;

static ecc_key *zk_ecc(zkey_t *k) { return k->type == ECC_KEY ? &k->ecc : NULL; }
static RsaKey *zk_rsa(zkey_t *k) { return k->type == RSA_KEY ? &k->rsa : NULL; }

static void zkey_free(zkey_t *k) {
  if (k == NULL) return;
  if (k->type == ECC_KEY) wc_ecc_free(&k->ecc);
  if (k->type == RSA_KEY) wc_FreeRsaKey(&k->rsa);
  k->type = 0;
}

/* RSA bits of a key type name, 0 for EC ones, -1 for an unknown name. */
static int key_type_bits(const char *t) {
  if (t == NULL || strcmp(t, "p256") == 0 || strcmp(t, "p384") == 0) return 0;
  if (strcmp(t, "rsa1024") == 0) return 1024;
  if (strcmp(t, "rsa2048") == 0) return 2048;
  if (strcmp(t, "rsa3072") == 0) return 3072;
  return -1;
}

static int check_algs(const char *key_type, const char *sig, zt_error_t *err) {
  if (key_type_bits(key_type) < 0)
    return zt_error_set(err, NULL, 0, 0, "unknown key type \"%s\" (p256, p384, rsa2048, "
                        "rsa3072, rsa1024)", key_type);
  if (sig != NULL && strcmp(sig, "sha256") != 0 && strcmp(sig, "sha1") != 0)
    return zt_error_set(err, NULL, 0, 0, "unknown signature hash \"%s\" (sha256, sha1)",
                        sig);
  return 0;
}

static int zkey_generate(zkey_t *k, const char *type, WC_RNG *rng, zt_error_t *err) {
  int bits = key_type_bits(type);
  memset(k, 0, sizeof(*k));
  if (bits == 0) {
    int p384 = type != NULL && strcmp(type, "p384") == 0;
    if (wc_ecc_init(&k->ecc) != 0)
      return zt_error_set(err, NULL, 0, 0, "cannot initialise a key");
    k->type = ECC_KEY;
    if (wc_ecc_make_key_ex(rng, p384 ? 48 : 32, &k->ecc,
                           p384 ? ECC_SECP384R1 : ECC_SECP256R1) != 0)
      return zt_error_set(err, NULL, 0, 0, "cannot generate an EC key");
    return 0;
  }
  if (bits < 0) return check_algs(type, NULL, err);
  if (wc_InitRsaKey(&k->rsa, NULL) != 0)
    return zt_error_set(err, NULL, 0, 0, "cannot initialise a key");
  k->type = RSA_KEY;
  if (wc_MakeRsaKey(&k->rsa, bits, WC_RSA_EXPONENT, rng) != 0)
    return zt_error_set(err, NULL, 0, 0, "cannot generate an RSA-%d key", bits);
  return 0;
}

/* Private key DER (SEC1 EC, PKCS#1 RSA, or PKCS#8 of either) into k. */
static int zkey_decode(zkey_t *k, const unsigned char *der, word32 len) {
  word32 idx = 0, off = 0;
  memset(k, 0, sizeof(*k));
  if (wc_ecc_init(&k->ecc) != 0) return -1;
  k->type = ECC_KEY;
  if (wc_EccPrivateKeyDecode(der, &idx, &k->ecc, len) == 0) return 0;
  if (wc_GetPkcs8TraditionalOffset((byte *)der, &off, len) >= 0) {
    idx = off;
    if (wc_EccPrivateKeyDecode(der, &idx, &k->ecc, len) == 0) return 0;
  } else {
    off = 0;
  }
  zkey_free(k);
  if (wc_InitRsaKey(&k->rsa, NULL) != 0) return -1;
  k->type = RSA_KEY;
  idx = off;
  if (wc_RsaPrivateKeyDecode(der, &idx, &k->rsa, len) == 0) return 0;
  idx = 0;
  if (wc_RsaPrivateKeyDecode(der, &idx, &k->rsa, len) == 0) return 0;
  zkey_free(k);
  return -1;
}

/* SubjectPublicKeyInfo of k into out; its length, or <= 0. */
static int zkey_spki(zkey_t *k, unsigned char *out, word32 cap) {
  if (k->type == ECC_KEY) return wc_EccPublicKeyToDer(&k->ecc, out, cap, 1);
  if (k->type == RSA_KEY) return wc_RsaKeyToPublicDer(&k->rsa, out, cap);
  return -1;
}

/* The signature type for a signer's key and the hash asked for. */
static int sig_type(const zkey_t *signer, const char *sig) {
  int sha1 = sig != NULL && strcmp(sig, "sha1") == 0;
  if (signer->type == RSA_KEY) return sha1 ? CTC_SHAwRSA : CTC_SHA256wRSA;
  return sha1 ? CTC_SHAwECDSA : CTC_SHA256wECDSA;
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

static int write_key_pem(zkey_t *key, const char *path, zt_error_t *err) {
  unsigned char *der, *pem;
  int dlen, plen, rc;

  der = malloc(KEY_DER_MAX);
  pem = malloc(KEY_PEM_MAX);
  if (der == NULL || pem == NULL) {
    free(der);
    free(pem);
    return zt_error_set(err, path, 0, 0, "out of memory");
  }
  if (key->type == ECC_KEY)
    dlen = wc_EccKeyToDer(&key->ecc, der, KEY_DER_MAX);
  else
    dlen = wc_RsaKeyToDer(&key->rsa, der, KEY_DER_MAX);
  if (dlen <= 0) {
    rc = zt_error_set(err, path, 0, 0, "cannot encode the key (%d)", dlen);
    goto done;
  }
  plen = wc_DerToPem(der, (word32)dlen, pem, KEY_PEM_MAX,
                     key->type == ECC_KEY ? ECC_PRIVATEKEY_TYPE : PRIVATEKEY_TYPE);
  if (plen <= 0) {
    rc = zt_error_set(err, path, 0, 0, "cannot encode the key (%d)", plen);
    goto done;
  }
  rc = write_file_atomic(path, pem, (size_t)plen, 0600, err);
done:
  wipe(der, KEY_DER_MAX);
  wipe(pem, KEY_PEM_MAX);
  free(der);
  free(pem);
  return rc;
}

/* der (the new certificate) then extra[0..n_extra) (its issuer's chain) as PEM. */
static int write_cert_pem(const unsigned char *der, int dlen,
                          const zt_der_list_t *extra, const char *path,
                          zt_error_t *err) {
  unsigned char *pem;
  size_t cap = (size_t)dlen * 2 + 256, used = 0, i;
  int plen, rc;

  for (i = 0; extra != NULL && i < extra->n; i++) cap += extra->len[i] * 2 + 256;
  pem = malloc(cap);
  if (pem == NULL) return zt_error_set(err, path, 0, 0, "out of memory");
  plen = wc_DerToPem(der, (word32)dlen, pem, (word32)cap, CERT_TYPE);
  for (i = 0; plen > 0 && extra != NULL && i < extra->n; i++) {
    used += (size_t)plen;
    plen = wc_DerToPem(extra->der[i], (word32)extra->len[i], pem + used,
                       (word32)(cap - used), CERT_TYPE);
  }
  if (plen <= 0)
    rc = zt_error_set(err, path, 0, 0, "cannot encode the certificate (%d)", plen);
  else
    rc = write_file_atomic(path, pem, used + (size_t)plen, 0644, err);
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

/* notBefore = now - backdate, notAfter = notBefore + ttl; a certificate does not
 * outlive its issuer, whose file's earliest notAfter is limit: its notAfter is then
 * limit, as SPIRE caps an SVID's TTL, and res->capped says so. */
static int set_validity(Cert *c, int64_t now, int64_t backdate, int64_t ttl,
                        int64_t limit, zt_issue_result_t *res, zt_error_t *err) {
  int64_t after = now - backdate + ttl;
  if (ttl <= 0 || backdate < 0 || ttl > (int64_t)100 * 366 * 86400 ||
      backdate > (int64_t)100 * 366 * 86400)
    return zt_error_set(err, NULL, 0, 0, "ttl must be positive and backdate not "
                                         "negative, both under 100 years");
  if (res != NULL) res->capped = after > limit;
  if (after > limit) after = limit;
  if (time_encode(now - backdate, c->beforeDate, &c->beforeDateSz) != 0 ||
      time_encode(after, c->afterDate, &c->afterDateSz) != 0)
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
static int make_and_sign(Cert *c, zkey_t *subject, zkey_t *signer, WC_RNG *rng,
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
  n = wc_MakeCert(c, buf, CERT_DER_MAX, zk_rsa(subject), zk_ecc(subject), rng);
  if (n < 0) {
    zt_error_set(err, NULL, 0, 0, "wc_MakeCert: %s (%d)", wc_GetErrorString(n), n);
    goto fail;
  }
  n = wc_SignCert(c->bodySz, c->sigType, buf, CERT_DER_MAX, zk_rsa(signer),
                  zk_ecc(signer), rng);
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

/* ---- issuers ----------------------------------------------------------------- */

typedef struct {
  zt_der_list_t chain;      /* every certificate of the CA file; [0] is the issuer */
  unsigned char *cert_der;  /* == chain.der[0] */
  size_t cert_len;
  zt_der_list_t parents;    /* the file's other certificates that are not
                               self-signed: what goes after a certificate it issues */
  zkey_t key;
  int raw_issuer_ok;        /* its subject DER can go through wc_SetIssuerRaw */
  int can_sign_crl;         /* cRLSign, or no keyUsage at all */
  unsigned char skid[64];   /* subjectKeyIdentifier, for a CRL's AKID */
  size_t skid_len;
  const unsigned char *subject_raw; /* points into cert_der */
  size_t subject_raw_len;
  int64_t not_after;        /* the earliest notAfter of the file's certificates */
} ca_t;

static void ca_free(ca_t *ca) {
  if (ca == NULL) return;
  zt_der_list_free(&ca->chain);
  /* parents borrow chain's buffers */
  free(ca->parents.der);
  free(ca->parents.len);
  zkey_free(&ca->key);
  memset(ca, 0, sizeof(*ca));
}

static int self_signed(const unsigned char *der, size_t len) {
  DecodedCert dc;
  int ss;
  wc_InitDecodedCert(&dc, der, (word32)len, NULL);
  ss = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) == 0 && dc.selfSigned;
  wc_FreeDecodedCert(&dc);
  return ss;
}

/* Load the CA certificate (with the rest of its file) and key, and check they
 * belong together: a CA certificate allowed to sign certificates, whose public key
 * is the key's. */
static int ca_load(ca_t *ca, const char *cert_path, const char *key_path,
                   zt_error_t *err) {
  unsigned char *pem = NULL, *kder = NULL;
  unsigned char spki_key[1024], spki_cert[1024];
  size_t pem_len, i;
  word32 cert_spki_len = sizeof(spki_cert);
  int n, rc = -1, key_spki_len, is_ca, ku_ok;
  const char *why = NULL;
  DecodedCert dc;
  zt_svid_info_t *info = NULL;

  memset(ca, 0, sizeof(*ca));
  if (zt_pem_read_file(cert_path, &pem, &pem_len, err) != 0) return -1;
  if (zt_pem_cert_list(pem, pem_len, 0, &ca->chain, &why) != 0) {
    free(pem);
    return zt_error_set(err, cert_path, 0, 0, "%s", why);
  }
  free(pem);
  pem = NULL;
  ca->cert_der = ca->chain.der[0];
  ca->cert_len = ca->chain.len[0];
  ca->parents.der = calloc(ca->chain.n, sizeof(*ca->parents.der));
  ca->parents.len = calloc(ca->chain.n, sizeof(*ca->parents.len));
  if (ca->parents.der == NULL || ca->parents.len == NULL) {
    zt_error_set(err, cert_path, 0, 0, "out of memory");
    goto fail;
  }
  if ((info = malloc(sizeof(*info))) == NULL) {
    zt_error_set(err, cert_path, 0, 0, "out of memory");
    goto fail;
  }
  ca->not_after = INT64_MAX;
  for (i = 0; i < ca->chain.n; i++) {
    if (zt_svid_check_leaf(ca->chain.der[i], ca->chain.len[i], info, &why) != 0 &&
        strcmp(why, ZT_SVID_MALFORMED) == 0) {
      zt_error_set(err, cert_path, 0, 0, "certificate %zu of the file does not parse",
                   i + 1);
      goto fail;
    }
    if (info->not_after < ca->not_after) ca->not_after = info->not_after;
  }
  why = NULL;
  for (i = 0; i < ca->chain.n; i++) {
    if (self_signed(ca->chain.der[i], ca->chain.len[i])) continue;
    ca->parents.der[ca->parents.n] = ca->chain.der[i];
    ca->parents.len[ca->parents.n++] = ca->chain.len[i];
  }

  wc_InitDecodedCert(&dc, ca->cert_der, (word32)ca->cert_len, NULL);
  n = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
  is_ca = n == 0 && dc.isCA;
  ku_ok = !dc.extKeyUsageSet || (dc.extKeyUsage & KEYUSE_KEY_CERT_SIGN);
  ca->can_sign_crl = !dc.extKeyUsageSet || (dc.extKeyUsage & KEYUSE_CRL_SIGN);
  if (n == 0 && wc_GetPubKeyDerFromCert(&dc, spki_cert, &cert_spki_len) != 0)
    cert_spki_len = 0;
  /* wolfSSL sizes the raw issuer with strlen(), so only a name without 0x00 bytes
   * that leaves room for a terminator can be copied raw. */
  ca->raw_issuer_ok = n == 0 && dc.subjectRaw != NULL && dc.subjectRawLen > 0 &&
                      (size_t)dc.subjectRawLen < sizeof(CertName) &&
                      memchr(dc.subjectRaw, 0, (size_t)dc.subjectRawLen) == NULL;
  if (n == 0 && dc.subjectRaw != NULL) {
    ca->subject_raw = dc.subjectRaw; /* points into cert_der, which we own */
    ca->subject_raw_len = (size_t)dc.subjectRawLen;
  }
  if (n == 0 && dc.extSubjKeyIdSet) {
    memcpy(ca->skid, dc.extSubjKeyId, KEYID_SIZE);
    ca->skid_len = KEYID_SIZE;
  }
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
  if (zkey_decode(&ca->key, kder, (word32)n) != 0) {
    zt_error_set(err, key_path, 0, 0, "not an EC or RSA private key");
    goto fail;
  }
  key_spki_len = zkey_spki(&ca->key, spki_key, sizeof(spki_key));
  /* wolfSSL keeps an RSA certificate's key as the bare RSAPublicKey */
  if (ca->key.type == RSA_KEY && cert_spki_len != (word32)key_spki_len)
    key_spki_len = wc_RsaKeyToPublicDer_ex(&ca->key.rsa, spki_key, sizeof(spki_key), 0);
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
  free(info);
  if (rc != 0) ca_free(ca);
  return rc;
}

/* Issuer name and AKID of c from the CA. */
static int set_issuer(Cert *c, ca_t *ca, const char *ca_path, zt_error_t *err) {
  if (wc_SetAuthKeyIdFromCert(c, ca->cert_der, (int)ca->cert_len) != 0)
    return zt_error_set(err, ca_path, 0, 0, "cannot take the authority key id");
  /* The CA's subject, byte for byte when wolfSSL can take it raw (so chain building
   * matches names exactly), else re-encoded from its fields. */
  if (wc_SetIssuerBuffer(c, ca->cert_der, (int)ca->cert_len) != 0 ||
      (ca->raw_issuer_ok && wc_SetIssuerRaw(c, ca->cert_der, (int)ca->cert_len) != 0))
    return zt_error_set(err, ca_path, 0, 0, "cannot take the issuer name");
  return 0;
}

static void cert_free(Cert *c) {
  if (c == NULL) return;
#ifdef WOLFSSL_CERT_GEN_CACHE
  wc_SetCert_Free(c); /* else each wc_Set*FromCert freed its own DecodedCert */
#endif
  free(c);
}

/* ---- what issuing a CA and an SVID share ----------------------------------------- */

/* One certificate being made: the new key pair, the wolfSSL Cert under construction,
 * its SANs, the random generator, and the signed DER once made. */
typedef struct {
  WC_RNG rng;
  int have_rng;
  zkey_t *key;
  Cert *c;
  sans_t *sans;
  unsigned char *der;
  int der_len;
} build_t;

/* Generate the key (key_type) and start the certificate, to be signed by signer (NULL:
 * by the new key itself) with signature sig. build_end() undoes whatever was done. */
static int build_begin(build_t *b, const char *key_type, const char *sig,
                       const zkey_t *signer, zt_error_t *err) {
  memset(b, 0, sizeof(*b));
  b->c = malloc(sizeof(*b->c));
  b->sans = calloc(1, sizeof(*b->sans));
  b->key = calloc(1, sizeof(*b->key));
  if (b->c == NULL || b->sans == NULL || b->key == NULL)
    return zt_error_set(err, NULL, 0, 0, "out of memory");
  if (wc_InitRng(&b->rng) != 0)
    return zt_error_set(err, NULL, 0, 0, "cannot initialise the random generator");
  b->have_rng = 1;
  if (zkey_generate(b->key, key_type, &b->rng, err) != 0) return -1;
  if (wc_InitCert(b->c) != 0) return zt_error_set(err, NULL, 0, 0, "wc_InitCert failed");
  b->c->sigType = sig_type(signer ? signer : b->key, sig);
  b->c->keyType = b->key->type == RSA_KEY ? RSA_KEY : ECC_KEY;
  return 0;
}

static void build_end(build_t *b) {
  free(b->der);
  cert_free(b->c);
  free(b->sans);
  if (b->key != NULL) {
    zkey_free(b->key);
    free(b->key);
  }
  if (b->have_rng) wc_FreeRng(&b->rng);
  memset(b, 0, sizeof(*b));
}

/* ---- CA ----------------------------------------------------------------------- */

int zt_issue_ca(const zt_issue_ca_opts_t *o, const char *cert_path,
                const char *key_path, zt_issue_result_t *res, zt_error_t *err) {
  build_t b;
  ca_t *parent = NULL;
  Cert *c;
  int rc = -1;
  const char *why = NULL;
  char uri[ZT_TRUST_DOMAIN_MAX + 16], cn[ZT_TRUST_DOMAIN_MAX + 32];

  if (o->trust_domain == NULL ||
      zt_trust_domain_check(o->trust_domain, strlen(o->trust_domain), &why) != 0)
    return zt_error_set(err, NULL, 0, 0, "invalid trust domain \"%s\": %s",
                        o->trust_domain ? o->trust_domain : "",
                        why ? why : "not a trust domain name");
  if (check_algs(o->key_type, o->sig, err) != 0) return -1;
  if ((o->ca_cert == NULL) != (o->ca_key == NULL))
    return zt_error_set(err, NULL, 0, 0, "an intermediate CA needs both the parent's "
                                         "certificate and key");
  snprintf(uri, sizeof(uri), "spiffe://%s", o->trust_domain);
  snprintf(cn, sizeof(cn), "ztproxy %sCA %s", o->ca_cert ? "intermediate " : "",
           o->trust_domain);

  memset(&b, 0, sizeof(b));
  if (o->ca_cert) {
    if ((parent = calloc(1, sizeof(*parent))) == NULL)
      return zt_error_set(err, NULL, 0, 0, "out of memory");
    if (ca_load(parent, o->ca_cert, o->ca_key, err) != 0) {
      free(parent);
      return -1;
    }
  }
  if (build_begin(&b, o->key_type, o->sig, parent ? &parent->key : NULL, err) != 0)
    goto done;
  c = b.c;
  c->isCA = 1;
  c->selfSigned = parent ? 0 : 1;
  set_name(&c->subject, "ztproxy", cn);
  if (set_validity(c, o->now, o->backdate, o->ttl,
                   parent ? parent->not_after : INT64_MAX, res, err) != 0) goto done;
  if (set_serial(c, &b.rng) != 0 ||
      sans_add(b.sans, ASN_CONTEXT_SPECIFIC | ASN_URI_TYPE, uri) != 0 ||
      sans_finish(b.sans, c) != 0 ||
      (!(o->key_usage && o->key_usage[0] == '\0') &&
       wc_SetKeyUsage(c, o->key_usage ? o->key_usage
                                      : "keyCertSign,cRLSign,digitalSignature") != 0) ||
      wc_SetSubjectKeyIdFromPublicKey(c, zk_rsa(b.key), zk_ecc(b.key)) != 0 ||
      (parent == NULL &&
       wc_SetAuthKeyIdFromPublicKey(c, zk_rsa(b.key), zk_ecc(b.key)) != 0)) {
    zt_error_set(err, NULL, 0, 0, "cannot set the certificate's extensions");
    goto done;
  }
  if (parent != NULL && set_issuer(c, parent, o->ca_cert, err) != 0) goto done;
  if (make_and_sign(c, b.key, parent ? &parent->key : b.key, &b.rng, &b.der, &b.der_len,
                    res, err) != 0)
    goto done;
  if (write_key_pem(b.key, key_path, err) != 0) goto done;
  if (write_cert_pem(b.der, b.der_len, parent ? &parent->parents : NULL, cert_path,
                     err) != 0)
    goto done;
  rc = 0;

done:
  build_end(&b);
  if (parent != NULL) {
    ca_free(parent);
    free(parent);
  }
  return rc;
}

/* ---- SVID --------------------------------------------------------------------- */

int zt_issue_svid(const zt_issue_svid_opts_t *o, const char *cert_path,
                  const char *key_path, zt_issue_result_t *res, zt_error_t *err) {
  build_t b;
  ca_t *ca = NULL;
  Cert *c;
  int rc = -1;
  const char *why = NULL, *ku;
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
  if (check_algs(o->key_type, o->sig, err) != 0) return -1;

  ca = calloc(1, sizeof(*ca));
  if (ca == NULL) return zt_error_set(err, NULL, 0, 0, "out of memory");
  if (ca_load(ca, o->ca_cert, o->ca_key, err) != 0) {
    free(ca);
    return -1;
  }

  if (build_begin(&b, o->key_type, o->sig, &ca->key, err) != 0) goto done;
  c = b.c;
  c->isCA = o->is_ca ? 1 : 0;
  c->basicConstSet = 1; /* an explicit (empty, so CA:FALSE) basicConstraints */
  set_name(&c->subject, "ztproxy", NULL);
  if (set_validity(c, o->now, o->backdate, o->ttl, ca->not_after, res, err) != 0) goto done;

  if (!o->no_uri && sans_add(b.sans, ASN_CONTEXT_SPECIFIC | ASN_URI_TYPE, o->id) != 0)
    goto too_many;
  for (i = 0; i < o->n_extra_uris; i++)
    if (sans_add(b.sans, ASN_CONTEXT_SPECIFIC | ASN_URI_TYPE, o->extra_uris[i]) != 0)
      goto too_many;
  for (i = 0; i < o->n_dns; i++)
    if (sans_add(b.sans, ASN_CONTEXT_SPECIFIC | ASN_DNS_TYPE, o->dns[i]) != 0)
      goto too_many;
  if (sans_finish(b.sans, c) != 0) goto too_many;

  ku = o->key_usage ? o->key_usage
                    : o->is_ca ? "keyCertSign,cRLSign,digitalSignature"
                               : "digitalSignature";
  if (set_serial(c, &b.rng) != 0 || (ku[0] != '\0' && wc_SetKeyUsage(c, ku) != 0) ||
      wc_SetExtKeyUsage(c, "serverAuth,clientAuth") != 0 ||
      wc_SetSubjectKeyIdFromPublicKey(c, zk_rsa(b.key), zk_ecc(b.key)) != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot set the certificate's extensions");
    goto done;
  }
  if (set_issuer(c, ca, o->ca_cert, err) != 0) goto done;
  if (make_and_sign(c, b.key, &ca->key, &b.rng, &b.der, &b.der_len, res, err) != 0)
    goto done;
  if (write_key_pem(b.key, key_path, err) != 0) goto done;
  if (write_cert_pem(b.der, b.der_len, &ca->parents, cert_path, err) != 0) goto done;
  rc = 0;
  goto done;

too_many:
  zt_error_set(err, NULL, 0, 0, "the subject alternative names do not fit in %d bytes",
               (int)CTC_MAX_ALT_SIZE);
done:
  build_end(&b);
  ca_free(ca);
  free(ca);
  return rc;
}

/* ---- CRL ---------------------------------------------------------------------- */

/* A growable DER buffer; out of memory is sticky and checked once at the end. */
typedef struct {
  unsigned char *b;
  size_t len, cap;
  int oom;
} dbuf_t;

static void db_put(dbuf_t *d, const void *p, size_t n) {
  if (d->oom) return;
  if (d->len + n > d->cap) {
    size_t nc = d->cap ? d->cap * 2 : 256;
    unsigned char *nb;
    while (nc < d->len + n) nc *= 2;
    nb = realloc(d->b, nc);
    if (nb == NULL) {
      d->oom = 1;
      return;
    }
    d->b = nb;
    d->cap = nc;
  }
  memcpy(d->b + d->len, p, n);
  d->len += n;
}

/* Append src to d and empty src; a part that ran out of memory spoils the whole. */
static void db_take(dbuf_t *d, dbuf_t *src) {
  if (src->oom) d->oom = 1;
  db_put(d, src->b, src->len);
  free(src->b);
  memset(src, 0, sizeof(*src));
}

/* tag, length, content */
static void db_tlv(dbuf_t *d, unsigned char tag, const void *p, size_t n) {
  unsigned char l[5];
  size_t ln;
  if (n < 0x80) {
    l[0] = (unsigned char)n;
    ln = 1;
  } else if (n < 0x100) {
    l[0] = 0x81;
    l[1] = (unsigned char)n;
    ln = 2;
  } else if (n < 0x10000) {
    l[0] = 0x82;
    l[1] = (unsigned char)(n >> 8);
    l[2] = (unsigned char)n;
    ln = 3;
  } else {
    l[0] = 0x83;
    l[1] = (unsigned char)(n >> 16);
    l[2] = (unsigned char)(n >> 8);
    l[3] = (unsigned char)n;
    ln = 4;
  }
  db_put(d, &tag, 1);
  db_put(d, l, ln);
  db_put(d, p, n);
}

/* Wrap d's content in tag (d becomes tag+len+old content). */
static void db_wrap(dbuf_t *d, unsigned char tag) {
  dbuf_t o;
  memset(&o, 0, sizeof(o));
  if (d->oom) return;
  db_tlv(&o, tag, d->b, d->len);
  free(d->b);
  *d = o;
}

/* INTEGER from big-endian magnitude bytes (leading zeros dropped, sign pad added). */
static void db_uint(dbuf_t *d, const unsigned char *v, size_t n) {
  unsigned char tmp[80];
  size_t o = 0;
  while (n > 1 && v[0] == 0) {
    v++;
    n--;
  }
  if (n + 1 > sizeof(tmp)) {
    d->oom = 1;
    return;
  }
  if (v[0] & 0x80) tmp[o++] = 0;
  memcpy(tmp + o, v, n);
  db_tlv(d, ASN_INTEGER, tmp, o + n);
}

static void db_time(dbuf_t *d, int64_t t) {
  byte enc[20];
  int n;
  if (time_encode(t, enc, &n) != 0) {
    d->oom = 1;
    return;
  }
  db_put(d, enc, (size_t)n);
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* "0a1b..." (optional 0x, ':' separators) -> bytes; count or -1. */
static int parse_serial(const char *s, unsigned char *out, size_t cap) {
  size_t nd = 0, i, o = 0;
  char digs[2 * 64 + 2];
  if (strncmp(s, "0x", 2) == 0 || strncmp(s, "0X", 2) == 0) s += 2;
  for (; *s; s++) {
    if (*s == ':') continue;
    if (hexval(*s) < 0 || nd >= 2 * 64) return -1;
    digs[nd++] = *s;
  }
  if (nd == 0) return -1;
  i = 0;
  if (nd % 2) {
    out[o++] = (unsigned char)hexval(digs[0]);
    i = 1;
  }
  for (; i < nd; i += 2) {
    if (o >= cap) return -1;
    out[o++] = (unsigned char)(hexval(digs[i]) << 4 | hexval(digs[i + 1]));
  }
  return (int)o;
}

int zt_issue_crl(const zt_issue_crl_opts_t *o, const char *out_path, zt_error_t *err) {
  static const unsigned char oid_ecdsa_sha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d,
                                                   0x04, 0x03, 0x02};
  static const unsigned char oid_rsa_sha256[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                                 0x0d, 0x01, 0x01, 0x0b};
  static const unsigned char oid_aki[] = {0x55, 0x1d, 0x23};
  static const unsigned char oid_crlnum[] = {0x55, 0x1d, 0x14};
  static const unsigned char null_der[] = {0x05, 0x00};
  static const unsigned char v2[] = {0x01};
  ca_t *ca = NULL;
  WC_RNG rng;
  dbuf_t alg, tbs, revoked, entry, exts, ext, tmp, crl;
  unsigned char serial[64], *sig = NULL, *pem = NULL;
  word32 sig_len;
  uint64_t number;
  int have_rng = 0, rc = -1, is_rsa, n, plen;
  size_t i;

  memset(&alg, 0, sizeof(alg));
  memset(&tbs, 0, sizeof(tbs));
  memset(&revoked, 0, sizeof(revoked));
  memset(&exts, 0, sizeof(exts));
  memset(&crl, 0, sizeof(crl));
  memset(&entry, 0, sizeof(entry));
  memset(&ext, 0, sizeof(ext));
  memset(&tmp, 0, sizeof(tmp));
  if (o->ttl <= 0 || o->ttl > (int64_t)100 * 366 * 86400)
    return zt_error_set(err, NULL, 0, 0, "the CRL lifetime must be positive and under "
                                         "100 years");
  for (i = 0; i < o->n_serials; i++)
    if (parse_serial(o->serials[i], serial, sizeof(serial)) <= 0)
      return zt_error_set(err, NULL, 0, 0, "invalid serial \"%s\" (hex digits)",
                          o->serials[i]);
  ca = calloc(1, sizeof(*ca));
  if (ca == NULL) return zt_error_set(err, NULL, 0, 0, "out of memory");
  if (ca_load(ca, o->ca_cert, o->ca_key, err) != 0) {
    free(ca);
    return -1;
  }
  if (!ca->can_sign_crl) {
    zt_error_set(err, o->ca_cert, 0, 0, "the CA lacks the cRLSign key usage");
    goto done;
  }
  if (ca->subject_raw == NULL) {
    zt_error_set(err, o->ca_cert, 0, 0, "the CA has no subject name");
    goto done;
  }
  is_rsa = ca->key.type == RSA_KEY;

  /* AlgorithmIdentifier */
  if (is_rsa) {
    db_tlv(&alg, ASN_OBJECT_ID, oid_rsa_sha256, sizeof(oid_rsa_sha256));
    db_put(&alg, null_der, sizeof(null_der));
  } else {
    db_tlv(&alg, ASN_OBJECT_ID, oid_ecdsa_sha256, sizeof(oid_ecdsa_sha256));
  }
  db_wrap(&alg, ASN_SEQUENCE | ASN_CONSTRUCTED);

  /* TBSCertList */
  db_tlv(&tbs, ASN_INTEGER, v2, sizeof(v2));
  db_put(&tbs, alg.b, alg.len);
  /* wolfSSL's subjectRaw is the Name's content, without its SEQUENCE header */
  db_tlv(&tbs, ASN_SEQUENCE | ASN_CONSTRUCTED, ca->subject_raw, ca->subject_raw_len);
  db_time(&tbs, o->now);
  db_time(&tbs, o->now + o->ttl);
  for (i = 0; i < o->n_serials; i++) {
    n = parse_serial(o->serials[i], serial, sizeof(serial));
    entry.len = 0;
    db_uint(&entry, serial, (size_t)n);
    db_time(&entry, o->now);
    db_wrap(&entry, ASN_SEQUENCE | ASN_CONSTRUCTED);
    db_take(&revoked, &entry);
  }
  if (o->n_serials > 0) {
    db_wrap(&revoked, ASN_SEQUENCE | ASN_CONSTRUCTED);
    db_put(&tbs, revoked.b, revoked.len);
  }
  /* crlExtensions [0] EXPLICIT: authorityKeyIdentifier (when the CA has a SKID) and
   * cRLNumber, both required by RFC 5280 5.2 for conforming CRL issuers. */
  if (ca->skid_len > 0) {
    db_tlv(&tmp, ASN_CONTEXT_SPECIFIC | 0, ca->skid, ca->skid_len); /* keyIdentifier */
    db_wrap(&tmp, ASN_SEQUENCE | ASN_CONSTRUCTED);
    db_tlv(&ext, ASN_OBJECT_ID, oid_aki, sizeof(oid_aki));
    db_tlv(&ext, ASN_OCTET_STRING, tmp.b, tmp.len);
    db_wrap(&ext, ASN_SEQUENCE | ASN_CONSTRUCTED);
    if (tmp.oom) ext.oom = 1;
    free(tmp.b);
    memset(&tmp, 0, sizeof(tmp));
    db_take(&exts, &ext);
  }
  {
    unsigned char num[8];
    number = o->number ? o->number : (uint64_t)o->now;
    for (i = 0; i < 8; i++) num[i] = (unsigned char)(number >> (56 - 8 * i));
    db_uint(&tmp, num, 8);
    db_tlv(&ext, ASN_OBJECT_ID, oid_crlnum, sizeof(oid_crlnum));
    db_tlv(&ext, ASN_OCTET_STRING, tmp.b, tmp.len);
    db_wrap(&ext, ASN_SEQUENCE | ASN_CONSTRUCTED);
    db_put(&exts, ext.b, ext.len);
  }
  db_wrap(&exts, ASN_SEQUENCE | ASN_CONSTRUCTED);
  db_wrap(&exts, ASN_CONSTRUCTED | ASN_CONTEXT_SPECIFIC | 0);
  db_put(&tbs, exts.b, exts.len);
  db_wrap(&tbs, ASN_SEQUENCE | ASN_CONSTRUCTED);
  if (tbs.oom || alg.oom || revoked.oom || exts.oom || entry.oom || tmp.oom ||
      ext.oom) {
    zt_error_set(err, NULL, 0, 0, "out of memory encoding the CRL");
    goto done;
  }

  /* Sign: ECDSA gives a DER signature, RSA a PKCS#1 v1.5 block over DigestInfo. */
  if (wc_InitRng(&rng) != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot initialise the random generator");
    goto done;
  }
  have_rng = 1;
  if (is_rsa) wc_RsaSetRNG(&ca->key.rsa, &rng);
  sig_len = (word32)wc_SignatureGetSize(is_rsa ? WC_SIGNATURE_TYPE_RSA_W_ENC
                                               : WC_SIGNATURE_TYPE_ECC,
                                        is_rsa ? (void *)&ca->key.rsa
                                               : (void *)&ca->key.ecc,
                                        is_rsa ? sizeof(ca->key.rsa)
                                               : sizeof(ca->key.ecc));
  sig = malloc(sig_len + 1);
  if (sig == NULL || (int)sig_len <= 0) {
    zt_error_set(err, NULL, 0, 0, "cannot size the signature");
    goto done;
  }
  n = wc_SignatureGenerate(WC_HASH_TYPE_SHA256,
                           is_rsa ? WC_SIGNATURE_TYPE_RSA_W_ENC : WC_SIGNATURE_TYPE_ECC,
                           tbs.b, (word32)tbs.len, sig, &sig_len,
                           is_rsa ? (void *)&ca->key.rsa : (void *)&ca->key.ecc,
                           is_rsa ? sizeof(ca->key.rsa) : sizeof(ca->key.ecc), &rng);
  if (n != 0) {
    zt_error_set(err, NULL, 0, 0, "cannot sign the CRL: %s", wc_GetErrorString(n));
    goto done;
  }

  /* CertificateList */
  db_put(&crl, tbs.b, tbs.len);
  db_put(&crl, alg.b, alg.len);
  {
    unsigned char *bs = malloc(sig_len + 1);
    if (bs == NULL) {
      crl.oom = 1;
    } else {
      bs[0] = 0; /* no unused bits */
      memcpy(bs + 1, sig, sig_len);
      db_tlv(&crl, ASN_BIT_STRING, bs, sig_len + 1);
      free(bs);
    }
  }
  db_wrap(&crl, ASN_SEQUENCE | ASN_CONSTRUCTED);
  if (crl.oom) {
    zt_error_set(err, NULL, 0, 0, "out of memory encoding the CRL");
    goto done;
  }
  pem = malloc(crl.len * 2 + 256);
  if (pem == NULL) {
    zt_error_set(err, NULL, 0, 0, "out of memory");
    goto done;
  }
  plen = wc_DerToPem(crl.b, (word32)crl.len, pem, (word32)(crl.len * 2 + 256), CRL_TYPE);
  if (plen <= 0) {
    zt_error_set(err, out_path, 0, 0, "cannot encode the CRL as PEM (%d)", plen);
    goto done;
  }
  rc = write_file_atomic(out_path, pem, (size_t)plen, 0644, err);

done:
  free(alg.b);
  free(tbs.b);
  free(revoked.b);
  free(entry.b);
  free(exts.b);
  free(ext.b);
  free(tmp.b);
  free(crl.b);
  free(sig);
  free(pem);
  if (have_rng) wc_FreeRng(&rng);
  ca_free(ca);
  free(ca);
  return rc;
}
