#!/usr/bin/env python3
"""Authorisation on the inbound side, through a real outbound ztproxy holding the SVID:

an identity the policy does not allow never reaches the app (zero connections, zero
bytes), the client's connection is closed, and the inbound access log says decision deny
with the deciding rule ("default", or the named deny rule: deny rules win over allow
rules) and close_reason peer_not_allowed. Also: port-scoped rules, wildcard prefixes stop
at a segment boundary, audit mode lets a denied peer through, default allow.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, SERVER_ID, TD, check, check_eq, check_record_shape,  # noqa: E402
                   connect, echo_roundtrip, expect_closed, policy, rule, safe_close)

INTRUDER = "spiffe://%s/ns/evil/sa/intruder" % TD
WEBAPP = "spiffe://%s/ns/webapp/sa/x" % TD
WEB_Y = "spiffe://%s/ns/web/sa/y" % TD


class Ctx:
    pass


def setup():
    c = Ctx()
    c.mesh = ztlib.Mesh()
    c.ids = {
        CLIENT_ID: c.mesh.client,
        INTRUDER: c.mesh.pki.identity(INTRUDER, name="intruder"),
        WEBAPP: c.mesh.pki.identity(WEBAPP, name="webapp"),
        WEB_Y: c.mesh.pki.identity(WEB_Y, name="web_y"),
    }
    return c


def teardown(c):
    c.mesh.cleanup()


def expect_denied(c, polfn, peer_id, want_rule):
    """Inbound with policy polfn(app_port); a client behind an outbound proxy holding
    peer_id's SVID is refused. Returns the inbound's record."""
    with ztlib.CountingServer() as app:
        with c.mesh.inbound_proxy(app.port, pol=polfn(app.port)) as inp:
            with c.mesh.outbound_proxy(inp.port("in"), identity=c.ids[peer_id]) as out:
                s = ztlib.connect_or_reset(out.port("out"))
                if s is not None:   # else reset before connect() returned: refused too
                    try:
                        try:
                            s.sendall(b"secret payload that must not reach the app\n")
                        except OSError:
                            pass  # already closed: fine
                        expect_closed(s, timeout=5, what="client connection of a denied peer")
                    finally:
                        safe_close(s)
                r = inp.wait_record(lambda r: r.get("peer_id") == peer_id,
                                    what="inbound record for %s" % peer_id)
                time.sleep(0.3)  # a wrong, late upstream connect would show by now
                check_eq(app.connections, 0, "app connections")
                check_eq(app.bytes_received, 0, "bytes that reached the app")
                check_record_shape(r, "inbound deny record")
                check_eq(r["decision"], "deny", "decision")
                check_eq(r["rule"], want_rule, "rule")
                check_eq(r["close_reason"], "peer_not_allowed", "close_reason")
                check_eq(r["tls_version"], "TLSv1.3", "tls_version")
                check_eq(r["local_id"], SERVER_ID, "local_id")
                check(r["tls_error"] is None, "tls_error %r, want null" % r["tls_error"])
                check_eq(r["dst"], "127.0.0.1:%d" % app.port, "dst")
                return r


def expect_allowed(c, polfn, peer_id, want_rule, want_decision="allow"):
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port, pol=polfn(app.port)) as inp:
            with c.mesh.outbound_proxy(inp.port("in"), identity=c.ids[peer_id]) as out:
                s = connect(out.port("out"))
                try:
                    echo_roundtrip(s, b"may I?\n")
                    s.shutdown(socket.SHUT_WR)
                    ztlib.recv_until_eof(s, timeout=5)
                finally:
                    safe_close(s)
                r = inp.wait_record(lambda r: r.get("peer_id") == peer_id,
                                    what="inbound record for %s" % peer_id)
                check_eq(app.connections, 1, "app connections")
                check_record_shape(r, "inbound record")
                check_eq(r["decision"], want_decision, "decision")
                check_eq(r["rule"], want_rule, "rule")
                check_eq(r["close_reason"], "eof", "close_reason")
                return r


def only_client(port):
    return policy([rule("web-to-api", "allow", [CLIENT_ID], ports=[port])])


def allow_all_but_intruder(port):
    # the deny rule comes last: it must still win over the matching allow rule
    return policy([rule("mesh-wide", "allow", ["spiffe://%s/*" % TD], ports=[port]),
                   rule("block-intruder", "deny", [INTRUDER])])


def case_default_deny(c):
    expect_denied(c, only_client, INTRUDER, "default")


def case_allowed_peer_passes(c):
    expect_allowed(c, only_client, CLIENT_ID, "web-to-api")


def case_named_deny_rule_wins(c):
    expect_denied(c, allow_all_but_intruder, INTRUDER, "block-intruder")


def case_others_pass_beside_deny_rule(c):
    expect_allowed(c, allow_all_but_intruder, CLIENT_ID, "mesh-wide")


def case_deny_rule_with_star(c):
    pol = lambda p: policy([rule("ops", "allow", [CLIENT_ID], ports=[p]),  # noqa: E731
                            rule("lockdown", "deny", ["*"])], default="allow")
    expect_denied(c, pol, CLIENT_ID, "lockdown")


def case_port_not_in_rule(c):
    pol = lambda p: policy([rule("web-to-other", "allow", [CLIENT_ID],  # noqa: E731
                                 ports=[p + 1 if p < 65535 else p - 1, "1-3"])])
    expect_denied(c, pol, CLIENT_ID, "default")


def case_port_range_matches(c):
    pol = lambda p: policy([rule("range", "allow", [CLIENT_ID],  # noqa: E731
                                 ports=["%d-%d" % (max(1, p - 5), min(65535, p + 5))])])
    expect_allowed(c, pol, CLIENT_ID, "range")


def case_wildcard_stops_at_segment(c):
    pol = lambda p: policy([rule("web-ns", "allow", ["spiffe://%s/ns/web/*" % TD],  # noqa
                                 ports=[p])])
    expect_denied(c, pol, WEBAPP, "default")


def case_wildcard_matches_below(c):
    pol = lambda p: policy([rule("web-ns", "allow", ["spiffe://%s/ns/web/*" % TD],  # noqa
                                 ports=[p])])
    expect_allowed(c, pol, WEB_Y, "web-ns")


def case_audit_mode_lets_through(c):
    pol = lambda p: policy([rule("web-to-api", "allow", [CLIENT_ID], ports=[p])],  # noqa
                           mode="audit")
    expect_allowed(c, pol, INTRUDER, "default", want_decision="deny")


def case_default_allow(c):
    pol = lambda p: policy([], default="allow")  # noqa: E731
    expect_allowed(c, pol, INTRUDER, "default")


def case_direct_tls_client_denied(c):
    """A raw TLS client with the intruder's SVID, straight at the inbound listener."""
    with ztlib.CountingServer() as app:
        with c.mesh.inbound_proxy(app.port, pol=only_client(app.port)) as inp:
            idt = c.ids[INTRUDER]
            port, s = ztlib.tls_connect(inp.port("in"), cert=idt["cert"], key=idt["key"],
                                        ca=c.mesh.pki.ca_cert)
            try:
                try:
                    s.sendall(b"let me in\n")
                except OSError:
                    pass
                how, data = expect_closed(s, timeout=5, what="denied TLS client")
                check_eq(data, b"", "bytes the denied client received")
            finally:
                safe_close(s)
            r = inp.wait_record(ztlib.by_src_port(port), what="record of the TLS client")
            time.sleep(0.2)
            check_eq(app.connections, 0, "app connections")
            check_eq(r["close_reason"], "peer_not_allowed", "close_reason")
            check_eq(r["peer_id"], INTRUDER, "peer_id")


CASES = [
    ("default_deny_closes_and_app_sees_nothing", case_default_deny),
    ("allowed_peer_passes", case_allowed_peer_passes),
    ("named_deny_rule_wins_over_allow", case_named_deny_rule_wins),
    ("other_peers_pass_beside_deny_rule", case_others_pass_beside_deny_rule),
    ("deny_star_wins_over_exact_allow", case_deny_rule_with_star),
    ("port_not_in_rule_is_denied", case_port_not_in_rule),
    ("port_range_matches", case_port_range_matches),
    ("wildcard_stops_at_segment_boundary", case_wildcard_stops_at_segment),
    ("wildcard_matches_below_prefix", case_wildcard_matches_below),
    ("audit_mode_logs_deny_and_lets_through", case_audit_mode_lets_through),
    ("default_allow", case_default_allow),
    ("direct_tls_client_denied", case_direct_tls_client_denied),
]

if __name__ == "__main__":
    ztlib.run_cases("test_deny", CASES, setup=setup, teardown=teardown)
