/* bench/policy_bench.c: decisions per second and ns per decision of the compiled
 * policy, at 10, 1,000 and 100,000 generated rules, for three kinds of request:
 *
 *   exact   the peer's ID is named exactly by an allow rule (port in its set)
 *   prefix  the peer's ID is below an allow rule's "spiffe://td/ns/teamN/\*"
 *   miss    no rule names the peer: it falls through to the default (deny)
 *
 * Every generated policy also has two deny rules the miss case must get past: one from
 * "*" to port 22 and one below /ns/quarantine. Rules alternate exact and prefix, and
 * cycle through four port sets (one port; two ports; a range; six ports, which takes
 * the bitmap path). Each case decides a pool of 4,096 different requests round-robin
 * through zt_policy_decide (the counting one: that is the data path), and reports the
 * best of 7 runs. The runs go round every size and case in turn, so that whatever
 * else the machine does in a given second slows all figures alike, not one of them.
 * Each decision is checked once against the rule it must hit before timing. Prints a
 * Markdown table; the goal of the design is under 150 ns per decision at 100,000
 * rules and within 1.5x of the 10-rule figure.
 *
 *   policy_bench [--quick]       (--quick: fewer decisions, for a smoke test)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy.h"

#define POOL 4096
#define ID_MAX 96
#define RUNS 7
#define N_SIZES 3

typedef enum { CASE_EXACT, CASE_PREFIX, CASE_MISS, N_CASES } case_t;
static const char *const kCaseName[] = {"exact", "prefix", "miss"};

static const char *const kPortSets[] = {"[8080]", "[443, 8443]", "[\"9000-9099\"]",
                                        "[8080, 8082, 8084, 8086, 8088, 9090]"};
static const uint16_t kPortHit[] = {8080, 8443, 9042, 8086};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (uint32_t)(((rng * 0x2545f4914f6cdd1dull) >> 32) % n);
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Generated rules 2.. n-1: rule k (k >= 2) is exact when k is even, prefix when odd. */
static int write_policy(const char *path, size_t n_rules) {
  FILE *f = fopen(path, "w");
  size_t k;
  if (f == NULL) return -1;
  fprintf(f, "trust_domain: bench.test\nrules:\n"
             "  - name: deny-ssh\n    action: deny\n    from: [\"*\"]\n"
             "    to: {ports: [22]}\n"
             "  - name: deny-quarantine\n    action: deny\n"
             "    from: [\"spiffe://bench.test/ns/quarantine/*\"]\n");
  for (k = 2; k < n_rules; k++) {
    if (k % 2 == 0)
      fprintf(f, "  - name: e%zu\n    action: allow\n"
                 "    from: [spiffe://bench.test/ns/ns%zu/sa/svc%zu]\n", k, k % 97, k);
    else
      fprintf(f, "  - name: p%zu\n    action: allow\n"
                 "    from: [\"spiffe://bench.test/ns/team%zu/*\"]\n", k, k);
    fprintf(f, "    to: {ports: %s}\n", kPortSets[k % 4]);
  }
  return fclose(f);
}

typedef struct {
  char ids[POOL][ID_MAX];
  zt_request_t req[POOL];
  int want[POOL];                 /* rule index (file order) or -1 */
} pool_t;

static void make_pool(pool_t *pl, case_t c, size_t n_rules) {
  size_t i, half = (n_rules - 2) / 2;   /* generated exact rules, and prefix rules */
  for (i = 0; i < POOL; i++) {
    size_t k;
    uint16_t port = 8080;
    char *id = pl->ids[i];
    if (c == CASE_EXACT) {
      k = 2 + 2 * rnd((uint32_t)half);
      snprintf(id, ID_MAX, "spiffe://bench.test/ns/ns%zu/sa/svc%zu", k % 97, k);
      port = kPortHit[k % 4];
      pl->want[i] = (int)k;
    } else if (c == CASE_PREFIX) {
      k = 3 + 2 * rnd((uint32_t)half);
      snprintf(id, ID_MAX, "spiffe://bench.test/ns/team%zu/sa/worker-%u", k, rnd(1000));
      port = kPortHit[k % 4];
      pl->want[i] = (int)k;
    } else {
      snprintf(id, ID_MAX, "spiffe://bench.test/ns/unknown%u/sa/svc%u", rnd(1000),
               rnd(100000));
      pl->want[i] = -1;
    }
    pl->req[i].peer_id = id;
    pl->req[i].peer_id_len = strlen(id);
    pl->req[i].port = port;
    pl->req[i].method = NULL;
    pl->req[i].path = NULL;
  }
}

