/* policy/policy_index.c: the compiled indexes of a policy snapshot, and decisions.
 *
 * The decision is the matching rule of lowest position (deny rules first, each class in
 * file order), so the engine only has to find, among the rules whose `from` can match
 * the peer ID, the first one in position order whose ports and http section match too.
 * Those rules are found through:
 *
 *   - one open-addressing hash table of keys: every exact ID and every prefix pattern
 *     ("spiffe://td/a/\*" stored as "spiffe://td/a/"; "spiffe://td/\*" is the prefix
 *     "spiffe://td/", so the first level of prefixes is the trust-domain table). A key
 *     carries two ascending position lists: rules naming it exactly, rules naming it
 *     as a prefix; a key named by one rule holds that rule in place (policy_int.h:
 *     control bytes probed 16 at a time, one cache line per key). Prefixes live at
 *     segment boundaries, so the table is a segment trie whose nodes are found by
 *     hashing: a lookup visits the ID's '/' boundaries once, hashing incrementally (8
 *     bytes per step), and probes only the lengths at which some prefix key exists (a
 *     bitset of lengths);
 *   - the list of rules with `from: "*"`;
 *   - per rule, the merged port ranges, or a bitmap (65536 bits, shared between rules
 *     with the same set) when there are more than POL_PORTS_INLINE ranges.
 *
 * Each list is walked in position order and stops at the first full match or at the
 * best position found so far; the decision costs O(length of the ID + rules naming
 * the same keys), not O(rules). Nothing is allocated and nothing is locked; the only
 * write is one relaxed atomic increment of a hit counter: the deciding rule's, or when
 * it is in place in a key (policy_int.h), that key's (zt_policy_hits sums them).
 *
 * (Patterns are written "/\*" in comments: C comments cannot hold a slash-star.)
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "policy.h"
#include "policy_int.h"

#define NO_RULE UINT32_MAX

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    defined(__GNUC__)
#define SWAR 1
#define PREFETCH(a) __builtin_prefetch(a)
#else
#define PREFETCH(a) ((void)(a))
#endif

/* ---- hashing of ID prefixes ---------------------------------------------------- */

/* The hash of s[0..len): whole 8-byte words are absorbed in order (absorb), then the
 * remaining 0..7 bytes, zero-padded, are folded in with the length (finish). So the
 * hash of any prefix is the state after its whole words plus one masked tail: the
 * decision gets the hash of every '/' boundary of the ID in one pass over it. */
#define H_SEED 0x243f6a8885a308d3ull
#define H_MUL 0x9e3779b97f4a7c15ull

static inline uint64_t absorb(uint64_t st, uint64_t w) {
  st = (st ^ w) * H_MUL;
  return st ^ (st >> 29);
}

