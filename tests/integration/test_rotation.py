#!/usr/bin/env python3
"""Identity rotation on a running inbound ztproxy:

- a 256 MiB echo transfer (outbound -> inbound -> app, sent and received concurrently,
  sha256 both ways) stays byte-exact while the inbound's SVID and key are replaced ten
  times underneath it; after each swap a NEW connection presents the new serial (read
  from the server certificate's DER with Python's ssl module and compared with the
  serial `ztproxy identity issue` printed);
- each bad replacement (garbage, half-written, key not matching, another SPIFFE ID,
  expired, unknown CA) leaves the old SVID serving, is logged and counted in
  ztproxy_reloads_total{what="identity",result="failure"}; a good one is then taken;
- allow_id_change lets a rotated SVID carry another ID;
- SIGHUP reloads files the watcher cannot see change (same inode, size and mtime);
- a CRL that starts revoking the client closes its established connection
  (peer_revoked) and refuses its next handshake (tls_error revoked);
- a client SVID that expires mid-connection closes it (peer_expired);
- an inbound whose own SVID expires refuses new connections (svid_expired, /ready 503)
  until a valid replacement arrives.
"""

import hashlib
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, SERVER_ID, TD, Failure, check, check_eq, connect,  # noqa: E402
                   echo_roundtrip, expect_closed, free_port, policy, rule, safe_close,
                   wait_until)

OTHER_CLIENT = "spiffe://%s/ns/web/sa/bystander" % TD
ISSUE_RE = re.compile(r"issued (\S+) \(serial ([0-9a-fA-F]+), expires (\S+)\)")


# --------------------------------------------------------------------------------------
# Small helpers (local to this script)

http_get = ztlib.admin_get
metrics = ztlib.scrape


def reloads(port, what, result):
    return metrics(port).get(("ztproxy_reloads_total",
                              frozenset({("what", what), ("result", result)})), 0.0)


def der_tlv(buf, i):
    """(tag, content_start, content_len) of the DER element at buf[i]."""
    tag = buf[i]
    n = buf[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[i:i + k], "big")
        i += k
    return tag, i, n


def der_serial(der):
    """The serial number (int) of a DER X.509 certificate."""
    tag, c, _ = der_tlv(der, 0)            # Certificate ::= SEQUENCE
    check_eq(tag, 0x30, "certificate tag")
    tag, t, _ = der_tlv(der, c)            # tbsCertificate ::= SEQUENCE
    check_eq(tag, 0x30, "tbsCertificate tag")
    tag, s, n = der_tlv(der, t)
    if tag == 0xA0:                        # [0] EXPLICIT version
        tag, s, n = der_tlv(der, s + n)
    check_eq(tag, 0x02, "serialNumber tag")
    return int.from_bytes(der[s:s + n], "big", signed=False)


def issue(c, spiffe_id, ca=None, ttl=None, backdate=None, name="svid"):
    """`ztproxy identity issue`; returns dict(cert, key, serial (hex str as printed),
    expires)."""
    ca_cert, ca_key = ca or (c.pki.ca_cert, c.pki.ca_key)
    c.n += 1
    base = c.ws.path("issued", "%03d-%s" % (c.n, name))
    cert, key = base + ".pem", base + "_key.pem"
    args = ["identity", "issue", "--ca-cert", ca_cert, "--ca-key", ca_key, "--id", spiffe_id,
            "--cert", cert, "--key", key]
    if ttl:
        args += ["--ttl", ttl]
    if backdate:
        args += ["--backdate", backdate]
    r = ztlib.run_cli(args)
    check(r.rc == 0, "identity issue failed: %r" % r)
    m = ISSUE_RE.search(r.out + r.err)
    check(m is not None, "no serial in the output of identity issue: %r" % r)
    check_eq(m.group(1), spiffe_id, "issued ID")
    return {"cert": cert, "key": key, "serial": m.group(2).lower(), "expires": m.group(3),
            "id": spiffe_id}


def show_field(path, field):
    r = ztlib.run_cli(["identity", "show", path])
    for line in r.out.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise Failure("identity show %s: no %r line:\n%r" % (path, field, r))


def epoch(ts):
    import calendar
    return calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def atomic_write(path, data):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def install(dst, cert_data, key_data):
    """Replace the served SVID and key files (each atomically, back to back)."""
    atomic_write(dst["cert"], cert_data)
    atomic_write(dst["key"], key_data)


def install_from(dst, src):
    install(dst, read(src["cert"]), read(src["key"]))


def diag_lines(proxy, needle):
    return [line for line in proxy.stderr().splitlines()
            if needle in line and ztlib.DIAG_RE.match(line)]


def wait_new_line(proxy, needle, before, timeout=5.0):
    """Wait until stderr has more than `before` lines containing needle; return the
    new ones."""
    try:
        lines = wait_until(lambda: (lambda ls: ls if len(ls) > before else None)(
            diag_lines(proxy, needle)), timeout, what="%r on stderr" % needle)
    except Failure:
        raise Failure("%s: no new %r line within %.1fs; stderr:\n%s" % (
            proxy.name, needle, timeout, ztlib.tail(proxy.stderr(), 20)))
    return lines[before:]


def server_cert(port, client, ca, timeout=5.0):
    """A new TLS connection to the inbound with the client's SVID: (serial int, URI SAN
    list). The connection is closed again."""
    _, s = ztlib.tls_connect(port, cert=client["cert"], key=client["key"], ca=ca,
                             timeout=timeout)
    try:
        der = s.getpeercert(binary_form=True)
        d = s.getpeercert()
    finally:
        safe_close(s)
    uris = [v for k, v in d.get("subjectAltName", ()) if k == "URI"]
    return der_serial(der), uris


LATE_SWAPS = []   # (what, seconds) where the old SVID was still served after the log line


