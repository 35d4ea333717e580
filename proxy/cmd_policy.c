/* proxy/cmd_policy.c: `ztproxy policy check|explain|test`, the operator's tools for a
 * policy file, offline.
 *
 * A thin layer over policy/policy.h: check loads and lints, explain decides one request
 * and shows every rule's verdict in evaluation order, test decides a table of requests
 * from a YAML file and compares. Options are "--opt value" or "--opt=value". Nothing
 * here counts hits (zt_policy_decide_nocount). Exit codes are in cmd_policy.h.
 */
#include "cmd_policy.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "spiffe.h"
#include "zt_error.h"
#include "zt_yaml.h"

#define MAX_TDS 64 /* --trust-domain occurrences */

static const char policy_help[] =
    "usage: ztproxy policy check|explain|test ...\n"
    "\n"
    "  check FILE [--trust-domain TD]...   validate and lint a policy\n"
    "  explain FILE --from ID --port N [--method M --path P]\n"
    "                                      say which rule decides a request, and why\n"
    "  test FILE CASES.yaml                check a table of requests and expected\n"
    "                                      decisions (for CI)\n"
    "\n"
    "Run 'ztproxy policy COMMAND --help' for a command's options.\n";

static const char check_help[] =
    "usage: ztproxy policy check FILE [--trust-domain TD]...\n"
    "\n"
    "Load FILE as the proxy would and lint it. Errors print file:line:column: message\n"
    "on stderr and exit 2. Warnings print file:line:column: warning: message on stdout\n"
    "and exit 1: default: allow; rules that can never decide (an allow rule every\n"
    "request of which a deny rule also matches, a rule an earlier rule of the same\n"
    "action already covers); IDs and patterns outside every known trust domain. A\n"
    "clean policy exits 0.\n"
    "\n"
    "  --trust-domain TD   also a known trust domain (a federated one); repeatable.\n"
    "                      The policy's own trust_domain is always known.\n";

static const char explain_help[] =
    "usage: ztproxy policy explain FILE --from ID --port N [--method M --path P]\n"
    "\n"
    "Decide one request against FILE and print the decision, the rule that made it,\n"
    "and every rule in evaluation order (deny rules first, then allow rules, each in\n"
    "file order) with why it did or did not match. Exit 0, or 2 on a load or usage\n"
    "error.\n"
    "\n"
    "  --from ID      the peer's SPIFFE ID, e.g. spiffe://example.org/ns/web/sa/fe\n"
    "  --port N       destination port, 1..65535\n"
    "  --method M     HTTP method (with --path: an HTTP request; without: L4)\n"
    "  --path P       HTTP path, e.g. /api/v1/users?id=7\n";

static const char test_help[] =
    "usage: ztproxy policy test FILE CASES.yaml\n"
    "\n"
    "Decide every request of CASES.yaml against FILE and compare with what is\n"
    "expected. CASES.yaml is a list of:\n"
    "\n"
    "  - from: spiffe://example.org/ns/web/sa/fe   # required\n"
    "    port: 8080                                # required, 1..65535\n"
    "    method: GET                               # optional, with path\n"
    "    path: /api/v1                             # optional, with method\n"
    "    expect: allow                             # required: allow | deny\n"
    "    rule: web-to-api                          # optional: the deciding rule's\n"
    "                                              # name, or default\n"
    "    name: web reads the api                   # optional label\n"
    "\n"
    "Prints each mismatch as CASES.yaml:line:column: ..., then a summary. Exit 0 when\n"
    "every case passes, 1 when any fails, 2 on a load error in either file\n"
    "(file:line:column on stderr) or a usage error.\n";

static bool is_help(const char *a) {
  return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* "--name value" or "--name=value" at argv[*i]; advances *i past a separate value.
 * 1 matched (value in *val), 0 not this option, -1 missing value (reported). */
static int opt(int argc, char **argv, int *i, const char *name, const char **val) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return 0;
  if (argv[*i][n] == '=') {
    *val = argv[*i] + n + 1;
    return 1;
  }
  if (argv[*i][n] != '\0') return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "ztproxy policy: %s needs a value\n", name);
    return -1;
  }
  *val = argv[++*i];
  return 1;
}

