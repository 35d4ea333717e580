/* identity/svid.h: the X.509-SVID leaf checks that the TLS library does not do, and
 * the PEM helpers every identity file goes through.
 *
 * Chain and signature verification, and validity dates against the clock, are the TLS
 * library's job (it has the trust bundle and the time). zt_svid_check_leaf() looks
 * only at the leaf's own content, per the SPIFFE X.509-SVID specification: exactly one
 * URI SAN, that URI a valid SPIFFE ID, and not a CA. Pure function: no I/O, no clock,
 * and no heap use beyond wolfSSL's certificate parser, which is freed before return.
 *
 * Reason codes are static strings, shared with the TLS layer's failure reasons
 * (README "Peer verification"); they go verbatim to the access log's
 * `tls_error` and to metrics labels. zt_svid_reason_text() gives the log sentence.
 */
#ifndef ZT_SVID_H
#define ZT_SVID_H

#include <stddef.h>
#include <stdint.h>

#include "spiffe.h"
#include "zt_error.h"

/* Reason codes of zt_svid_check_leaf(). */
#define ZT_SVID_MALFORMED "malformed_certificate"
#define ZT_SVID_NO_URI_SAN "no_uri_san"
#define ZT_SVID_MULTIPLE_URI_SANS "multiple_uri_sans"
#define ZT_SVID_INVALID_SPIFFE_ID "invalid_spiffe_id"
#define ZT_SVID_LEAF_IS_CA "leaf_is_ca"
/* The full X.509-SVID rules: */
#define ZT_SVID_LEAF_CERT_SIGN "leaf_can_sign_certs"  /* leaf has keyCertSign/cRLSign */
#define ZT_SVID_NO_DIGITAL_SIGNATURE "missing_digital_signature"
#define ZT_SVID_SIGNER_NOT_CA "signer_not_ca"   /* chain cert without CA:TRUE+keyCertSign */
#define ZT_SVID_WEAK_KEY "weak_key"             /* RSA < 2048 bits, EC < 256 bits */
#define ZT_SVID_SHA1 "sha1_signature"           /* signed with SHA-1 (or MD5) */
#define ZT_SVID_CHAIN_TOO_LONG "chain_too_long" /* more than ZT_SVID_CHAIN_MAX certs */

/* Longest peer chain zt_svid_check_chain() accepts: leaf + intermediates. */
#define ZT_SVID_CHAIN_MAX 8

/* Serials are at most 32 bytes in what wolfSSL accepts: 64 hex digits. */
#define ZT_SVID_SERIAL_HEX_MAX 64

/* Largest PEM file zt_pem_read_file() accepts. */
#define ZT_PEM_FILE_MAX (1024 * 1024)

typedef struct {
  char id[ZT_SPIFFE_ID_MAX + 1];   /* the URI SAN, NUL-terminated */
  size_t id_len;
  zt_spiffe_id_t spiffe;           /* parsed; points into id[] (so do not copy the
                                      struct and use the copy's spiffe pointers) */
  int64_t not_before, not_after;   /* unix seconds, UTC */
  int is_ca;                       /* basicConstraints CA:TRUE */
  char serial[ZT_SVID_SERIAL_HEX_MAX + 1]; /* lowercase hex, no leading "00" pad */
  /* For `identity show` and logs: */
  char key_type[16];               /* "EC P-256", "RSA", ... */
  int key_bits;                    /* 256, 2048, ...; 0 when unknown */
  char sig_alg[24];                /* "ecdsa-with-SHA256", "sha1WithRSA", ... */
  int self_signed;
  int key_usage_set;               /* keyUsage extension present */
  unsigned key_usage;              /* wolfSSL KEYUSE_* bits when key_usage_set */
} zt_svid_info_t;

/* Each X.509-SVID rule, as a bit of zt_svid_rules_t.broken. */
enum {
  ZT_SVID_RULE_PARSES = 1 << 0,        /* malformed_certificate */
  ZT_SVID_RULE_ONE_URI = 1 << 1,       /* no_uri_san / multiple_uri_sans */
  ZT_SVID_RULE_SPIFFE_ID = 1 << 2,     /* invalid_spiffe_id */
  ZT_SVID_RULE_NOT_CA = 1 << 3,        /* leaf_is_ca */
  ZT_SVID_RULE_NO_CERT_SIGN = 1 << 4,  /* leaf_can_sign_certs */
  ZT_SVID_RULE_DIGITAL_SIG = 1 << 5,   /* missing_digital_signature */
  ZT_SVID_RULE_STRONG_KEY = 1 << 6,    /* weak_key */
  ZT_SVID_RULE_NO_SHA1 = 1 << 7,       /* sha1_signature */
  ZT_SVID_RULE_SIGNER_CA = 1 << 8,     /* signer_not_ca (signing certificates only) */
};

