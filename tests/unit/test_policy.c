/* tests/unit/test_policy.c: policy/policy.c over small policy files.
 *
 * Each policy is written to its own mkdtemp() folder, loaded, and the folder removed
 * before the assertions run. Decision tests are tables of requests against one policy;
 * load-error tests are a table of documents with the exact "file:line:col: message"
 * each must produce.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy.h"
#include "policy_int.h"   /* the hit counters' carry, below */
#include "zt_test.h"

/* Write text to a fresh temp file, load it, remove it. path receives the file name
 * the error refers to; errbuf the formatted error (or ""). */
static int load_text(const char *text, zt_policy_t **p, char *path, size_t path_len,
                     char *errbuf, size_t errlen) {
  char dir[] = "/tmp/zt_policy_test.XXXXXX";
  zt_error_t err;
  FILE *f;
  int rc;
  errbuf[0] = '\0';
  *p = NULL;
  if (mkdtemp(dir) == NULL) return -2;
  snprintf(path, path_len, "%s/policy.yaml", dir);
  f = fopen(path, "w");
  if (f == NULL) {
    rmdir(dir);
    return -2;
  }
  fputs(text, f);
  fclose(f);
  memset(&err, 0, sizeof(err));
  rc = zt_policy_load(path, p, &err);
  if (rc) zt_error_str(&err, errbuf, errlen);
  unlink(path);
  rmdir(dir);
  return rc;
}

static zt_policy_t *load_ok(const char *text) {
  char path[128], errbuf[1024];
  zt_policy_t *p;
  if (load_text(text, &p, path, sizeof(path), errbuf, sizeof(errbuf)) != 0) {
    fprintf(stderr, "  unexpected load error: %s\n", errbuf);
    return NULL;
  }
  return p;
}

typedef struct {
  const char *peer;          /* NULL: unauthenticated */
  uint16_t port;
  const char *method, *path;
  zt_action_t action;
  const char *rule;
} req_case_t;

#define A ZT_ALLOW
#define D ZT_DENY

/* Run every case; report the first mismatch with its index. */
static int check_cases(const zt_policy_t *p, const req_case_t *cases, size_t n,
                       bool enforced) {
  size_t i;
  for (i = 0; i < n; i++) {
    const req_case_t *c = &cases[i];
    zt_request_t r;
    zt_decision_t d;
    r.peer_id = c->peer;
    r.peer_id_len = c->peer ? strlen(c->peer) : 0;
    r.port = c->port;
    r.method = c->method;
    r.path = c->path;
    d = zt_policy_decide(p, &r);
    if (d.action != c->action || d.rule == NULL || strcmp(d.rule, c->rule) != 0 ||
        d.enforced != enforced) {
      fprintf(stderr, "  case %zu (%s :%u %s %s): got %s/%s/%s, want %s/%s\n", i,
              c->peer ? c->peer : "(none)", c->port, c->method ? c->method : "-",
              c->path ? c->path : "-", d.action == ZT_ALLOW ? "allow" : "deny",
              d.rule ? d.rule : "(null)", d.enforced ? "enforced" : "audit",
              c->action == ZT_ALLOW ? "allow" : "deny", c->rule);
      return -1;
    }
  }
  return 0;
}

#define CHECK(p, cases, enforced)                                                   \
  do {                                                                              \
    int rc_ = check_cases((p), (cases), sizeof(cases) / sizeof((cases)[0]),         \
                          (enforced));                                              \
    zt_policy_release(p);                                                           \
    ZT_ASSERT(rc_ == 0);                                                            \
  } while (0)

/* ---- decisions ----------------------------------------------------------------- */

ZT_TEST(exact_id_matches_only_itself) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: a-to-b\n"
                           "    action: allow\n"
                           "    from: [spiffe://example.org/a]\n");
  static const req_case_t cases[] = {
    {"spiffe://example.org/a", 80, NULL, NULL, A, "a-to-b"},
    {"spiffe://example.org/ab", 80, NULL, NULL, D, "default"},
    {"spiffe://example.org/a/b", 80, NULL, NULL, D, "default"},
    {"spiffe://example.org", 80, NULL, NULL, D, "default"},
    {"spiffe://example.org/A", 80, NULL, NULL, D, "default"},
    {"spiffe://other.org/a", 80, NULL, NULL, D, "default"},
    {NULL, 80, NULL, NULL, D, "default"},
  };
  ZT_ASSERT(p != NULL);
  CHECK(p, cases, true);
}

ZT_TEST(prefix_stops_at_segment_boundary) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: web\n"
                           "    action: allow\n"
                           "    from: [\"spiffe://example.org/ns/web/*\"]\n");
  static const req_case_t cases[] = {
    {"spiffe://example.org/ns/web/x", 1, NULL, NULL, A, "web"},
    {"spiffe://example.org/ns/web/x/y", 1, NULL, NULL, A, "web"},
    {"spiffe://example.org/ns/web", 1, NULL, NULL, D, "default"},
    {"spiffe://example.org/ns/webhook", 1, NULL, NULL, D, "default"},
    {"spiffe://example.org/ns/webhook/x", 1, NULL, NULL, D, "default"},
    {"spiffe://example.org/ns", 1, NULL, NULL, D, "default"},
    {"spiffe://other.org/ns/web/x", 1, NULL, NULL, D, "default"},
  };
  ZT_ASSERT(p != NULL);
  CHECK(p, cases, true);
}

