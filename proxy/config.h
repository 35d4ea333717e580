/* proxy/config.h: the ztproxy.yaml configuration, loaded and validated whole.
 *
 * Every error names file:line:column (zt_error_t). Relative file paths are resolved
 * against the configuration file's folder. Policies named by listeners are loaded and
 * checked here too, so `ztproxy check` and `ztproxy run` validate exactly the same.
 */
#ifndef ZT_CONFIG_H
#define ZT_CONFIG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "idset.h"
#include "policy.h"
#include "zt_error.h"

typedef enum { ZT_MODE_INBOUND, ZT_MODE_OUTBOUND } zt_mode_t;

typedef struct {
  struct sockaddr_storage ss;
  char str[64];                  /* as written, for logs */
  uint16_t port;
} zt_addr_t;

typedef struct {
  char *name;
  zt_mode_t mode;
  zt_addr_t listen;
  zt_addr_t target;              /* inbound: forward (the app); outbound: upstream */
  char **expect_server;          /* outbound: allowed server IDs, or NULL = any */
  size_t n_expect_server;
  char *policy_file;             /* inbound */
  zt_policy_t *policy;           /* owned reference */
  uint64_t connect_timeout_ms, handshake_timeout_ms, idle_timeout_ms;
  uint32_t max_connections;
  bool resumption;               /* TLS session tickets (default on) */
} zt_listener_conf_t;

typedef struct {
  char *file;
  char *cert, *key, *bundle;     /* resolved paths */
  zt_federated_t *federated;     /* other trust domains: strings owned */
  size_t n_federated;
  char **crls;                   /* CRL files, resolved */
  size_t n_crls;
  bool allow_id_change;          /* may a rotated SVID carry another SPIFFE ID? */
  unsigned expiry_warning_percent; /* warn when less of the SVID's lifetime is left */
  char *access_log;              /* NULL = off, "stdout", or a resolved path */
  int log_level;
  unsigned workers;              /* resolved: auto = number of cores */
  uint64_t drain_timeout_ms;
  uint64_t busy_poll_us;         /* 0: block as soon as there is nothing to do */
  bool io_uring;                 /* established connections' I/O through io_uring */
  bool admin_enabled;            /* an `admin` section was given */
  zt_addr_t admin_listen;        /* default 127.0.0.1:15000 */
  bool admin_allow_remote;
  size_t max_peer_series;        /* distinct peer_id label values before "other" */
  zt_listener_conf_t *listeners;
  size_t n_listeners;
} zt_config_t;

int zt_config_load(const char *file, zt_config_t *out, zt_error_t *err);
void zt_config_free(zt_config_t *c);

/* Log the policy's lint warnings (rules that never match, `default: allow`, IDs of
 * trust domains this configuration does not know) as diagnostics. */
void zt_config_lint_policy(const zt_config_t *c, const zt_policy_t *p);

/* "1.2.3.4:80" or "[::1]:80" into a; 0 or -1 with *why. */
int zt_addr_parse(const char *s, zt_addr_t *a, const char **why);

#endif
