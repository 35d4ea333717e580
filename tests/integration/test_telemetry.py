#!/usr/bin/env python3
"""Telemetry: the admin endpoint, exact Prometheus counters after known traffic (checked
with promtool), the access log (every line JSON with every field, SIGUSR1 reopening for
logrotate with no line lost), /ready during drain and after the SVID expired, and the
cap on peer_id series."""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, TD, check, check_eq, check_record_shape, connect,  # noqa: E402
                   echo_roundtrip, expect_closed, free_port, policy, rule, safe_close)

INTRUDER = "spiffe://%s/ns/evil/sa/intruder" % TD


http_get = ztlib.admin_get


def raw_http(port, data, timeout=5.0):
    s = connect(port, timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                return out.decode(errors="replace")
            out += d
    finally:
        safe_close(s)


def metric(text, name, **labels):
    return ztlib.metric_value(text, name, **labels)


def promtool_check(text):
    exe = shutil.which("promtool")
    check(exe is not None, "promtool is not installed (Debian package prometheus; "
                           "scripts/bootstrap.sh installs it)")
    r = subprocess.run([exe, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    check(r.returncode == 0, "promtool check metrics failed:\n%s%s" % (
        r.stdout.decode(), r.stderr.decode()))


class Ctx:
    pass


def setup():
    c = Ctx()
    c.mesh = ztlib.Mesh()
    c.intruder = c.mesh.pki.identity(INTRUDER, name="intruder")
    c.expired = c.mesh.pki.issue("spiffe://%s/ns/old/sa/x" % TD, backdate="2h", ttl="1h",
                                 name="expired")
    return c


def teardown(c):
    c.mesh.cleanup()


def admin_cfg(port, **kw):
    d = {"listen": "127.0.0.1:%d" % port}
    d.update(kw)
    return {"admin": d}


def case_exact_counters_after_known_traffic(c):
    aport = free_port()
    with ztlib.EchoServer() as app:
        pol = policy([rule("web-to-api", "allow", [CLIENT_ID], ports=[app.port])])
        with c.mesh.inbound_proxy(app.port, pol=pol, cfg_extra=admin_cfg(aport)) as inp:
            with c.mesh.outbound_proxy(inp.port("in")) as ok_out, \
                    c.mesh.outbound_proxy(inp.port("in"), identity=c.intruder) as bad_out:
                for i in range(3):                       # 3 allowed, 1000 bytes each way
                    s = connect(ok_out.port("out"))
                    echo_roundtrip(s, b"%04d" % i * 250)
                    safe_close(s)
                for _ in range(2):                       # 2 denied
                    s = connect(bad_out.port("out"))
                    try:
                        s.sendall(b"x")
                    except OSError:
                        pass
                    expect_closed(s, what="denied connection")
                    safe_close(s)
                # 1 handshake failure: an expired client certificate.
                try:
                    _, s = ztlib.tls_connect(inp.port("in"), cert=c.expired[0],
                                             key=c.expired[1], ca=c.mesh.pki.ca_cert)
                    try:
                        s.sendall(b"x")
                        s.recv(1)
                    except OSError:
                        pass
                    safe_close(s)
                except OSError:
                    pass
                inp.wait_records(6, what="6 inbound records")
                status, text = http_get(aport, "/metrics")
                check_eq(status, 200, "/metrics status")
                promtool_check(text)
                L = {"listener": "in"}
                check_eq(metric(text, "ztproxy_connections_total", decision="allow", **L), 3,
                         "allowed connections")
                check_eq(metric(text, "ztproxy_connections_total", decision="deny", **L), 2,
                         "denied connections")
                check_eq(metric(text, "ztproxy_connections_total", decision="none", **L), 1,
                         "connections without a decision (handshake failed)")
                check_eq(metric(text, "ztproxy_connections_active", **L), 0,
                         "active connections")
                check_eq(metric(text, "ztproxy_bytes_total", direction="in", **L), 3000,
                         "bytes in")
                check_eq(metric(text, "ztproxy_bytes_total", direction="out", **L), 3000,
                         "bytes out")
                check_eq(metric(text, "ztproxy_tls_handshake_failures_total", reason="expired",
                                **L), 1, "expired handshake failures")
                full = metric(text, "ztproxy_tls_handshakes_total", role="server",
                              tls_version="TLSv1.3", resumed="false", **L) or 0
                resumed = metric(text, "ztproxy_tls_handshakes_total", role="server",
                                 tls_version="TLSv1.3", resumed="true", **L) or 0
                check_eq(full + resumed, 5, "completed server handshakes")
                check(full >= 2, "the expired client and each outbound's first "
                                 "connection made full handshakes (%s)" % full)
                check_eq(metric(text, "ztproxy_policy_decisions_total", rule="web-to-api",
                                decision="allow", **L), 3, "decisions by web-to-api")
                check_eq(metric(text, "ztproxy_policy_decisions_total", rule="default",
                                decision="deny", **L), 2, "decisions by default")
                check_eq(metric(text, "ztproxy_peer_connections_total", peer_id=INTRUDER,
                                decision="deny", **L), 2, "intruder's denied connections")
                check_eq(metric(text, "ztproxy_connection_duration_seconds_count", **L), 6,
                         "duration observations")
                check_eq(metric(text, "ztproxy_tls_handshake_duration_seconds_count", **L), 5,
                         "handshake duration observations")
                check((metric(text, "ztproxy_svid_expiry_timestamp_seconds") or 0)
                      > time.time(), "svid expiry in the future")
                for name in ("process_resident_memory_bytes", "process_open_fds",
                             "process_cpu_seconds_total", "process_start_time_seconds"):
                    check((metric(text, name) or 0) > 0, "%s is set" % name)
                check("ztproxy_build_info{version=" in text, "build_info")
                # The outbound side of the allowed calls has its own counters.
                check_eq(metric(text, "ztproxy_reloads_total", what="policy",
                                result="failure"), 0, "policy reload failures")


def case_admin_endpoints(c):
    aport = free_port()
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port, cfg_extra=admin_cfg(aport)) as inp:
            with c.mesh.outbound_proxy(inp.port("in")) as out:
                check_eq(http_get(aport, "/healthz")[0], 200, "/healthz")
                check_eq(http_get(aport, "/ready"), (200, "ready\n"), "/ready")
                status, body = http_get(aport, "/config")
                check_eq(status, 200, "/config")
                cfg = json.loads(body)
                check_eq(cfg["listeners"][0]["name"], "in", "/config listener")
                key_pem = open(c.mesh.server["key"]).read()
                check("PRIVATE KEY" not in body and key_pem.splitlines()[1] not in body,
                      "/config shows no key material")
                status, body = http_get(aport, "/policy")
                pol = json.loads(body)["listeners"][0]
                check_eq([r["name"] for r in pol["rules"]], ["web-to-api"], "/policy rules")
                s = connect(out.port("out"))
                echo_roundtrip(s, b"hello")
                status, body = http_get(aport, "/connections")
                conns = json.loads(body)["connections"]
                check_eq(len(conns), 1, "one active connection")
                check_eq(conns[0]["peer_id"], CLIENT_ID, "its peer")
                check_eq(conns[0]["bytes_in"], 5, "its bytes_in")
                safe_close(s)
                status, body = http_get(aport, "/policy")
                check_eq(json.loads(body)["listeners"][0]["rules"][0]["hits"], 1,
                         "web-to-api hits")
                check_eq(http_get(aport, "/nope")[0], 404, "unknown path")
                check(raw_http(aport, b"GARBAGE\r\n\r\n").startswith("HTTP/1.1 400"),
                      "malformed request gets 400")
                check(raw_http(aport, b"POST /metrics HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: 0\r\n\r\n").startswith("HTTP/1.1 405"),
                      "POST gets 405")
                big = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"
                check(raw_http(aport, big).startswith("HTTP/1.1 431"), "oversized gets 431")
                # Idle clients cannot pile up: past 64 at once, new ones are closed.
                idle = [connect(aport) for _ in range(80)]
                try:
                    closed = set()
                    deadline = time.monotonic() + 3
                    while time.monotonic() < deadline:   # EOFs arrive within ms
                        ready, _, _ = select.select([x for x in idle if x not in closed],
                                                    [], [], 0.5)
                        if not ready:
                            break
                        for s2 in ready:
                            try:
                                if s2.recv(1) == b"":
                                    closed.add(s2)
                            except OSError:
                                closed.add(s2)
                    closed = len(closed)
                    check(closed >= 16, "%d of 80 idle admin clients closed, want >= 16" % closed)
                finally:
                    for s2 in idle:
                        safe_close(s2)
                def healthy():
                    try:
                        return http_get(aport, "/healthz")[0] == 200
                    except OSError:   # still over the cap while the closes land
                        return False
                ztlib.wait_until(healthy, 5, what="/healthz once the idle clients are gone")


def case_admin_refuses_remote_address(c):
    cfg = {"identity": c.mesh.client, "admin": {"listen": "0.0.0.0:%d" % free_port()},
           "listeners": [ztlib.outbound("out", free_port(), free_port())]}
    path = ztlib.write_config(c.mesh.ws.path("remote-admin.yaml"), cfg)
    r = ztlib.run_cli(["check", "-c", path])
    check_eq(r.rc, 2, "exit status")
    check("not a loopback address" in r.err and "allow_remote" in r.err,
          "reason: %r" % r.err)
    cfg["admin"]["allow_remote"] = True
    ztlib.write_config(path, cfg)
    check_eq(ztlib.run_cli(["check", "-c", path]).rc, 0, "allowed with allow_remote")


def case_access_log_lines_and_sigusr1_reopen(c):
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port) as inp:
            with c.mesh.outbound_proxy(inp.port("in")) as out:
                for i in range(5):
                    s = connect(out.port("out"))
                    echo_roundtrip(s, b"before %d" % i)
                    safe_close(s)
                inp.wait_records(5, what="5 records before rotation")
                rotated = inp.access_path + ".1"
                os.rename(inp.access_path, rotated)
                inp.signal(signal.SIGUSR1)
                inp.wait_stderr("reopening the access log")
                time.sleep(0.1)
                for i in range(5):
                    s = connect(out.port("out"))
                    echo_roundtrip(s, b"after %d" % i)
                    safe_close(s)
                ztlib.wait_until(lambda: os.path.exists(inp.access_path) and
                                 len(open(inp.access_path).read().splitlines()) >= 5,
                                 5, what="5 records in the reopened file")
                old = [json.loads(x) for x in open(rotated).read().splitlines()]
                new = [json.loads(x) for x in open(inp.access_path).read().splitlines()]
                check_eq(len(old) + len(new), 10, "records in both files (none lost)")
                check_eq(len(new), 5, "records in the new file")
                for r in old + new:
                    check_record_shape(r, "access-log record")
                    for f in ("enforced",):
                        check(f in r, "record has %s" % f)


def case_ready_503_during_drain(c):
    aport = free_port()
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port, cfg_extra=admin_cfg(aport)) as inp:
            with c.mesh.outbound_proxy(inp.port("in")) as out:
                s = connect(out.port("out"))
                echo_roundtrip(s, b"held open")
                check_eq(http_get(aport, "/ready")[0], 200, "/ready before drain")
                inp.signal(signal.SIGTERM)
                ztlib.wait_until(lambda: http_get(aport, "/ready")[0] == 503, 5,
                                 what="/ready 503 while draining")
                check("draining" in http_get(aport, "/ready")[1], "reason says draining")
                echo_roundtrip(s, b"still served while draining")
                safe_close(s)
                inp.wait_exit(10)   # asserts exit status 0 and a clean stderr


