#!/usr/bin/env bash
# ztproxy benchmark harness: ztproxy against haproxy, nginx's stream proxy and the
# direct path, same run, same machine, same certificates, TLS 1.3 AES-128-GCM with
# P-256 everywhere.
#
#   load generator -> OUTBOUND proxy (plain in, mTLS out, client SVID)
#                  -> INBOUND proxy (mTLS in, client SVID verified, plain out) -> backend
#
# Contenders: direct (no proxy), haproxy (Debian package, nbthread 1), nginx (Debian's
# stream module, one worker process) and ztproxy (workers: 1) in both roles. Backends:
# nginx (1 KiB body) and tools/bulk (one-stream source/sink). Everything binds to
# 127.0.0.1; every loop and every load run is bounded in time; every process started
# here is stopped at the end (trap), by its pid.
#
# usage: bench/run.sh [--quick] [--rounds N] [--dur SECONDS] [--hold "1000 10000"]
#                     [--contenders "direct haproxy nginx ztproxy"] [--no-profile]
#                     [--no-install] [--ztproxy PATH] [--tests "ka close ..."]
#   --quick       1 round, 4 s per test, holds of 1,000 and 5,000, no profile (~4 min)
#   default       3 rounds, 10 s per test, holds of 1,000 and 10,000, perf profile (~19 min)
#   --tests       the round tests to run, of: ka close resume lat latbusy up down (all)
# Output: the table on stdout; raw outputs, configs, certificates, logs and perf
# reports under bench/results/raw/<timestamp>/, with the summary (latest.json and
# latest.md) beside them. A complete run (all four contenders, every test, 3 rounds
# or more, not --quick) also writes the summary to bench/results/, whose table the
# README shows.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$TOP/bench

ROUNDS=3 DUR=10 HOLDS="1000 10000" PROFILE=1 INSTALL=1 QUICK=0
CONTENDERS="direct haproxy nginx ztproxy"
ALLTESTS="ka close resume lat latbusy up down"
TESTS=$ALLTESTS
ZTPROXY=${ZTPROXY:-$TOP/build/ztproxy}
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1; ROUNDS=1; DUR=4; PROFILE=0; HOLDS="1000 5000" ;;
    --rounds) ROUNDS=$2; shift ;;
    --dur) DUR=$2; shift ;;
    --hold) HOLDS=$2; shift ;;
    --contenders) CONTENDERS=$2; shift ;;
    --profile) PROFILE=1 ;;
    --no-profile) PROFILE=0 ;;
    --no-install) INSTALL=0 ;;
    --ztproxy) ZTPROXY=$2; shift ;;
    --tests) TESTS=$2; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

[ -n "$TESTS" ] || { echo "bench/run.sh: --tests names no test (of: $ALLTESTS)" >&2; exit 2; }
for t in $TESTS; do
  case " $ALLTESTS " in *" $t "*) ;; *) echo "bench/run.sh: unknown test $t (of: $ALLTESTS)" >&2; exit 2 ;; esac
done

# ------------------------------------------------------------------ prerequisites
exec 9>"${TMPDIR:-/tmp}/ztproxy-bench.lock"
flock -n 9 || { echo "bench/run.sh: another benchmark run holds ${TMPDIR:-/tmp}/ztproxy-bench.lock" >&2; exit 1; }
if [ $INSTALL = 1 ]; then
  "$TOP/scripts/bootstrap.sh" --bench || { echo "bench/run.sh: bootstrap failed" >&2; exit 1; }
fi
for b in haproxy nginx wrk gcc python3 openssl curl timeout flock; do
  command -v $b >/dev/null || { echo "bench/run.sh: missing $b (scripts/bootstrap.sh --bench installs it)" >&2; exit 1; }
done
# build/ztproxy may be being relinked: wait for it (bounded), then run a private copy
for i in $(seq 1 120); do [ -x "$ZTPROXY" ] && break; sleep 1; done
[ -x "$ZTPROXY" ] || { echo "bench/run.sh: $ZTPROXY not built (make build)" >&2; exit 1; }
if [ $PROFILE = 1 ] && ! command -v perf >/dev/null; then
  echo "bench/run.sh: perf not found (apt-get install linux-perf): profile skipped" >&2; PROFILE=0
