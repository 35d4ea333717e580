/* tests/unit/test_svid.c: identity/svid.c and identity/issue.c together.
 *
 * Each test gets a fresh mkdtemp folder with a CA for example.org in it, issues the
 * kind of leaf it is about through zt_issue_svid() (the code behind `ztproxy identity
 * issue`), and checks zt_svid_check_leaf()'s verdict. The folder is removed whatever
 * the outcome: the body runs in its own function so a failed ZT_ASSERT returns to
 * the cleanup.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "issue.h"
#include "svid.h"
#include "zt_test.h"

typedef struct {
  char dir[256];
  char ca_cert[300], ca_key[300];
  int64_t now;
  int ok;
} fx_t;

static void fx_init(fx_t *f) {
  zt_issue_ca_opts_t o;
  zt_error_t err;
  memset(f, 0, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/zt_test_svid.XXXXXX");
  if (mkdtemp(f->dir) == NULL) {
    f->dir[0] = '\0';
    return;
  }
  snprintf(f->ca_cert, sizeof(f->ca_cert), "%s/ca.pem", f->dir);
  snprintf(f->ca_key, sizeof(f->ca_key), "%s/ca_key.pem", f->dir);
  f->now = (int64_t)time(NULL);
  memset(&o, 0, sizeof(o));
  o.trust_domain = "example.org";
  o.now = f->now;
  o.ttl = ZT_ISSUE_CA_TTL_DEFAULT;
  o.backdate = ZT_ISSUE_BACKDATE_DEFAULT;
  if (zt_issue_ca(&o, f->ca_cert, f->ca_key, NULL, &err) != 0) {
    fprintf(stderr, "  fixture: %s\n", err.msg);
    return;
  }
  f->ok = 1;
}

static void fx_fini(fx_t *f) {
  DIR *d;
  struct dirent *e;
  char p[600];
  if (f->dir[0] == '\0') return;
  d = opendir(f->dir);
  if (d != NULL) {
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(f->dir);
}

/* A test with the fixture: FX_TEST(name) { ...uses f... } */
#define FX_TEST(name)                                                          \
  static void fx_body_##name(fx_t *f);                                        \
  ZT_TEST(name) {                                                              \
    fx_t f_;                                                                   \
    fx_init(&f_);                                                              \
    if (!f_.ok) {                                                              \
      fprintf(stderr, "  fixture failed\n");                                  \
      zt_test_failed_ = 1;                                                     \
    } else {                                                                   \
      fx_body_##name(&f_);                                                     \
    }                                                                          \
    fx_fini(&f_);                                                              \
  }                                                                            \
  static void fx_body_##name(fx_t *f)

static void path_of(const fx_t *f, const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s", f->dir, name);
}

/* Default SVID options: a good leaf for spiffe://example.org/a, 1h, 30s backdate. */
static void svid_opts(const fx_t *f, zt_issue_svid_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->ca_cert = f->ca_cert;
  o->ca_key = f->ca_key;
  o->id = "spiffe://example.org/a";
  o->now = f->now;
  o->ttl = 3600;
  o->backdate = 30;
}

/* Issue name.pem / name_key.pem with o; 0 on success. */
static int issue(const fx_t *f, const char *name, const zt_issue_svid_opts_t *o,
                 zt_issue_result_t *res) {
  char cert[600], key[600];
  zt_error_t err;
  snprintf(cert, sizeof(cert), "%s/%s.pem", f->dir, name);
  snprintf(key, sizeof(key), "%s/%s_key.pem", f->dir, name);
  memset(&err, 0, sizeof(err));
  if (zt_issue_svid(o, cert, key, res, &err) != 0) {
    fprintf(stderr, "  issue %s: %s\n", name, err.msg);
    return -1;
  }
  return 0;
}

/* Read file's first certificate and check it: the verdict of zt_svid_check_leaf, or
 * -2 when the file could not be read. */
static int check_file(const char *file, zt_svid_info_t *info, const char **reason) {
  unsigned char *pem = NULL, *der = NULL;
  size_t pem_len, der_len;
  int rc;
  if (zt_pem_read_file(file, &pem, &pem_len, NULL) != 0) return -2;
  rc = zt_pem_first_cert_der(pem, pem_len, &der, &der_len);
  free(pem);
  if (rc != 0) return -2;
  rc = zt_svid_check_leaf(der, der_len, info, reason);
  free(der);
  return rc;
}