ZT_TEST(trust_domain_wildcard_matches_every_workload_of_that_domain) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: partner\n"
                           "    action: allow\n"
                           "    from: [\"spiffe://partner.example/*\"]\n");
  static const req_case_t cases[] = {
    {"spiffe://partner.example/a", 1, NULL, NULL, A, "partner"},
    {"spiffe://partner.example/ns/x/sa/y", 1, NULL, NULL, A, "partner"},
    {"spiffe://partner.examples/a", 1, NULL, NULL, D, "default"},
    {"spiffe://partner.exampl/a", 1, NULL, NULL, D, "default"},
    {"spiffe://example.org/a", 1, NULL, NULL, D, "default"},
  };
  ZT_ASSERT(p != NULL);
  CHECK(p, cases, true);
}

ZT_TEST(star_matches_any_authenticated_peer) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: anyone\n"
                           "    action: allow\n"
                           "    from: [\"*\"]\n");
  static const req_case_t cases[] = {
    {"spiffe://example.org/a", 1, NULL, NULL, A, "anyone"},
    {"spiffe://elsewhere.test/x/y", 65535, NULL, NULL, A, "anyone"},
    {NULL, 1, NULL, NULL, D, "default"},
  };
  ZT_ASSERT(p != NULL);
  CHECK(p, cases, true);
}

ZT_TEST(ports_and_ranges) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: ports\n"
                           "    action: allow\n"
                           "    from: [\"*\"]\n"
                           "    to: {ports: [8080, \"9000-9099\", 10000-10000, \"443\"]}\n");
  static const req_case_t cases[] = {
    {"spiffe://example.org/a", 8080, NULL, NULL, A, "ports"},
    {"spiffe://example.org/a", 8081, NULL, NULL, D, "default"},
    {"spiffe://example.org/a", 8999, NULL, NULL, D, "default"},
    {"spiffe://example.org/a", 9000, NULL, NULL, A, "ports"},
    {"spiffe://example.org/a", 9050, NULL, NULL, A, "ports"},
    {"spiffe://example.org/a", 9099, NULL, NULL, A, "ports"},
    {"spiffe://example.org/a", 9100, NULL, NULL, D, "default"},
    {"spiffe://example.org/a", 10000, NULL, NULL, A, "ports"},
    {"spiffe://example.org/a", 443, NULL, NULL, A, "ports"},
  };
  ZT_ASSERT(p != NULL);
  CHECK(p, cases, true);
}

ZT_TEST(deny_wins_over_an_earlier_allow) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "default: allow\n"
                           "rules:\n"
                           "  - name: allow-web\n"
                           "    action: allow\n"
                           "    from: [\"spiffe://example.org/web/*\"]\n"
                           "  - name: allow-all\n"
                           "    action: allow\n"
                           "    from: [\"*\"]\n"
                           "  - name: deny-canary\n"
                           "    action: deny\n"
                           "    from: [spiffe://example.org/web/canary]\n"
                           "  - name: deny-admin-port\n"
                           "    action: deny\n"
                           "    from: [\"*\"]\n"
                           "    to: {ports: [22]}\n");
  static const req_case_t cases[] = {
    {"spiffe://example.org/web/canary", 80, NULL, NULL, D, "deny-canary"},
    {"spiffe://example.org/web/canary", 22, NULL, NULL, D, "deny-canary"},
    {"spiffe://example.org/web/x", 22, NULL, NULL, D, "deny-admin-port"},
    {"spiffe://example.org/web/x", 80, NULL, NULL, A, "allow-web"},
    {"spiffe://example.org/db", 80, NULL, NULL, A, "allow-all"},
    {NULL, 80, NULL, NULL, A, "default"},
  };
  ZT_ASSERT(p != NULL);
  CHECK(p, cases, true);
}

ZT_TEST(default_deny_and_default_allow) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules: []\n");
  zt_policy_t *q = load_ok("trust_domain: example.org\n"
                           "default: allow\n"
                           "rules:\n"
                           "  - name: no-b\n"
                           "    action: deny\n"
                           "    from: [spiffe://example.org/b]\n");
  zt_policy_t *r = load_ok("trust_domain: example.org\n");
  static const req_case_t deny_all[] = {
    {"spiffe://example.org/a", 80, NULL, NULL, D, "default"},
  };
  static const req_case_t allow_but_b[] = {
    {"spiffe://example.org/a", 80, NULL, NULL, A, "default"},
    {"spiffe://example.org/b", 80, NULL, NULL, D, "no-b"},
  };
  ZT_ASSERT(p && q && r);
  ZT_ASSERT(!zt_policy_has_http_rules(p));
  ZT_ASSERT_STR_EQ(zt_policy_trust_domain(q), "example.org");
  CHECK(r, deny_all, true);
  CHECK(q, allow_but_b, true);
  CHECK(p, deny_all, true);
}

