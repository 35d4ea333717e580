#!/usr/bin/env python3
"""Summarize one bench/run.sh raw folder: medians over the interleaved rounds, ratios
ztproxy/haproxy and ztproxy/direct, and the targets. Writes OUT/latest.json and
OUT/latest.md and prints the main table.

usage: summarize.py RAW_DIR OUT_DIR
"""
import glob
import json
import os
import re
import statistics
import sys

RAW, OUT = sys.argv[1], sys.argv[2]
CONT = ["direct", "haproxy", "nginx", "ztproxy"]


def kv_file(path):
    d = {}
    try:
        for line in open(path):
            k, sep, v = line.rstrip("\n").partition("=")
            if sep:
                d[k] = v
    except OSError:
        pass
    return d


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def meta(path):
    return {k: num(v) for k, v in kv_file(path + ".meta").items()}


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s)$", s)
    if not m:
        return None
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v if u == "ms" else v * 1000


def parse_wrk(path):
    try:
        t = open(path).read()
    except OSError:
        return None
    d = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", t)
    d["rps"] = float(m.group(1)) if m else None
    for p in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % p, t, re.M)
        d["p" + p] = to_ms(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", t)
    d["n"] = int(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    d["sock_errors"] = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"), m.groups())} if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    d["non2xx"] = int(m.group(1)) if m else 0
    return d


def parse_kv_line(path):
    try:
        t = open(path).read()
    except OSError:
        return None
    return dict(re.findall(r"(\w+)=(\S+)", t))


def rounds_of(c, test):
    fs = glob.glob(os.path.join(RAW, f"{c}_{test}_r*.txt"))
    return sorted(fs, key=lambda p: int(re.search(r"_r(\d+)\.txt$", p).group(1)))


def rnd(p):
    return int(re.search(r"_r(\d+)\.txt$", p).group(1))


env = kv_file(os.path.join(RAW, "env.txt"))
contenders = [c for c in CONT if c in env.get("contenders", ",".join(CONT)).split(",")]
proxies = [c for c in contenders if c != "direct"]

# ------------------------------------------------------------------ per round values
R = {c: {} for c in contenders}  # R[c][figure] = {round: value}
errors = {c: [] for c in contenders}


def put(c, fig, r, v):
    R[c].setdefault(fig, {})[r] = v


def wrk_round(c, p, label, report_missing=True):
    """(round, wrk result, CPU meta) of one wrk run, its errors noted; None if it has no
    result."""
    r, w, m = rnd(p), parse_wrk(p), meta(p)
    if not w or w["rps"] is None:
        if report_missing:
            errors[c].append(f"{label} round {r}: no wrk result")
        return None
    if sum(w["sock_errors"].values()) or w["non2xx"]:
        errors[c].append(f"{label} round {r}: socket errors {w['sock_errors']}, non-2xx {w['non2xx']}")
    return r, w, m


def proxies_cpu_s(m):
    return m.get("cpu_out_s", 0) + m.get("cpu_in_s", 0)


for c in contenders:
    for p in rounds_of(c, "ka"):
        if not (got := wrk_round(c, p, "keep-alive")):
            continue
        r, w, m = got
        put(c, "ka_rps", r, w["rps"])
        put(c, "ka_p50_ms", r, w["p50"])
        put(c, "ka_p99_ms", r, w["p99"])
        if c != "direct" and w["n"]:
            put(c, "ka_cpu_s_per_10k", r, proxies_cpu_s(m) / w["n"] * 1e4)
            put(c, "ka_cpu_out_s_per_10k", r, m.get("cpu_out_s", 0) / w["n"] * 1e4)
            put(c, "ka_cpu_in_s_per_10k", r, m.get("cpu_in_s", 0) / w["n"] * 1e4)
        put(c, "others_cpu_s_ka", r, m.get("others_cpu_s"))
    for p in rounds_of(c, "close"):
        if not (got := wrk_round(c, p, "new-connection")):
            continue
        r, w, m = got
        put(c, "close_cps", r, w["rps"])
        put(c, "close_p50_ms", r, w["p50"])
        put(c, "close_p99_ms", r, w["p99"])
        if c != "direct" and w["n"]:
            put(c, "close_cpu_ms_per_conn", r, proxies_cpu_s(m) / w["n"] * 1e3)
    for p in rounds_of(c, "resume"):
        # older ztproxy builds have no resumption: no result is not an error
        if not (got := wrk_round(c, p, "resumption", report_missing=False)):
            continue
        r, w, m = got
        put(c, "resume_cps", r, w["rps"])
        if w["n"]:
            put(c, "resume_cpu_ms_per_conn", r, proxies_cpu_s(m) / w["n"] * 1e3)
    for t in ("lat", "latbusy"):
        for p in rounds_of(c, t):
            r, d = rnd(p), parse_kv_line(p)
            if not d or "p50_us" not in d:
                errors[c].append(f"{t} round {r}: no result")
                continue
            put(c, f"{t}_p50_ms", r, float(d["p50_us"]) / 1000)
            put(c, f"{t}_p99_ms", r, float(d["p99_us"]) / 1000)
            put(c, f"{t}_achieved_rps", r, float(d["achieved_rps"]))
            m = meta(p)
            if c != "direct" and m.get("wall_s"):
                put(c, f"{t}_cpu_cores", r, proxies_cpu_s(m) / m["wall_s"])
            if int(d.get("errors", 0)) or int(d.get("non200", 0)) or int(d.get("unsent", 0)):
                errors[c].append(f"{t} round {r}: errors={d.get('errors')} non200={d.get('non200')} unsent={d.get('unsent')}")
    gb = {}
    for dirn in ("up", "down"):
        for p in rounds_of(c, dirn):
            r, d, m = rnd(p), parse_kv_line(p), meta(p)
            if not d or "MB_s" not in d:
                errors[c].append(f"bulk {dirn} round {r}: {open(p).read().strip()[:200] if os.path.exists(p) else 'no output'}")
                continue
            put(c, f"{dirn}_MBps", r, float(d["MB_s"]))
            g = gb.setdefault(r, [0.0, 0.0])
            g[0] += float(d["bytes"]) / 1e9
            g[1] += proxies_cpu_s(m)
    if c != "direct":
        for r, (g, cpu) in gb.items():
            if g > 0:
                put(c, "cpu_s_per_GB", r, cpu / g)

# added latency vs direct, per round (same round = same machine conditions)
if "direct" in contenders:
    for c in proxies:
        for t in ("lat", "latbusy"):
            for q in ("p50", "p99"):
                d = R["direct"].get(f"{t}_{q}_ms", {})
                for r, v in R[c].get(f"{t}_{q}_ms", {}).items():
                    if r in d:
                        put(c, f"{t}_added_{q}_ms", r, v - d[r])

# ------------------------------------------------------------------ memory
rss_idle = {}
for line in open(os.path.join(RAW, "rss_idle.txt")) if os.path.exists(os.path.join(RAW, "rss_idle.txt")) else []:
    name = line.split()[0]
    rss_idle[name] = {k: num(v) for k, v in re.findall(r"(\w+)=(\S+)", line)}
holds = {}
for line in open(os.path.join(RAW, "rss_hold.txt")) if os.path.exists(os.path.join(RAW, "rss_hold.txt")) else []:
    if not line.strip() or "=" not in line.split()[0] and " n=" not in line:
        continue
    c = line.split()[0]
    d = dict(re.findall(r"(\w+)=(\S+)", line))
    if c not in CONT or "n" not in d:
        continue
    n = int(d["n"])
    holds.setdefault(c, {})[n] = d
hold_ns = sorted({n for c in holds for n in holds[c]})
for c in proxies:
    for role in ("out", "in"):
        v = rss_idle.get(f"{c}_{role}", {}).get("rss_kb")
        put(c, f"rss_idle_{role}_kb", 1, v)
    for n in hold_ns:
        d = holds.get(c, {}).get(n)
        if not d:
            continue
        ok = int(d.get("ok", 0))
        if ok < n:
            errors[c].append(f"hold {n}: only {ok} connections established (fail={d.get('fail')})")
        if int(d.get("dropped_during_hold", 0) or 0):
            errors[c].append(f"hold {n}: {d['dropped_during_hold']} connections closed by the chain while idle")
        for role in ("out", "in"):
            h, b = int(d[f"hold_{role}_kb"]), int(d[f"base_{role}_kb"])
            put(c, f"rss_{n}_{role}_kb", 1, h)
            put(c, f"kb_per_conn_{n}_{role}", 1, (h - b) / ok if ok else None)
            put(c, f"rss_after_{n}_{role}_kb", 1, int(d[f"after_{role}_kb"]))
        put(c, f"hold_{n}_setup_s", 1, num(d.get("setup_secs")))
# processes that died
try:
    for line in open(os.path.join(RAW, "rss_after.txt")):
        if "DEAD" in line:
            name = line.split()[0]
            for c in proxies:
                if name.startswith(c + "_"):
                    errors[c].append(f"process {name} died during the run")
except OSError:
    pass
# stderr of the proxies, after the sanity checks (whose refusals are expected to log)
base = {}
try:
    for line in open(os.path.join(RAW, "stderr_baseline.txt")):
        f, n = line.split()
        base[f] = int(n)
except (OSError, ValueError):
    pass
for c in proxies:
    for role in ("out", "in"):
        p = os.path.join(RAW, "run", f"{c}_{role}.stderr")
        try:
            lines = [l.rstrip() for l in open(p).readlines()[base.get(f"{c}_{role}.stderr", 0):] if l.strip()]
        except OSError:
            continue
        interesting = [l for l in lines if not re.search(r"(?i)^\[NOTICE\]|Proxy .* started|Loading success|NOTICE:", l)]
        if interesting:
            errors[c].append(f"{c}_{role} stderr ({len(interesting)} lines), e.g. {interesting[0][:160]!r}")

# ------------------------------------------------------------------ profile
profile = {}
pdir = os.path.join(RAW, "profile")
if os.path.isdir(pdir):
    for c in proxies:
        for t in ("ka", "close", "up"):
            lf = os.path.join(pdir, f"{c}_{t}.load.txt")
            if not os.path.exists(lf):
                continue
            if t == "up":  # normalise per MB
                d = parse_kv_line(lf) or {}
                n = float(d["bytes"]) / 1e6 if "bytes" in d else None
                ent = {"MB": n, "MB_s": num(d.get("MB_s")), "per": "MB"}
            else:
                w = parse_wrk(lf)
                n = w["n"] if w else None
                ent = {"requests": n, "rps": w["rps"] if w else None, "per": "request"}
            for role in ("out", "in"):
                sc = {}
                try:
                    for line in open(os.path.join(pdir, f"{c}_{role}_{t}.stat")):
                        parts = line.strip().split(",")
                        if len(parts) > 3 and parts[0].replace(".", "").isdigit():
                            name = parts[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "ALL")
                            sc[name] = int(float(parts[0]))
                except OSError:
                    pass
                if sc and n:
                    ent[f"syscalls_per_{role}"] = {k: round(v / n, 2) for k, v in sorted(sc.items(), key=lambda kv: -kv[1]) if v}
                top = []
                try:
                    for line in open(os.path.join(pdir, f"{c}_{role}_{t}.flat.txt")):
                        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
                        if m:
                            top.append({"pct": float(m.group(1)), "dso": m.group(2), "kernel": m.group(3) == "k", "symbol": m.group(4)})
                except OSError:
                    pass
                if top:
                    ent[f"top_{role}"] = top[:25]
                dso = {}
                try:
                    for line in open(os.path.join(pdir, f"{c}_{role}_{t}.dso.txt")):
                        m = re.match(r"\s+([\d.]+)%\s+(\S+)", line)
                        if m:
                            dso[m.group(2)] = float(m.group(1))
                except OSError:
                    pass
                if dso:
                    ent[f"dso_{role}"] = dso
            profile[f"{c}_{t}"] = ent

# ------------------------------------------------------------------ noise
# others_cpu_s / wall: CPUs kept busy during a test by processes that are not part of
# the benchmark (a build, say). Per test kind, median over contenders x rounds.
noise, noise_test = {}, {}
for c in contenders:
    vals = []
    for test in ("ka", "close", "resume", "lat", "up", "down"):
        for p in rounds_of(c, test):
            m = meta(p)
            if m.get("wall_s"):
                v = m.get("others_cpu_s", 0) / m["wall_s"]
                vals.append(v)
                noise_test.setdefault(test, []).append(v)
    noise[c] = med(vals)
noise_test = {k: med(v) for k, v in noise_test.items()}
FIG_TESTS = {"ka": ["ka"], "close": ["close"], "resume": ["resume"], "lat": ["lat"], "up": ["up"], "down": ["down"], "cpu": ["up", "down"]}


def fig_noise(key):
    t = key.split("_")[0]
    if t == "rss" or t == "kb":
        return None
    return med([noise_test.get(x) for x in FIG_TESTS.get(t, [])])


# ------------------------------------------------------------------ figures table
big = hold_ns[-1] if hold_ns else None
FIG = [  # key, label, unit, higher_is_better, digits, target (kind, value) on ztproxy
    ("ka_rps", "keep-alive req/s (wrk, 50 conns)", "req/s", True, 0, ("ratio_haproxy_ge", 1.5)),
    ("ka_p50_ms", "keep-alive p50 latency", "ms", False, 2, None),
    ("ka_p99_ms", "keep-alive p99 latency", "ms", False, 2, ("ratio_haproxy_le", 0.5)),
    ("close_cps", "new connections/s (Connection: close, full mTLS handshake each)", "conn/s", True, 0, ("ratio_haproxy_ge", 3.0)),
    ("close_p99_ms", "new-connection p99 latency", "ms", False, 1, None),
    ("resume_cps", "new connections/s with TLS resumption on (both)", "conn/s", True, 0, ("ratio_haproxy_ge", 1.5)),
    ("lat_p50_ms", "open-loop 1,000 req/s x 16 conns: p50", "ms", False, 3, None),
    ("lat_p99_ms", "open-loop 1,000 req/s x 16 conns: p99", "ms", False, 3, None),
    ("lat_added_p50_ms", "  added p50 vs direct", "ms", False, 3, ("abs_le", 0.2)),
    ("lat_added_p99_ms", "  added p99 vs direct", "ms", False, 3, ("abs_le", 0.3)),
    ("lat_cpu_cores", "  CPU of the two proxies meanwhile", "cores", False, 2, None),
    ("latbusy_p50_ms", "the same with a nice-19 spinner on every CPU: p50", "ms", False, 3, None),
    ("latbusy_p99_ms", "the same with a nice-19 spinner on every CPU: p99", "ms", False, 3, None),
    ("latbusy_added_p50_ms", "  added p50 vs direct", "ms", False, 3, None),
    ("latbusy_added_p99_ms", "  added p99 vs direct", "ms", False, 3, None),
    ("latbusy_cpu_cores", "  CPU of the two proxies meanwhile", "cores", False, 2, None),
    ("up_MBps", "bulk, one stream, client -> server", "MB/s", True, 0, ("ratio_haproxy_ge", 1.5)),
    ("down_MBps", "bulk, one stream, server -> client", "MB/s", True, 0, ("ratio_haproxy_ge", 1.5)),
    ("cpu_s_per_GB", "CPU s per GB (outbound + inbound)", "s/GB", False, 2, None),
    ("ka_cpu_s_per_10k", "CPU s per 10,000 keep-alive requests (out + in)", "s/10k", False, 3, None),
    ("close_cpu_ms_per_conn", "CPU ms per new connection (out + in)", "ms/conn", False, 2, None),
    ("resume_cpu_ms_per_conn", "CPU ms per resumed connection (out + in)", "ms/conn", False, 2, None),
    ("rss_idle_out_kb", "RSS idle, outbound process", "KiB", False, 0, ("abs_le", 3072)),
    ("rss_idle_in_kb", "RSS idle, inbound process", "KiB", False, 0, ("abs_le", 3072)),
]
for n in hold_ns:
    last = n == big
    FIG += [
        (f"rss_{n}_out_kb", f"RSS with {n:,} idle conns, outbound", "KiB", False, 0, None),
        (f"rss_{n}_in_kb", f"RSS with {n:,} idle conns, inbound", "KiB", False, 0, None),
        (f"kb_per_conn_{n}_out", f"  KiB per idle conn @{n:,}, outbound", "KiB", False, 1, ("kbconn", 12.0) if last else None),
        (f"kb_per_conn_{n}_in", f"  KiB per idle conn @{n:,}, inbound", "KiB", False, 1, ("kbconn", 12.0) if last else None),
    ]


def fmt(v, nd):
    if v is None:
        return "n/a"
    if nd == 0:
        return f"{v:,.0f}"
    return f"{v:,.{nd}f}"


rows = []
figures = {}
for key, label, unit, hib, nd, target in FIG:
    vals = {c: med(R[c].get(key, {}).values()) for c in contenders}
    per_round = {c: [R[c].get(key, {}).get(r) for r in sorted(R[c].get(key, {}))] for c in contenders}
    if all(v is None for v in vals.values()):
        continue
    z, h, d = vals.get("ztproxy"), vals.get("haproxy"), vals.get("direct")
    rz_h = z / h if z is not None and h not in (None, 0) else None
    rz_d = z / d if z is not None and d not in (None, 0) else None
    status, tdesc = None, ""
    if target and z is not None:
        kind, tv = target
        if kind == "ratio_haproxy_ge":
            tdesc = f">= {tv} x haproxy"
            status = rz_h is not None and rz_h >= tv
        elif kind == "ratio_haproxy_le":
            tdesc = f"<= {tv} x haproxy"
            status = rz_h is not None and rz_h <= tv
        elif kind == "abs_le":
            tdesc = f"<= {tv:g} {unit}"
            status = z <= tv
        elif kind == "kbconn":
            tdesc = f"<= {tv:g} KiB and <= 0.5 x haproxy"
            status = z <= tv and (h is None or z <= 0.5 * h)
    nz = fig_noise(key)
    verdict = "" if status is None else ("met" if status else "NOT met")
    if status is not None and key.startswith("lat_added") and any(v is not None and v < 0 for v in per_round.get("ztproxy", [])):
        verdict = "inconclusive (noise: direct slower in a round)"
    elif status is not None and nz is not None and nz > 0.5:
        verdict += " (noisy)"
    figures[key] = {"label": label.strip(), "unit": unit, "higher_is_better": hib, "median": vals, "rounds": per_round,
                    "ratio_ztproxy_haproxy": rz_h, "ratio_ztproxy_direct": rz_d, "target": tdesc or None,
                    "target_met": status, "verdict": verdict or None, "noise_other_cpus": nz}
    rows.append([label, unit] + [fmt(vals.get(c), nd) if c in contenders else "" for c in CONT] +
                [f"{rz_h:.2f}" if rz_h is not None else "", f"{rz_d:.2f}" if rz_d is not None else "",
                 tdesc, verdict, "" if nz is None else f"{nz:.2f}"])

hdr = ["figure", "unit"] + CONT + ["zt/haproxy", "zt/direct", "target", "verdict", "other load"]

# ------------------------------------------------------------------ write
machine = {"nproc": int(env.get("host_nproc", 0) or 0), "cpu_model": env.get("cpu_model"), "kernel": env.get("kernel"),
           "mem_mib": int(env.get("mem_mib", 0) or 0), "nofile": int(env.get("nofile", 0) or 0)}
doc = {
    "date": env.get("date"),
    "machine": machine,
    "versions": {k: env.get(k) for k in ("haproxy", "haproxy_openssl", "nginx", "wrk", "ztproxy", "ztproxy_git")},
    "parameters": {"rounds": int(env.get("rounds", 0) or 0), "duration_s": float(env.get("dur_s", 0) or 0),
                   "holds": hold_ns, "quick": env.get("quick") == "1", "contenders": contenders,
                   "threads_per_proxy": 1, "tls": "TLS 1.3, TLS_AES_128_GCM_SHA256, P-256 ECDHE, ECDSA P-256 SVIDs",
                   "body_bytes": 1024},
    "command": "make bench  (= make build && bench/run.sh" + (" --quick" if env.get("quick") == "1" else "") + ")",
    "figures": figures,
    "errors": {c: errors[c] for c in contenders},
    "noise_other_load_cpus": noise,
    "noise_other_load_cpus_by_test": noise_test,
    "profile": profile,
    "raw_dir": os.path.relpath(RAW, os.path.dirname(os.path.abspath(__file__))),
}
os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "latest.json"), "w") as f:
    json.dump(doc, f, indent=1)