static int check_issued(const fx_t *f, const char *name, zt_svid_info_t *info,
                        const char **reason) {
  char cert[600];
  snprintf(cert, sizeof(cert), "%s/%s.pem", f->dir, name);
  return check_file(cert, info, reason);
}

static zt_svid_info_t info_; /* 2 KiB: keep it off the test's stack frame */

FX_TEST(good_svid_passes_with_its_id) {
  zt_issue_svid_opts_t o;
  zt_issue_result_t res;
  const char *reason = NULL;
  svid_opts(f, &o);
  ZT_ASSERT(issue(f, "good", &o, &res) == 0);
  ZT_ASSERT(check_issued(f, "good", &info_, &reason) == 0);
  ZT_ASSERT_STR_EQ(info_.id, "spiffe://example.org/a");
  ZT_ASSERT(info_.id_len == strlen("spiffe://example.org/a"));
  ZT_ASSERT(info_.spiffe.td_len == 11 && memcmp(info_.spiffe.td, "example.org", 11) == 0);
  ZT_ASSERT(info_.spiffe.path_len == 2 && memcmp(info_.spiffe.path, "/a", 2) == 0);
  ZT_ASSERT(info_.spiffe.td == info_.id + 9); /* points into the copy */
  ZT_ASSERT(info_.is_ca == 0);
}

FX_TEST(good_svid_dates_follow_ttl_and_backdate) {
  zt_issue_svid_opts_t o;
  zt_issue_result_t res;
  svid_opts(f, &o);
  ZT_ASSERT(issue(f, "good", &o, &res) == 0);
  ZT_ASSERT(check_issued(f, "good", &info_, NULL) == 0);
  ZT_ASSERT(info_.not_before == f->now - 30);
  ZT_ASSERT(info_.not_after == f->now - 30 + 3600);
  ZT_ASSERT(res.not_before == info_.not_before && res.not_after == info_.not_after);
  /* and against the real clock, not only our own arithmetic */
  ZT_ASSERT(info_.not_after > (int64_t)time(NULL) + 3600 - 120);
  ZT_ASSERT(info_.not_after < (int64_t)time(NULL) + 3600 + 5);
}

FX_TEST(serial_is_16_random_positive_bytes_in_hex) {
  zt_issue_svid_opts_t o;
  zt_issue_result_t r1, r2;
  size_t i;
  svid_opts(f, &o);
  ZT_ASSERT(issue(f, "one", &o, &r1) == 0);
  ZT_ASSERT(issue(f, "two", &o, &r2) == 0);
  ZT_ASSERT(check_issued(f, "one", &info_, NULL) == 0);
  ZT_ASSERT_STR_EQ(info_.serial, r1.serial);
  ZT_ASSERT(strlen(r1.serial) == 32);
  ZT_ASSERT(r1.serial[0] <= '7'); /* top bit clear: positive without a pad byte */
  for (i = 0; i < 32; i++)
    ZT_ASSERT((r1.serial[i] >= '0' && r1.serial[i] <= '9') ||
              (r1.serial[i] >= 'a' && r1.serial[i] <= 'f'));
  ZT_ASSERT(strcmp(r1.serial, r2.serial) != 0);
}

FX_TEST(dns_sans_do_not_count_as_uri_sans) {
  zt_issue_svid_opts_t o;
  const char *dns[] = {"api.example.org", "localhost"};
  svid_opts(f, &o);
  o.dns = dns;
  o.n_dns = 2;
  ZT_ASSERT(issue(f, "dns", &o, NULL) == 0);
  ZT_ASSERT(check_issued(f, "dns", &info_, NULL) == 0);
  ZT_ASSERT_STR_EQ(info_.id, "spiffe://example.org/a");
}

