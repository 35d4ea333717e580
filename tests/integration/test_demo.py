#!/usr/bin/env python3
"""`ztproxy demo`: a two-workload mesh on localhost, end to end. It exits 0 within 30 s
and its output shows an allowed reply, a denied call with its reason, and access-log
JSON lines (one allow record that carried bytes both ways, one deny record with
close_reason peer_not_allowed)."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import check, check_eq  # noqa: E402


class Ctx:
    pass


def setup():
    c = Ctx()
    c.cwd = tempfile.mkdtemp(prefix="ztdemo-")
    c.r = ztlib.run_cli(["demo"], timeout=30, cwd=c.cwd)
    text = c.r.out + "\n" + c.r.err
    c.text = text
    c.records = []
    for line in text.splitlines():
        i = line.find("{")
        if i < 0:
            continue
        try:
            obj = json.loads(line[i:])
        except ValueError:
            continue
        if isinstance(obj, dict) and "decision" in obj:
            c.records.append(obj)
    return c


def teardown(c):
    import shutil
    shutil.rmtree(c.cwd, ignore_errors=True)


def case_exit_0(c):
    check_eq(c.r.rc, 0, "demo exit status\n%r" % c.r)
    check(c.r.elapsed < 30, "demo took %.1fs" % c.r.elapsed)


def case_access_log_lines(c):
    check(len(c.records) >= 2, "fewer than 2 access-log JSON lines in the output\n%r" % c.r)
    for r in c.records:
        missing = [f for f in ztlib.FIELDS if f not in r]
        check(not missing, "access-log line lacks %s: %s" % (missing, json.dumps(r)))


def case_allowed_reply(c):
    allows = [r for r in c.records if r.get("decision") == "allow"
              and r.get("bytes_out", 0) > 0 and r.get("bytes_in", 0) > 0]
    check(allows, "no allow record that carried a reply\n%r" % c.r)
    check(any(r.get("close_reason") == "eof" for r in allows),
          "no allowed connection closed with eof: %s" % [r.get("close_reason") for r in allows])


def case_denied_call_with_reason(c):
    denies = [r for r in c.records if r.get("decision") == "deny"]
    check(denies, "no deny record\n%r" % c.r)
    check(any(r.get("close_reason") == "peer_not_allowed" and r.get("peer_id") for r in denies),
          "no deny record with peer_id and close_reason peer_not_allowed: %s" % denies)
    plain = "\n".join(l for l in c.text.splitlines() if not l.lstrip().startswith("{"))
    check("peer_not_allowed" in plain or "denied" in plain.lower() or "deny" in plain.lower(),
          "the human-readable output does not mention the denial\n%r" % c.r)


CASES = [
    ("demo_exits_0_within_30s", case_exit_0),
    ("demo_prints_access_log_json", case_access_log_lines),
    ("demo_shows_allowed_reply", case_allowed_reply),
    ("demo_shows_denied_call_with_reason", case_denied_call_with_reason),
]

if __name__ == "__main__":
    ztlib.run_cases("test_demo", CASES, setup=setup, teardown=teardown)
