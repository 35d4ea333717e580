#!/usr/bin/env python3
"""`ztproxy check -c FILE` on broken configuration and policy files.

Each broken file exits 2 and stderr carries "path:line:col: message" pointing at the
offending node (the exact line and column are asserted), with a word of the reason. A
valid file exits 0, also when run from another working folder (relative paths resolve
against the config's folder). `ztproxy run -c` on a broken file exits 2 without serving.

The files are written by hand, line by line, so that positions are known: a case names
the line it expects (by a unique substring) and the column (by a substring of that line).
"""

import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import SERVER_ID, check, check_eq  # noqa: E402

BASE = """\
identity:
  cert: svid.pem
  key: svid_key.pem
  bundle: bundle.pem
log:
  access: stdout
  level: info
workers: 1
drain_timeout: 30s
listeners:
  - name: in1
    mode: inbound
    listen: 127.0.0.1:15006
    forward: 127.0.0.1:8080
    protocol: tcp
    policy: policy.yaml
    connect_timeout: 5s
    handshake_timeout: 10s
    idle_timeout: 300s
    max_connections: 100
  - name: out1
    mode: outbound
    listen: 127.0.0.1:15001
    upstream: 127.0.0.1:15006
    expect_server: [%s]
""" % SERVER_ID

POLICY = """\
trust_domain: example.org
mode: enforce
default: deny
rules:
  - name: web-to-api
    action: allow
    from:
      - spiffe://example.org/ns/web/sa/client
      - spiffe://example.org/ns/ops/*
    to:
      ports: [8080, "9000-9099"]
  - name: no-intruders
    action: deny
    from: ["spiffe://example.org/ns/evil/*"]
"""


class Ctx:
    pass


def setup():
    c = Ctx()
    c.ws = ztlib.Workspace()
    c.pki = ztlib.Pki(root=c.ws.dir)
    c.svid = c.pki.issue(SERVER_ID, name="server")
    c.n = 0
    return c


def teardown(c):
    c.pki.cleanup()
    c.ws.cleanup()


def folder(c):
    c.n += 1
    d = c.ws.path("case%02d" % c.n)
    os.makedirs(d)
    shutil.copy(c.svid[0], os.path.join(d, "svid.pem"))
    shutil.copy(c.svid[1], os.path.join(d, "svid_key.pem"))
    shutil.copy(c.pki.ca_cert, os.path.join(d, "bundle.pem"))
    return d


def edit(text, replace=None, insert_after=None, delete=None):
    """replace: {old_line_substring: new_line}; insert_after: (substring, new_line);
    delete: substring of the line to drop. Each substring must match exactly one line."""
    lines = text.split("\n")

    def find(sub):
        hits = [i for i, l in enumerate(lines) if sub in l]
        assert len(hits) == 1, "edit: %r matches %d lines" % (sub, len(hits))
        return hits[0]
    for old, new in (replace or {}).items():
        lines[find(old)] = new
    if insert_after:
        i = find(insert_after[0])
        lines.insert(i + 1, insert_after[1])
    if delete:
        del lines[find(delete)]
    return "\n".join(lines)


def position(text, line_sub, col_sub, nth=1):
    """1-based (line, col) of the nth occurrence of col_sub in the unique line that
    contains line_sub."""
    lines = text.split("\n")
    hits = [i for i, l in enumerate(lines) if line_sub in l]
    assert len(hits) == 1, "position: %r matches %d lines" % (line_sub, len(hits))
    l = lines[hits[0]]
    col = -1
    for _ in range(nth):
        col = l.index(col_sub, col + 1)
    return hits[0] + 1, col + 1


def write_file(path, data):
    """Write text, or bytes as they are (for files that are not valid UTF-8)."""
    if isinstance(data, bytes):
        with open(path, "wb") as f:
            f.write(data)
        return path
    return ztlib.write_text(path, data)


def with_byte(text, byte, marker="@BAD@"):
    """text as UTF-8 bytes, the one marker replaced by byte (positions are taken on text,
    where the marker stands in for that one character)."""
    assert text.count(marker) == 1
    return text.encode("utf-8").replace(marker.encode(), byte)