def md_table(h, rs):
    out = ["| " + " | ".join(h) + " |", "|" + "|".join("---" for _ in h) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rs]
    return "\n".join(out)


md = []
P = md.append
P(f"# ztproxy benchmark — {env.get('date', '?')}\n")
P(f"Machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Linux {machine['kernel']}, {machine['mem_mib']:,} MiB; "
  f"fd limit {machine['nofile']:,}. haproxy {env.get('haproxy')} (OpenSSL {env.get('haproxy_openssl')}), nginx {env.get('nginx')}, "
  f"wrk {env.get('wrk')}, ztproxy {env.get('ztproxy')} ({env.get('ztproxy_git')}).\n")
P(f"Chain on 127.0.0.1: load generator → outbound proxy (plain in, mTLS out) → inbound proxy (mTLS in, client SVID "
  f"verified, plain out) → nginx (1 KiB body) or a bulk source/sink. One thread per proxy process; TLS 1.3 "
  f"AES-128-GCM, P-256, no resumption. Medians of {doc['parameters']['rounds']} round(s), each test run for every contender back to back, of "
  f"{env.get('dur_s')} s per test; memory from one hold per size. Command: `{doc['command']}`.\n")
P(md_table(hdr, rows))
P("")
P(f"\"other load\": CPUs (of {machine['nproc']}) kept busy during that figure's tests by processes outside the benchmark, "
  f"median over contenders and rounds; above 0.5 a verdict is marked noisy. Per contender: " +
  ", ".join(f"{c} {v:.2f}" for c, v in noise.items() if v is not None) + ".\n")
