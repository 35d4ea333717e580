/* tests/unit/test_policy_engine.c: the compiled policy engine against a plain linear
 * reference evaluator, over thousands of random policies and requests.
 *
 * Policies are generated as C structs from a small universe of trust domains, path
 * segments, ports, methods and paths (so that exact IDs, prefixes at every depth, port
 * ranges and http sections collide often), rendered to YAML, loaded through
 * zt_policy_load, and every request is decided by both the engine and ref_decide()
 * below, which reads the spec literally: the first matching deny rule in file order,
 * else the first matching allow rule in file order, else the default. The generator is
 * seeded and the counts are fixed, so a run is deterministic; a failure prints the
 * seed, the policy and the request.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy.h"
#include "zt_test.h"

#define N_POLICIES 2500
#define N_REQUESTS 300
#define MAX_RULES 14
#define MAX_LIST 6

/* ---- a deterministic generator -------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rnd(uint32_t n) {            /* uniform-ish in [0, n) */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)(((rng_state * 0x2545f4914f6cdd1dull) >> 32) % n);
}

static bool chance(uint32_t percent) { return rnd(100) < percent; }

static const char *const kTds[] = {"a.test", "b.test"};
/* The long segment takes IDs past the bytes a key keeps inline (policy_int.h), so
 * that keys alike in those and different after them are compared in full. */
