/* proxy/cmd_identity.c: `ztproxy identity ca|issue|show`, bootstrap a trust domain,
 * issue X.509-SVIDs and inspect them.
 *
 * A thin layer over identity/issue.h and identity/svid.h: it parses options
 * ("--opt value" or "--opt=value"), takes the clock, and reports. Exit codes: 0 done
 * or --help, 1 the work failed (reason on stderr), 2 usage error (one line on stderr).
 * --extra-uri, --no-uri, --is-ca, --key-type rsa1024, --sig sha1, --key-usage and
 * --no-digital-signature exist to make deliberately bad certificates for tests of the
 * verifier (the last four are not in --help).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* gmtime_r */
#endif

#include "cmd_identity.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bundle.h"
#include "issue.h"
#include "svid.h"
#include "zt_error.h"

#define MAX_LIST 64 /* --extra-uri / --dns occurrences */

static const char ca_help[] =
    "usage: ztproxy identity ca --trust-domain TD --cert OUT.pem --key OUT_key.pem "
    "[--ttl DUR]\n"
    "                           [--ca-cert PARENT.pem --ca-key PARENT_key.pem]\n"
    "\n"
    "Create a CA for trust domain TD: ECDSA P-256, CA:TRUE, URI SAN spiffe://TD.\n"
    "Self-signed (a root for the bundle), or with --ca-cert/--ca-key an intermediate\n"
    "signed by that CA; OUT.pem then holds the intermediate and its parent's chain.\n"
    "The key is written with mode 0600.\n"
    "\n"
    "  --trust-domain TD   trust domain name, e.g. example.org\n"
    "  --cert FILE         certificate output (PEM)\n"
    "  --key FILE          private key output (PEM, EC PRIVATE KEY)\n"
    "  --ttl DUR           lifetime (default 365d); an intermediate's ends no later\n"
    "                      than its parent's file\n"
    "  --ca-cert FILE      parent CA certificate: make an intermediate CA\n"
    "  --ca-key FILE       parent CA private key\n"
    "\n"
    "DUR is a number with a unit: ms, s, m, h or d (500ms, 10s, 5m, 1h, 30d).\n";

static const char issue_help[] =
    "usage: ztproxy identity issue --ca-cert CA.pem --ca-key CA_key.pem --id "
    "SPIFFE_ID\n"
    "                              --cert OUT.pem --key OUT_key.pem [options]\n"
    "\n"
    "Issue an X.509-SVID for SPIFFE_ID signed by the CA: ECDSA P-256, CA:FALSE,\n"
    "digitalSignature, serverAuth+clientAuth. The key is written with mode 0600.\n"
    "\n"
    "  --ca-cert FILE      issuing CA certificate (PEM; the first one is used)\n"
    "  --ca-key FILE       issuing CA private key (PEM)\n"
    "  --id SPIFFE_ID      the workload's SPIFFE ID (URI SAN)\n"
    "  --cert FILE         certificate output (PEM)\n"
    "  --key FILE          private key output (PEM, EC PRIVATE KEY)\n"
    "  --ttl DUR           lifetime from notBefore (default 1h), but never past\n"
    "                      the notAfter of a certificate in CA.pem\n"
    "  --backdate DUR      notBefore = now - DUR (default 30s); notAfter =\n"
    "                      notBefore + ttl, so --backdate 2h --ttl 1h is expired\n"
    "                      (without --backdate, a --ttl of 30s or less is refused)\n"
    "  --dns NAME          add a DNS SAN (repeatable)\n"
    "\n"
    "When CA.pem holds an intermediate CA (and its chain), OUT.pem gets the leaf\n"
    "followed by that chain, as identity.cert expects.\n"
    "\n"
    "Options that make deliberately invalid SVIDs, for tests:\n"
    "  --extra-uri URI     add another URI SAN, any absolute URI (repeatable)\n"
    "  --no-uri            leave the --id URI SAN out (--id is then optional)\n"
    "  --is-ca             make it a CA certificate (CA:TRUE, keyCertSign)\n"
    "\n"
    "DUR is a number with a unit: ms, s, m, h or d (500ms, 10s, 5m, 1h, 30d).\n";

