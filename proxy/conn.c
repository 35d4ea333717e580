/* proxy/conn.c: one proxied connection, from accept to its access-log record.
 *
 * A connection has a TLS side and a plain side: inbound, the accepted peer speaks mTLS
 * and the app is plain; outbound, the accepted app is plain and the upstream speaks
 * mTLS. wolfSSL runs over our I/O callbacks: ciphertext read from the TLS socket waits
 * in `rx` until wolfSSL pulls it (tls_recv), and what wolfSSL emits is appended to the
 * unsent chain (tls_send) and written by flush_tx, uv_try_write first.
 *
 * Nothing from the TLS peer is decrypted toward the app before the handshake has
 * verified the peer's SVID and, inbound, the policy has allowed it: until then the app
 * connection does not even exist.
 *
 * Once established, a connection's reads and writes go through the worker's io_uring
 * when it has one (uring.h): a receive stays armed on each side, ciphertext is taken
 * from the provided buffer it filled, and each side has a queue of blocks to send with
 * one send in flight. Without the ring (or if libuv still had bytes to write when the
 * handshake ended) the connection stays on libuv: uv_read_start and uv_try_write.
 *
 * Backpressure: above ZT_HIGH_WATER bytes queued toward one side, the other side's
 * reading stops; it resumes at ZT_LOW_WATER. Half-close travels as TLS close_notify
 * plus TCP FIN. Every end goes through zt_conn_close(), which writes the access-log
 * record once; the last handle's close callback frees everything.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "log.h"
#include "proxy.h"
#include "sbuf.h"
#include "bundle.h"
#include "svid.h"

typedef enum {
  ZT_CONN_HANDSHAKE,
  ZT_CONN_CONNECTING,
  ZT_CONN_STREAMING,
  ZT_CONN_CLOSING
} zt_conn_state_t;

struct zt_conn {
  zt_tls_peer_t peer;             /* first: it is the WOLFSSL's I/O context (tls.c) */
  zt_worker_t *w;
  zt_wlistener_t *wl;
  const zt_listener_conf_t *lc;
  zt_conn_t *prev, *next;         /* the worker's list */
  uv_tcp_t down, up;              /* accepted, and the one we connect */
  uv_timer_t timer;               /* handshake, connect or idle deadline */
  uv_connect_t connect_req;
  uv_shutdown_t shut_tls, shut_plain;
  WOLFSSL *ssl;                   /* owned; NULL until the TLS side exists */
  zt_identity_t *ident;           /* the snapshot this connection uses */
  zt_policy_t *policy;            /* inbound: the snapshot it was admitted under */
  zt_block_t *rx;                 /* ciphertext not yet taken by wolfSSL */
  uint32_t rx_off;
  zt_block_t *tx_head, *tx_tail;  /* wolfSSL output not yet handed to libuv */
  /* With io_uring (uring): per side, [0] TLS and [1] plain */
  int fd[2];
  uint8_t armed;                  /* bit per ZT_OP_*: in the kernel */
  int held_buf;                   /* provided buffer with ciphertext left, or -1 */
  uint32_t held_off, held_len;
  zt_block_t *recv_own[2];        /* our block for a receive when no buffer was left */
  zt_block_t *sq_head[2], *sq_tail[2]; /* blocks to send; the head is in flight */
  uint32_t sq_off[2];             /* bytes of the head already sent */
  size_t pending_tls, pending_plain; /* queued toward each side, as charge() counts */
  zt_conn_state_t state;
  bool inbound, up_open, counted, decided, sni_looked;
  uint32_t answers;               /* wolfSSL's answers to the peer since its queue was empty */
  bool uring;                     /* established on the worker's ring */
  bool ticket_kept;               /* outbound: this connection's ticket is cached */
  uint8_t ticket_looks;           /* outbound: pumps that looked for a new ticket */
  bool offered_ticket;            /* outbound: resumption was offered with ... */
  unsigned char offered_prefix[32]; /* ... the ticket that starts with these bytes */
  bool tls_paused, plain_paused;  /* reading stopped by backpressure */
  bool tls_eof;                   /* TCP FIN from the TLS peer */
  bool tls_closed;                /* no more plaintext will come from the TLS side */
  bool plain_eof;                 /* FIN from the plain side */
  bool tls_wshut, plain_wshut;    /* shutdown requested toward each side */
  bool tls_wshut_done, plain_wshut_done;
  int pending_closes;
  const char *close_reason, *tls_error, *tls_version, *cipher;
  zt_decision_t decision;
  zt_listener_metrics_t *m;       /* this worker's counters for this listener */
  uint64_t hs_start_ns;
  uint64_t id, bytes_in, bytes_out, start_ms, last_ms;
  char src[64];
  char sni[256];                  /* inbound: the server name the client asked for */
};

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

static uv_stream_t *tls_stream(zt_conn_t *c) {
  return (uv_stream_t *)(c->inbound ? &c->down : &c->up);
}
static uv_stream_t *plain_stream(zt_conn_t *c) {
  return (uv_stream_t *)(c->inbound ? &c->up : &c->down);
}
/* Plaintext that came out of the TLS side travels client→server inbound. */
static uint64_t *from_tls_bytes(zt_conn_t *c) {
  return c->inbound ? &c->bytes_in : &c->bytes_out;
}
static uint64_t *from_plain_bytes(zt_conn_t *c) {
  return c->inbound ? &c->bytes_out : &c->bytes_in;
}

