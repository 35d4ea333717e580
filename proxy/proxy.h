/* proxy/proxy.h: the server, its workers, listeners and connections.
 *
 * The main thread loads the configuration and the identity, starts one worker thread
 * per core, and then only watches signals. Each worker owns a libuv loop, one
 * SO_REUSEPORT socket per listener, a pool of fixed-size buffers, and its connections
 * outright: nothing on the data path is shared, so nothing on it is locked. The only
 * cross-thread state is each listener's connection count (one atomic per accept and
 * close) and the refcounted identity and policy snapshots.
 */
#ifndef ZT_PROXY_H
#define ZT_PROXY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "admin.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "uring.h"

/* One block holds four full TLS records: 64 KiB of plaintext read from the plain side
 * become four records written with one syscall, and up to 64 KiB of ciphertext are
 * read from the TLS side at once and leave as one write of plaintext. */
#define ZT_RECORD_MAX 16384                  /* plaintext per TLS record */
#define ZT_PLAIN_READ (4 * ZT_RECORD_MAX)
#define ZT_BLOCK_DATA (ZT_PLAIN_READ + 1024) /* + four records' headers and tags */
/* Per direction: stop reading the source above HIGH bytes queued toward the sink,
 * start again at or below LOW. A queued block counts at least a quarter of its size
 * (conn.c), so a busy connection's buffers are bounded by about 2 * (HIGH + a block)
 * with full blocks and 2 * (4 * HIGH + a block) with tiny ones, plus one receive
 * block; an idle one holds none. */
#define ZT_HIGH_WATER (256 * 1024)
#define ZT_LOW_WATER (64 * 1024)
/* wolfSSL's answers to the TLS peer (to KeyUpdate requests) queued while the peer
 * reads none of them: past this, the peer is flooding, and the connection closes. */
#define ZT_ANSWERS_MAX (16 * 1024)
/* Free blocks a worker keeps for reuse (2 MiB); the rest go back to the allocator. */
#define ZT_POOL_KEEP 32
/* With io_uring: a worker's provided receive buffers (a power of two), one block's
 * size each (2 MiB, resident only once used). */
#define ZT_URING_BUFS 32

typedef struct zt_server zt_server_t;
typedef struct zt_worker zt_worker_t;
typedef struct zt_conn zt_conn_t;

typedef struct zt_block {
  uv_write_t req;               /* in flight when queued on a stream */
  struct zt_block *next;        /* pool free list, or a connection's unsent chain */
  zt_conn_t *conn;
  uint32_t len;                 /* bytes of data used */
  uint8_t to_tls;               /* which side it is written to */
  char data[ZT_BLOCK_DATA];
} zt_block_t;

typedef struct {
  const zt_listener_conf_t *conf;
  size_t index;                 /* in the configuration, and in the metrics */
  atomic_uint active;           /* connections across all workers */
} zt_listener_t;

typedef struct {
  uv_tcp_t tcp;
  zt_listener_t *l;
  zt_worker_t *w;
  bool accept_paused;           /* out of memory: a connection waits in libuv, which
                                   polls the socket again once it is taken */
} zt_wlistener_t;

/* An outbound listener's last session ticket, with whom it was made: a resumed
 * handshake has no certificate, so the server's identity comes from here. Made under
 * one identity snapshot and used only with it, so rotation drops it. */
typedef struct {
  WOLFSSL_SESSION *sess;
  char *peer_id;
  int64_t not_after;
  char serial[65];
  unsigned char cert_sha256[32];
  zt_identity_t *ident;         /* owned reference */
} zt_ticket_cache_t;