static const char show_help[] =
    "usage: ztproxy identity show CERT.pem [--bundle BUNDLE.pem]\n"
    "\n"
    "Print the SPIFFE ID, trust domain, serial, validity, key type and chain of the\n"
    "X.509-SVID in CERT.pem (leaf first, then intermediates), and every X.509-SVID\n"
    "rule it passes or breaks. Exit 1 when it is not a valid SVID now (a rule broken,\n"
    "expired or not yet valid, or with --bundle: not verifying against it).\n"
    "Without --bundle, signatures are not checked.\n";

static const char revoke_help[] =
    "usage: ztproxy identity revoke --ca-cert CA.pem --ca-key CA_key.pem "
    "--serial HEX... --out CRL.pem\n"
    "                              [--ttl DUR]\n"
    "\n"
    "Write a CRL (v2, PEM \"X509 CRL\") signed by the CA that revokes each serial (as\n"
    "`identity show` prints them). With no --serial, an empty CRL. For identity.crl.\n"
    "\n"
    "  --ca-cert FILE      the CA that issued the revoked certificates\n"
    "  --ca-key FILE       its private key\n"
    "  --serial HEX        a serial to revoke (repeatable)\n"
    "  --out FILE          the CRL (PEM)\n"
    "  --ttl DUR           nextUpdate = now + DUR (default 7d)\n";

static const char identity_help[] =
    "usage: ztproxy identity ca|issue|show|revoke [options]\n"
    "\n"
    "  ca      create a CA for a trust domain (root, or intermediate)\n"
    "  issue   issue an X.509-SVID signed by a CA\n"
    "  show    print and check an X.509-SVID against every rule\n"
    "  revoke  write a CRL revoking serials\n"
    "\n"
    "Run `ztproxy identity COMMAND --help` for the options of each.\n";

static int usage(const char *cmd, const char *fmt, ...) ZT_PRINTF(2, 3);
static int usage(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "ztproxy identity%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (see --help)\n");
  return 2;
}

static int fail(const char *cmd, const zt_error_t *err) {
  char buf[1024];
  fprintf(stderr, "ztproxy identity %s: %s\n", cmd, zt_error_str(err, buf, sizeof(buf)));
  return 1;
}

/* notAfter counts from the backdated notBefore: a --ttl within the default backdate
 * would give a certificate that is expired when written. Asked for with --backdate,
 * it is what the caller wants (a test's expired SVID). */
static int born_expired(const char *cmd, const char *ttl_s) {
  return usage(cmd, "--ttl %s is not longer than the default --backdate %ds, so the "
               "certificate would be expired when written (give --backdate)", ttl_s,
               ZT_ISSUE_BACKDATE_DEFAULT);
}

static void say_capped(const char *not_after) {
  fprintf(stderr, "ztproxy identity: note: --ttl ends after the issuing CA expires: "
          "notAfter is the CA's, %s\n", not_after);
}

/* "500ms", "10s", "5m", "1h", "30d" -> milliseconds. */
static int parse_duration(const char *s, uint64_t *ms) {
  uint64_t v = 0, mul;
  const char *p = s;
  if (*p < '0' || *p > '9') return -1;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > (UINT64_MAX - 9) / 10) return -1;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (strcmp(p, "ms") == 0) mul = 1;
  else if (strcmp(p, "s") == 0) mul = 1000;
  else if (strcmp(p, "m") == 0) mul = 60000;
  else if (strcmp(p, "h") == 0) mul = 3600000;
  else if (strcmp(p, "d") == 0) mul = 86400000;
  else return -1;
  /* a century is plenty, and keeps every later sum far from overflow */
  if (v > (uint64_t)100 * 366 * 86400000 / mul) return -1;
  *ms = v * mul;
  return 0;
}

static void rfc3339(int64_t t, char out[32]) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (gmtime_r(&tt, &tm) == NULL) {
    snprintf(out, 32, "@%" PRId64, t);
    return;
  }
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One option parser for both subcommands. An option takes a value unless it is a
 * flag; "--opt=value" works too. */
typedef struct {
  const char *name;
  int is_flag;
  const char **value;       /* single value (last one wins) */
  int *flag;
  const char **list;        /* repeatable: appended here */
  size_t *list_n;
} opt_t;

