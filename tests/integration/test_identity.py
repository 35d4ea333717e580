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


def case_issue_capped_by_the_ca(c):
    """Nothing outlives its issuer: an intermediate asking for more than its root has
    gets the root's notAfter, and so does a leaf asking for more than its intermediate
    (and the root above it) has; each says so on stderr. A --ttl that fits is kept."""
    root, rkey = c.pki.ca("cap.example", "cap-root", ttl="2h")
    ica = os.path.join(c.pki.dir, "cap-ica.pem")
    ikey = os.path.join(c.pki.dir, "cap-ica_key.pem")
    r = ztlib.run_cli(["identity", "ca", "--trust-domain", "cap.example", "--cert", ica,
                       "--key", ikey, "--ttl", "3h", "--ca-cert", root, "--ca-key", rkey])
    check_eq(r.rc, 0, "identity ca (intermediate, 3h under a 2h root)\n%r" % r)
    check("notAfter is the CA's" in r.err, "no note of the cap on stderr\n%r" % r)
    root_after = validity(decode(root))[1]
    check_eq(validity(decode(ica))[1], root_after, "intermediate's notAfter")
    leaf = os.path.join(c.pki.dir, "cap-leaf.pem")
    for ttl, capped in (("5h", True), ("30m", False)):
        r = ztlib.run_cli(["identity", "issue", "--ca-cert", ica, "--ca-key", ikey,
                           "--id", "spiffe://cap.example/x", "--cert", leaf,
                           "--key", leaf + ".key", "--ttl", ttl])
        check_eq(r.rc, 0, "identity issue --ttl %s\n%r" % (ttl, r))
        check_eq("notAfter is the CA's" in r.err, capped, "note of the cap (--ttl %s)\n%r"
                 % (ttl, r))
        nb, na = validity(decode(leaf))
        if capped:
            check_eq(na, root_after, "leaf's notAfter with --ttl 5h")
        else:
            near(na - nb, 1800, 2, "lifetime with --ttl 30m")


def case_ttl_within_default_backdate_refused(c):
    """notAfter counts from the backdated notBefore: --ttl 4s with the default 30 s
    backdate would be expired when written, so it is refused and nothing is written;
    with an explicit --backdate it is what was asked for."""
    cert = os.path.join(c.pki.dir, "born-expired.pem")
    args = ["identity", "issue", "--ca-cert", c.pki.ca_cert, "--ca-key", c.pki.ca_key,
            "--id", CLIENT_ID, "--cert", cert, "--key", cert + ".key", "--ttl", "4s"]
    r = ztlib.run_cli(args)
    check_eq(r.rc, 2, "exit status of issue --ttl 4s\n%r" % r)
    check("expired when written" in r.err, "the reason on stderr\n%r" % r)
    check(not os.path.exists(cert), "a certificate was written")
    r = ztlib.run_cli(args + ["--backdate", "1s"])
    check_eq(r.rc, 0, "exit status of issue --ttl 4s --backdate 1s\n%r" % r)
    nb, na = validity(decode(cert))
    near(na - nb, 4, 1, "lifetime with --ttl 4s --backdate 1s")


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
    ("issue_capped_by_the_ca", case_issue_capped_by_the_ca),
    ("ttl_within_default_backdate_refused", case_ttl_within_default_backdate_refused),
    ("issue_dns_and_extra_uri", case_issue_sans),
    ("issue_no_uri", case_issue_no_uri),
    ("openssl_accepts_mutual_handshake", case_openssl_accepts_mutual_handshake),
    ("invalid_ids_refused", case_invalid_ids_refused),
    ("bad_trust_domain_refused", case_bad_trust_domain_refused),
    ("identity_show", case_show),
]

if __name__ == "__main__":
    ztlib.run_cases("test_identity", CASES, setup=setup, teardown=teardown)
