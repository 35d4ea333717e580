#!/usr/bin/env python3
"""Client certificates the inbound listener must refuse.

A raw Python TLS client presents a certificate made with `ztproxy identity issue` (or
none): from another CA, expired, without a URI SAN, with two URI SANs, a CA certificate as
leaf, an ID of a foreign trust domain issued by our own CA, a corrupted signature, a
non-SPIFFE URI, no certificate at all. For each: the handshake or the first read fails,
the app sees no connection and receives no byte, and the inbound names the reason in the
access log (tls_error, close_reason handshake_failed) and on stderr. A good certificate on
the same listener works (the control).
"""

import base64
import os
import re
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, TD, check, check_eq, check_record_shape,  # noqa: E402
                   echo_roundtrip, safe_close)


class Ctx:
    pass


def setup():
    c = Ctx()
    c.mesh = ztlib.Mesh()
    c.pki = c.mesh.pki
    c.app = ztlib.CountingServer()
    pol = ztlib.policy([ztlib.rule("any-in-td", "allow", ["spiffe://%s/*" % TD])])
    c.inp = c.mesh.inbound_proxy(c.app.port, pol=pol, name="in",
                                 handshake_timeout="5s")
    c.inp.start()
    c.echo = ztlib.EchoServer()
    c.inp_echo = c.mesh.inbound_proxy(c.echo.port, pol=pol, name="in-echo")
    c.inp_echo.start()
    return c


def teardown(c):
    for p in (c.inp, c.inp_echo):
        p.kill()
    c.app.close()
    c.echo.close()
    c.mesh.cleanup()


def attempt(port, cert=None, key=None, ca=None, max_version=None):
    """Connect + handshake + write + read. Returns (local_port, outcome, bytes_read).
    outcome: "handshake:<error>" when the handshake failed, else how the read ended."""
    ctx = ztlib.client_context(cert, key, ca, verify=ca is not None)
    if max_version:
        ctx.maximum_version = max_version
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    raw.settimeout(5)
    local = raw.getsockname()[1]
    try:
        try:
            s = ctx.wrap_socket(raw, server_side=False)
        except (ssl.SSLError, OSError) as e:
            return local, "handshake:%s" % e.__class__.__name__, b""
        try:
            try:
                s.sendall(b"GET / HTTP/1.0\r\n\r\nthis must not reach the app\n")
            except (ssl.SSLError, OSError):
                pass
            how, data = ztlib.wait_closed(s, timeout=5)
            return local, how, data
        finally:
            safe_close(s)
    finally:
        safe_close(raw)


def refused(c, reason, cert=None, key=None, max_version=None):
    before_conns, before_bytes = c.app.connections, c.app.bytes_received
    local, how, data = attempt(c.inp.port("in"), cert, key, max_version=max_version)
    check(how != "timeout",
          "connection with a bad certificate (%s) was neither refused nor closed in 5s"
          % reason)
    check_eq(data, b"", "bytes the refused client received")
    r = c.inp.wait_record(ztlib.by_src_port(local), what="record of src port %d" % local)
    time.sleep(0.2)
    check_eq(c.app.connections - before_conns, 0, "app connections")
    check_eq(c.app.bytes_received - before_bytes, 0, "bytes that reached the app")
    check_record_shape(r, "record")
    check_eq(r["tls_error"], reason, "tls_error")
    check_eq(r["close_reason"], "handshake_failed", "close_reason")
    check_eq(r["decision"], "none", "decision")
    check_eq(r["bytes_in"], 0, "bytes_in")
    check_eq(r["bytes_out"], 0, "bytes_out")
    c.inp.wait_stderr(reason)
    return r


def case_control_good_cert(c):
    cl = c.mesh.client
    port, s = ztlib.tls_connect(c.inp_echo.port("in"), cert=cl["cert"], key=cl["key"],
                                ca=c.pki.ca_cert)
    try:
        echo_roundtrip(s, b"good certificate\n")
    finally:
        safe_close(s)
    r = c.inp_echo.wait_record(ztlib.by_src_port(port), what="record of the good client")
    check_eq(r["decision"], "allow", "decision")
    check_eq(r["peer_id"], CLIENT_ID, "peer_id")
    check(r["tls_error"] is None, "tls_error %r" % r["tls_error"])


