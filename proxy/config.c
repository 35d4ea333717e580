/* proxy/config.c: ztproxy.yaml → zt_config_t, strictly (see config.h). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "spiffe.h"
#include "zt_yaml.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define DEFAULT_IDLE_TIMEOUT_MS 300000
#define DEFAULT_MAX_CONNECTIONS 10000
#define DEFAULT_DRAIN_TIMEOUT_MS 30000
#define MAX_BUSY_POLL_US 10000      /* spinning longer than this is only heat */
#define DEFAULT_MAX_PEER_SERIES 1000

int zt_addr_parse(const char *s, zt_addr_t *a, const char **why) {
  char host[64];
  const char *colon, *h = s;
  size_t hl;
  char *end;
  unsigned long port;

  memset(a, 0, sizeof(*a));
  colon = strrchr(s, ':');
  if (colon == NULL) { *why = "expected host:port"; return -1; }
  hl = (size_t)(colon - s);
  if (s[0] == '[') {
    if (hl < 2 || s[hl - 1] != ']') { *why = "expected [IPv6]:port"; return -1; }
    h = s + 1;
    hl -= 2;
  }
  if (hl == 0 || hl >= sizeof(host)) { *why = "missing or overlong host"; return -1; }
  memcpy(host, h, hl);
  host[hl] = '\0';
  port = strtoul(colon + 1, &end, 10);
  if (colon[1] < '0' || colon[1] > '9' || *end || port == 0 || port > 65535) {
    *why = "is not a valid port (1-65535)";
    return -1;
  }
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&a->ss) != 0 &&
      uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&a->ss) != 0) {
    *why = "host is not an IP address (names are not resolved)";
    return -1;
  }
  if (s[0] != '[' && a->ss.ss_family == AF_INET6) {
    *why = "IPv6 addresses are written [addr]:port";
    return -1;
  }
  a->port = (uint16_t)port;
  snprintf(a->str, sizeof(a->str), "%s", s);
  return 0;
}

/* How two listen addresses share a port. Workers bind with SO_REUSEPORT, so the kernel
 * accepts both binds, then splits connections between them or prefers one; the admin
 * endpoint binds without it and would fail at run time instead. */
typedef enum { ADDR_APART, ADDR_SAME, ADDR_WILDCARD, ADDR_DUAL_STACK } addr_overlap_t;

typedef struct {
  int family;                    /* AF_INET also for an IPv4-mapped IPv6 address */
  unsigned char ip[16];          /* the first 4 bytes for AF_INET */
  uint32_t scope;                /* IPv6 zone */
  bool any;                      /* 0.0.0.0 or :: */
} ip_key_t;

static void ip_key(const zt_addr_t *a, ip_key_t *k) {
  static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const unsigned char zero[16];
  memset(k, 0, sizeof(*k));
  if (a->ss.ss_family == AF_INET) {
    k->family = AF_INET;
    memcpy(k->ip, &((const struct sockaddr_in *)&a->ss)->sin_addr, 4);
  } else {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
    if (memcmp(s6->sin6_addr.s6_addr, v4mapped, sizeof(v4mapped)) == 0) {
      k->family = AF_INET;
      memcpy(k->ip, s6->sin6_addr.s6_addr + 12, 4);
    } else {
      k->family = AF_INET6;
      memcpy(k->ip, s6->sin6_addr.s6_addr, 16);
      k->scope = s6->sin6_scope_id;
    }
  }
  k->any = memcmp(k->ip, zero, k->family == AF_INET ? 4 : 16) == 0;
}

/* Compares what the kernel binds, not the text: 127.0.0.1:015006 is 127.0.0.1:15006,
 * [0::1] is [::1], [::ffff:127.0.0.1] is 127.0.0.1. A wildcard takes its port on every
 * address of its family, and [::] (a dual-stack socket) IPv4's too. */