def new_serial_served(port, client, ca, want_hex, what, grace=1.0):
    """The serial a NEW connection presents, once it is want_hex. ztproxy logs
    "identity reloaded" before the workers take the new snapshot (uv_async), so a
    connection made a few ms after the line may still get the old SVID: that is allowed
    for `grace` seconds and recorded (see LATE_SWAPS); returns (serial, uris)."""
    t0 = time.monotonic()
    want = int(want_hex, 16)
    while True:
        got, uris = server_cert(port, client, ca)
        if got == want:
            if time.monotonic() - t0 > 0.001 and LATE_SWAPS is not None and \
                    getattr(new_serial_served, "_old_seen", False):
                LATE_SWAPS.append((what, round(time.monotonic() - t0, 3)))
            new_serial_served._old_seen = False
            return got, uris
        new_serial_served._old_seen = True
        if time.monotonic() - t0 > grace:
            new_serial_served._old_seen = False
            raise Failure("%s: serial presented by a new connection: got %x, want %s "
                          "(still %.1fs after the reload was logged)" % (
                              what, got, want_hex, grace))
        time.sleep(0.01)


def echo_ok(sock, msg=b"ping"):
    echo_roundtrip(sock, msg)


class Ctx:
    pass


def setup():
    c = Ctx()
    c.ws = ztlib.Workspace(prefix="zt-rot-")
    os.makedirs(c.ws.path("issued"))
    c.pki = ztlib.Pki(root=c.ws.dir)
    c.n = 0
    c.client = issue(c, CLIENT_ID, name="client")
    c.client["bundle"] = c.pki.ca_cert
    c.bystander = issue(c, OTHER_CLIENT, name="bystander")
    c.bystander["bundle"] = c.pki.ca_cert
    return c


def teardown(c):
    c.pki.cleanup()
    c.ws.cleanup()


def served_identity(c, name, **issue_kw):
    """A folder of its own holding the inbound's SVID files (replaced by the tests);
    returns (identity config dict, the issued SVID)."""
    d = c.ws.path(name)
    os.makedirs(d, exist_ok=True)
    first = issue(c, SERVER_ID, name=name, **issue_kw)
    ident = {"cert": os.path.join(d, "svid.pem"), "key": os.path.join(d, "svid_key.pem"),
             "bundle": c.pki.ca_cert}
    atomic_write(ident["cert"], read(first["cert"]))
    atomic_write(ident["key"], read(first["key"]))
    os.chmod(ident["key"], 0o600)
    return ident, first


def inbound(c, name, ident, app_port, admin_port=None, ids=(CLIENT_ID, OTHER_CLIENT),
            extra_identity=None):
    pol = policy([rule("clients", "allow", list(ids), ports=[app_port])])
    ppath = ztlib.write_config(c.ws.path(name + "-policy.yaml"), pol)
    identity = dict(ident)
    identity.update(extra_identity or {})
    cfg = {"identity": identity,
           "listeners": [ztlib.inbound("in", free_port(), app_port, ppath)]}
    if admin_port:
        cfg["admin"] = {"listen": "127.0.0.1:%d" % admin_port}
    return ztlib.Proxy(c.ws.dir, cfg, name=name)


def outbound(c, name, upstream_port, ident):
    cfg = {"identity": {"cert": ident["cert"], "key": ident["key"], "bundle": c.pki.ca_cert},
           "listeners": [ztlib.outbound("out", free_port(), upstream_port,
                                        expect_server=[SERVER_ID])]}
    return ztlib.Proxy(c.ws.dir, cfg, name=name)


# --------------------------------------------------------------------------------------
# (a) 256 MiB through ten rotations

TOTAL = 256 << 20
SWAPS = 10
CHUNK = 256 << 10


