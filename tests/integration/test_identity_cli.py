#!/usr/bin/env python3
"""`ztproxy identity`: intermediates (`ca --ca-cert/--ca-key`), chains written
by `issue`, `--dns`/`--ttl`, `show` with every rule in words and its exit status, and
`revoke` CRLs, cross-checked with the openssl command line when it is installed."""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztlib  # noqa: E402
from ztlib import check, check_eq  # noqa: E402

OPENSSL = shutil.which("openssl")


def cli(*args):
    return ztlib.run_cli(list(args))


def setup():
    pki = ztlib.Pki()
    base = os.path.join(pki.dir, "int")
    r = cli("identity", "ca", "--trust-domain", "example.org", "--cert", base + ".pem",
            "--key", base + "_key.pem", "--ca-cert", pki.ca_cert, "--ca-key", pki.ca_key)
    if r.rc != 0:
        raise ztlib.Failure("intermediate: %r" % r)
    pki.int_cert, pki.int_key = base + ".pem", base + "_key.pem"
    return pki


def teardown(pki):
    if pki is not None:
        pki.cleanup()


def certs_in(path):
    with open(path) as f:
        return f.read().count("-----BEGIN CERTIFICATE-----")


def openssl(*args):
    """The openssl CLI as an independent second opinion (never used for the PKI)."""
    check(OPENSSL is not None, "openssl is not installed (scripts/bootstrap.sh installs it)")
    return subprocess.run([OPENSSL] + list(args), capture_output=True, text=True,
                          timeout=30)


def case_intermediate_chain(pki):
    check_eq(certs_in(pki.int_cert), 1, "certificates in the intermediate file")
    cert, _ = pki.issue("spiffe://example.org/a", ca=(pki.int_cert, pki.int_key),
                        name="via-int")
    check_eq(certs_in(cert), 2, "certificates in the SVID file (leaf + intermediate)")
    r = cli("identity", "show", cert, "--bundle", pki.ca_cert)
    check_eq(r.rc, 0, "show --bundle on an intermediate-issued SVID\n%r" % r)
    check("chain:        2 certificates" in r.out, "chain not shown\n%r" % r)
    v = openssl("verify", "-CAfile", pki.ca_cert, "-untrusted", cert, cert)
    check_eq(v.returncode, 0, "openssl verify: %s %s" % (v.stdout, v.stderr))


def case_show_prints_everything(pki):
    cert, _ = pki.issue("spiffe://example.org/ns/x", dns=("x.local",), ttl="2h",
                        name="show")
    r = cli("identity", "show", cert)
    check_eq(r.rc, 0, "show exit status\n%r" % r)
    for want in ("spiffe://example.org/ns/x", "trust domain: example.org", "serial:",
                 "not before:", "not after:", "EC P-256", "ecdsa-with-SHA256",
                 "ok    digitalSignature key usage", "verdict:      ok"):
        check(want in r.out, "show lacks %r\n%r" % (want, r))
    t = openssl("x509", "-in", cert, "-noout", "-text", "-serial")
    check("DNS:x.local" in t.stdout, "no DNS SAN\n" + t.stdout)
    serial = re.search(r"serial=([0-9A-F]+)", t.stdout).group(1).lower()
    check(serial.lstrip("0") in r.out, "serial %s not shown" % serial)


def bad_issue(pki, name, *extra):
    base = os.path.join(pki.dir, name)
    r = cli("identity", "issue", "--ca-cert", pki.ca_cert, "--ca-key", pki.ca_key,
            "--id", "spiffe://example.org/bad", "--cert", base + ".pem", "--key",
            base + "_key.pem", *extra)
    check_eq(r.rc, 0, "issue %s\n%r" % (" ".join(extra), r))
    return base + ".pem"


def case_show_names_each_broken_rule(pki):
    for name, extra, code, line in [
        ("rsa1024", ("--key-type", "rsa1024"), "weak_key", "FAIL  key strong enough"),
        ("sha1", ("--sig", "sha1"), "sha1_signature", "FAIL  signature hash"),
        ("nods", ("--no-digital-signature",), "missing_digital_signature",
         "FAIL  digitalSignature key usage"),
        ("kcs", ("--key-usage", "digitalSignature,keyCertSign"), "leaf_can_sign_certs",
         "FAIL  no keyCertSign"),
        ("isca", ("--is-ca",), "leaf_is_ca", "FAIL  not a CA"),
    ]:
        cert = bad_issue(pki, name, *extra)
        r = cli("identity", "show", cert)
        check_eq(r.rc, 1, "show exit status for %s\n%r" % (name, r))
        check("verdict:      " + code in r.out, "%s: verdict not %s\n%r" % (name, code, r))
        check(line in r.out, "%s: no line %r\n%r" % (name, line, r))


def case_show_expired_exits_1(pki):
    cert, _ = pki.issue("spiffe://example.org/old", ttl="1h", backdate="2h", name="old")
    r = cli("identity", "show", cert)
    check_eq(r.rc, 1, "show on an expired SVID\n%r" % r)
    check("expired" in r.out, "not said expired\n%r" % r)


def case_show_foreign_bundle_exits_1(pki):
    other = ztlib.Pki(td="partner.example")
    try:
        cert, _ = pki.issue("spiffe://example.org/a", name="fb")
        r = cli("identity", "show", cert, "--bundle", other.ca_cert)
        check_eq(r.rc, 1, "show --bundle with another CA\n%r" % r)
        check("unknown_ca" in r.out, "not unknown_ca\n%r" % r)
    finally:
        other.cleanup()