ZT_TEST(audit_mode_decides_the_same_but_does_not_enforce) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "mode: audit\n"
                           "rules:\n"
                           "  - name: a\n"
                           "    action: allow\n"
                           "    from: [spiffe://example.org/a]\n"
                           "  - name: no-c\n"
                           "    action: deny\n"
                           "    from: [spiffe://example.org/c]\n");
  static const req_case_t cases[] = {
    {"spiffe://example.org/a", 80, NULL, NULL, A, "a"},
    {"spiffe://example.org/b", 80, NULL, NULL, D, "default"},
    {"spiffe://example.org/c", 80, NULL, NULL, D, "no-c"},
  };
  ZT_ASSERT(p != NULL);
  CHECK(p, cases, false);
}

ZT_TEST(http_rules_need_method_and_path) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: no-admin\n"
                           "    action: deny\n"
                           "    from: [\"*\"]\n"
                           "    http: {paths: [/admin, /admin/*]}\n"
                           "  - name: api\n"
                           "    action: allow\n"
                           "    from: [\"spiffe://example.org/web/*\"]\n"
                           "    to: {ports: [8080]}\n"
                           "    http:\n"
                           "      methods: [GET, POST]\n"
                           "      paths: [/api/*, /healthz]\n"
                           "  - name: any-get\n"
                           "    action: allow\n"
                           "    from: [spiffe://example.org/probe]\n"
                           "    http: {methods: [GET]}\n");
  static const req_case_t cases[] = {
    {"spiffe://example.org/web/x", 8080, "GET", "/api/v1/x", A, "api"},
    {"spiffe://example.org/web/x", 8080, "POST", "/api/", A, "api"},
    {"spiffe://example.org/web/x", 8080, "GET", "/healthz", A, "api"},
    {"spiffe://example.org/web/x", 8080, "GET", "/healthz?full=1", A, "api"},
    {"spiffe://example.org/web/x", 8080, "GET", "/healthz/x", D, "default"},
    {"spiffe://example.org/web/x", 8080, "GET", "/api", D, "default"},
    {"spiffe://example.org/web/x", 8080, "GET", "/apix", D, "default"},
    {"spiffe://example.org/web/x", 8080, "DELETE", "/api/v1/x", D, "default"},
    {"spiffe://example.org/web/x", 8080, "get", "/api/v1/x", D, "default"},
    {"spiffe://example.org/web/x", 9090, "GET", "/api/v1/x", D, "default"},
    /* An L4 request never matches an http rule, allow or deny. */
    {"spiffe://example.org/web/x", 8080, NULL, NULL, D, "default"},
    {"spiffe://example.org/web/x", 8080, "GET", NULL, D, "default"},
    {"spiffe://example.org/web/x", 8080, "GET", "/admin", D, "no-admin"},
    {"spiffe://example.org/web/x", 8080, "GET", "/admin?x=1", D, "no-admin"},
    {"spiffe://example.org/web/x", 8080, "GET", "/admin/users", D, "no-admin"},
    {"spiffe://example.org/probe", 1, "GET", "/anything", A, "any-get"},
    {"spiffe://example.org/probe", 1, "PUT", "/anything", D, "default"},
  };
  ZT_ASSERT(p != NULL);
  ZT_ASSERT(zt_policy_has_http_rules(p));
  CHECK(p, cases, true);
}

ZT_TEST(peer_id_length_is_what_counts) {
  /* The data path never measures the peer ID: bytes past peer_id_len are not part of
   * it, so "spiffe://example.org/a" with len 22 is /a even if followed by more. */
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: a\n"
                           "    action: allow\n"
                           "    from: [spiffe://example.org/a]\n");
  zt_request_t r = {"spiffe://example.org/abc", 22, 80, NULL, NULL};
  zt_decision_t d, d2;
  ZT_ASSERT(p != NULL);
  d = zt_policy_decide(p, &r);
  r.peer_id_len = 24;
  d2 = zt_policy_decide(p, &r);
  zt_policy_release(p);
  ZT_ASSERT(d.action == ZT_ALLOW);
  ZT_ASSERT(d2.action == ZT_DENY);
}

ZT_TEST(refcount_keeps_the_snapshot_until_the_last_release) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: a\n"
                           "    action: allow\n"
                           "    from: [\"*\"]\n");
  zt_request_t r = {"spiffe://example.org/a", 22, 80, NULL, NULL};
  zt_decision_t d;
  ZT_ASSERT(p != NULL);
  ZT_ASSERT(zt_policy_retain(p) == p);
  zt_policy_release(p);
  d = zt_policy_decide(p, &r);  /* still alive: ASan would flag a use after free */
  ZT_ASSERT_STR_EQ(zt_policy_trust_domain(p), "example.org");
  ZT_ASSERT(strstr(zt_policy_file(p), "/policy.yaml") != NULL);
  ZT_ASSERT_STR_EQ(d.rule, "a");
  zt_policy_release(p);
  zt_policy_release(NULL);
}