static inline uint64_t finish(uint64_t st, uint64_t tail, size_t len) {
  uint64_t h = (st ^ tail) * H_MUL ^ (uint64_t)len;
  /* murmur3's finalizer: every input bit reaches the low bits the table indexes by */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

static uint64_t hash_str(const char *s, size_t len) {
  uint64_t st = H_SEED, w;
  size_t at = 0;
  for (; at + 8 <= len; at += 8) {
    memcpy(&w, s + at, 8);
    st = absorb(st, w);
  }
  w = 0;
  memcpy(&w, s + at, len - at);
  return finish(st, w, len);
}

/* Every key starts with "spiffe://"; a query that does not matches none, and one
 * that does is compared from there on. */
static inline bool spiffe_scheme(const char *s, size_t len) {
  return len > POL_KEY_SKIP && len <= UINT16_MAX &&
         memcmp(s, "spiffe://", POL_KEY_SKIP) == 0;
}

static inline uint8_t ctrl_tag(uint64_t h) { return (uint8_t)(h >> 57); }   /* 7 bits */

/* A string of the snapshot, from its offset. */
static inline const char *str_at(const zt_policy_t *p, uint32_t off) {
  return (const char *)p + off;
}

/* s starts with "spiffe://" (spiffe_scheme). */
static inline bool key_is(const zt_policy_t *p, const pol_key_t *k, const char *s,
                          size_t len) {
  uint32_t whole;
  if (k->len != len) return false;
  if (len <= POL_KEY_SKIP + POL_KEY_INLINE)
    return memcmp(k->in, s + POL_KEY_SKIP, len - POL_KEY_SKIP) == 0;
  if (memcmp(k->in, s + POL_KEY_SKIP, POL_KEY_LONG) != 0) return false;
  memcpy(&whole, k->in + POL_KEY_LONG, sizeof(whole));
  return memcmp(str_at(p, whole) + POL_KEY_SKIP + POL_KEY_LONG,
                s + POL_KEY_SKIP + POL_KEY_LONG, len - POL_KEY_SKIP - POL_KEY_LONG) == 0;
}

/* Probing reads 16 control bytes at a time (ctrl has a copy of its first 16 past its
 * end for that): one compare finds the slots whose tag matches before the first empty
 * one, with no branch per slot. */
static inline pol_key_t *find_hashed(const zt_policy_t *p, uint64_t h, const char *s,
                                     size_t len) {
  size_t i = (size_t)h & p->key_mask;
#ifdef __SSE2__
  const __m128i tag = _mm_set1_epi8((char)ctrl_tag(h));
  const __m128i empty = _mm_set1_epi8((char)POL_CTRL_EMPTY);
  for (;; i = (i + POL_CTRL_GROUP) & p->key_mask) {
    __m128i g = _mm_loadu_si128((const __m128i *)(p->ctrl + i));
    unsigned match = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(g, tag));
    unsigned stop = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(g, empty));
    if (stop) match &= (stop & (0u - stop)) - 1;     /* before the first empty slot */
    for (; match; match &= match - 1) {
      pol_key_t *k = &p->keys[(i + (unsigned)__builtin_ctz(match)) & p->key_mask];
      if (key_is(p, k, s, len)) return k;
    }
    if (stop) return NULL;
  }
#else
  uint8_t tag = ctrl_tag(h), c;
  for (;; i = (i + 1) & p->key_mask) {
    if ((c = p->ctrl[i]) == POL_CTRL_EMPTY) return NULL;
    if (c == tag && key_is(p, &p->keys[i], s, len)) return &p->keys[i];
  }
#endif
}

const pol_key_t *zt_policy__find_key(const zt_policy_t *p, const char *s, size_t len) {
  if (p->keys == NULL || !spiffe_scheme(s, len)) return NULL;
  return find_hashed(p, hash_str(s, len), s, len);
}

/* ---- the plain checks ---------------------------------------------------------- */

bool zt_policy__port_in(const pol_rule_t *rule, uint16_t port) {
  size_t i;
  if (rule->n_ports == 0) return true;
  if (rule->bitmap) return (rule->bitmap[port >> 3] >> (port & 7)) & 1;
  for (i = 0; i < rule->n_ports; i++)
    if (port >= rule->ports[i].lo && port <= rule->ports[i].hi) return true;
  return false;
}

static bool path_matches(const pol_str_t *pp, const char *path, size_t path_len) {
  return pp->below ? path_len >= pp->len && memcmp(path, pp->s, pp->len) == 0
                   : path_len == pp->len && memcmp(path, pp->s, pp->len) == 0;
}

bool zt_policy__http_matches(const pol_rule_t *rule, const zt_request_t *r,
                             size_t path_len) {
  size_t i;
  bool ok;
  if (r->method == NULL || r->path == NULL) return false;
  for (ok = rule->n_methods == 0, i = 0; !ok && i < rule->n_methods; i++)
    ok = strcmp(rule->methods[i].s, r->method) == 0;
  if (!ok) return false;
  for (ok = rule->n_paths == 0, i = 0; !ok && i < rule->n_paths; i++)
    ok = path_matches(&rule->paths[i], r->path, path_len);
  return ok;
}

bool zt_policy__from_matches(const pol_from_t *f, const char *id, size_t len) {
  switch (f->kind) {
  case FROM_ANY:
    return true;
  case FROM_EXACT:
    return len == f->len && memcmp(id, f->s, len) == 0;
  case FROM_BELOW:
    /* A validated ID never ends in '/', so len > f->len means at least one more
     * segment below the base. */
    return len > f->len && memcmp(id, f->s, f->len) == 0;
  }
  return false;
}

