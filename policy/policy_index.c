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
 *     as a prefix. Prefixes live at segment boundaries, so the table is a segment trie
 *     whose nodes are found by hashing: a lookup visits the ID's '/' boundaries once,
 *     hashing incrementally (8 bytes per step), and probes only the lengths at which
 *     some prefix key exists (a bitset of lengths);
 *   - the list of rules with `from: "*"`;
 *   - per rule, the merged port ranges, or a bitmap (65536 bits, shared between rules
 *     with the same set) when there are more than POL_PORTS_INLINE ranges.
 *
 * Each list is walked in position order and stops at the first full match or at the
 * best position found so far; the decision costs O(length of the ID + rules naming
 * the same keys), not O(rules). Nothing is allocated and nothing is locked; the only
 * write is one relaxed atomic increment of the deciding rule's hit counter.
 *
 * (Patterns are written "/\*" in comments: C comments cannot hold a slash-star.)
 */
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "policy_int.h"

#define NO_RULE UINT32_MAX

/* ---- hashing of ID prefixes ---------------------------------------------------- */

/* Incremental over an ID: whole 8-byte words are absorbed once, and the hash of any
 * prefix of length L (L never decreasing) costs the words up to L plus one masked
 * tail. Depends only on s[0..L), so keys hash the same from their own strings. */
typedef struct {
  uint64_t s;
  size_t done;                /* bytes absorbed, a multiple of 8 */
} hstate_t;

#define H_SEED 0x243f6a8885a308d3ull
#define H_MUL 0x9e3779b97f4a7c15ull