def case_transfer_through_ten_rotations(c):
    aport = free_port()
    ident, first = served_identity(c, "rot-a")
    payload = os.urandom(TOTAL)
    want = hashlib.sha256(payload).hexdigest()
    phase = TOTAL // (SWAPS + 1)
    st = {"sent": 0, "recv": 0, "swaps": 0, "err": [], "eof_after": None}
    cond = threading.Condition()
    abort = threading.Event()
    h = hashlib.sha256()

    with ztlib.EchoServer() as app, \
            inbound(c, "rot-a-in", ident, app.port, admin_port=aport) as inp, \
            outbound(c, "rot-a-out", inp.port("in"), c.client) as out:
        port = inp.port("in")
        serial, uris = server_cert(port, c.client, c.pki.ca_cert)
        check_eq(serial, int(first["serial"], 16), "serial served at start")
        check_eq(uris, [SERVER_ID], "server URI SAN")
        s = connect(out.port("out"), timeout=60)

        def sender():
            try:
                view = memoryview(payload)
                for off in range(0, TOTAL, CHUNK):
                    # never more than one phase ahead of the swaps, so that every swap
                    # happens while bytes are in flight
                    need = off // phase - 1
                    with cond:
                        ok = cond.wait_for(lambda: st["swaps"] >= need or abort.is_set(),
                                           timeout=60)
                    if abort.is_set() or not ok:
                        st["err"].append("send: gave up at %d (swaps %d)" % (off, st["swaps"]))
                        return
                    s.sendall(view[off:off + CHUNK])
                    with cond:
                        st["sent"] = off + len(view[off:off + CHUNK])
                        cond.notify_all()
                s.shutdown(socket.SHUT_WR)
            except Exception as e:  # noqa: BLE001
                st["err"].append("send after %d: %r" % (st["sent"], e))

        def receiver():
            try:
                while st["recv"] < TOTAL:
                    b = s.recv(min(1 << 20, TOTAL - st["recv"]))
                    if not b:
                        st["err"].append("recv: EOF after %d of %d" % (st["recv"], TOTAL))
                        return
                    h.update(b)
                    st["recv"] += len(b)
                st["eof_after"] = s.recv(1)
            except Exception as e:  # noqa: BLE001
                st["err"].append("recv after %d: %r" % (st["recv"], e))

        churn = {"ok": 0, "fail": []}
        churn_stop = threading.Event()

        def churner():
            # new connections keep arriving while the SVID changes under the listener:
            # not one handshake may fail
            i = 0
            while not churn_stop.is_set():
                msg = b"churn %06d" % i
                i += 1
                try:
                    cs = connect(out.port("out"), timeout=10)
                    try:
                        cs.sendall(msg)
                        got = ztlib.recv_exact(cs, len(msg), timeout=10)
                        if got != msg:
                            churn["fail"].append("echo mismatch on %r" % msg)
                        else:
                            churn["ok"] += 1
                    finally:
                        safe_close(cs)
                except (Failure, OSError) as e:
                    churn["fail"].append("%s: %r" % (msg.decode(), e))
                time.sleep(0.02)

        ts = threading.Thread(target=sender, daemon=True)
        tr = threading.Thread(target=receiver, daemon=True)
        tch = threading.Thread(target=churner, daemon=True)
        tr.start()
        ts.start()
        tch.start()
        serials = [first["serial"]]
        try:
            for k in range(1, SWAPS + 1):
                with cond:
                    ok = cond.wait_for(lambda: st["sent"] >= k * phase + phase // 2
                                       or st["err"], timeout=60)
                check(ok and not st["err"], "swap %d: transfer stalled or failed: %s "
                      "(sent %d, received %d)" % (k, st["err"], st["sent"], st["recv"]))
                recv_before = st["recv"]
                new = issue(c, SERVER_ID, name="rot-a-%d" % k)
                nlines = len(diag_lines(inp, "identity reloaded"))
                install_from(ident, new)
                lines = wait_new_line(inp, "identity reloaded", nlines)
                check(any(new["serial"] in l for l in lines),
                      "swap %d: reload line names serial %s: %r" % (k, new["serial"], lines))
                got, uris = new_serial_served(port, c.client, c.pki.ca_cert, new["serial"],
                                              "swap %d" % k)
                check_eq(uris, [SERVER_ID], "swap %d: server URI SAN" % k)
                serials.append(new["serial"])
                check(not st["err"], "swap %d: transfer failed: %s" % (k, st["err"]))
                with cond:
                    st["swaps"] = k
                    cond.notify_all()
                # it is still flowing: more bytes arrive after the swap
                wait_until(lambda: st["recv"] > recv_before + CHUNK or st["err"]
                           or st["recv"] >= TOTAL, 30,
                           what="bytes flowing after swap %d" % k)
        finally:
            abort.set()
            churn_stop.set()
            with cond:
                cond.notify_all()
            ts.join(timeout=120)
            tr.join(timeout=120)
            tch.join(timeout=30)
            safe_close(s)
        check(not churn["fail"], "%d of %d new connections failed during the rotations: %s"
              % (len(churn["fail"]), len(churn["fail"]) + churn["ok"], churn["fail"][:5]))
        check(churn["ok"] >= 20, "only %d churn connections" % churn["ok"])
        check(not ts.is_alive() and not tr.is_alive(),
              "transfer threads did not finish (sent %d, received %d)" % (st["sent"], st["recv"]))
        check(not st["err"], "transfer failed: %s" % "; ".join(st["err"]))
        check_eq(st["recv"], TOTAL, "bytes echoed back")
        check_eq(h.hexdigest(), want, "sha256 of the bytes echoed back")
        check_eq(st["eof_after"], b"", "EOF after the echo")
        with app.lock:
            big = [r for r in app.conns if r["received"] == TOTAL]
        check_eq(len(big), 1, "app connections that received all %d bytes" % TOTAL)
        check_eq(len(set(serials)), SWAPS + 1, "distinct serials served")
        rec = inp.wait_record(lambda r: r.get("bytes_in") == TOTAL, timeout=10,
                              what="inbound record of the long transfer")
        check_eq(rec["bytes_out"], TOTAL, "bytes_out of the long transfer")
        check_eq(rec["close_reason"], "eof", "close_reason of the long transfer")
        check_eq(reloads(aport, "identity", "success"), SWAPS, "identity reloads (success)")
        check_eq(reloads(aport, "identity", "failure"), 0, "identity reloads (failure)")


# --------------------------------------------------------------------------------------
# (b) bad replacements keep the old SVID