def expect_error(c, cfg_text, where, words, policy_text=POLICY, in_policy=False,
                 extra_files=None, cmd="check"):
    """Write the case, run `ztproxy check -c`, assert exit 2 and the located message."""
    d = folder(c)
    cfg = write_file(os.path.join(d, "ztproxy.yaml"), cfg_text)
    write_file(os.path.join(d, "policy.yaml"), policy_text)
    for name, text in (extra_files or {}).items():
        write_file(os.path.join(d, name), text)
    r = ztlib.run_cli([cmd, "-c", cfg], timeout=20, cwd=d)
    check_eq(r.rc, 2, "exit status of `ztproxy %s -c %s`\n%r" % (cmd, cfg, r))
    line, col = where
    if in_policy:
        pat = r"(?:^|\s)(?:\S*/)?policy\.yaml:%d:%d: " % (line, col)
        shown = "policy.yaml:%d:%d: " % (line, col)
    else:
        pat = r"(?:^|\s)%s:%d:%d: " % (re.escape(cfg), line, col)
        shown = "%s:%d:%d: " % (cfg, line, col)
    m = re.search(pat, r.err, re.M)
    check(m is not None, "stderr lacks %r\n%r" % (shown, r))
    msg_line = r.err[m.start():].split("\n", 1)[0]
    check(any(w.lower() in msg_line.lower() for w in words),
          "message %r names none of %r" % (msg_line, words))
    return r


# -- configuration file ----------------------------------------------------------------

def case_valid_config(c):
    d = folder(c)
    cfg = ztlib.write_text(os.path.join(d, "ztproxy.yaml"), BASE)
    ztlib.write_text(os.path.join(d, "policy.yaml"), POLICY)
    r = ztlib.run_cli(["check", "-c", cfg], timeout=20, cwd="/")
    check_eq(r.rc, 0, "exit status of check on a valid file (cwd /)\n%r" % r)
    r = ztlib.run_cli(["check", "-c", "ztproxy.yaml"], timeout=20, cwd=d)
    check_eq(r.rc, 0, "exit status of check -c ztproxy.yaml (relative)\n%r" % r)


def case_default_allow_is_warned_at_load(c):
    """`default: allow` loads (it must be written out) but is warned about, with its
    position (run loads policies through the same code)."""
    d = folder(c)
    cfg = ztlib.write_text(os.path.join(d, "ztproxy.yaml"), BASE)
    pol = ztlib.write_text(os.path.join(d, "policy.yaml"),
                           POLICY.replace("default: deny", "default: allow"))
    r = ztlib.run_cli(["check", "-c", cfg], timeout=20)
    check_eq(r.rc, 0, "exit status (a warning is not an error)\n%r" % r)
    check("%s:3:10: warning: default: allow" % pol in r.err,
          "warning with its position on stderr:\n%s" % r.err)


def case_unknown_key_in_listener(c):
    t = edit(BASE, insert_after=("max_connections: 100", "    bogus_key: 1"))
    expect_error(c, t, position(t, "bogus_key", "bogus_key"), ["bogus_key", "unknown"])


def case_unknown_top_level_key(c):
    t = edit(BASE, insert_after=("workers: 1", "tracing: on"))
    expect_error(c, t, position(t, "tracing", "tracing"), ["tracing", "unknown"])


def case_wrong_type_scalar(c):
    t = edit(BASE, replace={"max_connections: 100": "    max_connections: lots"})
    expect_error(c, t, position(t, "max_connections", "lots"),
                 ["max_connections", "integer", "number"])


def case_wrong_type_listeners_not_a_list(c):
    t = BASE.split("listeners:")[0] + "listeners: in1\n"
    expect_error(c, t, position(t, "listeners:", "in1"), ["listeners", "sequence", "list"])


def case_wrong_type_identity_not_a_map(c):
    t = "identity: [svid.pem]\nlog:\n" + BASE.split("log:\n", 1)[1]
    expect_error(c, t, position(t, "identity:", "["), ["identity", "mapping", "map"])


