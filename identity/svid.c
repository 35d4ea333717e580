/* identity/svid.c: X.509-SVID leaf checks over wolfSSL's certificate parser, the
 * reason-code sentences, and the PEM file helpers.
 *
 * The parser is run with NO_VERIFY: the signature, the chain and the dates against
 * the clock are checked by the TLS library during the handshake (and again per trust
 * domain by bundle.c). What is left for us is the SPIFFE part: every rule of the
 * X.509-SVID specification on the leaf (one URI SAN that is a SPIFFE ID; not a CA;
 * digitalSignature, no keyCertSign/cRLSign) and on the signing certificates (CA:TRUE
 * with keyCertSign), plus our own floor on keys (RSA >= 2048, EC >= 256) and hashes
 * (no SHA-1/MD5). zt_svid_rules() evaluates all of them at once (for `identity show`);
 * the check functions report the first broken one. Dates are converted here only to
 * be reported (expiry metrics, `identity show`).
 */
#include "svid.h"
#include "zt_file.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm),
 * so no timegm() and no time zone. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  int64_t era, yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int digits(const unsigned char *p, int n) {
  int v = 0, i;
  for (i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v;
}

/* An encoded Time (tag, length, content) as unix seconds: UTCTime "YYMMDDHHMMSSZ"
 * (RFC 5280: YY < 50 is 20YY) or GeneralizedTime "YYYYMMDDHHMMSSZ". */
static int asn_time_to_unix(const unsigned char *t, int tlen, int64_t *out) {
  const unsigned char *s;
  int n, year, mon, day, hh, mm, ss;
  if (t == NULL || tlen < 2) return -1;
  n = t[1];
  if (n + 2 > tlen) return -1;
  s = t + 2;
  if (t[0] == ASN_UTC_TIME && n == 13 && s[12] == 'Z') {
    year = digits(s, 2);
    if (year < 0) return -1;
    year += year < 50 ? 2000 : 1900;
    s += 2;
  } else if (t[0] == ASN_GENERALIZED_TIME && n == 15 && s[14] == 'Z') {
    year = digits(s, 4);
    if (year < 0) return -1;
    s += 4;
  } else {
    return -1;
  }
  mon = digits(s, 2);
  day = digits(s + 2, 2);
  hh = digits(s + 4, 2);
  mm = digits(s + 6, 2);
  ss = digits(s + 8, 2);
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh < 0 || hh > 23 || mm < 0 ||
      mm > 59 || ss < 0 || ss > 60)
    return -1;
  *out = days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss;
  return 0;
}

static void serial_hex(const unsigned char *sn, int n, char *out, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  int i = 0;
  while (i < n - 1 && sn[i] == 0) i++; /* the DER sign pad is not part of it */
  for (; i < n && o + 2 < cap; i++) {
    out[o++] = hex[sn[i] >> 4];
    out[o++] = hex[sn[i] & 0xf];
  }
  out[o] = '\0';
}

/* Key type and size: RSA modulus bits from the key itself, EC from the curve. */
static void key_info(const DecodedCert *dc, zt_svid_info_t *info) {
  info->key_bits = 0;
  if (dc->keyOID == RSAk) {
    RsaKey rsa;
    word32 idx = 0;
    snprintf(info->key_type, sizeof(info->key_type), "RSA");
    if (wc_InitRsaKey(&rsa, NULL) == 0) {
      if (wc_RsaPublicKeyDecode(dc->publicKey, &idx, &rsa, dc->pubKeySize) == 0)
        info->key_bits = wc_RsaEncryptSize(&rsa) * 8;
      wc_FreeRsaKey(&rsa);
    }
  } else if (dc->keyOID == ECDSAk) {
    int id = wc_ecc_get_oid(dc->pkCurveOID, NULL, NULL);
    int sz = id >= 0 ? wc_ecc_get_curve_size_from_id(id) : -1;
    const char *name = id >= 0 ? wc_ecc_get_name(id) : NULL;
    if (sz > 0) info->key_bits = sz * 8;
    if (name != NULL && strncmp(name, "SECP", 4) == 0 && sz > 0)
      snprintf(info->key_type, sizeof(info->key_type), "EC P-%d", info->key_bits == 528 ? 521 : info->key_bits);
    else
      snprintf(info->key_type, sizeof(info->key_type), "EC %s", name ? name : "");
  } else if (dc->keyOID == ED25519k) {
    snprintf(info->key_type, sizeof(info->key_type), "Ed25519");
    info->key_bits = 256;
  } else {
    snprintf(info->key_type, sizeof(info->key_type), "unknown");
  }
}