/* ---- decisions (data path) ----------------------------------------------------- */

static inline bool ports_has(const zt_policy_t *p, unsigned kind, const pol_portset_t *ps,
                             uint32_t pos, uint16_t port) {
  switch (kind) {
  case POL_PORTS_ANY: return true;
  case POL_PORTS_ONE: return port >= ps->r[0].lo && port <= ps->r[0].hi;
  case POL_PORTS_TWO:
    return (port >= ps->r[0].lo && port <= ps->r[0].hi) ||
           (port >= ps->r[1].lo && port <= ps->r[1].hi);
  case POL_PORTS_BITMAP: return (ps->bitmap[port >> 3] >> (port & 7)) & 1;
  default: return zt_policy__port_in(&p->rules[pos], port);
  }
}

/* Does the rule at pos, whose `from` matched, match the rest of the request? */
static inline bool rest_matches(const zt_policy_t *p, uint32_t pos, unsigned how,
                                const pol_portset_t *ps, const zt_request_t *r,
                                size_t path_len) {
  return ports_has(p, POL_HOW_PORTS(how), ps, pos, r->port) &&
         (!(how & POL_HOW_HTTP) || zt_policy__http_matches(&p->rules[pos], r, path_len));
}

/* The rule a decision has found so far: its position (NO_RULE: none yet), and the key
 * it is in place in, if it was found so (else the decision reports p->hot[pos]). */
typedef struct {
  uint32_t pos;
  pol_key_t *key;
} pick_t;

/* The first position in list[0..n) below best's whose rule matches the request past
 * its `from` (which the list already matched) becomes best. */
static inline void scan(const zt_policy_t *p, const uint32_t *list, uint32_t n,
                        pick_t *best, const zt_request_t *r, size_t path_len) {
  uint32_t i;
  for (i = 0; i < n; i++) {
    uint32_t pos = list[i];
    const pol_hot_t *h;
    if (pos >= best->pos) break;
    h = &p->hot[pos];
    if (rest_matches(p, pos, h->how, &h->ports, r, path_len)) {
      best->pos = pos;
      best->key = NULL;
      return;
    }
  }
}

static inline void scan_key(const zt_policy_t *p, pol_key_t *k, bool below,
                            pick_t *best, const zt_request_t *r, size_t path_len) {
  const pol_lists_t *l;
  if (k->where == (below ? POL_KEY_BELOW1 : POL_KEY_EXACT1)) {   /* in place */
    if (k->pos < best->pos && rest_matches(p, k->pos, k->how, &k->ports, r, path_len)) {
      best->pos = k->pos;
      best->key = k;
    }
    return;
  }
  if (k->where != POL_KEY_LISTS) return;
  l = &p->key_lists[k->pos];
  if (below) {
    if (l->below_n) scan(p, p->lists + l->below_off, l->below_n, best, r, path_len);
  } else if (l->exact_n) {
    scan(p, p->lists + l->exact_off, l->exact_n, best, r, path_len);
  }
}

static inline bool below_len_present(const zt_policy_t *p, size_t len) {
  return len < POL_BELOW_LEN_MAX && ((p->below_lens[len >> 6] >> (len & 63)) & 1);
}

/* Candidate prefix keys of one ID: their hashes are all known after one pass, so their
 * slots are prefetched together and the cache misses of a large table overlap. */
#define MAX_CANDS 16
typedef struct {
  uint64_t h[MAX_CANDS];
  uint32_t len[MAX_CANDS];
  unsigned n;
} cands_t;

static void probe_cands(const zt_policy_t *p, const zt_request_t *r, size_t path_len,
                        pick_t *best, cands_t *c) {
  unsigned i;
  for (i = 0; i < c->n; i++) {
    pol_key_t *k = find_hashed(p, c->h[i], r->peer_id, c->len[i]);
    if (k) scan_key(p, k, true, best, r, path_len);
  }
  c->n = 0;
}

