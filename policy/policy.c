/* policy/policy.c: policy YAML -> one immutable, refcounted snapshot; its lifetime.
 *
 * Loading walks the libyaml document twice with the same code: the first pass
 * validates everything (every error carries the offending node's file:line:column)
 * and measures, the second copies into a single allocation laid out as
 *
 *   [zt_policy_t][rules][from entries][port ranges][methods and paths][strings]
 *
 * Rules are stored deny-first (each class in file order); a rule's index in that order
 * is its "position", and the decision is the matching rule of lowest position. Then
 * policy_index.c compiles the indexes the data path decides with (each in its own
 * allocation, freed with the snapshot), and policy_lint.c explains and lints.
 *
 * Matching semantics (written "/\*" here, as C comments cannot hold a slash-star):
 * "spiffe://td/a/\*" matches IDs strictly below /a on a segment boundary (stored as
 * "spiffe://td/a/" and matched as a proper prefix), so "spiffe://td/\*" matches every
 * workload ID of td but not the bare trust-domain ID "spiffe://td" (workload SVIDs
 * always have a path). HTTP paths "/api/\*" match every path starting with "/api/";
 * the request path is compared up to its query ('?') or fragment ('#').
 */
#include "policy.h"
#include "policy_int.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spiffe.h"
#include "zt_yaml.h"

/* A rule name already seen, for the duplicate check (a hash set, so that a policy of
 * 100,000 rules does not take n^2 comparisons to load). */
typedef struct {
  const yaml_node_t *node;                      /* the name's value node; NULL: empty */
  size_t idx;                                   /* its rule's index */
} name_slot_t;

/* One pass over the document. While measuring (fill == false) nothing is written
 * through the array pointers (they are NULL); the counters only grow. While filling
 * they are cursors into the allocation sized by the measuring pass. */
typedef struct {
  zt_yaml_t *y;
  zt_error_t *err;
  bool fill;
  pol_rule_t *rules;
  pol_from_t *from;
  pol_ports_t *ports;
  pol_str_t *strs;
  char *pool;
  size_t n_rules, n_deny, n_from, n_ports, n_strs, n_pool;
  size_t deny_at, allow_at;                     /* next rule slot of each class */
  name_slot_t *names;                           /* measuring pass: seen rule names */
  size_t names_mask;
} build_t;


static const char *put_str(build_t *b, const char *s, size_t len) {
  char *d = NULL;
  if (b->fill) {
    d = b->pool + b->n_pool;
    memcpy(d, s, len);
    d[len] = '\0';
  }
  b->n_pool += len + 1;
  return d;
}

