#!/usr/bin/env python3
"""Streaming through the whole chain:

    client -> outbound ztproxy (SVID client) ==mTLS==> inbound ztproxy (SVID server) -> echo app

64 MiB each way at once arrives byte-exact, small request/response exchanges work on one
and on many connections, the inbound presents its SVID to a plain TLS client, and both
proxies write access-log records with every field the README documents.
"""

import hashlib
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, SERVER_ID, check, check_eq, check_record_shape,  # noqa: E402
                   connect, echo_roundtrip, recv_until_eof, safe_close)

BIG = 64 * 1024 * 1024


class Ctx:
    pass


def setup():
    c = Ctx()
    c.mesh = ztlib.Mesh()
    c.app = ztlib.EchoServer()
    c.inp = c.mesh.inbound_proxy(c.app.port, name="in")
    c.inp.start()
    c.out = c.mesh.outbound_proxy(c.inp.port("in"), expect_server=[SERVER_ID], name="out")
    c.out.start()
    c.bulk = None
    return c


def teardown(c):
    for p in (getattr(c, "out", None), getattr(c, "inp", None)):
        if p:
            p.kill()
    c.app.close()
    c.mesh.cleanup()


def case_bulk_64mib_each_way(c):
    payload = ztlib.big_payload(BIG)
    want = hashlib.sha256(payload).hexdigest()
    s = connect(c.out.port("out"), timeout=10)
    try:
        src_port = s.getsockname()[1]
        t = ztlib.Transfer(s, payload, BIG, shut_wr=True, timeout=240).start()
        got, n = t.join()
        check_eq(n, BIG, "bytes received back")
        check(got == want, "sha256 of the echoed 64 MiB differs")
        rest = recv_until_eof(s, timeout=10)
        check_eq(len(rest), 0, "bytes after the echo")
    finally:
        safe_close(s)
    c.bulk = {"src_port": src_port}
    check_eq(c.app.connections, 1, "app connections")
    check_eq(c.app.bytes_received, BIG, "bytes the app received")


def _bulk_records(c):
    check(c.bulk is not None, "the 64 MiB transfer did not run")
    o = c.out.wait_record(ztlib.by_src_port(c.bulk["src_port"]), timeout=10,
                          what="outbound record of the 64 MiB connection")
    i = c.inp.wait_record(lambda r: r.get("bytes_in") == BIG, timeout=10,
                          what="inbound record with bytes_in == 64 MiB")
    return o, i


def _common(r, what, listener, local_id, peer_id, dst_port):
    check_record_shape(r, what)
    check_eq(r["listener"], listener, what + " listener")
    check_eq(r["local_id"], local_id, what + " local_id")
    check_eq(r["peer_id"], peer_id, what + " peer_id")
    check_eq(r["tls_version"], "TLSv1.3", what + " tls_version")
    check(isinstance(r["cipher"], str) and r["cipher"], what + ": empty cipher")
    check_eq(r["dst"], "127.0.0.1:%d" % dst_port, what + " dst")
    check_eq(r["bytes_in"], BIG, what + " bytes_in")
    check_eq(r["bytes_out"], BIG, what + " bytes_out")
    check_eq(r["close_reason"], "eof", what + " close_reason")
    check(r["tls_error"] is None, "%s: tls_error %r, want null" % (what, r["tls_error"]))
    check(r["duration_ms"] < 300000, "%s: duration_ms %r too large" % (what, r["duration_ms"]))
    age = ztlib.ts_age_seconds(r["ts"])
    check(-120 < age < 600, "%s: ts %r is %.0fs away from now" % (what, r["ts"], age))


def case_inbound_access_log(c):
    _, i = _bulk_records(c)
    _common(i, "inbound record", "in", SERVER_ID, CLIENT_ID, c.app.port)
    check_eq(i["decision"], "allow", "inbound decision")
    check_eq(i["rule"], "web-to-api", "inbound rule")


def case_outbound_access_log(c):
    o, _ = _bulk_records(c)
    _common(o, "outbound record", "out", CLIENT_ID, SERVER_ID, c.inp.port("in"))
    check_eq(o["src"], "127.0.0.1:%d" % c.bulk["src_port"], "outbound src")
    # The outbound side has no policy; "allow" or "none" are both sane there.
    check(o["decision"] in ("allow", "none"), "outbound decision %r" % o["decision"])


def case_conn_ids_distinct(c):
    recs = c.inp.records()
    ids = [r.get("conn_id") for r in recs]
    check(len(ids) == len(set(ids)), "inbound conn_id values repeat: %r" % ids)