static int usage_error(const char *cmd, const char *what, const char *arg) {
  fprintf(stderr, "ztproxy policy %s: %s%s%s%s (see --help)\n", cmd, what,
          arg ? " \"" : "", arg ? arg : "", arg ? "\"" : "");
  return 2;
}

static int load(const char *file, zt_policy_t **p) {
  zt_error_t err;
  char msg[1024];
  memset(&err, 0, sizeof(err));
  if (zt_policy_load(file, p, &err) == 0) return 0;
  fprintf(stderr, "%s\n", zt_error_str(&err, msg, sizeof(msg)));
  return 2;
}

static const char *action_str(zt_action_t a) { return a == ZT_ALLOW ? "allow" : "deny"; }

/* ---- check --------------------------------------------------------------------- */

static void print_warning(void *ctx, const zt_error_t *w) {
  char msg[1024];
  (void)ctx;
  printf("%s\n", zt_error_str(w, msg, sizeof(msg)));
}

static int cmd_check(int argc, char **argv) {
  const char *file = NULL, *tds[MAX_TDS], *v;
  size_t n_tds = 0, n_warn, i, n_deny = 0;
  zt_policy_t *p;
  int rc;
  for (int a = 1; a < argc; a++) {
    if (is_help(argv[a])) {
      fputs(check_help, stdout);
      return 0;
    }
  }
  for (int a = 1; a < argc; a++) {
    if ((rc = opt(argc, argv, &a, "--trust-domain", &v)) < 0) return 2;
    if (rc == 1) {
      const char *why;
      if (zt_trust_domain_check(v, strlen(v), &why)) {
        fprintf(stderr, "ztproxy policy check: --trust-domain \"%s\": %s\n", v, why);
        return 2;
      }
      if (n_tds == MAX_TDS) return usage_error("check", "too many --trust-domain", NULL);
      tds[n_tds++] = v;
    } else if (argv[a][0] == '-' && argv[a][1] != '\0') {
      return usage_error("check", "unknown option", argv[a]);
    } else if (file == NULL) {
      file = argv[a];
    } else {
      return usage_error("check", "unexpected argument", argv[a]);
    }
  }
  if (file == NULL) return usage_error("check", "FILE is required", NULL);
  if ((rc = load(file, &p))) return rc;
  n_warn = zt_policy_lint(p, tds, n_tds, print_warning, NULL);
  for (i = 0; i < zt_policy_rule_count(p); i++)
    if (zt_policy_rule_action(p, i) == ZT_DENY) n_deny++;
  printf("%s: %zu rule%s (%zu deny, %zu allow), default %s, mode %s: %zu warning%s\n",
         file, zt_policy_rule_count(p), zt_policy_rule_count(p) == 1 ? "" : "s", n_deny,
         zt_policy_rule_count(p) - n_deny, action_str(zt_policy_default_action(p)),
         zt_policy_audit(p) ? "audit" : "enforce", n_warn, n_warn == 1 ? "" : "s");
  zt_policy_release(p);
  return n_warn ? 1 : 0;
}

/* ---- explain ------------------------------------------------------------------- */

/* 1..65535, digits only. */
static int parse_port(const char *s, uint16_t *out) {
  unsigned long v = 0;
  size_t i, n = strlen(s);
  if (n == 0 || n > 5) return -1;
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (unsigned long)(s[i] - '0');
  }
  if (v < 1 || v > 65535) return -1;
  *out = (uint16_t)v;
  return 0;
}

/* s (n bytes) with its control characters escaped, in buf: what a cases file or the
 * command line holds is printed, never a terminal escape or a line of its own. */
static const char *shown(const char *s, size_t n, char *buf, size_t cap) {
  snprintf(buf, cap, "%.*s", (int)n, s);
  zt_escape_controls(buf, cap);
  return buf;
}
#define SHOWN(s, buf) shown((s), strlen(s), (buf), sizeof(buf))

static void print_request(const zt_request_t *r) {
  char id[4 * ZT_SPIFFE_ID_MAX + 1], m[256], path[4096];
  printf("request: from %s to port %u", shown(r->peer_id, r->peer_id_len, id, sizeof(id)),
         r->port);
  if (r->method) printf(", HTTP %s %s\n", SHOWN(r->method, m), SHOWN(r->path, path));
  else printf(" (L4: no method and path)\n");
}