/* Note the prefix key ending at the '/' at id[plen - 1] when some prefix key has that
 * length; st and tail as in finish(). */
static inline void add_cand(const zt_policy_t *p, const zt_request_t *r, size_t path_len,
                            pick_t *best, cands_t *c, uint64_t st, uint64_t tail,
                            size_t plen) {
  uint64_t h;
  if (plen >= r->peer_id_len || !below_len_present(p, plen)) return;
  if (c->n == MAX_CANDS) probe_cands(p, r, path_len, best, c);
  h = finish(st, tail, plen);
  PREFETCH(&p->ctrl[(size_t)h & p->key_mask]);
  c->h[c->n] = h;
  c->len[c->n++] = (uint32_t)plen;
}

static void find_rule(const zt_policy_t *p, const zt_request_t *r, pick_t *best) {
  const char *id = r->peer_id;
  size_t len = r->peer_id_len, path_len = 0, at;
  uint64_t st = H_SEED, w, h;
  size_t home;
  pol_key_t *k;
  cands_t c;

  if (id == NULL) return;
  /* The query is not part of what a path rule names; without this cut a deny rule on
   * "/admin" would not see "/admin?x". Measured once, and only when it can matter. */
  if (p->has_http && r->path) path_len = strcspn(r->path, "?#");
  if (p->n_any) scan(p, p->any, (uint32_t)p->n_any, best, r, path_len);
  if (p->keys == NULL || !spiffe_scheme(id, len)) return;

  /* One pass: hash word by word; every '/' ends a candidate prefix key (only proper
   * prefixes match, and only lengths some prefix key has are probed). */
  c.n = 0;
  for (at = 0; at + 8 <= len; at += 8) {
    memcpy(&w, id + at, 8);
    if (p->has_below) {
#ifdef SWAR
      /* high bit of each byte that is '/', exactly (no false positives) */
      uint64_t x = w ^ 0x2f2f2f2f2f2f2f2full;
      uint64_t m = ~(((x & 0x7f7f7f7f7f7f7f7full) + 0x7f7f7f7f7f7f7f7full) | x |
                     0x7f7f7f7f7f7f7f7full);
      for (; m; m &= m - 1) {
        unsigned j = (unsigned)__builtin_ctzll(m) >> 3;   /* the '/' is byte j */
        if (j == 7) add_cand(p, r, path_len, best, &c, absorb(st, w), 0, at + 8);
        else add_cand(p, r, path_len, best, &c, st,
                             w & ((1ull << (8 * (j + 1))) - 1), at + j + 1);
      }
#else
      for (unsigned j = 0; j < 8; j++) {
        uint64_t tail = 0;
        if (id[at + j] != '/') continue;
        memcpy(&tail, id + at, j + 1);
        if (j == 7) add_cand(p, r, path_len, best, &c, absorb(st, w), 0, at + 8);
        else add_cand(p, r, path_len, best, &c, st, tail, at + j + 1);
      }
#endif
    }
    st = absorb(st, w);
  }
  w = 0;
  memcpy(&w, id + at, len - at);
  if (p->has_below) {
    for (size_t j = 0; at + j < len; j++) {
      uint64_t tail = 0;
      if (id[at + j] != '/') continue;
      memcpy(&tail, id + at, j + 1);
      add_cand(p, r, path_len, best, &c, st, tail, at + j + 1);
    }
  }
  h = finish(st, w, len);
  home = (size_t)h & p->key_mask;         /* where the exact key most likely is */
  PREFETCH(&p->ctrl[home]);
  PREFETCH(&p->keys[home]);
  probe_cands(p, r, path_len, best, &c);
  if ((k = find_hashed(p, h, id, len))) scan_key(p, k, false, best, r, path_len);
}

