/* common/zt_yaml.c: libyaml document loading and strict typed accessors. */
#include "zt_yaml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int zt_yaml_load(zt_yaml_t *y, const char *file, zt_error_t *err) {
  yaml_parser_t parser;
  FILE *f;

  memset(y, 0, sizeof(*y));
  y->file = file;
  f = fopen(file, "rb");
  if (f == NULL)
    return zt_error_set(err, file, 0, 0, "cannot open: %s", strerror(errno));
  if (!yaml_parser_initialize(&parser)) {
    fclose(f);
    return zt_error_set(err, file, 0, 0, "out of memory");
  }
  yaml_parser_set_input_file(&parser, f);
  if (!yaml_parser_load(&parser, &y->doc)) {
    int line = (int)parser.problem_mark.line + 1, col = (int)parser.problem_mark.column + 1;
    zt_error_set(err, file, line, col, "YAML syntax error: %s%s%s",
                 parser.problem ? parser.problem : "unknown",
                 parser.context ? " " : "", parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    fclose(f);
    return -1;
  }
  yaml_parser_delete(&parser);
  fclose(f);
  y->loaded = true;
  return 0;
}

void zt_yaml_free(zt_yaml_t *y) {
  if (y->loaded) yaml_document_delete(&y->doc);
  y->loaded = false;
}

yaml_node_t *zt_yaml_root(zt_yaml_t *y) { return yaml_document_get_root_node(&y->doc); }

int zt_yaml_fail(zt_yaml_t *y, const yaml_node_t *n, zt_error_t *err, const char *fmt,
                 ...) {
  char msg[ZT_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (n == NULL) return zt_error_set(err, y->file, 0, 0, "%s", msg);
  return zt_error_set(err, y->file, (int)n->start_mark.line + 1,
                      (int)n->start_mark.column + 1, "%s", msg);
}

static const char *type_name(const yaml_node_t *n) {
  switch (n->type) {
  case YAML_SCALAR_NODE: return "a scalar";
  case YAML_SEQUENCE_NODE: return "a list";
  case YAML_MAPPING_NODE: return "a mapping";
  default: return "nothing";
  }
}

int zt_yaml_want_map(zt_yaml_t *y, yaml_node_t *n, const char *what, zt_error_t *err) {
  if (n && n->type == YAML_MAPPING_NODE) return 0;
  return zt_yaml_fail(y, n, err, "%s: expected a mapping, found %s", what,
                      n ? type_name(n) : "nothing");
}

int zt_yaml_want_seq(zt_yaml_t *y, yaml_node_t *n, const char *what, zt_error_t *err) {
  if (n && n->type == YAML_SEQUENCE_NODE) return 0;
  return zt_yaml_fail(y, n, err, "%s: expected a list, found %s", what,
                      n ? type_name(n) : "nothing");
}

static const char *scalar(yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

int zt_yaml_check_keys(zt_yaml_t *y, yaml_node_t *n, const char *const *allowed,
                       const char *what, zt_error_t *err) {
  yaml_node_pair_t *p, *q;
  if (zt_yaml_want_map(y, n, what, err)) return -1;
  for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(&y->doc, p->key);
    const char *ks = scalar(k);
    const char *const *a;
    if (ks == NULL) return zt_yaml_fail(y, k, err, "%s: keys must be plain words", what);
    for (a = allowed; *a; a++)
      if (strcmp(*a, ks) == 0) break;
    if (*a == NULL) return zt_yaml_fail(y, k, err, "%s: unknown key \"%s\"", what, ks);
    for (q = n->data.mapping.pairs.start; q < p; q++) {
      const char *qs = scalar(yaml_document_get_node(&y->doc, q->key));
      if (qs && strcmp(qs, ks) == 0)
        return zt_yaml_fail(y, k, err, "%s: key \"%s\" given twice", what, ks);
    }
  }
  return 0;
}

yaml_node_t *zt_yaml_get(zt_yaml_t *y, yaml_node_t *n, const char *key) {
  yaml_node_pair_t *p;
  if (n == NULL || n->type != YAML_MAPPING_NODE) return NULL;
  for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    const char *ks = scalar(yaml_document_get_node(&y->doc, p->key));
    if (ks && strcmp(ks, key) == 0) return yaml_document_get_node(&y->doc, p->value);
  }
  return NULL;
}

