/* policy/policy_lint.c: why a rule does or does not match (explain), and the warnings
 * of `ztproxy policy check` (lint). Neither is on the data path.
 *
 * Shadowing is decided per pair of rules: rule D covers rule R when every from entry of
 * R is inside some from entry of D, R's ports are inside D's, and D has no http section
 * or R's methods and paths are inside D's. An allow rule covered by any deny rule, or
 * a rule covered by an earlier rule of the same action, can never decide. Candidates
 * for D are found through the index (the rules whose keys cover R's first from entry),
 * so linting a large policy is not quadratic. Coverage by a union of several rules is
 * not detected.
 *
 * (Patterns are written "/\*" in comments: C comments cannot hold a slash-star.)
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "policy_int.h"

/* ---- a bounded appender for one-line messages ---------------------------------- */

typedef struct {
  char *buf;
  size_t len, at;
} out_t;

static void outf(out_t *o, const char *fmt, ...) ZT_PRINTF(2, 3);
static void outf(out_t *o, const char *fmt, ...) {
  va_list ap;
  int n;
  if (o->len == 0 || o->at >= o->len - 1) return;
  va_start(ap, fmt);
  n = vsnprintf(o->buf + o->at, o->len - o->at, fmt, ap);
  va_end(ap);
  if (n > 0) o->at += (size_t)n < o->len - o->at ? (size_t)n : o->len - o->at - 1;
}

static void out_from(out_t *o, const pol_from_t *f) {
  if (f->kind == FROM_ANY) outf(o, "\"*\"");
  else if (f->kind == FROM_BELOW) outf(o, "\"%.*s*\"", (int)f->len, f->s);
  else outf(o, "\"%.*s\"", (int)f->len, f->s);
}

static void out_ports(out_t *o, const pol_rule_t *rule) {
  size_t i;
  for (i = 0; i < rule->n_ports; i++) {
    outf(o, "%s%u", i ? ", " : "", rule->ports[i].lo);
    if (rule->ports[i].hi != rule->ports[i].lo) outf(o, "-%u", rule->ports[i].hi);
  }
}

static void out_strs(out_t *o, const pol_str_t *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) outf(o, "%s%.*s%s", i ? ", " : "", (int)s[i].len, s[i].s,
                               s[i].below ? "*" : "");
}

/* ---- explain ------------------------------------------------------------------- */

bool zt_policy_rule_explain(const zt_policy_t *p, size_t i, const zt_request_t *r,
                            char *why, size_t why_len) {
  out_t o = {why, why_len, 0};
  const pol_rule_t *rule;
  size_t j, path_len;
  bool ok;
  if (why_len) why[0] = '\0';
  if (i >= p->n_rules) return false;
  rule = &p->rules[p->by_file[i]];

  if (r->peer_id == NULL) {
    outf(&o, "no peer ID: no rule matches an unauthenticated peer");
    return false;
  }
  for (j = 0; j < rule->n_from; j++)
    if (zt_policy__from_matches(&rule->from[j], r->peer_id, r->peer_id_len)) break;
  if (j == rule->n_from) {
    outf(&o, "from: no entry matches %.*s (", (int)r->peer_id_len, r->peer_id);
    for (j = 0; j < rule->n_from; j++) {
      if (j) outf(&o, ", ");
      out_from(&o, &rule->from[j]);
    }
    outf(&o, ")");
    return false;
  }
  outf(&o, "from ");
  out_from(&o, &rule->from[j]);
  outf(&o, " matches; ");

  if (rule->n_ports == 0) {
    outf(&o, "every port");
  } else {
    ok = zt_policy__port_in(rule, r->port);
    outf(&o, "port %u is %sin ", r->port, ok ? "" : "not ");
    out_ports(&o, rule);
    if (!ok) return false;
  }
  if (!rule->http) return true;

  if (r->method == NULL || r->path == NULL) {
    outf(&o, "; http rule, but the request has no method and path (L4)");
    return false;
  }
  for (ok = rule->n_methods == 0, j = 0; !ok && j < rule->n_methods; j++)
    ok = strcmp(rule->methods[j].s, r->method) == 0;
  if (rule->n_methods == 0) outf(&o, "; every method");
  else {
    outf(&o, "; method %s is %sin ", r->method, ok ? "" : "not ");
    out_strs(&o, rule->methods, rule->n_methods);
  }
  if (!ok) return false;
  path_len = strcspn(r->path, "?#");
  ok = zt_policy__http_matches(rule, r, path_len);
  if (rule->n_paths == 0) outf(&o, "; every path");
  else {
    outf(&o, "; path %.*s is %sin ", (int)path_len, r->path, ok ? "" : "not ");
    out_strs(&o, rule->paths, rule->n_paths);
  }
  return ok;
}

/* ---- coverage ------------------------------------------------------------------ */

