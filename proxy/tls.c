/* proxy/tls.c: identity loading into WOLFSSL_CTXs and the SVID verify callback. */
#include "tls.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "bundle.h"
#include "log.h"
#include "svid.h"

/* TLS 1.3 only by default; AES-128-GCM first: it is what AES-NI does fastest. */
static const char kCiphers[] =
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256";

void zt_tls_init(void) { wolfSSL_Init(); }
void zt_tls_cleanup(void) { wolfSSL_Cleanup(); }

static const char *cert_error_reason(int err) {
  switch (err) {
  case ASN_NO_SIGNER_E: return "unknown_ca";
  case ASN_AFTER_DATE_E: return "expired";
  case ASN_BEFORE_DATE_E: return "not_yet_valid";
  case ASN_SIG_CONFIRM_E: case ASN_SIG_OID_E: case ASN_SIG_HASH_E: case ASN_SIG_KEY_E:
    return "bad_signature";
  default: return "tls_error";
  }
}

/* Called by wolfSSL for every certificate of the peer's chain (intermediates first,
 * leaf last) with preverify = wolfSSL's own verdict against the union of all our
 * bundles. At the leaf we verify the chain again against the bundle of the peer's own
 * trust domain only (a partner's CA must not vouch for our IDs), with every SVID rule.
 * Returning 0 fails the handshake. */
static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store) {
  zt_tls_peer_t *peer = store->userCtx;
  const unsigned char *ders[ZT_SVID_CHAIN_MAX];
  size_t lens[ZT_SVID_CHAIN_MAX], n = 0, total = 0;
  zt_svid_info_t info;
  const char *reason;

  if (peer == NULL) return 0;
  if (!preverify) {
    if (peer->tls_error == NULL) peer->tls_error = cert_error_reason(store->error);
    return 0;
  }
  if (store->error_depth != 0) return 1;
  if (store->certs == NULL || store->totalCerts < 1) {
    peer->tls_error = "tls_error";
    return 0;
  }
  if (store->totalCerts > ZT_SVID_CHAIN_MAX) {
    peer->tls_error = ZT_SVID_CHAIN_TOO_LONG;
    return 0;
  }
  for (int i = 0; i < store->totalCerts; i++) {
    ders[n] = store->certs[i].buffer;
    lens[n] = (size_t)store->certs[i].length;
    total += lens[n++];
  }
  if (zt_bundle_set_verify(peer->ident->set->bundles, ders, lens, n, (int64_t)time(NULL),
                           &info, &reason)) {
    peer->tls_error = reason;
    return 0;
  }
  free(peer->peer_id);
  peer->peer_id = strdup(info.id);
  if (peer->peer_id == NULL) return 0;
  if (peer->expect) {
    size_t i;
    for (i = 0; i < peer->n_expect; i++)
      if (strcmp(peer->expect[i], info.id) == 0) break;
    if (i == peer->n_expect) {
      peer->tls_error = "server_id_not_expected";
      return 0;
    }
  }
  peer->not_after = info.not_after;
  memcpy(peer->serial, info.serial, sizeof(peer->serial) - 1);
  if (zt_bundle_set_crl_count(peer->ident->set->bundles) > 0) {
    /* Kept so that a CRL published later can close this connection. */
    unsigned char *p = malloc(total);
    if (p == NULL) return 0;
    free(peer->chain);
    peer->chain = p;
    for (size_t i = 0; i < n; i++) {
      memcpy(p, ders[i], lens[i]);
      peer->chain_lens[i] = lens[i];
      p += lens[i];
    }
    peer->chain_n = n;
  }
  return 1;
}

int zt_tls_peer_revoked(const zt_identity_t *id, const zt_tls_peer_t *peer) {
  const unsigned char *ders[ZT_SVID_CHAIN_MAX], *p = peer->chain;
  zt_spiffe_id_t sid;
  int td;
  if (peer->chain == NULL || peer->peer_id == NULL ||
      zt_bundle_set_crl_count(id->set->bundles) == 0)
    return 0;
  if (zt_spiffe_id_parse(peer->peer_id, strlen(peer->peer_id), &sid, NULL)) return 0;
  if ((td = zt_bundle_set_find(id->set->bundles, sid.td, sid.td_len)) < 0) return 0;
  for (size_t i = 0; i < peer->chain_n; i++) {
    ders[i] = p;
    p += peer->chain_lens[i];
  }
  return zt_bundle_set_revoked(id->set->bundles, (size_t)td, ders, peer->chain_lens,
                               peer->chain_n) == 1;
}

void zt_tls_peer_free(zt_tls_peer_t *peer) {
  free(peer->peer_id);
  free(peer->chain);
  peer->peer_id = NULL;
  peer->chain = NULL;
}

const char *zt_tls_failure_reason(WOLFSSL *ssl, int ret, const zt_tls_peer_t *peer) {
  int e;
  if (peer->tls_error) return peer->tls_error;
  e = wolfSSL_get_error(ssl, ret);
  if (e == NO_PEER_CERT) return "no_client_cert";
  return cert_error_reason(e);
}