def case_small_exchanges_one_connection(c):
    s = connect(c.out.port("out"))
    try:
        for n in (1, 2, 17, 100, 1400, 4096, 16384, 16385, 70000, 5):
            echo_roundtrip(s, os.urandom(n))
        s.shutdown(socket.SHUT_WR)
        check_eq(recv_until_eof(s, timeout=5), b"", "bytes after the last reply")
    finally:
        safe_close(s)


def case_sequential_connections(c):
    before = c.app.connections
    ports = []
    for i in range(10):
        s = connect(c.out.port("out"))
        try:
            ports.append(s.getsockname()[1])
            echo_roundtrip(s, b"hello %d\n" % i)
        finally:
            safe_close(s)
    ztlib.wait_until(lambda: c.app.connections - before >= 10, 5, what="10 app connections")
    for p in ports:
        r = c.out.wait_record(ztlib.by_src_port(p), what="record of src port %d" % p)
        check(r["close_reason"] in ("eof", "reset"), "close_reason %r" % r["close_reason"])
        check_eq(r["bytes_in"], len(b"hello 0\n"), "bytes_in of a short connection")


def case_concurrent_connections(c):
    errors = []

    def worker(k):
        try:
            s = connect(c.out.port("out"), timeout=10)
            try:
                for j in range(20):
                    echo_roundtrip(s, (b"%d:%d|" % (k, j)) * (1 + j * 50), timeout=10)
            finally:
                safe_close(s)
        except Exception as e:  # noqa: BLE001
            errors.append("conn %d: %s" % (k, e))

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    check(not any(t.is_alive() for t in ts), "concurrent clients did not finish in 60s")
    check(not errors, "; ".join(errors))


def case_inbound_presents_svid(c):
    port, s = ztlib.tls_connect(c.inp.port("in"), cert=c.mesh.client["cert"],
                                key=c.mesh.client["key"], ca=c.mesh.pki.ca_cert, verify=True)
    try:
        check_eq(s.version(), "TLSv1.3", "negotiated version")
        cert = s.getpeercert()
        uris = [v for k, v in cert.get("subjectAltName", ()) if k == "URI"]
        check_eq(uris, [SERVER_ID], "server certificate URI SANs")
        echo_roundtrip(s, b"direct tls client\n")
    finally:
        safe_close(s)
    r = c.inp.wait_record(ztlib.by_src_port(port), what="record of the direct TLS client")
    check_eq(r["peer_id"], CLIENT_ID, "peer_id")
    check_eq(r["decision"], "allow", "decision")


def case_one_process_both_listeners_log_stdout(c):
    """One ztproxy with an outbound and an inbound listener (a sidecar calling itself),
    access log on stdout: both listeners log their side of the same call."""
    with ztlib.EchoServer() as app:
        pol = c.mesh.policy_file(ztlib.policy([ztlib.rule("self", "allow", [SERVER_ID],
                                                          ports=[app.port])]))
        inport, outport = ztlib.free_port(), ztlib.free_port()
        cfg = {"identity": c.mesh.server,
               "log": {"access": "stdout"},
               "listeners": [ztlib.inbound("in", inport, app.port, pol),
                             ztlib.outbound("out", outport, inport,
                                            expect_server=[SERVER_ID])]}
        with ztlib.Proxy(c.mesh.ws.dir, cfg, name="both") as p:
            s = connect(outport)
            try:
                echo_roundtrip(s, b"to myself\n")
            finally:
                safe_close(s)
            recs = p.wait_records(2, timeout=5, what="records on stdout")
            by = {r.get("listener"): r for r in recs}
            check(set(by) == {"in", "out"}, "listeners in the records: %s" % sorted(by))
            for r in recs:
                check_record_shape(r, "record of " + r["listener"])
                check_eq(r["peer_id"], SERVER_ID, r["listener"] + " peer_id")
                check_eq(r["local_id"], SERVER_ID, r["listener"] + " local_id")
            check_eq(by["in"]["rule"], "self", "inbound rule")


def _chain_identity(c, spiffe_id, name):
    """An SVID issued by an intermediate CA (itself issued by the root with --is-ca):
    the cert file holds leaf then intermediate; the bundle is the root alone."""
    pki = c.mesh.pki
    if not hasattr(c, "intermediate"):
        c.intermediate = pki.issue("spiffe://%s" % ztlib.TD, is_ca=True, ttl="2h",
                                   name="intermediate")
    leaf, key = pki.issue(spiffe_id, ca=c.intermediate, name=name)
    chain = leaf + ".chain.pem"
    with open(chain, "w") as f:
        f.write(open(leaf).read() + open(c.intermediate[0]).read())
    return {"cert": chain, "key": key, "bundle": pki.ca_cert}


