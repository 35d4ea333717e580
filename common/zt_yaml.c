/* common/zt_yaml.c: libyaml document loading and strict typed accessors. */
#include "zt_yaml.h"

#include "zt_file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Beyond this a "configuration" is a mistake (or /dev/zero), not something to parse. */
#define MAX_FILE_BYTES (16u << 20)

/* The code point at s[i] and its width in bytes; utf16 is 0 (UTF-8), 1 (UTF-16LE) or
 * 2 (UTF-16BE). Only line breaks need the exact value: others may come back partial. */
static uint32_t char_at(const unsigned char *s, size_t len, size_t i, int utf16,
                        size_t *w) {
  uint32_t c;
  if (utf16) {
    if (i + 1 >= len) { *w = len - i; return 0; }
    c = utf16 == 1 ? (uint32_t)s[i] | (uint32_t)s[i + 1] << 8
                   : (uint32_t)s[i] << 8 | (uint32_t)s[i + 1];
    *w = c >= 0xD800 && c <= 0xDBFF ? 4 : 2;     /* a surrogate pair is one character */
    return c;
  }
  c = s[i];
  *w = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  if (*w == 2 && i + 1 < len) return (c & 0x1F) << 6 | (s[i + 1] & 0x3Fu);
  if (*w == 3 && i + 2 < len)
    return (c & 0x0F) << 12 | (s[i + 1] & 0x3Fu) << 6 | (s[i + 2] & 0x3Fu);
  return c;
}

/* 1-based line:column of byte offset off in s, counted as libyaml counts its marks:
 * columns in characters, the BOM in none, CR LF, CR, LF, NEL, LS and PS one line break
 * each. libyaml takes UTF-16 by its BOM and UTF-8 otherwise, and reports a reader error
 * at the first bad character, so everything before off is well formed. */
static void offset_position(const unsigned char *s, size_t len, size_t off, int *line,
                            int *col) {
  size_t i = 0, w;
  int utf16 = 0;
  uint32_t c;

  if (len >= 2 && s[0] == 0xFF && s[1] == 0xFE) { utf16 = 1; i = 2; }
  else if (len >= 2 && s[0] == 0xFE && s[1] == 0xFF) { utf16 = 2; i = 2; }
  else if (len >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF) i = 3;
  *line = 1;
  *col = 1;
  while (i < off && i < len) {
    c = char_at(s, len, i, utf16, &w);
    if (i + w > off) break;       /* off is inside this character: it is the bad one */
    i += w;
    if (c == '\r' && i < len && char_at(s, len, i, utf16, &w) == '\n') continue;
    if (c == '\n' || c == '\r' || c == 0x85 || c == 0x2028 || c == 0x2029) {
      (*line)++;
      *col = 1;
    } else {
      (*col)++;
    }
  }
}

/* Fill err from the parser's error: the problem's mark, or for a reader error (bad
 * encoding, control characters), which has no mark, the position of its byte offset.
 * note ("" or " (...)") ends the message. */
static int parse_fail(yaml_parser_t *parser, const char *file, const unsigned char *text,
                      size_t len, const char *note, zt_error_t *err) {
  int line = (int)parser->problem_mark.line + 1, col = (int)parser->problem_mark.column + 1;
  const char *problem = parser->problem ? parser->problem : "unknown";

  if (parser->error == YAML_MEMORY_ERROR) return zt_error_set(err, file, 0, 0, "out of memory");
  if (parser->error == YAML_READER_ERROR) {
    offset_position(text, len, parser->problem_offset, &line, &col);
    if (parser->problem_value >= 0)
      return zt_error_set(err, file, line, col, "YAML syntax error: %s (0x%02X)%s", problem,
                          (unsigned)parser->problem_value, note);
  }
  return zt_error_set(err, file, line, col, "YAML syntax error: %s%s%s%s", problem,
                      parser->context ? " " : "", parser->context ? parser->context : "",
                      note);
}

int zt_yaml_load(zt_yaml_t *y, const char *file, zt_error_t *err) {
  yaml_parser_t parser;
  yaml_document_t next;
  unsigned char *text = NULL;
  size_t len = 0;
  int rc = -1;

  memset(y, 0, sizeof(*y));
  y->file = file;
  /* The whole file, so that a reader error's byte offset can be turned into a
   * position. */
  if (zt_read_file(file, MAX_FILE_BYTES, &text, &len, err)) return -1;
  if (!yaml_parser_initialize(&parser)) {
    free(text);
    return zt_error_set(err, file, 0, 0, "out of memory");
  }
  yaml_parser_set_input_string(&parser, text, len);
  if (!yaml_parser_load(&parser, &y->doc)) {
    parse_fail(&parser, file, text, len, "", err);
    goto done;
  }
  y->loaded = true;
  /* yaml_parser_load reads one document per call: whatever follows a `---` or `...`
   * would be dropped without a word, a policy's deny rule included. So read on: only
   * the end of the stream (a document without a root) may follow. */
  if (!yaml_parser_load(&parser, &next)) {
    parse_fail(&parser, file, text, len,
               " (after the first document; only one YAML document is allowed)", err);
    zt_yaml_free(y);
    goto done;
  }
  if (yaml_document_get_root_node(&next) != NULL) {
    zt_error_set(err, file, (int)next.start_mark.line + 1, (int)next.start_mark.column + 1,
                 "only one YAML document is allowed (a second one starts here)");
    yaml_document_delete(&next);
    zt_yaml_free(y);
    goto done;
  }
  yaml_document_delete(&next);
  rc = 0;

done:
  yaml_parser_delete(&parser);
  free(text);
  return rc;
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
