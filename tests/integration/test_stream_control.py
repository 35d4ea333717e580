#!/usr/bin/env python3
"""Connection control through the chain (client -> outbound -> inbound -> app):

half-close both ways, idle_timeout (on either side; activity keeps a connection alive),
max_connections (a connection over the limit is closed at once, the others keep
working, a freed slot is reusable), handshake_timeout (a TCP client that never speaks TLS
is closed), upstream down (close_reason upstream_connect_failed on either side), and
connect_timeout (an upstream that never answers the SYN), and a worker out of memory
for a new connection (accepting pauses, and resumes).
"""

import contextlib
import os
import resource
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, Failure, check, check_eq, check_record_shape, connect,  # noqa: E402
                   echo_roundtrip, expect_closed, recv_until_eof, safe_close, wait_until)


def chain(c, app_port, inbound_kw=None, outbound_kw=None, in_cfg=None, out_cfg=None):
    inp = c.mesh.inbound_proxy(app_port, cfg_extra=in_cfg, **(inbound_kw or {}))
    out = c.mesh.outbound_proxy(inp.port("in"), cfg_extra=out_cfg, **(outbound_kw or {}))
    return inp, out


# -- half-close ------------------------------------------------------------------------

def case_half_close_from_client(c):
    """client shutdown(SHUT_WR) -> the app sees EOF, and its reply still arrives."""
    def handler(s, rec):
        n = 0
        while True:
            b = s.recv(65536)
            if not b:
                break
            n += len(b)
        rec["eof"] = True
        rec["received"] = n
        time.sleep(0.2)  # reply well after the EOF
        s.sendall(b"got %d bytes" % n)
        s.shutdown(socket.SHUT_WR)

    with ztlib.TcpApp(handler) as app:
        inp, out = chain(c, app.port)
        with inp, out:
            s = connect(out.port("out"))
            try:
                s.sendall(b"q" * 100000)
                s.shutdown(socket.SHUT_WR)
                reply = recv_until_eof(s, timeout=5)
            finally:
                safe_close(s)
            check_eq(reply, b"got 100000 bytes", "reply after half-close")
            check(app.conns and app.conns[0]["eof"], "app did not see EOF")
            r = inp.wait_record(lambda r: r.get("peer_id") == CLIENT_ID)
            check_eq(r["close_reason"], "eof", "inbound close_reason")
            check_eq(r["bytes_in"], 100000, "inbound bytes_in")
            check_eq(r["bytes_out"], len(reply), "inbound bytes_out")


def case_half_close_from_app(c):
    """app sends then shutdown(SHUT_WR) -> the client reads EOF and can still send."""
    banner = b"banner;" * 3000

    def handler(s, rec):
        s.sendall(banner)
        s.shutdown(socket.SHUT_WR)
        data = bytearray()
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        rec["data"] = data
        rec["eof"] = True

    with ztlib.TcpApp(handler) as app:
        inp, out = chain(c, app.port)
        with inp, out:
            s = connect(out.port("out"))
            try:
                got = recv_until_eof(s, timeout=5)
                check_eq(len(got), len(banner), "banner length before EOF")
                check(got == banner, "banner bytes differ")
                time.sleep(0.2)
                late = b"late data after the server's EOF\n" * 100
                s.sendall(late)
                s.shutdown(socket.SHUT_WR)
                wait_until(lambda: app.conns and app.conns[0]["eof"], 5,
                           what="app to see the client's EOF")
                check(bytes(app.conns[0]["data"]) == late,
                      "app received %d bytes, want the %d late bytes" % (
                          len(app.conns[0]["data"]), len(late)))
            finally:
                safe_close(s)
            r = inp.wait_record(lambda r: r.get("peer_id") == CLIENT_ID)
            check_eq(r["close_reason"], "eof", "inbound close_reason")
            check_eq(r["bytes_out"], len(banner), "inbound bytes_out")
            check_eq(r["bytes_in"], len(late), "inbound bytes_in")


# -- idle timeout ----------------------------------------------------------------------

