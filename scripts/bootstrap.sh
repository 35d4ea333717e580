#!/usr/bin/env bash
# Installs what ztproxy needs on a fresh Debian 12 machine, and builds wolfSSL and a
# static libuv from Debian's source packages. A no-op when all is there.
#
#   scripts/bootstrap.sh [--bench]      (--bench adds the benchmark peers)
#
# Both go to $ZT_DEPS (default: .deps/ at the top of the tree, git-ignored).
# Debian's binary libwolfssl has no AES-NI and is ~30x slower at AES-GCM, so we build
# the same upstream version from Debian's source package; Debian ships libuv only as a
# shared library, and ztproxy links statically (one file to deploy, and the smallest
# resident set: a static binary maps only the parts of libc and libuv it uses). The
# deb-src entries live in a private, temporary apt configuration: the machine's own
# apt sources are not changed.
set -euo pipefail
shopt -s inherit_errexit   # a failure inside $(...) stops the script too

top=$(cd "$(dirname "$0")/.." && pwd)
deps=${ZT_DEPS:-$top/.deps}
# No OpenSSL-compat layer and no KEEP_PEER_CERT: the verify callback (always called,
# for every certificate) reads the peer chain as DER, and we keep only the SPIFFE ID.
# WOLFSSL_ALT_NAMES lets identity/ write URI SANs and exact validity dates.
# No finite-field DH: TLS 1.3 here is ECDHE on P-256 only (and DH alone needed libm).
# The SP assembly covers P-256 and RSA 2048/3072, what SVIDs and their CAs use; P-384,
# P-521 and RSA 4096 certificates still verify through the generic sp-math-all code,
# without the 1.2 MB of precomputed tables their SP code would add. No SHA-3 (TLS 1.3
# and X.509-SVIDs do not use it).
# Function and data sections let the linker drop the large part of wolfSSL that
# ztproxy never calls (smaller binary, fewer resident pages).
# The ticket padding leaves room in session tickets for the peer's SPIFFE ID, which a
# resumed TLS 1.3 handshake does not otherwise carry (proxy/tls.c, ticket_cb).
# WOLFSSL_GETRANDOM seeds each connection's DRBG with one getrandom() call instead of
# opening, reading and closing /dev/urandom: two system calls fewer per TLS connection,
# and no /dev/urandom needed in the container.
wolfssl_flags=(--enable-static --disable-shared
  --enable-aesni --enable-intelasm --enable-sp=p256,rsa2048,rsa3072 --enable-sp-asm
  --enable-sp-math-all
  --enable-tls13 --enable-alpn --enable-sni --enable-session-ticket
  --enable-certgen --enable-certext --enable-keygen --enable-crl
  --enable-ecc --enable-supportedcurves --enable-aesgcm --enable-harden --disable-sha3
  --disable-oldtls --disable-dh --disable-examples --disable-crypttests --disable-benchmark
  "CFLAGS=-O2 -fPIC -ffunction-sections -fdata-sections -DWOLFSSL_ALWAYS_VERIFY_CB -DWOLFSSL_VERIFY_CB_ALL_CERTS -DWOLFSSL_ALT_NAMES -DWOLFSSL_TICKET_EXTRA_PADDING_SZ=288 -DWOLFSSL_GETRANDOM")
libuv_flags=(-DCMAKE_BUILD_TYPE=Release -DLIBUV_BUILD_TESTS=OFF -DLIBUV_BUILD_BENCH=OFF
  "-DCMAKE_C_FLAGS=-O2 -ffunction-sections -fdata-sections")
# Each stamp names its flags' hash: a change of build flags rebuilds.
flags_hash() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
wolfssl_stamp=$deps/wolfssl/.built-$(flags_hash "${wolfssl_flags[@]}")
libuv_stamp=$deps/libuv/.built-$(flags_hash "${libuv_flags[@]}")

pkgs=(build-essential cmake pkg-config libuv1-dev libyaml-dev liburing-dev node-llhttp
      autoconf automake libtool curl openssl python3 iproute2 iptables procps
      prometheus)   # promtool validates our /metrics exposition in the tests
[ "${1:-}" = "--bench" ] && pkgs+=(haproxy nginx-light libnginx-mod-stream wrk)

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

[ -f "$wolfssl_stamp" ] && [ -f "$libuv_stamp" ] && exit 0

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

# The upstream sources of Debian package $1, unpacked; prints their directory.
debian_source() {
  local dir
  (cd "$work/src" && apt-get "${aptopt[@]}" source --download-only "$1" >/dev/null)
  tar -xf "$(ls "$work"/src/"$1"_*.orig.tar.* | head -1)" -C "$work/src"
  dir=$(find "$work/src" -maxdepth 1 -type d -name "$2" | head -1)
  [ -n "$dir" ] || { echo "bootstrap: no source tree for $1 in $work/src" >&2; exit 1; }
  echo "$dir"
}

# Install beside, then swap: a build never leaves a half-installed library behind.
swap_in() {   # $1: the prefix, $2: the stamp
  touch "$work/dest$2"
  rm -rf "$1"
  mkdir -p "$(dirname "$1")"
  mv "$work/dest$1" "$1"
  echo "bootstrap: ready in $1"
}

if [ ! -f "$wolfssl_stamp" ]; then
  prefix=$deps/wolfssl
  echo "bootstrap: building wolfSSL from Debian's source package into $prefix"
  srcdir=$(debian_source wolfssl 'wolfssl-*')
  (
    cd "$srcdir"
    ./autogen.sh >/dev/null 2>&1
    ./configure --prefix="$prefix" "${wolfssl_flags[@]}" \
      >"$work/configure.log" 2>&1 || { tail -30 "$work/configure.log"; exit 1; }
    make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -30 "$work/make.log"; exit 1; }
    make install DESTDIR="$work/dest" >"$work/install.log" 2>&1 ||
      { tail -30 "$work/install.log"; exit 1; }
    cp wolfssl/options.h "$work/dest$prefix/include/wolfssl/options.h"
  )
  swap_in "$prefix" "$wolfssl_stamp"
fi

if [ ! -f "$libuv_stamp" ]; then
  prefix=$deps/libuv
  echo "bootstrap: building a static libuv from Debian's source package into $prefix"
  srcdir=$(debian_source libuv1 'libuv1-*')
  cmake -S "$srcdir" -B "$work/libuv-build" -DCMAKE_INSTALL_PREFIX="$prefix" \
    "${libuv_flags[@]}" >"$work/libuv.log" 2>&1 || { tail -30 "$work/libuv.log"; exit 1; }
  cmake --build "$work/libuv-build" -j"$(nproc)" >>"$work/libuv.log" 2>&1 ||
    { tail -30 "$work/libuv.log"; exit 1; }
  DESTDIR="$work/dest" cmake --install "$work/libuv-build" >/dev/null
  swap_in "$prefix" "$libuv_stamp"
fi
