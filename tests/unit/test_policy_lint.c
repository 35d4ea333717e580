/* tests/unit/test_policy_lint.c: zt_policy_lint's warnings, each with file:line:col,
 * and the silence of a clean policy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy.h"
#include "zt_test.h"

typedef struct {
  char lines[16][768];
  size_t n;
  char path[128];
} warnings_t;

static void collect(void *ctx, const zt_error_t *w) {
  warnings_t *ws = ctx;
  char buf[1024];
  const char *s = zt_error_str(w, buf, sizeof(buf));
  /* Drop the temp file name: keep "line:col: message". */
  if (strncmp(s, ws->path, strlen(ws->path)) == 0) s += strlen(ws->path) + 1;
  if (ws->n < 16) snprintf(ws->lines[ws->n], sizeof(ws->lines[0]), "%s", s);
  ws->n++;
}

/* Load text, lint it with the extra trust domains, fill ws; -1 if it does not load. */
static int lint_text(const char *text, const char *const *tds, size_t n_tds,
                     warnings_t *ws) {
  char dir[] = "/tmp/zt_policy_lint.XXXXXX";
  zt_policy_t *p;
  zt_error_t err;
  size_t n;
  FILE *f;
  memset(ws, 0, sizeof(*ws));
  if (mkdtemp(dir) == NULL) return -1;
  snprintf(ws->path, sizeof(ws->path), "%s/policy.yaml", dir);
  if ((f = fopen(ws->path, "w")) == NULL) return -1;
  fputs(text, f);
  fclose(f);
  if (zt_policy_load(ws->path, &p, &err)) {
    char msg[1024];
    fprintf(stderr, "  load: %s\n", zt_error_str(&err, msg, sizeof(msg)));
    unlink(ws->path);
    rmdir(dir);
    return -1;
  }
  n = zt_policy_lint(p, tds, n_tds, collect, ws);
  zt_policy_release(p);
  unlink(ws->path);
  rmdir(dir);
  return n == ws->n ? 0 : -1;
}

#define HEAD "trust_domain: example.org\nrules:\n"

ZT_TEST(clean_policy_has_no_warnings) {
  warnings_t ws;
  ZT_ASSERT(lint_text(HEAD
                      "  - name: web\n    action: allow\n"
                      "    from: [\"spiffe://example.org/web/*\"]\n"
                      "    to: {ports: [8080]}\n"
                      "  - name: no-canary\n    action: deny\n"
                      "    from: [spiffe://example.org/web/canary]\n"
                      "    to: {ports: [22]}\n",
                      NULL, 0, &ws) == 0);
  ZT_ASSERT(ws.n == 0);
}

ZT_TEST(default_allow_is_warned_at_its_value) {
  warnings_t ws;
  ZT_ASSERT(lint_text("trust_domain: example.org\ndefault: allow\n", NULL, 0, &ws) == 0);
  ZT_ASSERT(ws.n == 1);
  ZT_ASSERT_STR_EQ(ws.lines[0],
                   "2:10: warning: default: allow lets through every request no rule "
                   "matches; zero trust wants default: deny and explicit allow rules");
}

ZT_TEST(allow_covered_by_a_deny_anywhere_is_unreachable) {
  warnings_t ws;
  /* The deny comes later in the file: deny rules still win. */
  ZT_ASSERT(lint_text(HEAD
                      "  - name: web-a\n    action: allow\n"
                      "    from: [spiffe://example.org/web/a]\n"
                      "    to: {ports: [8080, 8081]}\n"
                      "  - name: no-web\n    action: deny\n"
                      "    from: [\"spiffe://example.org/web/*\"]\n"
                      "    to: {ports: [\"8000-8099\"]}\n",
                      NULL, 0, &ws) == 0);
  ZT_ASSERT(ws.n == 1);
  ZT_ASSERT_STR_EQ(ws.lines[0],
                   "3:5: warning: rules[0] \"web-a\" is unreachable: every request it "
                   "matches is denied by rules[1] \"no-web\" (line 7), and deny rules win");
}

ZT_TEST(rule_covered_by_an_earlier_one_of_the_same_action_is_unreachable) {
  warnings_t ws;
  ZT_ASSERT(lint_text(HEAD
                      "  - name: all\n    action: allow\n    from: [\"*\"]\n"
                      "    http: {paths: [/api/*]}\n"
                      "  - name: some\n    action: allow\n"
                      "    from: [\"spiffe://example.org/ns/*\"]\n"
                      "    to: {ports: [443]}\n"
                      "    http: {methods: [GET], paths: [/api/v1/*, /api/x]}\n",
                      NULL, 0, &ws) == 0);
  ZT_ASSERT(ws.n == 1);
  ZT_ASSERT_STR_EQ(ws.lines[0],
                   "7:5: warning: rules[1] \"some\" is unreachable: the earlier rules[0] "
                   "\"all\" (line 3) matches every request it matches");
}