static addr_overlap_t addr_overlap(const zt_addr_t *a, const zt_addr_t *b) {
  ip_key_t x, y;
  if (a->port != b->port) return ADDR_APART;
  ip_key(a, &x);
  ip_key(b, &y);
  if (x.family != y.family)
    return (x.family == AF_INET6 && x.any) || (y.family == AF_INET6 && y.any)
               ? ADDR_DUAL_STACK
               : ADDR_APART;
  if (x.scope == y.scope && memcmp(x.ip, y.ip, sizeof(x.ip)) == 0) return ADDR_SAME;
  return x.any || y.any ? ADDR_WILDCARD : ADDR_APART;
}

typedef struct {
  zt_yaml_t y;
  char dir[4096];
  zt_error_t *err;
} loader_t;

/* Refuse a, given at node n as what, if it shares its port with b, which owner gave at
 * node bn (NULL: a default). */
static int listen_apart(loader_t *L, yaml_node_t *n, const char *what, const zt_addr_t *a,
                        const char *owner, yaml_node_t *bn, const zt_addr_t *b) {
  char where[64];
  addr_overlap_t o = addr_overlap(a, b);
  if (o == ADDR_APART) return 0;
  if (bn)
    snprintf(where, sizeof(where), " at line %d, column %d", (int)bn->start_mark.line + 1,
             (int)bn->start_mark.column + 1);
  else
    snprintf(where, sizeof(where), ", the default");
  if (o == ADDR_SAME)
    return zt_yaml_fail(&L->y, n, L->err, "%s: %s is already used by %s (%s%s)", what,
                        a->str, owner, b->str, where);
  return zt_yaml_fail(&L->y, n, L->err, "%s: %s overlaps %s (%s%s): %s", what, a->str,
                      owner, b->str, where,
                      o == ADDR_WILDCARD
                          ? "a wildcard address takes its port on every address"
                          : "[::] takes the port for IPv4 too");
}

/* Resolve path against the config folder and check that it is readable. */
static int file_path(loader_t *L, yaml_node_t *n, const char *what, char **out) {
  const char *s;
  char buf[8192];
  if (zt_yaml_str(&L->y, n, what, &s, L->err)) return -1;
  if (s[0] == '\0') return zt_yaml_fail(&L->y, n, L->err, "%s: empty path", what);
  if (s[0] == '/' || L->dir[0] == '\0') snprintf(buf, sizeof(buf), "%s", s);
  else snprintf(buf, sizeof(buf), "%s/%s", L->dir, s);
  if (access(buf, R_OK) != 0)
    return zt_yaml_fail(&L->y, n, L->err, "%s: cannot read \"%s\"", what, buf);
  *out = strdup(buf);
  return 0;
}

static int addr(loader_t *L, yaml_node_t *n, const char *what, zt_addr_t *a) {
  const char *s, *why;
  if (zt_yaml_str(&L->y, n, what, &s, L->err)) return -1;
  if (zt_addr_parse(s, a, &why))
    return zt_yaml_fail(&L->y, n, L->err, "%s: \"%s\" %s", what, s, why);
  return 0;
}

static int opt_duration(loader_t *L, yaml_node_t *map, const char *key, const char *what,
                        uint64_t def, uint64_t *out) {
  yaml_node_t *n = zt_yaml_get(&L->y, map, key);
  char w[128];
  *out = def;
  if (n == NULL) return 0;
  snprintf(w, sizeof(w), "%s.%s", what, key);
  if (zt_yaml_duration(&L->y, n, w, out, L->err)) return -1;
  if (*out == 0) return zt_yaml_fail(&L->y, n, L->err, "%s: must be more than 0", w);
  return 0;
}

static yaml_node_t *required(loader_t *L, yaml_node_t *map, const char *key,
                             const char *what) {
  yaml_node_t *n = zt_yaml_get(&L->y, map, key);
  if (n == NULL)
    zt_yaml_fail(&L->y, map, L->err, "%s: missing required key \"%s\"", what, key);
  return n;
}

