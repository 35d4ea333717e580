/* proxy/log.c: stderr diagnostics and the access-log sink. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int zt_log_level = ZT_LOG_INFO;
static int access_fd = -1;
static int access_owned;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void zt_log(int level, const char *fmt, ...) {
  char line[1024];
  int n;
  va_list ap;
  if (level < zt_log_level) return;
  n = snprintf(line, sizeof(line), "ztproxy: %s: ", level_names[level]);
  va_start(ap, fmt);
  n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof(line) - 2) n = (int)sizeof(line) - 2;
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
  return 0;
}

void zt_access_log_close(void) {
  if (access_owned) close(access_fd);
  access_fd = -1;
  access_owned = 0;
}

int zt_access_log_enabled(void) { return access_fd >= 0; }

void zt_access_log_write(const char *line, size_t len) {
  if (access_fd >= 0) (void)!write(access_fd, line, len);
}

void zt_log_timestamp(char out[32]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
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
    if (ch == '"' || ch == '\\') {
      buf[len++] = '\\';
      buf[len++] = (char)ch;
    } else if (ch < 0x20 || ch == 0x7f) {
      memcpy(buf + len, "\\u00", 4);
      buf[len + 4] = hex[ch >> 4];
      buf[len + 5] = hex[ch & 15];
      len += 6;
    } else {
      buf[len++] = (char)ch;
    }
  }
  buf[len++] = '"';
  return len;
}