static inline zt_decision_t decide(const zt_policy_t *p, const zt_request_t *r,
                                   bool count) {
  zt_decision_t d;
  pick_t best = {NO_RULE, NULL};
  pol_key_t *k;
  find_rule(p, r, &best);
  d.enforced = !p->audit;
  if ((k = best.key) != NULL) {
    d.action = (k->how & POL_HOW_ALLOW) ? ZT_ALLOW : ZT_DENY;
    d.rule = str_at(p, k->name);
    d.rule_index = (int)k->index;
    if (count) atomic_fetch_add_explicit(&k->hits, 1, memory_order_relaxed);
    return d;
  }
  if (best.pos == NO_RULE) {
    d.action = p->dflt;
    d.rule = "default";
    d.rule_index = -1;
    best.pos = (uint32_t)p->n_rules;         /* the default's counter */
  } else {
    const pol_hot_t *h = &p->hot[best.pos];
    d.action = (h->how & POL_HOW_ALLOW) ? ZT_ALLOW : ZT_DENY;
    d.rule = h->name;
    d.rule_index = (int)h->index;
  }
  if (count) atomic_fetch_add_explicit(&p->hot[best.pos].hits, 1, memory_order_relaxed);
  return d;
}

zt_decision_t zt_policy_decide(const zt_policy_t *p, const zt_request_t *r) {
  return decide(p, r, true);
}

zt_decision_t zt_policy_decide_nocount(const zt_policy_t *p, const zt_request_t *r) {
  return decide(p, r, false);
}

void zt_policy_hits(const zt_policy_t *p, uint64_t *hits) {
  size_t i;
  for (i = 0; i < p->n_rules; i++)
    hits[p->rules[i].index] = atomic_load_explicit(&p->hot[i].hits, memory_order_relaxed);
  hits[p->n_rules] = atomic_load_explicit(&p->hot[p->n_rules].hits, memory_order_relaxed);
  for (i = 0; p->keys && i <= p->key_mask; i++)        /* rules in place in a key */
    if (p->ctrl[i] != POL_CTRL_EMPTY && p->keys[i].where != POL_KEY_LISTS)
      hits[p->keys[i].index] +=
          atomic_load_explicit(&p->keys[i].hits, memory_order_relaxed);
}

/* ---- compiling ----------------------------------------------------------------- */

static int cmp_ports(const void *a, const void *b) {
  const pol_ports_t *x = a, *y = b;
  if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
  return x->hi < y->hi ? -1 : x->hi > y->hi;
}

/* Sort and merge a rule's ranges in place (overlapping or adjacent ranges join). */
static void merge_ports(pol_rule_t *rule) {
  size_t i, n = 0;
  if (rule->n_ports < 2) return;
  qsort(rule->ports, rule->n_ports, sizeof(pol_ports_t), cmp_ports);
  for (i = 1; i < rule->n_ports; i++) {
    pol_ports_t *last = &rule->ports[n];
    if ((uint32_t)rule->ports[i].lo <= (uint32_t)last->hi + 1) {
      if (rule->ports[i].hi > last->hi) last->hi = rule->ports[i].hi;
    } else {
      rule->ports[++n] = rule->ports[i];
    }
  }
  rule->n_ports = n + 1;
}

static uint64_t hash_ports(const pol_rule_t *rule) {
  return hash_str((const char *)rule->ports, rule->n_ports * sizeof(pol_ports_t));
}

static bool same_ports(const pol_rule_t *a, const pol_rule_t *b) {
  return a->n_ports == b->n_ports &&
         memcmp(a->ports, b->ports, a->n_ports * sizeof(pol_ports_t)) == 0;
}

#define HUGE_PAGE ((size_t)2 << 20)
void *zt_policy__alloc(size_t bytes) {
  size_t align = bytes < HUGE_PAGE ? 64 : HUGE_PAGE;
  void *m;
  bytes = bytes ? (bytes + align - 1) / align * align : align;  /* aligned_alloc wants */
  if ((m = aligned_alloc(align, bytes)) == NULL) return NULL;
  if (align == HUGE_PAGE) (void)madvise(m, bytes, MADV_HUGEPAGE);
  memset(m, 0, bytes);
  return m;
}

static size_t pow2_at_least(size_t n) {
  size_t s = 16;
  while (s < n) s *= 2;
  return s;
}