def case_intermediate_ca_chain(c):
    """Both sides present leaf + intermediate; both verify against the root alone."""
    srv = _chain_identity(c, SERVER_ID, "srv-via-intermediate")
    cli = _chain_identity(c, CLIENT_ID, "cli-via-intermediate")
    with ztlib.EchoServer() as app:
        inp = c.mesh.inbound_proxy(app.port, identity=srv)
        out = c.mesh.outbound_proxy(inp.port("in"), identity=cli, expect_server=[SERVER_ID])
        with inp, out:
            s = connect(out.port("out"))
            try:
                echo_roundtrip(s, b"through an intermediate CA\n")
            finally:
                safe_close(s)
            # OpenSSL agrees that the inbound's chain leads to the root
            port, t = ztlib.tls_connect(inp.port("in"), cert=cli["cert"], key=cli["key"],
                                        ca=c.mesh.pki.ca_cert, verify=True)
            try:
                echo_roundtrip(t, b"openssl verified the chain\n")
            finally:
                safe_close(t)
            r = inp.wait_record(ztlib.by_src_port(port))
            check_eq(r["peer_id"], CLIENT_ID, "peer_id of the chained client")
            check_eq(r["decision"], "allow", "decision")


def case_relative_paths_from_other_cwd(c):
    """Relative file names in the config resolve against the config's folder, not the
    process's working folder."""
    import shutil
    d = c.mesh.ws.path("relative")
    os.makedirs(d, exist_ok=True)
    shutil.copy(c.mesh.server["cert"], os.path.join(d, "svid.pem"))
    shutil.copy(c.mesh.server["key"], os.path.join(d, "svid_key.pem"))
    shutil.copy(c.mesh.pki.ca_cert, os.path.join(d, "bundle.pem"))
    with ztlib.EchoServer() as app:
        ztlib.write_config(os.path.join(d, "policy.yaml"), c.mesh.allow_client_policy(app.port))
        cfg = {"identity": {"cert": "svid.pem", "key": "svid_key.pem", "bundle": "bundle.pem"},
               "log": {"access": "access.log"},
               "listeners": [ztlib.inbound("in", ztlib.free_port(), app.port, "policy.yaml")]}
        p = ztlib.Proxy(d, cfg, name="relative", cwd="/")
        p.access_path = os.path.join(d, "access.log")
        with p:
            cl = c.mesh.client
            port, t = ztlib.tls_connect(p.port("in"), cl["cert"], cl["key"], c.mesh.pki.ca_cert)
            try:
                echo_roundtrip(t, b"relative\n")
            finally:
                safe_close(t)
            r = p.wait_record(ztlib.by_src_port(port), what="record in <config dir>/access.log")
            check_eq(r["rule"], "web-to-api", "rule")


def case_access_log_off(c):
    with ztlib.EchoServer() as app:
        inp = c.mesh.inbound_proxy(app.port, cfg_extra={"log": {"access": "off"}})
        with inp:
            cl = c.mesh.client
            port, t = ztlib.tls_connect(inp.port("in"), cl["cert"], cl["key"], c.mesh.pki.ca_cert)
            try:
                echo_roundtrip(t, b"unlogged\n")
            finally:
                safe_close(t)
            time.sleep(0.5)
        out = inp.stdout()
        check("{" not in out, "access log is off but stdout has JSON:\n%s" % out[-500:])
        leftovers = [f for f in os.listdir(c.mesh.ws.dir) if f == "off"]
        check(not leftovers, "log.access: off created a file named 'off'")


def case_proxies_exit_cleanly(c):
    c.out.stop()
    c.inp.stop()


CASES = [
    ("bulk_64mib_each_way_byte_exact", case_bulk_64mib_each_way),
    ("inbound_access_log_fields", case_inbound_access_log),
    ("outbound_access_log_fields", case_outbound_access_log),
    ("small_exchanges_one_connection", case_small_exchanges_one_connection),
    ("ten_sequential_connections", case_sequential_connections),
    ("sixteen_concurrent_connections", case_concurrent_connections),
    ("inbound_presents_svid_to_tls_client", case_inbound_presents_svid),
    ("conn_ids_distinct", case_conn_ids_distinct),
    ("one_process_both_listeners_log_stdout", case_one_process_both_listeners_log_stdout),
    ("intermediate_ca_chain_both_sides", case_intermediate_ca_chain),
    ("relative_paths_resolve_from_config_folder", case_relative_paths_from_other_cwd),
    ("access_log_off", case_access_log_off),
    ("sigterm_exit_0_no_sanitizer_report", case_proxies_exit_cleanly),
]

if __name__ == "__main__":
    ztlib.run_cases("test_stream", CASES, setup=setup, teardown=teardown)