static int load_identity(loader_t *L, yaml_node_t *n, zt_config_t *c) {
  static const char *const keys[] = {"cert", "key", "bundle", "federated", "crl",
                                     "allow_id_change", "expiry_warning_percent", NULL};
  static const char *const fkeys[] = {"trust_domain", "bundle", NULL};
  yaml_node_t *v;
  if (zt_yaml_check_keys(&L->y, n, keys, "identity", L->err)) return -1;
  if ((v = zt_yaml_get(&L->y, n, "federated"))) {
    if (zt_yaml_want_seq(&L->y, v, "identity.federated", L->err)) return -1;
    c->federated = calloc(zt_yaml_len(v) + 1, sizeof(*c->federated));
    for (size_t i = 0; i < zt_yaml_len(v); i++) {
      yaml_node_t *it = zt_yaml_item(&L->y, v, i), *f;
      const char *td, *why;
      zt_federated_t *fd = &c->federated[c->n_federated];
      if (zt_yaml_check_keys(&L->y, it, fkeys, "identity.federated[]", L->err)) return -1;
      if (!(f = required(L, it, "trust_domain", "identity.federated[]")) ||
          zt_yaml_str(&L->y, f, "trust_domain", &td, L->err))
        return -1;
      if (zt_trust_domain_check(td, strlen(td), &why))
        return zt_yaml_fail(&L->y, f, L->err,
                            "identity.federated[].trust_domain: \"%s\": %s", td, why);
      for (size_t j = 0; j < c->n_federated; j++)
        if (strcmp(c->federated[j].trust_domain, td) == 0)
          return zt_yaml_fail(&L->y, f, L->err,
                              "identity.federated: trust domain %s is listed twice", td);
      fd->trust_domain = strdup(td);
      c->n_federated++;
      if (!(f = required(L, it, "bundle", "identity.federated[]")) ||
          file_path(L, f, "identity.federated[].bundle", (char **)&fd->bundle))
        return -1;
    }
  }
  if ((v = zt_yaml_get(&L->y, n, "crl"))) {
    if (zt_yaml_want_seq(&L->y, v, "identity.crl", L->err)) return -1;
    c->crls = calloc(zt_yaml_len(v) + 1, sizeof(*c->crls));
    for (size_t i = 0; i < zt_yaml_len(v); i++)
      if (file_path(L, zt_yaml_item(&L->y, v, i), "identity.crl[]", &c->crls[c->n_crls++]))
        return -1;
  }
  if ((v = zt_yaml_get(&L->y, n, "allow_id_change")) &&
      zt_yaml_bool(&L->y, v, "identity.allow_id_change", &c->allow_id_change, L->err))
    return -1;
  c->expiry_warning_percent = 20;
  if ((v = zt_yaml_get(&L->y, n, "expiry_warning_percent"))) {
    uint64_t pc;
    if (zt_yaml_uint(&L->y, v, "identity.expiry_warning_percent", 0, 99, &pc, L->err))
      return -1;
    c->expiry_warning_percent = (unsigned)pc;
  }
  if (!(v = required(L, n, "cert", "identity")) || file_path(L, v, "identity.cert", &c->cert))
    return -1;
  if (!(v = required(L, n, "key", "identity")) || file_path(L, v, "identity.key", &c->key))
    return -1;
  if (!(v = required(L, n, "bundle", "identity")) ||
      file_path(L, v, "identity.bundle", &c->bundle))
    return -1;
  return 0;
}

