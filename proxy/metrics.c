/* proxy/metrics.c: per-worker counters and the Prometheus exposition. */
#include "metrics.h"

#include "sbuf.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

const char *const zt_tls_reasons[ZT_NREASONS] = {
    "tls_error",         "no_client_cert",   "unknown_ca",
    "expired",           "not_yet_valid",    "bad_signature",
    "no_uri_san",        "multiple_uri_sans", "invalid_spiffe_id",
    "leaf_is_ca",        "foreign_trust_domain", "server_id_not_expected",
    "handshake_timeout", "closed_during_handshake", "reset",
    "malformed_certificate", "revoked", "leaf_can_sign_certs",
    "missing_digital_signature", "signer_not_ca", "weak_key", "sha1_signature",
    "chain_too_long"};

size_t zt_tls_reason_index(const char *reason) {
  for (size_t i = 0; reason && i < ZT_NREASONS; i++)
    if (strcmp(zt_tls_reasons[i], reason) == 0) return i;
  return 0;
}

const double zt_duration_buckets[ZT_NBUCKETS] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
                                                 1,     5,     10,   60,   300, 3600};
const double zt_handshake_buckets[ZT_NBUCKETS] = {0.0005, 0.001, 0.002, 0.005,
                                                  0.01,   0.02,  0.05,  0.1,
                                                  0.25,   0.5,   1,     5};

void zt_histogram_observe(zt_histogram_t *h, const double *bounds, uint64_t us) {
  double s = (double)us / 1e6;
  size_t i = 0;
  while (i < ZT_NBUCKETS && s > bounds[i]) i++;
  zt_count(&h->buckets[i], 1);
  zt_count(&h->sum_us, us);
}

/* At most limit named series plus one "other" per listener: the table stays at most
 * half full, so a probe always ends at a free slot. */
static int table_init(zt_series_table_t *t, size_t limit, size_t n_listeners) {
  t->cap = 16;
  while (t->cap < (limit + n_listeners) * 2 + 2) t->cap <<= 1;
  t->limit = limit;
  t->used = 0;
  t->slots = calloc(t->cap, sizeof(*t->slots));
  return t->slots ? 0 : -1;
}

static void table_free(zt_series_table_t *t) {
  for (size_t i = 0; t->slots && i < t->cap; i++)
    free((void *)atomic_load_explicit(&t->slots[i].key, memory_order_relaxed));
  free(t->slots);
  t->slots = NULL;
}

static uint64_t hash(uint32_t listener, const char *s) {
  uint64_t h = 1469598103934665603ull ^ listener;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

void zt_metrics_series_count(zt_series_table_t *t, uint32_t listener, const char *key,
                             int deny) {
  const char *k = key ? key : "none";
  for (int pass = 0; pass < 2; pass++) {
    size_t i = (size_t)hash(listener, k) & (t->cap - 1);
    for (;;) {
      zt_series_t *e = &t->slots[i];
      const char *ek = atomic_load_explicit(&e->key, memory_order_relaxed);
      if (ek == NULL) {
        char *dup;
        if (t->used >= t->limit && strcmp(k, "other") != 0) break;  /* → "other" */
        if ((dup = strdup(k)) == NULL) return;
        e->listener = listener;
        atomic_store_explicit(&e->key, dup, memory_order_release);
        t->used++;
        zt_count(&e->n[deny != 0], 1);
        return;
      }
      if (e->listener == listener && strcmp(ek, k) == 0) {
        zt_count(&e->n[deny != 0], 1);
        return;
      }
      i = (i + 1) & (t->cap - 1);
    }
    k = "other";   /* the table keeps room for "other" of every listener */
  }
}

int zt_metrics_worker_init(zt_worker_metrics_t *m, size_t n_listeners,
                           size_t max_peer_series) {
  memset(m, 0, sizeof(*m));
  m->n_listeners = n_listeners;
  m->listeners = calloc(n_listeners, sizeof(*m->listeners));
  if (m->listeners == NULL || table_init(&m->rules, 4096, n_listeners) ||
      table_init(&m->peers, max_peer_series, n_listeners)) {
    zt_metrics_worker_free(m);
    return -1;
  }
  /* Room for each listener's "other" series on top of the limit. */
  m->rules.limit -= n_listeners < m->rules.limit ? n_listeners : 0;
  m->peers.limit -= n_listeners < m->peers.limit ? n_listeners : 0;
  return 0;
}

void zt_metrics_worker_free(zt_worker_metrics_t *m) {
  free(m->listeners);
  table_free(&m->rules);
  table_free(&m->peers);
  memset(m, 0, sizeof(*m));
}

/* --- rendering ------------------------------------------------------------------------ */

typedef zt_sbuf_t sbuf_t;
#define put zt_sbuf_printf

/* A label value, escaped per the exposition format. */
static void put_label(sbuf_t *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"') put(b, "\\%c", *s);
    else if (*s == '\n') put(b, "\\n");
    else put(b, "%c", *s);
  }
}

