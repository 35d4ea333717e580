#!/usr/bin/env python3
"""Flow control and the edges of a stream, through the chain
client -> outbound ztproxy -> inbound ztproxy -> app:

- backpressure: an app that does not read makes the client block after a bounded amount
  (the proxies do not buffer without limit, their RSS stays flat), and once the app
  reads, everything arrives byte-exact;
- a burst followed at once by close() is delivered whole, in both directions;
- a TCP reset on either end closes the other end, logged as close_reason reset;
- non-TLS bytes to an inbound listener are refused (tls_error) and reach nobody;
- 200 concurrent connections all work (4 workers per proxy);
- with busy_poll the proxies carry traffic as before, and stop spinning when idle;
  on CPUs busy with other work (a nice-19 spinner on each) they stop spinning and
  count it in ztproxy_busy_poll_backoffs_total;
- established connections run on io_uring by default (every case above runs again on
  the epoll path, io_uring: false), and where the kernel refuses io_uring the proxies
  say so and carry traffic on epoll.
"""

import hashlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, check, check_eq, connect, echo_roundtrip, free_port,  # noqa: E402,E501
                   expect_closed, recv_until_eof, safe_close, wait_until)

SANITIZED = os.environ.get("ZT_SANITIZE", "").upper() in ("1", "ON", "TRUE", "YES")
MiB = 1024 * 1024


