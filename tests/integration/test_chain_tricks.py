#!/usr/bin/env python3
"""A peer with valid material of the trust domain, arranged to slip past a check:

- a revoked SVID sent with other CA certificates of the trust domain between it and its
  issuer ([leaf, root, intermediate], [leaf, revoked intermediate, sibling intermediate],
  [leaf revoked by the root, some intermediate]) is still refused as revoked;
- an intermediate that an earlier peer's chain brought is not trusted afterwards: once
  it has expired, a leaf it issued is refused when sent alone;
- an inbound listener with `resumption: false` refuses a session ticket that another
  listener of the same process issued, and asks for the certificate;
- a federated partner's CA certificate with the subject and key identifier of one of
  ours (or of another partner's root) neither vouches for our IDs (or theirs) nor
  makes our (their) own workloads fail.

Each refusal is checked at the app too: it sees no connection and no byte.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import CLIENT_ID, TD, check, check_eq, echo_roundtrip, safe_close  # noqa: E402

ROOT_ID = "spiffe://%s" % TD


def setup():
    c = ztlib.mesh_setup()
    pki = c.mesh.pki
    c.ica1 = pki.issue(ROOT_ID, is_ca=True, ttl="2h", name="ica1")
    c.ica2 = pki.issue(ROOT_ID, is_ca=True, ttl="2h", name="ica2")
    c.leaf1 = pki.issue(CLIENT_ID, ca=c.ica1, name="leaf-under-ica1")
    c.root_leaf = pki.issue(CLIENT_ID, name="leaf-under-root")
    return c


def teardown(c):
    c.mesh.cleanup()


def serial(cert_path):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", cert_path],
                         capture_output=True, text=True, timeout=10)
    check(out.returncode == 0 and out.stdout.startswith("serial="),
          "openssl x509 -serial: %r" % (out,))
    return out.stdout.strip().split("=", 1)[1].lower()


def crl(c, ca, serials, name):
    path = c.mesh.ws.path(name + ".crl.pem")
    args = ["identity", "revoke", "--ca-cert", ca[0], "--ca-key", ca[1], "--out", path]
    for s in serials:
        args += ["--serial", s]
    r = ztlib.run_cli(args)
    check(r.rc == 0 and os.path.exists(path), "identity revoke failed: %r" % r)
    return path


def chain_file(c, name, *certs):
    """A certificate file holding exactly these certificates, in this order (each
    issued file may hold its parents too: only its first certificate is taken)."""
    path = c.mesh.ws.path(name + ".pem")
    with open(path, "w") as f:
        for cert in certs:
            pem = open(cert).read()
            end = pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
            f.write(pem[:end] + "\n")
    return path


def refused(inp, app, cert, key, reasons, what):
    """A TLS client presenting cert (a chain file) is refused with a tls_error of
    reasons (a string or a tuple); the app behind inp sees nothing."""
    reasons = (reasons,) if isinstance(reasons, str) else reasons
    before = (app.connections, app.bytes_received)
    raw = ztlib.connect(inp.port("in"))
    local = raw.getsockname()[1]
    try:
        s = ztlib.client_context(cert, key, verify=False).wrap_socket(raw)
    except OSError:                  # refused within the handshake
        s = None
    finally:
        if s is None:
            safe_close(raw)
    if s is not None:
        try:
            s.sendall(b"a byte from a peer that should be refused\n")
        except OSError:
            pass
        how, data = ztlib.wait_closed(s, timeout=5)
        safe_close(s)
        check(how != "timeout", "%s: the connection stayed open" % what)
        check_eq(data, b"", "%s: bytes the client got back" % what)
    r = inp.wait_record(ztlib.by_src_port(local), what="%s: its record" % what)
    check(r["tls_error"] in reasons, "%s: tls_error %r, not one of %s"
          % (what, r["tls_error"], reasons))
    check_eq(r["close_reason"], "handshake_failed", "%s: close_reason" % what)
    time.sleep(0.2)
    check_eq((app.connections, app.bytes_received), before,
             "%s: (connections, bytes) at the app" % what)


def accepted(inp, cert, key, what):
    port, s = ztlib.tls_connect(inp.port("in"), cert, key, verify=False)
    try:
        echo_roundtrip(s, b"%s\n" % what.encode())
    finally:
        safe_close(s)
    return port


def case_revoked_leaf_reordered_chain(c):
    """ica1's CRL revokes leaf1: refused in order, and with the root sent between them."""
    crl_path = crl(c, c.ica1, [serial(c.leaf1[0])], "ica1-revokes-leaf1")
    ident = dict(c.mesh.server, crl=[crl_path])
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port, identity=ident) as inp:
            key = c.leaf1[1]
            refused(inp, app, chain_file(c, "l1-ica1", c.leaf1[0], c.ica1[0]), key,
                    "revoked", "[leaf, ica1]")
            refused(inp, app, chain_file(c, "l1-root-ica1", c.leaf1[0], c.mesh.pki.ca_cert,
                                         c.ica1[0]), key,
                    "revoked", "[leaf, root, ica1]")
            refused(inp, app, chain_file(c, "l1-ica2-ica1", c.leaf1[0], c.ica2[0],
                                         c.ica1[0]), key,
                    "revoked", "[leaf, ica2, ica1]")
            # control: an SVID of the same intermediate that is not revoked passes
            other = c.mesh.pki.issue(CLIENT_ID, ca=c.ica1, name="leaf-under-ica1-ok")
            accepted(inp, chain_file(c, "ok-ica1", other[0], c.ica1[0]), other[1],
                     "not revoked")