def case_missing_required_forward(c):
    t = edit(BASE, delete="forward: 127.0.0.1:8080")
    expect_error(c, t, position(t, "name: in1", "name"), ["forward"])


def case_missing_required_identity_key(c):
    t = edit(BASE, delete="key: svid_key.pem")
    expect_error(c, t, position(t, "cert: svid.pem", "cert"), ["key"])


def case_missing_listeners(c):
    t = BASE.split("listeners:")[0]
    expect_error(c, t, (1, 1), ["listeners"])


def case_bad_port(c):
    t = edit(BASE, replace={"listen: 127.0.0.1:15006": "    listen: 127.0.0.1:99999"})
    expect_error(c, t, position(t, "99999", "127.0.0.1:99999"), ["port", "99999"])


def case_address_without_port(c):
    t = edit(BASE, replace={"upstream: 127.0.0.1:15006": "    upstream: nohost"})
    expect_error(c, t, position(t, "upstream: nohost", "nohost"),
                 ["nohost", "host:port", "address", "port"])


def case_missing_identity_file(c):
    t = edit(BASE, replace={"cert: svid.pem": "  cert: missing-svid.pem"})
    expect_error(c, t, position(t, "missing-svid.pem", "missing-svid.pem"),
                 ["missing-svid.pem"])


def case_missing_policy_file(c):
    t = edit(BASE, replace={"policy: policy.yaml": "    policy: nope.yaml"})
    expect_error(c, t, position(t, "nope.yaml", "nope.yaml"), ["nope.yaml"])


def case_yaml_syntax_error(c):
    t = edit(BASE, replace={"level: info": "  level: info: debug"})
    # libyaml: "mapping values are not allowed in this context" at the second ':'
    expect_error(c, t, position(t, "level: info: debug", ":", nth=2),
                 ["mapping values", "yaml", "syntax", "not allowed"])


def case_yaml_unclosed_flow(c):
    t = edit(BASE, replace={"expect_server:": "    expect_server: [%s" % SERVER_ID})
    # the flow sequence is never closed: any position will do, but there must be one
    d = folder(c)
    cfg = ztlib.write_text(os.path.join(d, "ztproxy.yaml"), t)
    ztlib.write_text(os.path.join(d, "policy.yaml"), POLICY)
    r = ztlib.run_cli(["check", "-c", cfg], timeout=20, cwd=d)
    check_eq(r.rc, 2, "exit status\n%r" % r)
    check(re.search(r"%s:\d+:\d+: " % re.escape(cfg), r.err),
          "stderr lacks %s:LINE:COL:\n%r" % (cfg, r))


def case_bad_duration(c):
    t = edit(BASE, replace={"idle_timeout: 300s": "    idle_timeout: 5 fortnights"})
    expect_error(c, t, position(t, "idle_timeout", "5 fortnights"),
                 ["idle_timeout", "duration"])


def case_bad_duration_unit(c):
    t = edit(BASE, replace={"drain_timeout: 30s": "drain_timeout: 30x"})
    expect_error(c, t, position(t, "drain_timeout", "30x"), ["drain_timeout", "duration"])


def case_busy_poll_too_long(c):
    t = edit(BASE, replace={"drain_timeout: 30s": "drain_timeout: 30s\nbusy_poll: 20ms"})
    expect_error(c, t, position(t, "busy_poll", "20ms"), ["busy_poll", "at most 10ms"])


def case_busy_poll_bad_unit(c):
    t = edit(BASE, replace={"drain_timeout: 30s": "drain_timeout: 30s\nbusy_poll: 200ns"})
    expect_error(c, t, position(t, "busy_poll", "200ns"), ["busy_poll", "unknown unit"])


def case_io_uring_not_a_bool(c):
    t = edit(BASE, replace={"drain_timeout: 30s": "drain_timeout: 30s\nio_uring: maybe"})
    expect_error(c, t, position(t, "io_uring", "maybe"), ["io_uring", "expected true or false"])


def case_unknown_mode(c):
    t = edit(BASE, replace={"mode: outbound": "    mode: sideways"})
    expect_error(c, t, position(t, "sideways", "sideways"), ["mode", "sideways"])