def case_ready_503_when_svid_expired(c):
    aport = free_port()
    ident = c.mesh.pki.identity("spiffe://%s/ns/prod/sa/api" % TD, ttl="4s",
                                backdate="1s", name="short")
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port, identity=ident,
                                  cfg_extra=admin_cfg(aport)) as inp:
            check_eq(http_get(aport, "/ready")[0], 200, "/ready while the SVID is valid")
            ztlib.wait_until(lambda: http_get(aport, "/ready")[0] == 503, 8,
                             what="/ready 503 after the SVID expired")
            check("expired" in http_get(aport, "/ready")[1], "reason says expired")
            check(inp.alive(), "still running")


def case_peer_series_capped(c):
    aport = free_port()
    n = 12
    ids = [c.mesh.pki.identity("spiffe://%s/ns/scan/sa/p%d" % (TD, i), name="p%d" % i)
           for i in range(n)]
    with ztlib.CountingServer() as app:
        with c.mesh.inbound_proxy(app.port, cfg_extra=admin_cfg(aport, max_peer_series=5)) as inp:
            for ident in ids:
                try:
                    _, s = ztlib.tls_connect(inp.port("in"), cert=ident["cert"],
                                             key=ident["key"], ca=c.mesh.pki.ca_cert)
                    try:
                        s.recv(1)
                    except OSError:
                        pass
                    safe_close(s)
                except OSError:
                    pass
            inp.wait_records(n, what="%d records" % n)
            text = http_get(aport, "/metrics")[1]
            series = [x for x in text.splitlines()
                      if x.startswith("ztproxy_peer_connections_total{")]
            check(len(series) <= 5, "%d peer series, cap 5:\n%s" % (len(series), "\n".join(series)))
            total = sum(float(x.rsplit(" ", 1)[1]) for x in series)
            check_eq(total, n, "every connection still counted")
            check(any('peer_id="other"' in x for x in series), "an other bucket")