fi

STAMP=$(date +%Y%m%d-%H%M%S)
RAW=$BENCH/results/raw/$STAMP
RUN=$RAW/run
BIN=$BENCH/results/raw/bin
mkdir -p "$RUN/nginx-tmp" "$BIN" || exit 1
# shellcheck source=lib.sh
source "$BENCH/lib.sh"
: >"$PIDS"
trap 'stop_all' EXIT
trap 'stop_all; exit 130' INT TERM HUP

ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
# A held connection costs each proxy two descriptors (client side + upstream side).
MAXHOLD=$(( (NOFILE - 200) / 2 ))
HOLDLIST=""
for n in $HOLDS; do
  if [ "$n" -gt "$MAXHOLD" ]; then
    log "hold $n needs $((2 * n + 200)) descriptors per proxy; the hard limit is $NOFILE: holding $MAXHOLD instead"
    n=$MAXHOLD
  fi
  HOLDLIST="$HOLDLIST $n"
done
MAXCONN=$(( (NOFILE - 100) / 2 ))   # haproxy wants 2 x maxconn + ~15 descriptors

log "raw results -> $RAW"
sleep 1; cp "$ZTPROXY" "$RUN/ztproxy" || die "cannot copy $ZTPROXY"
ZTPROXY=$RUN/ztproxy
for t in ratelat holdconns; do
  gcc -O2 -Wall -o "$BIN/$t" "$BENCH/tools/$t.c" || die "cannot build tools/$t.c"
done
gcc -O2 -Wall -pthread -o "$BIN/bulk" "$BENCH/tools/bulk.c" || die "cannot build tools/bulk.c"

# ------------------------------------------------------------------ ports
BACKEND_HTTP=26080 BACKEND_BULK=26201
HA_OUT_HTTP=26180 HA_OUT_BULK=26181 HA_IN_HTTP=26443 HA_IN_BULK=26444
ZT_OUT_HTTP=26280 ZT_OUT_BULK=26281 ZT_IN_HTTP=26543 ZT_IN_BULK=26544
NG_OUT_HTTP=26380 NG_OUT_BULK=26381 NG_IN_HTTP=26643 NG_IN_BULK=26644
HA_OUT_RESUME=26182 ZT_OUT_RESUME=26282   # outbound listeners with TLS session resumption on
declare -A RESUME_PORT=([haproxy]=$HA_OUT_RESUME [ztproxy]=$ZT_OUT_RESUME)
declare -A HTTP_PORT=([direct]=$BACKEND_HTTP [haproxy]=$HA_OUT_HTTP [nginx]=$NG_OUT_HTTP [ztproxy]=$ZT_OUT_HTTP)
declare -A BULK_PORT=([direct]=$BACKEND_BULK [haproxy]=$HA_OUT_BULK [nginx]=$NG_OUT_BULK [ztproxy]=$ZT_OUT_BULK)
declare -A IN_PORT=([haproxy]=$HA_IN_HTTP [nginx]=$NG_IN_HTTP [ztproxy]=$ZT_IN_HTTP)
ALLPORTS="$HA_OUT_RESUME $ZT_OUT_RESUME $BACKEND_HTTP $BACKEND_BULK $HA_OUT_HTTP $HA_OUT_BULK $HA_IN_HTTP $HA_IN_BULK $ZT_OUT_HTTP $ZT_OUT_BULK $ZT_IN_HTTP $ZT_IN_BULK $NG_OUT_HTTP $NG_OUT_BULK $NG_IN_HTTP $NG_IN_BULK"
for p in $ALLPORTS; do port_free $p || die "127.0.0.1:$p is already in use"; done

