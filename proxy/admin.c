/* proxy/admin.c: GET /metrics /healthz /ready /config /policy /connections.
 *
 * A small HTTP/1.1 server parsed with llhttp: one request per connection (the reply
 * says Connection: close), requests bounded at 8 KiB (431 past it), 400 for anything
 * llhttp refuses, 404 for unknown paths, 405 for methods other than GET. At most
 * CLIENTS_MAX clients at once, each for CLIENT_TIMEOUT_MS at most from accept to close
 * (a client that sends nothing cannot hold a slot for long, and when all are taken
 * the oldest that has not sent a whole request makes way, so that probes get
 * through). It runs on the main thread's loop; reading the workers' counters takes no
 * lock (metrics.h), and /connections asks each worker for its list through its async
 * handle; meanwhile the client's further bytes are not read.
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llhttp.h>

#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "sbuf.h"

#define REQ_MAX 8192
#define URL_MAX 1024
#define CLIENTS_MAX 64      /* concurrent admin clients */
#define CLIENT_TIMEOUT_MS 10000

typedef struct client {
  uv_tcp_t tcp;
  zt_admin_t *a;
  struct client *prev, *next;   /* all open clients, so a stop can close them */
  struct client *next_wait;     /* waiting for the workers' connection lists */
  llhttp_t parser;
  char buf[REQ_MAX];
  size_t len;
  char url[URL_MAX];
  size_t url_len;
  int done, url_too_long;        /* done: a request was answered or is being */
  int lingering;                 /* the answer has gone: only EOF is awaited */
  uint64_t start_ms;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  size_t discarded;
  char *out;
} client_t;

struct zt_admin {
  uv_tcp_t tcp;
  uv_timer_t sweep;             /* closes clients past CLIENT_TIMEOUT_MS */
  int handles;                  /* tcp and sweep, and once stopping the clients:
                                   the last one closed frees the admin */
  zt_server_t *srv;
  llhttp_settings_t settings;
  client_t *waiting;
  client_t *clients;
  size_t n_clients;
  int stopping;
};

static void free_admin(uv_handle_t *h) {
  zt_admin_t *a = h->data;
  if (--a->handles == 0) free(a);
}

static void on_client_closed(uv_handle_t *h) {
  client_t *c = h->data;
  zt_admin_t *a = c->a;
  client_t **w;
  if (c->prev) c->prev->next = c->next;
  else c->a->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  for (w = &c->a->waiting; *w; w = &(*w)->next_wait)   /* gone before its answer */
    if (*w == c) {
      *w = c->next_wait;
      break;
    }
  c->a->n_clients--;
  free(c->out);
  free(c);
  if (a->stopping) free_admin((uv_handle_t *)&a->tcp);
}

static void close_client(client_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

/* After the reply: FIN, then read and drop what the client still sends (a rejected
 * oversized request, say) until its EOF, so that closing with unread bytes does not
 * reset the connection and destroy the reply before the client has read it. */
static void on_discard_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  client_t *c = h->data;
  (void)suggested;
  *buf = uv_buf_init(c->buf, REQ_MAX);
}

