/* identity/svid.c: X.509-SVID leaf checks over wolfSSL's certificate parser, the
 * reason-code sentences, and the PEM file helpers.
 *
 * The parser is run with NO_VERIFY: the signature, the chain and the dates against
 * the clock are checked by the TLS library during the handshake. What is left for us
 * is the SPIFFE part: one URI SAN that is a SPIFFE ID, on a certificate that is not a
 * CA. Dates are converted here only to be reported (expiry metrics, `identity show`).
 */
#include "svid.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include <errno.h>
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

int zt_svid_check_leaf(const unsigned char *der, size_t len, zt_svid_info_t *out,
                       const char **reason) {
  DecodedCert dc;
  const DNS_entry *e, *uri = NULL;
  zt_svid_info_t scratch;
  zt_svid_info_t *info = out ? out : &scratch;
  const char *why = NULL;
  int n_uri = 0;

  memset(info, 0, sizeof(*info));
  if (der == NULL || len == 0 || len > ZT_PEM_FILE_MAX) {
    if (reason) *reason = ZT_SVID_MALFORMED;
    return -1;
  }

  wc_InitDecodedCert(&dc, der, (word32)len, NULL);
  if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) != 0 ||
      asn_time_to_unix(dc.beforeDate, dc.beforeDateLen, &info->not_before) != 0 ||
      asn_time_to_unix(dc.afterDate, dc.afterDateLen, &info->not_after) != 0) {
    why = ZT_SVID_MALFORMED;
    goto done;
  }
  info->is_ca = dc.isCA ? 1 : 0;
  serial_hex(dc.serial, dc.serialSz, info->serial, sizeof(info->serial));

  for (e = dc.altNames; e != NULL; e = e->next) {
    if (e->type != ASN_URI_TYPE) continue;
    n_uri++;
    uri = e;
  }
  if (n_uri == 0) {
    why = ZT_SVID_NO_URI_SAN;
    goto done;
  }
  if (n_uri > 1) {
    why = ZT_SVID_MULTIPLE_URI_SANS;
    goto done;
  }
  if (uri->len <= 0 || (size_t)uri->len > ZT_SPIFFE_ID_MAX) {
    why = ZT_SVID_INVALID_SPIFFE_ID;
    goto done;
  }
  memcpy(info->id, uri->name, (size_t)uri->len);
  info->id[uri->len] = '\0';
  info->id_len = (size_t)uri->len;
  /* A NUL inside the SAN would make id[] and the parsed view disagree. */
  if (memchr(info->id, '\0', info->id_len) != NULL ||
      zt_spiffe_id_parse(info->id, info->id_len, &info->spiffe, NULL) != 0) {
    why = ZT_SVID_INVALID_SPIFFE_ID;
    goto done;
  }
  /* X.509-SVID spec 4.3: a leaf has CA:FALSE and neither keyCertSign nor cRLSign. */
  if (dc.isCA || (dc.extKeyUsageSet &&
                  (dc.extKeyUsage & (KEYUSE_KEY_CERT_SIGN | KEYUSE_CRL_SIGN)))) {
    why = ZT_SVID_LEAF_IS_CA;
    goto done;
  }

done:
  wc_FreeDecodedCert(&dc);
  if (why != NULL) {
    info->id[0] = '\0';
    info->id_len = 0;
    memset(&info->spiffe, 0, sizeof(info->spiffe));
    if (reason) *reason = why;
    return -1;
  }
  return 0;
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
  FILE *f;
  unsigned char *b = NULL, *nb;
  size_t n = 0, cap = 0;
  int too_big = 0, rc;

  *buf = NULL;
  *len = 0;
  f = fopen(path, "rb");
  if (f == NULL)
    return zt_error_set(err, path, 0, 0, "cannot open: %s", strerror(errno));
  for (;;) {
    if (n == cap) {
      if (cap == ZT_PEM_FILE_MAX) {
        too_big = fgetc(f) != EOF;
        break;
      }
      cap = cap ? cap * 2 : 16384;
      if (cap > ZT_PEM_FILE_MAX) cap = ZT_PEM_FILE_MAX;
      nb = realloc(b, cap + 1); /* +1: the trailing NUL */
      if (nb == NULL) {
        rc = zt_error_set(err, path, 0, 0, "out of memory");
        goto fail;
      }
      b = nb;
    }
    {
      size_t r = fread(b + n, 1, cap - n, f);
      n += r;
      if (r == 0) break;
    }
  }
  if (ferror(f)) {
    rc = zt_error_set(err, path, 0, 0, "read error: %s", strerror(errno));
    goto fail;
  }
  if (too_big) {
    rc = zt_error_set(err, path, 0, 0, "file is larger than %d bytes",
                      ZT_PEM_FILE_MAX);
    goto fail;
  }
  fclose(f);
  b[n] = '\0';
  *buf = b;
  *len = n;
  return 0;

fail:
  free(b);
  fclose(f);
  return rc;
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
