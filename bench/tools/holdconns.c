/*
 * holdconns: open N keep-alive HTTP/1.1 connections to 127.0.0.1:PORT, complete one
 * GET on each (so the whole chain, including the mTLS hop and the backend connection,
 * is established), then hold them all idle. For ztproxy's bench/ memory figures.
 *
 *   holdconns PORT N HOLD_SECONDS [PARALLEL=64] [PATH=/1k]
 *
 * Prints "READY ok=<n> fail=<n> secs=<s>" once every connection is established or has
 * failed (bounded: 120 s), then holds until HOLD_SECONDS pass or SIGTERM/SIGINT
 * arrives, then prints "DONE dropped_during_hold=<n>" (connections the chain closed
 * while idle) and exits. Raises RLIMIT_NOFILE to the hard limit.
 *
 * build: cc -O2 -o holdconns holdconns.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_CONNECTING, ST_WAITING, ST_IDLE, ST_DEAD };

typedef struct {
    int fd, st;
    size_t len;
    char buf[4096];
} conn_t;

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 1 when buf holds a full response (Content-Length framing) */
static int complete(conn_t *c, long *need) {
    char *eoh = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!eoh) return 0;
    if (*need < 0) {
        c->buf[c->len < sizeof c->buf ? c->len : sizeof c->buf - 1] = 0;
        char *p = strcasestr(c->buf, "\r\ncontent-length:");
        *need = (p && p < eoh) ? strtol(p + 17, NULL, 10) : 0;
    }
    size_t hl = (size_t)(eoh - c->buf) + 4;
    return c->len >= hl + (size_t)*need;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: holdconns PORT N HOLD_SECONDS [PARALLEL] [PATH]\n"); return 2; }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    double hold = atof(argv[3]);
    int par = argc > 4 ? atoi(argv[4]) : 64;
    const char *path = argc > 5 ? argv[5] : "/1k";
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)n + 64 > rl.rlim_cur) { fprintf(stderr, "holdconns: fd limit %lu too low for %d\n", (unsigned long)rl.rlim_cur, n); return 2; }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_sig);
    signal(SIGINT, on_sig);
    char req[256];
    int reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", path, port);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    conn_t *cs = calloc((size_t)n, sizeof *cs);
    long *need = malloc((size_t)n * sizeof *need);
    int ep = epoll_create1(0);
    int next = 0, inflight = 0, ok = 0, fail = 0;
    double t0 = now_s(), deadline = t0 + 120;
    struct epoll_event evs[256];
    while ((ok + fail < n) && !stop && now_s() < deadline) {
        while (inflight < par && next < n) {
            conn_t *c = &cs[next];
            need[next] = -1;
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (c->fd < 0) { c->st = ST_DEAD; fail++; next++; continue; }
            if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) && errno != EINPROGRESS) {
                close(c->fd); c->fd = -1; c->st = ST_DEAD; fail++; next++; continue;
            }
            c->st = ST_CONNECTING;
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)next};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            inflight++;
            next++;
        }
        int k = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < k; i++) {
            int idx = (int)evs[i].data.u32;
            conn_t *c = &cs[idx];
            if (c->st == ST_CONNECTING) {
                int err = 0;
                socklen_t sl = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
                if (err || write(c->fd, req, (size_t)reqlen) != reqlen) goto dead;
                c->st = ST_WAITING;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)idx};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            if (c->st == ST_WAITING) {
                ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
                if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; goto dead; }
                c->len += (size_t)r;
                if (complete(c, &need[idx])) {
                    if (strncmp(c->buf, "HTTP/1.1 200", 12)) goto dead;
                    c->st = ST_IDLE;
                    ok++;
                    inflight--;
                    /* keep watching for a close by the chain while idle */
                    continue;
                }
                if (c->len >= sizeof c->buf - 1) goto dead; /* response larger than the buffer */
                continue;
            }
            if (c->st == ST_IDLE) continue; /* handled after READY */
            continue;
        dead:
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            c->st = ST_DEAD;
            fail++;
            inflight--;
        }
    }
    fail = n - ok;
    printf("READY ok=%d fail=%d secs=%.2f\n", ok, fail, now_s() - t0);
    fflush(stdout);
    double tend = now_s() + hold;
    int dropped = 0;
    while (!stop && now_s() < tend) {
        int k = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < k; i++) {
            int idx = (int)evs[i].data.u32;
            conn_t *c = &cs[idx];
            if (c->st != ST_IDLE) continue;
            char tmp[512];
            ssize_t r = read(c->fd, tmp, sizeof tmp);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                c->st = ST_DEAD;
                dropped++;
            }
        }
    }
    printf("DONE dropped_during_hold=%d\n", dropped);
    for (int i = 0; i < n; i++)
        if (cs[i].fd > 0) close(cs[i].fd);
    return 0;
}