struct zt_worker {
  zt_server_t *srv;
  unsigned index;
  uv_loop_t loop;
  zt_uring_t *uring;            /* NULL: established connections use libuv's epoll */
  bool on_ring;                 /* it has one (set before the worker reports started) */
  uv_thread_t thread;
  uv_async_t wake;              /* main → worker: drain */
  uv_timer_t drain_timer;
  uv_timer_t sweep_timer;       /* once a second: peers whose SVID expired */
  zt_wlistener_t *wl;           /* one per listener */
  size_t n_wl;
  zt_conn_t *conns;             /* doubly linked list of live connections */
  size_t n_conns;
  uint64_t next_conn_id;
  zt_block_t *pool;
  size_t pool_len;
  bool draining;
  int bind_error;               /* set before the worker reports it started */
  zt_worker_metrics_t metrics;  /* written by this worker only */
  zt_alog_queue_t *alog;        /* its access-log lines, or NULL when the log is off */
  zt_policy_t **policy;         /* per listener: the snapshot new decisions use (owned) */
  _Atomic(zt_policy_t *) *pending_policy;  /* main → worker: a newer snapshot */
  zt_identity_t *ident;         /* the identity new connections use (owned) */
  zt_ticket_cache_t *tickets;   /* per listener (outbound ones) */
  _Atomic(zt_identity_t *) pending_ident;  /* main → worker: a newer identity */
  bool loop_done;               /* its loop ended: wake no more (under srv->lock) */
  atomic_int dump_pending;      /* main → worker: list your connections */
  char *dump;                   /* worker → main: the list, as JSON objects */
};

struct zt_server {
  zt_config_t *cfg;
  zt_identity_t *ident;         /* in force (main thread's reference) */
  zt_policy_t **policies;       /* per listener, in force (main thread's references) */
  double *policy_loaded_at;     /* per listener, unix seconds */
  zt_listener_t *listeners;
  zt_worker_t *workers;
  unsigned n_workers;
  unsigned n_started;            /* worker threads started (their handles exist) */
  uv_sem_t started;
  atomic_int drain_requested;
  double start_time;            /* unix seconds */
  _Atomic uint64_t reloads[2][2];  /* [identity, policy][success, failure] */
  zt_admin_t *admin;            /* NULL when there is no admin section */
  uv_async_t dump_done;         /* worker → main: every list is in */
  uv_async_t worker_exit;       /* worker → main: one more worker has stopped */
  atomic_int dumps_left;
  /* A wake-up sent to a loop that has been closed aborts in libuv. The lock makes a
   * loop's end and the wake-ups sent to it one order: workers_left with the worker's
   * last word to main, each worker's loop_done with main's wake-ups to it, main_closed
   * with the workers' wake-ups to main. Control events only, never the data path. */
  uv_mutex_t lock;
  int workers_left;
  bool main_closed;
};

/* Ask every worker for its connections; zt_admin_connections_ready follows. */
void zt_server_request_dump(zt_server_t *srv);
/* Main thread: put a new snapshot in force (takes the caller's reference). Workers
 * pick it up on their next turn; established connections are re-checked. */
void zt_server_set_policy(zt_server_t *srv, size_t listener, zt_policy_t *p);
void zt_server_set_identity(zt_server_t *srv, zt_identity_t *id);

/* reload.c: watch the policy and identity files (fs events plus a periodic stat),
 * and reload what changed; SIGHUP reloads everything. */
typedef struct zt_reloader zt_reloader_t;
zt_reloader_t *zt_reload_start(zt_server_t *srv, uv_loop_t *loop);
void zt_reload_all(zt_reloader_t *r, const char *why);
void zt_reload_stop(zt_reloader_t *r);

int zt_server_run(zt_config_t *cfg, zt_identity_t *ident);

/* worker.c, for conn.c */
zt_block_t *zt_block_get(zt_worker_t *w);
void zt_block_put(zt_worker_t *w, zt_block_t *b);
void zt_worker_conn_gone(zt_worker_t *w);

/* conn.c, for worker.c */
/* 0, or -1 when there was no memory for the connection: it is left waiting. */
int zt_conn_accept(zt_wlistener_t *wl);
void zt_conn_close(zt_conn_t *c, const char *reason);
void zt_conn_close_all(zt_worker_t *w, const char *reason);
/* A completion of the worker's ring (arg is the worker). */
void zt_conn_uring_done(void *arg, uint64_t ud, int res, int buf);
char *zt_conn_dump(zt_worker_t *w);   /* this worker's connections, JSON objects */
/* Decide again, under the worker's current snapshot, every established connection of
 * listener li; close those it no longer allows (unless it keeps established ones). */
void zt_conn_recheck_policy(zt_worker_t *w, size_t li);
/* Close connections whose peer SVID has expired, and, after an identity change, those
 * whose peer the new CRLs revoke: no connection outlives the credential that admitted
 * it. */
void zt_conn_sweep(zt_worker_t *w, int identity_changed);
void zt_ticket_cache_clear(zt_ticket_cache_t *t);

#endif