/* g matches every ID f matches. */
static bool from_covers(const pol_from_t *g, const pol_from_t *f) {
  switch (g->kind) {
  case FROM_ANY:
    return true;
  case FROM_EXACT:
    return f->kind == FROM_EXACT && f->len == g->len && memcmp(f->s, g->s, g->len) == 0;
  case FROM_BELOW:
    if (f->kind == FROM_ANY) return false;
    /* EXACT below the base: strictly longer; BELOW: the same base or a deeper one. */
    if (f->kind == FROM_EXACT ? f->len <= g->len : f->len < g->len) return false;
    return memcmp(f->s, g->s, g->len) == 0;
  }
  return false;
}

static bool ports_cover(const pol_rule_t *d, const pol_rule_t *r) {
  size_t i, j;
  if (d->n_ports == 0) return true;
  if (r->n_ports == 0) return false;      /* r takes every port, port 0 included */
  /* Both are sorted and merged: each range of r must sit inside one range of d. */
  for (i = 0, j = 0; i < r->n_ports; i++) {
    while (j < d->n_ports && d->ports[j].hi < r->ports[i].lo) j++;
    if (j == d->n_ports || d->ports[j].lo > r->ports[i].lo ||
        d->ports[j].hi < r->ports[i].hi)
      return false;
  }
  return true;
}

static bool str_covers(const pol_str_t *g, const pol_str_t *f) {
  if (!g->below) return !f->below && f->len == g->len && memcmp(f->s, g->s, g->len) == 0;
  return f->len >= g->len && memcmp(f->s, g->s, g->len) == 0;
}

/* Every one of f[0..nf) is covered by one of g[0..ng); n == 0 means "every". */
static bool strs_cover(const pol_str_t *g, size_t ng, const pol_str_t *f, size_t nf) {
  size_t i, j;
  if (ng == 0) return true;
  if (nf == 0) return false;
  for (i = 0; i < nf; i++) {
    for (j = 0; j < ng; j++)
      if (str_covers(&g[j], &f[i])) break;
    if (j == ng) return false;
  }
  return true;
}

/* Comparisons of from entries the shadowing check may make for one policy: past it
 * the check stops (and says so), so that a large policy of long, overlapping from
 * lists cannot hold up a load or a reload for minutes. */
#define COVER_BUDGET 50000000u

static bool rule_covers(const pol_rule_t *d, const pol_rule_t *r, size_t *budget) {
  size_t i, j;
  if (!ports_cover(d, r)) return false;   /* first: it costs the least */
  for (i = 0; i < r->n_from; i++) {
    size_t cost = d->n_from < *budget ? d->n_from : *budget;
    *budget -= cost;
    if (*budget == 0) return false;
    for (j = 0; j < d->n_from; j++)
      if (from_covers(&d->from[j], &r->from[i])) break;
    if (j == d->n_from) return false;
  }
  if (!d->http) return true;
  if (!r->http) return false;             /* r also matches L4 requests, d does not */
  return strs_cover(d->methods, d->n_methods, r->methods, r->n_methods) &&
         strs_cover(d->paths, d->n_paths, r->paths, r->n_paths);
}

/* Can rule d take every decision of rule r away? */
static bool takes_precedence(const pol_rule_t *d, const pol_rule_t *r) {
  if (d == r) return false;
  if (d->action == ZT_DENY && r->action == ZT_ALLOW) return true;
  return d->action == r->action && d->index < r->index;
}

static uint32_t first_cover(const zt_policy_t *p, const uint32_t *list, size_t n,
                            const pol_rule_t *r, uint32_t best, size_t *budget) {
  size_t i;
  for (i = 0; i < n && list[i] < best && *budget > 0; i++) {
    const pol_rule_t *d = &p->rules[list[i]];
    if (takes_precedence(d, r) && rule_covers(d, r, budget)) return list[i];
  }
  return best;
}

/* The lowest position of a rule that covers r, or UINT32_MAX. Candidates are the rules
 * whose from entries can cover r's first one: "*", prefix keys at or above it, and
 * the same exact key. */
static uint32_t shadowing_rule(const zt_policy_t *p, const pol_rule_t *r, size_t *budget) {
  const pol_from_t *f = &r->from[0];
  const pol_key_t *k;
  const uint32_t *list;
  uint32_t best = UINT32_MAX, n;
  size_t at;
  best = first_cover(p, p->any, p->n_any, r, best, budget);
  if (f->kind == FROM_ANY) return best;
  for (at = 0; at < f->len; at++) {
    if (f->s[at] != '/') continue;
    if (at + 1 == f->len && f->kind == FROM_EXACT) break;
    if ((k = zt_policy__find_key(p, f->s, at + 1))) {
      list = zt_policy__key_list(p, k, true, &n);
      best = first_cover(p, list, n, r, best, budget);
    }
  }
  if (f->kind == FROM_EXACT && (k = zt_policy__find_key(p, f->s, f->len))) {
    list = zt_policy__key_list(p, k, false, &n);
    best = first_cover(p, list, n, r, best, budget);
  }
  return best;
}