def case_unknown_protocol(c):
    t = edit(BASE, replace={"protocol: tcp": "    protocol: udp"})
    expect_error(c, t, position(t, "protocol: udp", "udp"), ["protocol", "udp"])


def case_bad_log_level(c):
    t = edit(BASE, replace={"level: info": "  level: chatty"})
    expect_error(c, t, position(t, "level: chatty", "chatty"), ["level", "chatty"])


def case_bad_expect_server_id(c):
    t = edit(BASE, replace={"expect_server:": "    expect_server: [spiffe://Bad Domain/x]"})
    expect_error(c, t, position(t, "expect_server:", "spiffe://"),
                 ["expect_server", "spiffe", "id"])


def case_bad_workers(c):
    t = edit(BASE, replace={"workers: 1": "workers: several"})
    expect_error(c, t, position(t, "workers:", "several"), ["workers"])


def case_run_refuses_bad_config(c):
    t = edit(BASE, insert_after=("max_connections: 100", "    bogus_key: 1"))
    expect_error(c, t, position(t, "bogus_key", "bogus_key"), ["bogus_key", "unknown"],
                 cmd="run")


def case_empty_file(c):
    d = folder(c)
    cfg = ztlib.write_text(os.path.join(d, "ztproxy.yaml"), "")
    r = ztlib.run_cli(["check", "-c", cfg], timeout=20, cwd=d)
    check_eq(r.rc, 2, "exit status of check on an empty file\n%r" % r)
    check("ztproxy.yaml" in r.err, "stderr does not name the file\n%r" % r)


def case_missing_config_file(c):
    r = ztlib.run_cli(["check", "-c", c.ws.path("does-not-exist.yaml")], timeout=20)
    check_eq(r.rc, 2, "exit status of check on a missing file\n%r" % r)
    check("does-not-exist.yaml" in r.err, "stderr does not name the file\n%r" % r)


def case_second_document_after_dashes(c):
    """A second document after `---` would otherwise be silently dropped."""
    t = BASE + "---\nworkers: 4\n"
    expect_error(c, t, position(t, "---", "---"), ["only one YAML document"])


def case_second_document_after_dots(c):
    t = BASE + "...\nbogus: [1]\n"
    expect_error(c, t, position(t, "bogus", "bogus"), ["only one YAML document"])


def case_end_marker_alone_is_fine(c):
    """`...` ends the one document; nothing after it is no second document."""
    d = folder(c)
    cfg = ztlib.write_text(os.path.join(d, "ztproxy.yaml"), BASE + "...\n# the end\n")
    ztlib.write_text(os.path.join(d, "policy.yaml"), POLICY)
    r = ztlib.run_cli(["check", "-c", cfg], timeout=20, cwd=d)
    check_eq(r.rc, 0, "exit status of check with a final `...`\n%r" % r)


def case_syntax_error_in_second_document(c):
    t = BASE + "---\nlevel: info: debug\n"
    expect_error(c, t, position(t, "level: info: debug", ":", nth=2),
                 ["mapping values", "not allowed"])


def case_invalid_utf8_position(c):
    """libyaml's reader errors carry no mark: the position comes from the byte offset."""
    t = edit(BASE, replace={"access: stdout": "  access: std@BAD@out"})
    expect_error(c, with_byte(t, b"\xff"), position(t, "@BAD@", "@BAD@"),
                 ["utf-8"])


def case_invalid_utf8_position_crlf(c):
    t = edit(BASE, replace={"access: stdout": "  access: std@BAD@out"})
    expect_error(c, with_byte(t.replace("\n", "\r\n"), b"\xc3("),
                 position(t, "@BAD@", "@BAD@"), ["utf-8"])


def case_listener_name_not_a_word(c):
    """A listener's name goes into log lines and metric labels: a plain word."""
    for bad in ('"in 1"', '"in\\n1"', '""', "x" * 129):
        t = edit(BASE, replace={"- name: in1": "  - name: %s" % bad})
        expect_error(c, t, position(t, "- name: %s" % bad, bad[0]), ["1-128 characters"])


