/* proxy/uring.h: a worker's io_uring, the data path of established connections.
 *
 * On the readiness path (libuv's epoll) every event costs its own system calls: a
 * read, then a write on the other side. On loopback that is most of a sidecar's CPU.
 * With the ring, a worker queues its established connections' receives and sends and
 * hands them all to the kernel with the one io_uring_enter that also waits for the
 * next completions; the kernel does each receive as the data arrives.
 *
 * libuv keeps the rest (accepting, handshakes, connecting, timers, the main thread's
 * wake-ups): its epoll fd is itself polled through the ring, and the worker runs
 * uv_run(UV_RUN_NOWAIT) only when libuv has something to do (worker.c).
 *
 * Receives take a buffer from a ring of provided buffers when their data arrives, so
 * an idle connection holds none; when the ring is empty a receive is armed again into
 * a block of the connection's own.
 */
#ifndef ZT_URING_H
#define ZT_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct zt_uring zt_uring_t;

/* An operation's user_data: the connection's address (malloc'd, so 16-byte aligned)
 * with the operation in its low bits. At most one of each is in flight. */
enum { ZT_OP_RECV_TLS, ZT_OP_RECV_PLAIN, ZT_OP_SEND_TLS, ZT_OP_SEND_PLAIN };
#define ZT_OP_MASK 3u

/* What a completion says: res as a syscall would return it, and the provided
 * buffer it filled (buf >= 0) */
typedef void (*zt_uring_done_cb)(void *arg, uint64_t ud, int res, int buf);

/* A ring for this thread with nbufs provided buffers of buf_size bytes, polling the
 * loop's backend fd; NULL when the kernel refuses, and *why says which step failed. */
zt_uring_t *zt_uring_new(uv_loop_t *loop, unsigned nbufs, size_t buf_size,
                         const char **why);
void zt_uring_free(zt_uring_t *u);

/* Queue a receive into a provided buffer (own == NULL) or into own; a send; the
 * cancellation of the operation with this user_data. They reach the kernel with the
 * next zt_uring_enter. */
int zt_uring_recv(zt_uring_t *u, int fd, void *own, size_t len, uint64_t ud);
int zt_uring_send(zt_uring_t *u, int fd, const void *p, size_t len, uint64_t ud);
int zt_uring_cancel(zt_uring_t *u, uint64_t ud);

/* Poll the loop's backend fd unless that poll is still armed: call before sleeping. */
int zt_uring_poll_uv(zt_uring_t *u);

char *zt_uring_buf(zt_uring_t *u, int buf);
void zt_uring_buf_put(zt_uring_t *u, int buf);

/* Submit what is queued, now. 0 or -errno. */
int zt_uring_submit(zt_uring_t *u);
/* Submit what is queued and wait up to timeout_ms (-1: until something completes,
 * 0: not at all) for completions. 0 or -errno. */
int zt_uring_enter(zt_uring_t *u, int timeout_ms);
/* Call done for every completion there is; *uv_ready becomes true when the loop's
 * backend fd was readable. Returns how many there were. */
int zt_uring_reap(zt_uring_t *u, zt_uring_done_cb done, void *arg, bool *uv_ready);
/* Operations whose completion has not been seen yet. */
uint64_t zt_uring_pending(const zt_uring_t *u);

#endif