/* ---- lint ---------------------------------------------------------------------- */

typedef struct {
  zt_error_t *w;
  size_t n, cap;
  bool oom;
} warns_t;

static void warn(warns_t *ws, const zt_policy_t *p, int line, int col, const char *fmt,
                 ...) ZT_PRINTF(5, 6);
static void warn(warns_t *ws, const zt_policy_t *p, int line, int col, const char *fmt,
                 ...) {
  char msg[ZT_ERROR_MSG_MAX];
  va_list ap;
  if (ws->n == ws->cap) {
    size_t cap = ws->cap ? ws->cap * 2 : 16;
    zt_error_t *w = realloc(ws->w, cap * sizeof(*w));
    if (w == NULL) {
      ws->oom = true;
      return;
    }
    ws->w = w;
    ws->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  zt_error_set(&ws->w[ws->n++], p->file, line, col, "warning: %s", msg);
}

static int cmp_warn(const void *a, const void *b) {
  const zt_error_t *x = a, *y = b;
  if (x->line != y->line) return x->line < y->line ? -1 : 1;
  return x->col < y->col ? -1 : x->col > y->col;
}

static bool td_known(const char *td, size_t len, const zt_policy_t *p,
                     const char *const *tds, size_t n_tds) {
  size_t i;
  if (strlen(p->trust_domain) == len && memcmp(p->trust_domain, td, len) == 0)
    return true;
  for (i = 0; i < n_tds; i++)
    if (tds[i] && strlen(tds[i]) == len && memcmp(tds[i], td, len) == 0) return true;
  return false;
}

static void lint_trust_domains(warns_t *ws, const zt_policy_t *p, const pol_rule_t *r,
                               const char *const *tds, size_t n_tds) {
  static const size_t scheme = sizeof("spiffe://") - 1;
  char known[ZT_ERROR_MSG_MAX / 2];
  out_t o = {known, sizeof(known), 0};
  size_t i, j;
  outf(&o, "%s", p->trust_domain);
  for (i = 0; i < n_tds; i++)
    if (tds[i]) outf(&o, ", %s", tds[i]);
  for (j = 0; j < r->n_from; j++) {
    const pol_from_t *f = &r->from[j];
    const char *td, *slash;
    size_t td_len;
    if (f->kind == FROM_ANY || f->len <= scheme) continue;
    td = f->s + scheme;
    slash = memchr(td, '/', f->len - scheme);
    td_len = slash ? (size_t)(slash - td) : f->len - scheme;
    if (td_known(td, td_len, p, tds, n_tds)) continue;
    warn(ws, p, f->line, f->col,
         "rules[%u].from[%zu]: trust domain \"%.*s\" of \"%.*s%s\" is outside every "
         "known trust domain (%s)", r->index, j, (int)td_len, td, (int)f->len, f->s,
         f->kind == FROM_BELOW ? "*" : "", known);
  }
}

size_t zt_policy_lint(const zt_policy_t *p, const char *const *tds, size_t n_tds,
                      zt_policy_warn_fn fn, void *ctx) {
  warns_t ws = {NULL, 0, 0, false};
  size_t i, n, budget = COVER_BUDGET;
  if (p->dflt == ZT_ALLOW)
    warn(&ws, p, p->default_line, p->default_col,
         "default: allow lets through every request no rule matches; zero trust wants "
         "default: deny and explicit allow rules");
  for (i = 0; i < p->n_rules; i++) {
    const pol_rule_t *r = &p->rules[p->by_file[i]];
    uint32_t s;
    lint_trust_domains(&ws, p, r, tds, n_tds);
    if (budget > 0 && (s = shadowing_rule(p, r, &budget)) != UINT32_MAX) {
      const pol_rule_t *d = &p->rules[s];
      if (d->action == ZT_DENY && r->action == ZT_ALLOW)
        warn(&ws, p, r->line, r->col,
             "rules[%u] \"%s\" is unreachable: every request it matches is denied by "
             "rules[%u] \"%s\" (line %d), and deny rules win", r->index, r->name,
             d->index, d->name, d->line);
      else
        warn(&ws, p, r->line, r->col,
             "rules[%u] \"%s\" is unreachable: the earlier rules[%u] \"%s\" (line %d) "
             "matches every request it matches",
             r->index, r->name, d->index, d->name, d->line);
    }
  }
  if (budget == 0)
    warn(&ws, p, 0, 0, "the policy is too large to check every rule for being "
         "unreachable: that check stopped part way");
  if (ws.oom)
    warn(&ws, p, 0, 0, "out of memory: some warnings were dropped");
  /* Stable enough: within a line, warnings were added in column order. */
  if (ws.n > 1) qsort(ws.w, ws.n, sizeof(*ws.w), cmp_warn);
  for (i = 0; i < ws.n; i++)
    if (fn) fn(ctx, &ws.w[i]);
  n = ws.n;
  free(ws.w);
  return n;
}