def chain(c, app_port, workers=None):
    extra = {"workers": workers} if workers else None
    inp = c.mesh.inbound_proxy(app_port, cfg_extra=extra)
    out = c.mesh.outbound_proxy(inp.port("in"), cfg_extra=extra)
    return inp, out


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hard_close(s):
    """close() with SO_LINGER 0: the peer gets a TCP RST."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


# -- backpressure ----------------------------------------------------------------------

def hashing_reader(go, wait):
    """A TcpApp handler that reads nothing until go is set (or wait seconds passed),
    then reads to EOF, counting bytes and keeping their sha256 in rec["sha"]."""
    def handler(s, rec):
        go.wait(wait)
        h = hashlib.sha256()
        while True:
            b = s.recv(262144)
            if not b:
                break
            h.update(b)
            rec["received"] += len(b)
        rec["sha"] = h.hexdigest()
    return handler


def case_backpressure_bounded(c):
    total = 48 * MiB
    block = os.urandom(MiB)
    want = hashlib.sha256()
    for _ in range(total // MiB):
        want.update(block)
    go = threading.Event()
    with ztlib.TcpApp(hashing_reader(go, 30)) as app:
        inp, out = chain(c, app.port)
        with inp, out:
            base = {p.name: rss_mib(p.proc.pid) for p in (inp, out)}
            s = connect(out.port("out"))
            try:
                s.setblocking(False)
                view = memoryview(block)
                sent = 0
                while sent < total:
                    _, w, _ = select.select([], [s], [], 1.0)
                    if not w:
                        break  # blocked for a whole second: backpressure reached us
                    try:
                        sent += s.send(view[sent % MiB:])
                    except BlockingIOError:
                        pass
                grown = {p.name: rss_mib(p.proc.pid) - base[p.name] for p in (inp, out)}
                limit = 96 if SANITIZED else 32
                check(sent < total, "the client never blocked: %d MiB taken while the app "
                      "read nothing" % (sent // MiB))
                for name, g in grown.items():
                    check(g < limit, "%s grew by %.1f MiB of RSS while the app read nothing"
                          " (limit %d)" % (name, g, limit))
                go.set()
                s.setblocking(True)
                s.settimeout(60)
                while sent < total:
                    sent += s.send(view[sent % MiB:])
                s.shutdown(socket.SHUT_WR)
                wait_until(lambda: app.conns and app.conns[0]["done"], 60,
                           what="the app to read everything")
            finally:
                go.set()
                safe_close(s)
            check_eq(app.conns[0]["received"], total, "bytes the app received")
            check(app.conns[0].get("sha") == want.hexdigest(), "sha256 differs at the app")


# -- bursts then close -----------------------------------------------------------------

def case_client_burst_then_close(c):
    data = os.urandom(8 * MiB)
    with ztlib.CountingServer() as app:
        inp, out = chain(c, app.port)
        with inp, out:
            s = connect(out.port("out"))
            local = s.getsockname()[1]
            s.sendall(data)
            s.close()  # straight away: the proxies must flush before they close
            wait_until(lambda: app.conns and app.conns[0]["done"], 20,
                       what="the app to see EOF")
            check_eq(app.conns[0]["received"], len(data), "bytes the app received")
            check(bytes(app.conns[0]["data"]) == data, "the app received different bytes")
            r = out.wait_record(ztlib.by_src_port(local))
            check_eq(r["bytes_in"], len(data), "outbound bytes_in")
            check_eq(r["close_reason"], "eof", "outbound close_reason")


def case_app_burst_then_close(c):
    data = os.urandom(8 * MiB)

    def handler(s, rec):
        s.sendall(data)
        s.close()

    with ztlib.TcpApp(handler) as app:
        inp, out = chain(c, app.port)
        with inp, out:
            s = connect(out.port("out"))
            try:
                got = recv_until_eof(s, timeout=20)
            finally:
                safe_close(s)
            check_eq(len(got), len(data), "bytes the client received")
            check(got == data, "the client received different bytes")
            r = inp.wait_record(lambda r: r.get("peer_id") == CLIENT_ID)
            check_eq(r["bytes_out"], len(data), "inbound bytes_out")


# -- resets ----------------------------------------------------------------------------

def case_client_reset_propagates(c):
    with ztlib.EchoServer() as app:
        inp, out = chain(c, app.port)
        with inp, out:
            s = connect(out.port("out"))
            local = s.getsockname()[1]
            echo_roundtrip(s, b"before the reset\n")
            hard_close(s)
            wait_until(lambda: app.conns and app.conns[0]["done"], 5,
                       what="the app's connection to close after the client's RST")
            r = out.wait_record(ztlib.by_src_port(local))
            check_eq(r["close_reason"], "reset", "outbound close_reason")


def case_app_reset_propagates(c):
    def handler(s, rec):
        b = s.recv(100)
        rec["received"] += len(b)
        hard_close(s)

    with ztlib.TcpApp(handler) as app:
        inp, out = chain(c, app.port)
        with inp, out:
            s = connect(out.port("out"))
            try:
                s.sendall(b"hello\n")
                expect_closed(s, timeout=5, what="client connection after the app's RST")
            finally:
                safe_close(s)
            r = inp.wait_record(lambda r: r.get("peer_id") == CLIENT_ID)
            check_eq(r["close_reason"], "reset", "inbound close_reason")


# -- not TLS ---------------------------------------------------------------------------

def case_plain_bytes_to_inbound(c):
    with ztlib.CountingServer() as app:
        inp = c.mesh.inbound_proxy(app.port)
        with inp:
            s = connect(inp.port("in"))
            try:
                local = s.getsockname()[1]
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                how, data = expect_closed(s, timeout=5, what="plain-text client")
                check(b"HTTP/1.1" not in data, "got an HTTP answer from an mTLS port")
            finally:
                safe_close(s)
            r = inp.wait_record(ztlib.by_src_port(local))
            time.sleep(0.2)
            check_eq(app.connections, 0, "app connections")
            check_eq(r["close_reason"], "handshake_failed", "close_reason")
            check_eq(r["tls_error"], "tls_error", "tls_error")


# -- many ------------------------------------------------------------------------------

def case_200_concurrent(c):
    n = 200
    with ztlib.EchoServer() as app:
        inp, out = chain(c, app.port, workers=4)
        with inp, out:
            socks = []
            try:
                for i in range(n):
                    socks.append(connect(out.port("out"), timeout=10))
                for i, s in enumerate(socks):
                    s.sendall(b"conn %d\n" % i)
                for i, s in enumerate(socks):
                    got = ztlib.recv_exact(s, len(b"conn %d\n" % i), timeout=20)
                    check_eq(got, b"conn %d\n" % i, "reply on connection %d" % i)
            finally:
                for s in socks:
                    safe_close(s)
            wait_until(lambda: len(inp.records()) >= n, 20, what="%d inbound records" % n)
            check_eq(app.connections, n, "app connections")


# -- busy polling ------------------------------------------------------------------------

def case_busy_poll(c):
    """busy_poll keeps a worker polling after each burst of events: traffic flows as
    without it, and an idle proxy blocks again (no CPU burnt with nothing to do)."""
    extra = {"busy_poll": "2ms"}
    with ztlib.EchoServer() as app:
        inp = c.mesh.inbound_proxy(app.port, cfg_extra=extra)
        out = c.mesh.outbound_proxy(inp.port("in"), cfg_extra=extra)
        with inp, out:
            s = connect(out.port("out"), timeout=10)
            try:
                for i in range(300):
                    echo_roundtrip(s, b"request %d\n" % i, timeout=10)
                echo_roundtrip(s, os.urandom(256 * 1024), timeout=20)
            finally:
                safe_close(s)
            wait_until(lambda: len(inp.records()) >= 1, 10, what="the inbound record")
            check_eq(app.connections, 1, "app connections")
            time.sleep(0.5)                    # the last spin (2 ms) is long over
            pids = (inp.proc.pid, out.proc.pid)
            before = [cpu_seconds(p) for p in pids]
            time.sleep(3)
            used = [cpu_seconds(p) - b for p, b in zip(pids, before)]
            # Spinning for those 3 s would be 3 s of CPU each; blocking is ~0.
            check(max(used) < 0.3, "idle proxies used %r CPU seconds in 3 s" % used)


# a batch job: a nice-19 busy loop that ends by itself after 120 s, even if the script
# dies without stopping it
BUSY_LOOP = ("import os, time\nos.nice(19)\nend = time.monotonic() + 120\n"
             "while time.monotonic() < end:\n    pass\n")


def case_busy_poll_backs_off_on_busy_cpus(c):
    """A spinning worker that yields its CPU to a task that keeps it for a scheduler
    slice (here a nice-19 busy loop on every CPU) stops spinning for at least a second,
    so events wake it at once instead of waiting out that slice; each pause counts in
    ztproxy_busy_poll_backoffs_total. Traffic flows as before."""
    ports = [free_port(), free_port()]
    cfg = [{"busy_poll": "1ms", "workers": 1, "admin": {"listen": "127.0.0.1:%d" % p}}
           for p in ports]

    def backoffs():
        return [ztlib.metric_value(ztlib.scrape(p), "ztproxy_busy_poll_backoffs_total")
                for p in ports]

    with ztlib.EchoServer() as app:
        inp = c.mesh.inbound_proxy(app.port, cfg_extra=cfg[0])
        out = c.mesh.outbound_proxy(inp.port("in"), cfg_extra=cfg[1])
        with inp, out:
            check(None not in backoffs(), "ztproxy_busy_poll_backoffs_total exported")
            hogs, s = [], None
            try:
                for _ in range(len(os.sched_getaffinity(0))):
                    hogs.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP]))
                    ztlib._register(hogs[-1])
                s = connect(out.port("out"), timeout=10)
                start = time.monotonic()
                seen_at = None
                # Round trips 2 ms apart (a gap for the workers to spin in) until one
                # backs off, then 3 s more; 30 s and 10,000 round trips at most.
                for i in range(10000):
                    echo_roundtrip(s, b"request %d\n" % i, timeout=10)
                    time.sleep(0.002)
                    now = time.monotonic()
                    if seen_at is None and i % 50 == 49 and sum(backoffs()):
                        seen_at = now
                    if (seen_at is not None and now - seen_at > 3) or now - start > 30:
                        break
                counts, elapsed = backoffs(), time.monotonic() - start
                echo_roundtrip(s, os.urandom(256 * 1024), timeout=20)
            finally:
                safe_close(s)
                for h in hogs:
                    h.kill()
                    h.wait()
    check(sum(counts) > 0, "no busy_poll backoff in %.1f s of round trips on busy CPUs"
          % elapsed)
    # Each backoff pauses spinning for a second or more: a worker that counted them
    # but kept spinning would count one per long yield, hundreds a second.
    check(max(counts) <= elapsed + 1, "%r backoffs in %.1f s: spinning did not pause"
          % (counts, elapsed))


# -- the data path ------------------------------------------------------------------------

def data_path_of(c, extra):
    """Start the chain with admin endpoints, carry 1 MiB through one connection, and
    return (io_uring_workers of /config, the io_uring flag of that connection in
    /connections) for each proxy, and both proxies' stderr."""
    ports = [free_port(), free_port()]
    cfg = [dict(extra, workers=2, admin={"listen": "127.0.0.1:%d" % p}) for p in ports]
    seen = []
    with ztlib.EchoServer() as app:
        inp = c.mesh.inbound_proxy(app.port, cfg_extra=cfg[0])
        out = c.mesh.outbound_proxy(inp.port("in"), cfg_extra=cfg[1])
        with inp, out:
            s = connect(out.port("out"), timeout=10)
            try:
                echo_roundtrip(s, os.urandom(MiB), timeout=20)
                for port in ports:
                    status, body = ztlib.admin_get(port, "/config")
                    check_eq(status, 200, "/config status")
                    workers = json.loads(body)["io_uring_workers"]
                    status, body = ztlib.admin_get(port, "/connections")
                    check_eq(status, 200, "/connections status")
                    conns = json.loads(body)["connections"]
                    check_eq(len(conns), 1, "open connections on port %d" % port)
                    seen.append((workers, conns[0]["io_uring"]))
            finally:
                safe_close(s)
            wait_until(lambda: len(inp.records()) >= 1, 10, what="the inbound record")
            return seen, inp.stderr() + out.stderr()