if big and big < 10000:
    P(f"The largest hold is {big:,} connections, not 10,000: each proxy needs two descriptors per held connection "
      f"and the hard fd limit here is {machine['nofile']:,} (not raisable without CAP_SYS_RESOURCE).\n")
# per round
P("## Per round\n")
keys = [k for k in ("ka_rps", "ka_p99_ms", "close_cps", "lat_p50_ms", "lat_p99_ms", "latbusy_p50_ms", "latbusy_p99_ms", "up_MBps", "down_MBps") if k in figures]
rr = []
for k in keys:
    for c in contenders:
        rr.append([figures[k]["label"], c] + [fmt(v, 3 if "lat" in k else 2 if "ms" in k else 0) for v in figures[k]["rounds"].get(c, [])])
nr = max((len(r) for r in rr), default=2) - 2
P(md_table(["figure", "contender"] + [f"r{i+1}" for i in range(nr)], [r + [""] * (nr + 2 - len(r)) for r in rr]))
P("")
# memory detail
if rss_idle:
    P("## Idle processes at start (KiB)\n")
    P(md_table(["process", "VmRSS", "anonymous (RssAnon)", "file-backed (RssFile: binary, libc, ...)", "threads", "fds"],
               [[n, fmt(d.get("rss_kb"), 0), fmt(d.get("anon_kb"), 0), fmt(d.get("file_kb"), 0), fmt(d.get("threads"), 0), fmt(d.get("fds"), 0)]
                for n, d in rss_idle.items()]))
    P("")
