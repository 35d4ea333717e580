/* common/zt_file.c: see zt_file.h. */
#include "zt_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int zt_read_file(const char *path, size_t max, unsigned char **buf, size_t *len,
                 zt_error_t *err) {
  FILE *f;
  unsigned char *b = NULL, *nb;
  size_t n = 0, cap = 0;
  int too_big = 0, rc;

  *buf = NULL;
  *len = 0;
  f = fopen(path, "rb");
  if (f == NULL)
    return zt_error_set(err, path, 0, 0, "cannot open: %s", strerror(errno));
  for (;;) {
    size_t r;
    if (n == cap) {
      if (cap == max) {
        too_big = fgetc(f) != EOF;
        break;
      }
      cap = cap ? cap * 2 : 16384;
      if (cap > max) cap = max;
      nb = realloc(b, cap + 1); /* +1: the trailing NUL */
      if (nb == NULL) {
        rc = zt_error_set(err, path, 0, 0, "out of memory");
        goto fail;
      }
      b = nb;
    }
    r = fread(b + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  if (ferror(f)) {
    rc = zt_error_set(err, path, 0, 0, "read error: %s", strerror(errno));
    goto fail;
  }
  if (too_big) {
    rc = zt_error_set(err, path, 0, 0, "file is larger than %zu bytes", max);
    goto fail;
  }
  fclose(f);
  if (b == NULL && (b = malloc(1)) == NULL)   /* an empty file */
    return zt_error_set(err, path, 0, 0, "out of memory");
  b[n] = '\0';
  *buf = b;
  *len = n;
  return 0;

fail:
  free(b);
  fclose(f);
  return rc;
}