def case_bad_replacements_keep_old_identity(c):
    aport = free_port()
    ident, first = served_identity(c, "rot-b")
    ident["bundle"] = c.ws.path("rot-b", "bundle.pem")
    atomic_write(ident["bundle"], read(c.pki.ca_cert))
    b0 = read(ident["bundle"])
    c0, k0 = read(ident["cert"]), read(ident["key"])
    other_key = read(issue(c, SERVER_ID, name="otherkey")["key"])
    other_id = issue(c, "spiffe://%s/ns/api/sa/impostor" % TD, name="otherid")
    expired = issue(c, SERVER_ID, ttl="1h", backdate="2h", name="expired")
    foreign_ca = c.pki.ca(TD, "rogue-ca")
    rogue = issue(c, SERVER_ID, ca=foreign_ca, name="rogue")
    bad = [
        # name, cert bytes, key bytes, substrings of which one must be in the reason
        ("garbage cert", b"this is not a certificate\n", k0, ("cert", "PEM", "parse")),
        ("half-written cert", c0[:len(c0) * 3 // 5], k0, ("cert", "PEM", "parse")),
        ("key not matching cert", c0, other_key, ("key", "match")),
        ("SVID for another SPIFFE ID", read(other_id["cert"]), read(other_id["key"]),
         ("impostor",)),
        ("expired SVID", read(expired["cert"]), read(expired["key"]), ("expired",)),
        ("SVID of a CA outside the bundle", read(rogue["cert"]), read(rogue["key"]),
         ("bundle", "chain", "unknown", "verify", "CA")),
        ("bundle without our CA", c0, k0, ("bundle", "unknown", "verify", "CA")),
    ]
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-b-in", ident, app.port, admin_port=aport) as inp, \
            outbound(c, "rot-b-out", inp.port("in"), c.client) as out:
        port = inp.port("in")
        want = int(first["serial"], 16)
        check_eq(server_cert(port, c.client, c.pki.ca_cert)[0], want, "serial at start")
        live = connect(out.port("out"))
        try:
            echo_ok(live, b"before")
            report = []
            for name, cert_data, key_data, why in bad:
                nfail = len(diag_lines(inp, "identity reload failed"))
                nok = len(diag_lines(inp, "identity reloaded"))
                if name.startswith("half-written"):
                    # written in place, not atomically, and left half-written
                    with open(ident["cert"], "wb") as f:
                        f.write(cert_data)
                    with open(ident["key"], "wb") as f:
                        f.write(key_data)
                elif name.startswith("bundle"):
                    # the bundle first: the SVID put back alone would be a valid set
                    atomic_write(ident["bundle"], read(foreign_ca[0]))
                    install(ident, cert_data, key_data)
                else:
                    install(ident, cert_data, key_data)
                lines = wait_new_line(inp, "identity reload failed", nfail)
                time.sleep(0.3)   # a second attempt on the same change would show by now
                lines = diag_lines(inp, "identity reload failed")[nfail:]
                report.append("%s: %s" % (name, lines[-1]))
                check("stays in force" in lines[-1], "%s: log line %r" % (name, lines[-1]))
                check(any(w.lower() in lines[-1].lower() for w in why),
                      "%s: the reason names none of %s: %r" % (name, why, lines[-1]))
                check_eq(len(diag_lines(inp, "identity reloaded")), nok,
                         "%s: successful identity reloads" % name)
                got = server_cert(port, c.client, c.pki.ca_cert)[0]
                check_eq("%x" % got, "%x" % want, "%s: serial still served" % name)
                check_eq(reloads(aport, "identity", "failure"),
                         len(diag_lines(inp, "identity reload failed")),
                         "%s: ztproxy_reloads_total{identity,failure} vs failure lines" % name)
                echo_ok(live, b"still there after " + name.encode())
                s = connect(out.port("out"))
                try:
                    echo_ok(s, b"new connection after " + name.encode())
                finally:
                    safe_close(s)
            check(reloads(aport, "identity", "failure") >= len(bad),
                  "at least %d failures counted" % len(bad))
            check_eq(reloads(aport, "identity", "success"), 0, "successful reloads so far")
            # now a good replacement is picked up
            new = issue(c, SERVER_ID, name="rot-b-good")
            install_from(ident, new)
            atomic_write(ident["bundle"], b0)
            # three files land one after the other: intermediate states may be tried
            # (and refused), but the final set must be taken
            wait_until(lambda: any(new["serial"] in l for l in
                                   diag_lines(inp, "identity reloaded")), 5,
                       what="reload of serial %s" % new["serial"])
            new_serial_served(port, c.client, c.pki.ca_cert, new["serial"],
                              "after the good replacement")
            check_eq(reloads(aport, "identity", "success"),
                     len(diag_lines(inp, "identity reloaded")), "successful reloads")
            check_eq(reloads(aport, "identity", "failure"),
                     len(diag_lines(inp, "identity reload failed")), "failed reloads")
            echo_ok(live, b"after the good one")
            print("    # " + "\n    # ".join(report))
        finally:
            safe_close(live)


def case_allow_id_change(c):
    ident, first = served_identity(c, "rot-idc")
    new_id = "spiffe://%s/ns/api/sa/renamed" % TD
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-idc-in", ident, app.port,
                    extra_identity={"allow_id_change": True}) as inp:
        port = inp.port("in")
        new = issue(c, new_id, name="renamed")
        nok = len(diag_lines(inp, "identity reloaded"))
        install_from(ident, new)
        lines = wait_new_line(inp, "identity reloaded", nok)
        check(new_id in lines[-1], "reload line names the new ID: %r" % lines[-1])
        serial, uris = new_serial_served(port, c.client, c.pki.ca_cert, new["serial"],
                                         "after the ID change")
        check_eq(uris, [new_id], "URI SAN after the change")


# --------------------------------------------------------------------------------------
# (c) SIGHUP

def rewrite_in_place(path, data):
    """Overwrite path in place (same inode) and put its size and mtime back: a change
    the 1 s stat cannot see."""
    st = os.stat(path)
    check_eq(len(data), st.st_size, "size of the in-place replacement of %s" % path)
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def case_sighup_reloads(c):
    aport = free_port()
    ident, first = served_identity(c, "rot-hup")
    c0, k0 = read(ident["cert"]), read(ident["key"])
    for i in range(40):  # an SVID whose files have exactly the sizes of the served ones
        new = issue(c, SERVER_ID, name="hup-%d" % i)
        if len(read(new["cert"])) == len(c0) and len(read(new["key"])) == len(k0):
            break
    else:
        raise Failure("could not issue an SVID with the same file sizes in 40 tries")
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-hup-in", ident, app.port, admin_port=aport) as inp:
        port = inp.port("in")
        nok = len(diag_lines(inp, "identity reloaded"))
        npol = len(diag_lines(inp, "reloaded for listener"))
        # stopped while the files change, so that neither a poll tick nor the event
        # debounce can run between a write and the mtime being put back
        inp.signal(signal.SIGSTOP)
        try:
            rewrite_in_place(ident["cert"], read(new["cert"]))
            rewrite_in_place(ident["key"], read(new["key"]))
        finally:
            inp.signal(signal.SIGCONT)
        time.sleep(1.6)   # a poll (1 s) and the event debounce have passed
        check_eq(len(diag_lines(inp, "identity reloaded")), nok,
                 "identity reloads before SIGHUP (the change is invisible to stat)")
        check_eq("%x" % server_cert(port, c.client, c.pki.ca_cert)[0],
                 "%x" % int(first["serial"], 16), "serial before SIGHUP")
        inp.signal(signal.SIGHUP)
        lines = wait_new_line(inp, "identity reloaded", nok)
        check("SIGHUP" in lines[-1] and new["serial"] in lines[-1],
              "reload line %r says SIGHUP and names %s" % (lines[-1], new["serial"]))
        wait_new_line(inp, "reloaded for listener", npol)
        new_serial_served(port, c.client, c.pki.ca_cert, new["serial"], "after SIGHUP")
        check_eq(reloads(aport, "identity", "success"), 1, "identity reloads (success)")
        check_eq(reloads(aport, "policy", "success"), 1, "policy reloads (success)")
        check(inp.alive(), "still running after SIGHUP")


# --------------------------------------------------------------------------------------
# (d) a CRL revoking a live peer

def make_crl(c, path, serials):
    args = ["identity", "revoke", "--ca-cert", c.pki.ca_cert, "--ca-key", c.pki.ca_key,
            "--out", path]
    for s in serials:
        args += ["--serial", s]
    r = ztlib.run_cli(args)
    check(r.rc == 0 and os.path.exists(path), "identity revoke failed: %r" % r)
    return path


def case_crl_revokes_live_peer(c):
    ident, _ = served_identity(c, "rot-crl")
    unrelated = issue(c, "spiffe://%s/ns/old/sa/gone" % TD, name="gone")
    crl = c.ws.path("rot-crl", "ca.crl.pem")
    make_crl(c, crl, [unrelated["serial"]])
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-crl-in", ident, app.port,
                    extra_identity={"crl": [crl]}) as inp, \
            outbound(c, "rot-crl-out-v", inp.port("in"), c.client) as out_v, \
            outbound(c, "rot-crl-out-b", inp.port("in"), c.bystander) as out_b:
        victim = connect(out_v.port("out"))
        bystander = connect(out_b.port("out"))
        try:
            echo_ok(victim, b"victim before")
            echo_ok(bystander, b"bystander before")
            new_crl = c.ws.path("issued", "revoking.crl.pem")
            make_crl(c, new_crl, [unrelated["serial"], c.client["serial"]])
            nok = len(diag_lines(inp, "identity reloaded"))
            t0 = time.monotonic()
            atomic_write(crl, read(new_crl))
            wait_new_line(inp, "identity reloaded", nok)
            how, data = expect_closed(victim, timeout=5,
                                      what="established connection of the revoked client")
            took = time.monotonic() - t0
            rec = inp.wait_record(lambda r: r.get("peer_id") == CLIENT_ID and
                                  r.get("close_reason") != "eof", timeout=5,
                                  what="record of the revoked connection")
            check_eq(rec["close_reason"], "peer_revoked", "close_reason")
            check(took < 3.0, "revoked connection closed %.1fs after the CRL changed" % took)
            echo_ok(bystander, b"bystander after")
            napp = app.connections
            # a new connection from the revoked client is refused at the handshake (the
            # outbound may reset its client before connect() has returned)
            s = ztlib.connect_or_reset(out_v.port("out"))
            if s is not None:
                try:
                    try:
                        s.sendall(b"let me back in")
                    except OSError:
                        pass
                    how, data = expect_closed(s, timeout=5, what="new connection of the "
                                              "revoked client")
                    check_eq(data, b"", "bytes the revoked client got back")
                finally:
                    safe_close(s)
            rec = inp.wait_record(lambda r: r.get("tls_error") == "revoked", timeout=5,
                                  what="record with tls_error revoked")
            check(rec["decision"] == "none", "decision of the refused handshake: %r" % rec)
            # and directly, with Python's TLS client holding the revoked SVID
            try:
                _, t = ztlib.tls_connect(inp.port("in"), cert=c.client["cert"],
                                         key=c.client["key"], ca=c.pki.ca_cert)
                try:
                    try:
                        t.sendall(b"x")
                    except OSError:
                        pass
                    how, data = expect_closed(t, timeout=5, what="direct TLS with revoked SVID")
                    check_eq(data, b"", "bytes to the direct revoked client")
                finally:
                    safe_close(t)
            except (ssl.SSLError, OSError):
                pass   # refused in the handshake itself: fine
            inp.wait_records(2, lambda r: r.get("tls_error") == "revoked", timeout=5,
                             what="two revoked handshakes")
            time.sleep(0.2)
            check_eq(app.connections, napp, "app connections opened for the revoked client")
        finally:
            safe_close(victim)
            safe_close(bystander)


