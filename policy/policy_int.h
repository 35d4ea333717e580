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

/* A port set as the data path reads it; its kind is in the POL_HOW_ byte. */
typedef union {
  pol_ports_t r[2];
  const uint8_t *bitmap;
} pol_portset_t;

enum {
  POL_PORTS_ANY,                                /* no to.ports: every port */
  POL_PORTS_ONE,                                /* r[0] */
  POL_PORTS_TWO,                                /* r[0], r[1] */
  POL_PORTS_BITMAP,                             /* bitmap */
  POL_PORTS_RULE                                /* the rule's own ranges (3..4) */
};

/* One byte of what a decision needs of a rule besides its ports. */
#define POL_HOW_ALLOW 0x01                      /* else deny */
#define POL_HOW_HTTP 0x02                       /* look at the rule's http section */
#define POL_HOW_PORTS(how) ((how) >> 2)         /* POL_PORTS_* */

/* One key of the ID index: an exact ID, or a segment-boundary prefix ("spiffe://td/"
 * or "spiffe://td/a/"), and the rules naming it: ascending position lists of those
 * naming it exactly and of those naming it as a prefix.
 *
 * The table is open addressing in two arrays: one control byte per slot (empty, or 7
 * bits of the key's hash; 128 KiB for 100,000 keys, so a probe that finds nothing
 * rarely leaves the L2 cache) and 64-byte slots, one cache line each, read only when
 * the control byte matches. A slot holds the key's bytes past "spiffe://" (every key
 * starts with it), and when one rule alone names the key (the common case) all a
 * decision needs of that rule, with a hit counter of its own: such a decision reads a
 * line of control bytes and one slot, and nothing else of the index (a layout with
 * the key's bytes and the rule elsewhere costs three cache misses at 100,000 rules).
 * Otherwise pos indexes the key's lists in p->key_lists.
 *
 * A key of up to POL_KEY_SKIP + POL_KEY_INLINE bytes is whole in the slot. A longer
 * one keeps its first POL_KEY_LONG bytes past the scheme there and, in the last four
 * bytes of in[], the offset of the whole key: comparing its end reads one more line.
 * Strings are kept as offsets from the snapshot, which holds them all. */
#define POL_CTRL_EMPTY 0x80
#define POL_CTRL_GROUP 16                       /* control bytes compared at once */
#define POL_KEY_SKIP 9                          /* strlen("spiffe://") */
#define POL_KEY_INLINE 32
#define POL_KEY_LONG (POL_KEY_INLINE - 4)

enum { POL_KEY_LISTS, POL_KEY_EXACT1, POL_KEY_BELOW1 };   /* pol_key_t's where */

typedef struct {
  uint16_t len;                                 /* of the whole key */
  uint8_t where;                                /* POL_KEY_ */
  uint8_t how;                                  /* in place: the rule's POL_HOW_ byte */
  uint32_t pos;                                 /* in place: the rule's position;
                                                 * else its index in key_lists */
  pol_portset_t ports;                          /* in place: the rule's ports */
  _Atomic uint64_t hits;                        /* in place: the rule's decisions by
                                                 * this key */
  uint32_t index;                               /* in place: the rule's file index */
  uint32_t name;                                /* in place: the rule's name */
  char in[POL_KEY_INLINE];                      /* the key from POL_KEY_SKIP on (see
                                                 * above for a long one) */
} pol_key_t;

_Static_assert(sizeof(pol_key_t) == 64, "a slot is one cache line");

typedef struct {
  uint32_t exact_off, exact_n;                  /* in p->lists */
  uint32_t below_off, below_n;
} pol_lists_t;

/* What a decision reads of a rule, by position, 32 bytes (two to a cache line): the
 * hit counter lives here so that counting touches no other line. */
typedef struct {
  _Atomic uint64_t hits;
  const char *name;
  uint32_t index;                               /* file order */
  uint8_t how;                                  /* POL_HOW_ */
  uint8_t pad_[3];
  pol_portset_t ports;
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
  uint8_t *ctrl;                                /* the keys' control bytes, and a
                                                 * copy of the first POL_CTRL_GROUP */
  pol_key_t *keys;                              /* their slots, a power of two */
  size_t key_mask;                              /* slots - 1; keys NULL when no key */
  pol_lists_t *key_lists;                       /* of the keys not in place */
  uint32_t *lists;                              /* the position lists */
  uint32_t *any; size_t n_any;                  /* positions of rules with "*" */
  uint64_t below_lens[POL_BELOW_LEN_MAX / 64];  /* lengths of the prefix keys */
  uint8_t *bitmaps;                             /* shared port bitmaps */
  pol_hot_t *hot;                               /* by position; [n_rules].hits
                                                 * counts the default */
};

/* A key's ascending list of positions (exact or below), n entries. */
static inline const uint32_t *zt_policy__key_list(const zt_policy_t *p,
                                                  const pol_key_t *k, bool below,
                                                  uint32_t *n) {
  const pol_lists_t *l;
  if (k->where != POL_KEY_LISTS) {
    *n = k->where == (below ? POL_KEY_BELOW1 : POL_KEY_EXACT1);
    return &k->pos;
  }
  l = &p->key_lists[k->pos];
  *n = below ? l->below_n : l->exact_n;
  return p->lists + (below ? l->below_off : l->exact_off);
}

/* Build the indexes of a parsed policy; 0, or -1 when out of memory. */
int zt_policy__compile(zt_policy_t *p);
void zt_policy__free_index(zt_policy_t *p);

/* Zeroed, 64-byte aligned memory for a table; 2 MiB and more on huge pages where the
 * kernel gives them (fewer TLB misses on random lookups). Freed with free(). */
void *zt_policy__alloc(size_t bytes);

/* The plain checks the index is built from, shared with explain and lint. */
bool zt_policy__port_in(const pol_rule_t *rule, uint16_t port);
bool zt_policy__http_matches(const pol_rule_t *rule, const zt_request_t *r,
                             size_t path_len);
bool zt_policy__from_matches(const pol_from_t *f, const char *id, size_t len);

/* The index's key lookup: the slot of s[0..len), or NULL. */
const pol_key_t *zt_policy__find_key(const zt_policy_t *p, const char *s, size_t len);

#endif
