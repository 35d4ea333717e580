/* proxy/worker.c: the server's threads: one libuv loop per worker, each with its own
 * SO_REUSEPORT socket per listener, and the main thread that watches signals.
 *
 * SIGTERM or SIGINT drains: every worker closes its listening sockets (new
 * connections are refused by the kernel from then on), lets its connections finish,
 * and after drain_timeout closes what is left with close_reason "drain_timeout".
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "proxy.h"

zt_block_t *zt_block_get(zt_worker_t *w) {
  zt_block_t *b = w->pool;
  if (b) {
    w->pool = b->next;
    w->pool_len--;
  } else {
    b = malloc(sizeof(*b));
    if (b == NULL) return NULL;
  }
  b->next = NULL;
  b->len = 0;
  return b;
}

void zt_block_put(zt_worker_t *w, zt_block_t *b) {
  if (w->pool_len >= ZT_POOL_KEEP) {
    free(b);
    return;
  }
  b->next = w->pool;
  w->pool = b;
  w->pool_len++;
}

static void on_connection(uv_stream_t *server, int status) {
  zt_wlistener_t *wl = server->data;
  if (status < 0) {
    zt_warn("%s: accept failed: %s", wl->l->conf->name, uv_strerror(status));
    return;
  }
  if (zt_conn_accept(wl) == 0 || wl->accept_paused) return;
  /* libuv stops polling a listener whose connection was not taken: the sweep tries
   * again each second, and taking it resumes the polling. */
  wl->accept_paused = true;
  zt_count(&wl->w->metrics.accept_paused, 1);
  zt_error("%s: out of memory for a new connection: accepting paused, retried every "
           "second", wl->l->conf->name);
}

static void retry_paused_accepts(zt_worker_t *w) {
  for (size_t i = 0; i < w->n_wl; i++) {
    zt_wlistener_t *wl = &w->wl[i];
    if (!wl->accept_paused || uv_is_closing((uv_handle_t *)&wl->tcp)) continue;
    if (zt_conn_accept(wl) < 0) continue;
    wl->accept_paused = false;
    zt_warn("%s: accepting again", wl->l->conf->name);
  }
}

static void on_closed_noop(uv_handle_t *h) { (void)h; }

/* The worker's last handles: once they are closed its loop has nothing left. */
static void worker_finish(zt_worker_t *w) {
  if (uv_is_closing((uv_handle_t *)&w->wake)) return;
  uv_close((uv_handle_t *)&w->wake, on_closed_noop);
  uv_close((uv_handle_t *)&w->drain_timer, on_closed_noop);
  uv_close((uv_handle_t *)&w->sweep_timer, on_closed_noop);
}

void zt_worker_conn_gone(zt_worker_t *w) {
  if (w->draining && w->n_conns == 0) worker_finish(w);
}

static void on_drain_timeout(uv_timer_t *t) {
  zt_worker_t *w = t->data;
  zt_info("worker %u: drain timeout, closing %zu connections", w->index, w->n_conns);
  zt_conn_close_all(w, "drain_timeout");
}

static void on_sweep(uv_timer_t *t) {
  retry_paused_accepts(t->data);
  zt_conn_sweep(t->data, 0);
}

static void on_wake(uv_async_t *a) {
  zt_worker_t *w = a->data;
  zt_identity_t *id;
  for (size_t li = 0; li < w->srv->cfg->n_listeners; li++) {
    zt_policy_t *p = atomic_exchange(&w->pending_policy[li], NULL);
    if (p == NULL) continue;
    zt_policy_release(w->policy[li]);
    w->policy[li] = p;
    zt_conn_recheck_policy(w, li);
  }
  if ((id = atomic_exchange(&w->pending_ident, NULL))) {
    zt_identity_release(w->ident);
    w->ident = id;
    /* Tickets were made under the old snapshot's keys and bundles: drop them. */
    for (size_t li = 0; li < w->srv->cfg->n_listeners; li++)
      zt_ticket_cache_clear(&w->tickets[li]);
    zt_conn_sweep(w, 1);
  }
  if (atomic_exchange(&w->dump_pending, 0)) {
    w->dump = zt_conn_dump(w);
    if (atomic_fetch_sub(&w->srv->dumps_left, 1) == 1) uv_async_send(&w->srv->dump_done);
  }
  if (w->draining || !atomic_load(&w->srv->drain_requested)) return;
  w->draining = true;
  for (size_t i = 0; i < w->n_wl; i++)
    if (!uv_is_closing((uv_handle_t *)&w->wl[i].tcp))
      uv_close((uv_handle_t *)&w->wl[i].tcp, on_closed_noop);
  if (w->n_conns == 0) {
    worker_finish(w);
    return;
  }
  uv_timer_start(&w->drain_timer, on_drain_timeout, w->srv->cfg->drain_timeout_ms, 0);
}

