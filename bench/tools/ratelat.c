/*
 * ratelat: open-loop (fixed-rate) HTTP/1.1 latency probe for ztproxy's bench/
 * (adapted from ../shared/peerbench/tools/ratelat.c; adds a non-200 count).
 *
 * Sends GET requests at a fixed aggregate rate and measures each request's
 * latency from its *scheduled* send time (so queueing caused by a slow
 * system is counted: no coordinated omission), like fortio/wrk2 do.
 *
 *   ka  mode: -c persistent keep-alive connections, one request in flight
 *             per connection (Istio's published numbers use 16 conns, 1000 rps)
 *   new mode: a fresh TCP connection per request ("Connection: close"),
 *             so through an mTLS chain every request pays a full handshake.
 *
 * Output: one line of key=value pairs (latencies in microseconds).
 * Loopback/IPv4 only; run time bounded by -d + -w + 3 s drain.
 *
 * build: cc -O2 -o ratelat ratelat.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXCONN 4096
#define HIST_US 2000000 /* 1-us buckets up to 2 s; above that: overflow bucket */

typedef struct {
    int fd;
    int busy;      /* request in flight */
    int connected; /* new-mode: connect finished and request sent */
    int64_t t0;    /* scheduled time of in-flight request (ns) */
    char buf[8192];
    size_t len;
} conn_t;

static uint32_t *hist;
static uint64_t over_cnt, nrec;
static int64_t maxlat;
static struct sockaddr_in dst;
static char req[512];
static size_t reqlen;
static uint64_t non200;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void record(int64_t ns) {
    int64_t us = ns / 1000;
    if (us < 0) us = 0;
    if (us < HIST_US) hist[us]++; else over_cnt++;
    if (us > maxlat) maxlat = us;
    nrec++;
}

static int64_t pct(double p) {
    uint64_t want = (uint64_t)(p / 100.0 * (double)nrec + 0.999999), acc = 0;
    if (want == 0) want = 1;
    for (int64_t i = 0; i < HIST_US; i++) {
        acc += hist[i];
        if (acc >= want) return i;
    }
    return maxlat;
}

/* returns 1 if buf holds a complete HTTP response (Content-Length framing),
 * 2 if it is complete and the server asked to close */
static int resp_complete(conn_t *c) {
    c->buf[c->len < sizeof c->buf ? c->len : sizeof c->buf - 1] = 0;
    char *eoh = strstr(c->buf, "\r\n\r\n");
    if (!eoh) return 0;
    size_t hl = (size_t)(eoh - c->buf) + 4;
    long cl = 0;
    char *p = strcasestr(c->buf, "\r\ncontent-length:");
    if (p && p < eoh) cl = strtol(p + 17, NULL, 10);
    if (c->len < hl + (size_t)cl) return 0;
    char *cc = strcasestr(c->buf, "\r\nconnection: close");
    return (cc && cc < eoh) ? 2 : 1;
}

