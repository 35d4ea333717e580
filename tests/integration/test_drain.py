#!/usr/bin/env python3
"""Draining on SIGTERM (and SIGINT).

A transfer of 32 MiB paced over ~1.5 s through the chain survives a SIGTERM to either
proxy byte-exact; new connections are refused as soon as the signal is handled; the
process exits 0 once the connection is done (well before drain_timeout). With
drain_timeout 1s a connection that stays open is cut (close_reason drain_timeout) and the
process still exits 0. An idle proxy exits 0 at once on SIGTERM and on SIGINT. Reloads
and admin requests during a drain reach the workers still draining.
"""

import hashlib
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import (CLIENT_ID, check, check_eq, connect, echo_roundtrip,  # noqa: E402
                   expect_closed, is_refused, recv_until_eof, safe_close, wait_until)

SIZE = 32 * 1024 * 1024
PACE = (512 * 1024, 0.025)  # 64 chunks, ~1.6 s


class Ctx:
    pass


def setup():
    c = Ctx()
    c.mesh = ztlib.Mesh()
    c.payload = ztlib.big_payload(SIZE)
    c.digest = hashlib.sha256(c.payload).hexdigest()
    return c


def teardown(c):
    c.mesh.cleanup()


def expect_refusing(port, what):
    wait_until(lambda: is_refused(port), 3, what="%s to refuse new connections" % what)
    time.sleep(0.2)
    check(is_refused(port), "%s accepted a connection again after refusing" % what)


def transfer_survives(c, victim):
    with ztlib.EchoServer() as app:
        inp = c.mesh.inbound_proxy(app.port, cfg_extra={"drain_timeout": "20s"})
        out = c.mesh.outbound_proxy(inp.port("in"), cfg_extra={"drain_timeout": "20s"})
        with inp, out:
            proxy = {"in": inp, "out": out}[victim]
            s = connect(out.port("out"), timeout=10)
            try:
                local = s.getsockname()[1]
                t = ztlib.Transfer(s, c.payload, SIZE, pace=PACE, shut_wr=True,
                                   timeout=120).start()
                wait_until(lambda: t.received >= 2 * 1024 * 1024, 10,
                           what="the transfer to get going")
                check(not t.send_done.is_set(), "transfer finished before the signal")
                proxy.terminate()
                expect_refusing(proxy.port(victim), victim + "bound proxy")
                check(proxy.alive(), "%sbound proxy exited with a transfer in flight"
                      % victim)
                digest, n = t.join()
                check_eq(n, SIZE, "bytes echoed back")
                check(digest == c.digest, "sha256 of the echoed data differs")
                check_eq(recv_until_eof(s, timeout=5), b"", "bytes after the echo")
            finally:
                safe_close(s)
            took = proxy.wait_exit(timeout=15)
            check(took < 15, "exit took %.1fs" % took)
            if victim == "out":
                r = out.wait_record(ztlib.by_src_port(local))
            else:
                r = inp.wait_record(lambda r: r.get("peer_id") == CLIENT_ID)
            check_eq(r["close_reason"], "eof", "close_reason of the drained connection")
            check_eq(r["bytes_in"], SIZE, "bytes_in")
            check_eq(r["bytes_out"], SIZE, "bytes_out")


def case_sigterm_outbound_mid_transfer(c):
    transfer_survives(c, "out")


def case_sigterm_inbound_mid_transfer(c):
    transfer_survives(c, "in")