ZT_TEST(partial_overlap_is_not_shadowing) {
  warnings_t ws;
  /* Each pair differs in one way that leaves the later rule some requests. */
  ZT_ASSERT(lint_text(HEAD
                      "  - name: a\n    action: allow\n"
                      "    from: [\"spiffe://example.org/web/*\"]\n"
                      "    to: {ports: [8080]}\n"
                      "  - name: b-more-ports\n    action: allow\n"
                      "    from: [spiffe://example.org/web/x]\n"
                      "    to: {ports: [8080, 8081]}\n"
                      "  - name: c-the-base-itself\n    action: allow\n"
                      "    from: [spiffe://example.org/web]\n"
                      "    to: {ports: [8080]}\n"
                      "  - name: d-http-only\n    action: deny\n"
                      "    from: [\"*\"]\n    http: {paths: [/admin]}\n"
                      "  - name: e-l4\n    action: allow\n"
                      "    from: [spiffe://example.org/ops]\n"
                      "  - name: f-webhook\n    action: allow\n"
                      "    from: [\"spiffe://example.org/webhook/*\"]\n"
                      "    to: {ports: [8080]}\n",
                      NULL, 0, &ws) == 0);
  for (size_t i = 0; i < ws.n; i++) fprintf(stderr, "  unexpected: %s\n", ws.lines[i]);
  ZT_ASSERT(ws.n == 0);
}

ZT_TEST(ids_outside_every_known_trust_domain) {
  static const char *const tds[] = {"partner.example"};
  static const char text[] = HEAD
      "  - name: x\n    action: allow\n    from:\n"
      "      - spiffe://partner.example/a\n"
      "      - \"spiffe://other.test/*\"\n"
      "      - \"*\"\n"
      "      - spiffe://example.org/b\n";
  warnings_t ws;
  ZT_ASSERT(lint_text(text, NULL, 0, &ws) == 0);
  ZT_ASSERT(ws.n == 2);
  ZT_ASSERT_STR_EQ(ws.lines[0],
                   "6:9: warning: rules[0].from[0]: trust domain \"partner.example\" of "
                   "\"spiffe://partner.example/a\" is outside every known trust domain "
                   "(example.org)");
  ZT_ASSERT_STR_EQ(ws.lines[1],
                   "7:9: warning: rules[0].from[1]: trust domain \"other.test\" of "
                   "\"spiffe://other.test/*\" is outside every known trust domain "
                   "(example.org)");
  ZT_ASSERT(lint_text(text, tds, 1, &ws) == 0);
  ZT_ASSERT(ws.n == 1);
  ZT_ASSERT(strstr(ws.lines[0], "\"other.test\"") != NULL);
  ZT_ASSERT(strstr(ws.lines[0], "(example.org, partner.example)") != NULL);
}

ZT_TEST(warnings_come_in_file_order) {
  warnings_t ws;
  ZT_ASSERT(lint_text(HEAD
                      "  - name: a\n    action: deny\n    from: [\"*\"]\n"
                      "  - name: b\n    action: deny\n"
                      "    from: [spiffe://elsewhere.test/a]\n"
                      "default: allow\n",
                      NULL, 0, &ws) == 0);
  ZT_ASSERT(ws.n == 3);
  ZT_ASSERT(strncmp(ws.lines[0], "6:5: warning: rules[1] \"b\" is unreachable", 40) == 0);
  ZT_ASSERT(strncmp(ws.lines[1], "8:12: warning: rules[1].from[0]", 31) == 0);
  ZT_ASSERT(strncmp(ws.lines[2], "9:10: warning: default: allow", 29) == 0);
}

ZT_TEST_MAIN(ZT_RUN(clean_policy_has_no_warnings),
             ZT_RUN(default_allow_is_warned_at_its_value),
             ZT_RUN(allow_covered_by_a_deny_anywhere_is_unreachable),
             ZT_RUN(rule_covered_by_an_earlier_one_of_the_same_action_is_unreachable),
             ZT_RUN(partial_overlap_is_not_shadowing),
             ZT_RUN(ids_outside_every_known_trust_domain),
             ZT_RUN(warnings_come_in_file_order))