def case_access_log_folder_missing(c):
    """The access log is opened after the config is read: a path that cannot be opened
    is an error at its line for `check` too, and `run` refuses it the same way."""
    t = edit(BASE, replace={"access: stdout": "  access: no-such-folder/access.log"})
    for cmd in ("check", "run"):
        expect_error(c, t, position(t, "no-such-folder", "no-such"), ["does not exist"],
                     cmd=cmd)


def case_access_log_is_a_folder(c):
    t = edit(BASE, replace={"access: stdout": "  access: /tmp"})
    expect_error(c, t, position(t, "access: /tmp", "/tmp"), ["not a file"])


def case_access_log_new_file_is_valid(c):
    """A log file that does not exist yet, in a folder that does, relative to the
    config's folder: valid, and `check` creates nothing."""
    d = folder(c)
    os.makedirs(os.path.join(d, "logs"))
    t = edit(BASE, replace={"access: stdout": "  access: logs/access.log"})
    cfg = ztlib.write_text(os.path.join(d, "ztproxy.yaml"), t)
    ztlib.write_text(os.path.join(d, "policy.yaml"), POLICY)
    r = ztlib.run_cli(["check", "-c", cfg], timeout=20, cwd="/")
    check_eq(r.rc, 0, "exit status of check with a new access log file\n%r" % r)
    check_eq(os.listdir(os.path.join(d, "logs")), [], "files check created")


def listen_twice(c, first, second, words):
    """in1 listens on first, out1 on second (quoted: YAML reads [..] as a list): refused
    at out1's listen, naming in1 and where its address is written."""
    t = edit(BASE, replace={"listen: 127.0.0.1:15006": '    listen: "%s"' % first,
                            "listen: 127.0.0.1:15001": '    listen: "%s"' % second})
    r = expect_error(c, t, position(t, 'listen: "%s"' % second, '"'), words)
    line, col = position(t, 'listen: "%s"' % first, '"')
    check("listener in1 (%s at line %d, column %d)" % (first, line, col) in r.err,
          "the error does not name in1 and its position\n%r" % r)


def case_listen_port_with_leading_zero(c):
    listen_twice(c, "127.0.0.1:15006", "127.0.0.1:015006", ["already used"])


def case_listen_ipv6_spelled_twice(c):
    listen_twice(c, "[::1]:15006", "[0:0::1]:15006", ["already used"])


def case_listen_ipv4_mapped_ipv6(c):
    listen_twice(c, "127.0.0.1:15006", "[::ffff:127.0.0.1]:15006", ["already used"])


def case_listen_specific_after_wildcard(c):
    listen_twice(c, "0.0.0.0:15006", "127.0.0.1:15006", ["overlaps", "wildcard"])


def case_listen_wildcard_after_specific(c):
    listen_twice(c, "[::1]:15006", "[::]:15006", ["overlaps", "wildcard"])


def case_listen_ipv6_wildcard_takes_ipv4(c):
    listen_twice(c, "127.0.0.1:15006", "[::]:15006", ["overlaps", "ipv4"])


def case_listen_distinct_addresses_same_port(c):
    """Same port, different addresses and no wildcard: two listeners, both valid."""
    for first, second in (("127.0.0.1:15006", "127.0.0.2:15006"),
                          ("127.0.0.1:15006", "[::1]:15006")):
        d = folder(c)
        t = edit(BASE, replace={"listen: 127.0.0.1:15006": '    listen: "%s"' % first,
                                "listen: 127.0.0.1:15001": '    listen: "%s"' % second})
        cfg = ztlib.write_text(os.path.join(d, "ztproxy.yaml"), t)
        ztlib.write_text(os.path.join(d, "policy.yaml"), POLICY)
        r = ztlib.run_cli(["check", "-c", cfg], timeout=20, cwd=d)
        check_eq(r.rc, 0, "exit status with %s and %s\n%r" % (first, second, r))