static void on_tls_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_plain_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void pump_tls(zt_conn_t *c);
static void alloc_tls(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void alloc_plain(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_timer(uv_timer_t *t);
static void on_shutdown(uv_shutdown_t *req, int status);

/* --- the access log ---------------------------------------------------------------- */

/* The longest record: two SPIFFE IDs of 2,048 bytes, an SNI of 255 bytes and an ALPN
 * of 63 each escaped to 6 bytes apiece, names of 128, the target address, numbers and
 * keys: under 8 KiB, so a record is never cut. */
#define ACCESS_LINE_MAX 16384

static void access_log(zt_conn_t *c) {
  char line[ACCESS_LINE_MAX], ts[32], num[160];
  size_t n = 0;
  const size_t cap = sizeof(line);
  const char *decision = "none";
  uint64_t now = uv_now(&c->w->loop);

  if (c->w->alog == NULL) return;
  if (c->decided) decision = c->decision.action == ZT_ALLOW ? "allow" : "deny";
  zt_log_timestamp(ts);
#define LIT(s) do { size_t l_ = strlen(s); if (n + l_ < cap) { memcpy(line + n, s, l_); n += l_; } } while (0)
#define STR(k, v) do { LIT(",\"" k "\":"); n = zt_json_str(line, n, cap, (v)); } while (0)
  LIT("{\"ts\":");
  n = zt_json_str(line, n, cap, ts);
  STR("listener", c->lc->name);
  snprintf(num, sizeof(num), ",\"conn_id\":%llu", (unsigned long long)c->id);
  LIT(num);
  STR("src", c->src);
  STR("dst", c->lc->target.str);
  STR("peer_id", c->peer.peer_id);
  STR("local_id", c->ident->id);
  if (c->peer.peer_id && c->peer.not_after) {
    static const char hex[] = "0123456789abcdef";
    char sha[65], na[32];
    struct tm tm;
    time_t t = (time_t)c->peer.not_after;
    for (int i = 0; i < 32; i++) {
      sha[2 * i] = hex[c->peer.cert_sha256[i] >> 4];
      sha[2 * i + 1] = hex[c->peer.cert_sha256[i] & 15];
    }
    sha[64] = '\0';
    gmtime_r(&t, &tm);
    strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
    STR("peer_cert_sha256", sha);
    STR("peer_cert_serial", c->peer.serial);
    STR("peer_cert_not_after", na);
  } else {
    LIT(",\"peer_cert_sha256\":null,\"peer_cert_serial\":null,\"peer_cert_not_after\":null");
  }
  STR("tls_version", c->tls_version);
  STR("cipher", c->cipher);
  LIT(c->tls_version ? (c->peer.resumed || (c->ssl && wolfSSL_session_reused(c->ssl))
                            ? ",\"tls_resumed\":true" : ",\"tls_resumed\":false")
                     : ",\"tls_resumed\":null");
  {
    char *alpn = NULL;
    unsigned short alen = 0;
    if (c->tls_version && wolfSSL_ALPN_GetProtocol(c->ssl, &alpn, &alen) == WOLFSSL_SUCCESS &&
        alen > 0 && alen < 64) {
      char a[64];
      memcpy(a, alpn, alen);
      a[alen] = '\0';
      STR("alpn", a);
    } else {
      LIT(",\"alpn\":null");
    }
  }
  STR("sni", c->sni[0] ? c->sni : NULL);
  STR("decision", decision);
  STR("rule", c->decided ? c->decision.rule : NULL);
  LIT(c->decided ? (c->decision.enforced ? ",\"enforced\":true" : ",\"enforced\":false")
                 : ",\"enforced\":null");
  snprintf(num, sizeof(num), ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%llu",
           (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
           (unsigned long long)(now - c->start_ms));
  LIT(num);
  STR("close_reason", c->close_reason);
  STR("tls_error", c->tls_error);
  LIT("}\n");
#undef STR
#undef LIT
  zt_alog_push(c->w->alog, line, n);
}

/* --- closing ----------------------------------------------------------------------- */

void zt_ticket_cache_clear(zt_ticket_cache_t *t) {
  if (t->sess) wolfSSL_SESSION_free(t->sess);
  free(t->peer_id);
  zt_identity_release(t->ident);
  memset(t, 0, sizeof(*t));
}

/* The first 32 bytes of the session ticket ssl holds (our key name and a random IV:
 * enough to tell two tickets apart); false when it holds none. wolfSSL tells a
 * ticket's length only by copying it. */
static bool ticket_prefix(WOLFSSL *ssl, unsigned char out[32]) {
  unsigned char tk[1024];
  word32 len = sizeof(tk);
  if (wolfSSL_get_SessionTicket(ssl, tk, &len) != WOLFSSL_SUCCESS || len < 32) return false;
  memcpy(out, tk, 32);
  return true;
}

/* Outbound: keep the session ticket the server sent after the handshake (TLS 1.3
 * sends it as the first post-handshake message) for the next connection of this
 * listener, as soon as it has arrived: the next connection may start before this
 * one ends. */
static void keep_ticket(zt_conn_t *c) {
  zt_ticket_cache_t *t = &c->w->tickets[c->wl->l->index];
  WOLFSSL_SESSION *s;
  char *id;
  if (c->inbound || c->ticket_kept || !c->lc->resumption || c->peer.peer_id == NULL ||
      c->tls_error || c->ident != c->w->ident)
    return;
  {
    unsigned char now[32];
    if (!ticket_prefix(c->ssl, now)) return;
    /* A resumed session holds the ticket it offered, and already this connection's
     * resumption secret, until the server's new ticket arrives: caching it in between
     * would pair the old ticket with the new secret. */
    if (c->offered_ticket && memcmp(now, c->offered_prefix, 32) == 0) return;
  }
  if ((s = wolfSSL_get1_session(c->ssl)) == NULL) return;
  if ((id = strdup(c->peer.peer_id)) == NULL) {
    wolfSSL_SESSION_free(s);
    return;
  }
  c->ticket_kept = true;
  zt_ticket_cache_clear(t);
  t->sess = s;
  t->peer_id = id;
  t->not_after = c->peer.not_after;
  memcpy(t->serial, c->peer.serial, sizeof(t->serial));
  memcpy(t->cert_sha256, c->peer.cert_sha256, sizeof(t->cert_sha256));
  t->ident = zt_identity_retain(c->ident);
}

static void put_chain(zt_worker_t *w, zt_block_t *b) {
  while (b) {
    zt_block_t *next = b->next;
    zt_block_put(w, b);
    b = next;
  }
}

static void free_conn(zt_conn_t *c) {
  zt_worker_t *w = c->w;
  if (c->rx) zt_block_put(w, c->rx);
  put_chain(w, c->tx_head);
  for (int side = 0; side < 2; side++) {
    put_chain(w, c->sq_head[side]);
    if (c->recv_own[side]) zt_block_put(w, c->recv_own[side]);
  }
  if (c->held_buf >= 0) zt_uring_buf_put(w->uring, c->held_buf);
  if (c->ssl) wolfSSL_free(c->ssl);
  zt_tls_peer_free(&c->peer);
  zt_policy_release(c->policy);
  zt_identity_release(c->ident);
  if (c->counted) atomic_fetch_sub_explicit(&c->wl->l->active, 1, memory_order_relaxed);
  zt_count(&c->m->closed, 1);
  if (c->prev) c->prev->next = c->next;
  else w->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  w->n_conns--;
  free(c);
  zt_worker_conn_gone(w);
}

/* Freed when its handles are closed and the ring has no operation of it left. */
static void on_handle_closed(uv_handle_t *h) {
  zt_conn_t *c = h->data;
  if (--c->pending_closes == 0 && c->armed == 0) free_conn(c);
}

static uint64_t op_ud(zt_conn_t *c, int op) { return (uint64_t)(uintptr_t)c | (unsigned)op; }

/* The app learns how its stream ended: once bytes flow, a FIN only after a clean end
 * (both ways done, or idle), otherwise a reset, so that a stream cut short (a reset or
 * a FIN without close_notify from the TLS peer, a record that does not authenticate,
 * a revocation) is never taken for a whole one. A connection refused before that
 * (a failed handshake or connect, a limit) just closes. */
static void reset_plain_if_aborted(zt_conn_t *c, const char *reason) {
  uv_os_fd_t fd;
  struct linger l = {1, 0};
  if (c->state != ZT_CONN_STREAMING || strcmp(reason, "eof") == 0 ||
      strcmp(reason, "idle_timeout") == 0)
    return;
  if (uv_fileno((uv_handle_t *)plain_stream(c), &fd) == 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

void zt_conn_close(zt_conn_t *c, const char *reason) {
  if (c->state == ZT_CONN_CLOSING) return;
  reset_plain_if_aborted(c, reason);
  c->state = ZT_CONN_CLOSING;
  c->close_reason = reason;
  access_log(c);
  zt_count(&c->m->conns[!c->decided ? ZT_DEC_NONE
                        : c->decision.action == ZT_ALLOW ? ZT_DEC_ALLOW : ZT_DEC_DENY], 1);
  zt_histogram_observe(&c->m->duration, zt_duration_buckets,
                       (uv_now(&c->w->loop) - c->start_ms) * 1000);
  if (c->tls_error) zt_count(&c->m->hs_failures[zt_tls_reason_index(c->tls_error)], 1);
  c->pending_closes = 2 + c->up_open;
  if (c->uring) {
    /* Operations queued this turn name the sockets by fd number: hand them to the
     * kernel (which then holds the sockets themselves) before libuv closes the fds,
     * whose numbers the next accept may reuse. A cancel that cannot be queued is
     * replaced by a shutdown, which ends the receives and sends as well. */
    bool cancelled = true;
    for (int op = 0; op < 4; op++)
      if ((c->armed & (1u << op)) && zt_uring_cancel(c->w->uring, op_ud(c, op)) < 0)
        cancelled = false;
    if (zt_uring_submit(c->w->uring) < 0 || !cancelled) {
      shutdown(c->fd[0], SHUT_RDWR);
      shutdown(c->fd[1], SHUT_RDWR);
    }
  }
  uv_close((uv_handle_t *)&c->down, on_handle_closed);
  if (c->up_open) uv_close((uv_handle_t *)&c->up, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

char *zt_conn_dump(zt_worker_t *w) {
  static const char *const states[] = {"handshake", "connecting", "streaming", "closing"};
  zt_sbuf_t b = {0};
  uint64_t now = uv_now(&w->loop);
  for (zt_conn_t *c = w->conns; c; c = c->next) {
    zt_sbuf_printf(&b, "%s{\"conn_id\":%llu,\"listener\":", c == w->conns ? "" : ",",
                   (unsigned long long)c->id);
    zt_sbuf_json(&b, c->lc->name);
    zt_sbuf_printf(&b, ",\"src\":");
    zt_sbuf_json(&b, c->src);
    zt_sbuf_printf(&b, ",\"dst\":");
    zt_sbuf_json(&b, c->lc->target.str);
    zt_sbuf_printf(&b, ",\"peer_id\":");
    zt_sbuf_json(&b, c->peer.peer_id);
    zt_sbuf_printf(&b, ",\"state\":\"%s\",\"io_uring\":%s,\"age_ms\":%llu,"
                       "\"bytes_in\":%llu,\"bytes_out\":%llu}", states[c->state],
                   c->uring ? "true" : "false", (unsigned long long)(now - c->start_ms),
                   (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out);
  }
  return zt_sbuf_take(&b, NULL);
}

void zt_conn_recheck_policy(zt_worker_t *w, size_t li) {
  zt_policy_t *p = w->policy[li];
  for (zt_conn_t *c = w->conns; c; c = c->next) {
    zt_request_t req;
    zt_decision_t d;
    if (c->wl->l->index != li || !c->decided || c->state == ZT_CONN_CLOSING ||
        c->policy == p)
      continue;
    req = (zt_request_t){c->peer.peer_id, strlen(c->peer.peer_id), c->lc->target.port,
                         NULL, NULL};
    d = zt_policy_decide_nocount(p, &req);
    if (d.action == ZT_DENY && d.enforced) {
      if (zt_policy_keep_established(p)) continue;   /* it stays under its old rule */
      zt_warn("%s: conn %llu from %s: %s is no longer allowed (rule %s): closing",
              c->lc->name, (unsigned long long)c->id, c->src, c->peer.peer_id, d.rule);
      zt_policy_release(c->policy);
      c->policy = zt_policy_retain(p);
      c->decision = d;
      zt_count(&c->m->policy_revoked, 1);
      zt_conn_close(c, "policy_revoked");
      continue;
    }
    /* Still allowed (or kept): it now lives under the new snapshot and rule. */
    zt_policy_release(c->policy);
    c->policy = zt_policy_retain(p);
    c->decision = d;
  }
}

void zt_conn_sweep(zt_worker_t *w, int identity_changed) {
  int64_t now = (int64_t)time(NULL);
  const char *why;
  for (zt_conn_t *c = w->conns; c; c = c->next) {
    if (c->state == ZT_CONN_CLOSING || c->peer.peer_id == NULL || c->tls_error) continue;
    if (c->peer.not_after && now >= c->peer.not_after) {
      zt_warn("%s: conn %llu: the SVID of %s expired: closing", c->lc->name,
              (unsigned long long)c->id, c->peer.peer_id);
      zt_conn_close(c, "peer_expired");
    } else if (identity_changed && (why = zt_tls_peer_reverify(w->ident, &c->peer))) {
      zt_warn("%s: conn %llu: %s (serial %s) no longer verifies: %s: closing", c->lc->name,
              (unsigned long long)c->id, c->peer.peer_id, c->peer.serial,
              zt_svid_reason_text(why));
      zt_conn_close(c, strcmp(why, "revoked") == 0 ? "peer_revoked" : "peer_untrusted");
    }
  }
}

void zt_conn_close_all(zt_worker_t *w, const char *reason) {
  /* zt_conn_close frees nothing before the close callbacks: the list stays intact. */
  for (zt_conn_t *c = w->conns; c; c = c->next) zt_conn_close(c, reason);
}

static void maybe_finish(zt_conn_t *c) {
  if (c->tls_wshut_done && c->plain_wshut_done && c->pending_tls == 0 &&
      c->pending_plain == 0)
    zt_conn_close(c, "eof");
}

/* --- writing ----------------------------------------------------------------------- */

static void arm_plain(zt_conn_t *c);
static void shut_write(zt_conn_t *c, int to_tls);

/* What a queued block counts toward backpressure: its bytes, but at least a quarter
 * of a block, so that a trickle of tiny records cannot queue thousands of mostly empty
 * blocks before reading stops (ZT_HIGH_WATER / ZT_MIN_CHARGE + 1 blocks at most). */
#define ZT_MIN_CHARGE (ZT_BLOCK_DATA / 4)
static size_t charge(const zt_block_t *b) {
  return b->len > ZT_MIN_CHARGE ? b->len : ZT_MIN_CHARGE;
}

/* Bytes toward one side have left: resume reading what backpressure stopped, and
 * finish a half-close that waited for them. */
static void wrote(zt_conn_t *c, int to_tls) {
  if (to_tls && c->plain_paused && c->pending_tls <= ZT_LOW_WATER && !c->plain_eof) {
    c->plain_paused = false;
    if (c->uring) arm_plain(c);
    else uv_read_start(plain_stream(c), alloc_plain, on_plain_read);
    if (c->state == ZT_CONN_CLOSING) return;
  }
  if (!to_tls && c->tls_paused && c->pending_plain <= ZT_LOW_WATER) {
    c->tls_paused = false;
    if (!c->uring && !c->tls_eof) uv_read_start(tls_stream(c), alloc_tls, on_tls_read);
    pump_tls(c);                    /* on the ring, it arms the receive again */
    if (c->state == ZT_CONN_CLOSING) return;
  }
  /* On the ring a half-close waits for its side's queue: shut_write sees to that. */
  if (c->uring && (to_tls ? c->tls_wshut && !c->tls_wshut_done
                          : c->plain_wshut && !c->plain_wshut_done))
    shut_write(c, to_tls);
  else
    maybe_finish(c);
}

static void on_write(uv_write_t *req, int status) {
  zt_block_t *b = container_of(req, zt_block_t, req);
  zt_conn_t *c = b->conn;
  int to_tls = b->to_tls;

  if (to_tls) c->pending_tls -= charge(b);
  else c->pending_plain -= charge(b);
  if (c->pending_tls == 0) c->answers = 0;
  zt_block_put(c->w, b);
  if (c->state == ZT_CONN_CLOSING) return;
  if (status < 0) {
    zt_conn_close(c, "reset");
    return;
  }
  wrote(c, to_tls);
}

/* On the ring: send the head of a side's queue (from where a short send stopped). */
static int send_head(zt_conn_t *c, int side) {
  zt_block_t *b = c->sq_head[side];
  int r = zt_uring_send(c->w->uring, c->fd[side], b->data + c->sq_off[side],
                        b->len - c->sq_off[side], op_ud(c, ZT_OP_SEND_TLS + side));
  if (r == 0) c->armed |= 1u << (ZT_OP_SEND_TLS + side);
  return r;
}

static void send_done(zt_conn_t *c, int side, int res) {
  zt_block_t *b = c->sq_head[side];
  if (res < 0) {
    zt_conn_close(c, "reset");
    return;
  }
  c->sq_off[side] += (uint32_t)res;
  if (c->sq_off[side] < b->len) {
    if (send_head(c, side)) zt_conn_close(c, "error");
    return;
  }
  c->sq_off[side] = 0;
  if ((c->sq_head[side] = b->next) == NULL) c->sq_tail[side] = NULL;
  if (side == 0) c->pending_tls -= charge(b);
  else c->pending_plain -= charge(b);
  if (c->pending_tls == 0) c->answers = 0;
  zt_block_put(c->w, b);
  if (c->sq_head[side] && send_head(c, side)) {
    zt_conn_close(c, "error");
    return;
  }
  wrote(c, side == 0);
}

/* No more bytes toward one side: TCP FIN, once everything queued for it has left. On
 * the ring that is a shutdown() of our own; libuv's uv_shutdown waits for its writes. */
static void shut_write(zt_conn_t *c, int to_tls) {
  if (!c->uring) {
    if (to_tls) uv_shutdown(&c->shut_tls, tls_stream(c), on_shutdown);
    else uv_shutdown(&c->shut_plain, plain_stream(c), on_shutdown);
    return;
  }
  if (c->sq_head[!to_tls]) return;  /* wrote() comes back when the queue is empty */
  if (shutdown(c->fd[!to_tls], SHUT_WR) < 0 && errno != ENOTCONN) {
    zt_conn_close(c, "reset");
    return;
  }
  if (to_tls) c->tls_wshut_done = true;
  else c->plain_wshut_done = true;
  maybe_finish(c);
}

/* Write block b (ownership passes) toward one side: uv_try_write when nothing is
 * queued, so the common case costs one syscall and no request. */
static int write_block(zt_conn_t *c, zt_block_t *b, int to_tls) {
  uv_stream_t *s = to_tls ? tls_stream(c) : plain_stream(c);
  size_t *pending = to_tls ? &c->pending_tls : &c->pending_plain;
  uv_buf_t buf = uv_buf_init(b->data, b->len);
  int r;

  if (c->uring) {
    int side = !to_tls;
    b->next = NULL;
    if (c->sq_tail[side]) c->sq_tail[side]->next = b;
    else c->sq_head[side] = b;
    c->sq_tail[side] = b;
    *pending += charge(b);
    return c->sq_head[side] == b ? send_head(c, side) : 0;
  }
  if (*pending == 0) {
    r = uv_try_write(s, &buf, 1);
    if (r == (int)b->len) {
      zt_block_put(c->w, b);
      return 0;
    }
    if (r > 0) {
      buf = uv_buf_init(b->data + r, b->len - (unsigned)r);
      b->len -= (uint32_t)r;
    } else if (r != UV_EAGAIN) {
      zt_block_put(c->w, b);
      return r;
    }
  }
  b->conn = c;
  b->to_tls = (uint8_t)to_tls;
  r = uv_write(&b->req, s, &buf, 1, on_write);
  if (r < 0) {
    zt_block_put(c->w, b);
    return r;
  }
  *pending += charge(b);
  return 0;
}

static int flush_tx(zt_conn_t *c) {
  zt_block_t *b;
  while ((b = c->tx_head)) {
    c->tx_head = b->next;
    if (c->tx_head == NULL) c->tx_tail = NULL;
    if (write_block(c, b, 1)) {
      zt_conn_close(c, "reset");
      return -1;
    }
  }
  return 0;
}

/* --- wolfSSL I/O callbacks ---------------------------------------------------------- */

/* Up to sz bytes of src[*off, len) into dst. */
static int take(char *dst, int sz, const char *src, uint32_t *off, uint32_t len) {
  uint32_t avail = len - *off;
  if ((uint32_t)sz > avail) sz = (int)avail;
  memcpy(dst, src + *off, (size_t)sz);
  *off += (uint32_t)sz;
  return sz;
}

/* Ciphertext comes from rx, then from the provided buffer the ring filled. */
static int tls_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  zt_conn_t *c = ctx;
  (void)ssl;
  if (c->rx && c->rx_off < c->rx->len)
    return take(buf, sz, c->rx->data, &c->rx_off, c->rx->len);
  if (c->held_buf >= 0 && c->held_off < c->held_len)
    return take(buf, sz, zt_uring_buf(c->w->uring, c->held_buf), &c->held_off, c->held_len);
  return c->tls_eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
}

static int tls_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  zt_conn_t *c = ctx;
  int left = sz;
  (void)ssl;
  if (c->state == ZT_CONN_CLOSING) return WOLFSSL_CBIO_ERR_CONN_CLOSE;
  /* After our close_notify no record may follow (and the TLS side is shut for
   * writing): what wolfSSL still has to say, an answer to the peer's KeyUpdate, say,
   * goes nowhere, and the peer may go on sending. */
  if (c->tls_wshut) return sz;
  while (left > 0) {
    zt_block_t *b = c->tx_tail;
    uint32_t room, n;
    if (b == NULL || b->len == ZT_BLOCK_DATA) {
      b = zt_block_get(c->w);
      if (b == NULL) return WOLFSSL_CBIO_ERR_GENERAL;
      b->len = 0;
      b->next = NULL;
      if (c->tx_tail) c->tx_tail->next = b;
      else c->tx_head = b;
      c->tx_tail = b;
    }
    room = ZT_BLOCK_DATA - b->len;
    n = (uint32_t)left < room ? (uint32_t)left : room;
    memcpy(b->data + b->len, buf, n);
    b->len += n;
    buf += n;
    left -= (int)n;
  }
  return sz;
}

/* --- reading ------------------------------------------------------------------------- */

static void release_rx_if_empty(zt_conn_t *c) {
  if (c->rx && c->rx_off == c->rx->len) {
    zt_block_put(c->w, c->rx);
    c->rx = NULL;
    c->rx_off = 0;
  }
  if (c->held_buf >= 0 && c->held_off == c->held_len) {
    zt_uring_buf_put(c->w->uring, c->held_buf);
    c->held_buf = -1;
  }
}

/* On the ring: arm a side's receive, into a provided buffer unless recv_own holds the
 * block to use (the buffers had run out). The TLS side is armed only once the last
 * ciphertext is all taken, so that it lands in an empty rx. */
static void arm_recv(zt_conn_t *c, int side) {
  zt_block_t *own = c->recv_own[side];
  if (c->armed & (1u << side)) return;
  if (zt_uring_recv(c->w->uring, c->fd[side], own ? own->data : NULL,
                    side == 0 ? ZT_BLOCK_DATA : ZT_PLAIN_READ, op_ud(c, side)) < 0) {
    zt_conn_close(c, "error");
    return;
  }
  c->armed |= 1u << side;
}

static void arm_tls(zt_conn_t *c) {
  if (!c->tls_paused && !c->tls_eof && !c->tls_closed && c->rx == NULL && c->held_buf < 0)
    arm_recv(c, ZT_OP_RECV_TLS);
}

static void arm_plain(zt_conn_t *c) {
  if (!c->plain_paused && !c->plain_eof) arm_recv(c, ZT_OP_RECV_PLAIN);
}

static void alloc_tls(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  zt_conn_t *c = h->data;
  (void)suggested;
  if (c->rx == NULL) {
    if ((c->rx = zt_block_get(c->w)) == NULL) {
      *buf = uv_buf_init(NULL, 0);
      return;
    }
    c->rx->len = 0;
    c->rx_off = 0;
  } else if (c->rx_off > 0 && ZT_BLOCK_DATA - c->rx->len < 4096) {
    memmove(c->rx->data, c->rx->data + c->rx_off, c->rx->len - c->rx_off);
    c->rx->len -= c->rx_off;
    c->rx_off = 0;
  }
  *buf = uv_buf_init(c->rx->data + c->rx->len, ZT_BLOCK_DATA - c->rx->len);
}

static void alloc_plain(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  zt_conn_t *c = h->data;
  zt_block_t *b = zt_block_get(c->w);
  (void)suggested;
  /* Whole records: wolfSSL_write turns this into four full records at most. */
  *buf = b ? uv_buf_init(b->data, ZT_PLAIN_READ) : uv_buf_init(NULL, 0);
}

static void start_idle_timer(zt_conn_t *c);

static void handshake_failed(zt_conn_t *c, int ret) {
  int e = wolfSSL_get_error(c->ssl, ret);
  char detail[96] = "";
  c->tls_error = zt_tls_failure_reason(c->ssl, ret, &c->peer);
  if (strcmp(c->tls_error, "tls_error") == 0)   /* say what the TLS library said */
    snprintf(detail, sizeof(detail), ", wolfSSL error %d: %s", e,
             wolfSSL_ERR_reason_error_string((unsigned long)e));
  zt_warn("%s: conn %llu from %s: TLS handshake refused%s%s: %s (%s%s)", c->lc->name,
          (unsigned long long)c->id, c->src, c->peer.peer_id ? " for " : "",
          c->peer.peer_id ? c->peer.peer_id : "", zt_svid_reason_text(c->tls_error),
          c->tls_error, detail);
  zt_conn_close(c, "handshake_failed");
}

static void on_up_connect(uv_connect_t *req, int status);

static void connect_up(zt_conn_t *c) {
  int r;
  c->state = ZT_CONN_CONNECTING;
  uv_tcp_init(&c->w->loop, &c->up);
  c->up.data = c;
  c->up_open = true;
  r = uv_tcp_connect(&c->connect_req, &c->up, (const struct sockaddr *)&c->lc->target.ss,
                     on_up_connect);
  if (r < 0) {
    zt_warn("%s: conn %llu: cannot connect to %s: %s", c->lc->name,
            (unsigned long long)c->id, c->lc->target.str, uv_strerror(r));
    zt_conn_close(c, "upstream_connect_failed");
    return;
  }
  uv_timer_start(&c->timer, on_timer, c->lc->connect_timeout_ms, 0);
}

/* Both sides are up (outbound: the handshake is done; inbound: the app connection
 * too): from now on bytes flow both ways, through the worker's ring when it has one
 * and libuv has nothing left to write. */
static void start_streaming(zt_conn_t *c) {
  c->state = ZT_CONN_STREAMING;
  start_idle_timer(c);
  if (c->w->uring && c->pending_tls == 0 && c->pending_plain == 0) {
    uv_os_fd_t fd;
    uv_read_stop(tls_stream(c));
    c->uring = true;
    uv_fileno((uv_handle_t *)tls_stream(c), &fd);
    c->fd[0] = fd;
    uv_fileno((uv_handle_t *)plain_stream(c), &fd);
    c->fd[1] = fd;
    /* libuv leaves a stopped watcher's fd in its epoll set until an event for it
     * arrives (a connected socket is writable at once): take both out now rather than
     * wake the loop for nothing. libuv adds them again if it ever watches them. */
    epoll_ctl(uv_backend_fd(&c->w->loop), EPOLL_CTL_DEL, c->fd[0], NULL);
    epoll_ctl(uv_backend_fd(&c->w->loop), EPOLL_CTL_DEL, c->fd[1], NULL);
    arm_plain(c);
    if (c->state == ZT_CONN_STREAMING) pump_tls(c);  /* what came with the handshake */
    return;
  }
  uv_read_start(plain_stream(c), alloc_plain, on_plain_read);
  if (c->inbound && !c->tls_eof) uv_read_start(tls_stream(c), alloc_tls, on_tls_read);
  pump_tls(c);                      /* what arrived with the handshake */
}

static void handshake_done(zt_conn_t *c) {
  c->tls_version = wolfSSL_get_version(c->ssl);
  c->cipher = wolfSSL_get_cipher_name(c->ssl);
  /* Resumed: no certificate came, and the peer is who the ticket says (inbound: the
   * one we issued, now that wolfSSL has checked its binder; outbound: the server the
   * ticket we offered came from, checked against expect_server then, on this
   * listener). */
  if (wolfSSL_session_reused(c->ssl) && c->peer.peer_id == NULL)
    zt_tls_peer_resume(&c->peer);
  if (c->peer.peer_id == NULL) {     /* the verify callback always sets it */
    c->tls_error = "tls_error";
    zt_conn_close(c, "handshake_failed");
    return;
  }
  if (c->ident != c->w->ident) {
    /* The identity (bundles, CRLs) changed during the handshake: the peer must pass
     * the one in force now, as a peer that started a moment later would. */
    const char *why = zt_tls_peer_reverify(c->w->ident, &c->peer);
    if (why) {
      c->tls_error = why;
      zt_warn("%s: conn %llu from %s: %s does not verify under the new identity: %s",
              c->lc->name, (unsigned long long)c->id, c->src, c->peer.peer_id,
              zt_svid_reason_text(why));
      zt_conn_close(c, "handshake_failed");
      return;
    }
  }
  /* A handshake counts once the peer has passed every check: one refused above counts
   * as a failure only. */
  zt_count(&c->m->handshakes[!c->inbound][wolfSSL_session_reused(c->ssl) != 0], 1);
  zt_histogram_observe(&c->m->handshake, zt_handshake_buckets,
                       (uv_hrtime() - c->hs_start_ns) / 1000);
  if (zt_bundle_set_crl_count(c->w->ident->set->bundles) == 0)
    zt_tls_peer_drop_chain(&c->peer);   /* nothing left to re-check it against */
  if (!c->inbound) {
    start_streaming(c);
    return;
  }
  {
    zt_request_t req = {c->peer.peer_id, strlen(c->peer.peer_id), c->lc->target.port,
                        NULL, NULL};
    /* The snapshot in force now, not the one at accept: a reload during the
     * handshake applies to this connection too. */
    c->policy = zt_policy_retain(c->w->policy[c->wl->l->index]);
    c->decision = zt_policy_decide(c->policy, &req);
    c->decided = true;
    zt_metrics_series_count(&c->w->metrics.rules, (uint32_t)c->wl->l->index,
                            c->decision.rule, c->decision.action == ZT_DENY);
    zt_metrics_series_count(&c->w->metrics.peers, (uint32_t)c->wl->l->index,
                            c->peer.peer_id, c->decision.action == ZT_DENY);
  }
  if (c->decision.action == ZT_DENY) {
    zt_warn("%s: conn %llu from %s: %s to port %u denied by rule %s%s", c->lc->name,
            (unsigned long long)c->id, c->src, c->peer.peer_id, c->lc->target.port,
            c->decision.rule, c->decision.enforced ? "" : " (audit: let through)");
    if (c->decision.enforced) {
      zt_conn_close(c, "peer_not_allowed");
      return;
    }
  }
  /* Hold the peer's bytes (in wolfSSL and rx) until the app connection is up. */
  uv_read_stop(tls_stream(c));
  connect_up(c);
}

static void drive_handshake(zt_conn_t *c) {
  int r, e;
  if (c->inbound && !c->sni_looked && c->rx && c->rx_off == 0) {
    /* The name the client asked for (access log), read from its ClientHello before
     * wolfSSL takes it in: any name is served. One look, at the first bytes. */
    word32 n = sizeof(c->sni) - 1;
    c->sni_looked = true;
    if (wolfSSL_SNI_GetFromBuffer((const unsigned char *)c->rx->data, c->rx->len,
                                  WOLFSSL_SNI_HOST_NAME, (unsigned char *)c->sni,
                                  &n) == WOLFSSL_SUCCESS && n < sizeof(c->sni))
      c->sni[n] = '\0';
    else
      c->sni[0] = '\0';
  }
  r = c->inbound ? wolfSSL_accept(c->ssl) : wolfSSL_connect(c->ssl);
  if (flush_tx(c)) return;
  if (r == WOLFSSL_SUCCESS) {
    handshake_done(c);
    return;
  }
  e = wolfSSL_get_error(c->ssl, r);
  if ((e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) && !c->tls_eof)
    return;
  if (c->tls_eof && c->peer.tls_error == NULL) {
    /* A TCP probe or a peer that gave up: not worth a warning. */
    c->tls_error = "closed_during_handshake";
    zt_debug("%s: conn %llu from %s: closed during the TLS handshake", c->lc->name,
             (unsigned long long)c->id, c->src);
    zt_conn_close(c, "handshake_failed");
    return;
  }
  handshake_failed(c, r);
}

/* Decrypt what the TLS side has and pass it to the plain side, until wolfSSL wants
 * more input or the plain side has enough queued. Records are decrypted into one
 * block until it has no room for another, so that several records leave with one
 * write. */
static void pump_tls(zt_conn_t *c) {
  zt_block_t *b = NULL;
  while (!c->tls_closed && c->pending_plain <= ZT_HIGH_WATER) {
    int r, e;
    if (b == NULL && (b = zt_block_get(c->w)) == NULL) {
      zt_conn_close(c, "error");
      return;
    }
    r = wolfSSL_read(c->ssl, b->data + b->len, (int)(ZT_BLOCK_DATA - b->len));
    if (r > 0) {
      b->len += (uint32_t)r;
      *from_tls_bytes(c) += (uint64_t)r;
      zt_count(c->inbound ? &c->m->bytes_in : &c->m->bytes_out, (uint64_t)r);
      if (ZT_BLOCK_DATA - b->len < ZT_RECORD_MAX) {
        int w = write_block(c, b, 0);
        b = NULL;
        if (w) {
          zt_conn_close(c, "reset");
          return;
        }
      }
      continue;
    }
    e = wolfSSL_get_error(c->ssl, r);
    if (e == WOLFSSL_ERROR_WANT_READ && !c->tls_eof) break;
    if (e == WOLFSSL_ERROR_ZERO_RETURN) {
      c->tls_closed = true;         /* close_notify */
      break;
    }
    if (c->tls_eof) {
      /* A FIN without close_notify: whoever sent it (or forged it), the stream may
       * have been cut short, and the app gets a reset, not an end it would take for
       * the whole stream (what is still queued toward it is dropped with it). */
      zt_block_put(c->w, b);
      zt_conn_close(c, "truncated");
      return;
    }
    zt_block_put(c->w, b);
    zt_warn("%s: conn %llu: TLS error: %d", c->lc->name, (unsigned long long)c->id, e);
    zt_conn_close(c, "error");
    return;
  }
  if (b != NULL && b->len > 0) {
    if (write_block(c, b, 0)) {
      zt_conn_close(c, "reset");
      return;
    }
  } else if (b != NULL) {
    zt_block_put(c->w, b);
  }
  if (c->tx_head) {
    /* wolfSSL answered the peer while reading it: a KeyUpdate that asks for one. The
     * answers count until the queue toward the peer next runs dry; a peer that keeps
     * asking and never reads would have them pile up without end (stopping to read
     * it instead would tie the two directions together, and two proxies each waiting
     * for the other to read would stall for good). */
    for (zt_block_t *t = c->tx_head; t; t = t->next) c->answers += t->len;
    if (c->answers > ZT_ANSWERS_MAX) {
      zt_warn("%s: conn %llu from %s: %u bytes of answers to KeyUpdate requests the "
              "peer does not read: closing", c->lc->name, (unsigned long long)c->id,
              c->src, c->answers);
      zt_conn_close(c, "error");
      return;
    }
  }
  if (flush_tx(c)) return;
  if (c->pending_tls == 0) c->answers = 0;   /* written at once */
  /* The server's ticket is its first post-handshake message: look for it in the
   * first few pumps only, so that a server that sends none costs nothing later. */
  if (!c->ticket_kept && c->ticket_looks < 8) {
    c->ticket_looks++;
    keep_ticket(c);
  }
  if (c->tls_closed) {              /* bytes after close_notify go nowhere */
    if (c->rx) c->rx_off = c->rx->len;
    c->held_off = c->held_len;
  }
  release_rx_if_empty(c);
  if (c->pending_plain > ZT_HIGH_WATER && !c->tls_paused) {
    c->tls_paused = true;
    if (!c->uring) uv_read_stop(tls_stream(c));
  }
  if (c->tls_closed && !c->plain_wshut) {
    c->plain_wshut = true;
    shut_write(c, 0);
    if (c->state == ZT_CONN_CLOSING) return;
  }
  if (c->uring) arm_tls(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  zt_conn_t *c = req->handle->data;
  if (c->state == ZT_CONN_CLOSING) return;
  if (status < 0) {
    zt_conn_close(c, "reset");
    return;
  }
  if (req == &c->shut_tls) c->tls_wshut_done = true;
  else c->plain_wshut_done = true;
  maybe_finish(c);
}

static void on_tls_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  zt_conn_t *c = s->data;
  (void)buf;
  if (nread > 0) {
    c->rx->len += (uint32_t)nread;
    c->last_ms = uv_now(&c->w->loop);
  } else if (nread == UV_EOF) {
    c->tls_eof = true;
    uv_read_stop(s);
  } else if (nread == UV_ENOBUFS) {
    if (c->tls_error == NULL && c->state == ZT_CONN_HANDSHAKE) c->tls_error = "tls_error";
    zt_conn_close(c, c->state == ZT_CONN_HANDSHAKE ? "handshake_failed" : "error");
    return;
  } else if (nread < 0) {
    /* tls_error first: the close writes the access log and counts the failure */
    if (c->tls_error == NULL && c->state == ZT_CONN_HANDSHAKE) c->tls_error = "reset";
    zt_conn_close(c, c->state == ZT_CONN_HANDSHAKE ? "handshake_failed" : "reset");
    return;
  }
  if (c->state == ZT_CONN_HANDSHAKE) drive_handshake(c);
  else if (c->state == ZT_CONN_STREAMING) pump_tls(c);
  if (c->state != ZT_CONN_CLOSING) release_rx_if_empty(c);
}

/* Plaintext from the plain side, encrypted toward the TLS side. Sets plain_paused
 * when enough is queued there; -1 when the connection closed. */
static int from_plain(zt_conn_t *c, const char *data, int n) {
  int r = wolfSSL_write(c->ssl, data, n);
  c->last_ms = uv_now(&c->w->loop);
  if (r != n) {
    zt_warn("%s: conn %llu: TLS write failed: %d", c->lc->name,
            (unsigned long long)c->id, wolfSSL_get_error(c->ssl, r));
    zt_conn_close(c, "error");
    return -1;
  }
  *from_plain_bytes(c) += (uint64_t)n;
  zt_count(c->inbound ? &c->m->bytes_out : &c->m->bytes_in, (uint64_t)n);
  if (flush_tx(c)) return -1;
  if (c->pending_tls > ZT_HIGH_WATER) c->plain_paused = true;
  return 0;
}

/* The plain side is done sending: close_notify, then FIN, toward the TLS peer. */
static void plain_ended(zt_conn_t *c) {
  c->plain_eof = true;
  wolfSSL_shutdown(c->ssl);
  if (flush_tx(c)) return;
  c->tls_wshut = true;
  shut_write(c, 1);
}

static void on_plain_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  zt_conn_t *c = s->data;
  zt_block_t *b = buf->base ? container_of(buf->base, zt_block_t, data) : NULL;

  if (nread > 0) {
    int r = from_plain(c, b->data, (int)nread);
    zt_block_put(c->w, b);
    if (r == 0 && c->plain_paused) uv_read_stop(s);
    return;
  }
  if (b) zt_block_put(c->w, b);
  if (nread == 0) return;
  if (nread != UV_EOF) {
    zt_conn_close(c, "reset");
    return;
  }
  uv_read_stop(s);
  plain_ended(c);
}

/* --- the ring's completions -------------------------------------------------------- */

/* A receive found no provided buffer left: arm it again into a block of our own. */
static void recv_starved(zt_conn_t *c, int side) {
  zt_count(&c->w->metrics.uring_starved, 1);
  if (c->recv_own[side] == NULL && (c->recv_own[side] = zt_block_get(c->w)) == NULL) {
    zt_conn_close(c, "error");
    return;
  }
  arm_recv(c, side);
}

static void tls_received(zt_conn_t *c, int res, int buf) {
  if (res > 0) {
    if (buf >= 0) {
      c->held_buf = buf;
      c->held_off = 0;
      c->held_len = (uint32_t)res;
    } else {                        /* into recv_own; arm_tls left rx empty */
      c->rx = c->recv_own[0];
      c->recv_own[0] = NULL;
      c->rx->len = (uint32_t)res;
      c->rx_off = 0;
    }
    c->last_ms = uv_now(&c->w->loop);
  } else if (res == 0) {
    c->tls_eof = true;
  } else if (res == -ENOBUFS) {
    recv_starved(c, 0);
    return;
  } else {
    zt_conn_close(c, "reset");
    return;
  }
  pump_tls(c);
}

static void plain_received(zt_conn_t *c, int res, int buf) {
  if (res > 0) {
    int r = from_plain(c, buf >= 0 ? zt_uring_buf(c->w->uring, buf) : c->recv_own[1]->data,
                       res);
    if (buf >= 0) {
      zt_uring_buf_put(c->w->uring, buf);
    } else {                        /* the next receive tries the buffers again */
      zt_block_put(c->w, c->recv_own[1]);
      c->recv_own[1] = NULL;
    }
    if (r == 0) arm_plain(c);
  } else if (res == 0) {
    plain_ended(c);
  } else if (res == -ENOBUFS) {
    recv_starved(c, 1);
  } else {
    zt_conn_close(c, "reset");
  }
}

void zt_conn_uring_done(void *arg, uint64_t ud, int res, int buf) {
  zt_conn_t *c = (zt_conn_t *)(uintptr_t)(ud & ~(uint64_t)ZT_OP_MASK);
  int op = (int)(ud & ZT_OP_MASK);
  (void)arg;
  c->armed &= (uint8_t)~(1u << op);
  if (buf >= 0 && (res <= 0 || c->state == ZT_CONN_CLOSING)) {
    zt_uring_buf_put(c->w->uring, buf);  /* taken, but nothing to read in it */
    buf = -1;
  }
  if (c->state == ZT_CONN_CLOSING) {
    if (c->armed == 0 && c->pending_closes == 0) free_conn(c);
    return;
  }
  switch (op) {
  case ZT_OP_RECV_TLS: tls_received(c, res, buf); break;
  case ZT_OP_RECV_PLAIN: plain_received(c, res, buf); break;
  default: send_done(c, op - ZT_OP_SEND_TLS, res); break;
  }
}

/* --- timers and connecting ---------------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  zt_conn_t *c = t->data;
  uint64_t now, idle;
  switch (c->state) {
  case ZT_CONN_HANDSHAKE:
    c->tls_error = "handshake_timeout";
    zt_conn_close(c, "handshake_timeout");
    break;
  case ZT_CONN_CONNECTING:
    zt_warn("%s: conn %llu: connecting to %s timed out", c->lc->name,
            (unsigned long long)c->id, c->lc->target.str);
    zt_conn_close(c, "connect_timeout");
    break;
  case ZT_CONN_STREAMING:
    now = uv_now(&c->w->loop);
    idle = now - c->last_ms;
    if (idle >= c->lc->idle_timeout_ms) zt_conn_close(c, "idle_timeout");
    else uv_timer_start(&c->timer, on_timer, c->lc->idle_timeout_ms - idle, 0);
    break;
  default:
    break;
  }
}

/* The idle deadline is checked lazily: data only stamps last_ms, and the timer re-arms
 * itself for the remainder when it fires early. */
static void start_idle_timer(zt_conn_t *c) {
  c->last_ms = uv_now(&c->w->loop);
  uv_timer_start(&c->timer, on_timer, c->lc->idle_timeout_ms, 0);
}

static int start_tls(zt_conn_t *c) {
  if (!c->inbound) {
    c->peer.expect = c->lc->expect_server;
    c->peer.n_expect = c->lc->n_expect_server;
  }
  c->ssl = zt_tls_new(c->ident, c->inbound, &c->peer, tls_recv, tls_send,
                      c->lc->resumption);
  if (c->ssl == NULL) {
    zt_conn_close(c, "error");
    return -1;
  }
  if (!c->inbound && c->lc->resumption) {
    zt_ticket_cache_t *t = &c->w->tickets[c->wl->l->index];
    if (t->sess && (t->ident != c->ident || t->not_after <= (int64_t)time(NULL)))
      zt_ticket_cache_clear(t);
    else if (t->sess && wolfSSL_set_session(c->ssl, t->sess) == WOLFSSL_SUCCESS &&
             (c->peer.ticket.id = strdup(t->peer_id)) != NULL) {
      /* The server it came from, for the case it is resumed: the cache may hold
       * another server's ticket by then. */
      c->offered_ticket = ticket_prefix(c->ssl, c->offered_prefix);
      c->peer.ticket.not_after = t->not_after;
      memcpy(c->peer.ticket.serial, t->serial, sizeof(t->serial));
      memcpy(c->peer.ticket.cert_sha256, t->cert_sha256, sizeof(t->cert_sha256));
    }
  }
  c->state = ZT_CONN_HANDSHAKE;
  c->hs_start_ns = uv_hrtime();
  uv_timer_start(&c->timer, on_timer, c->lc->handshake_timeout_ms, 0);
  uv_read_start(tls_stream(c), alloc_tls, on_tls_read);
  return 0;
}

static void on_up_connect(uv_connect_t *req, int status) {
  zt_conn_t *c = req->handle->data;
  if (c->state == ZT_CONN_CLOSING) return;
  uv_timer_stop(&c->timer);
  if (status < 0) {
    zt_warn("%s: conn %llu: cannot connect to %s: %s", c->lc->name,
            (unsigned long long)c->id, c->lc->target.str, uv_strerror(status));
    zt_conn_close(c, "upstream_connect_failed");
    return;
  }
  uv_tcp_nodelay(&c->up, 1);
  if (c->inbound) {
    start_streaming(c);
    return;
  }
  if (start_tls(c) == 0) drive_handshake(c);  /* sends the ClientHello */
}

/* --- accepting ---------------------------------------------------------------------- */

static void format_peer(uv_tcp_t *t, char *out, size_t len) {
  struct sockaddr_storage ss;
  int sl = sizeof(ss);
  char host[64] = "?";
  int port = 0;
  if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET) {
      uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
      snprintf(out, len, "%s:%d", host, port);
      return;
    }
    uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
    port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  snprintf(out, len, "[%s]:%d", host, port);
}

int zt_conn_accept(zt_wlistener_t *wl) {
  zt_worker_t *w = wl->w;
  zt_conn_t *c = calloc(1, sizeof(*c));
  unsigned active;

  if (c == NULL) return -1;
  c->w = w;
  c->wl = wl;
  c->lc = wl->l->conf;
  c->inbound = c->lc->mode == ZT_MODE_INBOUND;
  c->m = &w->metrics.listeners[wl->l->index];
  zt_count(&c->m->opened, 1);
  c->ident = zt_identity_retain(w->ident);
  c->id = w->next_conn_id++ * w->srv->n_workers + w->index + 1;
  c->start_ms = c->last_ms = uv_now(&w->loop);
  c->state = ZT_CONN_HANDSHAKE;
  c->held_buf = -1;
  uv_tcp_init(&w->loop, &c->down);
  uv_timer_init(&w->loop, &c->timer);
  c->down.data = c->timer.data = c;
  c->next = w->conns;
  if (w->conns) w->conns->prev = c;
  w->conns = c;
  w->n_conns++;

  if (uv_accept((uv_stream_t *)&wl->tcp, (uv_stream_t *)&c->down) != 0) {
    zt_conn_close(c, "error");
    return 0;
  }
  format_peer(&c->down, c->src, sizeof(c->src));
  active = atomic_fetch_add_explicit(&wl->l->active, 1, memory_order_relaxed);
  c->counted = true;
  if (active >= c->lc->max_connections) {
    zt_warn("%s: conn %llu from %s: refused, %u connections is the limit", c->lc->name,
            (unsigned long long)c->id, c->src, c->lc->max_connections);
    zt_conn_close(c, "connection_limit");
    return 0;
  }
  if ((int64_t)time(NULL) >= c->ident->not_after) {
    /* Fail closed: no handshake with an expired SVID (the main thread says so). */
    zt_conn_close(c, "svid_expired");
    return 0;
  }
  uv_tcp_nodelay(&c->down, 1);
  if (c->inbound) {
    start_tls(c);
  } else {
    connect_up(c);
  }
  return 0;
}