static void print_decision(const zt_policy_t *p, const zt_decision_t *d) {
  if (d->rule_index < 0)
    printf("decision: %s by default (no rule matched)\n", action_str(d->action));
  else
    printf("decision: %s by rule \"%s\" (rules[%d], %s:%d)\n", action_str(d->action),
           d->rule, d->rule_index, zt_policy_file(p),
           zt_policy_rule_line(p, (size_t)d->rule_index));
  if (!d->enforced)
    printf("mode: audit (logged as %s, \"enforced\": false; the traffic is let "
           "through)\n", action_str(d->action));
}

static int cmd_explain(int argc, char **argv) {
  const char *file = NULL, *from = NULL, *port_s = NULL, *method = NULL, *path = NULL;
  const char *why_id;
  zt_policy_t *p;
  zt_request_t r;
  zt_decision_t d;
  int rc, first_match = -1;
  for (int a = 1; a < argc; a++) {
    if (is_help(argv[a])) {
      fputs(explain_help, stdout);
      return 0;
    }
  }
  for (int a = 1; a < argc; a++) {
    const char **slot = NULL;
    const char *v;
    static const char *const names[] = {"--from", "--port", "--method", "--path"};
    const char **slots[] = {&from, &port_s, &method, &path};
    for (size_t k = 0; k < 4 && slot == NULL; k++) {
      if ((rc = opt(argc, argv, &a, names[k], &v)) < 0) return 2;
      if (rc == 1) {
        slot = slots[k];
        *slot = v;
      }
    }
    if (slot) continue;
    if (argv[a][0] == '-' && argv[a][1] != '\0')
      return usage_error("explain", "unknown option", argv[a]);
    if (file) return usage_error("explain", "unexpected argument", argv[a]);
    file = argv[a];
  }
  if (file == NULL) return usage_error("explain", "FILE is required", NULL);
  if (from == NULL) return usage_error("explain", "--from ID is required", NULL);
  if (port_s == NULL) return usage_error("explain", "--port N is required", NULL);
  if (zt_spiffe_id_parse(from, strlen(from), NULL, &why_id)) {
    fprintf(stderr, "ztproxy policy explain: --from \"%s\" is not a SPIFFE ID: %s\n",
            from, why_id);
    return 2;
  }
  memset(&r, 0, sizeof(r));
  if (parse_port(port_s, &r.port))
    return usage_error("explain", "--port is not a port (1..65535):", port_s);
  if ((method == NULL) != (path == NULL))
    return usage_error("explain", "--method and --path go together (an HTTP request "
                                  "has both; leave both out for L4)", NULL);
  if (path && path[0] != '/')
    return usage_error("explain", "--path must start with \"/\":", path);
  r.peer_id = from;
  r.peer_id_len = strlen(from);
  r.method = method;
  r.path = path;
  if ((rc = load(file, &p))) return rc;

  d = zt_policy_decide_nocount(p, &r);
  print_request(&r);
  print_decision(p, &d);
  printf("rules, in evaluation order (deny rules first, then allow rules, each in file "
         "order):\n");
  if (zt_policy_rule_count(p) == 0) printf("  (none)\n");
  for (int pass = 0; pass < 2; pass++) {
    zt_action_t want = pass == 0 ? ZT_DENY : ZT_ALLOW;
    for (size_t i = 0; i < zt_policy_rule_count(p); i++) {
      char why[1024];
      bool m;
      if (zt_policy_rule_action(p, i) != want) continue;
      m = zt_policy_rule_explain(p, i, &r, why, sizeof(why));
      zt_escape_controls(why, sizeof(why));
      if (m && first_match < 0) first_match = (int)i;
      printf("  rules[%zu] %-5s \"%s\" (line %d): %s: %s\n", i, action_str(want),
             zt_policy_rule_name(p, i), zt_policy_rule_line(p, i),
             !m ? "no match"
                : (int)i == first_match ? "MATCH, decides"
                                        : "match, but an earlier rule decided",
             why);
    }
  }
  if (first_match < 0)
    printf("  default: %s\n", action_str(zt_policy_default_action(p)));
  zt_policy_release(p);
  /* The index and the plain per-rule check must agree; if not, say so loudly. */
  if (first_match != d.rule_index) {
    fprintf(stderr, "ztproxy policy explain: internal error: the compiled index decided "
                    "rules[%d], the plain check rules[%d]\n", d.rule_index, first_match);
    return 3;
  }
  return 0;
}