ZT_TEST(rule_index_is_the_file_order_index_and_default_is_minus_one) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: a\n    action: allow\n    from: [\"*\"]\n"
                           "  - name: b\n    action: deny\n"
                           "    from: [spiffe://example.org/b]\n");
  zt_request_t ra = {"spiffe://example.org/a", 22, 80, NULL, NULL};
  zt_request_t rb = {"spiffe://example.org/b", 22, 80, NULL, NULL};
  zt_request_t rn = {NULL, 0, 80, NULL, NULL};
  ZT_ASSERT(p != NULL);
  int ia = zt_policy_decide(p, &ra).rule_index, ib = zt_policy_decide(p, &rb).rule_index;
  int in = zt_policy_decide(p, &rn).rule_index;
  ZT_ASSERT(zt_policy_rule_count(p) == 2);
  ZT_ASSERT_STR_EQ(zt_policy_rule_name(p, 0), "a");
  ZT_ASSERT_STR_EQ(zt_policy_rule_name(p, 1), "b");
  ZT_ASSERT(zt_policy_rule_action(p, 1) == ZT_DENY);
  ZT_ASSERT(zt_policy_rule_line(p, 1) == 6);
  ZT_ASSERT(zt_policy_rule_name(p, 2) == NULL);
  zt_policy_release(p);
  ZT_ASSERT(ia == 0);
  ZT_ASSERT(ib == 1);
  ZT_ASSERT(in == -1);
}

ZT_TEST(hits_count_decide_but_not_decide_nocount) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: a\n    action: allow\n"
                           "    from: [spiffe://example.org/a]\n"
                           "  - name: no-b\n    action: deny\n"
                           "    from: [spiffe://example.org/b]\n");
  zt_request_t ra = {"spiffe://example.org/a", 22, 80, NULL, NULL};
  zt_request_t rb = {"spiffe://example.org/b", 22, 80, NULL, NULL};
  zt_request_t rc = {"spiffe://example.org/c", 22, 80, NULL, NULL};
  ZT_ASSERT(p != NULL);
  for (int i = 0; i < 3; i++) zt_policy_decide(p, &ra);
  zt_policy_decide(p, &rb);
  zt_policy_decide(p, &rc);
  zt_policy_decide(p, &rc);
  for (int i = 0; i < 5; i++) {
    zt_policy_decide_nocount(p, &ra);
    zt_policy_decide_nocount(p, &rb);
    zt_policy_decide_nocount(p, &rc);
  }
  uint64_t hits[3];
  ZT_ASSERT(zt_policy_rule_count(p) == 2);
  zt_policy_hits(p, hits);
  zt_policy_release(p);
  ZT_ASSERT(hits[0] == 3);
  ZT_ASSERT(hits[1] == 1);
  ZT_ASSERT(hits[2] == 2);   /* the default */
}

/* Keys keep their first bytes inline and the rest in the snapshot: IDs alike in
 * length and in those first bytes must still be told apart by the rest. Enough of
 * them that some share a hash tag and a probe group. */
ZT_TEST(long_ids_alike_but_for_their_ends_are_told_apart) {
  enum { N = 3000 };
  static const char kMid[] = "a-service-account-name-longer-than-the-inline-part";
  size_t cap = 200 + (size_t)N * 128, at = 0;
  char *text = malloc(cap), id[128];
  zt_policy_t *p;
  int wrong = 0;
  ZT_ASSERT(text != NULL);
  at += (size_t)snprintf(text + at, cap - at, "trust_domain: example.org\nrules:\n");
  for (int i = 0; i < N; i += 2)        /* the even ones are named, the odd ones not */
    at += (size_t)snprintf(text + at, cap - at,
                           "  - name: r%d\n    action: allow\n"
                           "    from: [spiffe://example.org/%s/%05d]\n", i, kMid, i);
  ZT_ASSERT(at < cap);
  p = load_ok(text);
  free(text);
  ZT_ASSERT(p != NULL);
  for (int i = 0; i < N; i++) {
    zt_request_t r = {id, 0, 80, NULL, NULL};
    zt_decision_t d;
    r.peer_id_len = (size_t)snprintf(id, sizeof(id), "spiffe://example.org/%s/%05d", kMid, i);
    d = zt_policy_decide_nocount(p, &r);
    if (d.rule_index != (i % 2 ? -1 : i / 2)) wrong++;
  }
  zt_policy_release(p);
  ZT_ASSERT(wrong == 0);
}

/* A rule alone on its key counts in the key's own counter, a rule in a list in its
 * own; zt_policy_hits adds them up per rule. */