static int weak_key(const zt_svid_info_t *info) {
  if (strcmp(info->key_type, "RSA") == 0) return info->key_bits < 2048;
  if (strncmp(info->key_type, "EC", 2) == 0 && info->key_type[2] != 'd')
    return info->key_bits < 256;
  return 0;
}

static const struct {
  word32 oid;
  const char *name;
  int weak;     /* SHA-1 or MD5 */
} sig_algs[] = {
    {CTC_SHA256wECDSA, "ecdsa-with-SHA256", 0}, {CTC_SHA384wECDSA, "ecdsa-with-SHA384", 0},
    {CTC_SHA512wECDSA, "ecdsa-with-SHA512", 0}, {CTC_SHAwECDSA, "ecdsa-with-SHA1", 1},
    {CTC_SHA256wRSA, "sha256WithRSA", 0},       {CTC_SHA384wRSA, "sha384WithRSA", 0},
    {CTC_SHA512wRSA, "sha512WithRSA", 0},       {CTC_SHAwRSA, "sha1WithRSA", 1},
    {CTC_MD5wRSA, "md5WithRSA", 1},             {CTC_MD2wRSA, "md2WithRSA", 1},             {CTC_RSASSAPSS, "rsassa-pss", 0},
    {CTC_ED25519, "ed25519", 0},
};

/* 1 when the signature algorithm is weak; name filled either way. */
static int sig_info(const DecodedCert *dc, zt_svid_info_t *info) {
  size_t i;
  for (i = 0; i < sizeof(sig_algs) / sizeof(sig_algs[0]); i++)
    if (sig_algs[i].oid == dc->signatureOID) {
      snprintf(info->sig_alg, sizeof(info->sig_alg), "%s", sig_algs[i].name);
      return sig_algs[i].weak;
    }
  snprintf(info->sig_alg, sizeof(info->sig_alg), "oid-sum-%u", (unsigned)dc->signatureOID);
  return 0;
}

