/* tests/unit/zt_test.h: the unit-test runner, after libuv's TEST_IMPL/ASSERT.
 *
 *   ZT_TEST(prefix_stops_at_segment_boundary) { ZT_ASSERT(...); }
 *   ZT_TEST_MAIN(ZT_RUN(prefix_stops_at_segment_boundary), ZT_RUN(...))
 *
 * A failed assertion prints file:line and the expression and fails that test; main
 * prints one line per test and a closing "N passed, N failed" and exits non-zero on
 * any failure. Each test runs in the same process, in order.
 */
#ifndef ZT_TEST_H
#define ZT_TEST_H

#include <stdio.h>
#include <string.h>

static int zt_test_failed_;

#define ZT_TEST(name) static void test_##name(void)

#define ZT_ASSERT(expr)                                                        \
  do {                                                                         \
    if (!(expr)) {                                                             \
      fprintf(stderr, "  %s:%d: assertion failed: %s\n", __FILE__, __LINE__,  \
              #expr);                                                          \
      zt_test_failed_ = 1;                                                     \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define ZT_ASSERT_STR_EQ(a, b)                                                 \
  do {                                                                         \
    const char *a_ = (a), *b_ = (b);                                           \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                     \
      fprintf(stderr, "  %s:%d: \"%s\" != \"%s\" (%s vs %s)\n", __FILE__,      \
              __LINE__, a_ ? a_ : "(null)", b_ ? b_ : "(null)", #a, #b);       \
      zt_test_failed_ = 1;                                                     \
      return;                                                                  \
    }                                                                          \
  } while (0)

typedef struct { const char *name; void (*fn)(void); } zt_test_case_t;
#define ZT_RUN(name) { #name, test_##name }

#define ZT_TEST_MAIN(...)                                                      \
  int main(void) {                                                             \
    static const zt_test_case_t cases_[] = { __VA_ARGS__ };                    \
    size_t i_, n_ = sizeof(cases_) / sizeof(cases_[0]);                        \
    int pass_ = 0, fail_ = 0;                                                  \
    for (i_ = 0; i_ < n_; i_++) {                                              \
      zt_test_failed_ = 0;                                                     \
      cases_[i_].fn();                                                         \
      printf("%s %s\n", zt_test_failed_ ? "FAIL" : "ok  ", cases_[i_].name);   \
      if (zt_test_failed_) fail_++; else pass_++;                              \
    }                                                                          \
    printf("%d passed, %d failed\n", pass_, fail_);                            \
    return fail_ ? 1 : 0;                                                      \
  }

#endif
