/* proxy/demo.c: `ztproxy demo`, the first thing a new user sees.
 *
 * It makes a throwaway trust domain (demo.example) with our own CA code, issues SVIDs
 * for three workloads, and starts on 127.0.0.1:
 *
 *   web  ──plain──▶ [web's sidecar, outbound] ══mTLS══▶ [api's sidecar, inbound] ──▶ api app
 *   scanner ──────▶ [scanner's sidecar, outbound] ══mTLS══▶ (same inbound)
 *
 * api's policy allows only web. Each sidecar is a real `ztproxy run` child process
 * with its own configuration; the api app is a small HTTP responder in this process.
 * The demo makes one call from web (answered) and one from scanner (refused, and the
 * api app never sees it), prints the access-log records of both, stops everything,
 * removes its files, and exits 0 only if all of that happened as described.
 */
#include "demo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "issue.h"

#define TD "demo.example"
#define NSIDECARS 3

static char dir[] = "/tmp/ztproxy-demo-XXXXXX";
static atomic_int app_conns;
static int app_fd = -1;

static const char kDemoUsage[] =
    "usage: ztproxy demo\n"
    "\n"
    "Run a two-workload mTLS mesh on 127.0.0.1 with throwaway certificates: one call\n"
    "the policy allows, one it refuses, and the access-log records of both. Exits 0\n"
    "when everything behaved as the policy says.\n";

static void path(char *out, size_t len, const char *name) {
  snprintf(out, len, "%s/%s", dir, name);
}

static int write_file(const char *name, const char *text) {
  char p[256];
  FILE *f;
  path(p, sizeof(p), name);
  if ((f = fopen(p, "w")) == NULL) return -1;
  fputs(text, f);
  return fclose(f);
}

/* A port that was free a moment ago on 127.0.0.1. */
static int free_port(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
  if (fd < 0) return -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &al) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static int connect_to(int port, int timeout_ms) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  for (int waited = 0; waited <= timeout_ms; waited += 50) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) return fd;
    close(fd);
    usleep(50 * 1000);
  }
  return -1;
}

/* The api app: answers each request with a short HTTP response. */
static void *app_main(void *arg) {
  static const char body[] = "{\"orders\": 3, \"served_by\": \"api\"}\n";
  char reply[256];
  int rlen = snprintf(reply, sizeof(reply),
                      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                      sizeof(body) - 1, body);
  (void)arg;
  for (;;) {
    char buf[2048];
    int fd = accept(app_fd, NULL, NULL);
    if (fd < 0) return NULL;   /* the listening socket was shut down */
    atomic_fetch_add(&app_conns, 1);
    if (read(fd, buf, sizeof(buf)) > 0) (void)!write(fd, reply, (size_t)rlen);
    close(fd);
  }
}

/* Send a request through a sidecar's outbound port; the reply (possibly empty) goes
 * to out. Returns bytes received, or -1 when the port did not answer. */
