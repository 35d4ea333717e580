/* proxy/reload.c: hot reload of policies and of the workload identity.
 *
 * The files are watched two ways: a libuv fs event on each file's folder (an agent
 * that replaces a file by rename, or Kubernetes swapping a `..data` symlink, changes
 * the folder, not the old file), and a stat of every file every second, for file
 * systems without events. Either way, a file counts as changed when its inode, size
 * or mtime differ from the last attempt; a burst of events is coalesced for 100 ms.
 *
 * A new snapshot is built and checked here, on the main thread, off the data path. A
 * policy or identity that does not load is logged with its reason and counted in
 * ztproxy_reloads_total{result="failure"}, and the old one stays in force; it is tried
 * again only when one of its files changes again.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "proxy.h"

#define POLL_MS 1000
#define DEBOUNCE_MS 100

enum { KIND_IDENTITY, KIND_POLICY };

typedef struct {
  const char *path;             /* borrowed from the configuration */
  int kind;
  size_t listener;              /* KIND_POLICY */
  struct stat st;               /* as of the last attempt */
  int have_st;
} watched_t;

struct zt_reloader {
  zt_server_t *srv;
  watched_t *files;
  size_t n_files;
  uv_fs_event_t *dirs;
  size_t n_dirs;
  uv_timer_t poll, debounce;
  int pending_closes;
  int64_t last_expired_log;
  char warned_serial[65];
};

