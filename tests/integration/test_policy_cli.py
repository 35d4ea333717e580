#!/usr/bin/env python3
"""`ztproxy policy check|explain|test`: exit codes and output, against the real binary
($ZTPROXY, default /work/main/build/ztproxy).

check: 0 clean, 1 warnings (file:line:col: warning: on stdout), 2 errors
(file:line:col on stderr). explain: the decision, the deciding rule and every rule's
verdict. test: each mismatch with CASES.yaml:line:col, exit 1 on any, 0 when all pass,
2 on a load error in either file. --help on each.
"""

import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import check, check_eq  # noqa: E402

POLICY = """\
trust_domain: example.org
rules:
  - name: no-admin
    action: deny
    from: ["*"]
    http: {paths: [/admin, /admin/*]}
  - name: web-to-api
    action: allow
    from: ["spiffe://example.org/ns/web/*"]
    to: {ports: [8080, "9000-9099"]}
  - name: no-canary
    action: deny
    from: [spiffe://example.org/ns/web/canary]
"""

WARN_POLICY = """\
trust_domain: example.org
default: allow
rules:
  - name: no-web
    action: deny
    from: ["spiffe://example.org/ns/web/*"]
  - name: web-a
    action: allow
    from: [spiffe://example.org/ns/web/a]
  - name: partner
    action: allow
    from: ["spiffe://partner.example/*"]
"""

CASES = """\
- from: spiffe://example.org/ns/web/fe
  port: 8080
  expect: allow
  rule: web-to-api
- from: spiffe://example.org/ns/web/canary
  port: 8080
  expect: deny
  rule: no-canary
- from: spiffe://example.org/ns/web/fe
  port: 8080
  method: GET
  path: /admin/users
  expect: deny
- from: spiffe://example.org/ns/db/x
  port: 5432
  expect: deny
  rule: default
"""


class Ctx:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ztpolcli-")

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path


def setup():
    return Ctx()


def run(args):
    return ztlib.run_cli(["policy"] + args, timeout=30)


def case_check_clean(ctx):
    p = ctx.write("ok.yaml", POLICY)
    r = run(["check", p])
    check_eq(r.rc, 0, "exit of check on a clean policy\n%r" % r)
    check("3 rules (2 deny, 1 allow)" in r.out and "0 warnings" in r.out,
          "summary line\n%r" % r)


def case_check_warnings(ctx):
    p = ctx.write("warn.yaml", WARN_POLICY)
    r = run(["check", p])
    check_eq(r.rc, 1, "exit of check with warnings\n%r" % r)
    lines = [l for l in r.out.splitlines() if ": warning: " in l]
    check_eq(len(lines), 3, "warnings\n%r" % r)
    check(lines[0].startswith(p + ":2:10: warning: default: allow"), "default\n%r" % r)
    check(lines[1].startswith(p + ":7:5: warning: rules[1] \"web-a\" is unreachable"),
          "shadowed\n%r" % r)
    check(lines[2].startswith(p + ":12:12: warning: rules[2].from[0]: trust domain "
                              "\"partner.example\""), "trust domain\n%r" % r)
    # Naming the federated domain removes that warning.
    r = run(["check", p, "--trust-domain", "partner.example"])
    check_eq(r.rc, 1, "exit with --trust-domain\n%r" % r)
    check(not any("trust domain \"partner.example\"" in l for l in r.out.splitlines()),
          "still warned about partner.example\n%r" % r)
    check_eq(r.out.count(": warning: "), 2, "warnings with --trust-domain\n%r" % r)


def case_check_error(ctx):
    p = ctx.write("bad.yaml", "trust_domain: example.org\nrules:\n  - name: r\n"
                              "    action: allow\n    from: [\"*\"]\n"
                              "    to: {ports: [70000]}\n")
    r = run(["check", p])
    check_eq(r.rc, 2, "exit of check on a bad policy\n%r" % r)
    check_eq(r.err.strip(), p + ":6:18: rules[0].to.ports[0]: \"70000\" is not a port "
             "(1..65535)", "error text")
    r = run(["check", os.path.join(ctx.dir, "missing.yaml")])
    check_eq(r.rc, 2, "exit on a missing file\n%r" % r)