static int load_admin(loader_t *L, yaml_node_t *n, zt_config_t *c) {
  static const char *const keys[] = {"listen", "allow_remote", "max_peer_series", NULL};
  yaml_node_t *v, *listen;
  uint64_t m;
  if (zt_yaml_check_keys(&L->y, n, keys, "admin", L->err)) return -1;
  c->admin_enabled = true;
  if ((listen = zt_yaml_get(&L->y, n, "listen")) &&
      addr(L, listen, "admin.listen", &c->admin_listen))
    return -1;
  if ((v = zt_yaml_get(&L->y, n, "allow_remote")) &&
      zt_yaml_bool(&L->y, v, "admin.allow_remote", &c->admin_allow_remote, L->err))
    return -1;
  if ((v = zt_yaml_get(&L->y, n, "max_peer_series"))) {
    if (zt_yaml_uint(&L->y, v, "admin.max_peer_series", 1, 100000, &m, L->err)) return -1;
    c->max_peer_series = (size_t)m;
  }
  /* The admin endpoint shows the mesh's topology and carries no authentication. */
  if (!c->admin_allow_remote) {
    const struct sockaddr_storage *ss = &c->admin_listen.ss;
    bool loopback =
        ss->ss_family == AF_INET
            ? (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127
            : IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    if (!loopback)
      return zt_yaml_fail(&L->y, listen, L->err,
                          "admin.listen: %s is not a loopback address; set "
                          "admin.allow_remote: true to expose the admin endpoint",
                          c->admin_listen.str);
  }
  return 0;
}

/* The access log is opened (created, appended to) once the config is loaded: say now,
 * at its line, when that cannot work, so that `check` catches it too. */
static int access_log_path_check(loader_t *L, yaml_node_t *v, const char *path) {
  struct stat st;
  char dir[8192];
  const char *slash;
  if (stat(path, &st) == 0) {
    if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode))
      return zt_yaml_fail(&L->y, v, L->err, "log.access: \"%s\" is not a file", path);
    if (access(path, W_OK) != 0)
      return zt_yaml_fail(&L->y, v, L->err, "log.access: cannot write \"%s\": %s", path,
                          strerror(errno));
    return 0;
  }
  if (errno != ENOENT)
    return zt_yaml_fail(&L->y, v, L->err, "log.access: \"%s\": %s", path, strerror(errno));
  slash = strrchr(path, '/');
  if (slash == NULL) snprintf(dir, sizeof(dir), ".");
  else if (slash == path) snprintf(dir, sizeof(dir), "/");
  else snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return zt_yaml_fail(&L->y, v, L->err, "log.access: folder \"%s\" does not exist", dir);
  if (access(dir, W_OK | X_OK) != 0)
    return zt_yaml_fail(&L->y, v, L->err, "log.access: cannot create a file in \"%s\": %s",
                        dir, strerror(errno));
  return 0;
}

static int load_log(loader_t *L, yaml_node_t *n, zt_config_t *c) {
  static const char *const keys[] = {"access", "level", NULL};
  yaml_node_t *v;
  const char *s;
  if (zt_yaml_check_keys(&L->y, n, keys, "log", L->err)) return -1;
  if ((v = zt_yaml_get(&L->y, n, "access"))) {
    if (zt_yaml_str(&L->y, v, "log.access", &s, L->err)) return -1;
    free(c->access_log);
    c->access_log = NULL;
    if (strcmp(s, "off") == 0) {
    } else if (strcmp(s, "stdout") == 0 || s[0] == '/' || L->dir[0] == '\0') {
      c->access_log = strdup(s);
    } else {
      char buf[8192];
      snprintf(buf, sizeof(buf), "%s/%s", L->dir, s);
      c->access_log = strdup(buf);
    }
    if (c->access_log && strcmp(c->access_log, "stdout") != 0 &&
        access_log_path_check(L, v, c->access_log))
      return -1;
  }
  if ((v = zt_yaml_get(&L->y, n, "level"))) {
    if (zt_yaml_str(&L->y, v, "log.level", &s, L->err)) return -1;
    if ((c->log_level = zt_log_level_parse(s)) < 0)
      return zt_yaml_fail(&L->y, v, L->err,
                          "log.level: \"%s\" is not one of debug, info, warn, error", s);
  }
  return 0;
}

static void warn_cb(void *ctx, const zt_error_t *w) {
  char msg[1024];
  (void)ctx;
  zt_warn("%s", zt_error_str(w, msg, sizeof(msg)));
}

