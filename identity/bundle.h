/* identity/bundle.h: trust bundles of several trust domains, their CRLs, and peer
 * chain verification against the bundle of the peer's own trust domain only.
 *
 * A zt_bundle_set_t maps trust domain names to their roots (a PEM bundle each: our
 * `identity.bundle` and every `identity.federated[].bundle`) and holds the CRLs of
 * `identity.crl`. zt_bundle_set_verify() is the whole peer decision short of policy:
 * the X.509-SVID rules on the chain (zt_svid_check_chain), the trust domain of the
 * leaf's SPIFFE ID has a bundle here, every certificate is within its dates at `now`,
 * the chain verifies with wolfSSL to a root of THAT trust domain's bundle and no
 * other (a CA of partner.example cannot vouch for spiffe://example.org/...), and no
 * certificate of the chain is on a CRL issued by its issuer.
 *
 * Built once (loading is not thread-safe), then immutable: zt_bundle_set_verify() may
 * run on many threads at once (each wolfSSL certificate manager has its own lock; a
 * chain with intermediates is verified in a private, short-lived manager so no peer's
 * intermediate is ever remembered as trusted). No I/O except the *_file loaders, and
 * the clock only as given; wolfSSL also checks dates against the system clock.
 *
 * CRLs: a CRL applies to the certificates whose issuer name equals the CRL's issuer
 * name AND whose issuer's key verifies the CRL's signature. A CRL issued by a root of
 * a bundle is verified when it is added (a bad signature is a load error); one issued
 * by an intermediate is verified against the intermediate the peer presents (the chain
 * having verified first), at each check. A CRL past its nextUpdate still applies
 * (revocations do not expire); zt_bundle_set_crl_stale() reports it.
 */
#ifndef ZT_BUNDLE_H
#define ZT_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "svid.h"
#include "zt_error.h"

/* Reason codes of zt_bundle_set_verify(), besides those of zt_svid_check_chain(). */
#define ZT_REASON_FOREIGN_TD "foreign_trust_domain" /* no bundle for the leaf's TD */
#define ZT_REASON_UNKNOWN_CA "unknown_ca"           /* chain does not end at its TD's root */
#define ZT_REASON_EXPIRED "expired"
#define ZT_REASON_NOT_YET_VALID "not_yet_valid"
#define ZT_REASON_BAD_SIGNATURE "bad_signature"
#define ZT_REASON_REVOKED "revoked"
#define ZT_REASON_TLS_ERROR "tls_error"             /* anything else (out of memory) */

typedef struct zt_bundle_set zt_bundle_set_t;

/* NULL when out of memory. */
zt_bundle_set_t *zt_bundle_set_new(void);
void zt_bundle_set_free(zt_bundle_set_t *s);

/* Add the roots in pem[0..len) for trust domain td (a valid trust domain name, not
 * yet in the set). Every certificate must parse, be a CA (CA:TRUE, keyCertSign when
 * keyUsage is present), and have no weak key; source names the file in errors.
 * 0, or -1 with err as "source: what is wrong". */
int zt_bundle_set_add(zt_bundle_set_t *s, const char *td, const unsigned char *pem,
                      size_t len, const char *source, zt_error_t *err);
int zt_bundle_set_add_file(zt_bundle_set_t *s, const char *td, const char *path,
                           zt_error_t *err);

/* Add the CRL(s) in pem[0..len) ("X509 CRL" blocks). Call after every bundle was
 * added: a CRL whose issuer name is a root's must verify with that root's key. */
int zt_bundle_set_add_crl(zt_bundle_set_t *s, const unsigned char *pem, size_t len,
                          const char *source, zt_error_t *err);
int zt_bundle_set_add_crl_file(zt_bundle_set_t *s, const char *path, zt_error_t *err);

/* Introspection, for loading the roots into a WOLFSSL_CTX and for logs. */
size_t zt_bundle_set_count(const zt_bundle_set_t *s);           /* trust domains */
const char *zt_bundle_set_td(const zt_bundle_set_t *s, size_t i);
int zt_bundle_set_find(const zt_bundle_set_t *s, const char *td, size_t td_len);
size_t zt_bundle_set_root_count(const zt_bundle_set_t *s, size_t i);
const unsigned char *zt_bundle_set_root(const zt_bundle_set_t *s, size_t i, size_t j,
                                        size_t *len);             /* DER */
size_t zt_bundle_set_crl_count(const zt_bundle_set_t *s);
/* 1 when some CRL's nextUpdate is at or before now. */
int zt_bundle_set_crl_stale(const zt_bundle_set_t *s, int64_t now);

/* Verify a peer chain (ders[0] leaf, then intermediates as sent) at time now.
 * 0 with *leaf_out (may be NULL) filled, or -1 with *reason one of the codes above
 * or of zt_svid_check_chain(). */
int zt_bundle_set_verify(const zt_bundle_set_t *s, const unsigned char *const *ders,
                         const size_t *lens, size_t n, int64_t now,
                         zt_svid_info_t *leaf_out, const char **reason);

/* 1 when ders[0..n) is the path wolfSSL's own verification of it took, and so was
 * verified against its own certificates and td_index's roots and nothing else: each
 * certificate names its issuer by authority key identifier, and that issuer is the
 * next certificate (after the last, a root of td_index) by subject name and subject
 * key identifier, which is how wolfSSL finds a signer. wolfSSL also trusts every CA
 * certificate a peer's chain brought, for the context's life; this rules out that one
 * of those vouched instead. 0 otherwise, or when a certificate has no authority key
 * identifier. */
int zt_bundle_set_is_path(const zt_bundle_set_t *s, size_t td_index,
                          const unsigned char *const *ders, const size_t *lens,
                          size_t n);

/* Only the CRL part: 1 when a certificate of the chain is revoked, 0 when not, for
 * re-checking established connections when a new CRL arrives. td_index is the
 * chain's trust domain (zt_bundle_set_find). */
int zt_bundle_set_revoked(const zt_bundle_set_t *s, size_t td_index,
                          const unsigned char *const *ders, const size_t *lens,
                          size_t n);

#endif