size_t zt_yaml_len(yaml_node_t *seq) {
  if (seq == NULL || seq->type != YAML_SEQUENCE_NODE) return 0;
  return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

yaml_node_t *zt_yaml_item(zt_yaml_t *y, yaml_node_t *seq, size_t i) {
  if (i >= zt_yaml_len(seq)) return NULL;
  return yaml_document_get_node(&y->doc, seq->data.sequence.items.start[i]);
}

int zt_yaml_str(zt_yaml_t *y, yaml_node_t *n, const char *what, const char **out,
                zt_error_t *err) {
  const char *s = scalar(n);
  if (s == NULL)
    return zt_yaml_fail(y, n, err, "%s: expected a string, found %s", what,
                        n ? type_name(n) : "nothing");
  if (n->data.scalar.length != strlen(s))
    return zt_yaml_fail(y, n, err, "%s: contains a NUL byte", what);
  *out = s;
  return 0;
}

int zt_yaml_uint(zt_yaml_t *y, yaml_node_t *n, const char *what, uint64_t min,
                 uint64_t max, uint64_t *out, zt_error_t *err) {
  const char *s = scalar(n);
  char *end;
  unsigned long long v;
  if (s == NULL || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || s[0] < '0' ||
      s[0] > '9')
    return zt_yaml_fail(y, n, err, "%s: expected a whole number", what);
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || *end)
    return zt_yaml_fail(y, n, err, "%s: \"%s\" is not a whole number", what, s);
  if (v < min || v > max)
    return zt_yaml_fail(y, n, err, "%s: %llu is out of range %llu..%llu", what, v,
                        (unsigned long long)min, (unsigned long long)max);
  *out = v;
  return 0;
}

int zt_yaml_bool(zt_yaml_t *y, yaml_node_t *n, const char *what, bool *out,
                 zt_error_t *err) {
  const char *s = scalar(n);
  if (s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
    if (strcmp(s, "true") == 0) { *out = true; return 0; }
    if (strcmp(s, "false") == 0) { *out = false; return 0; }
  }
  return zt_yaml_fail(y, n, err, "%s: expected true or false", what);
}

/* A duration in microseconds; "us" is a unit only when us_unit is set. */
static int duration(zt_yaml_t *y, yaml_node_t *n, const char *what, bool us_unit,
                    uint64_t *out_us, zt_error_t *err) {
  const char *s = scalar(n);
  char *end;
  double v, mul;
  if (s == NULL || s[0] < '0' || s[0] > '9')
    return zt_yaml_fail(y, n, err, "%s: expected a duration such as %s", what,
                        us_unit ? "200us, 1ms or 10s" : "500ms, 10s or 5m");
  errno = 0;
  v = strtod(s, &end);
  if (errno) return zt_yaml_fail(y, n, err, "%s: \"%s\" is out of range", what, s);
  if (*end == '\0' || strcmp(end, "s") == 0) mul = 1e6;
  else if (strcmp(end, "ms") == 0) mul = 1e3;
  else if (us_unit && strcmp(end, "us") == 0) mul = 1;
  else if (strcmp(end, "m") == 0) mul = 60e6;
  else if (strcmp(end, "h") == 0) mul = 3600e6;
  else
    return zt_yaml_fail(y, n, err, "%s: \"%s\" has an unknown unit (use %s)", what, s,
                        us_unit ? "us, ms, s, m or h" : "ms, s, m or h");
  if (v * mul > 7.0 * 24 * 3600 * 1e6)
    return zt_yaml_fail(y, n, err, "%s: \"%s\" is longer than a week", what, s);
  *out_us = (uint64_t)(v * mul);
  return 0;
}

int zt_yaml_duration(zt_yaml_t *y, yaml_node_t *n, const char *what, uint64_t *out_ms,
                     zt_error_t *err) {
  uint64_t us;
  if (duration(y, n, what, false, &us, err)) return -1;
  *out_ms = us / 1000;
  return 0;
}

int zt_yaml_duration_us(zt_yaml_t *y, yaml_node_t *n, const char *what, uint64_t *out_us,
                        zt_error_t *err) {
  return duration(y, n, what, true, out_us, err);
}