# ------------------------------------------------------------------ certificates (ztproxy's own CA code)
PKI=$RUN/pki
mkdir -p "$PKI"
CLIENT_ID=spiffe://bench.example/ns/bench/sa/client
SERVER_ID=spiffe://bench.example/ns/bench/sa/server
{
  "$ZTPROXY" identity ca --trust-domain bench.example --cert "$PKI/ca.pem" --key "$PKI/ca_key.pem" --ttl 30d &&
  "$ZTPROXY" identity issue --ca-cert "$PKI/ca.pem" --ca-key "$PKI/ca_key.pem" --id $CLIENT_ID \
    --cert "$PKI/client.pem" --key "$PKI/client_key.pem" --ttl 2d &&
  "$ZTPROXY" identity issue --ca-cert "$PKI/ca.pem" --ca-key "$PKI/ca_key.pem" --id $SERVER_ID --dns server \
    --cert "$PKI/server.pem" --key "$PKI/server_key.pem" --ttl 2d &&
  "$ZTPROXY" identity issue --ca-cert "$PKI/ca.pem" --ca-key "$PKI/ca_key.pem" --id spiffe://bench.example/ns/bench/sa/other \
    --cert "$PKI/other.pem" --key "$PKI/other_key.pem" --ttl 2d
} >"$RUN/pki.log" 2>&1 || die "certificate issuing failed: $(cat "$RUN/pki.log")"
cat "$PKI/client.pem" "$PKI/client_key.pem" >"$PKI/client.haproxy.pem"   # haproxy: cert + key in one file
cat "$PKI/server.pem" "$PKI/server_key.pem" >"$PKI/server.haproxy.pem"
chmod 600 "$PKI"/*.haproxy.pem
CLIENT_ID_HEX=$(printf %s "$CLIENT_ID" | od -An -tx1 | tr -d ' \n' | tr a-f A-F)

# ------------------------------------------------------------------ configs
BODY1K=$(head -c 1024 /dev/zero | tr '\0' x)
# ztproxy builds with session resumption (listeners[].resumption, default true): the
# main listeners turn it off (full handshake per connection, like haproxy's
# no-ssl-reuse) and a third outbound listener keeps it on for the resumption figure.
# Older builds know no such key and resume nothing.
printf 'identity: {cert: %s, key: %s, bundle: %s}\nlisteners:\n  - {name: p, mode: outbound, listen: 127.0.0.1:1, upstream: 127.0.0.1:2, resumption: false}\n' \
  "$PKI/client.pem" "$PKI/client_key.pem" "$PKI/ca.pem" >"$RUN/probe.yaml"
if "$ZTPROXY" check -c "$RUN/probe.yaml" >/dev/null 2>&1; then
  ZT_RESUMPTION=1
  ZT_RESUME_OFF='    resumption: false\n'
  ZT_RESUME_LISTENER="  - name: out_http_resume\n    mode: outbound\n    listen: 127.0.0.1:$ZT_OUT_RESUME\n    upstream: 127.0.0.1:$ZT_IN_HTTP\n    expect_server: [spiffe://bench.example/ns/bench/sa/server]\n    idle_timeout: 600s\n    resumption: true\n"
else
  ZT_RESUMPTION=0 ZT_RESUME_OFF='' ZT_RESUME_LISTENER=''
fi
for f in "$BENCH"/conf/*; do
  sed -e "s|@RUN@|$RUN|g; s|@PKI@|$PKI|g; s|@MAXCONN@|$MAXCONN|g; s|@NOFILE@|$NOFILE|g" \
      -e "s|@BACKEND_HTTP@|$BACKEND_HTTP|g; s|@BACKEND_BULK@|$BACKEND_BULK|g" \
      -e "s|@HA_OUT_HTTP@|$HA_OUT_HTTP|g; s|@HA_OUT_BULK@|$HA_OUT_BULK|g; s|@HA_IN_HTTP@|$HA_IN_HTTP|g; s|@HA_IN_BULK@|$HA_IN_BULK|g" \
      -e "s|@ZT_OUT_HTTP@|$ZT_OUT_HTTP|g; s|@ZT_OUT_BULK@|$ZT_OUT_BULK|g; s|@ZT_IN_HTTP@|$ZT_IN_HTTP|g; s|@ZT_IN_BULK@|$ZT_IN_BULK|g" \
      -e "s|@NG_OUT_HTTP@|$NG_OUT_HTTP|g; s|@NG_OUT_BULK@|$NG_OUT_BULK|g; s|@NG_IN_HTTP@|$NG_IN_HTTP|g; s|@NG_IN_BULK@|$NG_IN_BULK|g" \
      -e "s|@HA_OUT_RESUME@|$HA_OUT_RESUME|g; s|@ZT_RESUME_OFF@|$ZT_RESUME_OFF|g; s|@ZT_RESUME_LISTENER@|$ZT_RESUME_LISTENER|g" \
      -e "s|@CLIENT_ID_HEX@|$CLIENT_ID_HEX|g; s|@BODY1K@|$BODY1K|g" "$f" >"$RUN/${f##*/}"