def case_unknown_ca(c):
    other = c.pki.ca(TD, "other-ca")
    cert, key = c.pki.issue(CLIENT_ID, ca=other, name="other-ca-client")
    refused(c, "unknown_ca", cert, key)


def case_expired(c):
    cert, key = c.pki.issue(CLIENT_ID, backdate="2h", ttl="1h", name="expired")
    refused(c, "expired", cert, key)


def case_no_uri_san(c):
    cert, key = c.pki.issue(CLIENT_ID, no_uri=True, dns=["client.example.org"],
                            name="no-uri")
    refused(c, "no_uri_san", cert, key)


def case_multiple_uri_sans(c):
    cert, key = c.pki.issue(CLIENT_ID, extra_uri=["spiffe://%s/ns/web/sa/other" % TD],
                            name="two-uris")
    refused(c, "multiple_uri_sans", cert, key)


def case_leaf_is_ca(c):
    cert, key = c.pki.issue(CLIENT_ID, is_ca=True, name="ca-as-leaf")
    refused(c, "leaf_is_ca", cert, key)


def case_foreign_trust_domain(c):
    cert, key = c.pki.issue("spiffe://partner.example/ns/web/sa/client", name="foreign")
    refused(c, "foreign_trust_domain", cert, key)


def case_no_client_cert(c):
    refused(c, "no_client_cert")


def case_non_spiffe_uri(c):
    cert, key = c.pki.issue(CLIENT_ID, no_uri=True, extra_uri=["https://%s/web" % TD],
                            name="https-uri")
    refused(c, "invalid_spiffe_id", cert, key)


def _corrupt_signature(src, dst):
    """Copy a PEM certificate with the last byte of its signature flipped (the DER stays
    well-formed: it is the last byte of the ECDSA s INTEGER)."""
    text = open(src).read()
    m = re.search(r"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----",
                  text, re.S)
    der = bytearray(base64.b64decode("".join(m.group(1).split())))
    der[-1] ^= 0x01
    b64 = base64.b64encode(bytes(der)).decode()
    pem = "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % "\n".join(
        b64[i:i + 64] for i in range(0, len(b64), 64))
    with open(dst, "w") as f:
        f.write(pem)
    return dst


def case_bad_signature(c):
    cert, key = c.pki.issue(CLIENT_ID, name="to-corrupt")
    bad = _corrupt_signature(cert, cert + ".badsig.pem")
    refused(c, "bad_signature", bad, key)


def case_tls12_only_client(c):
    """TLS 1.3 is the default; a client that offers at most TLS 1.2 is refused."""
    cl = c.mesh.client
    refused(c, "tls_error", cl["cert"], cl["key"], max_version=ssl.TLSVersion.TLSv1_2)


def case_app_never_saw_anything(c):
    check_eq(c.app.connections, 0, "connections the app saw over all cases")
    check_eq(c.app.bytes_received, 0, "bytes the app received over all cases")


def case_exit_cleanly(c):
    c.inp.stop()
    c.inp_echo.stop()


CASES = [
    ("control_good_certificate_works", case_control_good_cert),
    ("unknown_ca", case_unknown_ca),
    ("expired", case_expired),
    ("no_uri_san", case_no_uri_san),
    ("multiple_uri_sans", case_multiple_uri_sans),
    ("leaf_is_ca", case_leaf_is_ca),
    ("foreign_trust_domain", case_foreign_trust_domain),
    ("no_client_cert", case_no_client_cert),
    ("bad_signature", case_bad_signature),
    ("non_spiffe_uri_is_invalid_spiffe_id", case_non_spiffe_uri),
    ("tls12_only_client_refused", case_tls12_only_client),
    ("app_never_saw_a_connection", case_app_never_saw_anything),
    ("sigterm_exit_0_no_sanitizer_report", case_exit_cleanly),
]

if __name__ == "__main__":
    ztlib.run_cases("test_bad_certs", CASES, setup=setup, teardown=teardown)