const char *zt_svid_rules(const unsigned char *der, size_t len, int as_leaf,
                          zt_svid_info_t *out, zt_svid_rules_t *rules) {
  DecodedCert dc;
  const DNS_entry *e, *uri = NULL;
  zt_svid_info_t *scratch = NULL;
  zt_svid_info_t *info = out;
  zt_svid_rules_t r;
  int n_uri = 0, weak_sig;
  const char *first = NULL;

  memset(&r, 0, sizeof(r));
  r.checked = ZT_SVID_RULE_PARSES | ZT_SVID_RULE_STRONG_KEY | ZT_SVID_RULE_NO_SHA1;
  r.checked |= as_leaf ? (ZT_SVID_RULE_ONE_URI | ZT_SVID_RULE_SPIFFE_ID |
                          ZT_SVID_RULE_NOT_CA | ZT_SVID_RULE_NO_CERT_SIGN |
                          ZT_SVID_RULE_DIGITAL_SIG)
                       : ZT_SVID_RULE_SIGNER_CA;
  if (info == NULL) {
    scratch = malloc(sizeof(*scratch));
    if (scratch == NULL) {
      r.broken = ZT_SVID_RULE_PARSES;
      if (rules) *rules = r;
      return ZT_SVID_MALFORMED;
    }
    info = scratch;
  }
  memset(info, 0, sizeof(*info));
  if (der == NULL || len == 0 || len > ZT_PEM_FILE_MAX) {
    r.broken = ZT_SVID_RULE_PARSES;
    if (rules) *rules = r;
    free(scratch);
    return ZT_SVID_MALFORMED;
  }

  wc_InitDecodedCert(&dc, der, (word32)len, NULL);
  if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) != 0 ||
      asn_time_to_unix(dc.beforeDate, dc.beforeDateLen, &info->not_before) != 0 ||
      asn_time_to_unix(dc.afterDate, dc.afterDateLen, &info->not_after) != 0) {
    r.broken = ZT_SVID_RULE_PARSES;
    first = ZT_SVID_MALFORMED;
    goto done;
  }
  info->is_ca = dc.isCA ? 1 : 0;
  info->self_signed = dc.selfSigned ? 1 : 0;
  info->key_usage_set = dc.extKeyUsageSet ? 1 : 0;
  info->key_usage = dc.extKeyUsageSet ? dc.extKeyUsage : 0;
  serial_hex(dc.serial, dc.serialSz, info->serial, sizeof(info->serial));
  key_info(&dc, info);
  weak_sig = sig_info(&dc, info);

  for (e = dc.altNames; e != NULL; e = e->next) {
    if (e->type != ASN_URI_TYPE) continue;
    n_uri++;
    uri = e;
  }
  if (as_leaf) {
    if (n_uri != 1) {
      r.broken |= ZT_SVID_RULE_ONE_URI;
      r.uri_reason = n_uri == 0 ? ZT_SVID_NO_URI_SAN : ZT_SVID_MULTIPLE_URI_SANS;
      if (!first) first = r.uri_reason;
    }
  }
  /* The ID is reported for signing certificates too (a CA's spiffe://td), and for a
   * leaf with one URI SAN. */
  if (n_uri == 1 && uri->len > 0 && (size_t)uri->len <= ZT_SPIFFE_ID_MAX) {
    memcpy(info->id, uri->name, (size_t)uri->len);
    info->id[uri->len] = '\0';
    info->id_len = (size_t)uri->len;
    /* A NUL inside the SAN would make id[] and the parsed view disagree. */
    if (memchr(info->id, '\0', info->id_len) != NULL ||
        zt_spiffe_id_parse(info->id, info->id_len, &info->spiffe, NULL) != 0) {
      if (as_leaf) r.broken |= ZT_SVID_RULE_SPIFFE_ID;
      info->id[0] = '\0';
      info->id_len = 0;
      memset(&info->spiffe, 0, sizeof(info->spiffe));
    }
  } else if (as_leaf && n_uri == 1) {
    r.broken |= ZT_SVID_RULE_SPIFFE_ID;
  }
  if ((r.broken & ZT_SVID_RULE_SPIFFE_ID) && !first) first = ZT_SVID_INVALID_SPIFFE_ID;

  if (as_leaf) {
    /* X.509-SVID spec 4.3: a leaf has CA:FALSE, digitalSignature, and neither
     * keyCertSign nor cRLSign. */
    if (dc.isCA) {
      r.broken |= ZT_SVID_RULE_NOT_CA;
      if (!first) first = ZT_SVID_LEAF_IS_CA;
    }
    if (dc.extKeyUsageSet && (dc.extKeyUsage & (KEYUSE_KEY_CERT_SIGN | KEYUSE_CRL_SIGN))) {
      r.broken |= ZT_SVID_RULE_NO_CERT_SIGN;
      if (!first) first = ZT_SVID_LEAF_CERT_SIGN;
    }
    if (!dc.extKeyUsageSet || !(dc.extKeyUsage & KEYUSE_DIGITAL_SIG)) {
      r.broken |= ZT_SVID_RULE_DIGITAL_SIG;
      if (!first) first = ZT_SVID_NO_DIGITAL_SIGNATURE;
    }
  } else if (!dc.isCA || !dc.extKeyUsageSet ||
             !(dc.extKeyUsage & KEYUSE_KEY_CERT_SIGN)) {
    /* Spec 5.1: signing certificates have CA:TRUE and keyCertSign. */
    r.broken |= ZT_SVID_RULE_SIGNER_CA;
    if (!first) first = ZT_SVID_SIGNER_NOT_CA;
  }
  if (weak_key(info)) {
    r.broken |= ZT_SVID_RULE_STRONG_KEY;
    if (!first) first = ZT_SVID_WEAK_KEY;
  }
  if (weak_sig) {
    r.broken |= ZT_SVID_RULE_NO_SHA1;
    if (!first) first = ZT_SVID_SHA1;
  }

done:
  wc_FreeDecodedCert(&dc);
  if (rules) *rules = r;
  free(scratch);
  return first;
}

int zt_svid_check_leaf(const unsigned char *der, size_t len, zt_svid_info_t *out,
                       const char **reason) {
  zt_svid_info_t *info = out;
  const char *why;
  if (info == NULL) {
    info = malloc(sizeof(*info));
    if (info == NULL) {
      if (reason) *reason = ZT_SVID_MALFORMED;
      return -1;
    }
  }
  why = zt_svid_rules(der, len, 1, info, NULL);
  if (why != NULL) {
    info->id[0] = '\0';
    info->id_len = 0;
    memset(&info->spiffe, 0, sizeof(info->spiffe));
    if (reason) *reason = why;
  }
  if (info != out) free(info);
  return why != NULL ? -1 : 0;
}

