#!/usr/bin/env python3
"""TLS 1.3 session resumption between ztproxy's outbound and inbound listeners.

A resumed handshake carries no certificate, so the inbound must recover the client's
SPIFFE ID from the ticket it issued (and the outbound the server's from its cache):
the policy still decides on the real peer, the access log and metrics say resumed, a
rotation of the outbound's identity drops its tickets, a rotation of the inbound's
makes old tickets worthless, and `resumption: false` turns it off."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, SERVER_ID, TD, check, check_eq, connect,  # noqa: E402
                   echo_roundtrip, expect_closed, policy, rule, safe_close)

OTHER = "spiffe://%s/ns/other/sa/x" % TD
ONE = {"workers": 1}


def call(port, msg=b"ping"):
    s = connect(port)
    try:
        echo_roundtrip(s, msg)
    finally:
        safe_close(s)


def inbound_records(inp, n):
    """The first n records in the order the connections were accepted (one worker:
    conn_id grows with each accept; records are written when connections close, and a
    connection may close after the next one has started)."""
    recs = inp.wait_records(n, what="%d inbound records" % n)
    return sorted(recs, key=lambda r: r["conn_id"])[:n]


def case_second_connection_resumes_with_the_real_peer(c):
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port, cfg_extra=ONE) as inp:
            with c.mesh.outbound_proxy(inp.port("in"), cfg_extra=ONE) as out:
                for i in range(3):
                    call(out.port("out"), b"call %d" % i)
                recs = inbound_records(inp, 3)
                check_eq(recs[0]["tls_resumed"], False, "first connection: full handshake")
                check_eq(recs[1]["tls_resumed"], True, "second connection resumed")
                check_eq(recs[2]["tls_resumed"], True, "third connection resumed")
                for r in recs:
                    check_eq(r["peer_id"], CLIENT_ID, "peer_id (from the ticket when resumed)")
                    check_eq(r["decision"], "allow", "decision")
                    check_eq(r["rule"], "web-to-api", "rule")
                check_eq(recs[1]["peer_cert_sha256"], recs[0]["peer_cert_sha256"],
                         "the credential that admitted the resumed session")
                orecs = sorted(out.wait_records(3, what="outbound records"),
                               key=lambda r: r["conn_id"])
                check_eq([r["peer_id"] for r in orecs], [SERVER_ID] * 3, "server id outbound")
                check_eq(orecs[2]["tls_resumed"], True, "outbound says resumed")


def case_resumed_peer_still_goes_through_policy(c):
    """A ticket does not bypass the policy: a peer the policy refuses is refused on
    the resumed handshake too (its identity comes from the ticket)."""
    other = c.mesh.pki.identity(OTHER, name="other")
    with ztlib.CountingServer() as app:
        pol = policy([rule("only-client", "allow", [CLIENT_ID], ports=[app.port])])
        with c.mesh.inbound_proxy(app.port, pol=pol, cfg_extra=ONE) as inp:
            with c.mesh.outbound_proxy(inp.port("in"), identity=other, cfg_extra=ONE) as out:
                for _ in range(3):
                    s = connect(out.port("out"))
                    try:
                        s.sendall(b"x")
                    except OSError:
                        pass
                    expect_closed(s, what="denied connection")
                    safe_close(s)
                recs = inbound_records(inp, 3)
                for r in recs:
                    check_eq(r["peer_id"], OTHER, "peer_id")
                    check_eq(r["close_reason"], "peer_not_allowed", "close_reason")
                check_eq(app.connections, 0, "app connections")


def case_resumption_off(c):
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port, cfg_extra=ONE, resumption=False) as inp:
            with c.mesh.outbound_proxy(inp.port("in"), cfg_extra=ONE) as out:
                for i in range(3):
                    call(out.port("out"))
                check_eq([r["tls_resumed"] for r in inbound_records(inp, 3)],
                         [False] * 3, "no inbound tickets")
        with c.mesh.inbound_proxy(app.port, cfg_extra=ONE) as inp:
            with c.mesh.outbound_proxy(inp.port("in"), cfg_extra=ONE,
                                       resumption=False) as out:
                for i in range(3):
                    call(out.port("out"))
                check_eq([r["tls_resumed"] for r in inbound_records(inp, 3)],
                         [False] * 3, "the outbound never offers a ticket")


def case_rotation_drops_tickets(c):
    ident = c.mesh.pki.identity(CLIENT_ID, name="rotating-client")
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port, cfg_extra=ONE) as inp:
            with c.mesh.outbound_proxy(inp.port("in"), identity=ident, cfg_extra=ONE) as out:
                call(out.port("out"))
                call(out.port("out"))
                # Replace the outbound's SVID (same ID, new serial): its tickets go.
                cert, key = c.mesh.pki.issue(CLIENT_ID, name="rotated-client")
                for src, dst in ((key, ident["key"]), (cert, ident["cert"])):
                    tmp = dst + ".tmp"
                    with open(src, "rb") as f, open(tmp, "wb") as g:
                        g.write(f.read())
                    os.replace(tmp, dst)
                out.wait_stderr("identity reloaded", timeout=10)
                time.sleep(0.2)   # the worker takes the new snapshot on its next turn
                call(out.port("out"))
                call(out.port("out"))
                recs = inbound_records(inp, 4)
                check_eq([r["tls_resumed"] for r in recs], [False, True, False, True],
                         "full, resumed, full after rotation, resumed")
                check(recs[2]["peer_cert_serial"] != recs[0]["peer_cert_serial"],
                      "the full handshake after rotation presented the new SVID")


CASES = [
    ("second_connection_resumes_with_the_real_peer",
     case_second_connection_resumes_with_the_real_peer),
    ("resumed_peer_still_goes_through_policy", case_resumed_peer_still_goes_through_policy),
    ("resumption_off", case_resumption_off),
    ("rotation_drops_tickets", case_rotation_drops_tickets),
]

if __name__ == "__main__":
    ztlib.run_cases("test_resumption", CASES, setup=ztlib.mesh_setup, teardown=ztlib.mesh_teardown)