def case_io_uring_by_default(c):
    """Both workers of each proxy have a ring and the established connection uses it;
    with io_uring: false none does."""
    seen, _ = data_path_of(c, {})
    check_eq(seen, [(2, True), (2, True)], "(io_uring workers, conn on io_uring) in, out")
    seen, _ = data_path_of(c, {"io_uring": False})
    check_eq(seen, [(0, False), (0, False)], "the same with io_uring: false")


def case_io_uring_refused_falls_back(c):
    """With io_uring disabled in the kernel (kernel.io_uring_disabled = 2), a proxy
    warns once per worker and carries the same traffic on epoll."""
    knob = "/proc/sys/kernel/io_uring_disabled"
    check(os.path.exists(knob), "cannot run: %s is missing (Linux 6.6 or later)" % knob)
    with open(knob) as f:
        before = f.read().strip()
    # Other tests running meanwhile start their proxies on epoll for this moment: their
    # cases pass on either path.
    with open(knob, "w") as f:
        f.write("2")
    try:
        seen, err = data_path_of(c, {})
    finally:
        with open(knob, "w") as f:
            f.write(before)
    check_eq(seen, [(0, False), (0, False)], "(io_uring workers, conn on io_uring)")
    check_eq(err.count("io_uring unavailable (io_uring_setup refused): established "
                       "connections use epoll"), 4, "warnings, one per worker")