static int fail(build_t *b, yaml_node_t *n, const char *fmt, ...) ZT_PRINTF(3, 4);
static int fail(build_t *b, yaml_node_t *n, const char *fmt, ...) {
  char msg[ZT_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return zt_yaml_fail(b->y, n, b->err, "%s", msg);
}

/* ---- from ---------------------------------------------------------------------- */

static int parse_from(build_t *b, yaml_node_t *n, const char *what) {
  const char *s, *why;
  size_t len;
  pol_from_t f;
  if (zt_yaml_str(b->y, n, what, &s, b->err)) return -1;
  len = strlen(s);
  if (len == 1 && s[0] == '*') {
    f.s = NULL;
    f.len = 0;
    f.kind = FROM_ANY;
  } else if (len >= 2 && s[len - 2] == '/' && s[len - 1] == '*') {
    if (zt_spiffe_id_parse(s, len - 2, NULL, &why))
      return fail(b, n, "%s: \"%s\" is not a valid SPIFFE ID pattern: %s", what, s, why);
    f.len = len - 1;  /* keep the '/': the match must stop on a segment boundary */
    f.s = put_str(b, s, f.len);
    f.kind = FROM_BELOW;
  } else {
    if (zt_spiffe_id_parse(s, len, NULL, &why))
      return fail(b, n, "%s: \"%s\" is not a valid SPIFFE ID: %s%s", what, s, why,
                  strchr(s, '*') ? " (a pattern is \"*\" or ends in \"/*\")" : "");
    f.len = len;
    f.s = put_str(b, s, len);
    f.kind = FROM_EXACT;
  }
  f.line = (int)n->start_mark.line + 1;
  f.col = (int)n->start_mark.column + 1;
  if (b->fill) b->from[b->n_from] = f;
  b->n_from++;
  return 0;
}

/* ---- to.ports ------------------------------------------------------------------ */

/* 1..65535 from s[0..len), digits only (no sign, no 0x, no spaces). */
static int port_num(const char *s, size_t len, unsigned *out) {
  unsigned v = 0;
  size_t i;
  if (len == 0 || len > 5) return -1;
  for (i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v < 1 || v > 65535) return -1;
  *out = v;
  return 0;
}

static int parse_port(build_t *b, yaml_node_t *n, const char *what) {
  const char *s, *dash;
  unsigned lo, hi;
  pol_ports_t r;
  if (n == NULL || n->type != YAML_SCALAR_NODE)
    return fail(b, n, "%s: expected a port (1..65535) or a range \"A-B\"", what);
  if (zt_yaml_str(b->y, n, what, &s, b->err)) return -1;
  dash = strchr(s, '-');
  if (dash == NULL) {
    if (port_num(s, strlen(s), &lo))
      return fail(b, n, "%s: \"%s\" is not a port (1..65535)", what, s);
    hi = lo;
  } else {
    if (port_num(s, (size_t)(dash - s), &lo) ||
        port_num(dash + 1, strlen(dash + 1), &hi))
      return fail(b, n, "%s: \"%s\" is not a port range \"A-B\" with A and B in "
                  "1..65535", what, s);
    if (lo > hi)
      return fail(b, n, "%s: \"%s\" is not a valid range: %u is above %u", what, s, lo,
                  hi);
  }
  r.lo = (uint16_t)lo;
  r.hi = (uint16_t)hi;
  if (b->fill) b->ports[b->n_ports] = r;
  b->n_ports++;
  return 0;
}

static int parse_to(build_t *b, yaml_node_t *n, const char *rule_what,
                    pol_rule_t *rule) {
  static const char *const keys[] = {"ports", NULL};
  char what[64], item_what[96];
  yaml_node_t *ports, *it;
  size_t i, start = b->n_ports;
  snprintf(what, sizeof(what), "%s.to", rule_what);
  if (zt_yaml_check_keys(b->y, n, keys, what, b->err)) return -1;
  ports = zt_yaml_get(b->y, n, "ports");
  if (ports == NULL) return fail(b, n, "%s: missing required key \"ports\"", what);
  snprintf(what, sizeof(what), "%s.to.ports", rule_what);
  if (zt_yaml_want_seq(b->y, ports, what, b->err)) return -1;
  if (zt_yaml_len(ports) == 0)
    return fail(b, ports, "%s: must not be empty (leave out \"to\" for every port)",
                what);
  for (i = 0; (it = zt_yaml_item(b->y, ports, i)); i++) {
    snprintf(item_what, sizeof(item_what), "%s[%zu]", what, i);
    if (parse_port(b, it, item_what)) return -1;
  }
  rule->ports = b->fill ? b->ports + start : NULL;
  rule->n_ports = b->n_ports - start;
  return 0;
}

/* ---- http ---------------------------------------------------------------------- */

static int parse_method(build_t *b, yaml_node_t *n, const char *what) {
  const char *s;
  size_t i, len;
  pol_str_t m;
  if (zt_yaml_str(b->y, n, what, &s, b->err)) return -1;
  len = strlen(s);
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (i > 0 && ((c >= '0' && c <= '9') || c == '-' ||
                                               c == '_'))))
      break;
  }
  if (len == 0 || len > 32 || i < len)
    return fail(b, n, "%s: \"%s\" is not an uppercase HTTP method such as GET", what, s);
  m.len = len;
  m.s = put_str(b, s, len);
  m.below = false;
  if (b->fill) b->strs[b->n_strs] = m;
  b->n_strs++;
  return 0;
}

static int parse_path(build_t *b, yaml_node_t *n, const char *what) {
  const char *s;
  size_t i, len;
  pol_str_t p;
  if (zt_yaml_str(b->y, n, what, &s, b->err)) return -1;
  len = strlen(s);
  if (len == 0 || s[0] != '/')
    return fail(b, n, "%s: \"%s\" must start with \"/\"", what, s);
  p.below = len >= 2 && s[len - 2] == '/' && s[len - 1] == '*';
  p.len = p.below ? len - 1 : len;
  for (i = 0; i < p.len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c >= 0x7f)
      return fail(b, n, "%s: \"%s\" contains a space, control or non-ASCII character",
                  what, s);
    if (c == '?' || c == '#')
      return fail(b, n, "%s: \"%s\" must not contain a query or fragment", what, s);
    if (c == '*')
      return fail(b, n, "%s: \"%s\" may use \"*\" only as a final \"/*\"", what, s);
  }
  p.s = put_str(b, s, p.len);
  if (b->fill) b->strs[b->n_strs] = p;
  b->n_strs++;
  return 0;
}

