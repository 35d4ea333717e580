/* proxy/sbuf.c: see sbuf.h. */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

void zt_sbuf_printf(zt_sbuf_t *b, const char *fmt, ...) {
  va_list ap;
  int n;
  if (b->oom) return;
  for (;;) {
    va_start(ap, fmt);
    n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if (b->p && (size_t)n < b->cap - b->len) break;
    {
      size_t cap = (b->cap + (size_t)n + 1) * 2;
      char *p = realloc(b->p, cap);
      if (p == NULL) {
        b->oom = 1;
        return;
      }
      b->p = p;
      b->cap = cap;
    }
  }
  b->len += (size_t)n;
}

void zt_sbuf_json(zt_sbuf_t *b, const char *s) {
  char tmp[4200];
  size_t n = zt_json_str(tmp, 0, sizeof(tmp), s);
  zt_sbuf_printf(b, "%.*s", (int)n, tmp);
}

char *zt_sbuf_take(zt_sbuf_t *b, size_t *len) {
  char *p = b->oom ? NULL : b->p;
  if (b->oom) free(b->p);
  if (len) *len = b->len;
  b->p = NULL;
  b->len = b->cap = 0;
  b->oom = 0;
  return p;
}