ZT_TEST(hits_in_keys_and_in_rules_add_up) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: a\n    action: allow\n"
                           "    from: [spiffe://example.org/a, spiffe://example.org/b]\n"
                           "  - name: b-too\n    action: allow\n"
                           "    from: [spiffe://example.org/b]\n");
  zt_request_t ra = {"spiffe://example.org/a", 22, 80, NULL, NULL};
  zt_request_t rb = {"spiffe://example.org/b", 22, 80, NULL, NULL};
  const pol_key_t *ka = zt_policy__find_key(p, ra.peer_id, ra.peer_id_len);
  const pol_key_t *kb = zt_policy__find_key(p, rb.peer_id, rb.peer_id_len);
  uint64_t hits[3];
  ZT_ASSERT(ka != NULL && ka->where == POL_KEY_EXACT1);   /* named by a alone */
  ZT_ASSERT(kb != NULL && kb->where == POL_KEY_LISTS);    /* named by a and b-too */
  for (int i = 0; i < 5; i++) ZT_ASSERT(zt_policy_decide(p, &ra).rule_index == 0);
  for (int i = 0; i < 3; i++) ZT_ASSERT(zt_policy_decide(p, &rb).rule_index == 0);
  zt_policy_hits(p, hits);
  ZT_ASSERT(atomic_load(&ka->hits) == 5);
  ZT_ASSERT(hits[0] == 8);
  ZT_ASSERT(hits[1] == 0);
  ZT_ASSERT(hits[2] == 0);
  zt_policy_release(p);
}

ZT_TEST(on_reload_and_mode_accessors) {
  zt_policy_t *p = load_ok("trust_domain: example.org\non_reload: keep_established\n"
                           "mode: audit\ndefault: allow\n");
  zt_policy_t *q = load_ok("trust_domain: example.org\non_reload: recheck\n");
  zt_policy_t *r = load_ok("trust_domain: example.org\n");
  ZT_ASSERT(p && q && r);
  bool kp = zt_policy_keep_established(p), kq = zt_policy_keep_established(q);
  bool kr = zt_policy_keep_established(r), ap = zt_policy_audit(p);
  zt_action_t dp = zt_policy_default_action(p), dr = zt_policy_default_action(r);
  zt_policy_release(p);
  zt_policy_release(q);
  zt_policy_release(r);
  ZT_ASSERT(kp && !kq && !kr && ap);
  ZT_ASSERT(dp == ZT_ALLOW && dr == ZT_DENY);
}

ZT_TEST(many_ranges_take_the_bitmap_and_overlaps_merge) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: many\n    action: allow\n    from: [\"*\"]\n"
                           "    to: {ports: [1, 3, 5, \"7-9\", \"8-12\", 65535, 20]}\n"
                           "  - name: same-set\n    action: allow\n"
                           "    from: [spiffe://example.org/x]\n"
                           "    to: {ports: [1, 3, 5, \"7-9\", \"8-12\", 65535, 20]}\n"
                           "  - name: adjacent\n    action: allow\n"
                           "    from: [spiffe://example.org/y]\n"
                           "    to: {ports: [\"100-199\", \"200-299\", 300]}\n");
  static const req_case_t cases[] = {
    {"spiffe://example.org/a", 1, NULL, NULL, A, "many"},
    {"spiffe://example.org/a", 2, NULL, NULL, D, "default"},
    {"spiffe://example.org/a", 12, NULL, NULL, A, "many"},
    {"spiffe://example.org/a", 13, NULL, NULL, D, "default"},
    {"spiffe://example.org/a", 65535, NULL, NULL, A, "many"},
    {"spiffe://example.org/a", 0, NULL, NULL, D, "default"},
    {"spiffe://example.org/x", 20, NULL, NULL, A, "many"},
    {"spiffe://example.org/y", 199, NULL, NULL, A, "adjacent"},
    {"spiffe://example.org/y", 200, NULL, NULL, A, "adjacent"},
    {"spiffe://example.org/y", 300, NULL, NULL, A, "adjacent"},
    {"spiffe://example.org/y", 301, NULL, NULL, D, "default"},
  };
  ZT_ASSERT(p != NULL);
  CHECK(p, cases, true);
}