/* ---- test ---------------------------------------------------------------------- */

typedef struct {
  zt_yaml_t y;
  zt_error_t err;
} cases_t;

/* Fill r and the expectations from case node n; 0, or -1 with c->err set. */
static int read_case(cases_t *c, yaml_node_t *n, size_t idx, zt_request_t *r,
                     zt_action_t *expect, const char **rule, const char **label) {
  static const char *const keys[] = {"from", "port", "method", "path", "expect", "rule",
                                     "name", NULL};
  char what[48], sub[64];
  yaml_node_t *v;
  const char *s, *why;
  uint64_t port;
  snprintf(what, sizeof(what), "cases[%zu]", idx);
  memset(r, 0, sizeof(*r));
  *rule = *label = NULL;
  if (zt_yaml_check_keys(&c->y, n, keys, what, &c->err)) return -1;
  if ((v = zt_yaml_get(&c->y, n, "from")) == NULL)
    return zt_yaml_fail(&c->y, n, &c->err, "%s: missing required key \"from\"", what);
  snprintf(sub, sizeof(sub), "%s.from", what);
  if (zt_yaml_str(&c->y, v, sub, &s, &c->err)) return -1;
  if (zt_spiffe_id_parse(s, strlen(s), NULL, &why))
    return zt_yaml_fail(&c->y, v, &c->err, "%s: \"%s\" is not a SPIFFE ID: %s", sub, s,
                        why);
  r->peer_id = s;
  r->peer_id_len = strlen(s);
  if ((v = zt_yaml_get(&c->y, n, "port")) == NULL)
    return zt_yaml_fail(&c->y, n, &c->err, "%s: missing required key \"port\"", what);
  snprintf(sub, sizeof(sub), "%s.port", what);
  if (zt_yaml_uint(&c->y, v, sub, 1, 65535, &port, &c->err)) return -1;
  r->port = (uint16_t)port;
  if ((v = zt_yaml_get(&c->y, n, "method"))) {
    snprintf(sub, sizeof(sub), "%s.method", what);
    if (zt_yaml_str(&c->y, v, sub, &r->method, &c->err)) return -1;
  }
  if ((v = zt_yaml_get(&c->y, n, "path"))) {
    snprintf(sub, sizeof(sub), "%s.path", what);
    if (zt_yaml_str(&c->y, v, sub, &r->path, &c->err)) return -1;
    if (r->path[0] != '/')
      return zt_yaml_fail(&c->y, v, &c->err, "%s: \"%s\" must start with \"/\"", sub,
                          r->path);
  }
  if ((r->method == NULL) != (r->path == NULL))
    return zt_yaml_fail(&c->y, n, &c->err, "%s: method and path go together (an HTTP "
                        "request has both; leave both out for L4)", what);
  if ((v = zt_yaml_get(&c->y, n, "expect")) == NULL)
    return zt_yaml_fail(&c->y, n, &c->err, "%s: missing required key \"expect\"", what);
  snprintf(sub, sizeof(sub), "%s.expect", what);
  if (zt_yaml_str(&c->y, v, sub, &s, &c->err)) return -1;
  if (strcmp(s, "allow") == 0) *expect = ZT_ALLOW;
  else if (strcmp(s, "deny") == 0) *expect = ZT_DENY;
  else return zt_yaml_fail(&c->y, v, &c->err, "%s: \"%s\" is not allow or deny", sub, s);
  if ((v = zt_yaml_get(&c->y, n, "rule"))) {
    snprintf(sub, sizeof(sub), "%s.rule", what);
    if (zt_yaml_str(&c->y, v, sub, rule, &c->err)) return -1;
  }
  if ((v = zt_yaml_get(&c->y, n, "name"))) {
    snprintf(sub, sizeof(sub), "%s.name", what);
    if (zt_yaml_str(&c->y, v, sub, label, &c->err)) return -1;
  }
  return 0;
}