def idle_case(c, side):
    kw = {"idle_timeout": "1s"}
    with ztlib.EchoServer() as app:
        inp, out = chain(c, app.port, inbound_kw=kw if side == "in" else None,
                         outbound_kw=kw if side == "out" else None)
        with inp, out:
            s = connect(out.port("out"))
            try:
                local = s.getsockname()[1]
                echo_roundtrip(s, b"hello before going idle\n")
                t0 = time.monotonic()
                how, data = expect_closed(s, timeout=6, what="idle connection")
                took = time.monotonic() - t0
                check_eq(data, b"", "bytes after going idle")
            finally:
                safe_close(s)
            check(0.5 <= took <= 4.0, "idle connection closed after %.2fs, want ~1s" % took)
            if side == "in":
                r = inp.wait_record(lambda r: r.get("peer_id") == CLIENT_ID)
            else:
                r = out.wait_record(ztlib.by_src_port(local))
            check_record_shape(r, "record")
            check_eq(r["close_reason"], "idle_timeout", "close_reason on the %sbound side" % side)


def case_idle_timeout_inbound(c):
    idle_case(c, "in")


def case_idle_timeout_outbound(c):
    idle_case(c, "out")


def case_activity_keeps_connection(c):
    with ztlib.EchoServer() as app:
        inp, out = chain(c, app.port, inbound_kw={"idle_timeout": "1s"},
                         outbound_kw={"idle_timeout": "1s"})
        with inp, out:
            s = connect(out.port("out"))
            try:
                t_end = time.monotonic() + 2.5
                i = 0
                while time.monotonic() < t_end:
                    echo_roundtrip(s, b"tick %d\n" % i)
                    i += 1
                    time.sleep(0.3)
                expect_closed(s, timeout=6, what="connection after activity stopped")
            finally:
                safe_close(s)


# -- max_connections -------------------------------------------------------------------

def case_max_connections_outbound(c):
    with ztlib.EchoServer() as app:
        inp, out = chain(c, app.port, outbound_kw={"max_connections": 2},
                         out_cfg={"workers": 1})
        with inp, out:
            a = connect(out.port("out"))
            b = connect(out.port("out"))
            x = y = None
            try:
                echo_roundtrip(a, b"first\n")
                echo_roundtrip(b, b"second\n")
                x = connect(out.port("out"))
                x_port = x.getsockname()[1]
                try:
                    x.sendall(b"third\n")
                except OSError:
                    pass
                t0 = time.monotonic()
                how, data = expect_closed(x, timeout=3, what="connection over the limit")
                check(time.monotonic() - t0 < 1.5, "third connection not closed at once")
                check_eq(data, b"", "bytes to the third connection")
                r = out.wait_record(ztlib.by_src_port(x_port))
                check_eq(r["close_reason"], "connection_limit", "close_reason of the third")
                echo_roundtrip(a, b"first still works\n")
                echo_roundtrip(b, b"second still works\n")
                # free a slot: a new connection works again
                safe_close(a)
                a = None
                wait_until(lambda: len(out.records()) >= 2, 5, what="record of the freed slot")
                y = connect(out.port("out"))
                echo_roundtrip(y, b"fourth, after a slot was freed\n")
                check_eq(app.connections, 3, "app connections (the third never arrived)")
            finally:
                for s in (a, b, x, y):
                    safe_close(s)


def case_max_connections_inbound(c):
    with ztlib.EchoServer() as app:
        inp = c.mesh.inbound_proxy(app.port, max_connections=2, cfg_extra={"workers": 1})
        cl = c.mesh.client
        with inp:
            socks = []
            try:
                for i in range(2):
                    _, s = ztlib.tls_connect(inp.port("in"), cl["cert"], cl["key"],
                                             c.mesh.pki.ca_cert)
                    socks.append(s)
                    echo_roundtrip(s, b"conn %d\n" % i)
                raw = socket.create_connection(("127.0.0.1", inp.port("in")), timeout=5)
                local = raw.getsockname()[1]
                t0 = time.monotonic()
                try:
                    ctx = ztlib.client_context(cl["cert"], cl["key"], c.mesh.pki.ca_cert)
                    try:
                        t = ctx.wrap_socket(raw)
                    except (ssl.SSLError, OSError):
                        t = None
                    if t is not None:
                        socks.append(t)
                        try:
                            t.sendall(b"third\n")
                        except (ssl.SSLError, OSError):
                            pass
                        how, data = expect_closed(t, timeout=3, what="third connection")
                        check_eq(data, b"", "bytes to the third connection")
                finally:
                    safe_close(raw)
                check(time.monotonic() - t0 < 1.5, "third connection not closed at once")
                r = inp.wait_record(ztlib.by_src_port(local))
                check_eq(r["close_reason"], "connection_limit", "close_reason of the third")
                for i, s in enumerate(socks[:2]):
                    echo_roundtrip(s, b"still works %d\n" % i)
                check_eq(app.connections, 2, "app connections")
            finally:
                for s in socks:
                    safe_close(s)