done
"$ZTPROXY" check -c "$RUN/ztproxy-out.yaml" >"$RUN/check.log" 2>&1 && "$ZTPROXY" check -c "$RUN/ztproxy-in.yaml" >>"$RUN/check.log" 2>&1 ||
  die "ztproxy check failed: $(cat "$RUN/check.log")"
haproxy -c -q -f "$RUN/haproxy-out.cfg" >"$RUN/hacheck.log" 2>&1 && haproxy -c -q -f "$RUN/haproxy-in.cfg" >>"$RUN/hacheck.log" 2>&1 ||
  die "haproxy config check failed: $(cat "$RUN/hacheck.log")"
if [[ " $CONTENDERS " == *" nginx "* ]]; then
  [ -f /usr/lib/nginx/modules/ngx_stream_module.so ] ||
    die "nginx's stream module is missing (scripts/bootstrap.sh --bench installs libnginx-mod-stream)"
  for f in nginx-out nginx-in; do
    nginx -t -q -p "$RUN/" -e stderr -c "$RUN/$f.conf" >>"$RUN/ngcheck.log" 2>&1 || die "nginx config check failed: $(cat "$RUN/ngcheck.log")"
  done
fi

# ------------------------------------------------------------------ environment
{
  echo "date=$(date -Is)"
  echo "host_nproc=$(nproc)"
  echo "cpu_model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "kernel=$(uname -r)"
  echo "mem_mib=$(free -m | awk '/Mem:/{print $2}')"
  echo "haproxy=$(haproxy -v | head -1 | awk '{print $3}')"
  echo "haproxy_openssl=$(haproxy -vv | sed -n 's/^Running on OpenSSL version : //p')"
  echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
  echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  echo "ztproxy=$("$ZTPROXY" --version 2>&1 | head -1)"
  echo "ztproxy_git=$(git -C "$TOP" describe --always --dirty 2>/dev/null)"
  echo "nofile=$NOFILE"
  echo "rounds=$ROUNDS"
  echo "dur_s=$DUR"
  echo "holds=$(echo $HOLDLIST | tr ' ' ,)"
  echo "contenders=$(echo $CONTENDERS | tr ' ' ,)"
  echo "quick=$QUICK"
  echo "tests=$(echo $TESTS | tr ' ' ,)"
  echo "ztproxy_resumption=$ZT_RESUMPTION"
  echo "tcp_tw_reuse=$(sysctl -n net.ipv4.tcp_tw_reuse)"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RAW/env.txt"

# ------------------------------------------------------------------ start everything
start backend nginx -p "$RUN/" -c "$RUN/nginx-backend.conf" -e "$RUN/nginx-backend.err"
start bulk "$BIN/bulk" serve $BACKEND_BULK
if [[ " $CONTENDERS " == *" haproxy "* ]]; then
  start haproxy_in  env OPENSSL_CONF="$RUN/openssl-p256.cnf" haproxy -db -f "$RUN/haproxy-in.cfg"
  start haproxy_out env OPENSSL_CONF="$RUN/openssl-p256.cnf" haproxy -db -f "$RUN/haproxy-out.cfg"
fi
if [[ " $CONTENDERS " == *" nginx "* ]]; then
  start nginx_in  nginx -p "$RUN/" -e stderr -c "$RUN/nginx-in.conf"
  start nginx_out nginx -p "$RUN/" -e stderr -c "$RUN/nginx-out.conf"
fi
if [[ " $CONTENDERS " == *" ztproxy "* ]]; then
  start ztproxy_in  "$ZTPROXY" run -c "$RUN/ztproxy-in.yaml"
  start ztproxy_out "$ZTPROXY" run -c "$RUN/ztproxy-out.yaml"
fi
for c in $CONTENDERS; do
  wait_port ${HTTP_PORT[$c]} || die "$c did not open ${HTTP_PORT[$c]} ($(tail -3 "$RUN"/${c}_*.stderr 2>/dev/null))"
  wait_port ${BULK_PORT[$c]} || die "$c did not open ${BULK_PORT[$c]}"
  [ $c = direct ] || { wait_port ${IN_PORT[$c]} || die "$c inbound did not open"; }
done
sleep 1
{
  for n in $(awk '{print $1}' "$PIDS"); do
    p=$(pid_of $n)
    echo "$n pid=$p rss_kb=$(rss_kb $p) anon_kb=$(awk '/^RssAnon:/{print $2}' /proc/$p/status) file_kb=$(awk '/^RssFile:/{print $2}' /proc/$p/status) threads=$(awk '/^Threads:/{print $2}' /proc/$p/status) fds=$(nfds $p)"
  done
} >"$RAW/rss_idle.txt"

# ------------------------------------------------------------------ sanity: function, TLS parameters, refusals
SCLIENT_CONF=$RUN/openssl-p256.cnf
{
  echo "# GET /1k through each chain (expect 200 and 1024 bytes)"
  for c in $CONTENDERS; do
    echo "$c: $(curl -s -m 5 -o /dev/null -w '%{http_code} bytes=%{size_download}' http://127.0.0.1:${HTTP_PORT[$c]}/1k)"
  done
  echo "# bulk up/down 1 s through each chain"
  for c in $CONTENDERS; do
    echo "$c: $("$BIN/bulk" up ${BULK_PORT[$c]} 1) | $("$BIN/bulk" down ${BULK_PORT[$c]} 1)"
  done
  for c in $CONTENDERS; do
    [ $c = direct ] && continue
    ip=${IN_PORT[$c]}
    echo "# $c inbound 127.0.0.1:$ip, client SVID presented: negotiated parameters"
    printf 'GET /1k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | OPENSSL_CONF=$SCLIENT_CONF timeout 5 openssl s_client -brief \
      -connect 127.0.0.1:$ip -cert "$PKI/client.pem" -key "$PKI/client_key.pem" -CAfile "$PKI/ca.pem" 2>&1 |
      grep -E 'Protocol version|Ciphersuite|Peer signature type|Server Temp Key|Verification|^HTTP/1.1' | tr -d '\r'
    for who in none other x25519; do
      case $who in
        none) args=() ;;
        other) args=(-cert "$PKI/other.pem" -key "$PKI/other_key.pem") ;;
        x25519) args=(-cert "$PKI/client.pem" -key "$PKI/client_key.pem" -groups X25519) ;;
      esac
      out=$(printf 'GET /1k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | timeout 5 openssl s_client -quiet -connect 127.0.0.1:$ip \
        "${args[@]}" -CAfile "$PKI/ca.pem" 2>/dev/null | head -1 | tr -d '\r')
      if ! echo "$out" | grep -q '^HTTP/1.1 200'; then r="refused (ok)"
      elif [ $c = nginx ] && [ $who = other ]; then r="accepted (chain only: nginx has no identity check)"
      else r="ACCEPTED (BAD)"; fi
      echo "$c inbound, client=$who: $r"
    done
  done
} >"$RAW/sanity.txt" 2>&1
# the refusals above log on the proxies' stderr: anything after these counts is news
for f in "$RUN"/*_in.stderr "$RUN"/*_out.stderr; do [ -f "$f" ] && echo "${f##*/} $(wc -l <"$f")"; done >"$RAW/stderr_baseline.txt"
log "sanity: $(grep -c 'refused (ok)' "$RAW/sanity.txt") refusals ok, $(grep -c 'BAD' "$RAW/sanity.txt") wrongly accepted; $(grep -c '^[a-z]*: 200 bytes=1024' "$RAW/sanity.txt") chains answer /1k"

