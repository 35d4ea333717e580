/* tests/tools/tls_peer.c: a TLS 1.3 client (wolfSSL) that misbehaves on purpose, for
 * the integration tests, which start it against a ztproxy inbound listener.
 *
 *   tls_peer kuflood PORT CERT KEY CA SECONDS
 *       the handshake, then KeyUpdate requests (each asks for one back) as fast as the
 *       socket takes them, never reading, for SECONDS (or until ztproxy closes); then
 *       it holds the connection for as long again. Prints "handshake ok", "sent N".
 *   tls_peer halfku PORT CERT KEY CA
 *       the handshake; 1000 x 'A'; waits for the server's close_notify (its app has
 *       half-closed); a KeyUpdate request; 1000 x 'B'; close_notify. Prints each step.
 *
 * Exit status 0 when every step went through, 1 otherwise (the reason on stderr).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int fail(WOLFSSL *ssl, int ret, const char *what) {
  char buf[WOLFSSL_MAX_ERROR_SZ];
  fprintf(stderr, "tls_peer: %s: %s\n", what,
          ssl ? wolfSSL_ERR_error_string((unsigned long)wolfSSL_get_error(ssl, ret), buf)
              : "setup");
  return 1;
}

int main(int argc, char **argv) {
  WOLFSSL_CTX *ctx;
  WOLFSSL *ssl;
  struct sockaddr_in a;
  struct timeval tv = {1, 0};
  int fd, rcvbuf = 4096, one = 1, r;
  const char *mode;

  if (argc < 6 || (strcmp(argv[1], "kuflood") != 0 && strcmp(argv[1], "halfku") != 0) ||
      (strcmp(argv[1], "kuflood") == 0 && argc < 7)) {
    fprintf(stderr, "usage: tls_peer kuflood|halfku PORT CERT KEY CA [SECONDS]\n");
    return 2;
  }
  mode = argv[1];
  signal(SIGPIPE, SIG_IGN);     /* ztproxy may close on us: an error, not a death */
  wolfSSL_Init();
  if ((ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method())) == NULL ||
      wolfSSL_CTX_use_certificate_chain_file(ctx, argv[3]) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_use_PrivateKey_file(ctx, argv[4], WOLFSSL_FILETYPE_PEM) !=
          WOLFSSL_SUCCESS ||
      wolfSSL_CTX_load_verify_locations(ctx, argv[5], NULL) != WOLFSSL_SUCCESS)
    return fail(NULL, 0, "certificates");
  fd = socket(AF_INET, SOCK_STREAM, 0);
  /* kuflood: a small receive buffer, never read, so that answers pile up at ztproxy */
  /* kuflood: each request in a segment of its own, so that each can cost ztproxy a
   * turn (and an answer) */
  if (strcmp(mode, "kuflood") == 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(argv[2]));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) return fail(NULL, 0, "connect");
  if ((ssl = wolfSSL_new(ctx)) == NULL || wolfSSL_set_fd(ssl, fd) != WOLFSSL_SUCCESS)
    return fail(NULL, 0, "wolfSSL_new");
  if ((r = wolfSSL_connect(ssl)) != WOLFSSL_SUCCESS) return fail(ssl, r, "handshake");
  printf("handshake ok\n");
  fflush(stdout);

  if (strcmp(mode, "kuflood") == 0) {
    double secs = atof(argv[6]), end = now_s() + secs;
    long sent = 0;
    while (now_s() < end) {   /* a full socket times out the send after 1 s */
      if (wolfSSL_update_keys(ssl) == WOLFSSL_SUCCESS) sent++;
      else if (wolfSSL_get_error(ssl, 0) == WOLFSSL_ERROR_WANT_WRITE) usleep(10000);
      else break;               /* closed */
    }
    printf("sent %ld\n", sent);
    fflush(stdout);
    usleep((useconds_t)(secs * 1e6));
  } else {
    char buf[4096], data[1000];
    memset(data, 'A', sizeof(data));
    if ((r = wolfSSL_write(ssl, data, sizeof(data))) != (int)sizeof(data))
      return fail(ssl, r, "write A");
    r = wolfSSL_read(ssl, buf, sizeof(buf));
    if (r > 0 || wolfSSL_get_error(ssl, r) != WOLFSSL_ERROR_ZERO_RETURN)
      return fail(ssl, r, "waiting for close_notify");
    printf("close_notify received\n");
    if ((r = wolfSSL_update_keys(ssl)) != WOLFSSL_SUCCESS) return fail(ssl, r, "key update");
    printf("key update sent\n");
    memset(data, 'B', sizeof(data));
    if ((r = wolfSSL_write(ssl, data, sizeof(data))) != (int)sizeof(data))
      return fail(ssl, r, "write B");
    wolfSSL_shutdown(ssl);
    printf("done\n");
    fflush(stdout);
  }
  wolfSSL_free(ssl);
  wolfSSL_CTX_free(ctx);
  wolfSSL_Cleanup();
  close(fd);
  return 0;
}