def case_other_key_types_verify(pki):
    """CAs and SVIDs made elsewhere with P-384 and RSA 4096 keys verify (wolfSSL keeps
    its fast code for P-256 and RSA 2048/3072 only; these take the generic code), and
    a leaf checked against the other CA does not."""
    d = os.path.join(pki.dir, "foreign")
    os.makedirs(d, exist_ok=True)
    ext = os.path.join(d, "leaf.cnf")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "subjectAltName=URI:spiffe://example.org/foreign\n")
    made = {}
    for name, newkey, md in (("p384", "ec:%s" % os.path.join(d, "p384.param"), "-sha384"),
                             ("rsa4096", "rsa:4096", "-sha256")):
        if name == "p384":
            check_eq(openssl("ecparam", "-name", "secp384r1", "-out",
                             os.path.join(d, "p384.param")).returncode, 0, "ecparam")
        ca, ca_key = os.path.join(d, name + "_ca.pem"), os.path.join(d, name + "_ca.key")
        leaf, leaf_key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
        csr = os.path.join(d, name + ".csr")
        for args in (
                ("req", "-x509", "-newkey", newkey, "-nodes", "-keyout", ca_key, md,
                 "-days", "2", "-subj", "/CN=%s CA" % name, "-addext",
                 "basicConstraints=critical,CA:TRUE", "-addext",
                 "keyUsage=critical,keyCertSign,cRLSign", "-out", ca),
                ("req", "-new", "-newkey", newkey, "-nodes", "-keyout", leaf_key,
                 "-subj", "/CN=leaf", "-out", csr),
                ("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                 "-CAcreateserial", "-days", "1", md, "-extfile", ext, "-out", leaf)):
            r = openssl(*args)
            check_eq(r.returncode, 0, "openssl %s: %s" % (args[0], r.stderr))
        made[name] = (ca, leaf)
        r = cli("identity", "show", leaf, "--bundle", ca)
        check_eq(r.rc, 0, "%s SVID against its CA\n%r" % (name, r))
        check("verifies" in r.out, "%s: not said to verify\n%r" % (name, r))
    r = cli("identity", "show", made["p384"][1], "--bundle", made["rsa4096"][0])
    check_eq(r.rc, 1, "P-384 SVID against the RSA CA\n%r" % r)


def case_revoke_writes_a_crl_openssl_accepts(pki):
    cert, _ = pki.issue("spiffe://example.org/r", ca=(pki.int_cert, pki.int_key),
                        name="rev")
    show = cli("identity", "show", cert)
    serial = re.search(r"serial:\s+([0-9a-f]+)", show.out).group(1)
    crl = os.path.join(pki.dir, "crl.pem")
    r = cli("identity", "revoke", "--ca-cert", pki.int_cert, "--ca-key", pki.int_key,
            "--serial", serial, "--out", crl)
    check_eq(r.rc, 0, "revoke\n%r" % r)
    with open(crl) as f:
        check("-----BEGIN X509 CRL-----" in f.read(), "not a PEM CRL")
    t = openssl("crl", "-in", crl, "-noout", "-text")
    check_eq(t.returncode, 0, "openssl crl: " + t.stderr)
    check(serial.upper() in t.stdout.replace(":", "").upper(), "serial not listed")
    v = openssl("verify", "-crl_check", "-CRLfile", crl, "-CAfile", pki.ca_cert,
                "-untrusted", cert, cert)
    check(v.returncode != 0 and "revoked" in (v.stdout + v.stderr),
          "openssl does not see it revoked: %s %s" % (v.stdout, v.stderr))
    r = cli("identity", "revoke", "--ca-cert", pki.int_cert, "--ca-key", pki.int_key,
            "--serial", "zz", "--out", crl)
    check_eq(r.rc, 1, "revoke with a bad serial\n%r" % r)


def case_usage_errors(pki):
    r = cli("identity", "ca", "--trust-domain", "example.org", "--cert", "/tmp/x.pem",
            "--key", "/tmp/x_key.pem", "--ca-cert", pki.ca_cert)
    check_eq(r.rc, 2, "ca with --ca-cert but no --ca-key\n%r" % r)
    r = cli("identity", "revoke", "--ca-cert", pki.ca_cert)
    check_eq(r.rc, 2, "revoke without --out\n%r" % r)
    r = cli("identity", "issue", "--ca-cert", pki.ca_cert, "--ca-key", pki.ca_key, "--id",
            "spiffe://example.org/a", "--cert", "/tmp/y.pem", "--key", "/tmp/y_key.pem",
            "--key-type", "dsa")
    check_eq(r.rc, 1, "issue with an unknown key type\n%r" % r)
    r = cli("identity", "revoke", "--help")
    check_eq(r.rc, 0, "revoke --help")


CASES = [
    ("intermediate_ca_and_chain_file", case_intermediate_chain),
    ("show_prints_id_td_serial_validity_key_rules", case_show_prints_everything),
    ("show_names_each_broken_rule_and_exits_1", case_show_names_each_broken_rule),
    ("show_expired_exits_1", case_show_expired_exits_1),
    ("show_with_a_foreign_bundle_exits_1", case_show_foreign_bundle_exits_1),
    ("p384_and_rsa4096_svids_verify", case_other_key_types_verify),
    ("revoke_writes_a_crl_openssl_accepts", case_revoke_writes_a_crl_openssl_accepts),
    ("usage_errors", case_usage_errors),
]

if __name__ == "__main__":
    ztlib.run_cases("test_identity_cli", CASES, setup=setup, teardown=teardown)