# ------------------------------------------------------------------ memory: idle connections held through the chain
HOLD_SECS=$([ $QUICK = 1 ] && echo 2 || echo 3)
: >"$RAW/rss_hold.txt"
for n in $HOLDLIST; do
  for c in $CONTENDERS; do
    [ $c = direct ] && continue
    po=$(pid_of ${c}_out); pi=$(pid_of ${c}_in)
    bo=$(rss_kb $po); bi=$(rss_kb $pi); bb=$(rss_kb "$(pid_of backend)")
    hf=$RAW/hold_${c}_$n.txt
    "$BIN/holdconns" ${HTTP_PORT[$c]} $n 150 128 >"$hf" 2>&1 &
    hp=$!
    for i in $(seq 1 1300); do grep -q READY "$hf" && break; alive $hp || break; sleep 0.1; done
    sleep $HOLD_SECS
    ho=$(rss_kb $po); hi=$(rss_kb $pi); hb=$(rss_kb "$(pid_of backend)"); fo=$(nfds $po); fi_=$(nfds $pi)
    kill -TERM $hp 2>/dev/null; wait $hp 2>/dev/null
    sleep 3
    ao=$(rss_kb $po); ai=$(rss_kb $pi)
    echo "$c n=$n base_out_kb=$bo base_in_kb=$bi hold_out_kb=$ho hold_in_kb=$hi backend_base_kb=$bb backend_hold_kb=$hb fds_out=$fo fds_in=$fi_ after_out_kb=$ao after_in_kb=$ai $(awk '/READY/{printf "%s %s setup_%s ", $2, $3, $4} /DONE/{printf "%s ", $2}' "$hf")" >>"$RAW/rss_hold.txt"
    log "memory $c, $n idle conns: out $bo -> $ho KiB, in $bi -> $hi KiB ($(awk '/READY/{print $2, $3, $4}' "$hf"))"
    sleep 2
  done