def root_crl_refuses(c, revoked, leaf, chains):
    """With the root's CRL revoking the certificate revoked, leaf's key presenting each
    of chains ([(name, [cert files]), ...]) is refused as revoked."""
    crl_path = crl(c, (c.mesh.pki.ca_cert, c.mesh.pki.ca_key), [serial(revoked)],
                   "root-revokes-" + chains[0][0])
    ident = dict(c.mesh.server, crl=[crl_path])
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port, identity=ident) as inp:
            for name, certs in chains:
                refused(inp, app, chain_file(c, name, *certs), leaf[1], "revoked", name)


def case_revoked_intermediate_behind_sibling(c):
    """The root's CRL revokes ica1: a leaf of ica1 is refused, also when ica2 follows."""
    root_crl_refuses(c, c.ica1[0], c.leaf1,
                     [("leaf-ica1", [c.leaf1[0], c.ica1[0]]),
                      ("leaf-ica1-ica2", [c.leaf1[0], c.ica1[0], c.ica2[0]])])


def case_root_revoked_leaf_with_extra_intermediate(c):
    """The root's CRL revokes a leaf it issued: refused alone and with ica2 after it."""
    root_crl_refuses(c, c.root_leaf[0], c.root_leaf,
                     [("rootleaf", [c.root_leaf[0]]),
                      ("rootleaf-ica2", [c.root_leaf[0], c.ica2[0]])])


def case_intermediate_not_remembered(c):
    """A short-lived intermediate, presented once while valid, does not vouch for its
    leaf sent alone after it has expired (nor before: it was never a root)."""
    pki = c.mesh.pki
    born = time.time()
    # 40 s counted from notBefore, which `identity issue` sets 30 s back: 10 s left
    short = pki.issue(ROOT_ID, is_ca=True, ttl="40s", name="ica-short")
    leaf = pki.issue(CLIENT_ID, ca=short, name="leaf-under-short")
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port) as inp:
            accepted(inp, chain_file(c, "short-full", leaf[0], short[0]), leaf[1],
                     "leaf and its intermediate")
            refused(inp, app, chain_file(c, "short-alone-1", leaf[0]), leaf[1],
                    "unknown_ca", "leaf alone, intermediate still valid")
            time.sleep(max(0.0, born + 11.0 - time.time()))
            refused(inp, app, chain_file(c, "short-full-2", leaf[0], short[0]), leaf[1],
                    "expired", "leaf and its expired intermediate")
            refused(inp, app, chain_file(c, "short-alone-2", leaf[0]), leaf[1],
                    ("unknown_ca", "expired"), "leaf alone, intermediate expired")


