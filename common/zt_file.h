/* common/zt_file.h: a whole file into memory, bounded. */
#ifndef ZT_FILE_H
#define ZT_FILE_H

#include <stddef.h>

#include "zt_error.h"

/* Read the whole file at path (at most max bytes) into a malloc'd, NUL-terminated
 * *buf (the caller frees it; *len excludes the NUL). 0, or -1 with err filled as
 * "path: what went wrong" and *buf NULL. */
int zt_read_file(const char *path, size_t max, unsigned char **buf, size_t *len,
                 zt_error_t *err);

#endif