def case_admin_survives_abusive_clients(c):
    """Clients that go away while /connections is being gathered, that send more after
    it, or that hold sockets open doing nothing: the admin server stays up and answers
    the next request at once, and closes an idle client within its 10 s."""
    aport = free_port()
    with ztlib.EchoServer() as app:
        with c.mesh.inbound_proxy(app.port, cfg_extra=admin_cfg(aport)) as inp:
            lone = connect(aport)                  # sends nothing at all
            opened = time.monotonic()
            for _ in range(3):                     # ask, then leave before the answer
                s = connect(aport)
                s.sendall(b"GET /connections HTTP/1.1\r\nHost: x\r\n\r\n")
                safe_close(s)
            for tail in (b"G", b"GET /connections HTTP/1.1\r\n\r\n"):
                out = raw_http(aport, b"GET /connections HTTP/1.1\r\nHost: x\r\n\r\n"
                               + tail)            # more bytes after one whole request
                check_eq(out.count("HTTP/1.1 "), 1, "answers to one connection")
                check(out.startswith("HTTP/1.1 200"), "/connections answered: %r" % out[:80])
            check_eq(http_get(aport, "/healthz")[0], 200, "/healthz after those")
            check(inp.alive(), "ztproxy still running")
            how, _ = ztlib.wait_closed(lone, timeout=max(0.5, opened + 12 - time.monotonic()))
            safe_close(lone)
            check(how != "timeout", "an idle admin client was not closed within 12 s")
            check(time.monotonic() - opened > 9, "an idle admin client closed before 10 s")
            idle = [connect(aport) for _ in range(80)]   # more than the 64 slots
            try:
                check_eq(http_get(aport, "/ready"), (200, "ready\n"),
                         "/ready while 80 idle clients are connected")
            finally:
                for s2 in idle:
                    safe_close(s2)