static inline uint64_t hash_prefix(hstate_t *st, const char *s, size_t len) {
  uint64_t w = 0, h;
  while (st->done + 8 <= len) {
    memcpy(&w, s + st->done, 8);
    st->s = (st->s ^ w) * H_MUL;
    st->s ^= st->s >> 29;
    st->done += 8;
  }
  w = 0;
  memcpy(&w, s + st->done, len - st->done);
  h = (st->s ^ w) * H_MUL ^ (uint64_t)len;
  /* murmur3's finalizer: every input bit reaches the low bits the table indexes by */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

static uint64_t hash_str(const char *s, size_t len) {
  hstate_t st = {H_SEED, 0};
  return hash_prefix(&st, s, len);
}

static inline const pol_key_t *find_hashed(const zt_policy_t *p, uint64_t h,
                                           const char *s, size_t len) {
  size_t i = (size_t)h & p->key_mask;
  for (;; i = (i + 1) & p->key_mask) {
    const pol_key_t *k = &p->keys[i];
    if (k->len == 0) return NULL;
    if (k->h == h && k->len == len && memcmp(k->s, s, len) == 0) return k;
  }
}

const pol_key_t *zt_policy__find_key(const zt_policy_t *p, const char *s, size_t len) {
  if (p->keys == NULL || len == 0) return NULL;
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

/* The first position in list[0..n) below best whose rule matches the request past its
 * `from` (which the list already matched); else best. */
static inline uint32_t scan(const zt_policy_t *p, const uint32_t *list, uint32_t n,
                            uint32_t best, const zt_request_t *r, size_t path_len) {
  uint32_t i;
  for (i = 0; i < n; i++) {
    uint32_t pos = list[i];
    const pol_rule_t *rule;
    if (pos >= best) break;
    rule = &p->rules[pos];
    if (!zt_policy__port_in(rule, r->port)) continue;
    if (rule->http && !zt_policy__http_matches(rule, r, path_len)) continue;
    return pos;
  }
  return best;
}

static inline bool below_len_present(const zt_policy_t *p, size_t len) {
  return len < POL_BELOW_LEN_MAX && ((p->below_lens[len >> 6] >> (len & 63)) & 1);
}

static uint32_t find_rule(const zt_policy_t *p, const zt_request_t *r) {
  const char *id = r->peer_id, *at, *slash, *end;
  size_t len = r->peer_id_len, path_len = 0;
  uint32_t best = NO_RULE;
  hstate_t st = {H_SEED, 0};
  const pol_key_t *k;

  if (id == NULL) return NO_RULE;
  /* The query is not part of what a path rule names; without this cut a deny rule on
   * "/admin" would not see "/admin?x". Measured once, and only when it can matter. */
  if (p->has_http && r->path) path_len = strcspn(r->path, "?#");
  if (p->n_any) best = scan(p, p->any, (uint32_t)p->n_any, best, r, path_len);
  if (p->keys == NULL || len == 0) return best;

  /* Every '/' in the ID ends a candidate prefix key; only proper prefixes match. */
  for (at = id, end = id + len; (slash = memchr(at, '/', (size_t)(end - at)));
       at = slash + 1) {
    size_t plen = (size_t)(slash - id) + 1;
    if (plen >= len) break;
    if (!below_len_present(p, plen)) continue;
    k = find_hashed(p, hash_prefix(&st, id, plen), id, plen);
    if (k && k->below_n)
      best = scan(p, p->lists + k->below_off, k->below_n, best, r, path_len);
  }
  k = find_hashed(p, hash_prefix(&st, id, len), id, len);
  if (k && k->exact_n)
    best = scan(p, p->lists + k->exact_off, k->exact_n, best, r, path_len);
  return best;
}

static inline zt_decision_t decide(const zt_policy_t *p, const zt_request_t *r,
                                   bool count) {
  zt_decision_t d;
  uint32_t pos = find_rule(p, r);
  d.enforced = !p->audit;
  if (pos == NO_RULE) {
    d.action = p->dflt;
    d.rule = "default";
    d.rule_index = -1;
    if (count) atomic_fetch_add_explicit(&p->hits[p->n_rules], 1, memory_order_relaxed);
  } else {
    const pol_rule_t *rule = &p->rules[pos];
    d.action = rule->action;
    d.rule = rule->name;
    d.rule_index = (int)rule->index;
    if (count) atomic_fetch_add_explicit(&p->hits[rule->index], 1, memory_order_relaxed);
  }
  return d;
}

zt_decision_t zt_policy_decide(const zt_policy_t *p, const zt_request_t *r) {
  return decide(p, r, true);
}

zt_decision_t zt_policy_decide_nocount(const zt_policy_t *p, const zt_request_t *r) {
  return decide(p, r, false);
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

/* The slot of key s[0..len), inserted (empty lists) if new; NULL if the table is
 * full, which cannot happen when it was sized for every from entry. */
static pol_key_t *key_slot(zt_policy_t *p, const char *s, size_t len) {
  uint64_t h = hash_str(s, len);
  size_t i, tries;
  for (i = (size_t)h & p->key_mask, tries = 0; tries <= p->key_mask;
       i = (i + 1) & p->key_mask, tries++) {
    pol_key_t *k = &p->keys[i];
    if (k->len == 0) {
      k->h = h;
      k->s = s;
      k->len = (uint32_t)len;
      return k;
    }
    if (k->h == h && k->len == len && memcmp(k->s, s, len) == 0) return k;
  }
  return NULL;
}

/* Walk every from entry in position order. Pass 0 counts each key's lists (into the
 * _off fields); pass 1 fills them (the _n fields are the cursors). last[] holds the
 * last position added to each slot's lists so a rule naming a key twice is listed
 * once. */
static int fill_keys(zt_policy_t *p, int pass, uint32_t *last_exact,
                     uint32_t *last_below) {
  size_t i, j;
  for (i = 0; i < p->n_rules; i++) {
    const pol_rule_t *rule = &p->rules[i];
    for (j = 0; j < rule->n_from; j++) {
      const pol_from_t *f = &rule->from[j];
      pol_key_t *k;
      size_t slot;
      if (f->kind == FROM_ANY) {
        if (p->n_any && p->any[p->n_any - 1] == i) continue;
        if (pass == 1) p->any[p->n_any++] = (uint32_t)i;
        continue;
      }
      if ((k = key_slot(p, f->s, f->len)) == NULL) return -1;
      slot = (size_t)(k - p->keys);
      if (f->kind == FROM_EXACT) {
        if (last_exact[slot] == i) continue;
        last_exact[slot] = (uint32_t)i;
        if (pass == 0) k->exact_off++;
        else p->lists[k->exact_off + k->exact_n++] = (uint32_t)i;
      } else {
        if (last_below[slot] == i) continue;
        last_below[slot] = (uint32_t)i;
        if (f->len < POL_BELOW_LEN_MAX)
          p->below_lens[f->len >> 6] |= 1ull << (f->len & 63);
        if (pass == 0) k->below_off++;
        else p->lists[k->below_off + k->below_n++] = (uint32_t)i;
      }
    }
  }
  return 0;
}

static int build_keys(zt_policy_t *p) {
  size_t i, n_from = 0, n_any = 0, slots, total = 0;
  uint32_t *last_exact = NULL, *last_below = NULL;
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
    return fill_keys(p, 1, NULL, NULL);
  }
  slots = pow2_at_least(n_from * 2);     /* load factor at most 1/2 */
  p->key_mask = slots - 1;
  p->keys = calloc(slots, sizeof(*p->keys));
  last_exact = malloc(slots * sizeof(*last_exact));
  last_below = malloc(slots * sizeof(*last_below));
  if (p->keys == NULL || last_exact == NULL || last_below == NULL) goto done;
  memset(last_exact, 0xff, slots * sizeof(*last_exact));
  memset(last_below, 0xff, slots * sizeof(*last_below));
  if (fill_keys(p, 0, last_exact, last_below)) goto done;
  /* Counts to offsets. */
  for (i = 0; i < slots; i++) {
    pol_key_t *k = &p->keys[i];
    uint32_t ne = k->exact_off, nb = k->below_off;
    k->exact_off = (uint32_t)total;
    total += ne;
    k->below_off = (uint32_t)total;
    total += nb;
  }
  if ((p->lists = malloc((total ? total : 1) * sizeof(*p->lists))) == NULL) goto done;
  memset(last_exact, 0xff, slots * sizeof(*last_exact));
  memset(last_below, 0xff, slots * sizeof(*last_below));
  p->n_any = 0;
  rc = fill_keys(p, 1, last_exact, last_below);
done:
  free(last_exact);
  free(last_below);
  return rc;
}

int zt_policy__compile(zt_policy_t *p) {
  size_t i;
  if (p->n_rules >= NO_RULE) return -1;
  p->by_file = malloc((p->n_rules ? p->n_rules : 1) * sizeof(*p->by_file));
  p->hits = calloc(p->n_rules + 1, sizeof(*p->hits));
  if (p->by_file == NULL || p->hits == NULL) return -1;
  for (i = 0; i <= p->n_rules; i++) atomic_init(&p->hits[i], 0);
  for (i = 0; i < p->n_rules; i++) p->by_file[p->rules[i].index] = (uint32_t)i;
  if (build_bitmaps(p)) return -1;
  return build_keys(p);
}

void zt_policy__free_index(zt_policy_t *p) {
  free(p->by_file);
  free(p->keys);
  free(p->lists);
  free(p->any);
  free(p->bitmaps);
  free((void *)p->hits);
  p->by_file = NULL;
  p->keys = NULL;
  p->lists = NULL;
  p->any = NULL;
  p->bitmaps = NULL;
  p->hits = NULL;
}
