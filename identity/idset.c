/* identity/idset.c: load a whole identity set and check it, in the order an operator
 * fixes things: the certificate file parses, the SVID obeys the rules, it is the
 * expected SPIFFE ID, it is within its dates, the key is its key, the bundles and
 * CRLs load, and the SVID verifies against its own trust domain's bundle. The first
 * failure is returned; nothing half-built escapes.
 */
#include "idset.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include <stdlib.h>
#include <string.h>

static void wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n--) *v++ = 0;
}

void zt_idset_free(zt_idset_t *s) {
  if (s == NULL) return;
  free(s->cert_pem);
  if (s->key_pem != NULL) {
    wipe(s->key_pem, s->key_pem_len);
    free(s->key_pem);
  }
  zt_der_list_free(&s->chain);
  zt_bundle_set_free(s->bundles);
  free(s);
}

const char *zt_idset_strerror(int code) {
  switch (code) {
  case 0: return "ok";
  case ZT_IDSET_E_FILE: return "unreadable_file";
  case ZT_IDSET_E_PARSE: return "malformed_file";
  case ZT_IDSET_E_SVID: return "invalid_svid";
  case ZT_IDSET_E_KEY: return "key_mismatch";
  case ZT_IDSET_E_EXPIRED: return "expired";
  case ZT_IDSET_E_NOT_YET_VALID: return "not_yet_valid";
  case ZT_IDSET_E_ID_CHANGED: return "spiffe_id_changed";
  case ZT_IDSET_E_BUNDLE: return "bad_bundle";
  case ZT_IDSET_E_CRL: return "bad_crl";
  case ZT_IDSET_E_CHAIN: return "untrusted_svid";
  case ZT_IDSET_E_NOMEM: return "out_of_memory";
  default: return "error";
  }
}

/* 0 when the private key in kder is the key of the certificate der. */
static int key_matches(const unsigned char *kder, word32 klen, const unsigned char *der,
                       size_t len) {
  DecodedCert dc;
  unsigned char *pub = NULL;
  int rc = -1, n = -1;
  word32 idx = 0, off = 0;

  wc_InitDecodedCert(&dc, der, (word32)len, NULL);
  if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) != 0) goto done;
  pub = malloc(4096);
  if (pub == NULL) goto done;
  if (wc_GetPkcs8TraditionalOffset((byte *)kder, &off, klen) < 0) off = 0;
  if (dc.keyOID == ECDSAk) {
    ecc_key k;
    if (wc_ecc_init(&k) != 0) goto done;
    idx = off;
    if (wc_EccPrivateKeyDecode(kder, &idx, &k, klen) == 0 &&
        wc_ecc_check_key(&k) == 0)
      n = wc_EccPublicKeyToDer(&k, pub, 4096, 1);
    wc_ecc_free(&k);
    rc = n > 0 && (word32)n == dc.pubKeySize && memcmp(pub, dc.publicKey, (size_t)n) == 0
             ? 0 : -1;
  } else if (dc.keyOID == RSAk) {
    RsaKey k;
    if (wc_InitRsaKey(&k, NULL) != 0) goto done;
    idx = off;
    if (wc_RsaPrivateKeyDecode(kder, &idx, &k, klen) == 0) {
      n = wc_RsaKeyToPublicDer_ex(&k, pub, 4096, 0); /* bare RSAPublicKey */
      if (n > 0 && (word32)n == dc.pubKeySize && memcmp(pub, dc.publicKey, (size_t)n) == 0)
        rc = 0;
      n = wc_RsaKeyToPublicDer(&k, pub, 4096);       /* SubjectPublicKeyInfo */
      if (n > 0 && (word32)n == dc.pubKeySize && memcmp(pub, dc.publicKey, (size_t)n) == 0)
        rc = 0;
    }
    wc_FreeRsaKey(&k);
  }
done:
  free(pub);
  wc_FreeDecodedCert(&dc);
  return rc;
}

