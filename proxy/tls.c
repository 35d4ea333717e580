/* proxy/tls.c: identity loading into WOLFSSL_CTXs and the SVID verify callback. */
#include "tls.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

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
 * leaf last) with preverify = wolfSSL's own verdict. Returning 0 fails the handshake. */
static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store) {
  zt_tls_peer_t *peer = store->userCtx;
  zt_svid_info_t info;
  const char *reason;
  size_t tdl;

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
  if (zt_svid_check_leaf(store->certs[0].buffer, store->certs[0].length, &info,
                         &reason)) {
    peer->tls_error = reason;
    return 0;
  }
  tdl = strlen(peer->ident->trust_domain);
  if (info.spiffe.td_len != tdl || memcmp(info.spiffe.td, peer->ident->trust_domain, tdl)) {
    peer->tls_error = "foreign_trust_domain";
    return 0;
  }
  if (peer->expect) {
    size_t i;
    for (i = 0; i < peer->n_expect; i++)
      if (strcmp(peer->expect[i], info.id) == 0) break;
    if (i == peer->n_expect) {
      peer->tls_error = "server_id_not_expected";
      free(peer->peer_id);
      peer->peer_id = strdup(info.id);   /* for the log: whom we refused */
      return 0;
    }
  }
  free(peer->peer_id);
  peer->peer_id = strdup(info.id);
  return peer->peer_id != NULL;
}

const char *zt_tls_failure_reason(WOLFSSL *ssl, int ret, const zt_tls_peer_t *peer) {
  int e;
  if (peer->tls_error) return peer->tls_error;
  e = wolfSSL_get_error(ssl, ret);
  if (e == NO_PEER_CERT) return "no_client_cert";
  return cert_error_reason(e);
}

static int setup_ctx(WOLFSSL_CTX *ctx, const char *cert, const char *key,
                     const char *bundle, int server, zt_error_t *err) {
  if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_3) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_set_cipher_list(ctx, kCiphers) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_UseSupportedCurve(ctx, WOLFSSL_ECC_SECP256R1) != WOLFSSL_SUCCESS)
    return zt_error_set(err, NULL, 0, 0, "cannot configure TLS 1.3 with AES-128-GCM");
  if (wolfSSL_CTX_use_certificate_chain_file(ctx, cert) != WOLFSSL_SUCCESS)
    return zt_error_set(err, cert, 0, 0, "not a PEM certificate chain");
  if (wolfSSL_CTX_use_PrivateKey_file(ctx, key, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
    return zt_error_set(err, key, 0, 0, "not a PEM private key");
  if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS)
    return zt_error_set(err, key, 0, 0, "this key does not belong to the certificate %s",
                        cert);
  if (wolfSSL_CTX_load_verify_locations(ctx, bundle, NULL) != WOLFSSL_SUCCESS)
    return zt_error_set(err, bundle, 0, 0, "not a PEM trust bundle");
  wolfSSL_CTX_set_verify(ctx,
                         WOLFSSL_VERIFY_PEER |
                             (server ? WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                         verify_cb);
  return 0;
}

int zt_identity_load(const char *cert, const char *key, const char *bundle,
                     zt_identity_t **out, zt_error_t *err) {
  zt_identity_t *id = calloc(1, sizeof(*id));
  unsigned char *pem = NULL, *der = NULL;
  size_t pem_len, der_len;
  zt_svid_info_t info;
  const char *reason;
  WOLFSSL_CERT_MANAGER *cm = NULL;
  int64_t now = (int64_t)time(NULL);

  if (id == NULL) return zt_error_set(err, NULL, 0, 0, "out of memory");
  atomic_init(&id->refs, 1);
  if (zt_pem_read_file(cert, &pem, &pem_len, err)) goto fail;
  if (zt_pem_first_cert_der(pem, pem_len, &der, &der_len)) {
    zt_error_set(err, cert, 0, 0, "no PEM certificate in the file");
    goto fail;
  }
  if (zt_svid_check_leaf(der, der_len, &info, &reason)) {
    zt_error_set(err, cert, 0, 0, "not a valid X.509-SVID: %s (%s)",
                 zt_svid_reason_text(reason), reason);
    goto fail;
  }
  if (now < info.not_before) {
    zt_error_set(err, cert, 0, 0, "the SVID is not valid yet");
    goto fail;
  }
  if (now >= info.not_after) {
    zt_error_set(err, cert, 0, 0, "the SVID has expired");
    goto fail;
  }
  memcpy(id->id, info.id, info.id_len + 1);
  memcpy(id->trust_domain, info.spiffe.td, info.spiffe.td_len);
  id->trust_domain[info.spiffe.td_len] = '\0';
  memcpy(id->serial, info.serial, sizeof(id->serial) - 1);
  id->not_after = info.not_after;

  /* Our own SVID must chain to our bundle: a peer would refuse it anyway, and a
   * mismatched pair is an operator error worth naming at load. */
  cm = wolfSSL_CertManagerNew();
  if (cm == NULL || wolfSSL_CertManagerLoadCA(cm, bundle, NULL) != WOLFSSL_SUCCESS) {
    zt_error_set(err, bundle, 0, 0, "not a PEM trust bundle");
    goto fail;
  }
  if (wolfSSL_CertManagerVerifyBuffer(cm, der, (long)der_len, WOLFSSL_FILETYPE_ASN1) !=
      WOLFSSL_SUCCESS) {
    /* Intermediates in the chain file are not in the CM; accept when the chain file
     * has more than one certificate and leave the full check to the handshake. */
    if (strstr((const char *)pem + 1, "-----BEGIN CERTIFICATE-----") == NULL) {
      zt_error_set(err, cert, 0, 0, "the SVID does not chain to the trust bundle %s",
                   bundle);
      goto fail;
    }
  }

  id->server = wolfSSL_CTX_new(wolfTLS_server_method());
  id->client = wolfSSL_CTX_new(wolfTLS_client_method());
  if (id->server == NULL || id->client == NULL) {
    zt_error_set(err, NULL, 0, 0, "cannot create TLS contexts");
    goto fail;
  }
  if (setup_ctx(id->server, cert, key, bundle, 1, err) ||
      setup_ctx(id->client, cert, key, bundle, 0, err))
    goto fail;

  wolfSSL_CertManagerFree(cm);
  free(pem);
  free(der);
  *out = id;
  return 0;

fail:
  if (cm) wolfSSL_CertManagerFree(cm);
  free(pem);
  free(der);
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