ZT_TEST(deny_wins_across_exact_prefix_and_star_with_ports) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "rules:\n"
                           "  - name: ns-all\n    action: allow\n"
                           "    from: [\"spiffe://example.org/ns/*\"]\n"
                           "  - name: exact-b\n    action: allow\n"
                           "    from: [spiffe://example.org/ns/a/b, spiffe://example.org/z]\n"
                           "    to: {ports: [\"8000-8099\"]}\n"
                           "  - name: no-deep\n    action: deny\n"
                           "    from: [\"spiffe://example.org/ns/a/b/*\", spiffe://example.org/q]\n"
                           "  - name: no-high\n    action: deny\n    from: [\"*\"]\n"
                           "    to: {ports: [\"9000-9999\"]}\n"
                           "  - name: no-ns-a-on-22\n    action: deny\n"
                           "    from: [\"spiffe://example.org/ns/a/*\", \"spiffe://example.org/ns/a/*\"]\n"
                           "    to: {ports: [22]}\n");
  static const req_case_t cases[] = {
    {"spiffe://example.org/ns/a/b", 8050, NULL, NULL, A, "ns-all"},
    {"spiffe://example.org/ns/a/b/c", 8050, NULL, NULL, D, "no-deep"},
    {"spiffe://example.org/ns/a/b/c", 9500, NULL, NULL, D, "no-deep"},
    {"spiffe://example.org/ns/a/bc", 9500, NULL, NULL, D, "no-high"},
    {"spiffe://example.org/ns/a/bc", 22, NULL, NULL, D, "no-ns-a-on-22"},
    {"spiffe://example.org/ns/a", 22, NULL, NULL, A, "ns-all"},
    {"spiffe://example.org/ns", 22, NULL, NULL, D, "default"},
    {"spiffe://example.org/z", 8000, NULL, NULL, A, "exact-b"},
    {"spiffe://example.org/z", 7999, NULL, NULL, D, "default"},
    {"spiffe://example.org/z", 9000, NULL, NULL, D, "no-high"},
    {"spiffe://example.org/q", 1, NULL, NULL, D, "no-deep"},
  };
  ZT_ASSERT(p != NULL);
  CHECK(p, cases, true);
}

ZT_TEST(audit_mode_with_http_and_prefixes) {
  zt_policy_t *p = load_ok("trust_domain: example.org\n"
                           "mode: audit\n"
                           "rules:\n"
                           "  - name: api\n    action: allow\n"
                           "    from: [\"spiffe://example.org/*\"]\n"
                           "    http: {paths: [/api/*]}\n"
                           "  - name: no-frag\n    action: deny\n    from: [\"*\"]\n"
                           "    http: {methods: [DELETE], paths: [/api/x]}\n");
  static const req_case_t cases[] = {
    {"spiffe://example.org/w", 80, "GET", "/api/x", A, "api"},
    {"spiffe://example.org/w", 80, "DELETE", "/api/x#frag", D, "no-frag"},
    {"spiffe://example.org/w", 80, "DELETE", "/api/x?y", D, "no-frag"},
    {"spiffe://example.org/w", 80, "DELETE", "/api/xy", A, "api"},
    {"spiffe://example.org", 80, "GET", "/api/x", D, "default"},
  };
  ZT_ASSERT(p != NULL);
  CHECK(p, cases, false);
}

/* ---- load errors --------------------------------------------------------------- */

typedef struct {
  const char *text;
  const char *want;   /* after "<file>:" */
} err_case_t;

#define R0 "trust_domain: example.org\nrules:\n  - name: r\n    action: allow\n"