static int open_conn(int nonblock) {
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    if (!nonblock) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *path = "/1k", *mode = "ka";
    int port = 0, nconn = 16;
    double rate = 1000, dur = 10, warm = 1;
    int opt;
    while ((opt = getopt(argc, argv, "h:p:r:c:d:w:m:u:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'c': nconn = atoi(optarg); break;
        case 'd': dur = atof(optarg); break;
        case 'w': warm = atof(optarg); break;
        case 'm': mode = optarg; break;
        case 'u': path = optarg; break;
        default:
            fprintf(stderr, "usage: %s -p port [-h 127.0.0.1] [-r rps] [-c conns|max-inflight] [-d s] [-w s] [-m ka|new] [-u /path]\n", argv[0]);
            return 2;
        }
    }
    if (!port || rate <= 0 || nconn < 1 || nconn > MAXCONN - 16) { fprintf(stderr, "bad args\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    int newmode = !strcmp(mode, "new");
    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    dst.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) { fprintf(stderr, "IPv4 literal only\n"); return 2; }
    reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", path, host, port,
                      newmode ? "Connection: close\r\n" : "");
    hist = calloc(HIST_US, sizeof *hist);
    conn_t *conns = calloc(MAXCONN, sizeof *conns); /* indexed by slot */
    int ep = epoll_create1(0);
    uint64_t errors = 0, sent = 0, done_all = 0, late_drops = 0;

    /* pending queue of scheduled-but-unsent request times */
    size_t qcap = (size_t)(rate * (dur + warm)) + 16, qh = 0, qt = 0;
    int64_t *q = malloc(qcap * sizeof *q);

    if (!newmode) {
        for (int i = 0; i < nconn; i++) {
            conns[i].fd = open_conn(0);
            if (conns[i].fd < 0) { perror("connect"); return 1; }
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
        }
    } else {
        for (int i = 0; i < MAXCONN; i++) conns[i].fd = -1;
    }

    const int64_t t_start = now_ns();
    const int64_t t_meas = t_start + (int64_t)(warm * 1e9);
    const int64_t t_end = t_meas + (int64_t)(dur * 1e9);
    const int64_t t_hard = t_end + 3000000000LL; /* drain limit */
    const double interval = 1e9 / rate;
    uint64_t nsched = 0;
    int inflight = 0;
    struct epoll_event evs[256];

    for (;;) {
        int64_t now = now_ns();
        /* schedule */
        while (1) {
            int64_t ts = t_start + (int64_t)(nsched * interval);
            if (ts > now || ts >= t_end) break;
            q[qt++ % qcap] = ts;
            nsched++;
        }
        /* dispatch pending */
        while (qh < qt) {
            int slot = -1;
            if (!newmode) {
                for (int i = 0; i < nconn; i++)
                    if (!conns[i].busy && conns[i].fd >= 0) { slot = i; break; }
            } else if (inflight < nconn) {
                for (int i = 0; i < MAXCONN; i++)
                    if (conns[i].fd < 0) { slot = i; break; }
            }
            if (slot < 0) break;
            conn_t *c = &conns[slot];
            c->t0 = q[qh++ % qcap];
            c->len = 0;
            c->busy = 1;
            sent++;
            if (!newmode) {
                if (write(c->fd, req, reqlen) != (ssize_t)reqlen) {
                    errors++;
                    c->busy = 0;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    c->fd = open_conn(0);
                    if (c->fd >= 0) {
                        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
                        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                    }
                }
            } else {
                c->fd = open_conn(1);
                if (c->fd < 0) { errors++; c->busy = 0; continue; }
                c->connected = 0;
                inflight++;
                struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)slot};
                epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            }
        }
        int busy_any = newmode ? inflight > 0 : 0;
        if (!newmode)
            for (int i = 0; i < nconn; i++) busy_any |= conns[i].busy;
        if (now >= t_end && qh == qt && !busy_any) break;
        if (now >= t_hard) break;
        /* wait until next scheduled send or an event */
        int64_t next = t_start + (int64_t)(nsched * interval);
        int64_t wait = (now >= t_end ? 1000000 : next - now);
        if (wait < 0) wait = 0;
        if (wait > 1000000) wait = 1000000;
        struct timespec to = {.tv_sec = 0, .tv_nsec = wait};
        int n = epoll_pwait2(ep, evs, 256, &to, NULL);
        for (int k = 0; k < n; k++) {
            int slot = (int)evs[k].data.u32;
            conn_t *c = &conns[slot];
            if (c->fd < 0) continue;
            if (newmode && !c->connected) {
                int err = 0;
                socklen_t sl = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
                if (err || write(c->fd, req, reqlen) != (ssize_t)reqlen) {
                    errors++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    c->fd = -1; c->busy = 0; inflight--;
                    continue;
                }
                c->connected = 1;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
            if (r > 0) {
                c->len += (size_t)r;
                int st = resp_complete(c);
                if (!st) continue;
                int64_t t = now_ns();
                if (c->t0 >= t_meas) record(t - c->t0); else late_drops++;
                if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0) non200++;
                done_all++;
                c->busy = 0;
                c->len = 0;
                if (newmode || st == 2) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    c->fd = -1;
                    if (newmode) inflight--;
                    else {
                        c->fd = open_conn(0);
                        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
                        if (c->fd >= 0) epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                    }
                }
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                if (c->busy) errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                c->busy = 0;
                if (newmode) inflight--;
                else {
                    c->fd = open_conn(0);
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
                    if (c->fd >= 0) epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                }
            }
        }
    }
    double meas_s = dur;
    printf("mode=%s target_rps=%.0f conns=%d sent=%lu ok_measured=%lu achieved_rps=%.1f errors=%lu non200=%lu unsent=%lu "
           "p50_us=%ld p90_us=%ld p99_us=%ld p999_us=%ld max_us=%ld\n",
           mode, rate, nconn, (unsigned long)sent, (unsigned long)nrec, nrec / meas_s, (unsigned long)errors, (unsigned long)non200,
           (unsigned long)(qt - qh), (long)pct(50), (long)pct(90), (long)pct(99), (long)pct(99.9), (long)maxlat);
    (void)done_all; (void)late_drops;
    return 0;
}