def case_metrics_with_many_listeners(c):
    """70 listeners: the series of the last one (an inbound, after 69 outbounds) show
    in /metrics."""
    aport = free_port()
    with ztlib.EchoServer() as app:
        ppath = c.mesh.policy_file(c.mesh.allow_client_policy(app.port), "many-policy")
        ports = set()
        while len(ports) < 70:          # 70 distinct ones (free_port reserves none)
            ports.add(free_port())
        ports = sorted(ports)
        listeners = [ztlib.outbound("out%d" % i, ports[i], app.port) for i in range(69)]
        listeners.append(ztlib.inbound("in_last", ports[69], app.port, ppath))
        cfg = {"identity": c.mesh.server, "listeners": listeners}
        cfg.update(admin_cfg(aport))
        with ztlib.Proxy(c.mesh.ws.dir, cfg, name="many") as p:
            cl = c.mesh.client
            _, t = ztlib.tls_connect(p.port("in_last"), cl["cert"], cl["key"],
                                     c.mesh.pki.ca_cert)
            try:
                echo_roundtrip(t, b"to the 70th listener\n")
            finally:
                safe_close(t)
            status, body = http_get(aport, "/metrics")
            check_eq(status, 200, "/metrics")
            check('ztproxy_policy_decisions_total{listener="in_last",rule="web-to-api",'
                  'decision="allow"} 1' in body,
                  "the 70th listener's decision series: %r"
                  % [x for x in body.splitlines() if "in_last" in x][:5])


