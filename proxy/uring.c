/* proxy/uring.c: a worker's io_uring (see uring.h). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>

#include "uring.h"

#define RING_ENTRIES 256
#define UD_IGNORE 0u    /* cancellations: their outcome shows in the cancelled op */
#define UD_UV_POLL 1u   /* the loop's backend fd; no connection has this address */
#define BUF_GROUP 1

struct zt_uring {
  struct io_uring ring;
  struct io_uring_buf_ring *br;
  char *bufs;
  size_t buf_size;
  unsigned nbufs;
  int uv_fd;
  bool uv_armed;                /* the poll of the loop's backend fd is in the kernel */
  uint64_t pending;
};

static struct io_uring_sqe *get_sqe(zt_uring_t *u) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  if (sqe == NULL) {            /* the queue is full: hand it over and take another */
    io_uring_submit(&u->ring);
    sqe = io_uring_get_sqe(&u->ring);
  }
  return sqe;
}

/* One-shot, armed again on the loop's next turn once it has fired (and uv_run has
 * run): arming polls the epoll fd at once, so events libuv left ready (it reads a
 * busy socket only so many times per turn) are seen; a multishot poll would report
 * only new wake-ups. */
int zt_uring_poll_uv(zt_uring_t *u) {
  struct io_uring_sqe *sqe;
  if (u->uv_armed) return 0;
  if ((sqe = get_sqe(u)) == NULL) return -EBUSY;
  io_uring_prep_poll_add(sqe, u->uv_fd, POLLIN);
  io_uring_sqe_set_data64(sqe, UD_UV_POLL);
  u->uv_armed = true;
  return 0;
}

zt_uring_t *zt_uring_new(uv_loop_t *loop, unsigned nbufs, size_t buf_size,
                         const char **why) {
  zt_uring_t *u = calloc(1, sizeof(*u));
  struct io_uring_buf_reg reg;
  size_t br_size = (size_t)nbufs * sizeof(struct io_uring_buf);
  int r;

  *why = "out of memory";
  if (u == NULL) return NULL;
  u->uv_fd = uv_backend_fd(loop);
  u->nbufs = nbufs;
  u->buf_size = buf_size;
  /* One thread submits, and completions are reaped only when it enters the kernel:
   * no interrupting task work while the worker runs. */
  r = io_uring_queue_init(RING_ENTRIES, &u->ring,
                          IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  if (r == -EINVAL) r = io_uring_queue_init(RING_ENTRIES, &u->ring, 0);  /* < 6.1 */
  if (r < 0) {
    *why = "io_uring_setup refused";
    free(u);
    return NULL;
  }
  /* The buffers' pages become resident only once the kernel fills them. */
  if (posix_memalign((void **)&u->br, 4096, br_size) ||
      posix_memalign((void **)&u->bufs, 4096, nbufs * buf_size))
    goto fail;
  io_uring_buf_ring_init(u->br);
  memset(&reg, 0, sizeof(reg));
  reg.ring_addr = (unsigned long)u->br;
  reg.ring_entries = nbufs;
  reg.bgid = BUF_GROUP;
  if (io_uring_register_buf_ring(&u->ring, &reg, 0) < 0) {
    *why = "no provided buffer rings (Linux 5.19 or later)";
    goto fail;
  }
  for (unsigned i = 0; i < nbufs; i++)
    io_uring_buf_ring_add(u->br, u->bufs + i * buf_size, (unsigned)buf_size, (int)i,
                          io_uring_buf_ring_mask(nbufs), (int)i);
  io_uring_buf_ring_advance(u->br, (int)nbufs);
  if (zt_uring_poll_uv(u) < 0 || io_uring_submit(&u->ring) < 0) {
    *why = "cannot poll the event loop through io_uring";
    goto fail;
  }
  return u;
fail:
  io_uring_queue_exit(&u->ring);
  free(u->br);
  free(u->bufs);
  free(u);
  return NULL;
}

void zt_uring_free(zt_uring_t *u) {
  if (u == NULL) return;
  io_uring_queue_exit(&u->ring);
  free(u->br);
  free(u->bufs);
  free(u);
}

int zt_uring_recv(zt_uring_t *u, int fd, void *own, size_t len, uint64_t ud) {
  struct io_uring_sqe *sqe = get_sqe(u);
  if (sqe == NULL) return -EBUSY;
  io_uring_prep_recv(sqe, fd, own, len, 0);
  if (own == NULL) {
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
  }
  io_uring_sqe_set_data64(sqe, ud);
  u->pending++;
  return 0;
}

int zt_uring_send(zt_uring_t *u, int fd, const void *p, size_t len, uint64_t ud) {
  struct io_uring_sqe *sqe = get_sqe(u);
  if (sqe == NULL) return -EBUSY;
  /* MSG_WAITALL: the kernel finishes a short send itself before completing it. */
  io_uring_prep_send(sqe, fd, p, len, MSG_WAITALL | MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, ud);
  u->pending++;
  return 0;
}

int zt_uring_cancel(zt_uring_t *u, uint64_t ud) {
  struct io_uring_sqe *sqe = get_sqe(u);
  if (sqe == NULL) return -EBUSY;
  io_uring_prep_cancel64(sqe, ud, 0);
  io_uring_sqe_set_data64(sqe, UD_IGNORE);
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  return 0;
}

char *zt_uring_buf(zt_uring_t *u, int buf) { return u->bufs + (size_t)buf * u->buf_size; }

void zt_uring_buf_put(zt_uring_t *u, int buf) {
  io_uring_buf_ring_add(u->br, zt_uring_buf(u, buf), (unsigned)u->buf_size, buf,
                        io_uring_buf_ring_mask(u->nbufs), 0);
  io_uring_buf_ring_advance(u->br, 1);
}

int zt_uring_submit(zt_uring_t *u) {
  int r = io_uring_submit(&u->ring);
  return r < 0 && r != -EINTR ? r : 0;
}

int zt_uring_enter(zt_uring_t *u, int timeout_ms) {
  struct io_uring_cqe *cqe;
  int r;
  if (timeout_ms == 0) {
    r = io_uring_submit_and_get_events(&u->ring);
  } else if (timeout_ms < 0) {
    r = io_uring_submit_and_wait(&u->ring, 1);
  } else {
    struct __kernel_timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000LL};
    r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
  }
  return r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN ? r : 0;
}

int zt_uring_reap(zt_uring_t *u, zt_uring_done_cb done, void *arg, bool *uv_ready) {
  struct io_uring_cqe *cqe;
  unsigned head, seen = 0;
  io_uring_for_each_cqe(&u->ring, head, cqe) {
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    seen++;
    if (ud == UD_IGNORE) continue;
    if (ud == UD_UV_POLL) {
      *uv_ready = true;
      u->uv_armed = false;
      continue;
    }
    u->pending--;
    done(arg, ud, cqe->res,
         (cqe->flags & IORING_CQE_F_BUFFER) ? (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT)
                                            : -1);
  }
  io_uring_cq_advance(&u->ring, seen);
  return (int)seen;
}

uint64_t zt_uring_pending(const zt_uring_t *u) { return u->pending; }