done

# ------------------------------------------------------------------ rounds: each test for every contender back to back
# Test by test, not contender by contender: the figures a ratio compares are measured
# seconds apart, not a minute, so the machine's drift moves them alike.
tmo=$((DUR + 30))
set -- $CONTENDERS; NC=$#
for r in $(seq 1 "$ROUNDS"); do
  # rotate the order every round so no contender always runs first or last
  order=()
  i=0; for c in $CONTENDERS; do order[$(( (i + NC - (r - 1) % NC) % NC ))]=$c; i=$((i + 1)); done
  log "round $r/$ROUNDS: ${order[*]}"
  for t in $TESTS; do
    for c in "${order[@]}"; do
      hp=${HTTP_PORT[$c]}; bp=${BULK_PORT[$c]}; out=$RAW/${c}_${t}_r$r.txt
      case $t in
        ka) run_measured $c ka "$out" $tmo wrk -t2 -c50 -d${DUR}s --latency http://127.0.0.1:$hp/1k ;;
        close) run_measured $c close "$out" $tmo wrk -t2 -c50 -d${DUR}s --latency -H 'Connection: close' http://127.0.0.1:$hp/1k ;;
        resume)
          [ -n "${RESUME_PORT[$c]:-}" ] && [ $ZT_RESUMPTION = 1 ] || continue
          run_measured $c resume "$out" $tmo wrk -t2 -c50 -d${DUR}s --latency -H 'Connection: close' http://127.0.0.1:${RESUME_PORT[$c]}/1k ;;
        lat) run_measured $c lat "$out" $tmo "$BIN/ratelat" -p $hp -r 1000 -c 16 -d $DUR -w 1 -m ka ;;
        latbusy)
          # the same on a busy node: a nice-19 busy loop on every CPU, as batch work
          # would run there; a proxy that busy polls must not hold on to a CPU that
          # work wants (bench/README.md)
          spinners_start $((tmo + 5))
          run_measured $c latbusy "$out" $tmo "$BIN/ratelat" -p $hp -r 1000 -c 16 -d $DUR -w 1 -m ka
          spinners_stop ;;
        up|down) run_measured $c $t "$out" $tmo "$BIN/bulk" $t $bp $DUR ;;
      esac
      sleep 1
    done
  done
done