static int parse_str_list(build_t *b, yaml_node_t *n, const char *what,
                          int (*item)(build_t *, yaml_node_t *, const char *),
                          const pol_str_t **out, size_t *n_out) {
  char item_what[96];
  yaml_node_t *it;
  size_t i, start = b->n_strs;
  if (zt_yaml_want_seq(b->y, n, what, b->err)) return -1;
  if (zt_yaml_len(n) == 0) return fail(b, n, "%s: must not be empty", what);
  for (i = 0; (it = zt_yaml_item(b->y, n, i)); i++) {
    snprintf(item_what, sizeof(item_what), "%s[%zu]", what, i);
    if (item(b, it, item_what)) return -1;
  }
  *out = b->fill ? b->strs + start : NULL;
  *n_out = b->n_strs - start;
  return 0;
}

static int parse_http(build_t *b, yaml_node_t *n, const char *rule_what,
                      pol_rule_t *rule) {
  static const char *const keys[] = {"methods", "paths", NULL};
  char what[64];
  yaml_node_t *methods, *paths;
  snprintf(what, sizeof(what), "%s.http", rule_what);
  if (zt_yaml_check_keys(b->y, n, keys, what, b->err)) return -1;
  methods = zt_yaml_get(b->y, n, "methods");
  paths = zt_yaml_get(b->y, n, "paths");
  if (methods == NULL && paths == NULL)
    return fail(b, n, "%s: expected \"methods\", \"paths\" or both", what);
  if (methods) {
    snprintf(what, sizeof(what), "%s.http.methods", rule_what);
    if (parse_str_list(b, methods, what, parse_method, &rule->methods, &rule->n_methods))
      return -1;
  }
  if (paths) {
    snprintf(what, sizeof(what), "%s.http.paths", rule_what);
    if (parse_str_list(b, paths, what, parse_path, &rule->paths, &rule->n_paths))
      return -1;
  }
  rule->http = true;
  return 0;
}

/* ---- rules --------------------------------------------------------------------- */

int zt_policy_name_ok(const char *s) {
  size_t i, len = strlen(s);
  if (len == 0 || len > 128) return 0;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_' || c == '.' || c == ':' || c == '/'))
      return 0;
  }
  return 1;
}