def case_explain_allow(ctx):
    p = ctx.write("ok.yaml", POLICY)
    r = run(["explain", p, "--from", "spiffe://example.org/ns/web/fe", "--port", "9050"])
    check_eq(r.rc, 0, "exit of explain\n%r" % r)
    check("decision: allow by rule \"web-to-api\" (rules[1], %s:7)" % p in r.out,
          "decision line\n%r" % r)
    rules = [l for l in r.out.splitlines() if l.startswith("  rules[")]
    check_eq([re.match(r"  (rules\[\d\])", l).group(1) for l in rules],
             ["rules[0]", "rules[2]", "rules[1]"], "evaluation order (deny first)")
    check("no match" in rules[0] and "no method and path" in rules[0], rules[0])
    check("no match" in rules[1] and "no entry matches" in rules[1], rules[1])
    check("MATCH, decides" in rules[2] and "port 9050 is in 8080, 9000-9099" in rules[2],
          rules[2])


def case_explain_deny_http_and_default(ctx):
    p = ctx.write("ok.yaml", POLICY)
    r = run(["explain", p, "--from=spiffe://example.org/ns/web/fe", "--port=8080",
             "--method", "GET", "--path", "/admin/x?y=1"])
    check_eq(r.rc, 0, "exit\n%r" % r)
    check("decision: deny by rule \"no-admin\"" in r.out, "deny\n%r" % r)
    check("match, but an earlier rule decided" in r.out, "later match\n%r" % r)
    r = run(["explain", p, "--from", "spiffe://example.org/ns/webhook", "--port", "8080"])
    check_eq(r.rc, 0, "exit\n%r" % r)
    check("decision: deny by default (no rule matched)" in r.out, "default\n%r" % r)
    check("  default: deny" in r.out, "default line\n%r" % r)


def case_explain_usage_errors(ctx):
    p = ctx.write("ok.yaml", POLICY)
    for args in (["explain", p, "--port", "80"],
                 ["explain", p, "--from", "spiffe://example.org/a"],
                 ["explain", p, "--from", "not-an-id", "--port", "80"],
                 ["explain", p, "--from", "spiffe://example.org/a", "--port", "0"],
                 ["explain", p, "--from", "spiffe://example.org/a", "--port", "80",
                  "--method", "GET"],
                 ["explain", p, "--from", "spiffe://example.org/a", "--port", "80",
                  "--bogus"],
                 ["frobnicate"], []):
        r = run(args)
        check_eq(r.rc, 2, "exit of `policy %s`\n%r" % (" ".join(args), r))
        check(r.err.strip(), "no reason on stderr for `policy %s`" % " ".join(args))


def case_test_pass(ctx):
    p = ctx.write("ok.yaml", POLICY)
    c = ctx.write("cases.yaml", CASES)
    r = run(["test", p, c])
    check_eq(r.rc, 0, "exit of test with passing cases\n%r" % r)
    check("4 cases, 4 passed, 0 failed" in r.out, "summary\n%r" % r)


def case_test_mismatch(ctx):
    p = ctx.write("ok.yaml", POLICY)
    c = ctx.write("cases-bad.yaml", CASES.replace("expect: deny\n  rule: no-canary",
                                                  "expect: allow\n  rule: no-canary")
                  + "- name: db reads\n  from: spiffe://example.org/ns/web/x\n"
                    "  port: 8080\n  expect: allow\n  rule: other\n")
    r = run(["test", p, c])
    check_eq(r.rc, 1, "exit of test with mismatches\n%r" % r)
    bad = [l for l in r.out.splitlines() if l.startswith(c + ":") and ": cases[" in l]
    check_eq(len(bad), 2, "mismatch lines\n%r" % r)
    check(bad[0].startswith(c + ":5:3: cases[1]: from spiffe://example.org/ns/web/canary "
                            "port 8080: got deny by rule \"no-canary\", want allow by "
                            "rule \"no-canary\""), bad[0])
    check(bad[1].startswith(c + ":18:3: cases[4] \"db reads\""), bad[1])
    check("5 cases, 3 passed, 2 failed" in r.out, "summary\n%r" % r)