/* Bitmaps for the rules with many ranges, one per distinct set. */
static int build_bitmaps(zt_policy_t *p) {
  size_t i, j, n_big = 0, n_sets = 0, slots, mask;
  uint32_t *owner;              /* slot -> position of the first rule with that set */
  size_t *set_of;               /* slot -> bitmap number */
  for (i = 0; i < p->n_rules; i++) {
    merge_ports(&p->rules[i]);
    if (p->rules[i].n_ports > POL_PORTS_INLINE) n_big++;
  }
  if (n_big == 0) return 0;
  slots = pow2_at_least(n_big * 2);
  mask = slots - 1;
  owner = malloc(slots * sizeof(*owner));
  set_of = malloc(slots * sizeof(*set_of));
  p->bitmaps = calloc(n_big, POL_BITMAP_BYTES);
  if (owner == NULL || set_of == NULL || p->bitmaps == NULL) {
    free(owner);
    free(set_of);
    return -1;
  }
  for (j = 0; j < slots; j++) owner[j] = NO_RULE;
  /* Pass 1: number the distinct sets and fill their bitmaps. */
  for (i = 0; i < p->n_rules; i++) {
    pol_rule_t *rule = &p->rules[i];
    if (rule->n_ports <= POL_PORTS_INLINE) continue;
    for (j = (size_t)hash_ports(rule) & mask; owner[j] != NO_RULE; j = (j + 1) & mask)
      if (same_ports(&p->rules[owner[j]], rule)) break;
    if (owner[j] == NO_RULE) {
      uint8_t *bm = p->bitmaps + n_sets * POL_BITMAP_BYTES;
      size_t k;
      uint32_t port;
      owner[j] = (uint32_t)i;
      set_of[j] = n_sets++;
      for (k = 0; k < rule->n_ports; k++)
        for (port = rule->ports[k].lo; port <= rule->ports[k].hi; port++)
          bm[port >> 3] |= (uint8_t)(1u << (port & 7));
    }
    rule->bitmap = p->bitmaps + set_of[j] * POL_BITMAP_BYTES;
  }
  free(owner);
  free(set_of);
  return 0;
}

/* The offset of a string of the snapshot (they all are in its allocation). */
static int str_off(const zt_policy_t *p, const char *s, uint32_t *off) {
  uintptr_t base = (uintptr_t)p, at = (uintptr_t)s;
  if (at < base || at - base > UINT32_MAX) return -1;
  *off = (uint32_t)(at - base);
  return 0;
}

/* The rule at pos as a decision reads it: its POL_HOW_ byte, and its port set. */
static uint8_t rule_how(const zt_policy_t *p, uint32_t pos, pol_portset_t *ps) {
  const pol_rule_t *rule = &p->rules[pos];
  unsigned kind;
  if (rule->n_ports == 0) {
    kind = POL_PORTS_ANY;
  } else if (rule->bitmap) {
    kind = POL_PORTS_BITMAP;
    ps->bitmap = rule->bitmap;
  } else if (rule->n_ports <= 2) {
    kind = rule->n_ports == 1 ? POL_PORTS_ONE : POL_PORTS_TWO;
    memcpy(ps->r, rule->ports, rule->n_ports * sizeof(pol_ports_t));
  } else {
    kind = POL_PORTS_RULE;
  }
  return (uint8_t)((rule->action == ZT_ALLOW ? POL_HOW_ALLOW : 0) |
                   (rule->http ? POL_HOW_HTTP : 0) | (kind << 2));
}

/* The slot number of key s[0..len), inserted if new; -1 if the table is full, which
 * cannot happen when it was sized for every from entry. */