# --------------------------------------------------------------------------------------
# (e) a peer whose SVID expires mid-connection

def case_peer_expires_mid_connection(c):
    ident, _ = served_identity(c, "rot-pexp")
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-pexp-in", ident, app.port) as inp:
        short = issue(c, CLIENT_ID, ttl="4s", backdate="1s", name="short-client")
        not_after = epoch(show_field(short["cert"], "not after"))
        _, s = ztlib.tls_connect(inp.port("in"), cert=short["cert"], key=short["key"],
                                 ca=c.pki.ca_cert)
        try:
            echo_ok(s, b"while valid")
            closed_at = None
            n = 0
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    s.sendall(b"tick %d" % n)
                    got = ztlib.recv_exact(s, len(b"tick %d" % n), timeout=2)
                    check_eq(got, b"tick %d" % n, "echo")
                    n += 1
                except (Failure, OSError):
                    closed_at = time.time()
                    break
                time.sleep(0.05)
            check(closed_at is not None, "connection still open 10 s after the peer SVID "
                  "expired at %s" % time.ctime(not_after))
            check(n > 0, "echoes while the SVID was valid")
            late = closed_at - not_after
            check(-0.5 <= late <= 2.5, "closed %.2fs after the peer SVID expired "
                  "(want within ~1 s)" % late)
            rec = inp.wait_record(lambda r: r.get("peer_id") == CLIENT_ID, timeout=5,
                                  what="record of the expiring peer")
            check_eq(rec["close_reason"], "peer_expired", "close_reason")
            check(rec["bytes_in"] > 0, "bytes_in %r" % rec["bytes_in"])
        finally:
            safe_close(s)


# --------------------------------------------------------------------------------------
# (f) our own SVID expires, then a valid replacement arrives

