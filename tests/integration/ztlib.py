"""tests/integration/ztlib.py: helpers for ztproxy's integration tests.

Each test_*.py script is a plain executable (Python 3 standard library only) that starts
REAL ztproxy processes on 127.0.0.1 with certificates issued by `ztproxy identity
ca/issue`, and talks to them with real peers: plain sockets, Python's ssl module as a raw
TLS client with arbitrary client certificates, and small threaded apps (EchoServer,
CountingServer). The binary is $ZTPROXY (default /work/main/build/ztproxy).

What this module gives:
  - run_cases(): the case runner: one line per case, then "N passed, N failed", and a
    non-zero exit on any failure (a missing binary or a busy port is a failure).
  - Pki: a temporary trust domain (ca(), issue()) made through the CLI.
  - to_yaml()/write_config(): dict -> YAML text, written by hand (no PyYAML).
  - Proxy: `ztproxy run -c`, waits until its listeners are in LISTEN state (owned by its
    pid, read from /proc, so no probe connection pollutes the access log), collects
    stdout/stderr to files, reads the access log (JSON lines), and stops with SIGTERM,
    asserting exit status 0 and no sanitizer report on stderr.
  - TcpApp / EchoServer / CountingServer: threaded apps that count connections and bytes.
  - socket helpers: free_port(), connect(), tls_connect(), recv_exact(), wait_closed().

Every wait is bounded; every process started is registered and killed at exit at the
latest, even when a case fails half-way.
"""

import atexit
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ZTPROXY = os.environ.get("ZTPROXY", "/work/main/build/ztproxy")
TD = "example.org"
SANITIZER_MARKERS = ("AddressSanitizer", "runtime error", "LeakSanitizer")
KEEP = bool(os.environ.get("ZT_KEEP"))  # keep temp dirs for post-mortem

# Every child process we start, so that nothing outlives the script.
_children = []
_children_lock = threading.Lock()


def _register(p):
    with _children_lock:
        _children.append(p)


def _kill_all_children():
    with _children_lock:
        procs = list(_children)
    for p in procs:
        if p.poll() is None:
            try:
                p.terminate()
            except OSError:
                pass
    deadline = time.monotonic() + 5
    for p in procs:
        if p.poll() is None:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    p.kill()
                    p.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass


atexit.register(_kill_all_children)


# --------------------------------------------------------------------------------------
# Assertions, waits

