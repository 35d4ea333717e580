#!/usr/bin/env python3
"""`ztproxy identity ca|issue|show`, checked from outside with Python's own X.509 decoder
and OpenSSL (through the ssl module): the SANs, the validity window (--ttl, --backdate),
--dns/--extra-uri/--no-uri, private key file permissions, that OpenSSL accepts an issued
pair for a mutual TLS handshake in both roles, and that invalid IDs are refused.
"""

import os
import socket
import ssl
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import CLIENT_ID, SERVER_ID, TD, check, check_eq, safe_close  # noqa: E402


class Ctx:
    pass


def setup():
    c = Ctx()
    c.ws = ztlib.Workspace()
    c.pki = ztlib.Pki(root=c.ws.dir)
    return c


def teardown(c):
    c.pki.cleanup()
    c.ws.cleanup()


def decode(path):
    return ssl._ssl._test_decode_cert(path)  # CPython's X.509 decoder (stdlib)


def sans(cert, kind):
    return [v for k, v in cert.get("subjectAltName", ()) if k == kind]


def validity(cert):
    return (ssl.cert_time_to_seconds(cert["notBefore"]),
            ssl.cert_time_to_seconds(cert["notAfter"]))


def near(got, want, slack, what):
    check(abs(got - want) <= slack, "%s: %.0f s off (got %s, want about %s)" % (
        what, got - want, time.ctime(got), time.ctime(want)))


def case_ca_fields(c):
    cert, key = c.pki.ca("ttl.example", "ca-48h", ttl="48h")
    d = decode(cert)
    check_eq(sans(d, "URI"), ["spiffe://ttl.example"], "CA URI SAN")
    nb, na = validity(d)
    near(na - nb, 48 * 3600, 120, "CA lifetime")
    check_eq(stat.S_IMODE(os.stat(key).st_mode), 0o600, "CA key file mode")


def case_issue_defaults(c):
    t0 = time.time()
    cert, key = c.pki.issue(CLIENT_ID, name="defaults")
    d = decode(cert)
    check_eq(sans(d, "URI"), [CLIENT_ID], "URI SANs")
    nb, na = validity(d)
    near(nb, t0 - 30, 60, "notBefore (default backdate 30s)")
    near(na - nb, 3600, 2, "lifetime (default ttl 1h)")
    check_eq(stat.S_IMODE(os.stat(key).st_mode), 0o600, "key file mode")


def case_issue_ttl_backdate(c):
    t0 = time.time()
    cert, _ = c.pki.issue(CLIENT_ID, ttl="10m", backdate="5m", name="ttl10m")
    nb, na = validity(decode(cert))
    near(nb, t0 - 300, 60, "notBefore with --backdate 5m")
    near(na - nb, 600, 2, "lifetime with --ttl 10m")


def case_issue_expired(c):
    cert, _ = c.pki.issue(CLIENT_ID, ttl="1h", backdate="2h", name="expired")
    nb, na = validity(decode(cert))
    check(na < time.time() - 1800, "--backdate 2h --ttl 1h is not expired: notAfter %s"
          % time.ctime(na))


def case_issue_sans(c):
    extra = "spiffe://%s/ns/web/sa/other" % TD
    cert, _ = c.pki.issue(CLIENT_ID, dns=["a.example.org", "b.example.org"],
                          extra_uri=[extra], name="sans")
    d = decode(cert)
    check_eq(sorted(sans(d, "URI")), sorted([CLIENT_ID, extra]), "URI SANs")
    check_eq(sorted(sans(d, "DNS")), ["a.example.org", "b.example.org"], "DNS SANs")


def case_issue_no_uri(c):
    cert, _ = c.pki.issue(CLIENT_ID, no_uri=True, dns=["x.example.org"], name="nouri")
    check_eq(sans(decode(cert), "URI"), [], "URI SANs with --no-uri")


