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
 * (/work/spec.md "TLS failure reasons"); they go verbatim to the access log's
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
} zt_svid_info_t;

/* Check the DER leaf certificate der[0..len). Returns 0 when it is an acceptable
 * X.509-SVID leaf, with *out filled; -1 otherwise, with *reason (if reason != NULL)
 * set to one of the codes above. Checks, in order: parses ("malformed_certificate"),
 * exactly one URI SAN ("no_uri_san", "multiple_uri_sans"), that URI a SPIFFE ID
 * ("invalid_spiffe_id"), not a CA: neither CA:TRUE nor keyCertSign/cRLSign key usage
 * ("leaf_is_ca"). On failure after a successful parse, *out still has the dates,
 * is_ca and serial (id is then "" and spiffe zeroed), for logs. out may be NULL. */
int zt_svid_check_leaf(const unsigned char *der, size_t len, zt_svid_info_t *out,
                       const char **reason);

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

#endif