def case_ticket_refused_where_resumption_off(c):
    """Listeners a (resumption on) and b (off) in one process: a's ticket resumes at a,
    and at b it is refused, so that b asks for the certificate again."""
    with ztlib.EchoServer() as app:
        ppath = c.mesh.policy_file(c.mesh.allow_client_policy(app.port), "tickets-policy")
        cfg = {"identity": c.mesh.server,
               "listeners": [ztlib.inbound("a", ztlib.free_port(), app.port, ppath),
                             ztlib.inbound("b", ztlib.free_port(), app.port, ppath,
                                           resumption=False)]}
        with ztlib.Proxy(c.mesh.ws.dir, cfg, name="tickets") as p:
            cl = c.mesh.client
            ctx = ztlib.client_context(cl["cert"], cl["key"], c.mesh.pki.ca_cert)

            def connect(listener, session=None):
                raw = ztlib.connect(p.port(listener))
                s = ctx.wrap_socket(raw, session=session)
                echo_roundtrip(s, b"via %s\n" % listener.encode())   # the ticket came
                return s

            s = connect("a")
            sess = s.session
            safe_close(s)
            check(sess is not None and sess.has_ticket, "listener a issued no ticket")
            s = connect("a", sess)
            check(s.session_reused, "a did not resume its own ticket (control)")
            safe_close(s)
            s = connect("b", sess)
            try:
                check(not s.session_reused, "b (resumption: false) resumed a's ticket")
            finally:
                safe_close(s)
            recs = p.wait_records(3, what="three records")
            b = [r for r in recs if r["listener"] == "b"]
            check_eq(len(b), 1, "records of listener b")
            check_eq(b[0]["tls_resumed"], False, "tls_resumed at b")
            check_eq(b[0]["peer_id"], CLIENT_ID, "peer_id at b (from the certificate)")


# -- a partner's CA under a copied name and key identifier --------------------------------
# wolfSSL looks up a signer by key identifier, in one table for every trust domain,
# and keeps the first CA certificate it saw for each. A federated partner controls its
# own CA: it can issue a CA certificate with the subject and subject key identifier of
# one of ours (both public), signed by its own root, or put such a "root" in its
# bundle. It must neither pass for ours nor make ours fail.

def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 0, "openssl %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def key_id(cert):
    out = openssl("x509", "-in", cert, "-noout", "-ext", "subjectKeyIdentifier")
    return out.strip().splitlines()[-1].strip()


def new_key(c, name, ext_text):
    """(cert, key, csr, ext) paths for name: a fresh P-256 key, and ext_text written
    as the extensions file; cert and csr are left to the caller."""
    key = c.mesh.ws.path(name + "_key.pem")
    ext = ztlib.write_text(c.mesh.ws.path(name + ".ext"), ext_text)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    return c.mesh.ws.path(name + ".pem"), key, c.mesh.ws.path(name + ".csr"), ext


def copied_ca(c, name, model, td, signer=None):
    """A CA certificate of trust domain td with model's subject and key identifier and
    a key of its own; signed by signer (cert, key) or, without one, by itself."""
    cert, key, csr, ext = new_key(
        c, name, "basicConstraints=critical,CA:TRUE\n"
                 "keyUsage=critical,keyCertSign,cRLSign\n"
                 "subjectKeyIdentifier=%s\nauthorityKeyIdentifier=keyid:always\n"
                 "subjectAltName=URI:spiffe://%s\n" % (key_id(model), td))
    openssl("x509", "-x509toreq", "-in", model, "-signkey", key, "-out", csr)
    sign = ["-CA", signer[0], "-CAkey", signer[1]] if signer else ["-signkey", key]
    openssl("x509", "-req", "-in", csr, "-extfile", ext, "-days", "1", "-out", cert, *sign)
    return cert, key


def leaf_of(c, name, ca, spiffe_id):
    cert, key, csr, ext = new_key(
        c, name, "basicConstraints=critical,CA:FALSE\n"
                 "keyUsage=critical,digitalSignature\n"
                 "authorityKeyIdentifier=keyid:always\n"
                 "subjectAltName=URI:%s\n" % spiffe_id)
    openssl("req", "-new", "-key", key, "-subj", "/O=x", "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-extfile", ext,
            "-days", "1", "-out", cert)
    return cert, key


