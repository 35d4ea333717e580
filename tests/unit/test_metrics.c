/* tests/unit/test_metrics.c: per-worker series tables, the exposition, and the
 * access-log rings (proxy/metrics.c, proxy/log.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "zt_test.h"

/* The exposition of n workers' metrics for one listener named name (malloc'd). */
static char *render(const char *name, zt_worker_metrics_t **ws, size_t n) {
  const char *names[] = {name};
  zt_metrics_view_t v = {.listener_names = names, .n_listeners = 1, .workers = ws,
                         .n_workers = n, .version = "t"};
  size_t len;
  return zt_metrics_render(&v, &len);
}

static size_t count_lines_with(const char *text, const char *needle) {
  size_t n = 0;
  for (const char *p = text; (p = strstr(p, needle)); p++) n++;
  return n;
}

ZT_TEST(peer_series_are_capped_with_an_other_bucket) {
  zt_worker_metrics_t m;
  char id[64];
  ZT_ASSERT(zt_metrics_worker_init(&m, 1, 100) == 0);
  for (int i = 0; i < 10000; i++) {
    snprintf(id, sizeof(id), "spiffe://example.org/scanner/%d", i);
    zt_metrics_series_count(&m.peers, 0, id, 1);
  }
  ZT_ASSERT(m.peers.used <= 100);
  {
    zt_worker_metrics_t *ws[] = {&m};
    char *text = render("in", ws, 1);
    ZT_ASSERT(text != NULL);
    /* At most 100 series for peer IDs, "other" included. */
    ZT_ASSERT(count_lines_with(text, "ztproxy_peer_connections_total{") <= 100);
    ZT_ASSERT(strstr(text, "peer_id=\"other\",decision=\"deny\"} ") != NULL);
    free(text);
  }
  zt_metrics_worker_free(&m);
}

ZT_TEST(series_sum_over_workers_and_fold_past_the_cap) {
  zt_worker_metrics_t a, b;
  ZT_ASSERT(zt_metrics_worker_init(&a, 1, 3) == 0);
  ZT_ASSERT(zt_metrics_worker_init(&b, 1, 3) == 0);
  zt_metrics_series_count(&a.peers, 0, "spiffe://t/a", 0);
  zt_metrics_series_count(&b.peers, 0, "spiffe://t/a", 0);
  zt_metrics_series_count(&b.peers, 0, "spiffe://t/b", 1);
  zt_count(&a.listeners[0].bytes_in, 5);
  zt_count(&b.listeners[0].bytes_in, 7);
  {
    zt_worker_metrics_t *ws[] = {&a, &b};
    char *text = render("in", ws, 2);
    ZT_ASSERT(text != NULL);
    ZT_ASSERT(strstr(text, "peer_id=\"spiffe://t/a\",decision=\"allow\"} 2\n") != NULL);
    ZT_ASSERT(strstr(text, "peer_id=\"spiffe://t/b\",decision=\"deny\"} 1\n") != NULL);
    ZT_ASSERT(strstr(text, "ztproxy_bytes_total{listener=\"in\",direction=\"in\"} 12\n"));
    free(text);
  }
  zt_metrics_worker_free(&a);
  zt_metrics_worker_free(&b);
}

ZT_TEST(many_series_over_two_listeners_and_two_workers_sum_exactly) {
  /* 2 x 20,000 series with half the keys shared between the workers: each row is
   * found again by (listener, key), whichever worker holds it. */
  zt_worker_metrics_t a, b;
  const char *names[] = {"l0", "l1"};
  zt_worker_metrics_t *ws[] = {&a, &b};
  zt_metrics_view_t v = {.listener_names = names, .n_listeners = 2, .workers = ws,
                         .n_workers = 2, .version = "t"};
  char id[64], line[160], *text;
  size_t len;
  ZT_ASSERT(zt_metrics_worker_init(&a, 2, 40000) == 0);
  ZT_ASSERT(zt_metrics_worker_init(&b, 2, 40000) == 0);
  for (int i = 0; i < 20000; i++) {
    snprintf(id, sizeof(id), "spiffe://t/w/%d", i);
    zt_metrics_series_count(&a.peers, (uint32_t)(i & 1), id, 0);
    if (i % 2 == 0) zt_metrics_series_count(&b.peers, 0, id, 0);
  }
  text = zt_metrics_render(&v, &len);
  ZT_ASSERT(text != NULL);
  ZT_ASSERT(count_lines_with(text, "ztproxy_peer_connections_total{") == 20000);
  snprintf(line, sizeof(line), "{listener=\"l0\",peer_id=\"spiffe://t/w/19998\","
                               "decision=\"allow\"} 2\n");
  ZT_ASSERT(strstr(text, line) != NULL);
  snprintf(line, sizeof(line), "{listener=\"l1\",peer_id=\"spiffe://t/w/19999\","
                               "decision=\"allow\"} 1\n");
  ZT_ASSERT(strstr(text, line) != NULL);
  ZT_ASSERT(strstr(text, "peer_id=\"other\",") == NULL);
  free(text);
  zt_metrics_worker_free(&a);
  zt_metrics_worker_free(&b);
}