void zt_config_lint_policy(const zt_config_t *c, const zt_policy_t *p) {
  const char *tds[64];
  size_t n = 0;
  for (size_t i = 0; i < c->n_federated && n < 64; i++) tds[n++] = c->federated[i].trust_domain;
  zt_policy_lint(p, tds, n, warn_cb, NULL);
}

static int load_listener(loader_t *L, yaml_node_t *n, size_t idx, zt_config_t *c) {
  static const char *const keys[] = {
      "name", "mode", "listen", "forward", "upstream", "expect_server", "policy",
      "protocol", "connect_timeout", "handshake_timeout", "idle_timeout",
      "max_connections", "resumption", NULL};
  zt_listener_conf_t *l = &c->listeners[idx];
  char what[64];
  yaml_node_t *v;
  const char *s;

  snprintf(what, sizeof(what), "listeners[%zu]", idx);
  if (zt_yaml_check_keys(&L->y, n, keys, what, L->err)) return -1;

  if (!(v = required(L, n, "name", what)) || zt_yaml_str(&L->y, v, "name", &s, L->err))
    return -1;
  if (!zt_policy_name_ok(s))
    return zt_yaml_fail(&L->y, v, L->err, "%s.name: \"%s\" is not 1-128 characters "
                        "of A-Z a-z 0-9 . _ - : /", what, s);
  for (size_t i = 0; i < idx; i++)
    if (strcmp(c->listeners[i].name, s) == 0)
      return zt_yaml_fail(&L->y, v, L->err, "%s.name: \"%s\" is used twice", what, s);
  l->name = strdup(s);
  snprintf(what, sizeof(what), "listeners[%s]", l->name);

  if (!(v = required(L, n, "mode", what)) || zt_yaml_str(&L->y, v, "mode", &s, L->err))
    return -1;
  if (strcmp(s, "inbound") == 0) l->mode = ZT_MODE_INBOUND;
  else if (strcmp(s, "outbound") == 0) l->mode = ZT_MODE_OUTBOUND;
  else
    return zt_yaml_fail(&L->y, v, L->err,
                        "%s.mode: \"%s\" is not one of inbound, outbound", what, s);

  if (!(v = required(L, n, "listen", what)) || addr(L, v, "listen", &l->listen)) return -1;

  if ((v = zt_yaml_get(&L->y, n, "protocol"))) {
    if (zt_yaml_str(&L->y, v, "protocol", &s, L->err)) return -1;
    if (strcmp(s, "tcp") != 0)
      return zt_yaml_fail(&L->y, v, L->err, "%s.protocol: \"%s\" is not supported (tcp)",
                          what, s);
  }

  if (l->mode == ZT_MODE_INBOUND) {
    zt_error_t perr;
    if ((v = zt_yaml_get(&L->y, n, "upstream")))
      return zt_yaml_fail(&L->y, v, L->err, "%s: upstream is for outbound listeners "
                                            "(inbound listeners use forward)", what);
    if ((v = zt_yaml_get(&L->y, n, "expect_server")))
      return zt_yaml_fail(&L->y, v, L->err, "%s: expect_server is for outbound listeners",
                          what);
    if (!(v = required(L, n, "forward", what)) || addr(L, v, "forward", &l->target))
      return -1;
    if (!(v = required(L, n, "policy", what)) || file_path(L, v, "policy", &l->policy_file))
      return -1;
    if (zt_policy_load(l->policy_file, &l->policy, &perr)) {
      *L->err = perr;
      return -1;
    }
    zt_config_lint_policy(c, l->policy);
    if (zt_policy_has_http_rules(l->policy))
      return zt_yaml_fail(&L->y, v, L->err,
                          "%s.policy: \"%s\" has http rules, but this listener is tcp",
                          what, l->policy_file);
  } else {
    if ((v = zt_yaml_get(&L->y, n, "forward")))
      return zt_yaml_fail(&L->y, v, L->err, "%s: forward is for inbound listeners "
                                            "(outbound listeners use upstream)", what);
    if ((v = zt_yaml_get(&L->y, n, "policy")))
      return zt_yaml_fail(&L->y, v, L->err,
                          "%s: policy applies on inbound listeners only", what);
    if (!(v = required(L, n, "upstream", what)) || addr(L, v, "upstream", &l->target))
      return -1;
    if ((v = zt_yaml_get(&L->y, n, "expect_server"))) {
      if (zt_yaml_want_seq(&L->y, v, "expect_server", L->err)) return -1;
      l->n_expect_server = zt_yaml_len(v);
      if (l->n_expect_server == 0)
        return zt_yaml_fail(&L->y, v, L->err, "%s.expect_server: empty list", what);
      l->expect_server = calloc(l->n_expect_server, sizeof(char *));
      for (size_t i = 0; i < l->n_expect_server; i++) {
        yaml_node_t *it = zt_yaml_item(&L->y, v, i);
        const char *why;
        zt_spiffe_id_t id;
        if (zt_yaml_str(&L->y, it, "expect_server", &s, L->err)) return -1;
        if (zt_spiffe_id_parse(s, strlen(s), &id, &why))
          return zt_yaml_fail(&L->y, it, L->err,
                              "%s.expect_server: \"%s\" is not a SPIFFE ID: %s", what, s, why);
        l->expect_server[i] = strdup(s);
      }
    }
  }

  if (opt_duration(L, n, "connect_timeout", what, DEFAULT_CONNECT_TIMEOUT_MS,
                   &l->connect_timeout_ms) ||
      opt_duration(L, n, "handshake_timeout", what, DEFAULT_HANDSHAKE_TIMEOUT_MS,
                   &l->handshake_timeout_ms) ||
      opt_duration(L, n, "idle_timeout", what, DEFAULT_IDLE_TIMEOUT_MS,
                   &l->idle_timeout_ms))
    return -1;
  l->resumption = true;
  if ((v = zt_yaml_get(&L->y, n, "resumption")) &&
      zt_yaml_bool(&L->y, v, "resumption", &l->resumption, L->err))
    return -1;
  l->max_connections = DEFAULT_MAX_CONNECTIONS;
  if ((v = zt_yaml_get(&L->y, n, "max_connections"))) {
    uint64_t m;
    if (zt_yaml_uint(&L->y, v, "max_connections", 1, 1000000, &m, L->err)) return -1;
    l->max_connections = (uint32_t)m;
  }
  return 0;
}