static int parse_rule(build_t *b, yaml_node_t *rules, size_t idx, zt_policy_t *p) {
  static const char *const keys[] = {"name", "action", "from", "to", "http", NULL};
  char what[32], sub[64];
  yaml_node_t *n = zt_yaml_item(b->y, rules, idx), *v, *it;
  const char *name, *action_s;
  zt_action_t action;
  pol_rule_t scratch, *rule;
  size_t i, from_start;

  snprintf(what, sizeof(what), "rules[%zu]", idx);
  if (zt_yaml_check_keys(b->y, n, keys, what, b->err)) return -1;

  if ((v = zt_yaml_get(b->y, n, "name")) == NULL)
    return fail(b, n, "%s: missing required key \"name\"", what);
  snprintf(sub, sizeof(sub), "%s.name", what);
  if (zt_yaml_str(b->y, v, sub, &name, b->err)) return -1;
  if (!zt_policy_name_ok(name))
    return fail(b, v, "%s: \"%s\" must be 1 to 128 letters, digits or . _ - : /", sub,
                name);
  /* "default" is what a decision by the default action reports: keep logs unambiguous. */
  if (strcmp(name, "default") == 0)
    return fail(b, v, "%s: \"default\" is reserved for the default decision", sub);
  if (b->names) {
    uint64_t h = 1469598103934665603ull;
    const char *c;
    for (c = name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    for (i = (size_t)h & b->names_mask; b->names[i].node; i = (i + 1) & b->names_mask) {
      const yaml_node_t *other = b->names[i].node;
      if (strcmp((const char *)other->data.scalar.value, name) == 0)
        return fail(b, v, "%s: \"%s\" is already the name of rules[%zu] (line %d)",
                    sub, name, b->names[i].idx, (int)other->start_mark.line + 1);
    }
    b->names[i].node = v;
    b->names[i].idx = idx;
  }

  if ((v = zt_yaml_get(b->y, n, "action")) == NULL)
    return fail(b, n, "%s: missing required key \"action\"", what);
  snprintf(sub, sizeof(sub), "%s.action", what);
  if (zt_yaml_str(b->y, v, sub, &action_s, b->err)) return -1;
  if (strcmp(action_s, "allow") == 0) action = ZT_ALLOW;
  else if (strcmp(action_s, "deny") == 0) action = ZT_DENY;
  else return fail(b, v, "%s: \"%s\" is not allow or deny", sub, action_s);

  if (b->fill)
    rule = &b->rules[action == ZT_DENY ? b->deny_at++ : b->allow_at++];
  else
    rule = &scratch;
  memset(rule, 0, sizeof(*rule));
  rule->name = put_str(b, name, strlen(name));
  rule->action = action;
  rule->index = (uint32_t)idx;
  rule->line = (int)n->start_mark.line + 1;
  rule->col = (int)n->start_mark.column + 1;
  if (action == ZT_DENY) b->n_deny++;
  b->n_rules++;

  if ((v = zt_yaml_get(b->y, n, "from")) == NULL)
    return fail(b, n, "%s: missing required key \"from\"", what);
  snprintf(sub, sizeof(sub), "%s.from", what);
  if (zt_yaml_want_seq(b->y, v, sub, b->err)) return -1;
  if (zt_yaml_len(v) == 0) return fail(b, v, "%s: must not be empty", sub);
  from_start = b->n_from;
  for (i = 0; (it = zt_yaml_item(b->y, v, i)); i++) {
    snprintf(sub, sizeof(sub), "%s.from[%zu]", what, i);
    if (parse_from(b, it, sub)) return -1;
  }
  rule->from = b->fill ? b->from + from_start : NULL;
  rule->n_from = b->n_from - from_start;

  if ((v = zt_yaml_get(b->y, n, "to")) && parse_to(b, v, what, rule)) return -1;
  if ((v = zt_yaml_get(b->y, n, "http"))) {
    if (parse_http(b, v, what, rule)) return -1;
    p->has_http = true;
  }
  return 0;
}

static int parse_policy(build_t *b, zt_policy_t *p) {
  static const char *const keys[] = {"trust_domain", "mode", "default", "on_reload",
                                     "rules", NULL};
  yaml_node_t *root = zt_yaml_root(b->y), *v;
  const char *s, *why;
  size_t i;

  p->file = put_str(b, b->y->file, strlen(b->y->file));
  if (root == NULL) return fail(b, NULL, "policy is empty");
  if (zt_yaml_check_keys(b->y, root, keys, "policy", b->err)) return -1;

  if ((v = zt_yaml_get(b->y, root, "trust_domain")) == NULL)
    return fail(b, root, "policy: missing required key \"trust_domain\"");
  if (zt_yaml_str(b->y, v, "trust_domain", &s, b->err)) return -1;
  if (zt_trust_domain_check(s, strlen(s), &why))
    return fail(b, v, "trust_domain: \"%s\" is not a valid trust domain: %s", s, why);
  p->trust_domain = put_str(b, s, strlen(s));

  p->audit = false;
  if ((v = zt_yaml_get(b->y, root, "mode"))) {
    if (zt_yaml_str(b->y, v, "mode", &s, b->err)) return -1;
    if (strcmp(s, "audit") == 0) p->audit = true;
    else if (strcmp(s, "enforce") != 0)
      return fail(b, v, "mode: \"%s\" is not enforce or audit", s);
  }

  p->dflt = ZT_DENY;
  if ((v = zt_yaml_get(b->y, root, "default"))) {
    if (zt_yaml_str(b->y, v, "default", &s, b->err)) return -1;
    if (strcmp(s, "allow") == 0) p->dflt = ZT_ALLOW;
    else if (strcmp(s, "deny") != 0)
      return fail(b, v, "default: \"%s\" is not deny or allow", s);
    if (p->dflt == ZT_ALLOW) {
      p->default_line = (int)v->start_mark.line + 1;
      p->default_col = (int)v->start_mark.column + 1;
    }
  }

  p->keep_established = false;
  if ((v = zt_yaml_get(b->y, root, "on_reload"))) {
    if (zt_yaml_str(b->y, v, "on_reload", &s, b->err)) return -1;
    if (strcmp(s, "keep_established") == 0) p->keep_established = true;
    else if (strcmp(s, "recheck") != 0)
      return fail(b, v, "on_reload: \"%s\" is not recheck or keep_established", s);
  }

  p->has_http = false;
  if ((v = zt_yaml_get(b->y, root, "rules"))) {
    int rc = 0;
    if (zt_yaml_want_seq(b->y, v, "rules", b->err)) return -1;
    /* Names are checked once, while measuring; the filling pass reads the same. */
    if (!b->fill) {
      size_t slots = 16;
      while (slots < 2 * zt_yaml_len(v)) slots *= 2;
      if ((b->names = calloc(slots, sizeof(*b->names))) == NULL)
        return fail(b, NULL, "out of memory loading the policy");
      b->names_mask = slots - 1;
    }
    for (i = 0; i < zt_yaml_len(v) && rc == 0; i++) rc = parse_rule(b, v, i, p);
    free(b->names);
    b->names = NULL;
    if (rc) return -1;
  }
  p->n_rules = b->n_rules;
  p->rules = b->rules;
  return 0;
}

static size_t align_up(size_t off, size_t a) { return (off + a - 1) / a * a; }

int zt_policy_load(const char *file, zt_policy_t **out, zt_error_t *err) {
  zt_yaml_t y;
  build_t m, b;
  zt_policy_t scratch;
  size_t off_rules, off_from, off_ports, off_strs, off_pool, total;
  char *mem = NULL;

  *out = NULL;
  if (zt_yaml_load(&y, file, err)) return -1;
  memset(&m, 0, sizeof(m));
  m.y = &y;
  m.err = err;
  memset(&scratch, 0, sizeof(scratch));
  if (parse_policy(&m, &scratch)) goto fail;

  off_rules = align_up(sizeof(zt_policy_t), alignof(pol_rule_t));
  off_from = align_up(off_rules + m.n_rules * sizeof(pol_rule_t), alignof(pol_from_t));
  off_ports = align_up(off_from + m.n_from * sizeof(pol_from_t), alignof(pol_ports_t));
  off_strs = align_up(off_ports + m.n_ports * sizeof(pol_ports_t), alignof(pol_str_t));
  off_pool = off_strs + m.n_strs * sizeof(pol_str_t);
  total = off_pool + m.n_pool;
  mem = zt_policy__alloc(total);
  if (mem == NULL) {
    zt_error_set(err, file, 0, 0, "out of memory loading the policy");
    goto fail;
  }

  memset(&b, 0, sizeof(b));
  b.y = &y;
  b.err = err;
  b.fill = true;
  b.rules = (pol_rule_t *)(mem + off_rules);
  b.from = (pol_from_t *)(mem + off_from);
  b.ports = (pol_ports_t *)(mem + off_ports);
  b.strs = (pol_str_t *)(mem + off_strs);
  b.pool = mem + off_pool;
  b.deny_at = 0;
  b.allow_at = m.n_deny;
  /* Same document, same code: this pass cannot fail, but if it did the snapshot would
   * be half-written, so treat it as an error rather than trust it. */
  if (parse_policy(&b, (zt_policy_t *)mem) || b.n_pool != m.n_pool ||
      b.n_rules != m.n_rules) {
    zt_error_set(err, file, 0, 0, "internal error building the policy");
    goto fail;
  }
  atomic_init(&((zt_policy_t *)mem)->refs, 1);
  if (zt_policy__compile((zt_policy_t *)mem)) {
    zt_error_set(err, file, 0, 0, "out of memory compiling the policy");
    zt_policy__free_index((zt_policy_t *)mem);
    goto fail;
  }
  zt_yaml_free(&y);
  *out = (zt_policy_t *)mem;
  return 0;

fail:
  free(mem);
  zt_yaml_free(&y);
  return -1;
}

zt_policy_t *zt_policy_retain(zt_policy_t *p) {
  atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
  return p;
}

void zt_policy_release(zt_policy_t *p) {
  if (p == NULL) return;
  /* acq_rel: the last releaser must see every other holder's reads finished. */
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
    zt_policy__free_index(p);
    free(p);
  }
}