ZT_TEST(label_values_are_escaped) {
  zt_worker_metrics_t m;
  zt_worker_metrics_t *ws[] = {&m};
  char *text;
  ZT_ASSERT(zt_metrics_worker_init(&m, 1, 10) == 0);
  text = render("we\"ird\\name", ws, 1);
  ZT_ASSERT(text && strstr(text, "listener=\"we\\\"ird\\\\name\"") != NULL);
  free(text);
  zt_metrics_worker_free(&m);
}

ZT_TEST(histogram_buckets_are_cumulative) {
  zt_worker_metrics_t m;
  zt_worker_metrics_t *ws[] = {&m};
  char *text;
  ZT_ASSERT(zt_metrics_worker_init(&m, 1, 10) == 0);
  zt_histogram_observe(&m.listeners[0].duration, zt_duration_buckets, 2000);       /* 2 ms */
  zt_histogram_observe(&m.listeners[0].duration, zt_duration_buckets, 7200000000); /* 2 h */
  text = render("in", ws, 1);
  ZT_ASSERT(text != NULL);
  ZT_ASSERT(strstr(text, "duration_seconds_bucket{listener=\"in\",le=\"0.001\"} 0\n"));
  ZT_ASSERT(strstr(text, "duration_seconds_bucket{listener=\"in\",le=\"0.005\"} 1\n"));
  ZT_ASSERT(strstr(text, "duration_seconds_bucket{listener=\"in\",le=\"3600\"} 1\n"));
  ZT_ASSERT(strstr(text, "duration_seconds_bucket{listener=\"in\",le=\"+Inf\"} 2\n"));
  ZT_ASSERT(strstr(text, "duration_seconds_count{listener=\"in\"} 2\n"));
  free(text);
  zt_metrics_worker_free(&m);
}

static int drops;
static void on_drop(void *arg) { (void)arg; drops++; }

ZT_TEST(a_full_access_log_ring_drops_and_counts) {
  zt_alog_queue_t *q = zt_alog_queue_new(4096, on_drop, NULL);
  char line[100];
  memset(line, 'x', sizeof(line) - 1);
  line[sizeof(line) - 1] = '\n';
  ZT_ASSERT(q != NULL);
  drops = 0;
  /* No writer runs: 40 lines of 100 bytes fit in 4096, the rest are dropped. */
  for (int i = 0; i < 100; i++) zt_alog_push(q, line, sizeof(line));
  ZT_ASSERT(drops == 100 - 40);
  zt_alog_queue_free(q);
}

ZT_TEST(json_strings_are_escaped) {
  char buf[128];
  size_t n = zt_json_str(buf, 0, sizeof(buf), "a\"b\\c\n\x01");
  buf[n] = '\0';
  ZT_ASSERT_STR_EQ(buf, "\"a\\\"b\\\\c\\u000a\\u0001\"");
  n = zt_json_str(buf, 0, sizeof(buf), NULL);
  buf[n] = '\0';
  ZT_ASSERT_STR_EQ(buf, "null");
  /* UTF-8 passes; any other byte above 0x7f (a lone continuation, an overlong form,
   * a surrogate, a sequence cut short, past U+10FFFF) becomes U+FFFD. */
  n = zt_json_str(buf, 0, sizeof(buf), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  buf[n] = '\0';
  ZT_ASSERT_STR_EQ(buf, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  n = zt_json_str(buf, 0, sizeof(buf), "a\x80\xc0\xaf\xed\xa0\x80\xe2\x82\xf4\x90\x80\x80z");
  buf[n] = '\0';
  ZT_ASSERT_STR_EQ(buf, "\"a\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd"
                        "\\ufffd\\ufffd\\ufffd\\ufffdz\"");
  n = zt_json_str(buf, 0, sizeof(buf), "\xe2\x82");   /* cut short by the end */
  buf[n] = '\0';
  ZT_ASSERT_STR_EQ(buf, "\"\\ufffd\\ufffd\"");
}

ZT_TEST(series_tables_never_fill_even_with_more_listeners_than_series) {
  /* 16 listeners and max_peer_series 1: every listener's "other" still finds a slot
   * (a full table made the lookup loop forever). */
  zt_worker_metrics_t m;
  char id[64];
  ZT_ASSERT(zt_metrics_worker_init(&m, 16, 1) == 0);
  for (uint32_t l = 0; l < 16; l++)
    for (int i = 0; i < 20; i++) {
      snprintf(id, sizeof(id), "spiffe://t/%u/%d", l, i);
      zt_metrics_series_count(&m.peers, l, id, 0);
    }
  ZT_ASSERT(m.peers.used <= m.peers.cap / 2);
  zt_metrics_worker_free(&m);
}

ZT_TEST_MAIN(ZT_RUN(peer_series_are_capped_with_an_other_bucket),
             ZT_RUN(series_sum_over_workers_and_fold_past_the_cap),
             ZT_RUN(many_series_over_two_listeners_and_two_workers_sum_exactly),
             ZT_RUN(label_values_are_escaped), ZT_RUN(histogram_buckets_are_cumulative),
             ZT_RUN(a_full_access_log_ring_drops_and_counts),
             ZT_RUN(json_strings_are_escaped),
             ZT_RUN(series_tables_never_fill_even_with_more_listeners_than_series))