static const err_case_t load_errors[] = {
  /* unknown keys */
  {"trust_domain: example.org\nmodes: audit\n",
   "2:1: policy: unknown key \"modes\""},
  {R0 "    from: [\"*\"]\n    port: 80\n",
   "6:5: rules[0]: unknown key \"port\""},
  {R0 "    from: [\"*\"]\n    to: {port: [80]}\n",
   "6:10: rules[0].to: unknown key \"port\""},
  {R0 "    from: [\"*\"]\n    http: {method: [GET]}\n",
   "6:12: rules[0].http: unknown key \"method\""},
  {"trust_domain: example.org\ntrust_domain: example.com\n",
   "2:1: policy: key \"trust_domain\" given twice"},
  /* wrong types */
  {"- trust_domain: example.org\n",
   "1:1: policy: expected a mapping, found a list"},
  {"trust_domain: [example.org]\n",
   "1:15: trust_domain: expected a string, found a list"},
  {"trust_domain: example.org\nrules: {}\n",
   "2:8: rules: expected a list, found a mapping"},
  {"trust_domain: example.org\nrules:\n  - just-a-name\n",
   "3:5: rules[0]: expected a mapping, found a scalar"},
  {R0 "    from: spiffe://example.org/a\n",
   "5:11: rules[0].from: expected a list, found a scalar"},
  {R0 "    from: [\"*\"]\n    to: {ports: 80}\n",
   "6:17: rules[0].to.ports: expected a list, found a scalar"},
  {R0 "    from: [\"*\"]\n    to: {ports: [[80]]}\n",
   "6:18: rules[0].to.ports[0]: expected a port (1..65535) or a range \"A-B\""},
  /* missing required keys */
  {"mode: audit\n",
   "1:1: policy: missing required key \"trust_domain\""},
  {"trust_domain: example.org\nrules:\n  - action: allow\n    from: [\"*\"]\n",
   "3:5: rules[0]: missing required key \"name\""},
  {"trust_domain: example.org\nrules:\n  - name: r\n    from: [\"*\"]\n",
   "3:5: rules[0]: missing required key \"action\""},
  {R0, "3:5: rules[0]: missing required key \"from\""},
  {R0 "    from: []\n", "5:11: rules[0].from: must not be empty"},
  {R0 "    from: [\"*\"]\n    to: {}\n",
   "6:9: rules[0].to: missing required key \"ports\""},
  {R0 "    from: [\"*\"]\n    http: {}\n",
   "6:11: rules[0].http: expected \"methods\", \"paths\" or both"},
  /* trust domain, mode, default, action */
  {"trust_domain: Example.org\n",
   "1:15: trust_domain: \"Example.org\" is not a valid trust domain: trust domain "
   "contains an uppercase letter"},
  {"trust_domain: example.org\nmode: permissive\n",
   "2:7: mode: \"permissive\" is not enforce or audit"},
  {"trust_domain: example.org\ndefault: maybe\n",
   "2:10: default: \"maybe\" is not deny or allow"},
  {"trust_domain: example.org\nrules:\n  - name: r\n    action: permit\n",
   "4:13: rules[0].action: \"permit\" is not allow or deny"},
  /* from entries */
  {R0 "    from:\n      - spiffe://example.org/a\n      - spiffe://example.org/b/\n",
   "7:9: rules[0].from[1]: \"spiffe://example.org/b/\" is not a valid SPIFFE ID: path "
   "has a trailing slash"},
  {R0 "    from: [\"spiffe://example.org/a*\"]\n",
   "5:12: rules[0].from[0]: \"spiffe://example.org/a*\" is not a valid SPIFFE ID: path "
   "segment contains an invalid character (a pattern is \"*\" or ends in \"/*\")"},
  {R0 "    from: [\"spiffe://Example.org/*\"]\n",
   "5:12: rules[0].from[0]: \"spiffe://Example.org/*\" is not a valid SPIFFE ID "
   "pattern: trust domain contains an uppercase letter"},
  {R0 "    from: [\"spiffe://example.org//*\"]\n",
   "5:12: rules[0].from[0]: \"spiffe://example.org//*\" is not a valid SPIFFE ID "
   "pattern: path has a trailing slash"},
  {R0 "    from: [example.org/a]\n",
   "5:12: rules[0].from[0]: \"example.org/a\" is not a valid SPIFFE ID: scheme is "
   "missing or is not \"spiffe://\""},
  /* ports */
  {R0 "    from: [\"*\"]\n    to: {ports: [80, 0]}\n",
   "6:22: rules[0].to.ports[1]: \"0\" is not a port (1..65535)"},
  {R0 "    from: [\"*\"]\n    to: {ports: [65536]}\n",
   "6:18: rules[0].to.ports[0]: \"65536\" is not a port (1..65535)"},
  {R0 "    from: [\"*\"]\n    to: {ports: [\"9100-9000\"]}\n",
   "6:18: rules[0].to.ports[0]: \"9100-9000\" is not a valid range: 9100 is above "
   "9000"},
  {R0 "    from: [\"*\"]\n    to: {ports: [\"80-\"]}\n",
   "6:18: rules[0].to.ports[0]: \"80-\" is not a port range \"A-B\" with A and B in "
   "1..65535"},
  {R0 "    from: [\"*\"]\n    to: {ports: [-1]}\n",
   "6:18: rules[0].to.ports[0]: \"-1\" is not a port range \"A-B\" with A and B in "
   "1..65535"},
  {R0 "    from: [\"*\"]\n    to: {ports: [http]}\n",
   "6:18: rules[0].to.ports[0]: \"http\" is not a port (1..65535)"},
  {R0 "    from: [\"*\"]\n    to: {ports: []}\n",
   "6:17: rules[0].to.ports: must not be empty (leave out \"to\" for every port)"},
  /* http */
  {R0 "    from: [\"*\"]\n    http: {methods: [get]}\n",
   "6:22: rules[0].http.methods[0]: \"get\" is not an uppercase HTTP method such as "
   "GET"},
  {R0 "    from: [\"*\"]\n    http: {paths: [api/*]}\n",
   "6:20: rules[0].http.paths[0]: \"api/*\" must start with \"/\""},
  {R0 "    from: [\"*\"]\n    http: {paths: [\"/api*\"]}\n",
   "6:20: rules[0].http.paths[0]: \"/api*\" may use \"*\" only as a final \"/*\""},
  {R0 "    from: [\"*\"]\n    http: {paths: [\"/a?b=1\"]}\n",
   "6:20: rules[0].http.paths[0]: \"/a?b=1\" must not contain a query or fragment"},
  {R0 "    from: [\"*\"]\n    http: {paths: []}\n",
   "6:19: rules[0].http.paths: must not be empty"},
  /* rule names */
  {R0 "    from: [\"*\"]\n  - name: r\n    action: deny\n    from: [\"*\"]\n",
   "6:11: rules[1].name: \"r\" is already the name of rules[0] (line 3)"},
  {"trust_domain: example.org\nrules:\n  - name: default\n",
   "3:11: rules[0].name: \"default\" is reserved for the default decision"},
  {"trust_domain: example.org\nrules:\n  - name: \"a b\"\n",
   "3:11: rules[0].name: \"a b\" must be 1 to 128 letters, digits or . _ - : /"},
  /* on_reload */
  {"trust_domain: example.org\non_reload: close\n",
   "2:12: on_reload: \"close\" is not recheck or keep_established"},
  {"trust_domain: example.org\non_reload: [keep_established]\n",
   "2:12: on_reload: expected a string, found a list"},
  /* YAML itself */
  {"trust_domain: [example.org\n",
   "2:1: YAML syntax error: did not find expected ',' or ']' while parsing a flow "
   "sequence"},
};