int zt_idset_load(const zt_idset_opts_t *o, zt_idset_t **out, zt_error_t *err) {
  zt_idset_t *s;
  unsigned char *kder = NULL;
  const char *why = NULL;
  char td[ZT_TRUST_DOMAIN_MAX + 1];
  int rc, n;
  size_t i;

  *out = NULL;
  s = calloc(1, sizeof(*s));
  if (s == NULL) {
    zt_error_set(err, NULL, 0, 0, "out of memory");
    return ZT_IDSET_E_NOMEM;
  }
  /* The certificate chain. */
  if (zt_pem_read_file(o->cert, &s->cert_pem, &s->cert_pem_len, err) != 0) {
    rc = ZT_IDSET_E_FILE;
    goto fail;
  }
  if (zt_pem_cert_list(s->cert_pem, s->cert_pem_len, ZT_SVID_CHAIN_MAX, &s->chain,
                       &why) != 0) {
    zt_error_set(err, o->cert, 0, 0, "%s", why);
    rc = ZT_IDSET_E_PARSE;
    goto fail;
  }
  if (zt_svid_check_chain((const unsigned char *const *)s->chain.der, s->chain.len,
                          s->chain.n, &s->svid, &why) != 0) {
    s->reason = why;
    zt_error_set(err, o->cert, 0, 0, "not a valid X.509-SVID: %s (%s)",
                 zt_svid_reason_text(why), why);
    rc = strcmp(why, ZT_SVID_MALFORMED) == 0 ? ZT_IDSET_E_PARSE : ZT_IDSET_E_SVID;
    goto fail;
  }
  if (o->expect_id != NULL && strcmp(o->expect_id, s->svid.id) != 0) {
    zt_error_set(err, o->cert, 0, 0, "the SVID is for %s, not %s", s->svid.id,
                 o->expect_id);
    rc = ZT_IDSET_E_ID_CHANGED;
    goto fail;
  }
  if (o->now < s->svid.not_before) {
    zt_error_set(err, o->cert, 0, 0, "the SVID is not valid yet (for another %lld s)",
                 (long long)(s->svid.not_before - o->now));
    rc = ZT_IDSET_E_NOT_YET_VALID;
    goto fail;
  }
  if (o->now >= s->svid.not_after) {
    zt_error_set(err, o->cert, 0, 0, "the SVID has expired (%lld s ago)",
                 (long long)(o->now - s->svid.not_after));
    rc = ZT_IDSET_E_EXPIRED;
    goto fail;
  }

  /* The key. */
  if (zt_pem_read_file(o->key, &s->key_pem, &s->key_pem_len, err) != 0) {
    rc = ZT_IDSET_E_FILE;
    goto fail;
  }
  kder = malloc(s->key_pem_len + 1);
  if (kder == NULL) {
    zt_error_set(err, o->key, 0, 0, "out of memory");
    rc = ZT_IDSET_E_NOMEM;
    goto fail;
  }
  n = wc_KeyPemToDer(s->key_pem, (int)s->key_pem_len, kder, (int)s->key_pem_len + 1,
                     NULL);
  if (n <= 0) {
    zt_error_set(err, o->key, 0, 0, "no complete PEM private key in the file");
    rc = ZT_IDSET_E_KEY;
    goto fail;
  }
  if (key_matches(kder, (word32)n, s->chain.der[0], s->chain.len[0]) != 0) {
    zt_error_set(err, o->key, 0, 0, "this key does not belong to the certificate %s",
                 o->cert);
    rc = ZT_IDSET_E_KEY;
    goto fail;
  }

  /* Bundles: ours for the SVID's trust domain, then the federated ones. */
  s->bundles = zt_bundle_set_new();
  if (s->bundles == NULL) {
    zt_error_set(err, NULL, 0, 0, "out of memory");
    rc = ZT_IDSET_E_NOMEM;
    goto fail;
  }
  memcpy(td, s->svid.spiffe.td, s->svid.spiffe.td_len);
  td[s->svid.spiffe.td_len] = '\0';
  if (zt_bundle_set_add_file(s->bundles, td, o->bundle, err) != 0) {
    rc = ZT_IDSET_E_BUNDLE;
    goto fail;
  }
  for (i = 0; i < o->n_federated; i++)
    if (zt_bundle_set_add_file(s->bundles, o->federated[i].trust_domain,
                               o->federated[i].bundle, err) != 0) {
      rc = ZT_IDSET_E_BUNDLE;
      goto fail;
    }
  for (i = 0; i < o->n_crls; i++)
    if (zt_bundle_set_add_crl_file(s->bundles, o->crls[i], err) != 0) {
      rc = ZT_IDSET_E_CRL;
      goto fail;
    }

  /* Our own SVID must verify as a peer would verify it. */
  if (zt_bundle_set_verify(s->bundles, (const unsigned char *const *)s->chain.der,
                           s->chain.len, s->chain.n, o->now, NULL, &why) != 0) {
    s->reason = why;
    zt_error_set(err, o->cert, 0, 0, "the SVID does not verify against the bundle %s: "
                 "%s (%s)", o->bundle, zt_svid_reason_text(why), why);
    rc = ZT_IDSET_E_CHAIN;
    goto fail;
  }
  /* zt_bundle_set_verify was given no info struct; s->svid is still the leaf. */
  wipe(kder, s->key_pem_len + 1);
  free(kder);
  *out = s;
  return 0;

fail:
  if (kder != NULL) {
    wipe(kder, s->key_pem_len + 1);
    free(kder);
  }
  zt_idset_free(s);
  return rc;
}
