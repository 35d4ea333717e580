/* proxy/main.c: the command line. `ztproxy run|check|identity|demo`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_identity.h"
#include "cmd_policy.h"
#include "config.h"
#include "demo.h"
#include "log.h"
#include "proxy.h"
#include "tls.h"

static const char kUsage[] =
    "usage: ztproxy COMMAND [OPTIONS]\n"
    "\n"
    "A zero-trust sidecar proxy: mutual TLS with SPIFFE identities, and an allow-list\n"
    "between workloads.\n"
    "\n"
    "commands:\n"
    "  run -c FILE        serve (SIGTERM/SIGINT drain, then exit)\n"
    "  check -c FILE      validate a configuration, its policies and identity files\n"
    "  identity ca|issue|show  make a trust domain's CA, issue and inspect X.509-SVIDs\n"
    "  policy check|explain|test  lint a policy, explain a decision, test it offline\n"
    "  demo               a two-workload mTLS mesh on 127.0.0.1, end to end\n"
    "\n"
    "  --help, --version\n"
    "Run 'ztproxy COMMAND --help' for a command's options.\n";

static const char kRunUsage[] =
    "usage: ztproxy run -c FILE [--log-level debug|info|warn|error]\n"
    "\n"
    "Load FILE (YAML), the identity and the policies it names, and serve every\n"
    "listener until SIGTERM or SIGINT, which drain: listeners close, live connections\n"
    "finish (up to drain_timeout), then the process exits 0. Configuration errors print\n"
    "file:line:column and exit 2; an identity that cannot be used exits 1.\n";

static const char kCheckUsage[] =
    "usage: ztproxy check -c FILE\n"
    "\n"
    "Validate FILE, the policy files it names and the identity (SVID, key, bundle)\n"
    "exactly as 'run' would, then exit: 0 when all is well, 2 with\n"
    "file:line:column: message otherwise.\n";

static int wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
  return 0;
}

/* Parse "-c FILE [--log-level L]"; 0, or 2 after printing a usage error. */
static int parse_run_args(int argc, char **argv, const char *usage, const char **file,
                          int *level) {
  *file = NULL;
  for (int i = 1; i < argc; i++) {
    if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
      *file = argv[++i];
    } else if (level && strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
      if ((*level = zt_log_level_parse(argv[++i])) < 0) {
        fprintf(stderr, "ztproxy %s: unknown log level \"%s\"\n", argv[0], argv[i]);
        return 2;
      }
    } else {
      fprintf(stderr, "ztproxy %s: unexpected argument \"%s\"\n%s", argv[0], argv[i], usage);
      return 2;
    }
  }
  if (*file == NULL) {
    fprintf(stderr, "ztproxy %s: -c FILE is required\n%s", argv[0], usage);
    return 2;
  }
  return 0;
}

static int load_all(const char *file, zt_config_t *cfg, zt_identity_t **ident) {
  zt_error_t err;
  char msg[1024];
  if (zt_config_load(file, cfg, &err)) {
    fprintf(stderr, "%s\n", zt_error_str(&err, msg, sizeof(msg)));
    return 2;
  }
  if (zt_identity_load(cfg, NULL, ident, &err)) {
    fprintf(stderr, "%s\n", zt_error_str(&err, msg, sizeof(msg)));
    zt_config_free(cfg);
    return 2;
  }
  return 0;
}

static int cmd_check(int argc, char **argv) {
  zt_config_t cfg;
  zt_identity_t *ident;
  const char *file;
  int r;
  if (wants_help(argc, argv)) {
    fputs(kCheckUsage, stdout);
    return 0;
  }
  if ((r = parse_run_args(argc, argv, kCheckUsage, &file, NULL))) return r;
  zt_tls_init();
  r = load_all(file, &cfg, &ident);
  if (r == 0) {
    printf("%s: ok (%s, %zu listeners)\n", file, ident->id, cfg.n_listeners);
    zt_identity_release(ident);
    zt_config_free(&cfg);
  }
  zt_tls_cleanup();
  return r;
}

static int cmd_run(int argc, char **argv) {
  zt_config_t cfg;
  zt_identity_t *ident;
  zt_error_t err;
  char msg[1024];
  const char *file;
  int level = -1, r;
  if (wants_help(argc, argv)) {
    fputs(kRunUsage, stdout);
    return 0;
  }
  if ((r = parse_run_args(argc, argv, kRunUsage, &file, &level))) return r;
  zt_tls_init();
  if ((r = load_all(file, &cfg, &ident))) {
    zt_tls_cleanup();
    return r;
  }
  zt_log_level = level >= 0 ? level : cfg.log_level;
  if (zt_access_log_open(cfg.access_log, &err)) {
    fprintf(stderr, "%s\n", zt_error_str(&err, msg, sizeof(msg)));
    r = 1;
  } else {
    r = zt_server_run(&cfg, ident) ? 1 : 0;
  }
  zt_access_log_close();
  zt_identity_release(ident);
  zt_config_free(&cfg);
  zt_tls_cleanup();
  return r;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(kUsage, stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(kUsage, stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
    printf("ztproxy %s\n", ZT_VERSION);
    return 0;
  }
  if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
  if (strcmp(argv[1], "check") == 0) return cmd_check(argc - 1, argv + 1);
  if (strcmp(argv[1], "identity") == 0) return zt_cmd_identity(argc - 1, argv + 1);
  if (strcmp(argv[1], "policy") == 0) return zt_cmd_policy(argc - 1, argv + 1);
  if (strcmp(argv[1], "demo") == 0) return zt_cmd_demo(argc - 1, argv + 1);
  fprintf(stderr, "ztproxy: unknown command \"%s\"\n%s", argv[1], kUsage);
  return 2;
}
