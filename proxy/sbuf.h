/* proxy/sbuf.h: a growing string for responses built off the data path (metrics,
 * admin JSON). An allocation failure is sticky: the result is then NULL. */
#ifndef ZT_SBUF_H
#define ZT_SBUF_H

#include <stddef.h>

typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} zt_sbuf_t;

void zt_sbuf_printf(zt_sbuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void zt_sbuf_json(zt_sbuf_t *b, const char *s);   /* a JSON string, or null */
char *zt_sbuf_take(zt_sbuf_t *b, size_t *len);    /* malloc'd result, or NULL */

#endif