{
  for n in $(awk '{print $1}' "$PIDS"); do
    p=$(pid_of $n)
    alive $p || { echo "$n pid=$p DEAD"; continue; }
    echo "$n pid=$p rss_kb=$(rss_kb $p) threads=$(awk '/^Threads:/{print $2}' /proc/$p/status) fds=$(nfds $p)"
  done
} >"$RAW/rss_after.txt"
grep -q DEAD "$RAW/rss_after.txt" && log "warning: a process died during the run: $(grep DEAD "$RAW/rss_after.txt")"

# ------------------------------------------------------------------ profile (perf) of the proxies under keep-alive and handshake load
if [ $PROFILE = 1 ]; then
  PD=$RAW/profile
  mkdir -p "$PD"
  PDUR=$(( DUR < 8 ? DUR : 8 ))
  SC="raw_syscalls:sys_enter"
  for s in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_ctl io_uring_enter accept4 connect close \
           setsockopt getsockopt getsockname getpeername socket shutdown mmap munmap brk madvise futex ioctl; do
    SC="$SC,syscalls:sys_enter_$s"
  done
  for c in $CONTENDERS; do
    # perf -p follows one process: nginx's work is in its worker, not the master started here
    [ $c = direct ] || [ $c = nginx ] && continue
    hp=${HTTP_PORT[$c]}
    for t in ka close up; do
      case $t in
        ka) load=(wrk -t2 -c50 -d${PDUR}s --latency http://127.0.0.1:$hp/1k) ;;
        close) load=(wrk -t2 -c50 -d${PDUR}s --latency -H 'Connection: close' http://127.0.0.1:$hp/1k) ;;
        up) load=("$BIN/bulk" up ${BULK_PORT[$c]} $PDUR) ;;
      esac
      pp=()
      for role in out in; do
        p=$(pid_of ${c}_$role)
        timeout -k 2 $((PDUR + 5)) perf stat -x, -e "$SC" -p $p -o "$PD/${c}_${role}_${t}.stat" -- sleep $PDUR >/dev/null 2>&1 &
        pp+=($!)
        if [ $c = ztproxy ]; then
          timeout -k 2 $((PDUR + 5)) perf record -F 499 --call-graph dwarf,8192 -p $p -o "$PD/${c}_${role}_${t}.data" -- sleep $PDUR >/dev/null 2>"$PD/${c}_${role}_${t}.record.log" &
          pp+=($!)
        fi
      done
      sleep 0.2
      timeout -k 2 $((PDUR + 20)) "${load[@]}" >"$PD/${c}_${t}.load.txt" 2>&1
      for p in "${pp[@]}"; do wait $p 2>/dev/null; done
      log "profiled $c $t"
    done
  done
  for f in "$PD"/*.data; do
    [ -f "$f" ] || continue
    b=${f%.data}
    timeout 300 perf report -i "$f" --no-children --sort symbol --stdio --percent-limit 1.5 -g caller,0.5,callee --max-stack 24 2>/dev/null | grep -v '^$' | head -1500 >"$b.report.txt"
    timeout 120 perf report -i "$f" --no-children --sort dso,symbol --stdio -g none --percent-limit 0.5 2>/dev/null | grep -E '^ +[0-9]' | head -60 >"$b.flat.txt"
    timeout 120 perf report -i "$f" --no-children --sort dso --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -20 >"$b.dso.txt"
    timeout 120 perf report -i "$f" --children --sort symbol --stdio -g none --percent-limit 2 2>/dev/null | grep -E '^ +[0-9]' | head -60 >"$b.children.txt"
  done
fi

stop_all
trap - EXIT INT TERM HUP
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RAW/env.txt"
python3 "$BENCH/summarize.py" "$RAW" "$RAW" || die "summarize failed"
if [ $QUICK = 0 ] && [ "$ROUNDS" -ge 3 ] && [ "$TESTS" = "$ALLTESTS" ] && [ "$(echo $CONTENDERS | tr ' ' '\n' | sort | tr '\n' ' ')" = "direct haproxy nginx ztproxy " ]; then
  cp "$RAW/latest.json" "$RAW/latest.md" "$BENCH/results/" || die "cannot write $BENCH/results"
  log "wrote $BENCH/results/latest.json and latest.md (raw: $RAW)"
else
  log "a partial run: its summary is $RAW/latest.md (bench/results/latest.* keep the last complete run)"
fi