int zt_config_load(const char *file, zt_config_t *c, zt_error_t *err) {
  static const char *const keys[] = {"identity", "admin", "log", "workers",
                                     "drain_timeout", "busy_poll", "io_uring",
                                     "listeners", NULL};
  loader_t L;
  yaml_node_t *root, *v, *admin_listen;
  const char *slash;

  memset(c, 0, sizeof(*c));
  memset(&L, 0, sizeof(L));
  L.err = err;
  c->file = strdup(file);
  c->log_level = ZT_LOG_INFO;
  c->access_log = strdup("stdout");
  c->drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS;
  slash = strrchr(file, '/');
  if (slash) snprintf(L.dir, sizeof(L.dir), "%.*s", (int)(slash - file), file);
  if (slash == file) snprintf(L.dir, sizeof(L.dir), "/");

  if (zt_yaml_load(&L.y, c->file, err)) goto fail;
  root = zt_yaml_root(&L.y);
  if (root == NULL) {
    zt_error_set(err, file, 0, 0, "empty configuration");
    goto fail;
  }
  if (zt_yaml_check_keys(&L.y, root, keys, "configuration", err)) goto fail;

  if (!(v = required(&L, root, "identity", "configuration")) || load_identity(&L, v, c))
    goto fail;
  zt_addr_parse("127.0.0.1:15000", &c->admin_listen, &(const char *){NULL});
  c->max_peer_series = DEFAULT_MAX_PEER_SERIES;
  if ((v = zt_yaml_get(&L.y, root, "admin")) && load_admin(&L, v, c)) goto fail;
  if ((v = zt_yaml_get(&L.y, root, "log")) && load_log(&L, v, c)) goto fail;

  c->workers = (unsigned)uv_available_parallelism();
  if ((v = zt_yaml_get(&L.y, root, "workers"))) {
    uint64_t w;
    if (v->type == YAML_SCALAR_NODE && strcmp((char *)v->data.scalar.value, "auto") == 0) {
    } else if (zt_yaml_uint(&L.y, v, "workers (a number or auto)", 1, 256, &w, err)) {
      goto fail;
    } else {
      c->workers = (unsigned)w;
    }
  }
  if ((v = zt_yaml_get(&L.y, root, "drain_timeout")) &&
      zt_yaml_duration(&L.y, v, "drain_timeout", &c->drain_timeout_ms, err))
    goto fail;
  c->busy_poll_us = 0;
  if ((v = zt_yaml_get(&L.y, root, "busy_poll"))) {
    if (zt_yaml_duration_us(&L.y, v, "busy_poll", &c->busy_poll_us, err)) goto fail;
    if (c->busy_poll_us > MAX_BUSY_POLL_US) {
      zt_yaml_fail(&L.y, v, err, "busy_poll: at most %dms", MAX_BUSY_POLL_US / 1000);
      goto fail;
    }
  }
  c->io_uring = true;
  if ((v = zt_yaml_get(&L.y, root, "io_uring")) &&
      zt_yaml_bool(&L.y, v, "io_uring", &c->io_uring, err))
    goto fail;

  if (!(v = required(&L, root, "listeners", "configuration")) ||
      zt_yaml_want_seq(&L.y, v, "listeners", err))
    goto fail;
  c->n_listeners = zt_yaml_len(v);
  if (c->n_listeners == 0) {
    zt_yaml_fail(&L.y, v, err, "listeners: at least one listener is needed");
    goto fail;
  }
  c->listeners = calloc(c->n_listeners, sizeof(*c->listeners));
  admin_listen = zt_yaml_get(&L.y, zt_yaml_get(&L.y, root, "admin"), "listen");
  for (size_t i = 0; i < c->n_listeners; i++) {
    yaml_node_t *it = zt_yaml_item(&L.y, v, i), *at = zt_yaml_get(&L.y, it, "listen");
    const zt_listener_conf_t *l = &c->listeners[i];
    char what[64], owner[64];
    if (load_listener(&L, it, i, c)) goto fail;
    snprintf(what, sizeof(what), "listeners[%s].listen", l->name);
    if (c->admin_enabled && listen_apart(&L, at, what, &l->listen, "admin.listen",
                                         admin_listen, &c->admin_listen))
      goto fail;
    for (size_t j = 0; j < i; j++) {
      snprintf(owner, sizeof(owner), "listener %s", c->listeners[j].name);
      if (listen_apart(&L, at, what, &l->listen, owner,
                       zt_yaml_get(&L.y, zt_yaml_item(&L.y, v, j), "listen"),
                       &c->listeners[j].listen))
        goto fail;
    }
  }
  zt_yaml_free(&L.y);
  return 0;

fail:
  zt_yaml_free(&L.y);
  zt_config_free(c);
  return -1;
}

void zt_config_free(zt_config_t *c) {
  for (size_t i = 0; i < c->n_listeners && c->listeners; i++) {
    zt_listener_conf_t *l = &c->listeners[i];
    free(l->name);
    for (size_t j = 0; j < l->n_expect_server && l->expect_server; j++)
      free(l->expect_server[j]);
    free(l->expect_server);
    free(l->policy_file);
    zt_policy_release(l->policy);
  }
  free(c->listeners);
  free(c->file);
  free(c->cert);
  free(c->key);
  free(c->bundle);
  for (size_t i = 0; i < c->n_federated; i++) {
    free((char *)c->federated[i].trust_domain);
    free((char *)c->federated[i].bundle);
  }
  free(c->federated);
  for (size_t i = 0; i < c->n_crls; i++) free(c->crls[i]);
  free(c->crls);
  free(c->access_log);
  memset(c, 0, sizeof(*c));
}
