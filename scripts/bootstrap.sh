#!/usr/bin/env bash
# Installs what ztproxy needs on a fresh Debian 12 machine and builds wolfSSL from
# Debian's source package with AES-NI and the SP assembly. A no-op when all is there.
#
#   scripts/bootstrap.sh [--bench]      (--bench adds the benchmark peers)
#
# wolfSSL goes to $ZT_DEPS (default: .deps/ at the top of the tree, git-ignored).
# Debian's binary libwolfssl has no AES-NI and is ~30x slower at AES-GCM, so we build
# the same upstream version from Debian's source package. The deb-src entry lives in a
# private, temporary apt configuration: the machine's own apt sources are not changed.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deps=${ZT_DEPS:-$top/.deps}
prefix=$deps/wolfssl
# No OpenSSL-compat layer and no KEEP_PEER_CERT: the verify callback (always called,
# for every certificate) reads the peer chain as DER, and we keep only the SPIFFE ID.
# WOLFSSL_ALT_NAMES lets identity/ write URI SANs and exact validity dates.
# No finite-field DH: TLS 1.3 here is ECDHE on P-256 only (and DH alone needed libm).
# Function and data sections let the linker drop the large part of wolfSSL that
# ztproxy never calls (smaller binary, fewer resident pages).
# The ticket padding leaves room in session tickets for the peer's SPIFFE ID, which a
# resumed TLS 1.3 handshake does not otherwise carry (proxy/tls.c, ticket_cb).
wolfssl_flags=(--enable-static --disable-shared
  --enable-aesni --enable-intelasm --enable-sp --enable-sp-asm --enable-sp-math-all
  --enable-tls13 --enable-alpn --enable-sni --enable-session-ticket
  --enable-certgen --enable-certext --enable-keygen --enable-crl
  --enable-ecc --enable-supportedcurves --enable-aesgcm --enable-harden
  --disable-oldtls --disable-dh --disable-examples --disable-crypttests --disable-benchmark
  "CFLAGS=-O2 -fPIC -ffunction-sections -fdata-sections -DWOLFSSL_ALWAYS_VERIFY_CB -DWOLFSSL_VERIFY_CB_ALL_CERTS -DWOLFSSL_ALT_NAMES -DWOLFSSL_TICKET_EXTRA_PADDING_SZ=288")
# The stamp names the flags' hash: a change of build flags rebuilds.
stamp=$prefix/.built-$(printf '%s\n' "${wolfssl_flags[@]}" | sha256sum | cut -c1-16)

pkgs=(build-essential cmake pkg-config libuv1-dev libyaml-dev node-llhttp
      autoconf automake libtool curl openssl python3 iproute2 iptables procps
      prometheus)   # promtool validates our /metrics exposition in the tests
[ "${1:-}" = "--bench" ] && pkgs+=(haproxy nginx-light wrk)

need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

[ -f "$stamp" ] && exit 0

echo "bootstrap: building wolfSSL from Debian's source package into $prefix"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A private apt state: deb-src for the same suites and keys as the machine's deb lines.
mkdir -p "$work/apt/lists/partial" "$work/apt/sources.list.d" "$work/src"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  case "$f" in
    *.list) grep -E '^[[:space:]]*deb[[:space:]]' "$f" | sed -E 's/^[[:space:]]*deb[[:space:]]/deb-src /' \
              >> "$work/apt/sources.list.d/src.list" || true ;;
    *.sources) sed -E 's/^Types:.*/Types: deb-src/' "$f" > "$work/apt/sources.list.d/$(basename "$f")" ;;
  esac
done
aptopt=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/apt/sources.list.d"
        -o "Dir::State::Lists=$work/apt/lists" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${aptopt[@]}" update -qq
(cd "$work/src" && apt-get "${aptopt[@]}" source --download-only wolfssl >/dev/null)
orig=$(ls "$work"/src/wolfssl_*.orig.tar.* | head -1)
tar -xf "$orig" -C "$work/src"
srcdir=$(find "$work/src" -maxdepth 1 -type d -name 'wolfssl-*' | head -1)

cd "$srcdir"
./autogen.sh >/dev/null 2>&1
./configure --prefix="$prefix" "${wolfssl_flags[@]}" \
  >"$work/configure.log" 2>&1 || { tail -30 "$work/configure.log"; exit 1; }
make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -30 "$work/make.log"; exit 1; }
# Install beside, then swap: a build never leaves a half-installed wolfSSL behind.
make install DESTDIR="$work/dest" >/dev/null
cp "$srcdir"/wolfssl/options.h "$work/dest$prefix/include/wolfssl/options.h"
touch "$work/dest$stamp"
rm -rf "$prefix"
mkdir -p "$(dirname "$prefix")"
mv "$work/dest$prefix" "$prefix"
echo "bootstrap: wolfSSL ready in $prefix"
