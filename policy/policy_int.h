/* policy/policy_int.h: the snapshot's layout, shared by the policy/ sources only.
 *
 * policy.c parses the YAML into rules (one allocation, deny rules first, each class in
 * file order: a rule's "position" is its index in that order, and the decision is the
 * matching rule of lowest position). policy_index.c compiles the indexes the data path
 * uses and decides; policy_lint.c explains and lints. Nothing here is public API.
 *
 * Patterns are written "/\*" in comments (C comments cannot hold a slash-star).
 */
#ifndef ZT_POLICY_INT_H
#define ZT_POLICY_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

typedef enum { FROM_ANY, FROM_EXACT, FROM_BELOW } from_kind_t;

typedef struct {
  const char *s;       /* EXACT: the ID; BELOW: the base ID plus its '/' */
  size_t len;
  from_kind_t kind;
  int line, col;       /* of the entry in the file */
} pol_from_t;

typedef struct { uint16_t lo, hi; } pol_ports_t;

typedef struct {
  const char *s;       /* method; or path, without the star of a final "/\*" */
  size_t len;
  bool below;          /* path ended in "/\*": s is a prefix ending in '/' */
} pol_str_t;

/* Port sets with more ranges than this get a bitmap; smaller ones are compared inline
 * (a bitmap per distinct single port would cost 8 KiB each for nothing). */
#define POL_PORTS_INLINE 4
#define POL_BITMAP_BYTES 8192

typedef struct {
  const char *name;
  zt_action_t action;
  bool http;                                    /* has an http: section */
  uint32_t index;                               /* in file order */
  int line, col;                                /* of the rule's mapping */
  const pol_from_t *from; size_t n_from;        /* never empty */
  pol_ports_t *ports; size_t n_ports;           /* sorted, merged; 0: every port */
  const uint8_t *bitmap;                        /* shared; NULL: compare ports inline */
  const pol_str_t *methods; size_t n_methods;   /* 0: every method */
  const pol_str_t *paths; size_t n_paths;       /* 0: every path */
} pol_rule_t;

/* One key of the ID index: an exact ID, or a segment-boundary prefix ("spiffe://td/"
 * or "spiffe://td/a/"), with the positions (ascending) of the rules naming it. A list
 * of one is stored in place: its _off is the position itself. A slot with len 0 is
 * empty. 32 bytes, so two slots share a cache line and none straddles one. */
typedef struct {
  const char *s;
  uint32_t h;                                   /* high half of the key's hash */
  uint32_t len;
  uint32_t exact_off, exact_n;                  /* rules with this exact ID */
  uint32_t below_off, below_n;                  /* rules with this prefix "/\*" */
} pol_key_t;

/* What a decision reads of a rule, by position, 32 bytes (two to a cache line): the
 * hit counter lives here so that counting touches no other line. */
#define POL_HOT_PORTS 2
typedef struct {
  _Atomic uint64_t hits;
  const char *name;
  uint32_t index;                               /* file order */
  uint8_t action;
  uint8_t http;                                 /* look at the rule's http section */
  uint8_t ports;                                /* 0 every port; 1..2 inline; 3 cold */
  uint8_t pad_;
  pol_ports_t port[POL_HOT_PORTS];
} pol_hot_t;

#define POL_BELOW_LEN_MAX 2112                  /* > longest pattern (2048 + '/') */

struct zt_policy {
  atomic_size_t refs;
  const char *file, *trust_domain;              /* in the same allocation */
  zt_action_t dflt;
  bool audit, has_http, keep_established;
  bool has_below;                               /* some rule names a prefix */
  int default_line, default_col;                /* of "default: allow"; 0 if absent */
  size_t n_rules;
  pol_rule_t *rules;                            /* deny rules, then allow rules */

  /* Compiled by zt_policy__compile (policy_index.c); each its own allocation. */
  uint32_t *by_file;                            /* file index -> position */
  pol_key_t *keys;                              /* open addressing, power of two */
  size_t key_mask;                              /* slots - 1; keys NULL when no key */
  uint32_t *lists;                              /* the keys' position lists */
  uint32_t *any; size_t n_any;                  /* positions of rules with "*" */
  uint64_t below_lens[POL_BELOW_LEN_MAX / 64];  /* lengths of the prefix keys */
  uint8_t *bitmaps;                             /* shared port bitmaps */
  pol_hot_t *hot;                               /* by position, 64-byte aligned;
                                                 * [n_rules].hits counts the default */
};

/* A key's ascending list of positions (exact or below), n entries. */
static inline const uint32_t *zt_policy__key_list(const zt_policy_t *p,
                                                  const pol_key_t *k, bool below,
                                                  uint32_t *n) {
  *n = below ? k->below_n : k->exact_n;
  if (*n == 1) return below ? &k->below_off : &k->exact_off;
  return p->lists + (below ? k->below_off : k->exact_off);
}

/* Build the indexes of a parsed policy; 0, or -1 when out of memory. */
int zt_policy__compile(zt_policy_t *p);
void zt_policy__free_index(zt_policy_t *p);

/* The plain checks the index is built from, shared with explain and lint. */
bool zt_policy__port_in(const pol_rule_t *rule, uint16_t port);
bool zt_policy__http_matches(const pol_rule_t *rule, const zt_request_t *r,
                             size_t path_len);
bool zt_policy__from_matches(const pol_from_t *f, const char *id, size_t len);

/* The index's key lookup: the slot of s[0..len), or NULL. */
const pol_key_t *zt_policy__find_key(const zt_policy_t *p, const char *s, size_t len);

#endif
