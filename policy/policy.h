/* policy/policy.h: the micro-segmentation allow-list.
 *
 * A policy file (YAML, see README "Policy reference") is loaded into an immutable,
 * reference-counted snapshot. Decisions are pure functions of the snapshot and the
 * request: no allocation, no I/O, no locks, so any worker thread may call
 * zt_policy_decide() on a snapshot it holds a reference to.
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
  const char *peer_id; size_t peer_id_len;  /* a validated SPIFFE ID */
  uint16_t port;                            /* destination port */
  const char *method, *path;                /* NULL on L4 (tcp) listeners */
} zt_request_t;

typedef struct {
  zt_action_t action;     /* what the policy decided */
  const char *rule;       /* deciding rule's name, or "default"; owned by the policy */
  bool enforced;          /* false in mode: audit (the traffic is let through) */
} zt_decision_t;

/* Load and validate file. 0 and *out (refcount 1) on success; -1 and err filled with
 * file:line:column on any error. */
int zt_policy_load(const char *file, zt_policy_t **out, zt_error_t *err);

zt_decision_t zt_policy_decide(const zt_policy_t *p, const zt_request_t *r);

zt_policy_t *zt_policy_retain(zt_policy_t *p);   /* atomic; returns p */
void zt_policy_release(zt_policy_t *p);          /* atomic; frees at zero; NULL ok */

const char *zt_policy_file(const zt_policy_t *p);
const char *zt_policy_trust_domain(const zt_policy_t *p);

/* True when some rule has an http: section; such a policy only makes sense on an HTTP
 * listener (on a tcp listener method and path are NULL, so those rules never match). */
bool zt_policy_has_http_rules(const zt_policy_t *p);

#endif