if holds:
    P("## Memory detail (VmRSS KiB)\n")
    mr = []
    for c in proxies:
        for n in hold_ns:
            d = holds.get(c, {}).get(n)
            if not d:
                continue
            mr.append([c, f"{n:,}", d.get("ok", "?"), d.get("setup_secs", "?"), d["base_out_kb"], d["hold_out_kb"], d["after_out_kb"], d["fds_out"],
                       d["base_in_kb"], d["hold_in_kb"], d["after_in_kb"], d["fds_in"]])
    P(md_table(["contender", "held", "established", "setup s", "out before", "out held", "out after close", "out fds",
                "in before", "in held", "in after close", "in fds"], mr))
    P("")
# errors
P("## Errors and anomalies\n")
any_err = False
for c in contenders:
    for e in errors[c]:
        P(f"- {c}: {e}")
        any_err = True
if not any_err:
    P("- none")
P("")
# sanity
try:
    P("## Sanity checks\n")
    P("```")
    P(open(os.path.join(RAW, "sanity.txt")).read().rstrip())
    P("```\n")
except OSError:
    pass
# profile
if profile:
    P("## Profile (perf record/stat on each proxy process during a keep-alive wrk run, a Connection: close wrk run and a bulk upload)\n")
    for key, ent in profile.items():
        rate = f"{fmt(ent.get('rps'), 0)} req/s" if ent.get("per") == "request" else f"{fmt(ent.get('MB_s'), 0)} MB/s"
        P(f"### {key} ({rate} while profiled)\n")
        for role in ("out", "in"):
            s = ent.get(f"syscalls_per_{role}")
            if s:
                P(f"- {role}bound syscalls per {ent['per']}: " + ", ".join(f"{k} {v}" for k, v in list(s.items())[:12]))
        for role in ("out", "in"):
            top = ent.get(f"top_{role}")
            if top:
                dso = ent.get(f"dso_{role}", {})
                P(f"- {role}bound time by binary: " + ", ".join(f"{k} {v:.0f}%" for k, v in list(dso.items())[:4]))
                P(f"- {role}bound top self time: " +
                  "; ".join(f"{t['symbol']}{' [k]' if t['kernel'] else ''} {t['pct']:.1f}%" for t in top[:14]))
        P("")
with open(os.path.join(OUT, "latest.md"), "w") as f:
    f.write("\n".join(md) + "\n")

# ------------------------------------------------------------------ stdout table
w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
print(f"\nztproxy bench {env.get('date')}  {machine['nproc']} CPUs {machine['cpu_model']}  rounds={env.get('rounds')} dur={env.get('dur_s')}s")
print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
for r in rows:
    print("  ".join(str(x).ljust(w[i]) if i < 2 else str(x).rjust(w[i]) for i, x in enumerate(r)))
for c in contenders:
    for e in errors[c]:
        print(f"! {c}: {e}")
