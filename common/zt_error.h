/* common/zt_error.h: the one error type that reaches a human.
 *
 * Functions return 0 or a negative code; where an operator must fix something they
 * also fill a zt_error_t, which prints as "file:line:column: message" (or just
 * "message" when there is no position).
 */
#ifndef ZT_ERROR_H
#define ZT_ERROR_H

#include <stddef.h>

#define ZT_ERROR_MSG_MAX 512

typedef struct {
  char file[256];           /* "" when the error has no source file */
  int line, col;            /* 1-based; 0 when unknown */
  char msg[ZT_ERROR_MSG_MAX];
} zt_error_t;

#if defined(__GNUC__)
#define ZT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ZT_PRINTF(a, b)
#endif

/* Fill err (which may be NULL) and return -1. */
int zt_error_set(zt_error_t *err, const char *file, int line, int col,
                 const char *fmt, ...) ZT_PRINTF(5, 6);

/* Escape, in place, the control characters of the NUL-terminated s (cap bytes) as
 * \xNN, so that text from a file or a peer cannot start a line of its own in a log.
 * What no longer fits is cut. */
void zt_escape_controls(char *s, size_t cap);

/* "file:line:col: msg", "file: msg" or "msg" into buf; returns buf. */
const char *zt_error_str(const zt_error_t *err, char *buf, size_t len);

#endif
