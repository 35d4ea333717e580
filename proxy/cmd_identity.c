/* proxy/cmd_identity.c: `ztproxy identity ca|issue|show`, bootstrap a trust domain,
 * issue X.509-SVIDs and inspect them.
 *
 * A thin layer over identity/issue.h and identity/svid.h: it parses options
 * ("--opt value" or "--opt=value"), takes the clock, and reports. Exit codes: 0 done
 * or --help, 1 the work failed (reason on stderr), 2 usage error (one line on stderr).
 * --extra-uri, --no-uri and --is-ca exist to make deliberately bad certificates for
 * tests of the verifier.
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

#include "issue.h"
#include "svid.h"
#include "zt_error.h"

#define MAX_LIST 64 /* --extra-uri / --dns occurrences */

static const char ca_help[] =
    "usage: ztproxy identity ca --trust-domain TD --cert OUT.pem --key OUT_key.pem "
    "[--ttl DUR]\n"
    "\n"
    "Create a self-signed CA for trust domain TD: ECDSA P-256, CA:TRUE, URI SAN\n"
    "spiffe://TD. The key is written with mode 0600.\n"
    "\n"
    "  --trust-domain TD   trust domain name, e.g. example.org\n"
    "  --cert FILE         certificate output (PEM)\n"
    "  --key FILE          private key output (PEM, EC PRIVATE KEY)\n"
    "  --ttl DUR           lifetime (default 365d)\n"
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
    "  --ttl DUR           lifetime from notBefore (default 1h)\n"
    "  --backdate DUR      notBefore = now - DUR (default 30s); notAfter =\n"
    "                      notBefore + ttl, so --backdate 2h --ttl 1h is expired\n"
    "  --dns NAME          add a DNS SAN (repeatable)\n"
    "\n"
    "Options that make deliberately invalid SVIDs, for tests:\n"
    "  --extra-uri URI     add another URI SAN, any absolute URI (repeatable)\n"
    "  --no-uri            leave the --id URI SAN out (--id is then optional)\n"
    "  --is-ca             make it a CA certificate (CA:TRUE, keyCertSign)\n"
    "\n"
    "DUR is a number with a unit: ms, s, m, h or d (500ms, 10s, 5m, 1h, 30d).\n";

static const char show_help[] =
    "usage: ztproxy identity show CERT.pem\n"
    "\n"
    "Print the SPIFFE ID, serial and validity of the first certificate in CERT.pem\n"
    "and whether it is an acceptable X.509-SVID leaf (exit 1 when it is not).\n"
    "Signatures and the chain are not checked.\n";

static const char identity_help[] =
    "usage: ztproxy identity ca|issue|show [options]\n"
    "\n"
    "  ca      create a self-signed CA for a trust domain\n"
    "  issue   issue an X.509-SVID signed by a CA\n"
    "  show    print and check a certificate's SPIFFE identity\n"
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
  opt_t opts[] = {
      {"--trust-domain", 0, &td, NULL, NULL, NULL},
      {"--cert", 0, &cert, NULL, NULL, NULL},
      {"--key", 0, &key, NULL, NULL, NULL},
      {"--ttl", 0, &ttl_s, NULL, NULL, NULL},
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
  memset(&o, 0, sizeof(o));
  o.trust_domain = td;
  o.now = (int64_t)time(NULL);
  o.ttl = ZT_ISSUE_CA_TTL_DEFAULT;
  o.backdate = ZT_ISSUE_BACKDATE_DEFAULT;
  if (ttl_s != NULL) {
    if (parse_duration(ttl_s, &ms) != 0 || ms == 0)
      return usage("ca", "invalid --ttl \"%s\" (a positive DUR like 30d)", ttl_s);
    o.ttl = (int64_t)((ms + 999) / 1000);
  }
  memset(&err, 0, sizeof(err));
  if (zt_issue_ca(&o, cert, key, &res, &err) != 0) return fail("ca", &err);
  rfc3339(res.not_after, exp);
  printf("created CA spiffe://%s (serial %s, expires %s) -> %s, %s\n", td, res.serial,
         exp, cert, key);
  return 0;
}

static int cmd_issue(int argc, char **argv) {
  const char *ca_cert = NULL, *ca_key = NULL, *id = NULL, *cert = NULL, *key = NULL;
  const char *ttl_s = NULL, *back_s = NULL;
  const char *extra[MAX_LIST], *dns[MAX_LIST];
  size_t n_extra = 0, n_dns = 0;
  int no_uri = 0, is_ca = 0;
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
  }
  memset(&err, 0, sizeof(err));
  if (zt_issue_svid(&o, cert, key, &res, &err) != 0) return fail("issue", &err);
  rfc3339(res.not_after, exp);
  printf("issued %s (serial %s, expires %s) -> %s, %s\n",
         no_uri ? "a certificate without the ID URI SAN" : id, res.serial, exp, cert,
         key);
  return 0;
}

static int cmd_show(int argc, char **argv) {
  unsigned char *pem = NULL, *der = NULL;
  size_t pem_len, der_len;
  zt_svid_info_t *info;
  zt_error_t err;
  const char *reason = NULL;
  char nb[32], na[32];
  int64_t now;
  int ok, rc;

  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(show_help, stdout);
    return 0;
  }
  if (argc != 2 || argv[1][0] == '-')
    return usage("show", "expected one certificate file");
  memset(&err, 0, sizeof(err));
  if (zt_pem_read_file(argv[1], &pem, &pem_len, &err) != 0) return fail("show", &err);
  if (zt_pem_first_cert_der(pem, pem_len, &der, &der_len) != 0) {
    free(pem);
    zt_error_set(&err, argv[1], 0, 0, "no PEM certificate in the file");
    return fail("show", &err);
  }
  free(pem);
  info = malloc(sizeof(*info));
  if (info == NULL) {
    free(der);
    zt_error_set(&err, NULL, 0, 0, "out of memory");
    return fail("show", &err);
  }
  ok = zt_svid_check_leaf(der, der_len, info, &reason) == 0;
  free(der);
  if (!ok && strcmp(reason, ZT_SVID_MALFORMED) == 0) {
    printf("file:       %s\nverdict:    %s (%s)\n", argv[1], reason,
           zt_svid_reason_text(reason));
    free(info);
    return 1;
  }
  rfc3339(info->not_before, nb);
  rfc3339(info->not_after, na);
  printf("file:       %s\n", argv[1]);
  if (ok) printf("spiffe id:  %s\n", info->id);
  now = (int64_t)time(NULL);
  printf("serial:     %s\nnot before: %s%s\nnot after:  %s%s\nca:         %s\n",
         info->serial, nb, now < info->not_before ? " (not yet valid)" : "", na,
         now >= info->not_after ? " (expired)" : "", info->is_ca ? "yes" : "no");
  if (ok) {
    printf("verdict:    ok (X.509-SVID leaf; chain not checked)\n");
    rc = 0;
  } else {
    printf("verdict:    %s (%s)\n", reason, zt_svid_reason_text(reason));
    rc = 1;
  }
  free(info);
  return rc;
}

int zt_cmd_identity(int argc, char **argv) {
  if (argc < 2) return usage(NULL, "missing command: ca, issue or show");
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(identity_help, stdout);
    return 0;
  }
  if (strcmp(argv[1], "ca") == 0) return cmd_ca(argc - 1, argv + 1);
  if (strcmp(argv[1], "issue") == 0) return cmd_issue(argc - 1, argv + 1);
  if (strcmp(argv[1], "show") == 0) return cmd_show(argc - 1, argv + 1);
  return usage(NULL, "unknown command \"%s\" (ca, issue or show)", argv[1]);
}
