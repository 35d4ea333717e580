/* common/zt_error.c: formatting of zt_error_t. */
#include "zt_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int zt_error_set(zt_error_t *err, const char *file, int line, int col,
                 const char *fmt, ...) {
  va_list ap;
  if (err == NULL) return -1;
  snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
  err->line = line;
  err->col = col;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
  va_end(ap);
  return -1;
}

const char *zt_error_str(const zt_error_t *err, char *buf, size_t len) {
  if (err->file[0] && err->line > 0)
    snprintf(buf, len, "%s:%d:%d: %s", err->file, err->line, err->col, err->msg);
  else if (err->file[0])
    snprintf(buf, len, "%s: %s", err->file, err->msg);
  else
    snprintf(buf, len, "%s", err->msg);
  return buf;
}
