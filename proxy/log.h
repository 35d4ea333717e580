/* proxy/log.h: diagnostic logging (stderr, by level) and the access log (JSON lines).
 *
 * Diagnostic lines read "ztproxy: LEVEL: text" so they grep well. The access log gets
 * one JSON object per connection; each record is formatted into a stack buffer and
 * written with a single write(2), so lines from several workers never interleave.
 */
#ifndef ZT_LOG_H
#define ZT_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "zt_error.h"

enum { ZT_LOG_DEBUG, ZT_LOG_INFO, ZT_LOG_WARN, ZT_LOG_ERROR };

extern int zt_log_level;

void zt_log(int level, const char *fmt, ...) ZT_PRINTF(2, 3);
#define zt_debug(...) do { if (zt_log_level <= ZT_LOG_DEBUG) zt_log(ZT_LOG_DEBUG, __VA_ARGS__); } while (0)
#define zt_info(...)  do { if (zt_log_level <= ZT_LOG_INFO) zt_log(ZT_LOG_INFO, __VA_ARGS__); } while (0)
#define zt_warn(...)  zt_log(ZT_LOG_WARN, __VA_ARGS__)
#define zt_error(...) zt_log(ZT_LOG_ERROR, __VA_ARGS__)

int zt_log_level_parse(const char *s);   /* -1 if unknown */

/* Access log target: NULL or "off" disables it, "stdout" is fd 1, else a file opened
 * for appending (and reopened by zt_access_log_reopen, for logrotate). */
int zt_access_log_open(const char *target, zt_error_t *err);
void zt_access_log_close(void);
int zt_access_log_enabled(void);

/* Workers never write the log themselves: each pushes whole lines into its own
 * bounded single-producer ring, and one writer thread drains all rings. A full ring
 * drops the line and counts it (*dropped); the event loop never waits on the disk. */
typedef struct zt_alog_queue zt_alog_queue_t;
zt_alog_queue_t *zt_alog_queue_new(size_t cap, void (*on_drop)(void *), void *arg);
void zt_alog_queue_free(zt_alog_queue_t *q);
void zt_alog_push(zt_alog_queue_t *q, const char *line, size_t len);
int zt_alog_start(zt_alog_queue_t *const *qs, size_t n);  /* the writer thread */
void zt_alog_stop(void);                                   /* drains, then joins */
void zt_access_log_reopen(void);                           /* next writer round */

/* RFC 3339 UTC with milliseconds: "2026-11-26T07:00:00.123Z" (24 chars + NUL). */
void zt_log_timestamp(char out[32]);

/* Append s as a JSON string (with quotes), or null when s is NULL; returns the new
 * length, never beyond cap - 1 (truncating). */
size_t zt_json_str(char *buf, size_t len, size_t cap, const char *s);

#endif