class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def check_eq(got, want, what):
    if got != want:
        raise Failure("%s: got %r, want %r" % (what, got, want))


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Poll pred() until it returns a truthy value; return it. Fail after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Failure("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def child_env(extra=None):
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if extra:
        env.update(extra)
    return env


def check_no_sanitizer(text, what):
    for m in SANITIZER_MARKERS:
        if m in text:
            raise Failure("%s: stderr contains %r:\n%s" % (what, m, tail(text, 60)))


def tail(text, n=30):
    lines = text.splitlines()
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------------------
# Running the CLI

class Result:
    def __init__(self, args, rc, out, err, elapsed):
        self.args, self.rc, self.out, self.err, self.elapsed = args, rc, out, err, elapsed

    def __repr__(self):
        return "rc=%r\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            self.rc, tail(self.out, 40), tail(self.err, 40))


def run_cli(args, timeout=30, cwd=None, check_sanitizers=True):
    """Run `ztproxy ARGS...` to completion (bounded); return a Result."""
    t0 = time.monotonic()
    p = subprocess.Popen([ZTPROXY] + list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                         env=child_env())
    _register(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        raise Failure("`ztproxy %s` did not finish within %ss; stderr:\n%s" % (
            " ".join(args), timeout, tail(err.decode("utf-8", "replace"))))
    r = Result(args, p.returncode, out.decode("utf-8", "replace"),
               err.decode("utf-8", "replace"), time.monotonic() - t0)
    if check_sanitizers:
        check_no_sanitizer(r.err, "ztproxy " + " ".join(args))
    return r


# --------------------------------------------------------------------------------------
# PKI through `ztproxy identity`

class Pki:
    """A temporary folder holding a trust domain made with `ztproxy identity ca`."""

    def __init__(self, td=TD, root=None):
        self.dir = tempfile.mkdtemp(prefix="ztpki-", dir=root)
        self.td = td
        self._n = 0
        self.ca_cert, self.ca_key = self.ca(td, "ca")

    def _name(self, hint):
        self._n += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", hint).strip("_")[-40:] or "x"
        return os.path.join(self.dir, "%02d-%s" % (self._n, safe))

    def ca(self, td, name=None, ttl=None):
        base = self._name(name or ("ca-" + td))
        cert, key = base + ".pem", base + "_key.pem"
        args = ["identity", "ca", "--trust-domain", td, "--cert", cert, "--key", key]
        if ttl:
            args += ["--ttl", ttl]
        r = run_cli(args)
        if r.rc != 0 or not os.path.exists(cert) or not os.path.exists(key):
            raise Failure("identity ca failed: %s\n%r" % (" ".join(args), r))
        return cert, key

    def issue(self, spiffe_id, ca=None, ttl=None, backdate=None, extra_uri=(),
              no_uri=False, dns=(), is_ca=False, name=None):
        ca_cert, ca_key = ca or (self.ca_cert, self.ca_key)
        base = self._name(name or spiffe_id.split("/", 3)[-1])
        cert, key = base + ".pem", base + "_key.pem"
        args = ["identity", "issue", "--ca-cert", ca_cert, "--ca-key", ca_key,
                "--id", spiffe_id, "--cert", cert, "--key", key]
        if ttl:
            args += ["--ttl", ttl]
        if backdate:
            args += ["--backdate", backdate]
        for u in extra_uri:
            args += ["--extra-uri", u]
        if no_uri:
            args += ["--no-uri"]
        for d in dns:
            args += ["--dns", d]
        if is_ca:
            args += ["--is-ca"]
        r = run_cli(args)
        if r.rc != 0 or not os.path.exists(cert) or not os.path.exists(key):
            raise Failure("identity issue failed: ztproxy %s\n%r" % (" ".join(args), r))
        return cert, key

    def identity(self, spiffe_id, **kw):
        """An `identity:` config block for a fresh SVID of spiffe_id under this CA."""
        cert, key = self.issue(spiffe_id, **kw)
        return {"cert": cert, "key": key, "bundle": self.ca_cert}

    def cleanup(self):
        if not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# YAML, by hand

_PLAIN_RE = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./:@*+-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if _PLAIN_RE.match(s) and not s.endswith(":") and s.lower() not in _RESERVED:
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
            elif isinstance(v, list) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
            elif isinstance(v, list):
                out.append("%s%s: []\n" % (pad, k))
            elif isinstance(v, dict):
                out.append("%s%s: {}\n" % (pad, k))
            else:
                out.append("%s%s: %s\n" % (pad, k, _scalar(v)))
        return "".join(out)
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2)
                # put the first line right after "- "
                out.append(pad + "- " + inner[indent + 2:])
            else:
                out.append("%s- %s\n" % (pad, _scalar(v) if not isinstance(v, (dict, list))
                                         else ("{}" if isinstance(v, dict) else "[]")))
        return "".join(out)
    return pad + _scalar(obj) + "\n"


def write_config(path, obj):
    """Write obj as YAML to path; return path."""
    with open(path, "w") as f:
        f.write(to_yaml(obj))
    return path


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def policy(rules=(), default="deny", mode="enforce", td=TD):
    return {"trust_domain": td, "mode": mode, "default": default, "rules": list(rules)}


def rule(name, action, frm, ports=None):
    r = {"name": name, "action": action, "from": list(frm)}
    if ports is not None:
        r["to"] = {"ports": list(ports)}
    return r


def inbound(name, listen_port, forward_port, policy_path, **extra):
    d = {"name": name, "mode": "inbound", "listen": "127.0.0.1:%d" % listen_port,
         "forward": "127.0.0.1:%d" % forward_port, "protocol": "tcp", "policy": policy_path}
    d.update(extra)
    return d


def outbound(name, listen_port, upstream_port, expect_server=None, **extra):
    d = {"name": name, "mode": "outbound", "listen": "127.0.0.1:%d" % listen_port,
         "upstream": "127.0.0.1:%d" % upstream_port}
    if expect_server is not None:
        d["expect_server"] = list(expect_server)
    d.update(extra)
    return d


# --------------------------------------------------------------------------------------
# The admin endpoint

def admin_get(port, path, timeout=5.0):
    """(status, body) of GET path on an admin endpoint at 127.0.0.1:port."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                    timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        m = _SAMPLE_RE.match(line) if line and not line.startswith("#") else None
        if m:
            labels = frozenset(_LABEL_RE.findall(m.group(3) or ""))
            out[(m.group(1), labels)] = float(m.group(4))
    return out


def scrape(port):
    """The samples of /metrics on the admin port (asserting a 200)."""
    status, text = admin_get(port, "/metrics")
    check_eq(status, 200, "/metrics status")
    return parse_metrics(text)


def metric_value(samples, name, default=None, **labels):
    """The sample name{labels} (the label set must match exactly) of samples (a dict
    from parse_metrics/scrape, or exposition text), or default."""
    if isinstance(samples, str):
        samples = parse_metrics(samples)
    return samples.get((name, frozenset(labels.items())), default)


# --------------------------------------------------------------------------------------
# Ports and sockets

def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


_EPHEMERAL = _ephemeral_range()
_PORTS = random.Random(os.getpid() ^ int(time.time() * 1000))


def free_port():
    """A port that was free on 127.0.0.1 a moment ago. Taken below the kernel's
    ephemeral range when it can be: the client sockets of tests running alongside
    (thousands, in some) take their local ports from that range, and one of them
    could land on a port picked there before the listener binds it."""
    lo = 10000 if _EPHEMERAL[0] > 10000 + 1000 else 1024
    for _ in range(64):
        port = _PORTS.randrange(lo, _EPHEMERAL[0])
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def closed_port():
    """A port on 127.0.0.1 where nothing listens (connect is refused)."""
    for _ in range(20):
        p = free_port()
        if not _listening_inodes(p):
            return p
    raise Failure("could not find a closed port")


def connect(port, timeout=5.0, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def connect_or_reset(port, timeout=5.0):
    """connect(), or None when the connection was reset before connect() returned: a
    refusal that fast (an outbound resets its client when the upstream refuses it)."""
    try:
        return connect(port, timeout)
    except ConnectionResetError:
        return None


def client_context(cert=None, key=None, ca=None, verify=True, tls13=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # SVIDs carry a URI SAN, not a DNS name
    if verify and ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(ca)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if tls13:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def tls_connect(port, cert=None, key=None, ca=None, verify=True, timeout=5.0):
    """A TCP connection to port, then a TLS handshake; returns (raw_port, ssl_socket).
    Raises on handshake failure (the raw socket is closed then)."""
    ctx = client_context(cert, key, ca, verify)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.settimeout(timeout)
    local_port = raw.getsockname()[1]
    try:
        s = ctx.wrap_socket(raw, server_side=False)
    except BaseException:
        raw.close()
        raise
    return local_port, s


def recv_exact(s, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure("recv_exact: got %d of %d bytes before timeout" % (len(buf), n))
        s.settimeout(left)
        try:
            chunk = s.recv(n - len(buf))
        except socket.timeout:
            continue
        if not chunk:
            raise Failure("recv_exact: EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_until_eof(s, timeout=10.0, limit=1 << 30):
    """Read until EOF; returns bytes. Fails on timeout."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure("recv_until_eof: no EOF within %.1fs (%d bytes read)" % (
                timeout, len(buf)))
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise Failure("recv_until_eof: more than %d bytes" % limit)