def case_listen_same_as_admin(c):
    """The admin endpoint binds without SO_REUSEPORT: `run` would fail to bind."""
    t = edit(BASE, insert_after=("level: info",
                                 "admin:\n  listen: 127.0.0.1:15001  # admin"))
    r = expect_error(c, t, position(t, "    listen: 127.0.0.1:15001", "127.0.0.1"),
                     ["already used"])
    line, col = position(t, "# admin", "127.0.0.1")
    check("admin.listen (127.0.0.1:15001 at line %d, column %d)" % (line, col) in r.err,
          "the error does not name admin.listen and its position\n%r" % r)


def case_listen_overlaps_default_admin(c):
    t = edit(BASE, replace={"listen: 127.0.0.1:15001": "    listen: 0.0.0.0:15000"},
             insert_after=("level: info", "admin:\n  max_peer_series: 10"))
    r = expect_error(c, t, position(t, "0.0.0.0:15000", "0.0.0.0"), ["overlaps"])
    check("admin.listen (127.0.0.1:15000, the default)" in r.err,
          "the error does not name the default admin address\n%r" % r)


# -- policy file -----------------------------------------------------------------------

def case_policy_bad_action(c):
    p = edit(POLICY, replace={"action: deny": "    action: permit"})
    expect_error(c, BASE, position(p, "permit", "permit"), ["action", "permit"],
                 policy_text=p, in_policy=True)


def case_policy_unknown_key(c):
    p = edit(POLICY, insert_after=("name: web-to-api", "    colour: blue"))
    expect_error(c, BASE, position(p, "colour", "colour"), ["colour", "unknown"],
                 policy_text=p, in_policy=True)


def case_policy_bad_spiffe_id(c):
    p = edit(POLICY, replace={"ns/ops/*": "      - spiffe://example.org/ns//ops"})
    expect_error(c, BASE, position(p, "ns//ops", "spiffe"), ["spiffe", "id", "from"],
                 policy_text=p, in_policy=True)


def case_policy_bad_port(c):
    p = edit(POLICY, replace={"ports:": "      ports: [8080, 70000]"})
    expect_error(c, BASE, position(p, "70000", "70000"), ["port", "70000"],
                 policy_text=p, in_policy=True)


def case_policy_missing_trust_domain(c):
    p = edit(POLICY, delete="trust_domain")
    expect_error(c, BASE, (1, 1), ["trust_domain"], policy_text=p, in_policy=True)


def case_policy_bad_mode(c):
    p = edit(POLICY, replace={"mode: enforce": "mode: lenient"})
    expect_error(c, BASE, position(p, "lenient", "lenient"), ["mode", "lenient"],
                 policy_text=p, in_policy=True)


def case_policy_yaml_syntax(c):
    p = edit(POLICY, replace={"default: deny": "default: deny: allow"})
    expect_error(c, BASE, position(p, "default: deny: allow", ":", nth=2),
                 ["mapping values", "yaml", "syntax", "not allowed"],
                 policy_text=p, in_policy=True)


# A deny rule after a stray `---`: before, it was dropped and the policy allowed more.
STRAY_DOC_POLICY = POLICY.replace("  - name: no-intruders", "---\n  - name: no-intruders")


def case_policy_second_document(c):
    p = STRAY_DOC_POLICY
    expect_error(c, BASE, position(p, "---", "---"), ["only one YAML document"],
                 policy_text=p, in_policy=True)


def case_policy_check_second_document(c):
    d = folder(c)
    p = STRAY_DOC_POLICY
    pol = ztlib.write_text(os.path.join(d, "policy.yaml"), p)
    r = ztlib.run_cli(["policy", "check", pol], timeout=20)
    check_eq(r.rc, 2, "exit status of `policy check` on two documents\n%r" % r)
    line, col = position(p, "---", "---")
    want = "%s:%d:%d: only one YAML document is allowed" % (pol, line, col)
    check(r.err.startswith(want), "stderr lacks %r\n%r" % (want, r))


def case_policy_control_character_column(c):
    """The column counts characters (as libyaml's marks do), not bytes: "é" is one."""
    p = edit(POLICY, insert_after=("default: deny", "# café @BAD@"))
    expect_error(c, BASE, position(p, "café", "@BAD@"), ["control character"],
                 policy_text=with_byte(p, b"\x07"), in_policy=True)