int zt_svid_check_chain(const unsigned char *const *ders, const size_t *lens, size_t n,
                        zt_svid_info_t *leaf_out, const char **reason) {
  zt_svid_info_t *scratch;
  const char *why;
  size_t i;

  if (leaf_out != NULL) memset(leaf_out, 0, sizeof(*leaf_out));
  if (ders == NULL || lens == NULL || n == 0) {
    if (reason) *reason = ZT_SVID_MALFORMED;
    return -1;
  }
  if (n > ZT_SVID_CHAIN_MAX) {
    if (reason) *reason = ZT_SVID_CHAIN_TOO_LONG;
    return -1;
  }
  if (zt_svid_check_leaf(ders[0], lens[0], leaf_out, reason) != 0) return -1;
  if (n == 1) return 0;
  scratch = malloc(sizeof(*scratch));
  if (scratch == NULL) {
    if (reason) *reason = ZT_SVID_MALFORMED;
    goto fail;
  }
  for (i = 1; i < n; i++) {
    why = zt_svid_rules(ders[i], lens[i], 0, scratch, NULL);
    if (why != NULL) {
      if (reason) *reason = why;
      goto fail;
    }
  }
  free(scratch);
  return 0;

fail:
  free(scratch);
  if (leaf_out != NULL) {
    leaf_out->id[0] = '\0';
    leaf_out->id_len = 0;
    memset(&leaf_out->spiffe, 0, sizeof(leaf_out->spiffe));
  }
  return -1;
}

static const struct {
  unsigned rule;
  const char *name;
} rule_names[] = {
    {ZT_SVID_RULE_PARSES, "parses as an X.509 certificate"},
    {ZT_SVID_RULE_ONE_URI, "exactly one URI subject alternative name"},
    {ZT_SVID_RULE_SPIFFE_ID, "the URI SAN is a valid SPIFFE ID"},
    {ZT_SVID_RULE_NOT_CA, "not a CA (basicConstraints CA:FALSE)"},
    {ZT_SVID_RULE_NO_CERT_SIGN, "no keyCertSign or cRLSign key usage"},
    {ZT_SVID_RULE_DIGITAL_SIG, "digitalSignature key usage"},
    {ZT_SVID_RULE_STRONG_KEY, "key strong enough (RSA >= 2048 bits, EC >= 256)"},
    {ZT_SVID_RULE_NO_SHA1, "signature hash not SHA-1 or MD5"},
    {ZT_SVID_RULE_SIGNER_CA, "a signing certificate: CA:TRUE with keyCertSign"},
};

const char *zt_svid_rule_name(unsigned rule) {
  size_t i;
  for (i = 0; i < sizeof(rule_names) / sizeof(rule_names[0]); i++)
    if (rule_names[i].rule == rule) return rule_names[i].name;
  return "unknown rule";
}

static const struct {
  const char *code, *text;
} reason_texts[] = {
    {"malformed_certificate", "the peer certificate could not be parsed"},
    {"no_uri_san", "the peer certificate has no URI subject alternative name, so no "
                   "SPIFFE ID"},
    {"multiple_uri_sans", "the peer certificate has more than one URI subject "
                          "alternative name; an X.509-SVID must have exactly one"},
    {"invalid_spiffe_id", "the peer certificate's URI subject alternative name is not "
                          "a valid SPIFFE ID"},
    {"leaf_is_ca", "the peer presented a CA certificate as its leaf certificate"},
    {"leaf_can_sign_certs", "the leaf certificate has the keyCertSign or cRLSign key "
                            "usage; an X.509-SVID leaf must not"},
    {"missing_digital_signature", "the leaf certificate lacks the digitalSignature key "
                                  "usage an X.509-SVID must have"},
    {"signer_not_ca", "a signing certificate in the chain is not a CA with the "
                      "keyCertSign key usage"},
    {"weak_key", "a certificate in the chain has a weak key (RSA under 2048 bits or EC "
                 "under 256 bits)"},
    {"sha1_signature", "a certificate in the chain is signed with SHA-1 (or MD5)"},
    {"chain_too_long", "the peer's certificate chain is longer than allowed"},
    {"revoked", "a certificate in the peer's chain is revoked by a CRL of its trust "
                "domain"},
    {"no_client_cert", "the client did not present a certificate"},
    {"unknown_ca", "the peer certificate is not signed by a trusted CA of its trust "
                   "domain"},
    {"expired", "the peer certificate (or one in its chain) has expired"},
    {"not_yet_valid", "the peer certificate (or one in its chain) is not valid yet"},
    {"bad_signature", "a signature in the peer's certificate chain does not verify"},
    {"foreign_trust_domain", "the peer's SPIFFE ID belongs to a trust domain that is "
                             "not trusted here"},
    {"server_id_not_expected", "the server's SPIFFE ID is not one of the expected "
                               "server IDs"},
    {"tls_error", "the TLS handshake failed"},
};