static int parse_opts(const char *cmd, int argc, char **argv, opt_t *opts,
                      int *help) {
  int i;
  *help = 0;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *eq, *val = NULL;
    size_t nlen;
    opt_t *o;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      *help = 1;
      return 0;
    }
    if (strncmp(a, "--", 2) != 0) return usage(cmd, "unexpected argument \"%s\"", a);
    eq = strchr(a, '=');
    nlen = eq ? (size_t)(eq - a) : strlen(a);
    for (o = opts; o->name != NULL; o++)
      if (strlen(o->name) == nlen && strncmp(o->name, a, nlen) == 0) break;
    if (o->name == NULL) return usage(cmd, "unknown option \"%s\"", a);
    if (o->is_flag) {
      if (eq) return usage(cmd, "option %s takes no value", o->name);
      *o->flag = 1;
      continue;
    }
    if (eq) {
      val = eq + 1;
    } else {
      if (i + 1 >= argc) return usage(cmd, "option %s needs a value", o->name);
      val = argv[++i];
    }
    if (o->list) {
      if (*o->list_n >= MAX_LIST) return usage(cmd, "too many %s options", o->name);
      o->list[(*o->list_n)++] = val;
    } else {
      *o->value = val;
    }
  }
  return 0;
}

static int cmd_ca(int argc, char **argv) {
  const char *td = NULL, *cert = NULL, *key = NULL, *ttl_s = NULL;
  const char *ca_cert = NULL, *ca_key = NULL, *key_type = NULL, *sig = NULL;
  const char *key_usage = NULL, *back_s = NULL;
  opt_t opts[] = {
      {"--trust-domain", 0, &td, NULL, NULL, NULL},
      {"--cert", 0, &cert, NULL, NULL, NULL},
      {"--key", 0, &key, NULL, NULL, NULL},
      {"--ttl", 0, &ttl_s, NULL, NULL, NULL},
      {"--ca-cert", 0, &ca_cert, NULL, NULL, NULL},
      {"--ca-key", 0, &ca_key, NULL, NULL, NULL},
      /* test options, not in --help */
      {"--backdate", 0, &back_s, NULL, NULL, NULL},
      {"--key-type", 0, &key_type, NULL, NULL, NULL},
      {"--sig", 0, &sig, NULL, NULL, NULL},
      {"--key-usage", 0, &key_usage, NULL, NULL, NULL},
      {NULL, 0, NULL, NULL, NULL, NULL},
  };
  zt_issue_ca_opts_t o;
  zt_issue_result_t res;
  zt_error_t err;
  uint64_t ms;
  int help, rc;
  char exp[32];

  rc = parse_opts("ca", argc, argv, opts, &help);
  if (rc != 0) return rc;
  if (help) {
    fputs(ca_help, stdout);
    return 0;
  }
  if (td == NULL) return usage("ca", "missing %s", "--trust-domain");
  if (cert == NULL) return usage("ca", "missing %s", "--cert");
  if (key == NULL) return usage("ca", "missing %s", "--key");
  if ((ca_cert == NULL) != (ca_key == NULL))
    return usage("ca", "--ca-cert and --ca-key go together");
  memset(&o, 0, sizeof(o));
  o.trust_domain = td;
  o.ca_cert = ca_cert;
  o.ca_key = ca_key;
  o.key_type = key_type;
  o.sig = sig;
  o.key_usage = key_usage;
  o.now = (int64_t)time(NULL);
  o.ttl = ZT_ISSUE_CA_TTL_DEFAULT;
  o.backdate = ZT_ISSUE_BACKDATE_DEFAULT;
  if (ttl_s != NULL) {
    if (parse_duration(ttl_s, &ms) != 0 || ms == 0)
      return usage("ca", "invalid --ttl \"%s\" (a positive DUR like 30d)", ttl_s);
    o.ttl = (int64_t)((ms + 999) / 1000);
  }
  if (back_s != NULL) {
    if (parse_duration(back_s, &ms) != 0)
      return usage("ca", "invalid --backdate \"%s\" (a DUR like 30s)", back_s);
    o.backdate = (int64_t)((ms + 999) / 1000);
  } else if (o.ttl <= o.backdate) {
    return born_expired("ca", ttl_s);
  }
  memset(&err, 0, sizeof(err));
  if (zt_issue_ca(&o, cert, key, &res, &err) != 0) return fail("ca", &err);
  rfc3339(res.not_after, exp);
  if (res.capped) say_capped(exp);
  printf("created %sCA spiffe://%s (serial %s, expires %s) -> %s, %s\n",
         ca_cert ? "intermediate " : "", td, res.serial, exp, cert, key);
  return 0;
}

