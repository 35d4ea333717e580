# Helper functions for bench/run.sh (sourced). Everything binds to 127.0.0.1.
# Expects: RUN (runtime folder), RAW (raw results folder), BIN (built tools).

PIDS=$RUN/pids

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

# start NAME CMD... : run in the background, remember its pid (stopped by stop_all)
start() {
  local name=$1; shift
  "$@" >"$RUN/$name.stdout" 2>"$RUN/$name.stderr" &
  local pid=$!
  echo "$name $pid" >>"$PIDS"
  log "started $name pid=$pid"
}

# spinners_start SECONDS: one nice-19 busy loop per CPU, for at most SECONDS,
# registered like every process started here; spinners_stop stops them and forgets them.
spinners_start() {
  local i
  for i in $(seq 1 "$(nproc)"); do
    start spinner$i timeout "$1" nice -n 19 sh -c 'while :; do :; done'
  done
}
spinners_stop() {
  local i j p sig
  for sig in TERM KILL; do
    for i in $(seq 1 "$(nproc)"); do
      p=$(pid_of spinner$i); alive "$p" && kill -$sig "$p" 2>/dev/null
    done
    for j in $(seq 1 50); do
      p=""
      for i in $(seq 1 "$(nproc)"); do alive "$(pid_of spinner$i)" && p=1; done
      [ -z "$p" ] && break
      sleep 0.1
    done
    [ -z "$p" ] && break
  done
  sed -i '/^spinner/d' "$PIDS"
}

pid_of() { awk -v n="$1" '$1==n{p=$2} END{print p}' "$PIDS" 2>/dev/null; }

alive() { [ -n "${1:-}" ] && [ -d "/proc/$1" ]; }

# the pid and its direct children (nginx master -> worker)
tree_pids() {
  local p=$1
  alive "$p" || return 0
  echo "$p"
  ps -o pid= --ppid "$p" 2>/dev/null | tr -d ' '
}

# one number per process, printed by awk program $2 from /proc/PID/$1, summed over
# pid $3 and its children
tree_sum() {
  local s=0 p v
  for p in $(tree_pids "$3"); do
    v=$(awk "$2" "/proc/$p/$1" 2>/dev/null)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}

# VmRSS in KiB, summed over the pid and its children
rss_kb() { tree_sum status '/^VmRSS:/{print $2}' "$1"; }

# open file descriptors of one pid
nfds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

# user+system CPU in clock ticks (all threads), summed over the pid and its children
cpu_ticks() { tree_sum stat '{sub(/^.*\) /,""); print $12+$13}' "$1"; }

# "busy_ticks total_ticks" of the whole machine from /proc/stat (noise indicator)
sys_ticks() { awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat; }

# CPU seconds (user+sys) of the waited-for children of this shell, from the `times`
# builtin; sets CHILD_CPU. Must run in the main shell (a subshell starts from zero).
child_cpu() {
  times >"$RUN/.times"
  CHILD_CPU=$(awk 'NR==2{ split($1,a,/[ms]/); split($2,b,/[ms]/); printf "%.3f", a[1]*60+a[2]+b[1]*60+b[2] }' "$RUN/.times")
}

wait_port() { # bounded: 10 s
  local i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  log "port $1 did not open"; return 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_all() {
  [ -f "$PIDS" ] || return 0
  local name pid i any
  while read -r name pid; do
    alive "$pid" && kill -TERM "$pid" 2>/dev/null
  done <"$PIDS"
  for i in $(seq 1 50); do
    any=0
    while read -r name pid; do alive "$pid" && any=1; done <"$PIDS"
    [ $any = 0 ] && break
    sleep 0.1
  done
  while read -r name pid; do
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null; log "killed $name pid=$pid (did not stop on SIGTERM in 5 s)"; fi
  done <"$PIDS"
  : >"$PIDS"
}

# proxies of a contender: "outbound inbound" process names (empty for direct)
proxies_of() { case $1 in direct) echo "";; *) echo "${1}_out ${1}_in";; esac; }

# run_measured CONTENDER TEST OUTFILE TIMEOUT CMD...
# Runs CMD (bounded by TIMEOUT seconds), records into OUTFILE.meta: exit status, wall
# time, CPU seconds of the outbound and inbound proxy and of the backend, the load
# generator's CPU, and how busy the machine was with everything else (others_cpu_s).
run_measured() {
  local c=$1 test=$2 out=$3 tmo=$4; shift 4
  local po pi pb pk
  po=$(pid_of "${c}_out"); pi=$(pid_of "${c}_in"); pb=$(pid_of backend); pk=$(pid_of bulk)
  local o0 i0 b0 k0 l0 sb0 st0 t0
  o0=$(cpu_ticks "$po"); i0=$(cpu_ticks "$pi"); b0=$(cpu_ticks "$pb"); k0=$(cpu_ticks "$pk")
  child_cpu; l0=$CHILD_CPU
  read -r sb0 st0 < <(sys_ticks)
  t0=$(date +%s.%N)
  timeout -k 2 "$tmo" "$@" >"$out" 2>&1
  local rc=$?
  local t1 o1 i1 b1 k1 l1 sb1 st1
  t1=$(date +%s.%N)
  read -r sb1 st1 < <(sys_ticks)
  child_cpu; l1=$CHILD_CPU
  o1=$(cpu_ticks "$po"); i1=$(cpu_ticks "$pi"); b1=$(cpu_ticks "$pb"); k1=$(cpu_ticks "$pk")
  local hz; hz=$(getconf CLK_TCK)
  awk -v rc=$rc -v t0="$t0" -v t1="$t1" -v o=$((o1-o0)) -v i=$((i1-i0)) -v b=$((b1-b0)) -v k=$((k1-k0)) \
      -v l0="$l0" -v l1="$l1" -v sb=$((sb1-sb0)) -v st=$((st1-st0)) -v hz="$hz" -v np="$(nproc)" \
      -v la="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN{
    wall=t1-t0; lg=l1-l0; busy=sb/hz*1.0; ours=(o+i+b+k)/hz+lg; oth=busy-ours; if (oth<0) oth=0;
    printf "rc=%d\nwall_s=%.3f\ncpu_out_s=%.2f\ncpu_in_s=%.2f\ncpu_backend_s=%.2f\ncpu_loadgen_s=%.2f\n", rc, wall, o/hz, i/hz, (b+k)/hz, lg;
    printf "machine_busy_pct=%.1f\nothers_cpu_s=%.2f\nloadavg=%s\n", (st>0?100*sb/st:0), oth, la }' >"$out.meta"
  [ $rc = 0 ] || log "warning: $test for $c exited with status $rc (see $out)"
  return 0
}