def case_io_uring_buffers_exhausted(c):
    """80 connections on one worker push 1 MiB each at once toward an app that does not
    read yet: more receives complete together than the worker has provided buffers (32),
    and paused connections keep theirs, so receives fall back to blocks of their own
    (counted in ztproxy_io_uring_buffers_exhausted_total); then the app reads, and every
    connection's bytes arrive whole."""
    n, size = 80, MiB
    go = threading.Event()
    datas = [os.urandom(size) for _ in range(n)]
    want = {hashlib.sha256(d).hexdigest() for d in datas}
    aport = free_port()
    with ztlib.TcpApp(hashing_reader(go, 60)) as app:
        inp = c.mesh.inbound_proxy(app.port, cfg_extra={
            "workers": 1, "admin": {"listen": "127.0.0.1:%d" % aport}})
        out = c.mesh.outbound_proxy(inp.port("in"), cfg_extra={"workers": 1})
        with inp, out:
            socks = [connect(out.port("out"), timeout=10) for _ in range(n)]
            try:
                for s in socks:
                    s.setblocking(False)
                # every connection established before the burst
                wait_until(lambda: app.connections == n, 20, what="%d app connections" % n)
                sent = [0] * n
                deadline = time.time() + 30
                while min(sent) < size and time.time() < deadline:
                    progress = False
                    for i, s in enumerate(socks):
                        if sent[i] < size:
                            try:
                                k = s.send(memoryview(datas[i])[sent[i]:])
                                sent[i] += k
                                progress = progress or k > 0
                            except BlockingIOError:
                                pass
                    if not progress:
                        break      # every socket is full: backpressure reached the clients
                time.sleep(0.5)
                starved = ztlib.metric_value(ztlib.scrape(aport),
                                             "ztproxy_io_uring_buffers_exhausted_total")
                print("  buffers exhausted %r times" % starved, flush=True)
                check(starved and starved > 0, "no receive found the buffers exhausted "
                      "(ztproxy_io_uring_buffers_exhausted_total %r)" % starved)
                go.set()
                for i, s in enumerate(socks):
                    s.setblocking(True)
                    s.settimeout(60)
                    s.sendall(memoryview(datas[i])[sent[i]:])
                    s.shutdown(socket.SHUT_WR)
                wait_until(lambda: sum(1 for r in app.conns if "sha" in r) == n, 60,
                           what="the app to read every connection")
            finally:
                go.set()
                for s in socks:
                    safe_close(s)
            check_eq({r["sha"] for r in app.conns}, want, "sha256 of each connection's bytes")


CASES = [
    ("backpressure_bounded_then_byte_exact", case_backpressure_bounded),
    ("client_burst_then_close_delivered", case_client_burst_then_close),
    ("app_burst_then_close_delivered", case_app_burst_then_close),
    ("client_reset_propagates", case_client_reset_propagates),
    ("app_reset_propagates", case_app_reset_propagates),
    ("plain_bytes_to_inbound_refused", case_plain_bytes_to_inbound),
    ("two_hundred_concurrent_connections", case_200_concurrent),
    ("busy_poll_carries_traffic_and_idles", case_busy_poll),
    ("busy_poll_backs_off_on_busy_cpus", case_busy_poll_backs_off_on_busy_cpus),
]
DATA_PATH_CASES = [
    ("io_uring_by_default", case_io_uring_by_default),
    ("io_uring_buffers_exhausted_then_byte_exact", case_io_uring_buffers_exhausted),
    ("io_uring_refused_falls_back_to_epoll", case_io_uring_refused_falls_back),
]

if __name__ == "__main__":
    ztlib.run_cases("test_flow", ztlib.on_both_data_paths(CASES) + DATA_PATH_CASES,
                    setup=ztlib.mesh_setup, teardown=ztlib.mesh_teardown)