ZT_TEST(each_load_error_names_file_line_and_column) {
  size_t i;
  for (i = 0; i < sizeof(load_errors) / sizeof(load_errors[0]); i++) {
    char path[128], got[1024], want[1024];
    zt_policy_t *p;
    int rc = load_text(load_errors[i].text, &p, path, sizeof(path), got, sizeof(got));
    zt_policy_release(p);
    snprintf(want, sizeof(want), "%s:%s", path, load_errors[i].want);
    if (rc != -1 || strcmp(got, want) != 0)
      fprintf(stderr, "  case %zu:\n    got  %s\n    want %s\n", i, got, want);
    ZT_ASSERT(rc == -1);
    ZT_ASSERT_STR_EQ(got, want);
  }
}

ZT_TEST(empty_and_missing_files_are_errors_without_a_position) {
  char path[128], got[1024], want[1024];
  zt_policy_t *p = NULL;
  zt_error_t err;
  ZT_ASSERT(load_text("", &p, path, sizeof(path), got, sizeof(got)) == -1);
  snprintf(want, sizeof(want), "%s: policy is empty", path);
  ZT_ASSERT_STR_EQ(got, want);
  ZT_ASSERT(p == NULL);
  ZT_ASSERT(zt_policy_load("/nonexistent/zt/policy.yaml", &p, &err) == -1);
  ZT_ASSERT(p == NULL);
  ZT_ASSERT(strncmp(zt_error_str(&err, got, sizeof(got)),
                    "/nonexistent/zt/policy.yaml: cannot open", 40) == 0);
}

ZT_TEST(error_messages_escape_control_characters) {
  char small[16], path[128], got[1024];
  zt_policy_t *p = NULL;
  zt_error_t err;
  /* A key written with a YAML escape: its newline must not start a line of its own. */
  ZT_ASSERT(load_text("trust_domain: example.org\n"
                      "\"x\\nztproxy: error: forged\": 1\n", &p, path, sizeof(path),
                      got, sizeof(got)) == -1);
  ZT_ASSERT(p == NULL);
  ZT_ASSERT(strchr(got, '\n') == NULL);
  ZT_ASSERT(strstr(got, "x\\x0aztproxy: error: forged") != NULL);
  zt_error_set(&err, "f\x01", 1, 2, "a\tb\x7f");
  ZT_ASSERT_STR_EQ(zt_error_str(&err, got, sizeof(got)), "f\\x01:1:2: a\\x09b\\x7f");
  snprintf(small, sizeof(small), "abcdefghij\n");
  zt_escape_controls(small, sizeof(small));
  ZT_ASSERT_STR_EQ(small, "abcdefghij\\x0a");
  /* What does not fit is cut, and the string stays terminated. */
  snprintf(small, sizeof(small), "ab\ncdefghijklm");
  zt_escape_controls(small, sizeof(small));
  ZT_ASSERT_STR_EQ(small, "ab\\x0acdefghijk");
  snprintf(small, sizeof(small), "abcdefghijklm\n");
  zt_escape_controls(small, sizeof(small));
  ZT_ASSERT_STR_EQ(small, "abcdefghijkl");
}

ZT_TEST_MAIN(ZT_RUN(exact_id_matches_only_itself),
             ZT_RUN(prefix_stops_at_segment_boundary),
             ZT_RUN(trust_domain_wildcard_matches_every_workload_of_that_domain),
             ZT_RUN(star_matches_any_authenticated_peer),
             ZT_RUN(ports_and_ranges),
             ZT_RUN(deny_wins_over_an_earlier_allow),
             ZT_RUN(default_deny_and_default_allow),
             ZT_RUN(audit_mode_decides_the_same_but_does_not_enforce),
             ZT_RUN(http_rules_need_method_and_path),
             ZT_RUN(peer_id_length_is_what_counts),
             ZT_RUN(rule_index_is_the_file_order_index_and_default_is_minus_one),
             ZT_RUN(hits_count_decide_but_not_decide_nocount),
             ZT_RUN(hits_in_keys_and_in_rules_add_up),
             ZT_RUN(long_ids_alike_but_for_their_ends_are_told_apart),
             ZT_RUN(on_reload_and_mode_accessors),
             ZT_RUN(many_ranges_take_the_bitmap_and_overlaps_merge),
             ZT_RUN(deny_wins_across_exact_prefix_and_star_with_ports),
             ZT_RUN(audit_mode_with_http_and_prefixes),
             ZT_RUN(refcount_keeps_the_snapshot_until_the_last_release),
             ZT_RUN(each_load_error_names_file_line_and_column),
             ZT_RUN(empty_and_missing_files_are_errors_without_a_position),
             ZT_RUN(error_messages_escape_control_characters))