static void on_discard(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  client_t *c = s->data;
  (void)buf;
  if (nread > 0) c->discarded += (size_t)nread;
  if ((nread < 0 || c->discarded > 16 * REQ_MAX) && !uv_is_closing((uv_handle_t *)s))
    uv_close((uv_handle_t *)s, on_client_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  client_t *c = req->data;
  c->lingering = 1;
  if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, on_discard_alloc, on_discard))
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
      uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void on_written(uv_write_t *req, int status) {
  client_t *c = req->data;
  c->sreq.data = c;
  if (status < 0 || uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown))
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
      uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void reply(client_t *c, int status, const char *ctype, const char *body,
                  size_t blen) {
  const char *text = status == 200 ? "OK" : status == 400 ? "Bad Request"
                   : status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed"
                   : status == 431 ? "Request Header Fields Too Large"
                   : status == 503 ? "Service Unavailable" : "Internal Server Error";
  zt_sbuf_t b = {0};
  uv_buf_t buf;
  size_t len;
  zt_sbuf_printf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n", status, text, ctype, blen);
  zt_sbuf_printf(&b, "%.*s", (int)blen, body);
  c->out = zt_sbuf_take(&b, &len);
  c->done = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (c->out == NULL) {
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
    return;
  }
  buf = uv_buf_init(c->out, (unsigned)len);
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0)
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void reply_text(client_t *c, int status, const char *text) {
  reply(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void reply_sbuf(client_t *c, const char *ctype, zt_sbuf_t *b) {
  size_t len;
  char *s = zt_sbuf_take(b, &len);
  if (s == NULL) {
    reply_text(c, 500, "out of memory\n");
    return;
  }
  reply(c, 200, ctype, s, len);
  free(s);
}

/* --- the endpoints --------------------------------------------------------------- */

static void do_metrics(client_t *c) {
  zt_server_t *srv = c->a->srv;
  zt_metrics_view_t v;
  const char **names = calloc(srv->cfg->n_listeners + 1, sizeof(*names));
  zt_worker_metrics_t **wm = calloc(srv->n_workers + 1, sizeof(*wm));
  char *text;
  size_t len, i;

  if (names == NULL || wm == NULL) {
    free(names);
    free(wm);
    reply_text(c, 500, "out of memory\n");
    return;
  }
  memset(&v, 0, sizeof(v));
  v.n_listeners = srv->cfg->n_listeners;
  for (i = 0; i < v.n_listeners; i++) names[i] = srv->cfg->listeners[i].name;
  v.listener_names = names;
  v.n_workers = srv->n_workers;
  for (i = 0; i < v.n_workers; i++) wm[i] = &srv->workers[i].metrics;
  v.workers = wm;
  v.svid_expiry = (double)srv->ident->not_after;
  v.start_time = srv->start_time;
  v.version = ZT_VERSION;
  for (int w = 0; w < 2; w++)
    for (int r = 0; r < 2; r++) v.reloads[w][r] = atomic_load(&srv->reloads[w][r]);
  text = zt_metrics_render(&v, &len);
  free(names);
  free(wm);
  if (text == NULL) {
    reply_text(c, 500, "out of memory\n");
    return;
  }
  reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
  free(text);
}

/* Why the proxy should not get traffic, or NULL when it should. */
static const char *not_ready(zt_server_t *srv) {
  if (atomic_load(&srv->drain_requested)) return "draining";
  if ((int64_t)time(NULL) >= srv->ident->not_after) return "the SVID has expired";
  return NULL;
}

static void do_ready(client_t *c) {
  const char *why = not_ready(c->a->srv);
  char msg[128];
  snprintf(msg, sizeof(msg), "%s%s\n", why ? "not ready: " : "ready", why ? why : "");
  reply_text(c, why ? 503 : 200, msg);
}

static void do_config(client_t *c) {
  const zt_config_t *cfg = c->a->srv->cfg;
  zt_sbuf_t b = {0};
  static const char *const levels[] = {"debug", "info", "warn", "error"};
  zt_sbuf_printf(&b, "{\"file\":");
  zt_sbuf_json(&b, cfg->file);
  zt_sbuf_printf(&b, ",\"identity\":{\"cert\":");
  zt_sbuf_json(&b, cfg->cert);
  zt_sbuf_printf(&b, ",\"key\":");
  zt_sbuf_json(&b, cfg->key);
  zt_sbuf_printf(&b, ",\"bundle\":");
  zt_sbuf_json(&b, cfg->bundle);
  zt_sbuf_printf(&b, ",\"spiffe_id\":");
  zt_sbuf_json(&b, c->a->srv->ident->id);
  zt_sbuf_printf(&b, ",\"svid_serial\":");
  zt_sbuf_json(&b, c->a->srv->ident->serial);
  zt_sbuf_printf(&b, ",\"svid_not_after\":%lld},\"admin\":{\"listen\":",
                 (long long)c->a->srv->ident->not_after);
  zt_sbuf_json(&b, cfg->admin_listen.str);
  zt_sbuf_printf(&b, ",\"allow_remote\":%s,\"max_peer_series\":%zu},\"log\":{\"access\":",
                 cfg->admin_allow_remote ? "true" : "false", cfg->max_peer_series);
  zt_sbuf_json(&b, cfg->access_log ? cfg->access_log : "off");
  {
    const zt_server_t *srv = c->a->srv;
    unsigned on_ring = 0;
    for (unsigned i = 0; i < srv->n_workers; i++) on_ring += srv->workers[i].on_ring;
    zt_sbuf_printf(&b, ",\"level\":\"%s\"},\"workers\":%u,\"drain_timeout_ms\":%llu,"
                       "\"io_uring\":%s,\"io_uring_workers\":%u,\"listeners\":[",
                   levels[cfg->log_level], cfg->workers,
                   (unsigned long long)cfg->drain_timeout_ms,
                   cfg->io_uring ? "true" : "false", on_ring);
  }
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const zt_listener_conf_t *l = &cfg->listeners[i];
    zt_sbuf_printf(&b, "%s{\"name\":", i ? "," : "");
    zt_sbuf_json(&b, l->name);
    zt_sbuf_printf(&b, ",\"mode\":\"%s\",\"listen\":",
                   l->mode == ZT_MODE_INBOUND ? "inbound" : "outbound");
    zt_sbuf_json(&b, l->listen.str);
    zt_sbuf_printf(&b, ",\"%s\":", l->mode == ZT_MODE_INBOUND ? "forward" : "upstream");
    zt_sbuf_json(&b, l->target.str);
    zt_sbuf_printf(&b, ",\"protocol\":\"tcp\",\"policy\":");
    zt_sbuf_json(&b, l->policy_file);
    zt_sbuf_printf(&b, ",\"expect_server\":");
    if (l->expect_server) {
      zt_sbuf_printf(&b, "[");
      for (size_t j = 0; j < l->n_expect_server; j++) {
        if (j) zt_sbuf_printf(&b, ",");
        zt_sbuf_json(&b, l->expect_server[j]);
      }
      zt_sbuf_printf(&b, "]");
    } else {
      zt_sbuf_printf(&b, "null");
    }
    zt_sbuf_printf(&b, ",\"connect_timeout_ms\":%llu,\"handshake_timeout_ms\":%llu,"
                       "\"idle_timeout_ms\":%llu,\"max_connections\":%u}",
                   (unsigned long long)l->connect_timeout_ms,
                   (unsigned long long)l->handshake_timeout_ms,
                   (unsigned long long)l->idle_timeout_ms, l->max_connections);
  }
  zt_sbuf_printf(&b, "]}\n");
  reply_sbuf(c, "application/json", &b);
}

static void do_policy(client_t *c) {
  const zt_config_t *cfg = c->a->srv->cfg;
  zt_sbuf_t b = {0};
  int first = 1;
  zt_sbuf_printf(&b, "{\"listeners\":[");
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const zt_listener_conf_t *l = &cfg->listeners[i];
    zt_policy_t *p = c->a->srv->policies[i];
    uint64_t *hits;
    if (p == NULL) continue;
    if ((hits = malloc((zt_policy_rule_count(p) + 1) * sizeof(*hits))) == NULL) {
      free(zt_sbuf_take(&b, NULL));
      reply_text(c, 500, "out of memory\n");
      return;
    }
    zt_policy_hits(p, hits);
    zt_sbuf_printf(&b, "%s{\"listener\":", first ? "" : ",");
    first = 0;
    zt_sbuf_json(&b, l->name);
    zt_sbuf_printf(&b, ",\"file\":");
    zt_sbuf_json(&b, zt_policy_file(p));
    zt_sbuf_printf(&b, ",\"loaded_at\":%.3f,\"trust_domain\":",
                   c->a->srv->policy_loaded_at[i]);
    zt_sbuf_json(&b, zt_policy_trust_domain(p));
    zt_sbuf_printf(&b, ",\"mode\":\"%s\",\"rules\":[", zt_policy_audit(p) ? "audit" : "enforce");
    for (size_t r = 0; r < zt_policy_rule_count(p); r++) {
      zt_sbuf_printf(&b, "%s{\"name\":", r ? "," : "");
      zt_sbuf_json(&b, zt_policy_rule_name(p, r));
      zt_sbuf_printf(&b, ",\"action\":\"%s\",\"hits\":%llu}",
                     zt_policy_rule_action(p, r) == ZT_ALLOW ? "allow" : "deny",
                     (unsigned long long)hits[r]);
    }
    free(hits);
    zt_sbuf_printf(&b, "]");
    zt_sbuf_printf(&b, "}");
  }
  zt_sbuf_printf(&b, "]}\n");
  reply_sbuf(c, "application/json", &b);
}