static ssize_t call(int port, char *out, size_t cap) {
  static const char req[] = "GET /orders HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n";
  struct pollfd p;
  size_t n = 0;
  int fd = connect_to(port, 3000);
  if (fd < 0) return -1;
  (void)!write(fd, req, sizeof(req) - 1);
  p.fd = fd;
  p.events = POLLIN;
  while (n + 1 < cap && poll(&p, 1, 5000) == 1) {
    ssize_t r = read(fd, out + n, cap - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  out[n] = '\0';
  close(fd);
  return (ssize_t)n;
}

static pid_t start_sidecar(const char *config) {
  char p[256];
  pid_t pid;
  path(p, sizeof(p), config);
  pid = fork();
  if (pid == 0) {
    char err[256], name[64];
    int null = open("/dev/null", O_WRONLY), errfd;
    snprintf(name, sizeof(name), "%.*s.err", (int)(strlen(config) - 5), config);
    path(err, sizeof(err), name);
    errfd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    /* Access logs go to files; diagnostics to NAME.err, shown where they matter. */
    if (null >= 0) dup2(null, 1);
    if (errfd >= 0) dup2(errfd, 2);
    execl("/proc/self/exe", "ztproxy", "run", "-c", p, "--log-level", "info",
          (char *)NULL);
    _exit(127);
  }
  return pid;
}

static int issue(const char *name, const char *id, zt_error_t *err) {
  char cert[256], key[256], ca[256], cakey[256], f[64];
  zt_issue_svid_opts_t o = {0};
  zt_issue_result_t res;
  path(ca, sizeof(ca), "ca.pem");
  path(cakey, sizeof(cakey), "ca_key.pem");
  snprintf(f, sizeof(f), "%s.pem", name);
  path(cert, sizeof(cert), f);
  snprintf(f, sizeof(f), "%s_key.pem", name);
  path(key, sizeof(key), f);
  o.ca_cert = ca;
  o.ca_key = cakey;
  o.id = id;
  o.now = (int64_t)time(NULL);
  o.ttl = 3600;
  o.backdate = ZT_ISSUE_BACKDATE_DEFAULT;
  if (zt_issue_svid(&o, cert, key, &res, err)) return -1;
  printf("  issued %-42s serial %.16s…  valid 1h\n", id, res.serial);
  return 0;
}

static void print_log(const char *who, const char *file) {
  char p[256], line[4096];
  FILE *f;
  path(p, sizeof(p), file);
  if ((f = fopen(p, "r")) == NULL) return;
  while (fgets(line, sizeof(line), f))
    if (strstr(line, ": info: ") == NULL) printf("  %s: %s", who, line);
  fclose(f);
}

static int file_has(const char *file, const char *needle) {
  char p[256], buf[16384];
  size_t n;
  FILE *f;
  path(p, sizeof(p), file);
  if ((f = fopen(p, "r")) == NULL) return 0;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return strstr(buf, needle) != NULL;
}

static void remove_dir(void) {
  static const char *const files[] = {
      "ca.pem", "ca_key.pem", "web.pem", "web_key.pem", "api.pem", "api_key.pem",
      "scanner.pem", "scanner_key.pem", "api-policy.yaml", "web.yaml", "api.yaml",
      "scanner.yaml", "web-access.log", "api-access.log", "scanner-access.log", "web.err", "api.err", "scanner.err", NULL};
  char p[256];
  for (const char *const *f = files; *f; f++) {
    path(p, sizeof(p), *f);
    unlink(p);
  }
  rmdir(dir);
}

int zt_cmd_demo(int argc, char **argv) {
  zt_issue_ca_opts_t cao = {0};
  zt_issue_result_t res;
  zt_error_t err;
  char msg[1024], text[2048], p1[256], p2[256], reply[4096];
  int app_port, api_in, web_out, scan_out, ok = 1;
  pid_t pids[NSIDECARS] = {0};
  pthread_t app;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof(a);
  ssize_t n;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(kDemoUsage, stdout);
      return 0;
    }
    fprintf(stderr, "ztproxy demo: unexpected argument \"%s\"\n%s", argv[i], kDemoUsage);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (mkdtemp(dir) == NULL) {
    perror("ztproxy demo: mkdtemp");
    return 1;
  }

  printf("1. A trust domain and three workload identities (X.509-SVIDs), in %s\n", dir);
  cao.trust_domain = TD;
  cao.now = (int64_t)time(NULL);
  cao.ttl = 86400;
  cao.backdate = ZT_ISSUE_BACKDATE_DEFAULT;
  path(p1, sizeof(p1), "ca.pem");
  path(p2, sizeof(p2), "ca_key.pem");
  if (zt_issue_ca(&cao, p1, p2, &res, &err) ||
      issue("web", "spiffe://" TD "/ns/shop/sa/web", &err) ||
      issue("api", "spiffe://" TD "/ns/shop/sa/api", &err) ||
      issue("scanner", "spiffe://" TD "/ns/lab/sa/scanner", &err)) {
    fprintf(stderr, "ztproxy demo: %s\n", zt_error_str(&err, msg, sizeof(msg)));
    remove_dir();
    return 1;
  }

  /* The api app listens first, so its port is known. */
  app_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (app_fd < 0 || bind(app_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      listen(app_fd, 16) != 0 || getsockname(app_fd, (struct sockaddr *)&a, &al) != 0) {
    perror("ztproxy demo: app socket");
    remove_dir();
    return 1;
  }
  app_port = ntohs(a.sin_port);
  api_in = free_port();
  web_out = free_port();
  scan_out = free_port();

  write_file("api-policy.yaml",
             "trust_domain: " TD "\n"
             "default: deny\n"
             "rules:\n"
             "  - name: web-to-api\n"
             "    action: allow\n"
             "    from: [spiffe://" TD "/ns/shop/sa/web]\n");
  snprintf(text, sizeof(text),
           "identity: {cert: api.pem, key: api_key.pem, bundle: ca.pem}\n"
           "log: {access: api-access.log}\nworkers: 1\n"
           "listeners:\n"
           "  - name: inbound\n    mode: inbound\n    listen: 127.0.0.1:%d\n"
           "    forward: 127.0.0.1:%d\n    policy: api-policy.yaml\n",
           api_in, app_port);
  write_file("api.yaml", text);
  for (int i = 0; i < 2; i++) {
    const char *who = i == 0 ? "web" : "scanner";
    snprintf(text, sizeof(text),
             "identity: {cert: %s.pem, key: %s_key.pem, bundle: ca.pem}\n"
             "log: {access: %s-access.log}\nworkers: 1\n"
             "listeners:\n"
             "  - name: outbound\n    mode: outbound\n    listen: 127.0.0.1:%d\n"
             "    upstream: 127.0.0.1:%d\n"
             "    expect_server: [spiffe://" TD "/ns/shop/sa/api]\n",
             who, who, who, i == 0 ? web_out : scan_out, api_in);
    snprintf(p1, sizeof(p1), "%s.yaml", who);
    write_file(p1, text);
  }
  printf("2. Sidecars: web -> 127.0.0.1:%d (outbound), scanner -> 127.0.0.1:%d "
         "(outbound),\n   api <- 127.0.0.1:%d (inbound mTLS) -> api app 127.0.0.1:%d. "
         "Policy: only web may call api.\n", web_out, scan_out, api_in, app_port);
  pthread_create(&app, NULL, app_main, NULL);
  pids[0] = start_sidecar("api.yaml");
  pids[1] = start_sidecar("web.yaml");
  pids[2] = start_sidecar("scanner.yaml");
  /* Each sidecar says "ready" once its listeners are bound (and not before its
   * identity is loaded): wait for that rather than probing the ports. */
  {
    static const char *const errs[NSIDECARS] = {"api.err", "web.err", "scanner.err"};
    for (int i = 0; i < NSIDECARS && ok; i++) {
      int t = 0;
      while (!file_has(errs[i], "ztproxy: info: ready") && t++ < 100) usleep(50 * 1000);
      if (t > 100) {
        fprintf(stderr, "ztproxy demo: a sidecar did not start; it said:\n");
        print_log("  ", errs[i]);
        ok = 0;
      }
    }
  }

  if (ok) {
    printf("3. web calls api: GET /orders through its sidecar\n");
    n = call(web_out, reply, sizeof(reply));
    if (n > 0 && strstr(reply, "200 OK")) {
      char *body = strstr(reply, "\r\n\r\n");
      printf("   allowed: HTTP/1.1 200 OK, body %s", body ? body + 4 : "");
    } else {
      printf("   FAILED: expected a 200 reply, got %zd bytes\n", n);
      ok = 0;
    }
    printf("4. scanner calls api the same way\n");
    n = call(scan_out, reply, sizeof(reply));
    usleep(200 * 1000);
    if (n == 0 && atomic_load(&app_conns) == 1 &&
        file_has("api-access.log", "\"close_reason\":\"peer_not_allowed\"")) {
      printf("   refused: api's sidecar verified scanner's SVID, found no rule allowing "
             "it\n   (default deny) and closed the connection; the api app never saw "
             "it. api's sidecar said:\n");
      print_log("   api", "api.err");
    } else {
      printf("   FAILED: expected a refusal (got %zd bytes, app saw %d connections)\n", n,
             atomic_load(&app_conns));
      ok = 0;
    }
  }

  for (int i = 0; i < NSIDECARS; i++)
    if (pids[i] > 0) kill(pids[i], SIGTERM);
  for (int i = 0; i < NSIDECARS; i++) {
    int st = 0;
    for (int t = 0; pids[i] > 0 && t < 100; t++) {
      if (waitpid(pids[i], &st, WNOHANG) == pids[i]) {
        pids[i] = 0;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ok = 0;
        break;
      }
      usleep(50 * 1000);
    }
    if (pids[i] > 0) {
      kill(pids[i], SIGKILL);
      waitpid(pids[i], &st, 0);
      ok = 0;
    }
  }
  shutdown(app_fd, SHUT_RDWR);
  pthread_join(app, NULL);
  close(app_fd);

  printf("5. Access logs (one JSON record per connection):\n");
  print_log("web", "web-access.log");
  print_log("scanner", "scanner-access.log");
  print_log("api", "api-access.log");
  remove_dir();
  printf("%s\n", ok ? "demo ok: the allowed call was answered, the refused one never "
                      "reached the app."
                    : "demo FAILED");
  return ok ? 0 : 1;
}