static int same_stat(const struct stat *a, const struct stat *b) {
  return a->st_ino == b->st_ino && a->st_size == b->st_size &&
         a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static int stat_changed(watched_t *f) {
  struct stat st;
  int changed;
  if (stat(f->path, &st) != 0) return 0;   /* missing for now: keep what we have */
  changed = !f->have_st || !same_stat(&st, &f->st);
  f->st = st;
  f->have_st = 1;
  return changed;
}

/* Files of this kind (and, for a policy, listener) that changed while they were being
 * read: a writer was still at work. They count as changed again, so that the next
 * check reads them once more; what was read is not used. */
static int changed_while_read(zt_reloader_t *r, int kind, size_t li) {
  int moved = 0;
  for (size_t i = 0; i < r->n_files; i++) {
    watched_t *f = &r->files[i];
    struct stat st;
    if (f->kind != kind || (kind == KIND_POLICY && f->listener != li)) continue;
    if (stat(f->path, &st) == 0 && f->have_st && !same_stat(&st, &f->st)) {
      f->have_st = 0;
      moved = 1;
    }
  }
  return moved;
}

static void reload_policy(zt_reloader_t *r, size_t li, const char *why) {
  zt_server_t *srv = r->srv;
  const zt_listener_conf_t *l = &srv->cfg->listeners[li];
  zt_policy_t *p;
  zt_error_t err;
  char msg[1024];
  if (zt_policy_load(l->policy_file, &p, &err)) {
    if (changed_while_read(r, KIND_POLICY, li)) return;   /* an error of a half-written file */
    zt_error("%s: policy reload failed, the previous policy stays in force: %s", why,
             zt_error_str(&err, msg, sizeof(msg)));
    atomic_fetch_add(&srv->reloads[1][1], 1);
    return;
  }
  if (changed_while_read(r, KIND_POLICY, li)) {
    zt_debug("%s: %s changed while it was read: read again at the next check", why,
             l->policy_file);
    zt_policy_release(p);
    return;
  }
  if (zt_policy_has_http_rules(p)) {
    zt_error("%s: policy reload failed, the previous policy stays in force: %s has "
             "http rules, but listener %s is tcp", why, l->policy_file, l->name);
    zt_policy_release(p);
    atomic_fetch_add(&srv->reloads[1][1], 1);
    return;
  }
  zt_config_lint_policy(srv->cfg, p);
  zt_server_set_policy(srv, li, p);
  zt_info("%s: policy %s reloaded for listener %s (%zu rules)", why, l->policy_file,
          l->name, zt_policy_rule_count(srv->policies[li]));
  atomic_fetch_add(&srv->reloads[1][0], 1);
}

static void reload_identity(zt_reloader_t *r, const char *why) {
  zt_server_t *srv = r->srv;
  const zt_config_t *cfg = srv->cfg;
  zt_identity_t *id;
  zt_error_t err;
  char msg[1024];
  if (zt_identity_load(cfg, cfg->allow_id_change ? NULL : srv->ident->id, &id, &err)) {
    if (changed_while_read(r, KIND_IDENTITY, 0)) return;
    zt_error("%s: identity reload failed, the previous SVID stays in force: %s", why,
             zt_error_str(&err, msg, sizeof(msg)));
    atomic_fetch_add(&srv->reloads[0][1], 1);
    return;
  }
  if (changed_while_read(r, KIND_IDENTITY, 0)) {
    zt_debug("%s: an identity file changed while it was read: read again at the next "
             "check", why);
    zt_identity_release(id);
    return;
  }
  zt_server_set_identity(srv, id);
  zt_info("%s: identity reloaded: %s, serial %s", why, srv->ident->id, srv->ident->serial);
  atomic_fetch_add(&srv->reloads[0][0], 1);
}

/* Reload what changed (or everything, when force). */
static void check(zt_reloader_t *r, int force, const char *why) {
  int identity = 0;
  for (size_t i = 0; i < r->n_files; i++) {
    watched_t *f = &r->files[i];
    int changed = stat_changed(f) || force;
    if (!changed) continue;
    if (f->kind == KIND_IDENTITY) identity = 1;
    else reload_policy(r, f->listener, why);
  }
  if (identity) reload_identity(r, why);
}

/* Say loudly when the SVID is about to expire or has expired: with an expired SVID
 * the listeners refuse every connection (fail closed) until a valid one arrives. */
static void watch_expiry(zt_reloader_t *r) {
  const zt_identity_t *id = r->srv->ident;
  int64_t now = (int64_t)time(NULL), life = id->not_after - id->not_before;
  int64_t left = id->not_after - now;
  if (left <= 0) {
    if (now - r->last_expired_log >= 10) {
      zt_error("the SVID %s (serial %s) EXPIRED %llds ago and no valid replacement has "
               "arrived: refusing every connection", id->id, id->serial,
               (long long)-left);
      r->last_expired_log = now;
    }
  } else if (left * 100 < life * (int64_t)r->srv->cfg->expiry_warning_percent &&
             strcmp(r->warned_serial, id->serial) != 0) {
    zt_warn("the SVID %s (serial %s) expires in %llds, less than %u%% of its lifetime; "
            "no replacement yet", id->id, id->serial, (long long)left,
            r->srv->cfg->expiry_warning_percent);
    snprintf(r->warned_serial, sizeof(r->warned_serial), "%s", id->serial);
  }
}

static void on_poll(uv_timer_t *t) {
  check(t->data, 0, "file change");
  watch_expiry(t->data);
}
static void on_debounce(uv_timer_t *t) { check(t->data, 0, "file change"); }

static void on_fs_event(uv_fs_event_t *h, const char *name, int events, int status) {
  zt_reloader_t *r = h->data;
  (void)name;
  (void)events;
  (void)status;
  uv_timer_start(&r->debounce, on_debounce, DEBOUNCE_MS, 0);
}

static void add_file(zt_reloader_t *r, const char *path, int kind, size_t li) {
  watched_t *f = &r->files[r->n_files++];
  f->path = path;
  f->kind = kind;
  f->listener = li;
  stat_changed(f);   /* remember the state the running snapshot was loaded from */
}

static void add_dir(zt_reloader_t *r, uv_loop_t *loop, const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (slash == NULL) snprintf(dir, sizeof(dir), ".");
  else if (slash == path) snprintf(dir, sizeof(dir), "/");
  else snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
  for (size_t i = 0; i < r->n_dirs; i++) {
    char have[4096];
    size_t len = sizeof(have);
    if (uv_fs_event_getpath(&r->dirs[i], have, &len) == 0 && strcmp(have, dir) == 0)
      return;
  }
  uv_fs_event_init(loop, &r->dirs[r->n_dirs]);
  r->dirs[r->n_dirs].data = r;
  if (uv_fs_event_start(&r->dirs[r->n_dirs], on_fs_event, dir, 0) != 0) {
    zt_warn("cannot watch %s for changes; checking it every %d ms instead", dir, POLL_MS);
    uv_close((uv_handle_t *)&r->dirs[r->n_dirs], NULL);
    /* The slot stays used (closing) so that stop closes only live handles. */
    r->dirs[r->n_dirs].data = NULL;
  }
  r->n_dirs++;
}

zt_reloader_t *zt_reload_start(zt_server_t *srv, uv_loop_t *loop) {
  const zt_config_t *cfg = srv->cfg;
  size_t max = 3 + cfg->n_federated + cfg->n_crls + cfg->n_listeners;
  zt_reloader_t *r = calloc(1, sizeof(*r));
  if (r == NULL) return NULL;
  r->srv = srv;
  r->files = calloc(max, sizeof(*r->files));
  r->dirs = calloc(max, sizeof(*r->dirs));
  if (r->files == NULL || r->dirs == NULL) {
    free(r->files);
    free(r->dirs);
    free(r);
    return NULL;
  }
  add_file(r, cfg->cert, KIND_IDENTITY, 0);
  add_file(r, cfg->key, KIND_IDENTITY, 0);
  add_file(r, cfg->bundle, KIND_IDENTITY, 0);
  for (size_t i = 0; i < cfg->n_federated; i++)
    add_file(r, cfg->federated[i].bundle, KIND_IDENTITY, 0);
  for (size_t i = 0; i < cfg->n_crls; i++) add_file(r, cfg->crls[i], KIND_IDENTITY, 0);
  for (size_t i = 0; i < cfg->n_listeners; i++)
    if (cfg->listeners[i].policy_file)
      add_file(r, cfg->listeners[i].policy_file, KIND_POLICY, i);
  for (size_t i = 0; i < r->n_files; i++) add_dir(r, loop, r->files[i].path);
  uv_timer_init(loop, &r->poll);
  uv_timer_init(loop, &r->debounce);
  r->poll.data = r->debounce.data = r;
  uv_timer_start(&r->poll, on_poll, POLL_MS, POLL_MS);
  return r;
}

void zt_reload_all(zt_reloader_t *r, const char *why) {
  if (r) check(r, 1, why);
}

static void on_closed(uv_handle_t *h) {
  zt_reloader_t *r = h->data;
  if (--r->pending_closes == 0) {
    free(r->files);
    free(r->dirs);
    free(r);
  }
}

void zt_reload_stop(zt_reloader_t *r) {
  if (r == NULL) return;
  r->pending_closes = 2;
  for (size_t i = 0; i < r->n_dirs; i++) {
    if (r->dirs[i].data == NULL) continue;   /* failed to start, closed already */
    r->pending_closes++;
    uv_close((uv_handle_t *)&r->dirs[i], on_closed);
  }
  uv_close((uv_handle_t *)&r->poll, on_closed);
  uv_close((uv_handle_t *)&r->debounce, on_closed);
}