/* Also during a drain: what is still draining is listed (workers whose loops have
 * ended have nothing to list). */
static void do_connections(client_t *c) {
  zt_server_t *srv = c->a->srv;
  c->done = 1;                  /* nothing more is read until the answer */
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->next_wait = c->a->waiting;
  c->a->waiting = c;
  if (c->next_wait == NULL) zt_server_request_dump(srv);  /* else one is in flight */
}

void zt_admin_connections_ready(zt_admin_t *a) {
  zt_server_t *srv = a->srv;
  zt_sbuf_t b = {0};
  client_t *c, *next;
  int first = 1;
  zt_sbuf_printf(&b, "{\"connections\":[");
  for (unsigned i = 0; i < srv->n_workers; i++) {
    zt_worker_t *w = &srv->workers[i];
    if (w->dump && w->dump[0]) {
      zt_sbuf_printf(&b, "%s%s", first ? "" : ",", w->dump);
      first = 0;
    }
    free(w->dump);
    w->dump = NULL;
  }
  zt_sbuf_printf(&b, "]}\n");
  for (c = a->waiting, a->waiting = NULL; c; c = next) {
    zt_sbuf_t copy = {0};
    next = c->next_wait;
    zt_sbuf_printf(&copy, "%.*s", (int)b.len, b.p ? b.p : "");
    reply_sbuf(c, "application/json", &copy);
  }
  free(zt_sbuf_take(&b, NULL));
}