# -- handshake timeout -----------------------------------------------------------------

def case_handshake_timeout_silent_client(c):
    with ztlib.CountingServer() as app:
        inp = c.mesh.inbound_proxy(app.port, handshake_timeout="1s")
        with inp:
            t0 = time.monotonic()  # the proxy's timer starts at accept, after this
            s = connect(inp.port("in"))
            p = connect(inp.port("in"))
            try:
                local, plocal = s.getsockname()[1], p.getsockname()[1]
                p.sendall(bytes.fromhex("160301"))  # the start of a TLS record, then nothing
                expect_closed(s, timeout=6, what="silent TCP client")
                took = time.monotonic() - t0
                expect_closed(p, timeout=6, what="client that sent 3 bytes")
            finally:
                safe_close(s)
                safe_close(p)
            check(0.5 <= took <= 4.0, "silent client closed after %.2fs, want ~1s" % took)
            for port, what in ((local, "silent"), (plocal, "partial")):
                r = inp.wait_record(ztlib.by_src_port(port), what="record of the %s client" % what)
                check_eq(r["close_reason"], "handshake_timeout", "%s client close_reason" % what)
                check_eq(r["decision"], "none", "%s client decision" % what)
            check_eq(app.connections, 0, "app connections")


# -- upstream down / connect timeout ---------------------------------------------------

def case_upstream_down_inbound(c):
    dead = ztlib.closed_port()
    inp = c.mesh.inbound_proxy(dead)
    cl = c.mesh.client
    with inp:
        local, s = ztlib.tls_connect(inp.port("in"), cl["cert"], cl["key"], c.mesh.pki.ca_cert)
        try:
            try:
                s.sendall(b"anyone there?\n")
            except OSError:
                pass
            how, data = expect_closed(s, timeout=5, what="client of a dead upstream")
            check_eq(data, b"", "bytes received")
        finally:
            safe_close(s)
        r = inp.wait_record(ztlib.by_src_port(local))
        check_record_shape(r, "record")
        check_eq(r["close_reason"], "upstream_connect_failed", "close_reason")
        check_eq(r["peer_id"], CLIENT_ID, "peer_id")


def case_upstream_down_outbound(c):
    dead = ztlib.closed_port()
    out = c.mesh.outbound_proxy(dead)
    with out:
        s = connect(out.port("out"))
        try:
            local = s.getsockname()[1]
            try:
                s.sendall(b"anyone there?\n")
            except OSError:
                pass
            how, data = expect_closed(s, timeout=5, what="client of a dead upstream")
            check_eq(data, b"", "bytes received")
        finally:
            safe_close(s)
        r = out.wait_record(ztlib.by_src_port(local))
        check_record_shape(r, "record")
        check_eq(r["close_reason"], "upstream_connect_failed", "close_reason")