def case_openssl_accepts_mutual_handshake(c):
    scert, skey = c.pki.issue(SERVER_ID, name="srv")
    ccert, ckey = c.pki.issue(CLIENT_ID, name="cli")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(scert, skey)
    sctx.load_verify_locations(c.pki.ca_cert)
    sctx.verify_mode = ssl.CERT_REQUIRED
    cctx = ztlib.client_context(ccert, ckey, c.pki.ca_cert, verify=True)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(5)
    result = {}

    def serve():
        try:
            s, _ = ls.accept()
            s.settimeout(5)
            t = sctx.wrap_socket(s, server_side=True)
            result["client_uris"] = sans(t.getpeercert(), "URI")
            t.sendall(b"ok")
            t.close()
        except Exception as e:  # noqa: BLE001
            result["error"] = repr(e)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    s = None
    try:
        s = cctx.wrap_socket(socket.create_connection(ls.getsockname(), timeout=5))
        check_eq(ztlib.recv_exact(s, 2), b"ok", "reply")
        check_eq(sans(s.getpeercert(), "URI"), [SERVER_ID], "server URI SAN seen by OpenSSL")
    finally:
        safe_close(s)
        th.join(timeout=5)
        ls.close()
    check("error" not in result, "OpenSSL server side: %s" % result.get("error"))
    check_eq(result.get("client_uris"), [CLIENT_ID], "client URI SAN seen by OpenSSL")


def case_invalid_ids_refused(c):
    for bad in ("spiffe://Example.org/x", "https://example.org/x", "spiffe://example.org/a//b",
                "spiffe://example.org/a/../b", "spiffe://example.org/x/", "spiffe:///x"):
        out = c.ws.path("bad.pem")
        r = ztlib.run_cli(["identity", "issue", "--ca-cert", c.pki.ca_cert, "--ca-key",
                           c.pki.ca_key, "--id", bad, "--cert", out, "--key",
                           c.ws.path("bad_key.pem")])
        check(r.rc != 0, "issue --id %r succeeded\n%r" % (bad, r))
        check(r.err.strip(), "issue --id %r failed without a word on stderr" % bad)
        check(not os.path.exists(out), "issue --id %r left a certificate behind" % bad)


def case_bad_trust_domain_refused(c):
    r = ztlib.run_cli(["identity", "ca", "--trust-domain", "Bad_Domain!", "--cert",
                       c.ws.path("x.pem"), "--key", c.ws.path("x_key.pem")])
    check(r.rc != 0, "ca --trust-domain 'Bad_Domain!' succeeded\n%r" % r)


def case_show(c):
    cert, _ = c.pki.issue(CLIENT_ID, name="show")
    r = ztlib.run_cli(["identity", "show", cert])
    check_eq(r.rc, 0, "identity show exit status\n%r" % r)
    check(CLIENT_ID in r.out, "identity show does not print the ID\n%r" % r)
    bad, _ = c.pki.issue(CLIENT_ID, no_uri=True, name="show-bad")
    r = ztlib.run_cli(["identity", "show", bad])
    check_eq(r.rc, 1, "identity show on a certificate without URI SAN\n%r" % r)


CASES = [
    ("ca_uri_san_ttl_and_key_mode", case_ca_fields),
    ("issue_defaults_uri_ttl_backdate", case_issue_defaults),
    ("issue_ttl_and_backdate", case_issue_ttl_backdate),
    ("issue_backdate_2h_ttl_1h_is_expired", case_issue_expired),
    ("issue_dns_and_extra_uri", case_issue_sans),
    ("issue_no_uri", case_issue_no_uri),
    ("openssl_accepts_mutual_handshake", case_openssl_accepts_mutual_handshake),
    ("invalid_ids_refused", case_invalid_ids_refused),
    ("bad_trust_domain_refused", case_bad_trust_domain_refused),
    ("identity_show", case_show),
]

if __name__ == "__main__":
    ztlib.run_cases("test_identity", CASES, setup=setup, teardown=teardown)