typedef struct {
  unsigned checked;   /* rules that apply (leaf rules, or signing-cert rules) */
  unsigned broken;    /* subset of checked */
  const char *uri_reason; /* no_uri_san or multiple_uri_sans when ONE_URI broken */
} zt_svid_rules_t;

/* Check the DER leaf certificate der[0..len). Returns 0 when it is an acceptable
 * X.509-SVID leaf, with *out filled; -1 otherwise, with *reason (if reason != NULL)
 * set to one of the codes above. Checks, in order: parses ("malformed_certificate"),
 * exactly one URI SAN ("no_uri_san", "multiple_uri_sans"), that URI a SPIFFE ID
 * ("invalid_spiffe_id"), not a CA: neither CA:TRUE nor keyCertSign/cRLSign key usage
 * ("leaf_is_ca"). On failure after a successful parse, *out still has the dates,
 * is_ca and serial (id is then "" and spiffe zeroed), for logs. out may be NULL. */
int zt_svid_check_leaf(const unsigned char *der, size_t len, zt_svid_info_t *out,
                       const char **reason);

/* Every rule at once, for `identity show`: as_leaf selects the leaf rules (URI SAN,
 * SPIFFE ID, not CA, no keyCertSign/cRLSign, digitalSignature, key, signature hash)
 * or the signing-certificate rules (CA:TRUE with keyCertSign, key, signature hash).
 * info (may be NULL) is filled as far as the certificate parses. Returns 0 when no
 * rule is broken, else the reason code of the first broken one, in the order of
 * zt_svid_check_leaf(). */
const char *zt_svid_rules(const unsigned char *der, size_t len, int as_leaf,
                          zt_svid_info_t *info, zt_svid_rules_t *rules);

/* The rule name ("exactly one URI SAN", ...) and its sentence of a ZT_SVID_RULE_ bit. */
const char *zt_svid_rule_name(unsigned rule);

/* Every SVID rule over a peer chain as TLS presents it: ders[0] the leaf, then the
 * intermediates in order (each signing the one before). Signatures, dates and the
 * path to a trust anchor are NOT checked here (the TLS library, or
 * zt_bundle_set_verify, does that). Leaf: as zt_svid_check_leaf. Every other
 * certificate: CA:TRUE and keyUsage keyCertSign ("signer_not_ca"), no weak key
 * ("weak_key"), no SHA-1 signature ("sha1_signature"). n must be 1..ZT_SVID_CHAIN_MAX
 * ("chain_too_long", or "malformed_certificate" for 0). 0, or -1 with *reason set;
 * leaf_out (may be NULL) as for zt_svid_check_leaf. */
int zt_svid_check_chain(const unsigned char *const *ders, const size_t *lens, size_t n,
                        zt_svid_info_t *leaf_out, const char **reason);

/* English sentence for a reason code (the SVID ones above and every TLS failure
 * reason of the spec: no_client_cert, unknown_ca, expired, ...). Unknown codes get a
 * generic sentence; never NULL. */
const char *zt_svid_reason_text(const char *code);

/* Read the whole file at path (at most ZT_PEM_FILE_MAX bytes) into a malloc'd,
 * NUL-terminated *buf (caller frees; *len excludes the NUL). 0, or -1 with err
 * filled as "path: what went wrong". */
int zt_pem_read_file(const char *path, unsigned char **buf, size_t *len,
                     zt_error_t *err);

/* DER of the first CERTIFICATE block of pem[0..len) (the leaf of a chain file), in
 * a malloc'd *der the caller frees. 0, or -1 when there is no certificate. */
int zt_pem_first_cert_der(const unsigned char *pem, size_t len, unsigned char **der,
                          size_t *der_len);

/* The DER certificates of a PEM file, in file order. */
typedef struct {
  unsigned char **der;
  size_t *len;
  size_t n;
} zt_der_list_t;

/* Every block of pem[0..len) must be a complete "CERTIFICATE" block (text between
 * blocks is allowed, as `openssl` writes it); a block that begins and does not end
 * (a half-written file), a block of another kind, or no block at all fails. At most
 * max certificates (0: 1024). 0 with *out filled (free with zt_der_list_free), or -1
 * with *why a static sentence. */
int zt_pem_cert_list(const unsigned char *pem, size_t len, size_t max,
                     zt_der_list_t *out, const char **why);
void zt_der_list_free(zt_der_list_t *l);

#endif
