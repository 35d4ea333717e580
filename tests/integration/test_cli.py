#!/usr/bin/env python3
"""The command line: --help and --version exit 0 with usage text, every subcommand takes
--help (exit 0), and usage errors (unknown subcommand, unknown option, missing -c) exit 2.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import check, check_eq  # noqa: E402


def help_ok(args, words=()):
    r = ztlib.run_cli(args, timeout=10)
    check_eq(r.rc, 0, "exit status of `ztproxy %s`\n%r" % (" ".join(args), r))
    text = r.out + r.err
    check(re.search(r"usage", text, re.I), "no usage text from `ztproxy %s`\n%r"
          % (" ".join(args), r))
    for w in words:
        check(w in text, "`ztproxy %s` does not mention %r\n%r" % (" ".join(args), w, r))
    return r


def usage_error(args):
    r = ztlib.run_cli(args, timeout=10)
    check_eq(r.rc, 2, "exit status of `ztproxy %s`\n%r" % (" ".join(args), r))
    check(r.err.strip(), "`ztproxy %s` exits 2 without a word on stderr" % " ".join(args))
    return r


CASES = [
    ("help", lambda: help_ok(["--help"], ["run", "check", "identity", "demo"])),
    ("version", lambda: (lambda r: (check_eq(r.rc, 0, "exit of --version\n%r" % r),
                                    check(re.search(r"\d+\.\d+", r.out + r.err),
                                          "no version number\n%r" % r)))(
        ztlib.run_cli(["--version"], timeout=10))),
    ("run_help", lambda: help_ok(["run", "--help"], ["-c"])),
    ("check_help", lambda: help_ok(["check", "--help"], ["-c"])),
    ("identity_help", lambda: help_ok(["identity", "--help"], ["ca", "issue"])),
    ("identity_ca_help", lambda: help_ok(["identity", "ca", "--help"], ["--trust-domain"])),
    ("identity_issue_help", lambda: help_ok(["identity", "issue", "--help"],
                                            ["--ca-cert", "--id", "--ttl", "--backdate"])),
    ("demo_help", lambda: help_ok(["demo", "--help"])),
    ("unknown_subcommand_exit_2", lambda: usage_error(["frobnicate"])),
    ("no_arguments_exit_2", lambda: usage_error([])),
    ("unknown_option_exit_2", lambda: usage_error(["check", "--frobnicate"])),
    ("run_without_config_exit_2", lambda: usage_error(["run"])),
    ("check_without_config_exit_2", lambda: usage_error(["check"])),
    ("issue_missing_id_exit_2", lambda: usage_error(["identity", "issue", "--ca-cert", "x.pem",
                                                    "--ca-key", "x_key.pem", "--cert", "o.pem",
                                                    "--key", "o_key.pem"])),
    ("bad_duration_flag_exit_2", lambda: usage_error(["identity", "ca", "--trust-domain",
                                                     "example.org", "--cert", "/nonexistent/c.pem",
                                                     "--key", "/nonexistent/k.pem",
                                                     "--ttl", "forever"])),
]

if __name__ == "__main__":
    ztlib.run_cases("test_cli", CASES)