FX_TEST(leaf_without_uri_san_is_rejected) {
  zt_issue_svid_opts_t o;
  const char *reason = NULL;
  const char *dns[] = {"api.example.org"};
  svid_opts(f, &o);
  o.no_uri = 1;
  o.dns = dns;
  o.n_dns = 1;
  ZT_ASSERT(issue(f, "nouri", &o, NULL) == 0);
  ZT_ASSERT(check_issued(f, "nouri", &info_, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "no_uri_san");
  ZT_ASSERT(info_.id[0] == '\0' && info_.id_len == 0);
  ZT_ASSERT(info_.not_after == f->now - 30 + 3600); /* still reported for logs */
}

FX_TEST(leaf_with_two_uri_sans_is_rejected) {
  zt_issue_svid_opts_t o;
  const char *reason = NULL;
  const char *extra[] = {"spiffe://example.org/b"};
  svid_opts(f, &o);
  o.extra_uris = extra;
  o.n_extra_uris = 1;
  ZT_ASSERT(issue(f, "two", &o, NULL) == 0);
  ZT_ASSERT(check_issued(f, "two", &info_, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "multiple_uri_sans");
}

FX_TEST(leaf_with_spiffe_and_https_uri_is_rejected) {
  zt_issue_svid_opts_t o;
  const char *reason = NULL;
  const char *extra[] = {"https://example.org/x"};
  svid_opts(f, &o);
  o.extra_uris = extra;
  o.n_extra_uris = 1;
  ZT_ASSERT(issue(f, "mixed", &o, NULL) == 0);
  ZT_ASSERT(check_issued(f, "mixed", &info_, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "multiple_uri_sans");
}

FX_TEST(uppercase_trust_domain_is_invalid_spiffe_id) {
  zt_issue_svid_opts_t o;
  const char *reason = NULL;
  const char *extra[] = {"spiffe://Example.org/x"};
  svid_opts(f, &o);
  o.no_uri = 1;
  o.extra_uris = extra;
  o.n_extra_uris = 1;
  ZT_ASSERT(issue(f, "upper", &o, NULL) == 0);
  ZT_ASSERT(check_issued(f, "upper", &info_, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "invalid_spiffe_id");
}

FX_TEST(non_spiffe_uri_is_invalid_spiffe_id) {
  zt_issue_svid_opts_t o;
  const char *reason = NULL;
  const char *extra[] = {"https://example.org/a"};
  svid_opts(f, &o);
  o.no_uri = 1;
  o.extra_uris = extra;
  o.n_extra_uris = 1;
  ZT_ASSERT(issue(f, "https", &o, NULL) == 0);
  ZT_ASSERT(check_issued(f, "https", &info_, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "invalid_spiffe_id");
}

FX_TEST(ca_certificate_as_leaf_is_rejected) {
  zt_issue_svid_opts_t o;
  const char *reason = NULL;
  svid_opts(f, &o);
  o.is_ca = 1;
  ZT_ASSERT(issue(f, "caleaf", &o, NULL) == 0);
  ZT_ASSERT(check_issued(f, "caleaf", &info_, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "leaf_is_ca");
  ZT_ASSERT(info_.is_ca == 1);
}

FX_TEST(trust_domain_ca_is_a_ca_with_its_uri) {
  zt_svid_info_t *info = &info_;
  const char *reason = NULL;
  ZT_ASSERT(check_file(f->ca_cert, info, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "leaf_is_ca"); /* one valid URI SAN, spiffe://example.org */
  ZT_ASSERT(info->is_ca == 1);
  ZT_ASSERT(info->not_after == f->now - 30 + ZT_ISSUE_CA_TTL_DEFAULT);
}

FX_TEST(expired_leaf_is_a_valid_svid_with_past_dates) {
  /* Dates are the TLS library's check; the leaf check must report them right. */
  zt_issue_svid_opts_t o;
  svid_opts(f, &o);
  o.backdate = 2 * 3600;
  o.ttl = 3600;
  ZT_ASSERT(issue(f, "expired", &o, NULL) == 0);
  ZT_ASSERT(check_issued(f, "expired", &info_, NULL) == 0);
  ZT_ASSERT(info_.not_before == f->now - 7200);
  ZT_ASSERT(info_.not_after == f->now - 3600);
  ZT_ASSERT(info_.not_after < (int64_t)time(NULL));
}

FX_TEST(dates_after_2049_use_generalized_time) {
  zt_issue_svid_opts_t o;
  zt_issue_ca_opts_t co;
  zt_issue_result_t res;
  char cert[600], key[600];
  zt_error_t err;
  /* A CA that lives past 2050: nothing outlives its issuer. */
  snprintf(cert, sizeof(cert), "%s/ca2050.pem", f->dir);
  snprintf(key, sizeof(key), "%s/ca2050_key.pem", f->dir);
  memset(&co, 0, sizeof(co));
  co.trust_domain = "example.org";
  co.now = f->now;
  co.ttl = (int64_t)40 * 366 * 86400;
  ZT_ASSERT(zt_issue_ca(&co, cert, key, NULL, &err) == 0);
  svid_opts(f, &o);
  o.ca_cert = cert;
  o.ca_key = key;
  o.now = 2524608000; /* 2050-01-01T00:00:00Z */
  o.backdate = 0;
  o.ttl = 86400;
  ZT_ASSERT(issue(f, "future", &o, &res) == 0);
  ZT_ASSERT(res.capped == 0);
  ZT_ASSERT(check_issued(f, "future", &info_, NULL) == 0);
  ZT_ASSERT(info_.not_before == 2524608000);
  ZT_ASSERT(info_.not_after == 2524608000 + 86400);
}

FX_TEST(issued_certificate_does_not_outlive_its_ca) {
  zt_issue_svid_opts_t o;
  zt_issue_result_t res;
  svid_opts(f, &o);
  o.ttl = (int64_t)2 * ZT_ISSUE_CA_TTL_DEFAULT;   /* the fixture CA lives a year */
  ZT_ASSERT(issue(f, "capped", &o, &res) == 0);
  ZT_ASSERT(res.capped == 1);
  ZT_ASSERT(check_issued(f, "capped", &info_, NULL) == 0);
  ZT_ASSERT(info_.not_after == f->now - ZT_ISSUE_BACKDATE_DEFAULT + ZT_ISSUE_CA_TTL_DEFAULT);
  ZT_ASSERT(res.not_after == info_.not_after);
}

FX_TEST(wolfssl_ctx_accepts_the_key_with_the_cert) {
  zt_issue_svid_opts_t o;
  WOLFSSL_CTX *ctx;
  char cert[600], key[600];
  int ok;
  svid_opts(f, &o);
  ZT_ASSERT(issue(f, "good", &o, NULL) == 0);
  path_of(f, "good.pem", cert, sizeof(cert));
  path_of(f, "good_key.pem", key, sizeof(key));
  ZT_ASSERT(wolfSSL_Init() == WOLFSSL_SUCCESS);
  ctx = wolfSSL_CTX_new(wolfTLS_server_method());
  ok = ctx != NULL &&
       wolfSSL_CTX_use_certificate_file(ctx, cert, WOLFSSL_FILETYPE_PEM) ==
           WOLFSSL_SUCCESS &&
       wolfSSL_CTX_use_PrivateKey_file(ctx, key, WOLFSSL_FILETYPE_PEM) ==
           WOLFSSL_SUCCESS &&
       wolfSSL_CTX_check_private_key(ctx) == WOLFSSL_SUCCESS &&
       wolfSSL_CTX_load_verify_locations(ctx, f->ca_cert, NULL) == WOLFSSL_SUCCESS;
  if (ctx != NULL) wolfSSL_CTX_free(ctx);
  wolfSSL_Cleanup();
  ZT_ASSERT(ok);
}

FX_TEST(wolfssl_ctx_rejects_another_key) {
  zt_issue_svid_opts_t o;
  WOLFSSL_CTX *ctx;
  char cert[600], key[600];
  int rc = WOLFSSL_SUCCESS;
  svid_opts(f, &o);
  ZT_ASSERT(issue(f, "a", &o, NULL) == 0);
  ZT_ASSERT(issue(f, "b", &o, NULL) == 0);
  path_of(f, "a.pem", cert, sizeof(cert));
  path_of(f, "b_key.pem", key, sizeof(key));
  ZT_ASSERT(wolfSSL_Init() == WOLFSSL_SUCCESS);
  ctx = wolfSSL_CTX_new(wolfTLS_server_method());
  if (ctx != NULL &&
      wolfSSL_CTX_use_certificate_file(ctx, cert, WOLFSSL_FILETYPE_PEM) ==
          WOLFSSL_SUCCESS &&
      wolfSSL_CTX_use_PrivateKey_file(ctx, key, WOLFSSL_FILETYPE_PEM) ==
          WOLFSSL_SUCCESS)
    rc = wolfSSL_CTX_check_private_key(ctx);
  if (ctx != NULL) wolfSSL_CTX_free(ctx);
  wolfSSL_Cleanup();
  ZT_ASSERT(ctx != NULL);
  ZT_ASSERT(rc != WOLFSSL_SUCCESS);
}

FX_TEST(key_files_are_private_and_pem) {
  zt_issue_svid_opts_t o;
  struct stat st;
  char key[600];
  unsigned char *pem = NULL;
  size_t len;
  int has_header;
  svid_opts(f, &o);
  ZT_ASSERT(issue(f, "good", &o, NULL) == 0);
  path_of(f, "good_key.pem", key, sizeof(key));
  ZT_ASSERT(stat(key, &st) == 0 && (st.st_mode & 0777) == 0600);
  ZT_ASSERT(stat(f->ca_key, &st) == 0 && (st.st_mode & 0777) == 0600);
  ZT_ASSERT(zt_pem_read_file(key, &pem, &len, NULL) == 0);
  has_header = strstr((char *)pem, "-----BEGIN EC PRIVATE KEY-----") != NULL;
  free(pem);
  ZT_ASSERT(has_header);
}

FX_TEST(issue_refuses_an_invalid_spiffe_id) {
  zt_issue_svid_opts_t o;
  zt_error_t err;
  char cert[600], key[600];
  svid_opts(f, &o);
  o.id = "spiffe://Example.org/x";
  path_of(f, "bad.pem", cert, sizeof(cert));
  path_of(f, "bad_key.pem", key, sizeof(key));
  ZT_ASSERT(zt_issue_svid(&o, cert, key, NULL, &err) == -1);
  ZT_ASSERT(strstr(err.msg, "invalid SPIFFE ID") != NULL);
  ZT_ASSERT(access(cert, F_OK) != 0 && access(key, F_OK) != 0);
}

FX_TEST(issue_refuses_a_relative_extra_uri) {
  zt_issue_svid_opts_t o;
  zt_error_t err;
  char cert[600], key[600];
  const char *extra[] = {"/just/a/path"};
  svid_opts(f, &o);
  o.extra_uris = extra;
  o.n_extra_uris = 1;
  path_of(f, "bad.pem", cert, sizeof(cert));
  path_of(f, "bad_key.pem", key, sizeof(key));
  ZT_ASSERT(zt_issue_svid(&o, cert, key, NULL, &err) == -1);
}

FX_TEST(issue_refuses_a_ca_key_that_does_not_match) {
  zt_issue_svid_opts_t o;
  zt_error_t err;
  char cert[600], key[600], other_key[600];
  svid_opts(f, &o);
  ZT_ASSERT(issue(f, "other", &o, NULL) == 0);
  path_of(f, "other_key.pem", other_key, sizeof(other_key));
  o.ca_key = other_key;
  path_of(f, "x.pem", cert, sizeof(cert));
  path_of(f, "x_key.pem", key, sizeof(key));
  ZT_ASSERT(zt_issue_svid(&o, cert, key, NULL, &err) == -1);
  ZT_ASSERT(strstr(err.msg, "does not match") != NULL);
}

FX_TEST(issue_refuses_a_leaf_as_issuer) {
  zt_issue_svid_opts_t o;
  zt_error_t err;
  char cert[600], key[600], lc[600], lk[600];
  svid_opts(f, &o);
  ZT_ASSERT(issue(f, "leaf", &o, NULL) == 0);
  path_of(f, "leaf.pem", lc, sizeof(lc));
  path_of(f, "leaf_key.pem", lk, sizeof(lk));
  o.ca_cert = lc;
  o.ca_key = lk;
  path_of(f, "x.pem", cert, sizeof(cert));
  path_of(f, "x_key.pem", key, sizeof(key));
  ZT_ASSERT(zt_issue_svid(&o, cert, key, NULL, &err) == -1);
  ZT_ASSERT(strstr(err.msg, "not a CA") != NULL);
}

FX_TEST(ca_refuses_an_invalid_trust_domain) {
  zt_issue_ca_opts_t o;
  zt_error_t err;
  char cert[600], key[600];
  memset(&o, 0, sizeof(o));
  o.trust_domain = "Example.org";
  o.now = f->now;
  o.ttl = 3600;
  path_of(f, "c.pem", cert, sizeof(cert));
  path_of(f, "c_key.pem", key, sizeof(key));
  ZT_ASSERT(zt_issue_ca(&o, cert, key, NULL, &err) == -1);
  ZT_ASSERT(access(cert, F_OK) != 0);
}

FX_TEST(first_cert_of_a_chain_file_is_the_leaf) {
  zt_issue_svid_opts_t o;
  char leaf[600], chain[600];
  unsigned char *a = NULL, *b = NULL;
  size_t alen, blen;
  FILE *fp;
  int wrote;
  svid_opts(f, &o);
  ZT_ASSERT(issue(f, "leaf", &o, NULL) == 0);
  path_of(f, "leaf.pem", leaf, sizeof(leaf));
  path_of(f, "chain.pem", chain, sizeof(chain));
  ZT_ASSERT(zt_pem_read_file(leaf, &a, &alen, NULL) == 0);
  ZT_ASSERT(zt_pem_read_file(f->ca_cert, &b, &blen, NULL) == 0 || (free(a), 0));
  fp = fopen(chain, "w");
  wrote = fp != NULL && fwrite(a, 1, alen, fp) == alen && fwrite(b, 1, blen, fp) == blen;
  if (fp != NULL) fclose(fp);
  free(a);
  free(b);
  ZT_ASSERT(wrote);
  ZT_ASSERT(check_file(chain, &info_, NULL) == 0);
  ZT_ASSERT_STR_EQ(info_.id, "spiffe://example.org/a");
}

ZT_TEST(garbage_is_malformed) {
  static const unsigned char junk[] = {0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x00};
  const char *reason = NULL;
  ZT_ASSERT(zt_svid_check_leaf(junk, sizeof(junk), &info_, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "malformed_certificate");
  reason = NULL;
  ZT_ASSERT(zt_svid_check_leaf(NULL, 0, NULL, &reason) == -1);
  ZT_ASSERT_STR_EQ(reason, "malformed_certificate");
}

FX_TEST(truncated_certificate_is_malformed) {
  unsigned char *pem = NULL, *der = NULL;
  size_t pem_len, der_len, cut;
  const char *reason = NULL;
  int bad = 1;
  ZT_ASSERT(zt_pem_read_file(f->ca_cert, &pem, &pem_len, NULL) == 0);
  ZT_ASSERT(zt_pem_first_cert_der(pem, pem_len, &der, &der_len) == 0 || (free(pem), 0));
  free(pem);
  for (cut = 1; cut < der_len; cut += 7)
    if (zt_svid_check_leaf(der, der_len - cut, NULL, &reason) != -1 ||
        strcmp(reason, "malformed_certificate") != 0)
      bad = 0;
  free(der);
  ZT_ASSERT(bad);
}

ZT_TEST(pem_helpers_report_missing_and_empty_input) {
  zt_error_t err;
  unsigned char *buf = (unsigned char *)"x";
  size_t len = 7;
  ZT_ASSERT(zt_pem_read_file("/nonexistent/zt.pem", &buf, &len, &err) == -1);
  ZT_ASSERT(buf == NULL && len == 0);
  ZT_ASSERT_STR_EQ(err.file, "/nonexistent/zt.pem");
  ZT_ASSERT(strstr(err.msg, "cannot open") != NULL);
  ZT_ASSERT(zt_pem_first_cert_der((const unsigned char *)"hello", 5, &buf, &len) == -1);
  ZT_ASSERT(buf == NULL);
}

ZT_TEST(pem_read_file_refuses_more_than_one_mib) {
  char dir[] = "/tmp/zt_test_big.XXXXXX", path[64];
  FILE *fp;
  unsigned char *buf = NULL;
  size_t len = 0;
  zt_error_t err;
  int rc_max, rc_over;
  ZT_ASSERT(mkdtemp(dir) != NULL);
  snprintf(path, sizeof(path), "%s/big", dir);
  fp = fopen(path, "w");
  if (fp != NULL) {
    ftruncate(fileno(fp), ZT_PEM_FILE_MAX);
    fclose(fp);
  }
  rc_max = zt_pem_read_file(path, &buf, &len, &err);
  if (rc_max == 0 && len != ZT_PEM_FILE_MAX) rc_max = -2;
  free(buf);
  buf = NULL;
  fp = fopen(path, "a");
  if (fp != NULL) {
    fputc('x', fp);
    fclose(fp);
  }
  rc_over = zt_pem_read_file(path, &buf, &len, &err);
  free(buf);
  unlink(path);
  rmdir(dir);
  ZT_ASSERT(rc_max == 0);
  ZT_ASSERT(rc_over == -1);
  ZT_ASSERT(strstr(err.msg, "larger than") != NULL);
}

ZT_TEST(every_reason_code_has_a_sentence) {
  static const char *codes[] = {
      "malformed_certificate", "no_uri_san",      "multiple_uri_sans",
      "invalid_spiffe_id",     "leaf_is_ca",      "no_client_cert",
      "unknown_ca",            "expired",         "not_yet_valid",
      "bad_signature",         "foreign_trust_domain", "server_id_not_expected",
      "tls_error"};
  size_t i;
  const char *unknown = zt_svid_reason_text("no_such_code");
  ZT_ASSERT(unknown != NULL);
  ZT_ASSERT(zt_svid_reason_text(NULL) != NULL);
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    const char *t = zt_svid_reason_text(codes[i]);
    ZT_ASSERT(t != NULL && t != unknown && strlen(t) > 10);
  }
}

ZT_TEST_MAIN(ZT_RUN(good_svid_passes_with_its_id),
             ZT_RUN(good_svid_dates_follow_ttl_and_backdate),
             ZT_RUN(serial_is_16_random_positive_bytes_in_hex),
             ZT_RUN(dns_sans_do_not_count_as_uri_sans),
             ZT_RUN(leaf_without_uri_san_is_rejected),
             ZT_RUN(leaf_with_two_uri_sans_is_rejected),
             ZT_RUN(leaf_with_spiffe_and_https_uri_is_rejected),
             ZT_RUN(uppercase_trust_domain_is_invalid_spiffe_id),
             ZT_RUN(non_spiffe_uri_is_invalid_spiffe_id),
             ZT_RUN(ca_certificate_as_leaf_is_rejected),
             ZT_RUN(trust_domain_ca_is_a_ca_with_its_uri),
             ZT_RUN(expired_leaf_is_a_valid_svid_with_past_dates),
             ZT_RUN(dates_after_2049_use_generalized_time),
             ZT_RUN(issued_certificate_does_not_outlive_its_ca),
             ZT_RUN(wolfssl_ctx_accepts_the_key_with_the_cert),
             ZT_RUN(wolfssl_ctx_rejects_another_key),
             ZT_RUN(key_files_are_private_and_pem),
             ZT_RUN(issue_refuses_an_invalid_spiffe_id),
             ZT_RUN(issue_refuses_a_relative_extra_uri),
             ZT_RUN(issue_refuses_a_ca_key_that_does_not_match),
             ZT_RUN(issue_refuses_a_leaf_as_issuer),
             ZT_RUN(ca_refuses_an_invalid_trust_domain),
             ZT_RUN(first_cert_of_a_chain_file_is_the_leaf),
             ZT_RUN(garbage_is_malformed),
             ZT_RUN(truncated_certificate_is_malformed),
             ZT_RUN(pem_helpers_report_missing_and_empty_input),
             ZT_RUN(pem_read_file_refuses_more_than_one_mib),
             ZT_RUN(every_reason_code_has_a_sentence))