static int setup_ctx(WOLFSSL_CTX *ctx, const zt_idset_t *set, int server,
                     zt_error_t *err) {
  const zt_bundle_set_t *b = set->bundles;
  if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_3) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_set_cipher_list(ctx, kCiphers) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_UseSupportedCurve(ctx, WOLFSSL_ECC_SECP256R1) != WOLFSSL_SUCCESS)
    return zt_error_set(err, NULL, 0, 0, "cannot configure TLS 1.3 with AES-128-GCM");
  /* The exact bytes that were validated, not the files, which may have changed. */
  if (wolfSSL_CTX_use_certificate_chain_buffer(ctx, set->cert_pem,
                                               (long)set->cert_pem_len) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_use_PrivateKey_buffer(ctx, set->key_pem, (long)set->key_pem_len,
                                        WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS)
    return zt_error_set(err, NULL, 0, 0, "the TLS library refused the SVID or its key");
  /* Every trust domain's roots, so that federated peers pass wolfSSL's own check;
   * the verify callback then holds each peer to its own trust domain's bundle. */
  for (size_t i = 0; i < zt_bundle_set_count(b); i++)
    for (size_t j = 0; j < zt_bundle_set_root_count(b, i); j++) {
      size_t len;
      const unsigned char *der = zt_bundle_set_root(b, i, j, &len);
      if (wolfSSL_CTX_load_verify_buffer(ctx, der, (long)len, WOLFSSL_FILETYPE_ASN1) !=
          WOLFSSL_SUCCESS)
        return zt_error_set(err, NULL, 0, 0, "the TLS library refused a root of %s",
                            zt_bundle_set_td(b, i));
    }
  wolfSSL_CTX_set_verify(ctx,
                         WOLFSSL_VERIFY_PEER |
                             (server ? WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                         verify_cb);
  return 0;
}

int zt_identity_load(const zt_config_t *cfg, const char *expect_id, zt_identity_t **out,
                     zt_error_t *err) {
  zt_idset_opts_t o;
  zt_identity_t *id = calloc(1, sizeof(*id));
  const zt_svid_info_t *svid;

  if (id == NULL) return zt_error_set(err, NULL, 0, 0, "out of memory");
  atomic_init(&id->refs, 1);
  memset(&o, 0, sizeof(o));
  o.cert = cfg->cert;
  o.key = cfg->key;
  o.bundle = cfg->bundle;
  o.federated = cfg->federated;
  o.n_federated = cfg->n_federated;
  o.crls = (const char *const *)cfg->crls;
  o.n_crls = cfg->n_crls;
  o.now = (int64_t)time(NULL);
  o.expect_id = expect_id;
  if (zt_idset_load(&o, &id->set, err)) goto fail;
  svid = &id->set->svid;
  memcpy(id->id, svid->id, svid->id_len + 1);
  memcpy(id->trust_domain, svid->spiffe.td, svid->spiffe.td_len);
  id->trust_domain[svid->spiffe.td_len] = '\0';
  memcpy(id->serial, svid->serial, sizeof(id->serial) - 1);
  id->not_before = svid->not_before;
  id->not_after = svid->not_after;

  id->server = wolfSSL_CTX_new(wolfTLS_server_method());
  id->client = wolfSSL_CTX_new(wolfTLS_client_method());
  if (id->server == NULL || id->client == NULL) {
    zt_error_set(err, NULL, 0, 0, "cannot create TLS contexts");
    goto fail;
  }
  if (setup_ctx(id->server, id->set, 1, err) || setup_ctx(id->client, id->set, 0, err))
    goto fail;
  *out = id;
  return 0;

fail:
  zt_identity_release(id);
  return -1;
}

zt_identity_t *zt_identity_retain(zt_identity_t *id) {
  atomic_fetch_add_explicit(&id->refs, 1, memory_order_relaxed);
  return id;
}

void zt_identity_release(zt_identity_t *id) {
  if (id == NULL || atomic_fetch_sub_explicit(&id->refs, 1, memory_order_acq_rel) != 1)
    return;
  if (id->server) wolfSSL_CTX_free(id->server);
  if (id->client) wolfSSL_CTX_free(id->client);
  zt_idset_free(id->set);
  free(id);
}

WOLFSSL *zt_tls_new(zt_identity_t *id, int server, zt_tls_peer_t *peer, void *io_ctx,
                    CallbackIORecv recv_cb, CallbackIOSend send_cb) {
  WOLFSSL *ssl = wolfSSL_new(server ? id->server : id->client);
  if (ssl == NULL) return NULL;
  wolfSSL_SSLSetIORecv(ssl, recv_cb);
  wolfSSL_SSLSetIOSend(ssl, send_cb);
  wolfSSL_SetIOReadCtx(ssl, io_ctx);
  wolfSSL_SetIOWriteCtx(ssl, io_ctx);
  wolfSSL_SetCertCbCtx(ssl, peer);
  peer->ident = id;
  if (wolfSSL_UseALPN(ssl, (char *)ZT_ALPN, sizeof(ZT_ALPN) - 1,
                      server ? WOLFSSL_ALPN_CONTINUE_ON_MISMATCH
                             : WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS ||
      (!server && wolfSSL_UseKeyShare(ssl, WOLFSSL_ECC_SECP256R1) != WOLFSSL_SUCCESS)) {
    wolfSSL_free(ssl);
    return NULL;
  }
  return ssl;
}