static ssize_t key_slot(zt_policy_t *p, const char *s, size_t len) {
  uint64_t h;
  uint8_t tag;
  size_t i, tries;
  if (!spiffe_scheme(s, len)) return -1;   /* a validated pattern always is */
  h = hash_str(s, len);
  tag = ctrl_tag(h);
  for (i = (size_t)h & p->key_mask, tries = 0; tries <= p->key_mask;
       i = (i + 1) & p->key_mask, tries++) {
    pol_key_t *k = &p->keys[i];
    if (p->ctrl[i] == POL_CTRL_EMPTY) {
      if (len <= POL_KEY_SKIP + POL_KEY_INLINE) {
        memcpy(k->in, s + POL_KEY_SKIP, len - POL_KEY_SKIP);
      } else {
        uint32_t whole;
        if (str_off(p, s, &whole)) return -1;
        memcpy(k->in, s + POL_KEY_SKIP, POL_KEY_LONG);
        memcpy(k->in + POL_KEY_LONG, &whole, sizeof(whole));
      }
      p->ctrl[i] = tag;
      if (i < POL_CTRL_GROUP) p->ctrl[p->key_mask + 1 + i] = tag;   /* the copy */
      k->len = (uint16_t)len;
      atomic_init(&k->hits, 0);
      return (ssize_t)i;
    }
    if (p->ctrl[i] == tag && key_is(p, k, s, len)) return (ssize_t)i;
  }
  return -1;
}

/* Walk every from entry in position order into per-slot lists (tmp, parallel to the
 * slots). Pass 0 counts each key's lists (into the _off fields); pass 1 fills them
 * (the _n fields are the cursors). last[] holds the last position added to each
 * slot's lists so a rule naming a key twice is listed once. */
static int fill_keys(zt_policy_t *p, int pass, pol_lists_t *tmp, uint32_t *last_exact,
                     uint32_t *last_below) {
  size_t i, j;
  for (i = 0; i < p->n_rules; i++) {
    const pol_rule_t *rule = &p->rules[i];
    for (j = 0; j < rule->n_from; j++) {
      const pol_from_t *f = &rule->from[j];
      pol_lists_t *l;
      ssize_t slot;
      if (f->kind == FROM_ANY) {
        if (p->n_any && p->any[p->n_any - 1] == i) continue;
        if (pass == 1) p->any[p->n_any++] = (uint32_t)i;
        continue;
      }
      if ((slot = key_slot(p, f->s, f->len)) < 0) return -1;
      l = &tmp[slot];
      if (f->kind == FROM_EXACT) {
        if (last_exact[slot] == i) continue;
        last_exact[slot] = (uint32_t)i;
        if (pass == 0) l->exact_off++;
        else p->lists[l->exact_off + l->exact_n++] = (uint32_t)i;
      } else {
        if (last_below[slot] == i) continue;
        last_below[slot] = (uint32_t)i;
        if (f->len < POL_BELOW_LEN_MAX)
          p->below_lens[f->len >> 6] |= 1ull << (f->len & 63);
        p->has_below = true;
        if (pass == 0) l->below_off++;
        else p->lists[l->below_off + l->below_n++] = (uint32_t)i;
      }
    }
  }
  return 0;
}

/* Keys named by one rule take it in place; the others get their lists. */
static int place_keys(zt_policy_t *p, const pol_lists_t *tmp) {
  size_t i, n_lists = 0;
  for (i = 0; i <= p->key_mask; i++)
    if (p->ctrl[i] != POL_CTRL_EMPTY && tmp[i].exact_n + tmp[i].below_n > 1) n_lists++;
  if (n_lists && (p->key_lists = malloc(n_lists * sizeof(*p->key_lists))) == NULL)
    return -1;
  for (n_lists = 0, i = 0; i <= p->key_mask; i++) {
    pol_key_t *k = &p->keys[i];
    const pol_lists_t *l = &tmp[i];
    if (p->ctrl[i] == POL_CTRL_EMPTY) continue;
    if (l->exact_n + l->below_n > 1) {
      k->where = POL_KEY_LISTS;
      k->pos = (uint32_t)n_lists;
      p->key_lists[n_lists++] = *l;
    } else {
      k->where = l->exact_n ? POL_KEY_EXACT1 : POL_KEY_BELOW1;
      k->pos = p->lists[l->exact_n ? l->exact_off : l->below_off];
      k->how = rule_how(p, k->pos, &k->ports);
      k->index = p->rules[k->pos].index;
      if (str_off(p, p->rules[k->pos].name, &k->name)) return -1;
    }
  }
  return 0;
}

