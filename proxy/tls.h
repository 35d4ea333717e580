/* proxy/tls.h: our workload identity as TLS contexts, and peer verification.
 *
 * A zt_identity_t is an immutable, reference-counted snapshot: the SVID, its key and
 * the trust bundle, loaded and checked (valid SPIFFE ID, key matches, chains to the
 * bundle, within its validity) into one server and one client WOLFSSL_CTX. A listener
 * never accepts before one is loaded: there is no plaintext fallback.
 *
 * Peer verification is wolfSSL's chain and date checks plus ours, run in the verify
 * callback on the peer's leaf (zt_svid_check_leaf, trust domain, expect_server); the
 * outcome goes into the connection's zt_tls_peer_t.
 */
#ifndef ZT_TLS_H
#define ZT_TLS_H

#include <stdatomic.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "config.h"
#include "idset.h"
#include "spiffe.h"
#include "zt_error.h"

#define ZT_ALPN "ztp/1"

typedef struct {
  atomic_int refs;
  WOLFSSL_CTX *server, *client;
  zt_idset_t *set;                         /* SVID, key, bundles, CRLs as validated */
  unsigned char ticket_name[16];           /* session tickets: this snapshot's key; */
  unsigned char ticket_key[32];            /* rotating the identity drops all tickets */
  char id[ZT_SPIFFE_ID_MAX + 1];           /* our SPIFFE ID */
  char trust_domain[ZT_TRUST_DOMAIN_MAX + 1];
  char serial[65];
  int64_t not_before, not_after;
} zt_identity_t;

/* What the verify callback (or, on a resumed session, the ticket) told us about the
 * peer. The I/O context of every WOLFSSL we create begins with one of these. */
typedef struct {
  const zt_identity_t *ident;              /* whose trust domain the peer must be in */
  char *const *expect;                     /* outbound: allowed server IDs, or NULL */
  size_t n_expect;
  const char *tls_error;                   /* reason code once verification failed */
  char *peer_id;                           /* malloc'd SPIFFE ID once verified */
  int64_t not_after;                       /* the peer's SVID, once verified */
  char serial[65];
  unsigned char cert_sha256[32];           /* of the peer's leaf certificate (DER) */
  unsigned char *chain;                    /* the peer's chain, DER, kept through the */
  size_t chain_lens[ZT_SVID_CHAIN_MAX];    /* handshake (and after it, with CRLs) */
  size_t chain_n;
  int resumed;                             /* identity restored from a session ticket */
  int tickets;                             /* server: this listener takes tickets */
  struct {                                 /* who a session ticket says the peer is: */
    char *id;                              /* taken (zt_tls_peer_resume) only once the */
    int64_t not_after;                     /* handshake is done and resumed it, which */
    char serial[65];                       /* the ticket alone does not prove */
    unsigned char cert_sha256[32];
  } ticket;
} zt_tls_peer_t;

void zt_tls_init(void);                    /* once per process */
void zt_tls_cleanup(void);

/* Load the identity files named by cfg. expect_id: NULL, or the SPIFFE ID the SVID
 * must have (a rotation may not change who we are unless the config allows it). */
int zt_identity_load(const zt_config_t *cfg, const char *expect_id, zt_identity_t **out,
                     zt_error_t *err);
zt_identity_t *zt_identity_retain(zt_identity_t *id);
void zt_identity_release(zt_identity_t *id);

/* A new WOLFSSL for one connection (server: inbound; client: outbound), wired to the
 * I/O callbacks with io_ctx and to peer. NULL on failure. */
WOLFSSL *zt_tls_new(zt_identity_t *id, int server, zt_tls_peer_t *peer,
                    CallbackIORecv recv_cb, CallbackIOSend send_cb, int tickets);

/* The reason code for a failed handshake: peer->tls_error if the verify callback set
 * one, else a code derived from wolfSSL's error. */
const char *zt_tls_failure_reason(WOLFSSL *ssl, int ret, const zt_tls_peer_t *peer);

/* Verify the peer's kept chain again under identity id (its bundles and CRLs, now):
 * NULL when it still passes, else the reason ("revoked", "unknown_ca", ...). Without
 * a chain (a resumed session, or CRLs not configured) only the peer's trust domain and
 * expiry are checked. */
const char *zt_tls_peer_reverify(const zt_identity_t *id, const zt_tls_peer_t *peer);
/* The handshake resumed a session: the peer is who its ticket says. -1 if none. */
int zt_tls_peer_resume(zt_tls_peer_t *peer);
void zt_tls_peer_drop_chain(zt_tls_peer_t *peer);
void zt_tls_peer_free(zt_tls_peer_t *peer);

#endif
