#!/usr/bin/env python3
"""The outbound side checks the server it reaches.

An outbound listener whose expect_server lists an ID other than the inbound's SVID closes
the client's connection, the app behind the inbound never sees a connection, and the
outbound logs tls_error server_id_not_expected; with the right ID (alone or in a list), or
with no expect_server at all, traffic flows. Servers played by Python's ssl module with
bad certificates (another CA, expired, a foreign trust domain) are refused too, and no
application byte reaches them.
"""

import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, SERVER_ID, TD, check, check_eq, check_record_shape,  # noqa: E402
                   connect, echo_roundtrip, safe_close)

OTHER_ID = "spiffe://%s/ns/api/sa/other" % TD


def refused_at_outbound(c, out, app_seen, reason):
    """A client of out is closed; out logs tls_error=reason; app_seen() -> (connections,
    bytes) of the application behind the server stays (0, 0)."""
    s = connect(out.port("out"))
    try:
        local = s.getsockname()[1]
        try:
            s.sendall(b"hello, are you the real server?\n")
        except OSError:
            pass
        how, data = ztlib.wait_closed(s, timeout=5)
        check(how != "timeout", "client connection was not closed within 5s (the app "
              "behind the server saw (connections, bytes) = %s; outbound records: %s)"
              % (app_seen(), out.records()))
        check_eq(data, b"", "bytes the client received")
    finally:
        safe_close(s)
    r = out.wait_record(ztlib.by_src_port(local), what="outbound record")
    time.sleep(0.2)
    check_eq(app_seen(), (0, 0), "(connections, bytes) seen by the app behind the server")
    check_record_shape(r, "outbound record")
    check_eq(r["tls_error"], reason, "tls_error")
    check_eq(r["close_reason"], "handshake_failed", "close_reason")
    out.wait_stderr(reason)
    return r


def flows(c, expect_server):
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port) as inp:
            with c.mesh.outbound_proxy(inp.port("in"), expect_server=expect_server) as out:
                s = connect(out.port("out"))
                try:
                    local = s.getsockname()[1]
                    echo_roundtrip(s, b"ping\n")
                    echo_roundtrip(s, b"x" * 50000)
                    s.shutdown(socket.SHUT_WR)
                    ztlib.recv_until_eof(s, timeout=5)
                finally:
                    safe_close(s)
                r = out.wait_record(ztlib.by_src_port(local), what="outbound record")
                check_record_shape(r, "outbound record")
                check_eq(r["peer_id"], SERVER_ID, "peer_id")
                check_eq(r["local_id"], CLIENT_ID, "local_id")
                check(r["tls_error"] is None, "tls_error %r" % r["tls_error"])
                check_eq(r["close_reason"], "eof", "close_reason")
                check_eq(app.connections, 1, "app connections")


def case_wrong_expected_id(c):
    with ztlib.CountingServer() as app:
        with c.mesh.inbound_proxy(app.port) as inp:
            with c.mesh.outbound_proxy(inp.port("in"), expect_server=[OTHER_ID]) as out:
                refused_at_outbound(c, out, lambda: (app.connections, app.bytes_received),
                                    "server_id_not_expected")


def case_right_expected_id(c):
    flows(c, [SERVER_ID])


def case_right_id_in_list(c):
    flows(c, [OTHER_ID, SERVER_ID])


def case_no_expect_server(c):
    flows(c, None)


class TlsServer(ztlib.TcpApp):
    """A Python TLS server with any certificate; counts handshakes and app bytes."""

    def __init__(self, cert, key, ca):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.load_verify_locations(ca)
        self.ctx.verify_mode = ssl.CERT_OPTIONAL
        self.handshakes = 0
        self.app_bytes = 0
        super().__init__()

    def handle(self, s, rec):
        s.settimeout(5)
        try:
            t = self.ctx.wrap_socket(s, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with self.lock:
            self.handshakes += 1
        try:
            while True:
                b = t.recv(65536)
                if not b:
                    return
                with self.lock:
                    self.app_bytes += len(b)
                t.sendall(b)
        except (ssl.SSLError, OSError):
            return
        finally:
            safe_close(t)


def bad_server(c, reason, cert, key):
    srv = TlsServer(cert, key, c.mesh.pki.ca_cert)
    try:
        with c.mesh.outbound_proxy(srv.port) as out:
            refused_at_outbound(c, out, lambda: (0, srv.app_bytes), reason)
    finally:
        srv.close()


def case_python_server_control(c):
    """The Python TLS server with a good SVID works (so the bad cases test the certs)."""
    srv = TlsServer(c.mesh.server["cert"], c.mesh.server["key"], c.mesh.pki.ca_cert)
    try:
        with c.mesh.outbound_proxy(srv.port, expect_server=[SERVER_ID]) as out:
            s = connect(out.port("out"))
            try:
                echo_roundtrip(s, b"hello python tls server\n")
            finally:
                safe_close(s)
        check_eq(srv.handshakes, 1, "handshakes")
    finally:
        srv.close()


def case_server_unknown_ca(c):
    other = c.mesh.pki.ca(TD, "other-ca")
    cert, key = c.mesh.pki.issue(SERVER_ID, ca=other, name="srv-other-ca")
    bad_server(c, "unknown_ca", cert, key)


def case_server_expired(c):
    cert, key = c.mesh.pki.issue(SERVER_ID, backdate="3h", ttl="1h", name="srv-expired")
    bad_server(c, "expired", cert, key)


def case_server_foreign_trust_domain(c):
    cert, key = c.mesh.pki.issue("spiffe://partner.example/ns/api/sa/server",
                                 name="srv-foreign")
    bad_server(c, "foreign_trust_domain", cert, key)


def case_server_no_uri(c):
    cert, key = c.mesh.pki.issue(SERVER_ID, no_uri=True, dns=["localhost"],
                                 name="srv-no-uri")
    bad_server(c, "no_uri_san", cert, key)


CASES = [
    ("wrong_expect_server_refused", case_wrong_expected_id),
    ("right_expect_server_flows", case_right_expected_id),
    ("right_id_in_expect_list_flows", case_right_id_in_list),
    ("no_expect_server_flows", case_no_expect_server),
    ("python_tls_server_control_works", case_python_server_control),
    ("server_from_unknown_ca_refused", case_server_unknown_ca),
    ("expired_server_refused", case_server_expired),
    ("server_of_foreign_trust_domain_refused", case_server_foreign_trust_domain),
    ("server_without_uri_san_refused", case_server_no_uri),
]

if __name__ == "__main__":
    ztlib.run_cases("test_expect_server", CASES, setup=ztlib.mesh_setup, teardown=ztlib.mesh_teardown)