static int cmd_issue(int argc, char **argv) {
  const char *ca_cert = NULL, *ca_key = NULL, *id = NULL, *cert = NULL, *key = NULL;
  const char *ttl_s = NULL, *back_s = NULL;
  const char *extra[MAX_LIST], *dns[MAX_LIST];
  size_t n_extra = 0, n_dns = 0;
  int no_uri = 0, is_ca = 0, no_ds = 0;
  const char *key_type = NULL, *sig = NULL, *key_usage = NULL;
  opt_t opts[] = {
      {"--ca-cert", 0, &ca_cert, NULL, NULL, NULL},
      {"--ca-key", 0, &ca_key, NULL, NULL, NULL},
      {"--id", 0, &id, NULL, NULL, NULL},
      {"--cert", 0, &cert, NULL, NULL, NULL},
      {"--key", 0, &key, NULL, NULL, NULL},
      {"--ttl", 0, &ttl_s, NULL, NULL, NULL},
      {"--backdate", 0, &back_s, NULL, NULL, NULL},
      {"--extra-uri", 0, NULL, NULL, extra, &n_extra},
      {"--dns", 0, NULL, NULL, dns, &n_dns},
      {"--no-uri", 1, NULL, &no_uri, NULL, NULL},
      {"--is-ca", 1, NULL, &is_ca, NULL, NULL},
      /* test options, not in --help */
      {"--key-type", 0, &key_type, NULL, NULL, NULL},
      {"--sig", 0, &sig, NULL, NULL, NULL},
      {"--key-usage", 0, &key_usage, NULL, NULL, NULL},
      {"--no-digital-signature", 1, NULL, &no_ds, NULL, NULL},
      {NULL, 0, NULL, NULL, NULL, NULL},
  };
  zt_issue_svid_opts_t o;
  zt_issue_result_t res;
  zt_error_t err;
  uint64_t ms;
  int help, rc;
  char exp[32];

  rc = parse_opts("issue", argc, argv, opts, &help);
  if (rc != 0) return rc;
  if (help) {
    fputs(issue_help, stdout);
    return 0;
  }
  if (ca_cert == NULL) return usage("issue", "missing %s", "--ca-cert");
  if (ca_key == NULL) return usage("issue", "missing %s", "--ca-key");
  if (id == NULL && !no_uri) return usage("issue", "missing %s", "--id");
  if (cert == NULL) return usage("issue", "missing %s", "--cert");
  if (key == NULL) return usage("issue", "missing %s", "--key");

  memset(&o, 0, sizeof(o));
  o.ca_cert = ca_cert;
  o.ca_key = ca_key;
  o.id = id;
  o.no_uri = no_uri;
  o.extra_uris = extra;
  o.n_extra_uris = n_extra;
  o.dns = dns;
  o.n_dns = n_dns;
  o.is_ca = is_ca;
  o.key_type = key_type;
  o.sig = sig;
  o.key_usage = key_usage;
  if (no_ds && key_usage == NULL) o.key_usage = "keyEncipherment";
  o.now = (int64_t)time(NULL);
  o.ttl = ZT_ISSUE_SVID_TTL_DEFAULT;
  o.backdate = ZT_ISSUE_BACKDATE_DEFAULT;
  if (ttl_s != NULL) {
    if (parse_duration(ttl_s, &ms) != 0 || ms == 0)
      return usage("issue", "invalid --ttl \"%s\" (a positive DUR like 1h)", ttl_s);
    o.ttl = (int64_t)((ms + 999) / 1000);
  }
  if (back_s != NULL) {
    if (parse_duration(back_s, &ms) != 0)
      return usage("issue", "invalid --backdate \"%s\" (a DUR like 30s)", back_s);
    o.backdate = (int64_t)((ms + 999) / 1000);
  } else if (o.ttl <= o.backdate) {
    return born_expired("issue", ttl_s);
  }
  memset(&err, 0, sizeof(err));
  if (zt_issue_svid(&o, cert, key, &res, &err) != 0) return fail("issue", &err);
  rfc3339(res.not_after, exp);
  if (res.capped) say_capped(exp);
  printf("issued %s (serial %s, expires %s) -> %s, %s\n",
         no_uri ? "a certificate without the ID URI SAN" : id, res.serial, exp, cert,
         key);
  return 0;
}