def wait_closed(s, timeout=5.0):
    """Read and discard until the peer closes. Returns (how, data) where how is "eof",
    "reset" (ECONNRESET/EPIPE), "tls_alert" (ssl error), or "timeout"."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout", bytes(data)
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ssl.SSLError as e:
            if isinstance(e, (ssl.SSLZeroReturnError, ssl.SSLEOFError)):
                return "eof", bytes(data)
            return "tls_alert", bytes(data)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return "reset", bytes(data)
        except OSError as e:
            return "error:%s" % e, bytes(data)
        if not chunk:
            return "eof", bytes(data)
        data += chunk


def expect_closed(s, timeout=5.0, what="connection"):
    how, data = wait_closed(s, timeout)
    check(how != "timeout", "%s was not closed within %.1fs" % (what, timeout))
    return how, data


def safe_close(s):
    if s is None:
        return
    try:
        s.close()
    except OSError:
        pass


def is_refused(port, timeout=1.0):
    """True when a TCP connect to 127.0.0.1:port is refused."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


# --------------------------------------------------------------------------------------
# Listening sockets of a process, from /proc

def _listening_inodes(port):
    found = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                lines = fh.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != "0A":
                continue
            if int(parts[1].rsplit(":", 1)[1], 16) == port:
                found.add(parts[9])
    return found


def _pid_socket_inodes(pid):
    inodes = set()
    d = "/proc/%d/fd" % pid
    try:
        names = os.listdir(d)
    except OSError:
        return inodes
    for n in names:
        try:
            link = os.readlink(os.path.join(d, n))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def pid_listens_on(pid, port):
    return bool(_listening_inodes(port) & _pid_socket_inodes(pid))


# --------------------------------------------------------------------------------------
# A ztproxy process