int main(int argc, char **argv) {
  static const size_t sizes[N_SIZES] = {10, 1000, 100000};
  char dir[] = "/tmp/zt_policy_bench.XXXXXX", path[64];
  long iters = argc > 1 && strcmp(argv[1], "--quick") == 0 ? 200000 : 4000000;
  zt_policy_t *pol[N_SIZES] = {NULL};
  pool_t *pools[N_SIZES][N_CASES] = {{NULL}};
  double load_ms[N_SIZES], best[N_SIZES][N_CASES];
  size_t s, i;
  int c, run, bad = 0;

  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(path, sizeof(path), "%s/policy.yaml", dir);
  for (s = 0; s < N_SIZES && !bad; s++) {
    zt_error_t err;
    double t0;
    if (write_policy(path, sizes[s])) {
      perror(path);
      bad = 1;
      break;
    }
    t0 = now_ns();
    if (zt_policy_load(path, &pol[s], &err)) {
      char msg[1024];
      fprintf(stderr, "%s\n", zt_error_str(&err, msg, sizeof(msg)));
      bad = 1;
      break;
    }
    load_ms[s] = (now_ns() - t0) / 1e6;
    for (c = 0; c < N_CASES && !bad; c++) {
      pool_t *pl = pools[s][c] = malloc(sizeof(pool_t));
      if (pl == NULL) {
        perror("malloc");
        bad = 1;
        break;
      }
      make_pool(pl, (case_t)c, sizes[s]);
      for (i = 0; i < POOL; i++) {
        zt_decision_t d = zt_policy_decide_nocount(pol[s], &pl->req[i]);
        if (d.rule_index != pl->want[i]) {
          fprintf(stderr, "%zu rules, %s: %s port %u decided by rules[%d], want %d\n",
                  sizes[s], kCaseName[c], pl->ids[i], pl->req[i].port, d.rule_index,
                  pl->want[i]);
          bad = 1;
        }
      }
      best[s][c] = 1e300;
    }
  }
  unlink(path);
  rmdir(dir);

  for (run = 0; run < RUNS && !bad; run++) {
    for (s = 0; s < N_SIZES; s++) {
      for (c = 0; c < N_CASES; c++) {
        const pool_t *pl = pools[s][c];
        volatile unsigned sink = 0;
        double t = now_ns(), per;
        long n;
        for (n = 0; n < iters; n++)
          sink += (unsigned)zt_policy_decide(pol[s], &pl->req[n & (POOL - 1)]).rule_index;
        per = (now_ns() - t) / (double)iters;
        (void)sink;
        if (per < best[s][c]) best[s][c] = per;
      }
    }
  }
  if (!bad) {
    printf("| rules | case | decisions/s | ns/decision | vs 10 rules | load+compile |\n");
    printf("|------:|:-----|------------:|------------:|------------:|-------------:|\n");
    for (s = 0; s < N_SIZES; s++)
      for (c = 0; c < N_CASES; c++)
        printf("| %zu | %s | %.1f M | %.1f | %.2fx | %.0f ms |\n", sizes[s],
               kCaseName[c], 1e3 / best[s][c], best[s][c], best[s][c] / best[0][c],
               load_ms[s]);
  }
  for (s = 0; s < N_SIZES; s++) {
    for (c = 0; c < N_CASES; c++) free(pools[s][c]);
    if (pol[s]) zt_policy_release(pol[s]);
  }
  return bad;
}