static void show_cert(const char *label, const zt_svid_info_t *in, int64_t now) {
  char nb[32], na[32];
  rfc3339(in->not_before, nb);
  rfc3339(in->not_after, na);
  printf("%s serial %s, %s %d-bit key, %s, %s%s%s, valid %s .. %s%s\n", label,
         in->serial, in->key_type, in->key_bits, in->sig_alg, in->is_ca ? "CA" : "not CA",
         in->id[0] ? ", " : "", in->id, nb, na,
         now >= in->not_after ? " (expired)"
                              : now < in->not_before ? " (not yet valid)" : "");
}

static void show_rules(const char *indent, const zt_svid_rules_t *r) {
  unsigned bit;
  for (bit = 1; bit <= ZT_SVID_RULE_SIGNER_CA; bit <<= 1) {
    if (!(r->checked & bit)) continue;
    printf("%s%-5s %s\n", indent, (r->broken & bit) ? "FAIL" : "ok", zt_svid_rule_name(bit));
  }
}

static int cmd_show(int argc, char **argv) {
  const char *file = NULL, *bundle = NULL;
  unsigned char *pem = NULL;
  size_t pem_len, i;
  zt_der_list_t chain;
  zt_svid_info_t *info = NULL, *ci = NULL;
  zt_svid_rules_t rules;
  zt_error_t err;
  const char *reason = NULL, *why = NULL, *first;
  int64_t now = (int64_t)time(NULL);
  int rc = 1, a;

  for (a = 1; a < argc; a++) {
    if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
      fputs(show_help, stdout);
      return 0;
    }
    if (strcmp(argv[a], "--bundle") == 0 && a + 1 < argc) {
      bundle = argv[++a];
    } else if (strncmp(argv[a], "--bundle=", 9) == 0) {
      bundle = argv[a] + 9;
    } else if (argv[a][0] == '-' || file != NULL) {
      return usage("show", "expected one certificate file (and --bundle FILE)");
    } else {
      file = argv[a];
    }
  }
  if (file == NULL) return usage("show", "expected one certificate file");
  memset(&err, 0, sizeof(err));
  if (zt_pem_read_file(file, &pem, &pem_len, &err) != 0) return fail("show", &err);
  if (zt_pem_cert_list(pem, pem_len, 0, &chain, &why) != 0) {
    free(pem);
    zt_error_set(&err, file, 0, 0, "%s", why);
    return fail("show", &err);
  }
  free(pem);
  info = malloc(sizeof(*info));
  ci = malloc(sizeof(*ci));
  if (info == NULL || ci == NULL) {
    zt_error_set(&err, NULL, 0, 0, "out of memory");
    rc = fail("show", &err);
    goto done;
  }
  printf("file:         %s\n", file);
  first = zt_svid_rules(chain.der[0], chain.len[0], 1, info, &rules);
  if (first != NULL && strcmp(first, ZT_SVID_MALFORMED) == 0) {
    printf("verdict:      %s (%s)\n", first, zt_svid_reason_text(first));
    goto done;
  }
  reason = first;
  {
    char nb[32], na[32];
    rfc3339(info->not_before, nb);
    rfc3339(info->not_after, na);
    printf("spiffe id:    %s\n", info->id[0] ? info->id : "(none)");
    if (info->id[0])
      printf("trust domain: %.*s\n", (int)info->spiffe.td_len, info->spiffe.td);
    printf("serial:       %s\n", info->serial);
    printf("not before:   %s%s\n", nb, now < info->not_before ? " (not yet valid)" : "");
    printf("not after:    %s%s\n", na, now >= info->not_after ? " (expired)" : "");
    printf("key:          %s (%d bits)\n", info->key_type, info->key_bits);
    printf("signature:    %s\n", info->sig_alg);
    printf("ca:           %s\n", info->is_ca ? "yes" : "no");
    printf("chain:        %zu certificate%s (leaf%s)\n", chain.n, chain.n == 1 ? "" : "s",
           chain.n > 1 ? " + intermediates" : " only");
  }
  show_cert("  [0] leaf:", info, now);
  for (i = 1; i < chain.n; i++) {
    char label[48];
    zt_svid_rules(chain.der[i], chain.len[i], 0, ci, NULL);
    snprintf(label, sizeof(label), "  [%zu] signer:", i);
    show_cert(label, ci, now);
  }
  printf("rules (leaf):\n");
  show_rules("  ", &rules);
  for (i = 1; i < chain.n; i++) {
    zt_svid_rules_t r;
    const char *w = zt_svid_rules(chain.der[i], chain.len[i], 0, ci, &r);
    printf("rules (signer [%zu]):\n", i);
    show_rules("  ", &r);
    if (reason == NULL) reason = w;
  }
  if (chain.n > ZT_SVID_CHAIN_MAX && reason == NULL) reason = ZT_SVID_CHAIN_TOO_LONG;
  if (reason == NULL && now < info->not_before) reason = "not_yet_valid";
  if (reason == NULL && now >= info->not_after) reason = "expired";
  if (reason == NULL && bundle != NULL) {
    zt_bundle_set_t *bs = zt_bundle_set_new();
    char td[ZT_TRUST_DOMAIN_MAX + 1];
    memcpy(td, info->spiffe.td, info->spiffe.td_len);
    td[info->spiffe.td_len] = '\0';
    if (bs == NULL || zt_bundle_set_add_file(bs, td, bundle, &err) != 0) {
      zt_bundle_set_free(bs);
      rc = fail("show", &err);
      goto done;
    }
    if (zt_bundle_set_verify(bs, (const unsigned char *const *)chain.der, chain.len,
                             chain.n, now, NULL, &why) != 0)
      reason = why;
    printf("bundle:       %s: %s\n", bundle, reason ? "does not verify" : "verifies");
    zt_bundle_set_free(bs);
  }
  if (reason == NULL) {
    printf("verdict:      ok (valid X.509-SVID%s)\n",
           bundle ? "" : "; signatures not checked without --bundle");
    rc = 0;
  } else {
    printf("verdict:      %s (%s)\n", reason, zt_svid_reason_text(reason));
  }