def cut_after_drain_timeout(c, victim):
    with ztlib.EchoServer() as app:
        kw = {"drain_timeout": "1s"}
        inp = c.mesh.inbound_proxy(app.port, cfg_extra=kw if victim == "in" else None)
        out = c.mesh.outbound_proxy(inp.port("in"), cfg_extra=kw if victim == "out" else None)
        with inp, out:
            proxy = {"in": inp, "out": out}[victim]
            s = connect(out.port("out"))
            try:
                local = s.getsockname()[1]
                echo_roundtrip(s, b"I will stay open\n")
                proxy.terminate()
                t0 = time.monotonic()
                expect_refusing(proxy.port(victim), victim + "bound proxy")
                expect_closed(s, timeout=6, what="connection held open through the drain")
                cut = time.monotonic() - t0
            finally:
                safe_close(s)
            check(0.7 <= cut <= 4.0, "connection cut %.2fs after SIGTERM, want ~1s" % cut)
            took = proxy.wait_exit(timeout=10)
            check(took <= 5.0, "exit %.1fs after SIGTERM with drain_timeout 1s" % took)
            if victim == "out":
                r = out.wait_record(ztlib.by_src_port(local))
            else:
                r = inp.wait_record(lambda r: r.get("peer_id") == CLIENT_ID)
            check_eq(r["close_reason"], "drain_timeout", "close_reason")


def case_drain_timeout_inbound(c):
    cut_after_drain_timeout(c, "in")


def case_drain_timeout_outbound(c):
    cut_after_drain_timeout(c, "out")


def idle_exit(c, sig):
    with ztlib.EchoServer() as app:
        inp = c.mesh.inbound_proxy(app.port)
        with inp:
            inp.signal(sig)
            took = inp.wait_exit(timeout=10)
            check(took < 3.0, "idle proxy took %.1fs to exit" % took)


def case_idle_sigterm(c):
    idle_exit(c, signal.SIGTERM)


def case_idle_sigint(c):
    idle_exit(c, signal.SIGINT)


def case_reload_while_draining(c):
    """A SIGHUP, a policy change and an admin /connections while a drain goes on, after
    the workers without connections have ended their loops: both reloads are taken,
    /connections lists the connection still draining, the process stays up, and it
    exits 0 once that connection is done (a wake-up sent to an ended loop used to
    abort it)."""
    admin = ztlib.free_port()
    with ztlib.EchoServer() as app:
        inp = c.mesh.inbound_proxy(app.port, handshake_timeout="30s",
                                   cfg_extra={"drain_timeout": "20s", "workers": 4,
                                              "admin": {"listen": "127.0.0.1:%d" % admin}})
        with inp:
            s = connect(inp.port("in"))           # stays in its handshake
            try:
                src = "127.0.0.1:%d" % s.getsockname()[1]
                wait_until(lambda: src in ztlib.admin_get(admin, "/connections")[1], 5,
                           what="the connection to be listed")
                inp.terminate()
                expect_refusing(inp.port("in"), "inbound proxy")
                time.sleep(0.5)                   # the idle workers end their loops
                n = inp.stderr().count("reloaded")
                inp.signal(signal.SIGHUP)
                wait_until(lambda: inp.stderr().count("reloaded") > n, 5,
                           what="the SIGHUP reload")
                pol = inp.cfg["listeners"][0]["policy"]
                with open(pol, "a") as f:
                    f.write("# changed while draining\n")
                wait_until(lambda: "file change: policy" in inp.stderr(), 5,
                           what="the reload of the changed policy")
                status, body = ztlib.admin_get(admin, "/connections")
                check_eq(status, 200, "/connections during the drain")
                check(src in body, "the draining connection is not listed: %s" % body)
                check(inp.alive(), "the proxy died reloading during its drain:\n%s"
                      % ztlib.tail(inp.stderr()))
            finally:
                safe_close(s)
            took = inp.wait_exit(timeout=15)
            check(took < 15, "exit took %.1fs" % took)


CASES = [
    ("sigterm_outbound_mid_transfer_completes", case_sigterm_outbound_mid_transfer),
    ("sigterm_inbound_mid_transfer_completes", case_sigterm_inbound_mid_transfer),
    ("drain_timeout_cuts_open_connection_inbound", case_drain_timeout_inbound),
    ("drain_timeout_cuts_open_connection_outbound", case_drain_timeout_outbound),
    ("idle_proxy_sigterm_exits_0", case_idle_sigterm),
    ("idle_proxy_sigint_exits_0", case_idle_sigint),
    ("reload_while_draining", case_reload_while_draining),
]

if __name__ == "__main__":
    ztlib.run_cases("test_drain", CASES, setup=setup, teardown=teardown)
