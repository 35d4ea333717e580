/* proxy/metrics.h: Prometheus metrics, kept per worker and summed at scrape time.
 *
 * Each worker writes only its own counters, and each counter has exactly one writer,
 * so an increment is a relaxed load and store (a plain add on x86): no lock and no
 * locked instruction on the data path. The scraper (the admin server, on the main
 * thread) reads them with relaxed loads and sums over workers.
 *
 * Labelled series whose label values are not known in advance (policy rules, peer
 * IDs) live in fixed-size per-worker tables. Peer IDs are capped: past
 * max_peer_series distinct IDs, a peer is counted under peer_id="other", so a scanner
 * cycling through identities cannot grow memory or the exposition.
 */
#ifndef ZT_METRICS_H
#define ZT_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct { _Atomic uint64_t v; } zt_counter_t;

static inline void zt_count(zt_counter_t *c, uint64_t n) {
  atomic_store_explicit(&c->v, atomic_load_explicit(&c->v, memory_order_relaxed) + n,
                        memory_order_relaxed);
}
static inline uint64_t zt_counter_read(const zt_counter_t *c) {
  return atomic_load_explicit(&c->v, memory_order_relaxed);
}

/* Handshake-failure and close reasons are static strings; these are the ones with a
 * counter of their own (anything else counts as "tls_error"). */
extern const char *const zt_tls_reasons[];
size_t zt_tls_reason_index(const char *reason);
#define ZT_NREASONS 23

/* Histogram buckets, seconds. */
#define ZT_NBUCKETS 12
extern const double zt_duration_buckets[ZT_NBUCKETS];    /* connection duration */
extern const double zt_handshake_buckets[ZT_NBUCKETS];   /* TLS handshake */

typedef struct {
  zt_counter_t buckets[ZT_NBUCKETS + 1];   /* the last is +Inf */
  zt_counter_t sum_us;
} zt_histogram_t;

typedef enum { ZT_DEC_ALLOW, ZT_DEC_DENY, ZT_DEC_NONE, ZT_NDEC } zt_dec_t;

typedef struct {
  zt_counter_t conns[ZT_NDEC];             /* connections_total{decision} */
  zt_counter_t opened, closed;             /* connections_active = opened - closed */
  zt_counter_t bytes_in, bytes_out;
  zt_counter_t handshakes[2][2];           /* [role: 0 server, 1 client][resumed] */
  zt_counter_t hs_failures[ZT_NREASONS];
  zt_counter_t policy_revoked;             /* closed by a policy reload */
  zt_histogram_t duration, handshake;
} zt_listener_metrics_t;

/* A fixed-capacity table of named series, written by one worker. An entry's key is
 * published (release) after it is written, so the scraper sees whole entries. */
typedef struct {
  _Atomic(const char *) key;               /* owned; NULL = free slot */
  uint32_t listener;
  zt_counter_t n[2];                       /* [0] allow, [1] deny */
} zt_series_t;

typedef struct {
  zt_series_t *slots;
  size_t cap, used, limit;                 /* limit: distinct keys before "other" */
} zt_series_table_t;

typedef struct {
  zt_listener_metrics_t *listeners;        /* one per configured listener */
  size_t n_listeners;
  zt_series_table_t rules, peers;
  zt_counter_t access_log_dropped;
  zt_counter_t uring_starved;              /* receives that found no provided buffer */
  zt_counter_t spin_backoffs;              /* busy polling stopped: the CPU was contended */
  zt_counter_t accept_paused;              /* no memory for a new connection */
} zt_worker_metrics_t;

int zt_metrics_worker_init(zt_worker_metrics_t *m, size_t n_listeners,
                           size_t max_peer_series);
void zt_metrics_worker_free(zt_worker_metrics_t *m);

void zt_histogram_observe(zt_histogram_t *h, const double *bounds, uint64_t us);
/* Count a policy decision for rule (rule names are bounded by the policy; a table
 * that is full counts under "other"). */
void zt_metrics_series_count(zt_series_table_t *t, uint32_t listener, const char *key,
                             int deny);

/* Everything the exposition needs besides the per-worker metrics. */
typedef struct {
  const char *const *listener_names;
  size_t n_listeners;
  zt_worker_metrics_t *const *workers;
  size_t n_workers;
  double svid_expiry;                      /* unix seconds */
  double start_time;                       /* unix seconds */
  const char *version;
  uint64_t reloads[2][2];                  /* [what: identity, policy][ok, failure] */
} zt_metrics_view_t;

/* Render the Prometheus text format (0.0.4) into a malloc'd string. */
char *zt_metrics_render(const zt_metrics_view_t *v, size_t *len);

#endif
