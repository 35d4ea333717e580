/* proxy/log.c: stderr diagnostics and the access-log sink. */
#include "log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <uv.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int zt_log_level = ZT_LOG_INFO;
static int access_fd = -1;
static int access_owned;
static char *access_path;
static atomic_int reopen_requested;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Each thread writes at most ZT_LOG_LINES_PER_SEC diagnostic lines a second, and says
 * how many it left out when it next writes: a flood of refused handshakes, which any
 * client can cause, must not become a flood of blocking writes to a stderr that its
 * reader drains slowly, stalling the worker. */
#define ZT_LOG_LINES_PER_SEC 200

static _Thread_local struct {
  int64_t second;
  unsigned lines, dropped;
} budget;

static bool within_budget(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  if (ts.tv_sec != budget.second) {
    unsigned dropped = budget.dropped;
    budget.second = ts.tv_sec;
    budget.lines = budget.dropped = 0;
    if (dropped) {
      char line[128];
      int n = snprintf(line, sizeof(line), "ztproxy: warn: %u log lines left out (more "
                       "than %d a second)\n", dropped, ZT_LOG_LINES_PER_SEC);
      budget.lines++;
      (void)!write(2, line, (size_t)n);
    }
  }
  if (budget.lines >= ZT_LOG_LINES_PER_SEC) {
    budget.dropped++;
    return false;
  }
  budget.lines++;
  return true;
}

void zt_log(int level, const char *fmt, ...) {
  char line[1024];
  int n;
  va_list ap;
  if (level < zt_log_level || !within_budget()) return;
  n = snprintf(line, sizeof(line), "ztproxy: %s: ", level_names[level]);
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  /* One event, one line: names from files and peers cannot add lines of their own. */
  zt_escape_controls(line + n, sizeof(line) - (size_t)n - 1);
  n += (int)strlen(line + n);
  line[n++] = '\n';
  (void)!write(2, line, (size_t)n);
}

int zt_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, level_names[i]) == 0) return i;
  return -1;
}

int zt_access_log_open(const char *target, zt_error_t *err) {
  zt_access_log_close();
  if (target == NULL || strcmp(target, "off") == 0) return 0;
  if (strcmp(target, "stdout") == 0) {
    access_fd = 1;
    return 0;
  }
  access_fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (access_fd < 0)
    return zt_error_set(err, target, 0, 0, "cannot open access log: %s", strerror(errno));
  access_owned = 1;
  access_path = strdup(target);
  return 0;
}

void zt_access_log_close(void) {
  if (access_owned) close(access_fd);
  free(access_path);
  access_path = NULL;
  access_fd = -1;
  access_owned = 0;
}

int zt_access_log_enabled(void) { return access_fd >= 0; }

void zt_access_log_reopen(void) { atomic_store(&reopen_requested, 1); }

/* --- the per-worker rings and the writer thread ---------------------------------- */

struct zt_alog_queue {
  char *buf;
  size_t cap;                    /* a power of two */
  _Atomic size_t head, tail;     /* free-running; head written by the worker only */
  void (*on_drop)(void *);
  void *arg;
};

zt_alog_queue_t *zt_alog_queue_new(size_t cap, void (*on_drop)(void *), void *arg) {
  zt_alog_queue_t *q = calloc(1, sizeof(*q));
  size_t c = 4096;
  while (c < cap) c <<= 1;
  if (q == NULL || (q->buf = malloc(c)) == NULL) {
    free(q);
    return NULL;
  }
  q->cap = c;
  q->on_drop = on_drop;
  q->arg = arg;
  return q;
}

void zt_alog_queue_free(zt_alog_queue_t *q) {
  if (q) free(q->buf);
  free(q);
}

void zt_alog_push(zt_alog_queue_t *q, const char *line, size_t len) {
  size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
  size_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
  size_t at = head & (q->cap - 1), first;
  if (q->cap - (head - tail) < len) {
    if (q->on_drop) q->on_drop(q->arg);
    return;
  }
  first = q->cap - at < len ? q->cap - at : len;
  memcpy(q->buf + at, line, first);
  memcpy(q->buf, line + first, len - first);
  atomic_store_explicit(&q->head, head + len, memory_order_release);
}

static struct {
  zt_alog_queue_t *const *qs;
  size_t n;
  uv_thread_t thread;
  atomic_int stop;
  int running;
} writer;

/* Write what queue q holds; returns the bytes taken. A failing write drops them: the
 * log must never stall the proxy. */