static int build_keys(zt_policy_t *p) {
  size_t i, n_from = 0, n_any = 0, slots, total = 0;
  uint32_t *last_exact = NULL, *last_below = NULL;
  pol_lists_t *tmp = NULL;
  int rc = -1;
  for (i = 0; i < p->n_rules; i++) {
    size_t j;
    for (j = 0; j < p->rules[i].n_from; j++) {
      if (p->rules[i].from[j].kind == FROM_ANY) n_any++;
      else n_from++;
    }
  }
  if (n_any) {
    if ((p->any = malloc(n_any * sizeof(*p->any))) == NULL) return -1;
  }
  if (n_from == 0) {
    p->n_any = 0;
    return fill_keys(p, 1, NULL, NULL, NULL);
  }
  /* Load factor at most 7/8: probes walk the control bytes, a line holds 64. */
  slots = pow2_at_least(n_from + n_from / 7 + 1);
  p->key_mask = slots - 1;
  p->ctrl = malloc(slots + POL_CTRL_GROUP);
  p->keys = zt_policy__alloc(slots * sizeof(*p->keys));
  tmp = calloc(slots, sizeof(*tmp));
  last_exact = malloc(slots * sizeof(*last_exact));
  last_below = malloc(slots * sizeof(*last_below));
  if (p->ctrl == NULL || p->keys == NULL || tmp == NULL || last_exact == NULL ||
      last_below == NULL)
    goto done;
  memset(p->ctrl, POL_CTRL_EMPTY, slots + POL_CTRL_GROUP);
  memset(last_exact, 0xff, slots * sizeof(*last_exact));
  memset(last_below, 0xff, slots * sizeof(*last_below));
  if (fill_keys(p, 0, tmp, last_exact, last_below)) goto done;
  /* Counts to offsets. */
  for (i = 0; i < slots; i++) {
    pol_lists_t *l = &tmp[i];
    uint32_t ne = l->exact_off, nb = l->below_off;
    l->exact_off = (uint32_t)total;
    total += ne;
    l->below_off = (uint32_t)total;
    total += nb;
  }
  if ((p->lists = malloc((total ? total : 1) * sizeof(*p->lists))) == NULL) goto done;
  memset(last_exact, 0xff, slots * sizeof(*last_exact));
  memset(last_below, 0xff, slots * sizeof(*last_below));
  p->n_any = 0;
  if (fill_keys(p, 1, tmp, last_exact, last_below) == 0) rc = place_keys(p, tmp);
done:
  free(tmp);
  free(last_exact);
  free(last_below);
  return rc;
}

static int build_hot(zt_policy_t *p) {
  size_t i;
  if ((p->hot = zt_policy__alloc((p->n_rules + 1) * sizeof(pol_hot_t))) == NULL)
    return -1;
  for (i = 0; i <= p->n_rules; i++) atomic_init(&p->hot[i].hits, 0);
  for (i = 0; i < p->n_rules; i++) {
    pol_hot_t *h = &p->hot[i];
    h->name = p->rules[i].name;
    h->index = p->rules[i].index;
    h->how = rule_how(p, (uint32_t)i, &h->ports);
  }
  return 0;
}

int zt_policy__compile(zt_policy_t *p) {
  size_t i;
  if (p->n_rules >= NO_RULE) return -1;
  p->by_file = malloc((p->n_rules ? p->n_rules : 1) * sizeof(*p->by_file));
  if (p->by_file == NULL) return -1;
  for (i = 0; i < p->n_rules; i++) p->by_file[p->rules[i].index] = (uint32_t)i;
  if (build_bitmaps(p) || build_hot(p)) return -1;
  return build_keys(p);
}

void zt_policy__free_index(zt_policy_t *p) {
  free(p->by_file);
  free(p->ctrl);
  free(p->keys);
  free(p->key_lists);
  free(p->lists);
  free(p->any);
  free(p->bitmaps);
  free(p->hot);
  p->by_file = NULL;
  p->ctrl = NULL;
  p->keys = NULL;
  p->key_lists = NULL;
  p->lists = NULL;
  p->any = NULL;
  p->bitmaps = NULL;
  p->hot = NULL;
}