def case_admin_port_taken_exits_1(c):
    """The admin port is in use: ztproxy run says so and exits 1 (no crash)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        cfg = {"identity": c.mesh.client,
               "admin": {"listen": "127.0.0.1:%d" % holder.getsockname()[1]},
               "listeners": [ztlib.outbound("out", free_port(), free_port())]}
        path = ztlib.write_config(c.mesh.ws.path("admin-taken.yaml"), cfg)
        r = ztlib.run_cli(["run", "-c", path], timeout=20)
        check_eq(r.rc, 1, "exit status (stderr: %s)" % r.err[-300:])
        check("admin: cannot listen" in r.err and "address already in use" in r.err,
              "the reason on stderr: %r" % r.err[-300:])
    finally:
        holder.close()


def case_admin_clients_open_at_exit(c):
    """The process stops with admin clients still connected, one idle and one halfway
    through its request: each is closed, and the admin's memory outlives their close
    callbacks (an earlier build freed it first: a use after free under ASan). Exit 0,
    clean stderr."""
    aport = free_port()
    with ztlib.EchoServer() as app:
        inp = c.mesh.inbound_proxy(app.port, cfg_extra=admin_cfg(aport))
        with inp:
            idle = socket.create_connection(("127.0.0.1", aport), timeout=5)
            partial = socket.create_connection(("127.0.0.1", aport), timeout=5)
            try:
                partial.sendall(b"GET /metr")
                check_eq(http_get(aport, "/healthz")[0], 200, "/healthz")
                inp.terminate()
                took = inp.wait_exit(timeout=10)
                check(took < 5, "exit took %.1fs" % took)
            finally:
                safe_close(idle)
                safe_close(partial)


CASES = [
    ("exact_counters_after_known_traffic", case_exact_counters_after_known_traffic),
    ("admin_endpoints", case_admin_endpoints),
    ("admin_refuses_remote_address", case_admin_refuses_remote_address),
    ("access_log_lines_and_sigusr1_reopen", case_access_log_lines_and_sigusr1_reopen),
    ("ready_503_during_drain", case_ready_503_during_drain),
    ("ready_503_when_svid_expired", case_ready_503_when_svid_expired),
    ("peer_series_capped", case_peer_series_capped),
    ("admin_survives_abusive_clients", case_admin_survives_abusive_clients),
    ("metrics_with_many_listeners", case_metrics_with_many_listeners),
    ("admin_port_taken_exits_1", case_admin_port_taken_exits_1),
    ("admin_clients_open_at_exit", case_admin_clients_open_at_exit),
]

if __name__ == "__main__":
    ztlib.run_cases("test_telemetry", CASES, setup=setup, teardown=teardown)