def case_test_prints_no_control_characters(ctx):
    """A cases file's names, methods and paths are printed with their control
    characters escaped: no terminal escape sequence, no line of their own."""
    p = ctx.write("ok.yaml", POLICY)
    c = ctx.write("cases-ctl.yaml", '- name: "\\e[31mred\\x07"\n'
                                    "  from: spiffe://example.org/ns/web/x\n  port: 8080\n"
                                    '  method: "GET\\r\\nforged: line"\n'
                                    '  path: "/\\e]0;title\\a"\n  expect: deny\n')
    r = run(["test", p, c])
    check_eq(r.rc, 1, "exit of test with a mismatch\n%r" % r)
    check(not any(ch in r.out for ch in "\x1b\x07\r"), "control characters printed\n%r" % r)
    check(not any(l.startswith("forged") for l in r.out.splitlines()), "a forged line\n%r" % r)
    check("\\x1b[31mred\\x07" in r.out and "GET\\x0d\\x0aforged: line" in r.out,
          "the escaped text\n%r" % r)


def case_test_load_errors(ctx):
    p = ctx.write("ok.yaml", POLICY)
    c = ctx.write("cases-err.yaml", "- from: spiffe://example.org/a\n  port: 80\n"
                                    "  expect: maybe\n")
    r = run(["test", p, c])
    check_eq(r.rc, 2, "exit on a bad cases file\n%r" % r)
    check_eq(r.err.strip(), c + ":3:11: cases[0].expect: \"maybe\" is not allow or deny",
             "cases error")
    bad = ctx.write("bad.yaml", "trust_domain: example.org\nmode: strict\n")
    r = run(["test", bad, c])
    check_eq(r.rc, 2, "exit on a bad policy\n%r" % r)
    check(r.err.startswith(bad + ":2:7: mode:"), "policy error\n%r" % r)
    r = run(["test", p])
    check_eq(r.rc, 2, "exit without CASES\n%r" % r)


def case_help(ctx):
    for args, words in ((["--help"], ["check", "explain", "test"]),
                        (["check", "--help"], ["--trust-domain"]),
                        (["explain", "--help"], ["--from", "--port", "--method", "--path"]),
                        (["test", "--help"], ["expect", "rule"])):
        r = run(args)
        check_eq(r.rc, 0, "exit of `policy %s`\n%r" % (" ".join(args), r))
        check(re.search(r"usage", r.out, re.I), "no usage\n%r" % r)
        for w in words:
            check(w in r.out, "`policy %s` does not mention %s" % (" ".join(args), w))


def case_check_large_policy_bounded(ctx):
    """1,000 rules on one port with the same 200 IDs and one of their own last: no rule
    covers another, and each comparison runs the whole list. The unreachable-rule check
    stops past its budget and says so, rather than run for minutes (a load or reload
    waits for it)."""
    ids = ["spiffe://example.org/ns/x/sa/s%d" % i for i in range(200)]
    text = ["trust_domain: example.org", "default: deny", "rules:"]
    for n in range(1000):
        text += ["  - name: r%d" % n, "    action: allow",
                 "    from: [%s]" % ", ".join(ids + ["spiffe://example.org/ns/u/sa/%d" % n]),
                 "    to: {ports: [80]}"]
    p = ctx.write("large.yaml", "\n".join(text) + "\n")
    r = run(["check", p])
    check_eq(r.rc, 1, "exit of check on the large policy\n%r" % r)
    check("too large to check every rule for being unreachable" in r.out,
          "the budget warning\n%r" % r)
    check("1000 rules (0 deny, 1000 allow)" in r.out, "summary line\n%r" % r)


CASE_LIST = [
    ("check_clean_exit_0", case_check_clean),
    ("check_warnings_exit_1", case_check_warnings),
    ("check_error_exit_2", case_check_error),
    ("explain_allow", case_explain_allow),
    ("explain_deny_http_and_default", case_explain_deny_http_and_default),
    ("explain_usage_errors_exit_2", case_explain_usage_errors),
    ("test_all_pass_exit_0", case_test_pass),
    ("test_mismatch_exit_1", case_test_mismatch),
    ("test_prints_no_control_characters", case_test_prints_no_control_characters),
    ("test_load_errors_exit_2", case_test_load_errors),
    ("help", case_help),
    ("check_large_policy_bounded", case_check_large_policy_bounded),
]


def teardown(ctx):
    if ctx and not ztlib.KEEP:
        shutil.rmtree(ctx.dir, ignore_errors=True)


if __name__ == "__main__":
    ztlib.run_cases("test_policy_cli", CASE_LIST, setup=setup, teardown=teardown)