class Proxy:
    """One `ztproxy run -c FILE` process.

    cfg is the config dict (identity, listeners, ...). Unless cfg has log.access, the
    access log goes to <dir>/<name>-access.log. drain_timeout defaults to 5s here so that
    a forgotten connection cannot stall a test for 30 s.

    Use as a context manager: on a clean exit of the block it is stopped with SIGTERM and
    its exit status (0) and stderr (no sanitizer report) are asserted; if the block
    raised, it is terminated (then killed) without further checks.
    """

    def __init__(self, workdir, cfg, name="proxy", start_timeout=15.0, cwd=None,
                 env=None):
        self.workdir = workdir
        self.env = env  # added to the process's environment
        self.name = name
        self.cfg = dict(cfg)
        log = dict(self.cfg.get("log", {}))
        log.setdefault("access", os.path.join(workdir, name + "-access.log"))
        log.setdefault("level", "info")
        self.cfg["log"] = log
        self.cfg.setdefault("drain_timeout", "5s")
        self.access_path = log["access"] if log["access"] not in ("stdout", "off") else None
        self.cfg_path = os.path.join(workdir, name + ".yaml")
        self.out_path = os.path.join(workdir, name + ".stdout")
        self.err_path = os.path.join(workdir, name + ".stderr")
        self.start_timeout = start_timeout
        self.cwd = cwd or workdir  # the process's working folder
        self.proc = None
        self.rc = None
        self.term_sent_at = None
        self.exit_checked = False

    # -- lifecycle ---------------------------------------------------------------------
    def listen_ports(self):
        ports = []
        for l in self.cfg.get("listeners", []):
            ports.append(int(str(l["listen"]).rsplit(":", 1)[1]))
        return ports

    def port(self, listener_name):
        for l in self.cfg["listeners"]:
            if l["name"] == listener_name:
                return int(str(l["listen"]).rsplit(":", 1)[1])
        raise KeyError(listener_name)

    def _remap_ports(self, busy):
        """Give the listeners on busy ports fresh free ports (another test grabbed them
        between free_port() and our bind); addresses in this same config that pointed
        at them (an outbound aimed at its own inbound) follow."""
        moved = {}
        for l in self.cfg.get("listeners", []):
            host, port = str(l["listen"]).rsplit(":", 1)
            if int(port) in busy:
                new = free_port()
                moved["%s:%s" % (host, port)] = "%s:%d" % (host, new)
                l["listen"] = "%s:%d" % (host, new)
        for l in self.cfg.get("listeners", []):
            for k in ("forward", "upstream"):
                if l.get(k) in moved:
                    l[k] = moved[l[k]]
        return moved

    def start(self, attempts=3):
        """Start and wait until every listener is in LISTEN state. A port found busy
        (before start, or "address already in use" from ztproxy) is re-picked, up to
        attempts times; then the start fails saying why."""
        if not os.path.exists(ZTPROXY):
            raise Failure("ztproxy binary not found at %s" % ZTPROXY)
        for attempt in range(attempts):
            busy = [p for p in self.listen_ports() if _listening_inodes(p)]
            if busy:
                if attempt == attempts - 1:
                    raise Failure("ports %s are busy before starting %s" % (busy, self.name))
                self._remap_ports(busy)
                continue
            if self._start_once(last=attempt == attempts - 1):
                return self
        raise Failure("%s: could not start after %d attempts" % (self.name, attempts))

    def _start_once(self, last):
        write_config(self.cfg_path, self.cfg)
        self._close_files()
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([ZTPROXY, "run", "-c", self.cfg_path],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, cwd=self.cwd,
                                     env=child_env(self.env))
        _register(self.proc)
        deadline = time.monotonic() + self.start_timeout
        pending = list(self.listen_ports())
        while pending:
            if self.proc.poll() is not None:
                err = self.stderr()
                if not last and "address already in use" in err.lower():
                    busy = [p for p in pending if (":%d:" % p) in err or
                            (":%d " % p) in err or err.rstrip().endswith(":%d" % p)]
                    self._remap_ports(busy or pending)
                    return False
                raise Failure("%s exited with %s before listening; stderr:\n%s" % (
                    self.name, self.proc.returncode, tail(err)))
            pending = [p for p in pending if not pid_listens_on(self.proc.pid, p)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise Failure("%s: ports %s not listening within %.0fs; stderr:\n%s" % (
                    self.name, pending, self.start_timeout, tail(self.stderr())))
            time.sleep(0.02)
        return True

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)
            if sig in (signal.SIGTERM, signal.SIGINT) and self.term_sent_at is None:
                self.term_sent_at = time.monotonic()

    def terminate(self):
        self.signal(signal.SIGTERM)

    def wait_exit(self, timeout=20.0):
        """Wait for the process to exit (after terminate()); assert exit 0 and a clean
        stderr. Returns seconds since SIGTERM was sent."""
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failure("%s did not exit within %.0fs of SIGTERM; stderr:\n%s" % (
                self.name, timeout, tail(self.stderr())))
        took = time.monotonic() - (self.term_sent_at or time.monotonic())
        self.exit_checked = True
        self._close_files()
        err = self.stderr()
        check_no_sanitizer(err, self.name)
        check(self.rc == 0, "%s exited with status %s after SIGTERM (want 0); stderr:\n%s"
              % (self.name, self.rc, tail(err)))
        return took

    def stop(self, timeout=20.0):
        if self.proc is None or self.exit_checked:
            return
        if not self.alive():
            self.rc = self.proc.returncode
            self.exit_checked = True
            self._close_files()
            raise Failure("%s had already exited with %s; stderr:\n%s" % (
                self.name, self.rc, tail(self.stderr())))
        self.terminate()
        return self.wait_exit(timeout)

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self._close_files()

    def _close_files(self):
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.kill()
            raise

    def __exit__(self, et, ev, tb):
        if et is None:
            try:
                self.stop()
            finally:
                self.kill()
        else:
            self.kill()
        return False

    # -- output ------------------------------------------------------------------------
    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def records(self):
        """Access-log records written so far (complete JSON lines only)."""
        if self.access_path:
            try:
                with open(self.access_path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                return []
        else:
            text = self.stdout()
        recs = []
        for line in text.split("\n")[:-1]:  # the last piece may be partial
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                recs.append(json.loads(line))
            except ValueError:
                raise Failure("%s: access log line is not JSON: %r" % (self.name, line))
        return recs

    def wait_record(self, pred=lambda r: True, timeout=5.0, what="access-log record"):
        """The first access-log record matching pred; waits for it (bounded)."""
        def find():
            for r in self.records():
                if pred(r):
                    return r
            return None
        try:
            return wait_until(find, timeout, what="%s in %s" % (what, self.name))
        except Failure:
            raise Failure("%s: no %s within %.1fs; records:\n%s\nstderr:\n%s" % (
                self.name, what, timeout,
                "\n".join(json.dumps(r) for r in self.records()[-10:]),
                tail(self.stderr(), 15)))

    def wait_records(self, n, pred=lambda r: True, timeout=5.0, what="records"):
        def enough():
            rs = [r for r in self.records() if pred(r)]
            return rs if len(rs) >= n else None
        try:
            return wait_until(enough, timeout, what=what)
        except Failure:
            raise Failure("%s: fewer than %d %s within %.1fs; records:\n%s" % (
                self.name, n, what, timeout,
                "\n".join(json.dumps(r) for r in self.records()[-10:])))

    def wait_stderr(self, needle, timeout=5.0):
        """Wait for a diagnostic line "ztproxy: LEVEL: ..." that contains needle."""
        def find():
            for line in self.stderr().splitlines():
                if needle in line and DIAG_RE.match(line):
                    return line
            return None
        try:
            return wait_until(find, timeout, what="%r on %s stderr" % (needle, self.name))
        except Failure:
            raise Failure("%s: no \"ztproxy: LEVEL: ...%s...\" line on stderr; stderr:\n%s"
                          % (self.name, needle, tail(self.stderr(), 20)))


DIAG_RE = re.compile(r"^ztproxy: (debug|info|warn|warning|error): ")


def by_src_port(port):
    """Predicate: access-log record whose src is 127.0.0.1:port."""
    want = "127.0.0.1:%d" % port
    return lambda r: r.get("src") == want


# --------------------------------------------------------------------------------------
# Apps

class TcpApp:
    """A threaded TCP server on 127.0.0.1:0. handler(sock, rec) serves one connection;
    rec is a dict kept in self.conns (with "received" bytes counted by the helpers)."""

    def __init__(self, handler=None, name="app"):
        self.name = name
        self._handler = handler
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.errors = []
        self._stop = threading.Event()
        self._threads = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @property
    def connections(self):
        with self.lock:
            return len(self.conns)

    @property
    def bytes_received(self):
        with self.lock:
            return sum(c["received"] for c in self.conns)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, addr = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = {"addr": addr, "received": 0, "sent": 0, "eof": False, "done": False,
                   "data": bytearray(), "t_accept": time.monotonic()}
            with self.lock:
                self.conns.append(rec)
            t = threading.Thread(target=self._serve, args=(s, rec), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, s, rec):
        s.settimeout(60)
        try:
            self.handle(s, rec)
        except Exception as e:  # noqa: BLE001 - recorded for the test to look at
            rec["error"] = repr(e)
            with self.lock:
                self.errors.append(repr(e))
        finally:
            rec["done"] = True
            safe_close(s)

    def handle(self, s, rec):
        if self._handler:
            self._handler(s, rec)

    def recv(self, s, rec, n=262144, keep=False):
        b = s.recv(n)
        with self.lock:
            rec["received"] += len(b)
        if keep:
            rec["data"] += b
        if not b:
            rec["eof"] = True
        return b

    def close(self):
        self._stop.set()
        safe_close(self.lsock)
        self._acceptor.join(timeout=2)
        for t in self._threads:
            t.join(timeout=0.2)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False


class EchoServer(TcpApp):
    """Echoes every byte back; on EOF from the peer, shuts down its write side."""

    def handle(self, s, rec):
        while True:
            b = self.recv(s, rec)
            if not b:
                break
            s.sendall(b)
            with self.lock:
                rec["sent"] += len(b)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class CountingServer(TcpApp):
    """Counts connections and bytes; never writes."""

    def handle(self, s, rec):
        while True:
            try:
                b = self.recv(s, rec, keep=True)
            except (ConnectionResetError, socket.timeout):
                return
            if not b:
                return


# --------------------------------------------------------------------------------------
# Traffic

def pattern_bytes(n, seed=b"ztproxy"):
    """n deterministic pseudo-random bytes (sha256 counter stream), fast enough for MiBs."""
    out = bytearray()
    i = 0
    while len(out) < n:
        block = hashlib.sha256(seed + i.to_bytes(8, "little")).digest() * 256  # 8 KiB
        out += hashlib.sha256(block).digest() + block
        i += 1
    return bytes(out[:n])


def big_payload(n):
    return os.urandom(n)


def pump(sock, payload, chunk=262144, pace=None):
    """Send payload on sock (optionally pace=(chunk_bytes, seconds_between)). Returns
    elapsed seconds; exceptions are returned, not raised (for thread use)."""
    t0 = time.monotonic()
    view = memoryview(payload)
    if pace:
        chunk, gap = pace
    for off in range(0, len(view), chunk):
        sock.sendall(view[off:off + chunk])
        if pace:
            time.sleep(gap)
    return time.monotonic() - t0


class Transfer:
    """Send payload on sock in one thread while receiving expect_len bytes in another;
    join() returns (sha256 hex of what was received, bytes received)."""

    def __init__(self, sock, payload, expect_len, pace=None, shut_wr=False, timeout=120):
        self.sock = sock
        self.payload = payload
        self.expect_len = expect_len
        self.timeout = timeout
        self.err = []
        self.recv_hash = hashlib.sha256()
        self.received = 0
        self.send_done = threading.Event()
        sock.settimeout(timeout)
        self._ts = threading.Thread(target=self._send, args=(pace, shut_wr), daemon=True)
        self._tr = threading.Thread(target=self._recv, daemon=True)

    def start(self):
        self._tr.start()
        self._ts.start()
        return self

    def _send(self, pace, shut_wr):
        try:
            pump(self.sock, self.payload, pace=pace)
            if shut_wr:
                self.sock.shutdown(socket.SHUT_WR)
        except Exception as e:  # noqa: BLE001
            self.err.append("send: %r" % e)
        finally:
            self.send_done.set()

    def _recv(self):
        try:
            while self.received < self.expect_len:
                b = self.sock.recv(min(262144, self.expect_len - self.received))
                if not b:
                    self.err.append("recv: EOF after %d of %d bytes" % (
                        self.received, self.expect_len))
                    return
                self.recv_hash.update(b)
                self.received += len(b)
        except Exception as e:  # noqa: BLE001
            self.err.append("recv after %d bytes: %r" % (self.received, e))

    def join(self):
        deadline = time.monotonic() + self.timeout
        self._ts.join(timeout=max(0.1, deadline - time.monotonic()))
        self._tr.join(timeout=max(0.1, deadline - time.monotonic()))
        if self._ts.is_alive() or self._tr.is_alive():
            raise Failure("transfer did not finish within %ss (received %d of %d)" % (
                self.timeout, self.received, self.expect_len))
        if self.err:
            raise Failure("transfer failed: %s" % "; ".join(self.err))
        return self.recv_hash.hexdigest(), self.received


# --------------------------------------------------------------------------------------
# A temp workspace and the case runner

class Workspace:
    def __init__(self, prefix="zt-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def cleanup(self):
        if not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_cases(title, cases, setup=None, teardown=None, budget=600):
    """Run [(name, fn)] and exit. setup() may return a context passed to each fn
    (fn(ctx)); if setup fails, every case fails with its reason. budget bounds the whole
    script: past it, children are killed and the script exits 1."""
    def watchdog():
        print("FAIL %s: whole script exceeded %ds, aborting" % (title, budget), flush=True)
        _kill_all_children()
        os._exit(1)
    timer = threading.Timer(budget, watchdog)
    timer.daemon = True
    timer.start()

    passed = failed = 0
    ctx = None
    setup_err = None
    if not os.path.exists(ZTPROXY):
        setup_err = "ztproxy binary not found at %s (set ZTPROXY)" % ZTPROXY
    elif not os.access(ZTPROXY, os.X_OK):
        setup_err = "%s is not executable" % ZTPROXY
    elif setup is not None:
        try:
            ctx = setup()
        except Exception as e:  # noqa: BLE001
            setup_err = "setup failed: %s" % e
    print("# %s (ztproxy: %s)" % (title, ZTPROXY), flush=True)
    try:
        for name, fn in cases:
            if setup_err:
                print("FAIL %s: cannot run: %s" % (name, setup_err), flush=True)
                failed += 1
                continue
            t0 = time.monotonic()
            try:
                fn(ctx) if setup is not None else fn()
            except Exception as e:  # noqa: BLE001
                failed += 1
                dt = time.monotonic() - t0
                first, _, rest = str(e).partition("\n")
                print("FAIL %s (%.2fs): %s: %s" % (name, dt, type(e).__name__, first),
                      flush=True)
                detail = rest
                if not isinstance(e, Failure):
                    detail = (rest + "\n" if rest else "") + traceback.format_exc()
                for line in detail.splitlines():
                    print("    " + line)
                sys.stdout.flush()
            else:
                passed += 1
                print("PASS %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
    finally:
        if teardown is not None and ctx is not None:
            try:
                teardown(ctx)
            except Exception as e:  # noqa: BLE001
                print("# teardown: %s" % e)
        timer.cancel()
        _kill_all_children()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(0 if failed == 0 and passed > 0 else 1)


# --------------------------------------------------------------------------------------
# Access-log record checks

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$")
ADDR_RE = re.compile(r"^127\.0\.0\.1:(\d{1,5})$")
FIELDS = ("ts", "listener", "conn_id", "src", "dst", "peer_id", "local_id", "tls_version",
          "cipher", "decision", "rule", "enforced", "bytes_in", "bytes_out", "duration_ms",
          "close_reason", "tls_error", "peer_cert_sha256", "peer_cert_serial",
          "peer_cert_not_after", "tls_resumed", "alpn", "sni")
CLOSE_REASONS = {"eof", "reset", "truncated", "idle_timeout", "handshake_timeout", "connect_timeout",
                 "handshake_failed", "peer_not_allowed", "upstream_connect_failed",
                 "connection_limit", "drain_timeout", "error", "policy_revoked",
                 "peer_revoked", "peer_untrusted", "peer_expired", "svid_expired"}
TLS_ERRORS = {"no_client_cert", "unknown_ca", "expired", "not_yet_valid", "bad_signature",
              "no_uri_san", "multiple_uri_sans", "invalid_spiffe_id", "leaf_is_ca",
              "foreign_trust_domain", "server_id_not_expected", "tls_error",
              "closed_during_handshake", "handshake_timeout", "reset", "revoked",
              "leaf_can_sign_certs", "missing_digital_signature", "signer_not_ca",
              "weak_key", "sha1_signature", "chain_too_long", "malformed_certificate"}
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_record_shape(r, what="record"):
    """Every field the README documents is present with a value of the right type."""
    missing = [f for f in FIELDS if f not in r]
    check(not missing, "%s lacks fields %s: %s" % (what, missing, json.dumps(r)))
    check(isinstance(r["ts"], str) and TS_RE.match(r["ts"]),
          "%s: ts %r is not an RFC 3339 timestamp" % (what, r["ts"]))
    check(_is_int(r["conn_id"]) and r["conn_id"] >= 0, "%s: conn_id %r" % (what, r["conn_id"]))
    for f in ("bytes_in", "bytes_out"):
        check(_is_int(r[f]) and r[f] >= 0, "%s: %s %r" % (what, f, r[f]))
    check(isinstance(r["duration_ms"], (int, float)) and not isinstance(r["duration_ms"], bool)
          and r["duration_ms"] >= 0, "%s: duration_ms %r" % (what, r["duration_ms"]))
    check(r["decision"] in ("allow", "deny", "none"), "%s: decision %r" % (what, r["decision"]))
    check(r["close_reason"] in CLOSE_REASONS, "%s: close_reason %r" % (what, r["close_reason"]))
    check(r["tls_error"] is None or r["tls_error"] in TLS_ERRORS,
          "%s: tls_error %r" % (what, r["tls_error"]))
    check(r["rule"] is None or isinstance(r["rule"], str), "%s: rule %r" % (what, r["rule"]))
    for f in ("src", "dst"):
        check(isinstance(r[f], str) and ADDR_RE.match(r[f]), "%s: %s %r" % (what, f, r[f]))
    # The credential that admitted the peer, when there is one: one record answers
    # "who, under which rule, with which certificate" without joining anything.
    if r["peer_id"] is not None and r["tls_error"] is None:
        check(isinstance(r["peer_cert_sha256"], str) and SHA256_RE.match(r["peer_cert_sha256"]),
              "%s: peer_cert_sha256 %r" % (what, r["peer_cert_sha256"]))
        check(isinstance(r["peer_cert_not_after"], str) and TS_RE.match(r["peer_cert_not_after"]),
              "%s: peer_cert_not_after %r" % (what, r["peer_cert_not_after"]))
        check(isinstance(r["peer_cert_serial"], str) and r["peer_cert_serial"],
              "%s: peer_cert_serial %r" % (what, r["peer_cert_serial"]))
    if r["tls_version"] is not None:
        check(isinstance(r["tls_resumed"], bool), "%s: tls_resumed %r" % (what, r["tls_resumed"]))
        check(r["alpn"] in (None, "ztp/1"), "%s: alpn %r" % (what, r["alpn"]))
    check(r["enforced"] in (True, False, None), "%s: enforced %r" % (what, r["enforced"]))
    if r["decision"] != "none":
        check(isinstance(r["enforced"], bool), "%s: enforced %r with a decision" % (what, r["enforced"]))


def ts_age_seconds(ts):
    """Seconds between an access-log ts (UTC, ...Z) and now."""
    import datetime
    s = ts.replace("Z", "+00:00")
    if "." in s:
        head, frac = s.split(".", 1)
        m = re.match(r"(\d+)(.*)", frac)
        s = head + "." + (m.group(1) + "000000")[:6] + m.group(2)
    t = datetime.datetime.fromisoformat(s)
    return (datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()


# --------------------------------------------------------------------------------------
# A two-workload mesh: client -> outbound ztproxy -> inbound ztproxy -> app

CLIENT_ID = "spiffe://%s/ns/web/sa/client" % TD
SERVER_ID = "spiffe://%s/ns/api/sa/server" % TD


class Mesh:
    """A workspace, a trust domain, and SVIDs for a client workload (CLIENT_ID) and a
    server workload (SERVER_ID). Makes Proxy objects (not started) for either side."""

    def __init__(self):
        self.ws = Workspace()
        self.pki = Pki(root=self.ws.dir)
        self.client = self.pki.identity(CLIENT_ID, name="client")
        self.server = self.pki.identity(SERVER_ID, name="server")
        self._n = 0
        self.cfg_defaults = {}     # top-level keys every proxy it makes gets

    def _next(self, base):
        self._n += 1
        return "%s%d" % (base, self._n)

    def policy_file(self, pol, name=None):
        return write_config(self.ws.path((name or self._next("policy")) + ".yaml"), pol)

    def allow_client_policy(self, port, extra_rules=(), **kw):
        return policy([rule("web-to-api", "allow", [CLIENT_ID], ports=[port])]
                      + list(extra_rules), **kw)

    def inbound_proxy(self, app_port, pol=None, identity=None, listen_port=None,
                      name=None, cfg_extra=None, **listener_kw):
        name = name or self._next("in")
        if pol is None:
            pol = self.allow_client_policy(app_port)
        ppath = self.policy_file(pol, name + "-policy")
        cfg = {"identity": identity or self.server,
               "listeners": [inbound("in", listen_port or free_port(), app_port, ppath,
                                     **listener_kw)]}
        cfg.update(self.cfg_defaults)
        cfg.update(cfg_extra or {})
        return Proxy(self.ws.dir, cfg, name=name)

    def outbound_proxy(self, upstream_port, identity=None, expect_server=None,
                       listen_port=None, name=None, cfg_extra=None, **listener_kw):
        name = name or self._next("out")
        cfg = {"identity": identity or self.client,
               "listeners": [outbound("out", listen_port or free_port(), upstream_port,
                                      expect_server=expect_server, **listener_kw)]}
        cfg.update(self.cfg_defaults)
        cfg.update(cfg_extra or {})
        return Proxy(self.ws.dir, cfg, name=name)

    def cleanup(self):
        self.pki.cleanup()
        self.ws.cleanup()


class Ctx:
    """A test script's shared state (setup() returns one, every case gets it)."""


def mesh_setup():
    """The common setup(): a Ctx with a Mesh (trust domain, client and server SVIDs)."""
    c = Ctx()
    c.mesh = Mesh()
    return c


def mesh_teardown(c):
    c.mesh.cleanup()


def on_both_data_paths(cases):
    """[(name, fn)] of mesh cases, run as they are (established connections on
    io_uring, the default) and again as name_epoll with io_uring: false (libuv's
    readiness path, what ztproxy falls back to where io_uring is refused)."""
    def epoll(fn):
        def run(c):
            c.mesh.cfg_defaults["io_uring"] = False
            try:
                fn(c)
            finally:
                del c.mesh.cfg_defaults["io_uring"]
        return run
    return list(cases) + [(name + "_epoll", epoll(fn)) for name, fn in cases]


def echo_roundtrip(sock, msg, timeout=5.0):
    sock.sendall(msg)
    got = recv_exact(sock, len(msg), timeout)
    check(got == msg, "echo mismatch: sent %r..., got %r..." % (msg[:32], got[:32]))
