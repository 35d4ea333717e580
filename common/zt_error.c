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
  zt_escape_controls(err->file, sizeof(err->file));
  zt_escape_controls(err->msg, sizeof(err->msg));
  return -1;
}

void zt_escape_controls(char *s, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t len = strlen(s), i;
  if (cap < 5) return;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch != 0x7f) continue;
    if (len + 3 >= cap) len = cap - 4;          /* make room: cut the tail */
    if (i >= len) break;
    memmove(s + i + 4, s + i + 1, len - i - 1);
    s[i] = '\\';
    s[i + 1] = 'x';
    s[i + 2] = hex[ch >> 4];
    s[i + 3] = hex[ch & 15];
    len += 3;
    i += 3;
  }
  s[len] = '\0';
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
