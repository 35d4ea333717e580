#!/usr/bin/env python3
"""TLS 1.3 KeyUpdate from the peer, on both sides.

A long-lived mTLS connection may change its traffic keys mid-stream (RFC 8446 4.6.3):
some TLS stacks do it on their own after enough records. The peer here is the openssl
command line, driven through its `k` (KeyUpdate) and `K` (KeyUpdate, update requested)
commands:

    openssl s_client (client SVID) ==mTLS==> inbound ztproxy -> echo app
    client -> outbound ztproxy ==mTLS==> openssl s_server (server SVID)

After each update, bytes still flow both ways, byte-exact; after each `K`, ztproxy
answers with a KeyUpdate of its own (counted in openssl's -msg trace), and the
connection ends with no TLS error in the access log.
"""

import os
import shutil
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, SERVER_ID, check, check_eq, check_record_shape,  # noqa: E402
                   connect, recv_exact, safe_close)

OPENSSL = shutil.which("openssl")
SENT_KU = b">>> TLS 1.3, Handshake [length 0005], KeyUpdate"
RECEIVED_KU = b"<<< TLS 1.3, Handshake [length 0005], KeyUpdate"
# The commands sent, in order: a plain exchange first, then one after each update.
COMMANDS = [None, b"k\n", b"K\n", b"k\n", b"K\n"]
# A line's filler: one record each way, so that openssl prints it whole, between the
# lines of its -msg trace.
FILL = b"0123456789" * 100 + b"\n"


class OpensslCli:
    """An `openssl s_client` or `s_server` with -msg: lines written to its stdin go to
    the peer (or are commands), and everything it prints is collected."""

    def __init__(self, args):
        check(OPENSSL is not None, "openssl is not installed (scripts/bootstrap.sh installs it)")
        self.p = subprocess.Popen([OPENSSL] + args + ["-tls1_3", "-msg"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        ztlib._register(self.p)
        self.out = b""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            d = self.p.stdout.read1(65536)
            if not d:
                return
            with self.lock:
                self.out += d

    def text(self):
        with self.lock:
            return self.out

    def wait_for(self, needle, count=1, timeout=10.0):
        ztlib.wait_until(lambda: self.text().count(needle) >= count, timeout,
                         what="openssl to print %r %d time(s) (it printed, at the end: %r)"
                         % (needle, count, self.text()[-400:]))

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def stop(self):
        """`Q`: close_notify, then the end (a FIN alone would be a cut stream)."""
        if self.p.poll() is None:
            try:
                self.write(b"Q\n")
                self.p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
        self.p.wait(timeout=10)
        self.reader.join(timeout=5)


def setup():
    return ztlib.mesh_setup()


def teardown(c):
    c.mesh.cleanup()


def update_keys(cli, cmd, counts):
    """Send one of COMMANDS (None: nothing) and wait until openssl's trace shows every
    KeyUpdate sent so far, and ztproxy's answers to exactly those that asked for one.
    counts: [sent, answered], updated."""
    if cmd is None:
        return
    cli.write(cmd)
    counts[0] += 1
    counts[1] += cmd == b"K\n"
    cli.wait_for(SENT_KU, counts[0])
    if counts[1]:
        cli.wait_for(RECEIVED_KU, counts[1])
    check_eq(cli.text().count(RECEIVED_KU), counts[1],
             "KeyUpdates ztproxy sent (it answers each one that requests it, and only those)")


def case_inbound_peer_updates_keys(c):
    """s_client updates its keys (and asks ztproxy to update its own) between lines;
    every line reaches the app and comes back."""
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port) as inp:
            cl = c.mesh.client
            cli = OpensslCli(["s_client", "-connect", "127.0.0.1:%d" % inp.port("in"),
                              "-cert", cl["cert"], "-key", cl["key"],
                              "-CAfile", c.mesh.pki.ca_cert, "-verify_return_error"])
            try:
                cli.wait_for(b"Verify return code: 0 (ok)")
                counts = [0, 0]
                expect = 0
                for i, cmd in enumerate(COMMANDS):
                    update_keys(cli, cmd, counts)
                    line = b"line %d after %r: " % (i, cmd) + FILL
                    cli.write(line)
                    expect += len(line)
                    cli.wait_for(line)
                ztlib.wait_until(lambda: app.bytes_received == expect, 5,
                                 what="the app to receive %d bytes (got %d)"
                                 % (expect, app.bytes_received))
                check("error" not in cli.text().decode(errors="replace").lower(),
                      "openssl reported an error: %r" % cli.text()[-600:])
            finally:
                cli.stop()
            r = inp.wait_record(lambda r: r["peer_id"] == CLIENT_ID, what="inbound record")
            check_record_shape(r, "inbound record")
            check(r["tls_error"] is None, "tls_error %r" % r["tls_error"])
            check_eq(r["bytes_in"], expect, "bytes_in")
            check_eq(r["bytes_out"], expect, "bytes_out")


def case_outbound_server_updates_keys(c):
    """s_server updates its keys (and asks ztproxy to) between lines: each line it sends
    reaches the client, and each line the client sends reaches s_server."""
    port = ztlib.free_port()
    sv = c.mesh.server
    srv = OpensslCli(["s_server", "-accept", "127.0.0.1:%d" % port, "-naccept", "1",
                      "-cert", sv["cert"], "-key", sv["key"], "-CAfile", c.mesh.pki.ca_cert,
                      "-Verify", "2", "-verify_return_error"])
    try:
        srv.wait_for(b"ACCEPT")
        with c.mesh.outbound_proxy(port, expect_server=[SERVER_ID]) as out:
            s = connect(out.port("out"))
            try:
                local = s.getsockname()[1]
                s.sendall(b"hello\n")
                srv.wait_for(b"hello\n")
                counts = [0, 0]
                for i, cmd in enumerate(COMMANDS):
                    update_keys(srv, cmd, counts)
                    down = b"down %d\n" % i
                    srv.write(down)
                    check_eq(recv_exact(s, len(down), timeout=10), down, "line from s_server")
                    up = b"up %d after %r\n" % (i, cmd)
                    s.sendall(up)
                    srv.wait_for(up)
            finally:
                safe_close(s)
            r = out.wait_record(ztlib.by_src_port(local), what="outbound record")
            check_record_shape(r, "outbound record")
            check_eq(r["peer_id"], SERVER_ID, "peer_id")
            check(r["tls_error"] is None, "tls_error %r" % r["tls_error"])
    finally:
        srv.stop()


CASES = [
    ("inbound_peer_updates_keys", case_inbound_peer_updates_keys),
    ("outbound_server_updates_keys", case_outbound_server_updates_keys),
]

if __name__ == "__main__":
    ztlib.run_cases("test_keyupdate", CASES, setup=setup, teardown=teardown)