static int listen_on(zt_worker_t *w, zt_wlistener_t *wl) {
  const zt_addr_t *a = &wl->l->conf->listen;
  uv_os_fd_t fd;
  int one = 1, r;

  if ((r = uv_tcp_init_ex(&w->loop, &wl->tcp, a->ss.ss_family)) < 0) return r;
  wl->tcp.data = wl;
  if ((r = uv_fileno((uv_handle_t *)&wl->tcp, &fd)) < 0) return r;
  /* Each worker has its own socket on the port; the kernel spreads connections. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) return -errno;
  if ((r = uv_tcp_bind(&wl->tcp, (const struct sockaddr *)&a->ss, 0)) < 0) return r;
  return uv_listen((uv_stream_t *)&wl->tcp, 1024, on_connection);
}

/* The worker's loop. With busy_poll, after a burst of events the worker keeps polling
 * (giving its CPU to whatever else is runnable there between polls) until that long
 * has passed without an event, then blocks: the next event of a request under way,
 * such as the upstream's reply, is seen at once instead of after the scheduler wakes
 * a sleeping thread, which inside a virtual machine can take tens of microseconds per
 * hop.
 *
 * Spinning only pays while CPU is to spare, so it is adaptive: every SPIN_WINDOW_NS
 * the worker measures the share of that time it spent handling events (not sleeping
 * in the poller, not spinning), and spins in the next window only if that share was
 * under SPIN_MAX_BUSY_PCT. A loaded worker thus leaves the CPU to the processes that
 * feed it; an idle one sleeps.
 *
 * Nor does it spin on a CPU that other work wants. A spinning thread is runnable, so
 * an event for it preempts nothing: once a yield has handed the CPU to another task
 * (a batch job at nice 19, say), the worker waits for the end of that task's slice or
 * the next scheduler tick, milliseconds, where a sleeping worker would have been woken
 * at once. So a yield that took longer than SPIN_YIELD_MAX_NS stops spinning for a
 * second, doubling up to SPIN_BACKOFF_MAX_NS while it recurs soon after each pause,
 * and counts in ztproxy_busy_poll_backoffs_total. */
#define SPIN_WINDOW_NS 10000000ull
#define SPIN_MAX_BUSY_PCT 25
#define SPIN_YIELD_MAX_NS 1000000ull
#define SPIN_BACKOFF_NS 1000000000ull
#define SPIN_BACKOFF_MAX_NS 16000000000ull

typedef struct {
  uint64_t start, idle, spun;    /* the window's start, poller idle time then, spinning */
  uint64_t off_until, backoff;   /* no spinning before off_until: the CPU is contended */
  bool ok;                       /* spinning allowed in this window */
} spin_window_t;

/* idle: the loop's total time asleep so far. */
static bool spin_allowed(spin_window_t *sw, uint64_t now, uint64_t idle) {
  if (now - sw->start >= SPIN_WINDOW_NS) {
    uint64_t wall = now - sw->start, asleep = idle - sw->idle + sw->spun;
    sw->ok = asleep >= wall || (wall - asleep) * 100 < wall * SPIN_MAX_BUSY_PCT;
    sw->start = now;
    sw->idle = idle;
    sw->spun = 0;
  }
  return sw->ok && now >= sw->off_until;
}

/* A poll found nothing: give the CPU to whatever else is runnable here. t: when the
 * poll began. */
static void spin_yield(zt_worker_t *w, spin_window_t *sw, uint64_t t) {
  uint64_t t0 = uv_hrtime(), t1;
  sched_yield();
  t1 = uv_hrtime();
  sw->spun += t1 - t;
  if (t1 - t0 > SPIN_YIELD_MAX_NS) {
    bool again = sw->backoff && t1 - sw->off_until < sw->backoff;
    sw->backoff = !again ? SPIN_BACKOFF_NS
                : sw->backoff < SPIN_BACKOFF_MAX_NS / 2 ? sw->backoff * 2 : SPIN_BACKOFF_MAX_NS;
    sw->off_until = t1 + sw->backoff;
    zt_count(&w->metrics.spin_backoffs, 1);
  }
}

static void run_loop(zt_worker_t *w, uint64_t busy_poll_us) {
  uv_loop_t *loop = &w->loop;
  struct pollfd pf = {uv_backend_fd(loop), POLLIN, 0};
  uint64_t spin = busy_poll_us * 1000, until, t;
  spin_window_t sw = {.ok = true};
  if (spin == 0 || uv_loop_configure(loop, UV_METRICS_IDLE_TIME) != 0) {
    uv_run(loop, UV_RUN_DEFAULT);
    return;
  }
  sw.start = uv_hrtime();
  for (;;) {
    if (!uv_run(loop, UV_RUN_ONCE)) return;
    for (until = (t = uv_hrtime()) + spin;
         t < until && spin_allowed(&sw, t, uv_metrics_idle_time(loop)); t = uv_hrtime()) {
      bool ready = poll(&pf, 1, 0) > 0;
      /* uv_run also does what the epoll fd cannot show: it registers the watchers
       * started since the last poll (a connect, a read resumed) and runs pending
       * callbacks and due timers. */
      if (!uv_run(loop, UV_RUN_NOWAIT)) return;
      if (ready) until = uv_hrtime() + spin;
      else spin_yield(w, &sw, t);
    }
  }
}

/* The loop with io_uring: one io_uring_enter per turn submits every queued receive
 * and send and waits; libuv runs only when it has something to do: its epoll fd
 * polled readable, or uv_backend_timeout() 0 (due timers, handles closing, pending
 * callbacks, and since libuv 1.44.2 watchers started since its last poll, which it
 * registers with epoll only then). busy_poll works as in run_loop, with the time
 * asleep in the ring as the idle time. */
static void run_loop_uring(zt_worker_t *w, uint64_t busy_poll_us) {
  uv_loop_t *loop = &w->loop;
  uint64_t spin = busy_poll_us * 1000, until = 0, idle = 0, t;
  spin_window_t sw = {.start = uv_hrtime(), .ok = true};
  bool uv_due = true, alive = true;

  for (;;) {
    int timeout, r;
    bool spinning, polled;
    if (uv_due || uv_backend_timeout(loop) == 0) {
      alive = uv_run(loop, UV_RUN_NOWAIT) != 0;
      uv_due = false;
    }
    if (!alive && zt_uring_pending(w->uring) == 0) return;
    t = uv_hrtime();
    spinning = spin && t < until && spin_allowed(&sw, t, idle);
    polled = zt_uring_poll_uv(w->uring) == 0;  /* no-op while the poll is armed */
    if (!alive) timeout = -1;          /* only cancelled operations left to come */
    else if (spinning || !polled) timeout = 0;
    else timeout = uv_backend_timeout(loop);
    if ((r = zt_uring_enter(w->uring, timeout)) < 0) {
      zt_error("worker %u: io_uring_enter: %s", w->index, strerror(-r));
      timeout = 0;
    }
    if (timeout != 0) idle += uv_hrtime() - t;
    uv_update_time(loop);
    if (zt_uring_reap(w->uring, zt_conn_uring_done, w, &uv_due) > 0) {
      until = uv_hrtime() + spin;
    } else if (spinning) {
      spin_yield(w, &sw, t);
    }
  }
}

static void worker_main(void *arg) {
  zt_worker_t *w = arg;
  zt_server_t *srv = w->srv;
  size_t i;

  uv_loop_init(&w->loop);
  if (srv->cfg->io_uring) {
    const char *why;
    if ((w->uring = zt_uring_new(&w->loop, ZT_URING_BUFS, ZT_BLOCK_DATA, &why)) == NULL)
      zt_warn("worker %u: io_uring unavailable (%s): established connections use "
              "epoll", w->index, why);
    w->on_ring = w->uring != NULL;
  }
  uv_async_init(&w->loop, &w->wake, on_wake);
  uv_timer_init(&w->loop, &w->drain_timer);
  uv_timer_init(&w->loop, &w->sweep_timer);
  w->wake.data = w->drain_timer.data = w->sweep_timer.data = w;
  uv_timer_start(&w->sweep_timer, on_sweep, 1000, 1000);
  w->n_wl = srv->cfg->n_listeners;
  for (i = 0; i < w->n_wl; i++) {
    w->wl[i].l = &srv->listeners[i];
    w->wl[i].w = w;
    if ((w->bind_error = listen_on(w, &w->wl[i])) < 0) {
      zt_error("%s: cannot listen on %s: %s", srv->cfg->listeners[i].name,
               srv->cfg->listeners[i].listen.str, uv_strerror(w->bind_error));
      if (!uv_is_closing((uv_handle_t *)&w->wl[i].tcp))
        uv_close((uv_handle_t *)&w->wl[i].tcp, on_closed_noop);
      i++;
      break;
    }
  }
  w->n_wl = i;
  uv_sem_post(&srv->started);
  if (w->uring) run_loop_uring(w, srv->cfg->busy_poll_us);
  else run_loop(w, srv->cfg->busy_poll_us);
  zt_uring_free(w->uring);
  w->uring = NULL;
  uv_mutex_lock(&srv->lock);
  w->loop_done = true;
  if (atomic_exchange(&w->dump_pending, 0) &&            /* asked, and not answered */
      atomic_fetch_sub(&srv->dumps_left, 1) == 1 && !srv->main_closed)
    uv_async_send(&srv->dump_done);
  srv->workers_left--;
  if (!srv->main_closed) uv_async_send(&srv->worker_exit);
  uv_mutex_unlock(&srv->lock);
  while (w->pool) {
    zt_block_t *b = w->pool;
    w->pool = b->next;
    free(b);
  }
  uv_loop_close(&w->loop);
}

/* Main thread: wake the workers whose loops still run. */
static void wake_workers(zt_server_t *srv) {
  uv_mutex_lock(&srv->lock);
  for (unsigned i = 0; i < srv->n_started; i++)
    if (!srv->workers[i].loop_done) uv_async_send(&srv->workers[i].wake);
  uv_mutex_unlock(&srv->lock);
}

static void request_drain(zt_server_t *srv) {
  atomic_store(&srv->drain_requested, 1);
  wake_workers(srv);
}

void zt_server_set_policy(zt_server_t *srv, size_t li, zt_policy_t *p) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  for (unsigned i = 0; i < srv->n_workers; i++)
    zt_policy_release(atomic_exchange(&srv->workers[i].pending_policy[li],
                                      zt_policy_retain(p)));
  wake_workers(srv);
  zt_policy_release(srv->policies[li]);
  srv->policies[li] = p;
  srv->policy_loaded_at[li] = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

void zt_server_set_identity(zt_server_t *srv, zt_identity_t *id) {
  for (unsigned i = 0; i < srv->n_workers; i++)
    zt_identity_release(atomic_exchange(&srv->workers[i].pending_ident,
                                        zt_identity_retain(id)));
  wake_workers(srv);
  zt_identity_release(srv->ident);
  srv->ident = id;
}

void zt_server_request_dump(zt_server_t *srv) {
  int live = 0;
  uv_mutex_lock(&srv->lock);
  for (unsigned i = 0; i < srv->n_started; i++) live += !srv->workers[i].loop_done;
  atomic_store(&srv->dumps_left, live);
  for (unsigned i = 0; i < srv->n_started; i++) {
    if (srv->workers[i].loop_done) continue;
    atomic_store(&srv->workers[i].dump_pending, 1);
    uv_async_send(&srv->workers[i].wake);
  }
  if (live == 0) uv_async_send(&srv->dump_done);  /* nobody to ask: an empty list */
  uv_mutex_unlock(&srv->lock);
}

typedef struct {
  zt_server_t *srv;
  uv_signal_t term, intr, hup, usr1;
  zt_reloader_t *reloader;
  bool closed;
} zt_main_t;

static void close_main_handles(zt_main_t *m) {
  if (m->closed) return;
  m->closed = true;
  uv_mutex_lock(&m->srv->lock);
  m->srv->main_closed = true;
  uv_mutex_unlock(&m->srv->lock);
  zt_reload_stop(m->reloader);
  m->reloader = NULL;
  zt_admin_stop(m->srv->admin);
  m->srv->admin = NULL;
  uv_close((uv_handle_t *)&m->srv->dump_done, NULL);
  uv_close((uv_handle_t *)&m->srv->worker_exit, NULL);
  uv_close((uv_handle_t *)&m->term, NULL);
  uv_close((uv_handle_t *)&m->intr, NULL);
  uv_close((uv_handle_t *)&m->hup, NULL);
  uv_close((uv_handle_t *)&m->usr1, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
  zt_main_t *m = s->data;
  if (signum == SIGHUP) {
    zt_reload_all(m->reloader, "SIGHUP");
    return;
  }
  if (signum == SIGUSR1) {
    zt_info("SIGUSR1: reopening the access log");
    zt_access_log_reopen();
    return;
  }
  if (atomic_load(&m->srv->drain_requested)) return;
  zt_info("%s: draining (up to %llu ms)", signum == SIGTERM ? "SIGTERM" : "SIGINT",
          (unsigned long long)m->srv->cfg->drain_timeout_ms);
  request_drain(m->srv);
}

static void on_dump_done(uv_async_t *a) {
  zt_server_t *srv = a->data;
  if (srv->admin) zt_admin_connections_ready(srv->admin);
}

/* Every worker has left its loop: the admin server (which answered 503 on /ready
 * during the drain) and the signal handlers go, and the main loop ends. */
static void on_worker_exit(uv_async_t *a) {
  zt_main_t *m = a->data;
  int left;
  uv_mutex_lock(&m->srv->lock);
  left = m->srv->workers_left;
  uv_mutex_unlock(&m->srv->lock);
  if (left == 0) close_main_handles(m);
}

static void count_drop(void *arg) {
  zt_worker_t *w = arg;
  zt_count(&w->metrics.access_log_dropped, 1);
}

int zt_server_run(zt_config_t *cfg, zt_identity_t *ident) {
  zt_server_t srv;
  zt_main_t m;
  uv_loop_t loop;
  zt_alog_queue_t **queues = NULL;
  zt_error_t err;
  char msg[512];
  unsigned i, started = 0;
  int failed = 0;
  struct timespec now;

  memset(&srv, 0, sizeof(srv));
  memset(&m, 0, sizeof(m));
  clock_gettime(CLOCK_REALTIME, &now);
  srv.start_time = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
  srv.cfg = cfg;
  srv.ident = zt_identity_retain(ident);
  srv.n_workers = cfg->workers;
  srv.policies = calloc(cfg->n_listeners, sizeof(*srv.policies));
  srv.policy_loaded_at = calloc(cfg->n_listeners, sizeof(*srv.policy_loaded_at));
  srv.listeners = calloc(cfg->n_listeners, sizeof(*srv.listeners));
  srv.workers = calloc(srv.n_workers, sizeof(*srv.workers));
  queues = calloc(srv.n_workers, sizeof(*queues));
  for (i = 0; i < cfg->n_listeners; i++) {
    srv.listeners[i].conf = &cfg->listeners[i];
    srv.listeners[i].index = i;
    if (cfg->listeners[i].policy) srv.policies[i] = zt_policy_retain(cfg->listeners[i].policy);
    srv.policy_loaded_at[i] = srv.start_time;
    atomic_init(&srv.listeners[i].active, 0);
  }
  uv_sem_init(&srv.started, 0);
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  m.srv = &srv;
  uv_async_init(&loop, &srv.dump_done, on_dump_done);
  uv_async_init(&loop, &srv.worker_exit, on_worker_exit);
  srv.dump_done.data = &srv;
  srv.worker_exit.data = &m;
  uv_mutex_init(&srv.lock);

  for (i = 0; i < srv.n_workers; i++) {
    zt_worker_t *w = &srv.workers[i];
    w->srv = &srv;
    w->index = i;
    w->wl = calloc(cfg->n_listeners, sizeof(*w->wl));
    w->policy = calloc(cfg->n_listeners, sizeof(*w->policy));
    w->pending_policy = calloc(cfg->n_listeners, sizeof(*w->pending_policy));
    for (size_t li = 0; li < cfg->n_listeners; li++)
      if (srv.policies[li]) w->policy[li] = zt_policy_retain(srv.policies[li]);
    w->ident = zt_identity_retain(ident);
    w->tickets = calloc(cfg->n_listeners, sizeof(*w->tickets));
    if (zt_metrics_worker_init(&w->metrics, cfg->n_listeners, cfg->max_peer_series) ||
        (zt_access_log_enabled() &&
         (w->alog = queues[i] = zt_alog_queue_new(1 << 20, count_drop, w)) == NULL)) {
      zt_error("out of memory");
      failed = 1;
    }
  }
  if (!failed && zt_access_log_enabled() && zt_alog_start(queues, srv.n_workers)) {
    zt_error("cannot start the access-log writer");
    failed = 1;
  }
  if (!failed && cfg->admin_enabled && zt_admin_start(&srv.admin, &loop, &srv, &err)) {
    zt_error("%s", zt_error_str(&err, msg, sizeof(msg)));
    failed = 1;
  }

  for (i = 0; !failed && i < srv.n_workers; i++) {
    zt_worker_t *w = &srv.workers[i];
    uv_mutex_lock(&srv.lock);
    srv.workers_left++;
    uv_mutex_unlock(&srv.lock);
    if (uv_thread_create(&w->thread, worker_main, w) != 0) {
      uv_mutex_lock(&srv.lock);
      srv.workers_left--;
      uv_mutex_unlock(&srv.lock);
      failed = 1;
      break;
    }
    started++;
  }
  for (i = 0; i < started; i++) uv_sem_wait(&srv.started);
  srv.n_started = started;
  for (i = 0; i < started; i++) failed |= srv.workers[i].bind_error < 0;

  uv_signal_init(&loop, &m.term);
  uv_signal_init(&loop, &m.intr);
  uv_signal_init(&loop, &m.hup);
  uv_signal_init(&loop, &m.usr1);
  m.term.data = m.intr.data = m.hup.data = m.usr1.data = &m;
  if (!failed) {
    for (i = 0; i < cfg->n_listeners; i++) {
      const zt_listener_conf_t *l = &cfg->listeners[i];
      zt_info("listener %s: %s on %s -> %s", l->name,
              l->mode == ZT_MODE_INBOUND ? "inbound mTLS" : "outbound", l->listen.str,
              l->target.str);
    }
    if (srv.admin) zt_info("admin: http://%s/metrics", cfg->admin_listen.str);
    zt_info("ready: %s, %u workers", ident->id, srv.n_workers);
    uv_signal_start(&m.term, on_signal, SIGTERM);
    uv_signal_start(&m.intr, on_signal, SIGINT);
    uv_signal_start(&m.hup, on_signal, SIGHUP);
    uv_signal_start(&m.usr1, on_signal, SIGUSR1);
    m.reloader = zt_reload_start(&srv, &loop);
  } else {
    request_drain(&srv);
  }
  if (started == 0) close_main_handles(&m);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);

  for (i = 0; i < started; i++) uv_thread_join(&srv.workers[i].thread);
  zt_alog_stop();
  for (i = 0; i < srv.n_workers; i++) {
    zt_worker_t *w = &srv.workers[i];
    for (size_t li = 0; li < cfg->n_listeners; li++) {
      zt_policy_release(w->policy[li]);
      zt_policy_release(atomic_load(&w->pending_policy[li]));
    }
    free(w->policy);
    free((void *)w->pending_policy);
    for (size_t li = 0; li < cfg->n_listeners; li++) zt_ticket_cache_clear(&w->tickets[li]);
    free(w->tickets);
    zt_identity_release(w->ident);
    zt_identity_release(atomic_load(&w->pending_ident));
    free(srv.workers[i].wl);
    free(srv.workers[i].dump);
    zt_metrics_worker_free(&srv.workers[i].metrics);
    zt_alog_queue_free(srv.workers[i].alog);
  }
  uv_sem_destroy(&srv.started);
  uv_mutex_destroy(&srv.lock);
  for (i = 0; i < cfg->n_listeners; i++) zt_policy_release(srv.policies[i]);
  free(srv.policies);
  free(srv.policy_loaded_at);
  zt_identity_release(srv.ident);
  free(queues);
  free(srv.workers);
  free(srv.listeners);
  if (!failed) zt_info("stopped");
  return failed ? -1 : 0;
}