def case_own_svid_expires_then_replaced(c):
    aport = free_port()
    ident, first = served_identity(c, "rot-own", ttl="5s", backdate="1s")
    not_after = epoch(first["expires"])
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-own-in", ident, app.port, admin_port=aport) as inp, \
            outbound(c, "rot-own-out", inp.port("in"), c.client) as out:
        port = inp.port("in")
        check(time.time() < not_after - 0.5, "the inbound started too late to test "
              "(expires %s)" % first["expires"])
        # an established connection through an outbound: the outbound's peer (the
        # inbound) has an SVID that expires under it
        held = connect(out.port("out"))
        echo_ok(held, b"held across the expiry")
        _, s = ztlib.tls_connect(port, cert=c.client["cert"], key=c.client["key"],
                                 ca=c.pki.ca_cert, timeout=5)
        try:
            echo_ok(s, b"while our SVID is valid")
        finally:
            safe_close(s)
        check_eq(http_get(aport, "/ready")[0], 200, "/ready before expiry")
        time.sleep(max(0.0, not_after - time.time()) + 0.3)
        try:
            how, _ = expect_closed(held, timeout=3, what="outbound connection whose server "
                                   "SVID expired")
        finally:
            safe_close(held)
        orec = out.wait_record(lambda r: r.get("peer_id") == SERVER_ID, timeout=5,
                               what="outbound record of the held connection")
        check_eq(orec["close_reason"], "peer_expired", "outbound close_reason")
        napp = app.connections
        refused = 0
        for _ in range(2):
            try:
                _, s = ztlib.tls_connect(port, cert=c.client["cert"], key=c.client["key"],
                                         verify=False, timeout=5)
                try:
                    try:
                        s.sendall(b"x")
                    except OSError:
                        pass
                    expect_closed(s, timeout=5, what="connection after our SVID expired")
                finally:
                    safe_close(s)
            except (ssl.SSLError, OSError):
                pass
            refused += 1
        inp.wait_records(refused, lambda r: r.get("close_reason") == "svid_expired",
                         timeout=5, what="svid_expired records")
        check_eq(app.connections, napp, "app connections while expired")
        status, body = http_get(aport, "/ready")
        check_eq(status, 503, "/ready with an expired SVID")
        inp.wait_stderr("EXPIRED", timeout=3)
        # a valid replacement arrives
        new = issue(c, SERVER_ID, name="rot-own-new")
        nok = len(diag_lines(inp, "identity reloaded"))
        install_from(ident, new)
        wait_new_line(inp, "identity reloaded", nok)
        new_serial_served(port, c.client, c.pki.ca_cert, new["serial"],
                          "after the expired SVID was replaced")
        _, s = ztlib.tls_connect(port, cert=c.client["cert"], key=c.client["key"],
                                 ca=c.pki.ca_cert)
        try:
            echo_ok(s, b"works again")
        finally:
            safe_close(s)
        wait_until(lambda: http_get(aport, "/ready")[0] == 200, 3, what="/ready 200 again")


# --------------------------------------------------------------------------------------
# More: a Kubernetes-style ..data symlink swap, intermediates, CRL edge cases, expiry
# warning and metric

def case_k8s_data_symlink_swap(c):
    """A secret volume: svid.pem -> ..data/svid.pem, ..data -> ..<timestamp>/; the agent
    writes a new timestamped folder and renames a new ..data symlink over the old one."""
    d = c.ws.path("k8s")
    os.makedirs(d)
    state = {"n": 0}

    def publish(svid):
        state["n"] += 1
        ver = "..2026_11_26_%02d" % state["n"]
        os.makedirs(os.path.join(d, ver))
        for src, name in ((svid["cert"], "svid.pem"), (svid["key"], "svid_key.pem"),
                          (c.pki.ca_cert, "bundle.pem")):
            with open(os.path.join(d, ver, name), "wb") as f:
                f.write(read(src))
        tmp = os.path.join(d, "..data_tmp")
        os.symlink(ver, tmp)
        os.replace(tmp, os.path.join(d, "..data"))

    first = issue(c, SERVER_ID, name="k8s-0")
    publish(first)
    for name in ("svid.pem", "svid_key.pem", "bundle.pem"):
        os.symlink(os.path.join("..data", name), os.path.join(d, name))
    ident = {"cert": os.path.join(d, "svid.pem"), "key": os.path.join(d, "svid_key.pem"),
             "bundle": os.path.join(d, "bundle.pem")}
    with ztlib.EchoServer() as app, inbound(c, "k8s-in", ident, app.port) as inp:
        port = inp.port("in")
        check_eq("%x" % server_cert(port, c.client, c.pki.ca_cert)[0],
                 "%x" % int(first["serial"], 16), "serial at start")
        _, live = ztlib.tls_connect(port, cert=c.client["cert"], key=c.client["key"],
                                    ca=c.pki.ca_cert)
        try:
            echo_ok(live, b"before the swaps")
            for k in range(1, 4):
                new = issue(c, SERVER_ID, name="k8s-%d" % k)
                nok = len(diag_lines(inp, "identity reloaded"))
                publish(new)
                lines = wait_new_line(inp, "identity reloaded", nok)
                check(new["serial"] in lines[-1], "swap %d: %r" % (k, lines[-1]))
                new_serial_served(port, c.client, c.pki.ca_cert, new["serial"],
                                  "..data swap %d" % k)
                echo_ok(live, b"established connection after swap %d" % k)
            check_eq(len(diag_lines(inp, "identity reload failed")), 0, "failed reloads")
        finally:
            safe_close(live)


def make_intermediate(c, name):
    base = c.ws.path("issued", name)
    r = ztlib.run_cli(["identity", "ca", "--trust-domain", TD, "--cert", base + ".pem",
                       "--key", base + "_key.pem", "--ca-cert", c.pki.ca_cert,
                       "--ca-key", c.pki.ca_key])
    check(r.rc == 0, "identity ca (intermediate) failed: %r" % r)
    m = re.search(r"serial ([0-9a-fA-F]+)", r.out + r.err)
    check(m is not None, "no serial for the intermediate: %r" % r)
    return base + ".pem", base + "_key.pem", m.group(1).lower()