static int cmd_test(int argc, char **argv) {
  const char *file = NULL, *cases_file = NULL;
  cases_t c;
  yaml_node_t *root, *n;
  zt_policy_t *p;
  size_t i, failed = 0, total;
  char msg[1024];
  int rc;
  for (int a = 1; a < argc; a++) {
    if (is_help(argv[a])) {
      fputs(test_help, stdout);
      return 0;
    }
  }
  for (int a = 1; a < argc; a++) {
    if (argv[a][0] == '-' && argv[a][1] != '\0')
      return usage_error("test", "unknown option", argv[a]);
    if (file == NULL) file = argv[a];
    else if (cases_file == NULL) cases_file = argv[a];
    else return usage_error("test", "unexpected argument", argv[a]);
  }
  if (file == NULL || cases_file == NULL)
    return usage_error("test", "FILE and CASES.yaml are required", NULL);
  if ((rc = load(file, &p))) return rc;

  memset(&c, 0, sizeof(c));
  if (zt_yaml_load(&c.y, cases_file, &c.err)) goto bad_cases;
  root = zt_yaml_root(&c.y);
  if (root == NULL) {
    zt_yaml_fail(&c.y, NULL, &c.err, "cases: the file is empty");
    goto bad_cases;
  }
  if (zt_yaml_want_seq(&c.y, root, "cases", &c.err)) goto bad_cases;
  total = zt_yaml_len(root);
  /* Validate every case before deciding any: a typo is an error, not a failure. */
  for (i = 0; (n = zt_yaml_item(&c.y, root, i)); i++) {
    zt_request_t r;
    zt_action_t expect;
    const char *rule, *label;
    if (read_case(&c, n, i, &r, &expect, &rule, &label)) goto bad_cases;
  }
  for (i = 0; (n = zt_yaml_item(&c.y, root, i)); i++) {
    zt_request_t r;
    zt_action_t expect;
    const char *rule, *label;
    char id[4 * ZT_SPIFFE_ID_MAX + 1], lab[1024], m[256], path[4096];
    zt_decision_t d;
    read_case(&c, n, i, &r, &expect, &rule, &label);
    d = zt_policy_decide_nocount(p, &r);
    if (d.action == expect && (rule == NULL || strcmp(rule, d.rule) == 0)) continue;
    failed++;
    printf("%s:%d:%d: cases[%zu]", cases_file, (int)n->start_mark.line + 1,
           (int)n->start_mark.column + 1, i);
    if (label) printf(" \"%s\"", SHOWN(label, lab));
    printf(": from %s port %u", shown(r.peer_id, r.peer_id_len, id, sizeof(id)), r.port);
    if (r.method) printf(" %s %s", SHOWN(r.method, m), SHOWN(r.path, path));
    if (d.rule_index < 0) printf(": got %s by default", action_str(d.action));
    else printf(": got %s by rule \"%s\"", action_str(d.action), d.rule);
    printf(", want %s", action_str(expect));
    if (rule && strcmp(rule, "default") == 0) printf(" by default");
    else if (rule) printf(" by rule \"%s\"", rule);
    printf("\n");
  }
  printf("%s: %zu case%s, %zu passed, %zu failed\n", cases_file, total,
         total == 1 ? "" : "s", total - failed, failed);
  zt_yaml_free(&c.y);
  zt_policy_release(p);
  return failed ? 1 : 0;

bad_cases:
  fprintf(stderr, "%s\n", zt_error_str(&c.err, msg, sizeof(msg)));
  zt_yaml_free(&c.y);
  zt_policy_release(p);
  return 2;
}

int zt_cmd_policy(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "ztproxy policy: a command is required: check, explain or test\n%s",
            policy_help);
    return 2;
  }
  if (strcmp(argv[1], "check") == 0) return cmd_check(argc - 1, argv + 1);
  if (strcmp(argv[1], "explain") == 0) return cmd_explain(argc - 1, argv + 1);
  if (strcmp(argv[1], "test") == 0) return cmd_test(argc - 1, argv + 1);
  if (is_help(argv[1])) {
    fputs(policy_help, stdout);
    return 0;
  }
  fprintf(stderr, "ztproxy policy: unknown command \"%s\" (check, explain or test)\n",
          argv[1]);
  return 2;
}