static uint64_t sum(const zt_metrics_view_t *v, size_t li, size_t off) {
  uint64_t s = 0;
  for (size_t w = 0; w < v->n_workers; w++)
    s += zt_counter_read(
        (const zt_counter_t *)((const char *)&v->workers[w]->listeners[li] + off));
  return s;
}
/* Field f (at index i, for arrays) of listener li, summed over workers. */
#define SUM(f, i) \
  sum(v, li, offsetof(zt_listener_metrics_t, f) + (size_t)(i) * sizeof(zt_counter_t))

static void render_hist(sbuf_t *b, const zt_metrics_view_t *v, const char *name,
                        const char *help, size_t hist_off, const double *bounds) {
  put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  for (size_t li = 0; li < v->n_listeners; li++) {
    uint64_t cum = 0, sum_us = 0;
    for (size_t i = 0; i <= ZT_NBUCKETS; i++) {
      for (size_t w = 0; w < v->n_workers; w++) {
        const zt_histogram_t *h =
            (const zt_histogram_t *)((const char *)&v->workers[w]->listeners[li] + hist_off);
        cum += zt_counter_read(&h->buckets[i]);
        if (i == 0) sum_us += zt_counter_read(&h->sum_us);
      }
      put(b, "%s_bucket{listener=\"", name);
      put_label(b, v->listener_names[li]);
      if (i < ZT_NBUCKETS) put(b, "\",le=\"%g\"} %llu\n", bounds[i], (unsigned long long)cum);
      else put(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    put(b, "%s_sum{listener=\"", name);
    put_label(b, v->listener_names[li]);
    put(b, "\"} %.6f\n%s_count{listener=\"", (double)sum_us / 1e6, name);
    put_label(b, v->listener_names[li]);
    put(b, "\"} %llu\n", (unsigned long long)cum);
  }
}

/* Sum one named series over workers; with cap, keys past cap distinct ones fold into
 * "other" so the exposition stays bounded whatever the workers saw together. The rows
 * are found through a hash of (listener, key): a scrape costs time linear in the
 * workers' table slots, up to admin.max_peer_series of them each. */
typedef struct { const char *key; uint32_t l; uint64_t n[2]; } row_t;
#define ROW_NONE UINT32_MAX

static uint32_t *row_slot(row_t *rows, uint32_t *idx, size_t mask, uint32_t l,
                          const char *k) {
  uint64_t h = 1469598103934665603ull ^ l;     /* FNV-1a over the listener, then key */
  for (const unsigned char *p = (const unsigned char *)k; *p; p++)
    h = (h ^ *p) * 1099511628211ull;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask)
    if (idx[i] == ROW_NONE || (rows[idx[i]].l == l && strcmp(rows[idx[i]].key, k) == 0))
      return &idx[i];
}

static void render_series(sbuf_t *b, const zt_metrics_view_t *v, size_t table_off,
                          const char *name, const char *key_label, size_t cap) {
  size_t nrows = 0, maxrows = 0, hcap = 16;
  row_t *rows;
  uint32_t *idx;
  for (size_t w = 0; w < v->n_workers; w++)
    maxrows += ((const zt_series_table_t *)((const char *)v->workers[w] + table_off))->cap;
  maxrows += v->n_listeners + 1;
  while (hcap < 2 * maxrows) hcap <<= 1;
  rows = calloc(maxrows, sizeof(*rows));
  idx = malloc(hcap * sizeof(*idx));
  if (rows == NULL || idx == NULL || maxrows >= ROW_NONE) {
    free(rows);
    free(idx);
    return;
  }
  memset(idx, 0xff, hcap * sizeof(*idx));
  for (size_t w = 0; w < v->n_workers; w++) {
    const zt_series_table_t *t =
        (const zt_series_table_t *)((const char *)v->workers[w] + table_off);
    for (size_t i = 0; i < t->cap; i++) {
      const char *k = atomic_load_explicit(&t->slots[i].key, memory_order_acquire);
      uint32_t l = t->slots[i].listener, *slot;
      if (k == NULL) continue;
      slot = row_slot(rows, idx, hcap - 1, l, k);
      if (*slot == ROW_NONE && nrows >= cap) {   /* fold into this listener's "other" */
        k = "other";
        slot = row_slot(rows, idx, hcap - 1, l, k);
      }
      if (*slot == ROW_NONE) {
        rows[nrows] = (row_t){k, l, {0, 0}};
        *slot = (uint32_t)nrows++;
      }
      rows[*slot].n[0] += zt_counter_read(&t->slots[i].n[0]);
      rows[*slot].n[1] += zt_counter_read(&t->slots[i].n[1]);
    }
  }
  for (size_t r = 0; r < nrows; r++) {
    if (rows[r].l >= v->n_listeners) continue;
    for (int d = 0; d < 2; d++) {
      if (rows[r].n[d] == 0) continue;
      put(b, "%s{listener=\"", name);
      put_label(b, v->listener_names[rows[r].l]);
      put(b, "\",%s=\"", key_label);
      put_label(b, rows[r].key);
      put(b, "\",decision=\"%s\"} %llu\n", d ? "deny" : "allow",
          (unsigned long long)rows[r].n[d]);
    }
  }
  free(rows);
  free(idx);
}

static void render_process(sbuf_t *b, const zt_metrics_view_t *v) {
  long page = sysconf(_SC_PAGESIZE), ticks = sysconf(_SC_CLK_TCK);
  unsigned long size = 0, rss = 0;
  struct rusage ru;
  size_t fds = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  DIR *d;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &rss) != 2) rss = 0;
    fclose(f);
  }
  if ((d = opendir("/proc/self/fd"))) {
    struct dirent *e;
    while ((e = readdir(d))) fds += e->d_name[0] != '.';
    closedir(d);
    fds--;   /* the directory itself */
  }
  getrusage(RUSAGE_SELF, &ru);
  (void)ticks;
  put(b, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
         "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lu\n",
      rss * (unsigned long)page);
  put(b, "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
         "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %lu\n",
      size * (unsigned long)page);
  put(b, "# HELP process_open_fds Number of open file descriptors.\n"
         "# TYPE process_open_fds gauge\nprocess_open_fds %zu\n", fds);
  put(b, "# HELP process_cpu_seconds_total Total user and system CPU time in seconds.\n"
         "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.3f\n",
      (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
          (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
  put(b, "# HELP process_start_time_seconds Start time of the process since the epoch.\n"
         "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n",
      v->start_time);
}

char *zt_metrics_render(const zt_metrics_view_t *v, size_t *len) {
  static const char *const decs[ZT_NDEC] = {"allow", "deny", "none"};
  sbuf_t b = {0};
  uint64_t dropped = 0, starved = 0, backoffs = 0, paused = 0;

  put(&b, "# HELP ztproxy_build_info ztproxy's version.\n# TYPE ztproxy_build_info gauge\n"
          "ztproxy_build_info{version=\"%s\"} 1\n", v->version);

  put(&b, "# HELP ztproxy_connections_total Connections closed, by policy decision.\n"
          "# TYPE ztproxy_connections_total counter\n");
  for (size_t li = 0; li < v->n_listeners; li++)
    for (int d = 0; d < ZT_NDEC; d++) {
      put(&b, "ztproxy_connections_total{listener=\"");
      put_label(&b, v->listener_names[li]);
      put(&b, "\",decision=\"%s\"} %llu\n", decs[d], (unsigned long long)SUM(conns, d));
    }

  put(&b, "# HELP ztproxy_connections_active Connections open now.\n"
          "# TYPE ztproxy_connections_active gauge\n");
  for (size_t li = 0; li < v->n_listeners; li++) {
    uint64_t o = SUM(opened, 0), c = SUM(closed, 0);
    put(&b, "ztproxy_connections_active{listener=\"");
    put_label(&b, v->listener_names[li]);
    put(&b, "\"} %llu\n", (unsigned long long)(o > c ? o - c : 0));
  }

  put(&b, "# HELP ztproxy_bytes_total Application bytes proxied; in: client to server.\n"
          "# TYPE ztproxy_bytes_total counter\n");
  for (size_t li = 0; li < v->n_listeners; li++) {
    put(&b, "ztproxy_bytes_total{listener=\"");
    put_label(&b, v->listener_names[li]);
    put(&b, "\",direction=\"in\"} %llu\nztproxy_bytes_total{listener=\"",
        (unsigned long long)SUM(bytes_in, 0));
    put_label(&b, v->listener_names[li]);
    put(&b, "\",direction=\"out\"} %llu\n", (unsigned long long)SUM(bytes_out, 0));
  }

  put(&b, "# HELP ztproxy_tls_handshakes_total Completed TLS handshakes.\n"
          "# TYPE ztproxy_tls_handshakes_total counter\n");
  for (size_t li = 0; li < v->n_listeners; li++)
    for (int role = 0; role < 2; role++)
      for (int res = 0; res < 2; res++) {
        uint64_t n = SUM(handshakes, role * 2 + res);
        if (n == 0) continue;
        put(&b, "ztproxy_tls_handshakes_total{listener=\"");
        put_label(&b, v->listener_names[li]);
        put(&b, "\",role=\"%s\",tls_version=\"TLSv1.3\",resumed=\"%s\"} %llu\n",
            role ? "client" : "server", res ? "true" : "false", (unsigned long long)n);
      }

  put(&b, "# HELP ztproxy_tls_handshake_failures_total Refused or failed TLS handshakes, "
          "by reason.\n# TYPE ztproxy_tls_handshake_failures_total counter\n");
  for (size_t li = 0; li < v->n_listeners; li++)
    for (size_t r = 0; r < ZT_NREASONS; r++) {
      uint64_t n = SUM(hs_failures, r);
      if (n == 0) continue;
      put(&b, "ztproxy_tls_handshake_failures_total{listener=\"");
      put_label(&b, v->listener_names[li]);
      put(&b, "\",reason=\"%s\"} %llu\n", zt_tls_reasons[r], (unsigned long long)n);
    }

  put(&b, "# HELP ztproxy_connections_revoked_total Established connections closed "
          "because a reloaded policy no longer allows them.\n"
          "# TYPE ztproxy_connections_revoked_total counter\n");
  for (size_t li = 0; li < v->n_listeners; li++) {
    put(&b, "ztproxy_connections_revoked_total{listener=\"");
    put_label(&b, v->listener_names[li]);
    put(&b, "\",reason=\"policy\"} %llu\n", (unsigned long long)SUM(policy_revoked, 0));
  }

  put(&b, "# HELP ztproxy_policy_decisions_total Policy decisions, by deciding rule.\n"
          "# TYPE ztproxy_policy_decisions_total counter\n");
  render_series(&b, v, offsetof(zt_worker_metrics_t, rules),
                "ztproxy_policy_decisions_total", "rule", (size_t)-1);
  put(&b, "# HELP ztproxy_peer_connections_total Inbound connections by peer SPIFFE ID "
          "(capped; the rest count as peer_id=\"other\").\n"
          "# TYPE ztproxy_peer_connections_total counter\n");
  {
    size_t cap = v->n_workers ? v->workers[0]->peers.limit : 0;
    render_series(&b, v, offsetof(zt_worker_metrics_t, peers),
                  "ztproxy_peer_connections_total", "peer_id", cap);
  }

  render_hist(&b, v, "ztproxy_connection_duration_seconds",
              "How long connections lived.", offsetof(zt_listener_metrics_t, duration),
              zt_duration_buckets);
  render_hist(&b, v, "ztproxy_tls_handshake_duration_seconds",
              "TLS handshake time, from the first byte to the verified peer.",
              offsetof(zt_listener_metrics_t, handshake), zt_handshake_buckets);

  put(&b, "# HELP ztproxy_svid_expiry_timestamp_seconds When our SVID expires.\n"
          "# TYPE ztproxy_svid_expiry_timestamp_seconds gauge\n"
          "ztproxy_svid_expiry_timestamp_seconds %.0f\n", v->svid_expiry);
  put(&b, "# HELP ztproxy_reloads_total Reloads of identity and policy, by result.\n"
          "# TYPE ztproxy_reloads_total counter\n");
  for (int what = 0; what < 2; what++)
    for (int res = 0; res < 2; res++)
      put(&b, "ztproxy_reloads_total{what=\"%s\",result=\"%s\"} %llu\n",
          what ? "policy" : "identity", res ? "failure" : "success",
          (unsigned long long)v->reloads[what][res]);
  for (size_t w = 0; w < v->n_workers; w++) {
    dropped += zt_counter_read(&v->workers[w]->access_log_dropped);
    starved += zt_counter_read(&v->workers[w]->uring_starved);
    backoffs += zt_counter_read(&v->workers[w]->spin_backoffs);
    paused += zt_counter_read(&v->workers[w]->accept_paused);
  }
  put(&b, "# HELP ztproxy_access_log_dropped_total Access-log lines dropped because the "
          "writer fell behind.\n# TYPE ztproxy_access_log_dropped_total counter\n"
          "ztproxy_access_log_dropped_total %llu\n", (unsigned long long)dropped);
  put(&b, "# HELP ztproxy_io_uring_buffers_exhausted_total Receives that found all of "
          "their worker's io_uring buffers in use and read into a block of their own.\n"
          "# TYPE ztproxy_io_uring_buffers_exhausted_total counter\n"
          "ztproxy_io_uring_buffers_exhausted_total %llu\n", (unsigned long long)starved);
  put(&b, "# HELP ztproxy_busy_poll_backoffs_total Times a worker paused busy polling "
          "because a yield of its CPU let another task keep it for over 1 ms.\n"
          "# TYPE ztproxy_busy_poll_backoffs_total counter\n"
          "ztproxy_busy_poll_backoffs_total %llu\n", (unsigned long long)backoffs);
  put(&b, "# HELP ztproxy_accept_pauses_total Times a worker stopped accepting on a "
          "listener because it had no memory for a new connection (it tries again every "
          "second).\n# TYPE ztproxy_accept_pauses_total counter\n"
          "ztproxy_accept_pauses_total %llu\n", (unsigned long long)paused);
  render_process(&b, v);
  return zt_sbuf_take(&b, len);
}