@contextlib.contextmanager
def unanswering_upstream():
    """The port of a listener whose accept queue is full: it drops SYNs, so a connect
    to it never completes."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers = []
    try:
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        port = ls.getsockname()[1]
        # fill the accept queue (never accepted), then check that a connect now hangs
        for _ in range(4):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
            hangs = False
        except socket.timeout:
            hangs = True
        except OSError:
            hangs = False
        finally:
            probe.close()
        check(hangs, "cannot run: a connect to a full accept queue did not hang here")
        yield port
    finally:
        for f in fillers:
            safe_close(f)
        safe_close(ls)


def case_connect_timeout(c):
    with unanswering_upstream() as port:
        out = c.mesh.outbound_proxy(port, connect_timeout="1s")
        with out:
            t0 = time.monotonic()
            s = connect(out.port("out"))
            try:
                local = s.getsockname()[1]
                expect_closed(s, timeout=6, what="client of an unanswering upstream")
                took = time.monotonic() - t0
            finally:
                safe_close(s)
            check(0.7 <= took <= 4.0, "closed after %.2fs, want ~1s" % took)
            r = out.wait_record(ztlib.by_src_port(local))
            check_eq(r["close_reason"], "connect_timeout", "close_reason")


def vm_data(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise Failure("no VmData in /proc/%d/status" % pid)


def case_out_of_memory_pauses_accepting(c):
    """With no memory for a new connection, a worker leaves it in the accept queue and
    tries again each second, instead of losing the listener (libuv stops polling a
    listener whose connection was not taken). The memory runs out for real: one malloc
    arena (GLIBC_TUNABLES; under ASan, allocator_may_return_null), RLIMIT_DATA set to
    what the process uses, and clients that connect through an outbound whose upstream
    never answers, so that each holds its connection's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        check(hard == resource.RLIM_INFINITY or hard >= 4096,
              "cannot run: RLIMIT_NOFILE hard limit %d is under 4096" % hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    admin = ztlib.free_port()
    with unanswering_upstream() as port:
        cfg = {"identity": c.mesh.client, "workers": 1,
               "admin": {"listen": "127.0.0.1:%d" % admin},
               "listeners": [ztlib.outbound("hold", ztlib.free_port(), port,
                                            connect_timeout="60s")]}
        env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=1",
               "ASAN_OPTIONS": "allocator_may_return_null=1:detect_leaks=1"}
        p = ztlib.Proxy(c.mesh.ws.dir, cfg, name="oom", env=env).start()
        held = []
        try:
            # 600 connections (two fds each) first: libuv's per-fd table then has room
            # up to fd 2046, and libuv aborts where it cannot grow it. At most 350 more
            # below stay under that.
            held = [connect(p.port("hold")) for _ in range(600)]
            wait_until(lambda: ztlib.metric_value(
                ztlib.scrape(admin), "ztproxy_connections_active", 0, listener="hold")
                == 600, timeout=15, what="600 held connections")
            resource.prlimit(p.proc.pid, resource.RLIMIT_DATA,
                             (vm_data(p.proc.pid), resource.RLIM_INFINITY))
            for i in range(350):
                held.append(connect(p.port("hold")))
                if i % 10 == 9:
                    time.sleep(0.02)
                    if "accepting paused" in p.stderr():
                        break
            print("# %d more connections" % (i + 1), flush=True)
            wait_until(lambda: "accepting paused" in p.stderr(), timeout=5,
                       what="\"accepting paused\" once the memory ran out")
            resource.prlimit(p.proc.pid, resource.RLIMIT_DATA,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            wait_until(lambda: "accepting again" in p.stderr(), timeout=5,
                       what="\"accepting again\" once memory was back")
            new = connect(p.port("hold"))
            held.append(new)
            src = "127.0.0.1:%d" % new.getsockname()[1]
            wait_until(lambda: src in ztlib.admin_get(admin, "/connections")[1], timeout=5,
                       what="a new connection taken after the pause")
            pauses = ztlib.metric_value(ztlib.scrape(admin), "ztproxy_accept_pauses_total")
            check(pauses is not None and pauses >= 1, "ztproxy_accept_pauses_total %r" % pauses)
        finally:
            for s in held:
                safe_close(s)
            p.stop()


CASES = [
    ("half_close_from_client", case_half_close_from_client),
    ("half_close_from_app", case_half_close_from_app),
    ("idle_timeout_inbound", case_idle_timeout_inbound),
    ("idle_timeout_outbound", case_idle_timeout_outbound),
    ("activity_keeps_connection_open", case_activity_keeps_connection),
    ("max_connections_outbound", case_max_connections_outbound),
    ("max_connections_inbound", case_max_connections_inbound),
    ("handshake_timeout", case_handshake_timeout_silent_client),
    ("upstream_down_inbound", case_upstream_down_inbound),
    ("upstream_down_outbound", case_upstream_down_outbound),
    ("connect_timeout", case_connect_timeout),
]
# Accepting is the same on both data paths.
ONCE = [("out_of_memory_pauses_accepting", case_out_of_memory_pauses_accepting)]

if __name__ == "__main__":
    only = sys.argv[1:]
    ztlib.run_cases("test_stream_control",
                    [x for x in ztlib.on_both_data_paths(CASES) + ONCE
                     if not only or x[0] in only],
                    setup=ztlib.mesh_setup, teardown=ztlib.mesh_teardown)