static void route(client_t *c) {
  const char *path = c->url;
  size_t plen = strcspn(c->url, "?");
  c->url[plen] = '\0';
  if (llhttp_get_method(&c->parser) != HTTP_GET) {
    reply_text(c, 405, "only GET\n");
    return;
  }
  if (strcmp(path, "/metrics") == 0) do_metrics(c);
  else if (strcmp(path, "/healthz") == 0) reply_text(c, 200, "ok\n");
  else if (strcmp(path, "/ready") == 0) do_ready(c);
  else if (strcmp(path, "/config") == 0) do_config(c);
  else if (strcmp(path, "/policy") == 0) do_policy(c);
  else if (strcmp(path, "/connections") == 0) do_connections(c);
  else reply_text(c, 404, "not found: try /metrics /healthz /ready /config /policy "
                          "/connections\n");
}

/* --- HTTP plumbing ------------------------------------------------------------------ */

static int on_url(llhttp_t *p, const char *at, size_t len) {
  client_t *c = p->data;
  if (c->url_len + len >= URL_MAX) {
    c->url_too_long = 1;
    return HPE_USER;
  }
  memcpy(c->url + c->url_len, at, len);
  c->url_len += len;
  c->url[c->url_len] = '\0';
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  (void)p;
  return HPE_PAUSED;   /* one request per connection: stop here and answer */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  client_t *c = h->data;
  (void)suggested;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(REQ_MAX - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  client_t *c = s->data;
  llhttp_errno_t e;
  (void)buf;
  if (c->done) return;
  if (nread < 0) {
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
    return;
  }
  if (nread == 0) return;
  e = llhttp_execute(&c->parser, c->buf + c->len, (size_t)nread);
  c->len += (size_t)nread;
  if (e == HPE_PAUSED) {
    route(c);
  } else if (e != HPE_OK) {
    reply_text(c, c->url_too_long ? 431 : 400, c->url_too_long ? "URL too long\n"
                                                               : "malformed request\n");
  } else if (c->len >= REQ_MAX) {
    reply_text(c, 431, "request too large\n");
  }
}

static void on_sweep(uv_timer_t *t) {
  zt_admin_t *a = t->data;
  uint64_t now = uv_now(t->loop);
  for (client_t *c = a->clients; c; c = c->next)
    if (now - c->start_ms >= CLIENT_TIMEOUT_MS) close_client(c);
}

static void on_connection(uv_stream_t *server, int status) {
  zt_admin_t *a = server->data;
  client_t *c;
  if (status < 0 || (c = calloc(1, sizeof(*c))) == NULL) return;
  if (a->n_clients >= CLIENTS_MAX) {
    /* Full: the oldest client still to send a whole request, or already answered,
     * makes way (the newest is at the head of the list). */
    client_t *old = NULL;
    for (client_t *o = a->clients; o; o = o->next)
      if ((!o->done || o->lingering) && !uv_is_closing((uv_handle_t *)&o->tcp)) old = o;
    if (old) close_client(old);
  }
  c->a = a;
  c->start_ms = uv_now(server->loop);
  c->next = a->clients;
  if (a->clients) a->clients->prev = c;
  a->clients = c;
  a->n_clients++;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || a->n_clients > 2 * CLIENTS_MAX) {
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
    return;
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &a->settings);
  c->parser.data = c;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int zt_admin_start(zt_admin_t **out, uv_loop_t *loop, zt_server_t *srv, zt_error_t *err) {
  const zt_addr_t *addr = &srv->cfg->admin_listen;
  zt_admin_t *a = calloc(1, sizeof(*a));
  int r;
  if (a == NULL) return zt_error_set(err, NULL, 0, 0, "out of memory");
  a->srv = srv;
  llhttp_settings_init(&a->settings);
  a->settings.on_url = on_url;
  a->settings.on_message_complete = on_message_complete;
  uv_tcp_init(loop, &a->tcp);
  uv_timer_init(loop, &a->sweep);
  a->tcp.data = a->sweep.data = a;
  a->handles = 2;
  if ((r = uv_tcp_bind(&a->tcp, (const struct sockaddr *)&addr->ss, 0)) < 0 ||
      (r = uv_listen((uv_stream_t *)&a->tcp, 64, on_connection)) < 0) {
    zt_error_set(err, NULL, 0, 0, "admin: cannot listen on %s: %s", addr->str,
                 uv_strerror(r));
    uv_close((uv_handle_t *)&a->tcp, free_admin);
    uv_close((uv_handle_t *)&a->sweep, free_admin);
    return -1;
  }
  uv_timer_start(&a->sweep, on_sweep, 1000, 1000);
  uv_unref((uv_handle_t *)&a->sweep);
  *out = a;
  return 0;
}

void zt_admin_stop(zt_admin_t *a) {
  client_t *c, *next;
  if (a == NULL) return;
  for (c = a->waiting, a->waiting = NULL; c; c = next) {
    next = c->next_wait;
    reply_text(c, 503, "draining\n");
  }
  /* Clients closing already, or closed now, call back after this: each holds the
   * admin until then. */
  a->stopping = 1;
  a->handles += (int)a->n_clients;
  for (c = a->clients; c; c = c->next) close_client(c);
  uv_close((uv_handle_t *)&a->tcp, free_admin);
  uv_close((uv_handle_t *)&a->sweep, free_admin);
}