static size_t drain(zt_alog_queue_t *q) {
  size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
  size_t head = atomic_load_explicit(&q->head, memory_order_acquire);
  size_t n = head - tail, at = tail & (q->cap - 1), done = 0;
  struct iovec iov[2];
  int cnt = 1;
  if (n == 0) return 0;
  iov[0].iov_base = q->buf + at;
  iov[0].iov_len = q->cap - at < n ? q->cap - at : n;
  if (iov[0].iov_len < n) {
    iov[1].iov_base = q->buf;
    iov[1].iov_len = n - iov[0].iov_len;
    cnt = 2;
  }
  while (done < n && access_fd >= 0) {
    ssize_t w = writev(access_fd, iov, cnt);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      break;
    }
    done += (size_t)w;
    if ((size_t)w >= iov[0].iov_len) {
      w -= (ssize_t)iov[0].iov_len;
      iov[0] = iov[1];
      cnt = 1;
    }
    iov[0].iov_base = (char *)iov[0].iov_base + w;
    iov[0].iov_len -= (size_t)w;
  }
  atomic_store_explicit(&q->tail, head, memory_order_release);
  return n;
}

/* The writer polls the rings (a wake-up per line would cost the workers a system
 * call): every 5 ms while lines come, backing off to 50 ms while none do, so that an
 * idle sidecar wakes 20 times a second, not 200. A 1 MiB ring takes 50 ms of lines at
 * about 20,000 connections a second on one worker before it fills. */
#define WRITER_POLL_MIN_US 5000
#define WRITER_POLL_MAX_US 50000

static void writer_main(void *arg) {
  unsigned pause = WRITER_POLL_MIN_US;
  (void)arg;
  for (;;) {
    size_t moved = 0;
    int stopping = atomic_load(&writer.stop);
    if (atomic_exchange(&reopen_requested, 0) && access_owned && access_path) {
      int fd = open(access_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
      if (fd >= 0) {
        dup2(fd, access_fd);   /* atomic swap: no moment without a log */
        close(fd);
      } else {
        zt_warn("cannot reopen access log %s: %s", access_path, strerror(errno));
      }
    }
    for (size_t i = 0; i < writer.n; i++) moved += drain(writer.qs[i]);
    if (stopping && moved == 0) return;
    if (moved > 0) {
      pause = WRITER_POLL_MIN_US;
      continue;
    }
    usleep(pause);
    if (pause < WRITER_POLL_MAX_US) pause *= 2;
  }
}

int zt_alog_start(zt_alog_queue_t *const *qs, size_t n) {
  writer.qs = qs;
  writer.n = n;
  atomic_store(&writer.stop, 0);
  if (uv_thread_create(&writer.thread, writer_main, NULL) != 0) return -1;
  writer.running = 1;
  return 0;
}

void zt_alog_stop(void) {
  if (!writer.running) return;
  atomic_store(&writer.stop, 1);
  uv_thread_join(&writer.thread);
  writer.running = 0;
}

void zt_log_timestamp(char out[32]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

/* The length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF) at s, or 0. Stops at a NUL. */
static size_t utf8_len(const unsigned char *s) {
  unsigned char c = s[0], lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) return (s[1] & 0xc0) == 0x80 ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
    return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
    return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80
               ? 4 : 0;
  }
  return 0;
}

size_t zt_json_str(char *buf, size_t len, size_t cap, const char *s) {
  static const char hex[] = "0123456789abcdef";
  if (len + 8 >= cap) return len;
  if (s == NULL) {
    memcpy(buf + len, "null", 4);
    return len + 4;
  }
  buf[len++] = '"';
  for (; *s && len + 8 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    size_t k;
    if (ch == '"' || ch == '\\') {
      buf[len++] = '\\';
      buf[len++] = (char)ch;
    } else if (ch < 0x20 || ch == 0x7f) {
      memcpy(buf + len, "\\u00", 4);
      buf[len + 4] = hex[ch >> 4];
      buf[len + 5] = hex[ch & 15];
      len += 6;
    } else if (ch < 0x80) {
      buf[len++] = (char)ch;
    } else if ((k = utf8_len((const unsigned char *)s)) > 0) {
      memcpy(buf + len, s, k);        /* k <= 4 < the 8 bytes kept free */
      len += k;
      s += k - 1;
    } else {
      /* Not UTF-8 (a peer's SNI or ALPN can be any bytes): U+FFFD, so that every
       * line stays JSON a strict parser reads. */
      memcpy(buf + len, "\\ufffd", 6);
      len += 6;
    }
  }
  buf[len++] = '"';
  return len;
}