done:
  free(info);
  free(ci);
  zt_der_list_free(&chain);
  return rc;
}

static int cmd_revoke(int argc, char **argv) {
  const char *ca_cert = NULL, *ca_key = NULL, *out = NULL, *ttl_s = NULL;
  const char *serials[MAX_LIST];
  size_t n_serials = 0;
  opt_t opts[] = {
      {"--ca-cert", 0, &ca_cert, NULL, NULL, NULL},
      {"--ca-key", 0, &ca_key, NULL, NULL, NULL},
      {"--out", 0, &out, NULL, NULL, NULL},
      {"--ttl", 0, &ttl_s, NULL, NULL, NULL},
      {"--serial", 0, NULL, NULL, serials, &n_serials},
      {NULL, 0, NULL, NULL, NULL, NULL},
  };
  zt_issue_crl_opts_t o;
  zt_error_t err;
  uint64_t ms;
  int help, rc;

  rc = parse_opts("revoke", argc, argv, opts, &help);
  if (rc != 0) return rc;
  if (help) {
    fputs(revoke_help, stdout);
    return 0;
  }
  if (ca_cert == NULL) return usage("revoke", "missing %s", "--ca-cert");
  if (ca_key == NULL) return usage("revoke", "missing %s", "--ca-key");
  if (out == NULL) return usage("revoke", "missing %s", "--out");
  memset(&o, 0, sizeof(o));
  o.ca_cert = ca_cert;
  o.ca_key = ca_key;
  o.serials = serials;
  o.n_serials = n_serials;
  o.now = (int64_t)time(NULL);
  o.ttl = 7 * 86400;
  if (ttl_s != NULL) {
    if (parse_duration(ttl_s, &ms) != 0 || ms < 1000)
      return usage("revoke", "invalid --ttl \"%s\" (a DUR of 1s or more)", ttl_s);
    o.ttl = (int64_t)(ms / 1000);
  }
  memset(&err, 0, sizeof(err));
  if (zt_issue_crl(&o, out, &err) != 0) return fail("revoke", &err);
  printf("wrote CRL revoking %zu serial%s -> %s\n", n_serials, n_serials == 1 ? "" : "s",
         out);
  return 0;
}

int zt_cmd_identity(int argc, char **argv) {
  if (argc < 2) return usage(NULL, "missing command: ca, issue, show or revoke");
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(identity_help, stdout);
    return 0;
  }
  if (strcmp(argv[1], "ca") == 0) return cmd_ca(argc - 1, argv + 1);
  if (strcmp(argv[1], "issue") == 0) return cmd_issue(argc - 1, argv + 1);
  if (strcmp(argv[1], "show") == 0) return cmd_show(argc - 1, argv + 1);
  if (strcmp(argv[1], "revoke") == 0) return cmd_revoke(argc - 1, argv + 1);
  return usage(NULL, "unknown command \"%s\" (ca, issue, show or revoke)", argv[1]);
}
