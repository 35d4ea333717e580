/* policy/policy.h: the micro-segmentation allow-list.
 *
 * A policy file (YAML, see README "Policy reference") is loaded and compiled into an
 * immutable, reference-counted snapshot with indexes (a hash of exact IDs and of
 * segment-boundary prefixes, port bitmaps), so a decision costs about the length of
 * the peer ID, not the number of rules. Decisions are pure functions of the snapshot
 * and the request: no allocation, no I/O, no locks, so any worker thread may call
 * zt_policy_decide() on a snapshot it holds a reference to. The only state a decision
 * touches is the deciding rule's hit counter (a relaxed atomic increment).
 *
 * The decision is exactly: the first matching deny rule in file order, else the first
 * matching allow rule in file order, else the default (rule "default", index -1).
 */
#ifndef ZT_POLICY_H
#define ZT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zt_error.h"

typedef enum { ZT_DENY = 0, ZT_ALLOW = 1 } zt_action_t;

typedef struct zt_policy zt_policy_t;

typedef struct {
  const char *peer_id; size_t peer_id_len;  /* a validated SPIFFE ID; NULL: none */
  uint16_t port;                            /* destination port */
  const char *method, *path;                /* NULL on L4 (tcp) listeners */
} zt_request_t;

typedef struct {
  zt_action_t action;     /* what the policy decided */
  const char *rule;       /* deciding rule's name, or "default"; owned by the policy */
  bool enforced;          /* false in mode: audit (the traffic is let through) */
  int rule_index;         /* deciding rule's index in file order, -1 for the default */
} zt_decision_t;

/* A rule's name, and a listener's: 1-128 characters of [A-Za-z0-9._:/-], fit for
 * log lines, metric labels and JSON as they are. 1 when s is one. */
int zt_policy_name_ok(const char *s);

/* Load, validate and compile file. 0 and *out (refcount 1) on success; -1 and err
 * filled with file:line:column on any error. */
int zt_policy_load(const char *file, zt_policy_t **out, zt_error_t *err);

/* Decide r and count the hit on the deciding rule (or on the default). */
zt_decision_t zt_policy_decide(const zt_policy_t *p, const zt_request_t *r);

/* The same decision without counting: for explain, tests and benchmarks. */
zt_decision_t zt_policy_decide_nocount(const zt_policy_t *p, const zt_request_t *r);

zt_policy_t *zt_policy_retain(zt_policy_t *p);   /* atomic; returns p */
void zt_policy_release(zt_policy_t *p);          /* atomic; frees at zero; NULL ok */

const char *zt_policy_file(const zt_policy_t *p);
const char *zt_policy_trust_domain(const zt_policy_t *p);

/* True when some rule has an http: section; such a policy only makes sense on an HTTP
 * listener (on a tcp listener method and path are NULL, so those rules never match). */
bool zt_policy_has_http_rules(const zt_policy_t *p);

bool zt_policy_audit(const zt_policy_t *p);                /* mode: audit */
zt_action_t zt_policy_default_action(const zt_policy_t *p);

/* on_reload: keep_established. False (the default, on_reload: recheck) means that on a
 * reload to this policy established L4 connections are decided again and those it no
 * longer allows are closed. */
bool zt_policy_keep_established(const zt_policy_t *p);

/* ---- rules and their hit counters (admin endpoint, explain), in file order ------- */

size_t zt_policy_rule_count(const zt_policy_t *p);
const char *zt_policy_rule_name(const zt_policy_t *p, size_t i);
zt_action_t zt_policy_rule_action(const zt_policy_t *p, size_t i);
int zt_policy_rule_line(const zt_policy_t *p, size_t i);      /* 1-based, in the file */
/* Decisions made so far by each rule, in file order, and by the default at
 * hits[zt_policy_rule_count(p)]: the caller's array holds that many plus one. */
void zt_policy_hits(const zt_policy_t *p, uint64_t *hits);

/* Whether rule i (file order) alone matches r, and why or why not, as one line in why
 * (such as: from "*" matches; port 8080 is in 8080, 9000-9099). A plain linear check
 * for explain, never the data path. */
bool zt_policy_rule_explain(const zt_policy_t *p, size_t i, const zt_request_t *r,
                            char *why, size_t why_len);

/* ---- lint ------------------------------------------------------------------------ */

/* Each warning is file:line:col and one sentence (print it with zt_error_str). */
typedef void (*zt_policy_warn_fn)(void *ctx, const zt_error_t *warning);

/* Report, in file order: `default: allow`; rules that can never decide because a deny
 * rule or an earlier rule of the same action covers every request they match; IDs and
 * patterns outside every known trust domain (the policy's trust_domain plus the
 * n_tds names in tds, e.g. federated ones). Returns the number of warnings. */
size_t zt_policy_lint(const zt_policy_t *p, const char *const *tds, size_t n_tds,
                      zt_policy_warn_fn fn, void *ctx);

#endif