const char *zt_svid_reason_text(const char *code) {
  size_t i;
  if (code == NULL) return "unknown failure";
  for (i = 0; i < sizeof(reason_texts) / sizeof(reason_texts[0]); i++)
    if (strcmp(reason_texts[i].code, code) == 0) return reason_texts[i].text;
  return "unknown failure";
}

int zt_pem_read_file(const char *path, unsigned char **buf, size_t *len,
                     zt_error_t *err) {
  return zt_read_file(path, ZT_PEM_FILE_MAX, buf, len, err);
}

int zt_pem_first_cert_der(const unsigned char *pem, size_t len, unsigned char **der,
                          size_t *der_len) {
  unsigned char *d;
  int n;

  *der = NULL;
  *der_len = 0;
  if (pem == NULL || len == 0 || len > ZT_PEM_FILE_MAX) return -1;
  d = malloc(len); /* base64 decodes to less than its length */
  if (d == NULL) return -1;
  n = wc_CertPemToDer(pem, (int)len, d, (int)len, CERT_TYPE);
  if (n <= 0) {
    free(d);
    return -1;
  }
  *der = d;
  *der_len = (size_t)n;
  return 0;
}

void zt_der_list_free(zt_der_list_t *l) {
  size_t i;
  if (l == NULL) return;
  for (i = 0; i < l->n; i++) free(l->der[i]);
  free(l->der);
  free(l->len);
  memset(l, 0, sizeof(*l));
}

static const char *find_str(const char *p, const char *end, const char *needle) {
  size_t n = strlen(needle);
  for (; p + n <= end; p++)
    if (memcmp(p, needle, n) == 0) return p;
  return NULL;
}

int zt_pem_cert_list(const unsigned char *pem, size_t len, size_t max,
                     zt_der_list_t *out, const char **why) {
  static const char begin[] = "-----BEGIN CERTIFICATE-----";
  static const char end_m[] = "-----END CERTIFICATE-----";
  const char *p = (const char *)pem, *end = (const char *)pem + len, *b, *e;
  const char *w = NULL;
  size_t cap = 0;

  memset(out, 0, sizeof(*out));
  if (max == 0) max = 1024;
  if (pem == NULL || len == 0) {
    if (why) *why = "the file is empty";
    return -1;
  }
  while ((b = find_str(p, end, "-----BEGIN ")) != NULL) {
    unsigned char *d;
    int n;
    if (find_str(b, end, begin) != b) {
      w = "the file has a PEM block that is not a CERTIFICATE";
      goto fail;
    }
    e = find_str(b + sizeof(begin) - 1, end, end_m);
    {
      const char *nb = find_str(b + sizeof(begin) - 1, end, "-----BEGIN ");
      if (e == NULL || (nb != NULL && nb < e)) {
        w = "a certificate begins but does not end (truncated or half-written file)";
        goto fail;
      }
    }
    e += sizeof(end_m) - 1;
    if (out->n == max) {
      w = "the file has too many certificates";
      goto fail;
    }
    if (out->n == cap) {
      size_t nc = cap ? cap * 2 : 4;
      unsigned char **nd = realloc(out->der, nc * sizeof(*nd));
      size_t *nl;
      if (nd == NULL) goto oom;
      out->der = nd;
      nl = realloc(out->len, nc * sizeof(*nl));
      if (nl == NULL) goto oom;
      out->len = nl;
      cap = nc;
    }
    d = malloc((size_t)(e - b));
    if (d == NULL) goto oom;
    n = wc_CertPemToDer((const unsigned char *)b, (int)(e - b), d, (int)(e - b),
                        CERT_TYPE);
    if (n <= 0) {
      free(d);
      w = "a certificate's PEM block does not decode (bad base64)";
      goto fail;
    }
    out->der[out->n] = d;
    out->len[out->n] = (size_t)n;
    out->n++;
    p = e;
  }
  if (out->n == 0) {
    w = "no PEM certificate in the file";
    goto fail;
  }
  return 0;

oom:
  w = "out of memory";
fail:
  zt_der_list_free(out);
  if (why) *why = w;
  return -1;
}