CASES = [
    ("valid_config_exits_0", case_valid_config),
    ("default_allow_is_warned_at_load", case_default_allow_is_warned_at_load),
    ("unknown_key_in_listener", case_unknown_key_in_listener),
    ("unknown_top_level_key", case_unknown_top_level_key),
    ("wrong_type_scalar", case_wrong_type_scalar),
    ("wrong_type_listeners_not_a_sequence", case_wrong_type_listeners_not_a_list),
    ("wrong_type_identity_not_a_mapping", case_wrong_type_identity_not_a_map),
    ("missing_required_forward", case_missing_required_forward),
    ("missing_required_identity_key", case_missing_required_identity_key),
    ("missing_listeners", case_missing_listeners),
    ("bad_port_99999", case_bad_port),
    ("address_without_port_nohost", case_address_without_port),
    ("missing_identity_file", case_missing_identity_file),
    ("missing_policy_file", case_missing_policy_file),
    ("yaml_syntax_error", case_yaml_syntax_error),
    ("yaml_unclosed_flow_sequence", case_yaml_unclosed_flow),
    ("bad_duration", case_bad_duration),
    ("bad_duration_unit", case_bad_duration_unit),
    ("busy_poll_too_long", case_busy_poll_too_long),
    ("busy_poll_bad_unit", case_busy_poll_bad_unit),
    ("io_uring_not_a_bool", case_io_uring_not_a_bool),
    ("unknown_mode", case_unknown_mode),
    ("unknown_protocol", case_unknown_protocol),
    ("bad_log_level", case_bad_log_level),
    ("bad_expect_server_id", case_bad_expect_server_id),
    ("bad_workers", case_bad_workers),
    ("run_refuses_bad_config_exit_2", case_run_refuses_bad_config),
    ("empty_file", case_empty_file),
    ("missing_config_file", case_missing_config_file),
    ("second_document_after_dashes", case_second_document_after_dashes),
    ("second_document_after_dots", case_second_document_after_dots),
    ("end_marker_alone_is_fine", case_end_marker_alone_is_fine),
    ("syntax_error_in_second_document", case_syntax_error_in_second_document),
    ("invalid_utf8_position", case_invalid_utf8_position),
    ("invalid_utf8_position_crlf", case_invalid_utf8_position_crlf),
    ("listener_name_not_a_word", case_listener_name_not_a_word),
    ("access_log_folder_missing", case_access_log_folder_missing),
    ("access_log_is_a_folder", case_access_log_is_a_folder),
    ("access_log_new_file_is_valid", case_access_log_new_file_is_valid),
    ("listen_port_with_leading_zero", case_listen_port_with_leading_zero),
    ("listen_ipv6_spelled_twice", case_listen_ipv6_spelled_twice),
    ("listen_ipv4_mapped_ipv6", case_listen_ipv4_mapped_ipv6),
    ("listen_specific_after_wildcard", case_listen_specific_after_wildcard),
    ("listen_wildcard_after_specific", case_listen_wildcard_after_specific),
    ("listen_ipv6_wildcard_takes_ipv4", case_listen_ipv6_wildcard_takes_ipv4),
    ("listen_distinct_addresses_same_port", case_listen_distinct_addresses_same_port),
    ("listen_same_as_admin", case_listen_same_as_admin),
    ("listen_overlaps_default_admin", case_listen_overlaps_default_admin),
    ("policy_bad_action", case_policy_bad_action),
    ("policy_unknown_key", case_policy_unknown_key),
    ("policy_bad_spiffe_id", case_policy_bad_spiffe_id),
    ("policy_bad_port", case_policy_bad_port),
    ("policy_missing_trust_domain", case_policy_missing_trust_domain),
    ("policy_bad_mode", case_policy_bad_mode),
    ("policy_yaml_syntax_error", case_policy_yaml_syntax),
    ("policy_second_document", case_policy_second_document),
    ("policy_check_second_document", case_policy_check_second_document),
    ("policy_control_character_column", case_policy_control_character_column),
]

if __name__ == "__main__":
    ztlib.run_cases("test_config_errors", CASES, setup=setup, teardown=teardown)