static const char *const kSegs[] = {"x", "y", "xy", "long-segment-past-the-inline-bytes"};
static const char *const kMethods[] = {"GET", "POST", "PUT", "DELETE"};
static const char *const kRulePaths[] = {"/a", "/a/*", "/a/b", "/b/*", "/", "/*"};
static const char *const kReqPaths[] = {"/a", "/a/", "/a/b", "/a/b?q=1", "/ab", "/b",
                                        "/b/c", "/", "/a#f", "/a/b/c", "/b/"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* "spiffe://TD" plus depth random segments. */
static void gen_id(char *buf, size_t len, int depth) {
  size_t at = (size_t)snprintf(buf, len, "spiffe://%s", kTds[rnd(COUNT(kTds))]);
  for (int i = 0; i < depth && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "/%s", kSegs[rnd(COUNT(kSegs))]);
}

/* ---- the model ------------------------------------------------------------------ */

typedef enum { M_ANY, M_EXACT, M_BELOW } mkind_t;

typedef struct {
  mkind_t kind;
  char s[192];                 /* EXACT: the ID; BELOW: the base, without "/\*" */
} mfrom_t;

typedef struct {
  char name[16];
  bool deny, http;
  mfrom_t from[MAX_LIST]; int n_from;
  unsigned lo[MAX_LIST], hi[MAX_LIST]; int n_ports;   /* 0: every port */
  const char *methods[MAX_LIST]; int n_methods;       /* 0: every method */
  const char *paths[MAX_LIST]; int n_paths;           /* 0: every path */
} mrule_t;

typedef struct {
  bool default_allow, audit;
  mrule_t rules[MAX_RULES]; int n_rules;
} mpolicy_t;

static void gen_policy(mpolicy_t *m) {
  memset(m, 0, sizeof(*m));
  m->default_allow = chance(30);
  m->audit = chance(20);
  m->n_rules = (int)rnd(MAX_RULES + 1);
  for (int i = 0; i < m->n_rules; i++) {
    mrule_t *r = &m->rules[i];
    snprintf(r->name, sizeof(r->name), "r%d", i);
    r->deny = chance(35);
    r->n_from = 1 + (int)rnd(3);
    for (int j = 0; j < r->n_from; j++) {
      uint32_t k = rnd(100);
      mfrom_t *f = &r->from[j];
      if (k < 8) f->kind = M_ANY;
      else if (k < 55) { f->kind = M_EXACT; gen_id(f->s, sizeof(f->s), 1 + (int)rnd(3)); }
      else { f->kind = M_BELOW; gen_id(f->s, sizeof(f->s), (int)rnd(3)); }
    }
    if (chance(60)) {
      r->n_ports = 1 + (int)rnd(MAX_LIST);   /* up to 6 ranges: inline and bitmap sets */
      for (int j = 0; j < r->n_ports; j++) {
        uint32_t k = rnd(100);
        if (k < 5) { r->lo[j] = 60000; r->hi[j] = 65535; }
        else if (k < 7) { r->lo[j] = 1; r->hi[j] = 65535; }
        else if (k < 60) r->lo[j] = r->hi[j] = 1 + rnd(12);
        else { r->lo[j] = 1 + rnd(12); r->hi[j] = r->lo[j] + rnd(4); }
      }
    }
    if (chance(25)) {
      r->http = true;
      bool want_m = chance(60), want_p = !want_m || chance(60);
      if (want_m) {
        r->n_methods = 1 + (int)rnd(3);
        for (int j = 0; j < r->n_methods; j++) r->methods[j] = kMethods[rnd(3)];
      }
      if (want_p) {
        r->n_paths = 1 + (int)rnd(3);
        for (int j = 0; j < r->n_paths; j++)
          r->paths[j] = kRulePaths[rnd(COUNT(kRulePaths))];
      }
    }
  }
}

static size_t render(const mpolicy_t *m, char *buf, size_t len) {
  size_t at = 0;
#define OUT(...) at += (size_t)snprintf(buf + at, at < len ? len - at : 0, __VA_ARGS__)
  OUT("trust_domain: a.test\n");
  if (m->audit) OUT("mode: audit\n");
  OUT("default: %s\n", m->default_allow ? "allow" : "deny");
  OUT("rules:%s\n", m->n_rules ? "" : " []");
  for (int i = 0; i < m->n_rules; i++) {
    const mrule_t *r = &m->rules[i];
    OUT("  - name: %s\n    action: %s\n    from:\n", r->name, r->deny ? "deny" : "allow");
    for (int j = 0; j < r->n_from; j++) {
      const mfrom_t *f = &r->from[j];
      if (f->kind == M_ANY) OUT("      - \"*\"\n");
      else if (f->kind == M_EXACT) OUT("      - %s\n", f->s);
      else OUT("      - \"%s/*\"\n", f->s);
    }
    if (r->n_ports) {
      OUT("    to:\n      ports: [");
      for (int j = 0; j < r->n_ports; j++) {
        if (r->lo[j] == r->hi[j]) OUT("%s%u", j ? ", " : "", r->lo[j]);
        else OUT("%s\"%u-%u\"", j ? ", " : "", r->lo[j], r->hi[j]);
      }
      OUT("]\n");
    }
    if (r->http) {
      OUT("    http:\n");
      if (r->n_methods) {
        OUT("      methods: [");
        for (int j = 0; j < r->n_methods; j++) OUT("%s%s", j ? ", " : "", r->methods[j]);
        OUT("]\n");
      }
      if (r->n_paths) {
        OUT("      paths: [");
        for (int j = 0; j < r->n_paths; j++) OUT("%s\"%s\"", j ? ", " : "", r->paths[j]);
        OUT("]\n");
      }
    }
  }
#undef OUT
  return at;
}

/* ---- the reference: the spec, read literally ------------------------------------ */

static bool ref_from(const mfrom_t *f, const char *id) {
  size_t n;
  switch (f->kind) {
  case M_ANY: return true;
  case M_EXACT: return strcmp(f->s, id) == 0;
  case M_BELOW:
    n = strlen(f->s);
    return strncmp(id, f->s, n) == 0 && id[n] == '/' && id[n + 1] != '\0';
  }
  return false;
}

static bool ref_path(const char *pat, const char *path) {
  char cut[64];
  size_t n = strcspn(path, "?#"), pn = strlen(pat);
  snprintf(cut, sizeof(cut), "%.*s", (int)n, path);
  if (pn >= 2 && strcmp(pat + pn - 2, "/*") == 0)
    return strncmp(cut, pat, pn - 1) == 0;
  return strcmp(cut, pat) == 0;
}

static bool ref_rule(const mrule_t *r, const zt_request_t *q) {
  bool ok = false;
  if (q->peer_id == NULL) return false;
  for (int j = 0; j < r->n_from && !ok; j++) ok = ref_from(&r->from[j], q->peer_id);
  if (!ok) return false;
  if (r->n_ports) {
    ok = false;
    for (int j = 0; j < r->n_ports && !ok; j++)
      ok = q->port >= r->lo[j] && q->port <= r->hi[j];
    if (!ok) return false;
  }
  if (!r->http) return true;
  if (q->method == NULL || q->path == NULL) return false;
  ok = r->n_methods == 0;
  for (int j = 0; j < r->n_methods && !ok; j++) ok = strcmp(r->methods[j], q->method) == 0;
  if (!ok) return false;
  ok = r->n_paths == 0;
  for (int j = 0; j < r->n_paths && !ok; j++) ok = ref_path(r->paths[j], q->path);
  return ok;
}

/* The deciding rule's index in file order, or -1 for the default. */
static int ref_decide(const mpolicy_t *m, const zt_request_t *q) {
  for (int i = 0; i < m->n_rules; i++)
    if (m->rules[i].deny && ref_rule(&m->rules[i], q)) return i;
  for (int i = 0; i < m->n_rules; i++)
    if (!m->rules[i].deny && ref_rule(&m->rules[i], q)) return i;
  return -1;
}

/* ---- the property --------------------------------------------------------------- */

static void gen_request(zt_request_t *q, char *id, size_t id_len) {
  static const uint16_t ports[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16,
                                   59999, 60000, 60001, 65535};
  memset(q, 0, sizeof(*q));
  if (chance(3)) {
    q->peer_id = NULL;
  } else {
    gen_id(id, id_len, (int)rnd(5));           /* depth 0: the bare trust-domain ID */
    q->peer_id = id;
    q->peer_id_len = strlen(id);
  }
  q->port = ports[rnd(COUNT(ports))];
  if (chance(50)) {
    q->method = kMethods[rnd(COUNT(kMethods))];
    q->path = kReqPaths[rnd(COUNT(kReqPaths))];
  }
}

static int write_file(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  if (fwrite(text, 1, len, f) != len) {
    fclose(f);
    return -1;
  }
  return fclose(f);
}

ZT_TEST(compiled_engine_equals_linear_reference_on_random_policies) {
  static char text[64 * 1024];
  static mpolicy_t m;
  char dir[] = "/tmp/zt_policy_prop.XXXXXX", path[64];
  uint64_t seed = 0x5eedf00dcafe1234ull;
  long decisions = 0, http_rule_hits = 0, prefix_policies = 0;
  int failures = 0;
  ZT_ASSERT(mkdtemp(dir) != NULL);
  snprintf(path, sizeof(path), "%s/policy.yaml", dir);
  rng_state = seed;
  for (int pi = 0; pi < N_POLICIES && failures == 0; pi++) {
    zt_policy_t *p;
    zt_error_t err;
    uint64_t want_hits[MAX_RULES + 1] = {0};
    size_t len;
    gen_policy(&m);
    len = render(&m, text, sizeof(text));
    if (len >= sizeof(text) || write_file(path, text, len)) {
      failures++;
      break;
    }
    if (zt_policy_load(path, &p, &err)) {
      char msg[1024];
      fprintf(stderr, "  policy %d does not load: %s\n%s", pi,
              zt_error_str(&err, msg, sizeof(msg)), text);
      failures++;
      break;
    }
    for (int i = 0; i < m.n_rules; i++)
      for (int j = 0; j < m.rules[i].n_from; j++)
        if (m.rules[i].from[j].kind == M_BELOW) { prefix_policies++; i = m.n_rules; break; }
    for (int qi = 0; qi < N_REQUESTS; qi++) {
      char id[256];
      zt_request_t q;
      zt_decision_t d, d2;
      int want;
      gen_request(&q, id, sizeof(id));
      want = ref_decide(&m, &q);
      d = zt_policy_decide(p, &q);
      d2 = zt_policy_decide_nocount(p, &q);
      decisions++;
      want_hits[want < 0 ? m.n_rules : want]++;
      if (want >= 0 && m.rules[want].http) http_rule_hits++;
      bool want_allow = want < 0 ? m.default_allow : !m.rules[want].deny;
      if (d.rule_index != want || (d.action == ZT_ALLOW) != want_allow ||
          strcmp(d.rule, want < 0 ? "default" : m.rules[want].name) != 0 ||
          d.enforced != !m.audit || d2.rule_index != d.rule_index ||
          d2.action != d.action) {
        fprintf(stderr, "  seed %#llx policy %d request %d: from %s port %u %s %s: "
                "engine rules[%d] %s, reference rules[%d]\n--- policy ---\n%s",
                (unsigned long long)seed, pi, qi, q.peer_id ? q.peer_id : "(none)",
                q.port, q.method ? q.method : "-", q.path ? q.path : "-", d.rule_index,
                d.rule, want, text);
        failures++;
        break;
      }
      /* explain's per-rule check is a second, plain implementation: it must agree. */
      for (int i = 0; qi % 8 == 0 && i < m.n_rules; i++) {
        char why[512];
        if (zt_policy_rule_explain(p, (size_t)i, &q, why, sizeof(why)) !=
            ref_rule(&m.rules[i], &q)) {
          fprintf(stderr, "  policy %d request %d rule %d: explain says %s\n%s", pi, qi,
                  i, why, text);
          failures++;
        }
      }
    }
    uint64_t got_hits[MAX_RULES + 1];
    zt_policy_hits(p, got_hits);
    for (int i = 0; i <= m.n_rules && failures == 0; i++) {
      uint64_t got = got_hits[i];
      if (got != want_hits[i]) {
        fprintf(stderr, "  policy %d: hits of %d: %llu, want %llu\n", pi, i,
                (unsigned long long)got, (unsigned long long)want_hits[i]);
        failures++;
      }
    }
    zt_policy_release(p);
  }
  unlink(path);
  rmdir(dir);
  printf("  %ld decisions over %d policies (%ld with prefixes), %ld decided by an "
         "http rule\n", decisions, N_POLICIES, prefix_policies, http_rule_hits);
  ZT_ASSERT(failures == 0);
  /* The generator must reach the interesting cases, or the property says little. */
  ZT_ASSERT(http_rule_hits > 1000);
  ZT_ASSERT(prefix_policies > N_POLICIES / 2);
}

ZT_TEST_MAIN(ZT_RUN(compiled_engine_equals_linear_reference_on_random_policies))