def case_rotation_to_intermediate_issued_svid(c):
    ident, first = served_identity(c, "rot-int")
    icert, ikey, _ = make_intermediate(c, "inter-srv")
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-int-in", ident, app.port) as inp, \
            outbound(c, "rot-int-out", inp.port("in"), c.client) as out:
        new = issue(c, SERVER_ID, ca=(icert, ikey), name="srv-under-intermediate")
        nok = len(diag_lines(inp, "identity reloaded"))
        install_from(ident, new)
        wait_new_line(inp, "identity reloaded", nok)
        # Python's client verifies leaf -> intermediate (sent by ztproxy) -> root
        new_serial_served(inp.port("in"), c.client, c.pki.ca_cert, new["serial"],
                          "under the intermediate")
        s = connect(out.port("out"))
        try:
            echo_ok(s, b"through an outbound, server chain with an intermediate")
        finally:
            safe_close(s)


def case_crl_revoking_intermediate_closes_its_leaves(c):
    ident, _ = served_identity(c, "rot-crli")
    icert, ikey, iserial = make_intermediate(c, "inter-cli")
    leaf = issue(c, CLIENT_ID, ca=(icert, ikey), name="client-under-intermediate")
    crl = c.ws.path("rot-crli", "root.crl.pem")
    make_crl(c, crl, [])
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-crli-in", ident, app.port, extra_identity={"crl": [crl]}) as inp:
        port = inp.port("in")
        _, victim = ztlib.tls_connect(port, cert=leaf["cert"], key=leaf["key"],
                                      ca=c.pki.ca_cert)
        _, other = ztlib.tls_connect(port, cert=c.bystander["cert"],
                                     key=c.bystander["key"], ca=c.pki.ca_cert)
        try:
            echo_ok(victim, b"under the intermediate")
            echo_ok(other, b"bystander")
            nok = len(diag_lines(inp, "identity reloaded"))
            tmp = c.ws.path("issued", "root-revokes-intermediate.crl.pem")
            make_crl(c, tmp, [iserial])
            atomic_write(crl, read(tmp))
            wait_new_line(inp, "identity reloaded", nok)
            expect_closed(victim, timeout=5, what="connection of a leaf under a revoked "
                          "intermediate")
            rec = inp.wait_record(lambda r: r.get("peer_id") == CLIENT_ID, timeout=5,
                                  what="record of the leaf under the revoked intermediate")
            check_eq(rec["close_reason"], "peer_revoked", "close_reason")
            echo_ok(other, b"bystander after")
            try:
                _, t = ztlib.tls_connect(port, cert=leaf["cert"], key=leaf["key"],
                                         ca=c.pki.ca_cert)
                try:
                    try:
                        t.sendall(b"x")
                    except OSError:
                        pass
                    expect_closed(t, timeout=5, what="new connection under the revoked "
                                  "intermediate")
                finally:
                    safe_close(t)
            except (ssl.SSLError, OSError):
                pass
            inp.wait_record(lambda r: r.get("tls_error") == "revoked", timeout=5,
                            what="record with tls_error revoked")
        finally:
            safe_close(victim)
            safe_close(other)


def case_crl_bad_replacements(c):
    """A CRL file replaced by garbage, or by a CRL signed by a rogue CA with our root's
    name: the reload fails (old CRL set stays), and nobody gets revoked by it."""
    ident, _ = served_identity(c, "rot-crlbad")
    crl = c.ws.path("rot-crlbad", "ca.crl.pem")
    make_crl(c, crl, [])
    rogue_ca = c.pki.ca(TD, "rogue-crl-ca")
    rogue_crl = c.ws.path("issued", "rogue.crl.pem")
    r = ztlib.run_cli(["identity", "revoke", "--ca-cert", rogue_ca[0], "--ca-key",
                       rogue_ca[1], "--serial", c.client["serial"], "--out", rogue_crl])
    check(r.rc == 0, "rogue revoke: %r" % r)
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-crlbad-in", ident, app.port, extra_identity={"crl": [crl]}) as inp:
        port = inp.port("in")
        _, live = ztlib.tls_connect(port, cert=c.client["cert"], key=c.client["key"],
                                    ca=c.pki.ca_cert)
        try:
            echo_ok(live, b"before")
            report = []
            for name, data in (("garbage CRL", b"-----BEGIN X509 CRL-----\nnope\n"),
                               ("CRL signed by a rogue CA with our root's name",
                                read(rogue_crl))):
                nfail = len(diag_lines(inp, "identity reload failed"))
                nok = len(diag_lines(inp, "identity reloaded"))
                atomic_write(crl, data)
                try:
                    lines = wait_new_line(inp, "identity reload failed", nfail, timeout=3)
                    report.append("%s: %s" % (name, lines[-1]))
                except Failure:
                    raise Failure("%s: no reload failure logged; new lines: %r" % (
                        name, diag_lines(inp, "identity reloaded")[nok:]))
                time.sleep(0.3)
                echo_ok(live, b"still there after " + name.encode())
                _, t = ztlib.tls_connect(port, cert=c.client["cert"], key=c.client["key"],
                                         ca=c.pki.ca_cert)
                try:
                    echo_ok(t, b"a new connection after " + name.encode())
                finally:
                    safe_close(t)
            print("    # " + "\n    # ".join(report))
        finally:
            safe_close(live)