const char *zt_policy_file(const zt_policy_t *p) { return p->file; }

const char *zt_policy_trust_domain(const zt_policy_t *p) { return p->trust_domain; }

bool zt_policy_has_http_rules(const zt_policy_t *p) { return p->has_http; }

bool zt_policy_audit(const zt_policy_t *p) { return p->audit; }

zt_action_t zt_policy_default_action(const zt_policy_t *p) { return p->dflt; }

bool zt_policy_keep_established(const zt_policy_t *p) { return p->keep_established; }

size_t zt_policy_rule_count(const zt_policy_t *p) { return p->n_rules; }

static const pol_rule_t *rule_at(const zt_policy_t *p, size_t i) {
  return i < p->n_rules ? &p->rules[p->by_file[i]] : NULL;
}

const char *zt_policy_rule_name(const zt_policy_t *p, size_t i) {
  const pol_rule_t *r = rule_at(p, i);
  return r ? r->name : NULL;
}

zt_action_t zt_policy_rule_action(const zt_policy_t *p, size_t i) {
  const pol_rule_t *r = rule_at(p, i);
  return r ? r->action : ZT_DENY;
}

int zt_policy_rule_line(const zt_policy_t *p, size_t i) {
  const pol_rule_t *r = rule_at(p, i);
  return r ? r->line : 0;
}
