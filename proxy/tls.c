/* proxy/tls.c: identity loading into WOLFSSL_CTXs and the SVID verify callback. */
#include "tls.h"

#include <stdlib.h>
#include <sys/random.h>
#include <string.h>
#include <time.h>

#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

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
  bool federated;

  if (peer == NULL) return 0;
  /* With federated trust domains, wolfSSL's verdict does not count either way (see
   * the fast path below): a partner's CA with a copied key identifier, seen first,
   * would make it refuse our own peers. Our own verification at the leaf decides. */
  federated = zt_bundle_set_count(peer->ident->set->bundles) > 1;
  if (!preverify && !federated) {
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
  /* With one trust domain and no CRLs, wolfSSL's verification of signatures and
   * dates stands when the chain is provably the path it took to one of its roots; what
   * is left is ours: the SVID rules. Otherwise our own verification. Not with
   * federated trust domains: wolfSSL finds a signer by key identifier alone, in one
   * table for every trust domain, keeping the first CA it saw for each, so a
   * partner's CA could take the place of one of ours under a copied name and key
   * identifier, and the path check cannot tell (both are public). */
  {
    const zt_bundle_set_t *b = peer->ident->set->bundles;
    int td = -1, fast = 0;
    if (zt_bundle_set_crl_count(b) == 0 && !federated) {
      if (zt_svid_check_chain(ders, lens, n, &info, &reason)) {
        peer->tls_error = reason;
        return 0;
      }
      td = zt_bundle_set_find(b, info.spiffe.td, info.spiffe.td_len);
      fast = td >= 0 && zt_bundle_set_is_path(b, (size_t)td, ders, lens, n);
    }
    if (!fast && zt_bundle_set_verify(b, ders, lens, n, (int64_t)time(NULL), &info,
                                      &reason)) {
      peer->tls_error = reason;
      return 0;
    }
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
  if (wc_Sha256Hash(ders[0], (word32)lens[0], peer->cert_sha256) != 0) return 0;
  {
    /* Kept until the handshake is done, in case the identity (bundles, CRLs) changes
     * meanwhile; and for the connection's life when CRLs are configured, so that a
     * CRL published later can close it. */
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

const char *zt_tls_peer_reverify(const zt_identity_t *id, const zt_tls_peer_t *peer) {
  const unsigned char *ders[ZT_SVID_CHAIN_MAX], *p = peer->chain;
  zt_svid_info_t info;
  const char *reason;
  if (peer->peer_id == NULL) return NULL;
  if (peer->chain == NULL) {
    zt_spiffe_id_t sid;
    if (zt_spiffe_id_parse(peer->peer_id, strlen(peer->peer_id), &sid, NULL) ||
        zt_bundle_set_find(id->set->bundles, sid.td, sid.td_len) < 0)
      return ZT_REASON_FOREIGN_TD;
    if (peer->not_after <= (int64_t)time(NULL)) return ZT_REASON_EXPIRED;
    return NULL;
  }
  for (size_t i = 0; i < peer->chain_n; i++) {
    ders[i] = p;
    p += peer->chain_lens[i];
  }
  if (zt_bundle_set_verify(id->set->bundles, ders, peer->chain_lens, peer->chain_n,
                           (int64_t)time(NULL), &info, &reason))
    return reason;
  return NULL;
}

void zt_tls_peer_drop_chain(zt_tls_peer_t *peer) {
  free(peer->chain);
  peer->chain = NULL;
  peer->chain_n = 0;
}

int zt_tls_peer_resume(zt_tls_peer_t *peer) {
  if (peer->ticket.id == NULL) return -1;
  free(peer->peer_id);
  peer->peer_id = peer->ticket.id;
  peer->ticket.id = NULL;
  peer->not_after = peer->ticket.not_after;
  memcpy(peer->serial, peer->ticket.serial, sizeof(peer->serial));
  memcpy(peer->cert_sha256, peer->ticket.cert_sha256, sizeof(peer->cert_sha256));
  peer->resumed = 1;
  return 0;
}

void zt_tls_peer_free(zt_tls_peer_t *peer) {
  free(peer->peer_id);
  free(peer->ticket.id);
  free(peer->chain);
  peer->peer_id = NULL;
  peer->ticket.id = NULL;
  peer->chain = NULL;
}

const char *zt_tls_failure_reason(WOLFSSL *ssl, int ret, const zt_tls_peer_t *peer) {
  int e;
  if (peer->tls_error) return peer->tls_error;
  e = wolfSSL_get_error(ssl, ret);
  if (e == NO_PEER_CERT) return "no_client_cert";
  return cert_error_reason(e);
}

/* --- session tickets ----------------------------------------------------------------
 *
 * A resumed TLS 1.3 handshake carries no certificate, so the peer's identity must
 * travel in the ticket. We encrypt wolfSSL's ticket state with AES-256-GCM under the
 * identity snapshot's ticket key, and append (inside the encryption) the peer's SPIFFE
 * ID, SVID expiry and serial as verified in the full handshake:
 *
 *   [wolfSSL's ticket][ver=1][not_after:8][leaf sha256:32][serial_len:1][serial]
 *   [id_len:2][id][app_len:2]
 *
 * A ticket whose peer SVID has expired, whose trust domain we no longer trust, or that
 * was made under another key (every identity rotation makes a new one) is refused, and
 * the handshake falls back to a full one with certificates. With CRLs configured no
 * tickets are issued: a resumed connection has no chain to re-check.
 */
#define TICKET_APP_MAX 288          /* WOLFSSL_TICKET_EXTRA_PADDING_SZ in the build */

static int ticket_cb(WOLFSSL *ssl, unsigned char name[WOLFSSL_TICKET_NAME_SZ],
                     unsigned char iv[WOLFSSL_TICKET_IV_SZ],
                     unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc, unsigned char *buf,
                     int in_len, int *out_len, void *ctx) {
  const zt_identity_t *id = ctx;
  zt_tls_peer_t *peer = wolfSSL_GetIOReadCtx(ssl);
  Aes aes;
  int ok;

  if (id == NULL || peer == NULL) return WOLFSSL_TICKET_RET_FATAL;
  if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0) return WOLFSSL_TICKET_RET_FATAL;
  if (wc_AesGcmSetKey(&aes, id->ticket_key, sizeof(id->ticket_key)) != 0) {
    wc_AesFree(&aes);
    return WOLFSSL_TICKET_RET_FATAL;
  }
  if (enc) {
    /* wolfSSL issues tickets once the handshake is done: the peer is verified, by its
     * certificate or, on a resumed session, by the ticket it resumed. */
    int from_ticket = peer->peer_id == NULL && peer->ticket.id != NULL;
    const char *pid = from_ticket ? peer->ticket.id : peer->peer_id;
    const char *serial = from_ticket ? peer->ticket.serial : peer->serial;
    size_t idl = pid ? strlen(pid) : 0, sl = strlen(serial);
    size_t app = 1 + 8 + 32 + 1 + sl + 2 + idl + 2;
    unsigned char *p = buf + in_len;
    if (pid == NULL || app > TICKET_APP_MAX) {
      app = 1 + 2;                 /* no identity: this ticket will be refused */
      *p++ = 0;
    } else {
      uint64_t na = (uint64_t)(from_ticket ? peer->ticket.not_after : peer->not_after);
      *p++ = 1;
      for (int i = 7; i >= 0; i--) *p++ = (unsigned char)(na >> (8 * i));
      memcpy(p, from_ticket ? peer->ticket.cert_sha256 : peer->cert_sha256, 32);
      p += 32;
      *p++ = (unsigned char)sl;
      memcpy(p, serial, sl);
      p += sl;
      *p++ = (unsigned char)(idl >> 8);
      *p++ = (unsigned char)idl;
      memcpy(p, pid, idl);
      p += idl;
    }
    *p++ = (unsigned char)(app >> 8);
    *p++ = (unsigned char)app;
    memcpy(name, id->ticket_name, WOLFSSL_TICKET_NAME_SZ);
    memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
    ok = getrandom(iv, WOLFSSL_TICKET_IV_SZ, 0) == WOLFSSL_TICKET_IV_SZ &&
         wc_AesGcmEncrypt(&aes, buf, buf, (word32)(in_len + (int)app), iv, 12, mac, 16,
                          name, WOLFSSL_TICKET_NAME_SZ) == 0;
    wc_AesFree(&aes);
    if (!ok) return WOLFSSL_TICKET_RET_FATAL;
    *out_len = in_len + (int)app;
    return WOLFSSL_TICKET_RET_OK;
  }
  /* Decrypt: a ticket of another key, or one that does not authenticate, is refused,
   * and so is every ticket on a listener with resumption off (the key is the
   * identity's, shared by all listeners). */
  if (!peer->tickets || memcmp(name, id->ticket_name, WOLFSSL_TICKET_NAME_SZ) != 0 ||
      wc_AesGcmDecrypt(&aes, buf, buf, (word32)in_len, iv, 12, mac, 16, name,
                       WOLFSSL_TICKET_NAME_SZ) != 0) {
    wc_AesFree(&aes);
    return WOLFSSL_TICKET_RET_REJECT;
  }
  wc_AesFree(&aes);
  {
    size_t app, sl, idl;
    const unsigned char *p;
    uint64_t na = 0;
    zt_spiffe_id_t sid;
    if (in_len < 3) return WOLFSSL_TICKET_RET_REJECT;
    app = (size_t)buf[in_len - 2] << 8 | buf[in_len - 1];
    if (app < 3 || app > (size_t)in_len || app > TICKET_APP_MAX) return WOLFSSL_TICKET_RET_REJECT;
    p = buf + in_len - app;
    if (*p++ != 1 || app < 1 + 8 + 32 + 1 + 2 + 2) return WOLFSSL_TICKET_RET_REJECT;
    for (int i = 0; i < 8; i++) na = na << 8 | *p++;
    memcpy(peer->ticket.cert_sha256, p, 32);
    p += 32;
    sl = *p++;
    if (1 + 8 + 32 + 1 + sl + 2 + 2 > app || sl >= sizeof(peer->ticket.serial))
      return WOLFSSL_TICKET_RET_REJECT;
    memcpy(peer->ticket.serial, p, sl);
    peer->ticket.serial[sl] = '\0';
    p += sl;
    idl = (size_t)p[0] << 8 | p[1];
    p += 2;
    if (1 + 8 + 32 + 1 + sl + 2 + idl + 2 != app) return WOLFSSL_TICKET_RET_REJECT;
    if ((int64_t)na <= (int64_t)time(NULL) ||
        zt_spiffe_id_parse((const char *)p, idl, &sid, NULL) ||
        zt_bundle_set_find(id->set->bundles, sid.td, sid.td_len) < 0)
      return WOLFSSL_TICKET_RET_REJECT;
    /* Not the peer's identity yet: wolfSSL checks the PSK binder after this, and
     * anyone who saw the ClientHello can send the ticket. */
    free(peer->ticket.id);
    if ((peer->ticket.id = malloc(idl + 1)) == NULL) return WOLFSSL_TICKET_RET_REJECT;
    memcpy(peer->ticket.id, p, idl);
    peer->ticket.id[idl] = '\0';
    peer->ticket.not_after = (int64_t)na;
    *out_len = in_len - (int)app;
  }
  return WOLFSSL_TICKET_RET_OK;
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

static int setup_tickets(zt_identity_t *id, zt_error_t *err) {
  WC_RNG rng;
  int r;
  if (wc_InitRng(&rng) != 0) return zt_error_set(err, NULL, 0, 0, "no random numbers");
  r = wc_RNG_GenerateBlock(&rng, id->ticket_name, sizeof(id->ticket_name)) |
      wc_RNG_GenerateBlock(&rng, id->ticket_key, sizeof(id->ticket_key));
  wc_FreeRng(&rng);
  if (r != 0) return zt_error_set(err, NULL, 0, 0, "no random numbers");
  if (zt_bundle_set_crl_count(id->set->bundles) > 0) return 0;   /* see ticket_cb */
  if (wolfSSL_CTX_set_TicketEncCb(id->server, ticket_cb) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_set_TicketEncCtx(id->server, id) != WOLFSSL_SUCCESS)
    return zt_error_set(err, NULL, 0, 0, "cannot set up session tickets");
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
  if (setup_ctx(id->server, id->set, 1, err) || setup_ctx(id->client, id->set, 0, err) ||
      setup_tickets(id, err))
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

WOLFSSL *zt_tls_new(zt_identity_t *id, int server, zt_tls_peer_t *peer,
                    CallbackIORecv recv_cb, CallbackIOSend send_cb, int tickets) {
  WOLFSSL *ssl = wolfSSL_new(server ? id->server : id->client);
  if (ssl == NULL) return NULL;
  wolfSSL_SSLSetIORecv(ssl, recv_cb);
  wolfSSL_SSLSetIOSend(ssl, send_cb);
  /* The I/O context is the peer record (the connection starts with it): the I/O
   * callbacks and ticket_cb find their way from there. */
  wolfSSL_SetIOReadCtx(ssl, peer);
  wolfSSL_SetIOWriteCtx(ssl, peer);
  if (server && !tickets) wolfSSL_no_ticket_TLSv13(ssl);
  peer->tickets = server && tickets;
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
