/* common/zt_yaml.h: strict reading of YAML files through libyaml's document API.
 *
 * Every accessor that can fail fills a zt_error_t with the file and the 1-based
 * line:column of the offending node, so a configuration or policy error always
 * points at its source.
 */
#ifndef ZT_YAML_H
#define ZT_YAML_H

#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>

#include "zt_error.h"

typedef struct {
  yaml_document_t doc;
  const char *file;      /* borrowed: must outlive the zt_yaml_t */
  bool loaded;
} zt_yaml_t;

/* Parse file, at most 16 MiB and one document: a second one (after `---` or `...`) is
 * an error at its start. The root is NULL for an empty file. On error y holds nothing
 * to free. */
int zt_yaml_load(zt_yaml_t *y, const char *file, zt_error_t *err);
void zt_yaml_free(zt_yaml_t *y);
yaml_node_t *zt_yaml_root(zt_yaml_t *y);

/* Fill err with the position of node n (or the file alone if n is NULL); returns -1. */
int zt_yaml_fail(zt_yaml_t *y, const yaml_node_t *n, zt_error_t *err,
                 const char *fmt, ...) ZT_PRINTF(4, 5);

/* Type checks: 0 when n has the type, else -1 with "<what>: expected a mapping". */
int zt_yaml_want_map(zt_yaml_t *y, yaml_node_t *n, const char *what, zt_error_t *err);
int zt_yaml_want_seq(zt_yaml_t *y, yaml_node_t *n, const char *what, zt_error_t *err);

/* Every key of mapping n must be a scalar in allowed (NULL-terminated) and appear once;
 * otherwise -1 with "<what>: unknown key \"k\"" at the key. */
int zt_yaml_check_keys(zt_yaml_t *y, yaml_node_t *n, const char *const *allowed,
                       const char *what, zt_error_t *err);

/* Value node of key in mapping n, or NULL. */
yaml_node_t *zt_yaml_get(zt_yaml_t *y, yaml_node_t *n, const char *key);

/* Sequence items: for (i = 0; (it = zt_yaml_item(y, seq, i)); i++) */
yaml_node_t *zt_yaml_item(zt_yaml_t *y, yaml_node_t *seq, size_t i);
size_t zt_yaml_len(yaml_node_t *seq);

/* Scalars. Each returns 0, or -1 with err at the node ("<what>: expected ..."). */
int zt_yaml_str(zt_yaml_t *y, yaml_node_t *n, const char *what, const char **out,
                zt_error_t *err);                       /* borrowed from the doc */
int zt_yaml_uint(zt_yaml_t *y, yaml_node_t *n, const char *what, uint64_t min,
                 uint64_t max, uint64_t *out, zt_error_t *err);
int zt_yaml_bool(zt_yaml_t *y, yaml_node_t *n, const char *what, bool *out,
                 zt_error_t *err);
/* "250ms", "10s", "5m", "1h" or a plain number of seconds; out in milliseconds. */
int zt_yaml_duration(zt_yaml_t *y, yaml_node_t *n, const char *what, uint64_t *out_ms,
                     zt_error_t *err);
/* The same, "200us" too, out in microseconds. */
int zt_yaml_duration_us(zt_yaml_t *y, yaml_node_t *n, const char *what, uint64_t *out_us,
                        zt_error_t *err);

#endif