def federated_inbound(c, app, name, federated, allowed):
    ident = dict(c.mesh.server)
    ident["federated"] = [{"trust_domain": td, "bundle": b} for td, b in federated]
    pol = ztlib.policy([ztlib.rule("allowed", "allow", list(allowed), ports=[app.port])])
    ppath = c.mesh.policy_file(pol, name + "-policy")
    cfg = {"identity": ident,
           "listeners": [ztlib.inbound("in", ztlib.free_port(), app.port, ppath)]}
    return ztlib.Proxy(c.mesh.ws.dir, cfg, name=name)


def case_partner_intermediate_with_our_key_id(c):
    """The partner's CA copies our intermediate ica1: one of its workloads presents it
    first (so that wolfSSL keeps it), then a leaf with our client's ID that the copy's
    key signed, sent with the real ica1. Refused; and our real client under ica1 still
    gets in."""
    ptd = "partner.example"
    ppki = ztlib.Pki(ptd, root=c.mesh.ws.dir)
    copy = copied_ca(c, "ica1-copy", c.ica1[0], ptd, signer=(ppki.ca_cert, ppki.ca_key))
    warm = leaf_of(c, "partner-warm", copy, "spiffe://%s/ns/pay/sa/billing" % ptd)
    evil = leaf_of(c, "evil-client", copy, CLIENT_ID)
    with ztlib.EchoServer() as app:
        with federated_inbound(c, app, "copied-ica", [(ptd, ppki.ca_cert)],
                               [CLIENT_ID, "spiffe://%s/*" % ptd]) as inp:
            accepted(inp, chain_file(c, "warm-chain", warm[0], copy[0]), warm[1],
                     "the partner's workload under its own CA")
            refused(inp, app, chain_file(c, "evil-chain", evil[0], c.ica1[0]), evil[1],
                    "bad_signature", "our client's ID signed by the partner's copy of ica1")
            accepted(inp, chain_file(c, "leaf1-chain", c.leaf1[0], c.ica1[0]), c.leaf1[1],
                     "our client under the real ica1")


def case_partner_root_with_another_partners_key_id(c):
    """Partner a's bundle also holds a "root" copying partner b's root. A leaf with a
    b ID under it is refused; b's real workload gets in."""
    a, b = "a.example", "b.example"
    apki = ztlib.Pki(a, root=c.mesh.ws.dir)
    bpki = ztlib.Pki(b, root=c.mesh.ws.dir)
    copy = copied_ca(c, "b-root-copy", bpki.ca_cert, a)
    a_bundle = ztlib.write_text(c.mesh.ws.path("a-bundle.pem"),
                                open(apki.ca_cert).read() + open(copy[0]).read())
    victim = "spiffe://%s/ns/pay/sa/billing" % b
    evil = leaf_of(c, "evil-b", copy, victim)
    real = bpki.issue(victim, name="real-b")
    with ztlib.EchoServer() as app:
        with federated_inbound(c, app, "copied-root", [(a, a_bundle), (b, bpki.ca_cert)],
                               [victim]) as inp:
            refused(inp, app, evil[0], evil[1], ("bad_signature", "unknown_ca"),
                    "b's ID under a's copy of b's root")
            accepted(inp, real[0], real[1], "b's workload")


CASES = [
    ("revoked_leaf_reordered_chain", case_revoked_leaf_reordered_chain),
    ("revoked_intermediate_behind_sibling", case_revoked_intermediate_behind_sibling),
    ("root_revoked_leaf_with_extra_intermediate",
     case_root_revoked_leaf_with_extra_intermediate),
    ("intermediate_not_remembered", case_intermediate_not_remembered),
    ("ticket_refused_where_resumption_off", case_ticket_refused_where_resumption_off),
    ("partner_intermediate_with_our_key_id", case_partner_intermediate_with_our_key_id),
    ("partner_root_with_another_partners_key_id",
     case_partner_root_with_another_partners_key_id),
]

if __name__ == "__main__":
    ztlib.run_cases("test_chain_tricks", CASES, setup=setup, teardown=teardown)