def case_expiry_warning_and_metric(c):
    aport = free_port()
    # 60 s lifetime with 50 s gone: about 16% left, under the 20% default
    ident, first = served_identity(c, "rot-warn", ttl="60s", backdate="50s")
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-warn-in", ident, app.port, admin_port=aport) as inp:
        line = inp.wait_stderr("less than 20% of its lifetime", timeout=4)
        check(first["serial"] in line, "warning names the serial: %r" % line)
        m = metrics(aport)
        check_eq(m.get(("ztproxy_svid_expiry_timestamp_seconds", frozenset())),
                 float(epoch(first["expires"])), "svid expiry metric")
        new = issue(c, SERVER_ID, name="rot-warn-new")
        nok = len(diag_lines(inp, "identity reloaded"))
        install_from(ident, new)
        wait_new_line(inp, "identity reloaded", nok)
        m = metrics(aport)
        check_eq(m.get(("ztproxy_svid_expiry_timestamp_seconds", frozenset())),
                 float(epoch(new["expires"])), "svid expiry metric after rotation")
        time.sleep(1.2)
        check_eq(len(diag_lines(inp, "less than 20% of its lifetime")), 1,
                 "expiry warnings (once, and none for the fresh SVID)")


def case_crl_applies_to_handshake_in_flight(c):
    """A revoked client whose handshake is in flight when the CRL arrives: the client's
    ClientHello goes before the CRL swap, its Certificate/Finished flight (held back
    with ssl.MemoryBIO) 0.5 s after ztproxy logged the reload. It must not get in, or
    must be closed as peer_revoked at once: "no connection outlives the credential that
    admitted it"."""
    ident, _ = served_identity(c, "rot-crlhs")
    crl = c.ws.path("rot-crlhs", "ca.crl.pem")
    make_crl(c, crl, [])
    admin = free_port()
    with ztlib.EchoServer() as app, \
            inbound(c, "rot-crlhs-in", ident, app.port, admin_port=admin,
                    extra_identity={"crl": [crl]}) as inp:
        ctx = ztlib.client_context(c.client["cert"], c.client["key"], c.pki.ca_cert)
        inc, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, outb, server_side=False)
        sock = socket.create_connection(("127.0.0.1", inp.port("in")), timeout=5)

        def drive(step, timeout=5.0):
            """Run step() on the TLS object, feeding it from the socket; flushes what it
            writes while it still wants to read (a second ClientHello after an HRR)."""
            deadline = time.monotonic() + timeout
            while True:
                try:
                    return step()
                except ssl.SSLWantReadError:
                    pending = outb.read()
                    if pending:
                        sock.sendall(pending)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure("TLS step timed out")
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    raise EOFError("closed by the server")
                inc.write(data)

        try:
            drive(obj.do_handshake)          # done on the client's side ...
            held = outb.read()               # ... but its last flight is held back
            check(len(held) > 0, "a client flight to hold back")
            tmp = c.ws.path("issued", "hs-revoking.crl.pem")
            make_crl(c, tmp, [c.client["serial"]])
            nok = len(diag_lines(inp, "identity reloaded"))
            atomic_write(crl, read(tmp))
            wait_new_line(inp, "identity reloaded", nok)
            time.sleep(0.5)
            sock.sendall(held)               # Certificate, CertificateVerify, Finished
            t0 = time.monotonic()
            echoes = 0
            try:
                while time.monotonic() - t0 < 3.0:
                    obj.write(b"ping")
                    sock.sendall(outb.read())
                    check_eq(drive(lambda: obj.read(4)), b"ping", "echo")
                    echoes += 1
                    time.sleep(0.1)
            except (EOFError, ssl.SSLError, OSError):
                pass
            open_for = time.monotonic() - t0
        finally:
            safe_close(sock)
        check(open_for < 2.0, "a client revoked by a CRL loaded 0.5 s before it sent its "
              "certificate was admitted and served %d echoes for %.1fs (its handshake "
              "had begun before the CRL swap; it was verified against the old CRL and "
              "never re-checked)" % (echoes, open_for))
        rec = inp.wait_record(lambda r: r.get("peer_id") in (CLIENT_ID, None) and
                              r.get("close_reason") != "eof", timeout=5,
                              what="record of the revoked in-flight handshake")
        check(rec["close_reason"] in ("peer_revoked", "handshake_failed"),
              "close_reason %r" % rec["close_reason"])
        # Refused at the end of its handshake, it is a handshake failure and not also a
        # handshake; closed once admitted, a handshake and no failure.
        samples = ztlib.scrape(admin)
        done = sum(v for (name, labels), v in samples.items()
                   if name == "ztproxy_tls_handshakes_total" and ("listener", "in") in labels)
        failed = ztlib.metric_value(samples, "ztproxy_tls_handshake_failures_total", 0,
                                    listener="in", reason="revoked")
        check_eq((done, failed), (0, 1) if rec["close_reason"] == "handshake_failed"
                 else (1, 0), "(handshakes, handshake failures for revoked)")


CASES = [
    ("transfer_256MiB_through_10_rotations", case_transfer_through_ten_rotations),
    ("bad_replacements_keep_old_identity", case_bad_replacements_keep_old_identity),
    ("allow_id_change_accepts_new_id", case_allow_id_change),
    ("sighup_reloads", case_sighup_reloads),
    ("crl_revokes_live_peer", case_crl_revokes_live_peer),
    ("peer_svid_expires_mid_connection", case_peer_expires_mid_connection),
    ("own_svid_expires_then_replaced", case_own_svid_expires_then_replaced),
    ("k8s_data_symlink_swap", case_k8s_data_symlink_swap),
    ("rotation_to_intermediate_issued_svid", case_rotation_to_intermediate_issued_svid),
    ("crl_revoking_intermediate_closes_its_leaves",
     case_crl_revoking_intermediate_closes_its_leaves),
    ("crl_bad_replacements", case_crl_bad_replacements),
    ("crl_applies_to_handshake_in_flight", case_crl_applies_to_handshake_in_flight),
    ("expiry_warning_and_metric", case_expiry_warning_and_metric),
]

def _report_late_swaps():
    if LATE_SWAPS:
        print("# note: the old SVID was still served after \"identity reloaded\" was "
              "logged: %s" % LATE_SWAPS, flush=True)


if __name__ == "__main__":
    import atexit
    atexit.register(_report_late_swaps)
    only = sys.argv[1:]
    ztlib.run_cases("test_rotation", [x for x in CASES if not only or x[0] in only],
                    setup=setup, teardown=teardown)
