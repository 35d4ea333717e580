/*
 * bulk: one-stream bulk throughput source/sink for ztproxy's bench/ (loopback only).
 *
 *   bulk serve PORT              server on 127.0.0.1:PORT, one thread per connection.
 *                                The client's first byte picks the direction:
 *                                'U' upload: the server reads and discards until EOF,
 *                                    then answers "<bytes>\n" and closes (so the
 *                                    client knows how much really crossed the chain);
 *                                'D' download: the server writes until the client
 *                                    goes away.
 *   bulk up   PORT SECONDS       client: send for SECONDS, half-close, wait for the
 *                                server's count; rate = count / time to that answer
 *   bulk down PORT SECONDS       client: read for SECONDS; rate = bytes / time
 *
 * The client prints one line: dir=up|down bytes=N secs=S MB_s=X (1 MB = 1e6 bytes).
 * Every client run is bounded: alarm(SECONDS + 20) turns a stall into exit status 3
 * with "error=stall" on stdout. Half-close must travel through the chain for 'up'.
 *
 * build: cc -O2 -pthread -o bulk bulk.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill(char *b, size_t n) {
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        b[i] = (char)x;
    }
}

static void *serve_one(void *arg) {
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(CHUNK);
    char cmd;
    ssize_t r = read(fd, &cmd, 1);
    if (r == 1 && cmd == 'U') {
        uint64_t total = 0;
        for (;;) {
            r = read(fd, buf, CHUNK);
            if (r > 0) total += (uint64_t)r;
            else if (r < 0 && errno == EINTR) continue;
            else break;
        }
        if (r == 0) {
            char line[32];
            int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)total);
            if (write(fd, line, (size_t)n) < 0) { /* peer gone */ }
        }
    } else if (r == 1 && cmd == 'D') {
        fill(buf, CHUNK);
        for (;;) {
            ssize_t w = write(fd, buf, CHUNK);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
        }
    }
    free(buf);
    close(fd);
    return NULL;
}

static int serve(int port) {
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) { perror("bulk serve"); return 1; }
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) { if (errno == EINTR || errno == ECONNABORTED) continue; perror("accept"); return 1; }
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, serve_one, (void *)(intptr_t)fd)) close(fd);
        pthread_attr_destroy(&at);
    }
}

static void on_alarm(int sig) {
    (void)sig;
    static const char m[] = "error=stall\n";
    if (write(1, m, sizeof m - 1) < 0) { /* nothing */ }
    _exit(3);
}

static int client(int up, int port, double secs) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)secs + 20);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { printf("error=connect:%s\n", strerror(errno)); return 1; }
    char *buf = malloc(CHUNK);
    fill(buf, CHUNK);
    char cmd = up ? 'U' : 'D';
    if (write(fd, &cmd, 1) != 1) { printf("error=write:%s\n", strerror(errno)); return 1; }
    double t0 = now_s(), tend = t0 + secs, t1;
    uint64_t total = 0;
    if (up) {
        uint64_t sent = 0;
        while (now_s() < tend) {
            ssize_t w = write(fd, buf, CHUNK);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { printf("error=write:%s sent=%llu\n", strerror(errno), (unsigned long long)sent); return 1; }
            sent += (uint64_t)w;
        }
        shutdown(fd, SHUT_WR);
        char line[64];
        size_t n = 0;
        for (;;) {
            ssize_t r = read(fd, line + n, sizeof line - 1 - n);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            n += (size_t)r;
            if (n >= sizeof line - 1 || memchr(line, '\n', n)) break;
        }
        t1 = now_s();
        line[n] = 0;
        if (!n) { printf("error=no_count sent=%llu\n", (unsigned long long)sent); return 1; }
        total = strtoull(line, NULL, 10);
        if (total != sent) { printf("error=count_mismatch sent=%llu got=%llu\n", (unsigned long long)sent, (unsigned long long)total); return 1; }
    } else {
        for (;;) {
            ssize_t r = read(fd, buf, CHUNK);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) { printf("error=read:%s got=%llu\n", r ? strerror(errno) : "eof", (unsigned long long)total); return 1; }
            total += (uint64_t)r;
            if (now_s() >= tend) break;
        }
        t1 = now_s();
    }
    close(fd);
    printf("dir=%s bytes=%llu secs=%.3f MB_s=%.1f\n", up ? "up" : "down", (unsigned long long)total, t1 - t0,
           (double)total / 1e6 / (t1 - t0));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]));
    if (argc == 4 && (!strcmp(argv[1], "up") || !strcmp(argv[1], "down")))
        return client(!strcmp(argv[1], "up"), atoi(argv[2]), atof(argv[3]));
    fprintf(stderr, "usage: bulk serve PORT | bulk up|down PORT SECONDS\n");
    return 2;
}
