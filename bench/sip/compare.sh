#!/usr/bin/env bash
# SIP calls per second and REGISTER-with-MD5 per second: tern (`tern up`,
# signaling and relay in one process) vs Kamailio 5.6 + rtpengine 10.5
# (userspace), under the same SIPp load. Not part of the test suite.
#
# - CPS: SIPp's built-in `uac` (INVITE, 100, 200, ACK, BYE; PCMU SDP
#   that each system anchors on its relay: tern rewrites it to a slot,
#   Kamailio asks rtpengine with rtpengine_manage()) against
#   bench/sip/uas.xml agents (the built-in `uas` without its 180, see
#   there) registered as b0..b(PAIRS-1). PAIRS uac/uas pairs share
#   the rate. The rate ramps through CPS_RATES, DURATION seconds per step,
#   and stops at the first step that fails twice in a row (a failed call,
#   a SIPp error, or an achieved rate under 95 % of the target); the
#   result is the highest clean step. Call setup time is SIPp's response time INVITE → 200
#   (`rtd`, -trace_rtt, 1 ms resolution); p50/p99 are over every call of
#   the step.
# - REG: bench/sip/register_auth.xml (REGISTER, 401, REGISTER with MD5
#   digest, 200) over USERS distinct users, the same ramp over REG_RATES.
#   tern gets `--config` with USERS `[[users]]`; Kamailio authenticates
#   with auth.so's pv_www_authenticate (bench/sip/kamailio.cfg).
# - GEN=tern drives the CPS ramp with `tern load sip` instead of SIPp: one
#   process, caller and callee on one thread (the callee registers b0),
#   the same load for both SUTs, with setup time INVITE -> 200 measured in
#   µs from the kernel's arrival stamps (p50/p99 printed in ms with
#   decimals). The REGISTER ramp always uses SIPp.
# - Each system under test (SUT) runs pinned to SUT_CPU (Kamailio, its
#   children and rtpengine together; tern with one worker); every SIPp to
#   SIPP_CPU, with 4 MiB socket buffers (-buff_size). rtpengine runs with
#   --delete-delay=0, so that a call's ports come back at its BYE as
#   tern's do (the default keeps them 30 s, and PORTS holds 500 calls). A fresh SUT per ramp. Per step it records the SUT's and the
#   generator's CPU use (utime+stime from /proc), so a step limited by the
#   generator (SIPp near 100 % of its CPU) is told from one limited by the
#   SUT.
#
#   bench/sip/compare.sh
#   RUNS=3 bench/sip/compare.sh                 # medians of 3
#   SUTS=tern CPS_RATES="100 200" REG_RATES="100" DURATION=3 bench/sip/compare.sh
#
# Env: SUTS ("tern kamailio"), RUNS (1), DURATION (10 s per step),
# CPS_RATES, REG_RATES (calls or registrations per second, ascending),
# PAIRS (2 SIPp processes per step), USERS (1000), SIP_PORT (15650),
# NG_PORT (22358), PORTS (28000-29999: relay ports), SIPP_CPU (0),
# SUT_CPU (1), TERN (target/release/tern, built if missing), HTTP_PORT
# (18088: tern's HTTP API in the REGISTER ramp, read after each step for
# the registrations held, the `held` column; "-" for Kamailio),
# OUT (target/sip-compare-<time>), GEN (sipp, or tern: see above),
# PREFILL (0; 1: before the REGISTER ramp, every one of the USERS is
# registered once at PREFILL_RATE/s (4000), unmeasured, so the ramp runs
# with USERS registrations held, e.g. USERS=100000).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

SUTS=${SUTS:-"tern kamailio"}
RUNS=${RUNS:-1}
DURATION=${DURATION:-10}
CPS_RATES=${CPS_RATES:-"100 200 300 400 500 600 800 1000 1200 1500 2000 2500 3000"}
REG_RATES=${REG_RATES:-"200 400 800 1200 1600 2000 2500 3000 4000 5000 6000 8000"}
PAIRS=${PAIRS:-2}
USERS=${USERS:-1000}
SIP_PORT=${SIP_PORT:-15650}
NG_PORT=${NG_PORT:-22358}
PORTS=${PORTS:-28000-29999}
SIPP_CPU=${SIPP_CPU:-0}
SUT_CPU=${SUT_CPU:-1}
TERN=${TERN:-target/release/tern}
OUT=${OUT:-target/sip-compare-$(date +%Y%m%d-%H%M%S)}
GEN=${GEN:-sipp}
PREFILL=${PREFILL:-0}
PREFILL_RATE=${PREFILL_RATE:-4000}
HERE=bench/sip
TICK=$(getconf CLK_TCK)
HTTP_PORT=${HTTP_PORT:-18088}
held_url=""   # tern's /metrics in the REGISTER ramp

[ -x "$TERN" ] || cargo build --release --bin tern >&2
TERN=$(cd "$(dirname "$TERN")" && pwd)/$(basename "$TERN")   # steps run in their own directories
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Users: the TOML for tern, the SIPp injection file (user; the
# [authentication] keyword SIPp expands from a field).
{
  for i in $(seq 0 $((USERS - 1))); do
    printf '[[users]]\nname = "u%d"\npassword = "secret"\n' "$i"
  done
  for i in $(seq 0 $((PAIRS - 1))); do
    printf '[[users]]\nname = "b%d"\npassword = "secret"\n' "$i"
  done
} >"$OUT/users.toml"
for p in $(seq 0 $((PAIRS - 1))); do
  {
    echo SEQUENTIAL
    for i in $(seq "$p" "$PAIRS" $((USERS - 1))); do
      echo "u$i;[authentication username=u$i password=secret]"
    done
  } >"$OUT/users-$p.csv"
done

sut_pids=()   # processes whose CPU is the SUT's
uas_pids=()   # the SIPp callees (their CPU is the generator's)
kam_pid=""    # Kamailio's main process (its workers are its children)
bg_pids=()    # everything started in the background, stopped by PID
cleanup() {
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  bg_pids=()
  sut_pids=()
  uas_pids=()
  kam_pid=""
  rm -f "/dev/shm/tern-t-h6-bench-$$"
}
trap cleanup EXIT

# cpu_ticks PID...: utime+stime of the processes (all their threads).
cpu_ticks() {
  local t=0 p v
  for p in "$@"; do
    # A process may end between the listing and the read.
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# udp_drops PORT...: datagrams dropped (full receive buffer) on the UDP
# sockets bound to these loopback ports (/proc/net/udp, last column).
udp_drops() {
  local want
  want=$(printf '%04X|' "$@")
  awk -v want="|${want}" 'NR > 1 { split($2, a, ":"); if (index(want, "|" a[2] "|")) d += $NF } END { print d + 0 }' /proc/net/udp
}

# wait_sip: until the SUT answers an OPTIONS (bounded: 10 s).
wait_sip() {
  python3 - "$SIP_PORT" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
msg = ("OPTIONS sip:ping@127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKping\r\n"
       "From: <sip:ping@127.0.0.1>;tag=p\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: ping-%d\r\n"
       "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
s.bind(("127.0.0.1", 0))
for i in range(50):
    s.sendto((msg % (port, s.getsockname()[1], i)).encode(), ("127.0.0.1", port))
    try:
        s.recv(4096)
        sys.exit(0)
    except socket.timeout:
        time.sleep(0.2)
sys.exit(1)
PY
}

# start_sut NAME KIND: KIND cps (tern without users) or reg (with users).
start_sut() {
  local name=$1 kind=$2 log="$OUT/$1-$2-$run.log"
  case $name in
    tern)
      local args=(up --sip "127.0.0.1:$SIP_PORT" --ports "$PORTS" --workers 1
                  --no-pin --instance "t-h6-bench-$$" --ng "127.0.0.1:$NG_PORT")
      held_url=""
      if "$TERN" up --help 2>/dev/null | grep -q -- '--http'; then
        if [ "$kind" = reg ]; then
          # The registrations held are read from /metrics after each step.
          args+=(--http "127.0.0.1:$HTTP_PORT")
          held_url="http://127.0.0.1:$HTTP_PORT/metrics"
        else
          # No HTTP API: nothing beside SIP and media.
          args+=(--http off)
        fi
      fi
      [ "$kind" = reg ] && args+=(--config "$OUT/users.toml")
      RUST_LOG=warn taskset -c "$SUT_CPU" "$TERN" "${args[@]}" >"$log" 2>&1 &
      bg_pids+=($!)
      sut_pids=($!)
      ;;
    kamailio)
      held_url=""
      local lo=${PORTS%-*} hi=${PORTS#*-} kdir="$OUT/kamailio-$kind-$run"
      mkdir -p "$kdir"
      taskset -c "$SUT_CPU" rtpengine --config-file=none --table=-1 \
        --interface=127.0.0.1 --listen-ng="127.0.0.1:$NG_PORT" --foreground \
        --port-min="$lo" --port-max="$hi" --delete-delay=0 \
        --log-level=3 --log-stderr \
        --no-log-timestamps >"$OUT/rtpengine-$kind-$run.log" 2>&1 &
      bg_pids+=($!)
      local rpid=$!
      sleep 1
      taskset -c "$SUT_CPU" kamailio -DD -E -f "$HERE/kamailio.cfg" \
        -l "udp:127.0.0.1:$SIP_PORT" -A "NG_SOCK=\"udp:127.0.0.1:$NG_PORT\"" \
        -m 256 -M 16 -w "$kdir" -Y "$kdir" -P "$kdir/pid" >"$log" 2>&1 &
      bg_pids+=($!)
      local kpid=$!
      sleep 1
      kam_pid=$kpid
      sut_pids=($kpid $rpid)
      ;;
  esac
  wait_sip || { echo "$name did not answer OPTIONS; see $log" >&2; exit 1; }
}

stop_sut() {
  cleanup
  sleep 1
}

# start_uas: PAIRS built-in uas agents registered as b0.. (digest answered
# when challenged).
start_uas() {
  local i
  for i in $(seq 0 $((PAIRS - 1))); do
    (cd "$OUT" && exec taskset -c "$SIPP_CPU" sipp -sf "$ROOT/$HERE/uas.xml" -i 127.0.0.1 \
      -p $((15700 + i)) -buff_size 4194304 -nostdin >/dev/null 2>&1) &
    bg_pids+=($!)
    uas_pids+=($!)
    (cd "$OUT" && taskset -c "$SIPP_CPU" timeout 20 sipp "127.0.0.1:$SIP_PORT" \
      -sf "$ROOT/tests/sipp/register.xml" -s "b$i" -key contact "127.0.0.1:$((15700 + i))" \
      -au "b$i" -ap secret -i 127.0.0.1 -p $((15740 + i)) -m 1 -nostdin \
      -timeout 15s -timeout_error >/dev/null 2>&1) ||
      { echo "registering b$i failed" >&2; exit 1; }
  done
}

# step KIND RATE DIR: PAIRS SIPp processes sharing RATE for DURATION s;
# prints "achieved/s failed rc p50_ms p99_ms sut_cpu% gen_cpu% calls
# sut_cpu_ms_per_call sut_drops gen_drops held" (CPU % of one CPU over the
# step's wall time; drops: datagrams lost to full receive buffers on the
# SUT's SIP socket and on the SIPp sockets; held: registration bindings
# in tern's registrar after the step, "-" where not known).
step() {
  local kind=$1 rate=$2 dir=$3 i pids=() per=$(( ($2 + PAIRS - 1) / PAIRS ))
  local calls=$((per * DURATION))
  mkdir -p "$dir"
  local sut0 uas0 t0 t1
  if [ -n "$kam_pid" ]; then
    # Kamailio's workers are children of its main process.
    sut_pids=($kam_pid $(ps -o pid= --ppid "$kam_pid") "${sut_pids[-1]}")
  fi
  sut0=$(cpu_ticks "${sut_pids[@]}")
  uas0=$(cpu_ticks "${uas_pids[@]}")
  local drop0 gdrop0 gports=()
  for i in $(seq 0 $((PAIRS - 1))); do gports+=($((15700 + i)) $((15760 + i))); done
  drop0=$(udp_drops "$SIP_PORT")
  gdrop0=$(udp_drops "${gports[@]}")
  t0=$(date +%s.%N)
  if [ "$kind" = cps ] && [ "$GEN" = tern ]; then
    (cd "$dir" && exec taskset -c "$SIPP_CPU" timeout $((DURATION + 60)) "$TERN" load sip \
      --sip "127.0.0.1:$SIP_PORT" --user b0 --password secret --port 15760 \
      --cps "$rate" --duration "$DURATION" --timeout-ms 10000 --json \
      >"$dir/load.json" 2>"$dir/load.err") &
    pids+=($!)
  fi
  for i in $(seq 0 $((PAIRS - 1))); do
    if [ "$kind" = cps ] && [ "$GEN" = tern ]; then
      break
    elif [ "$kind" = cps ]; then
      (cd "$dir" && exec taskset -c "$SIPP_CPU" timeout $((DURATION + 60)) sipp \
        "127.0.0.1:$SIP_PORT" -sn uac -s "b$i" -i 127.0.0.1 -p $((15760 + i)) \
        -r "$per" -m "$calls" -l $((per * 10 + 100)) -buff_size 4194304 -nostdin -trace_err \
        -trace_rtt -rtt_freq "$per" -trace_screen -recv_timeout 10000 \
        -timeout $((DURATION + 50))s -timeout_error >/dev/null 2>&1) &
    else
      (cd "$dir" && exec taskset -c "$SIPP_CPU" timeout $((DURATION + 60)) sipp \
        "127.0.0.1:$SIP_PORT" -sf "$ROOT/$HERE/register_auth.xml" \
        -inf "$OUT/users-$i.csv" -i 127.0.0.1 -p $((15760 + i)) \
        -r "$per" -m "$calls" -l $((per * 10 + 100)) -buff_size 4194304 -nostdin -trace_err \
        -trace_rtt -rtt_freq "$per" -trace_screen -recv_timeout 10000 \
        -timeout $((DURATION + 50))s -timeout_error >/dev/null 2>&1) &
    fi
    pids+=($!)
  done
  # The generator's CPU: every sipp child of the subshells above.
  sleep 0.5
  local gpids=()
  for i in "${pids[@]}"; do gpids+=($(ps -o pid= --ppid "$i") $i); done
  local gen_t=0 g
  local rc=0
  # Sample the generator CPU until the SIPp processes end.
  while :; do
    g=$(cpu_ticks "${gpids[@]}" $(for p in "${gpids[@]}"; do ps -o pid= --ppid "$p"; done))
    [ "$g" -gt "$gen_t" ] && gen_t=$g
    local alive=0
    for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for i in "${pids[@]}"; do wait "$i" || rc=$?; done
  t1=$(date +%s.%N)
  local sut1
  sut1=$(cpu_ticks "${sut_pids[@]}")
  gen_t=$((gen_t + $(cpu_ticks "${uas_pids[@]}") - uas0))
  local drops gdrops
  drops=$(( $(udp_drops "$SIP_PORT") - drop0 ))
  gdrops=$(( $(udp_drops "${gports[@]}") - gdrop0 ))
  local held=-
  if [ "$kind" = reg ] && [ -n "$held_url" ]; then
    held=$(curl -s --max-time 5 "$held_url" | awk '$1 == "tern_registrations" { print $2 }')
    held=${held:--}
  fi
  python3 - "$dir" "$t0" "$t1" "$((sut1 - sut0))" "$gen_t" "$TICK" "$rc" "$drops" "$gdrops" "$held" <<'PY'
import glob, os, re, sys
d, t0, t1, sut, gen, tick, rc, drops, gdrops, held = sys.argv[1:]
wall = float(t1) - float(t0)
ok = failed = 0
rate = 0.0
for f in glob.glob(os.path.join(d, "*_screen.log")):
    txt = open(f, errors="replace").read()
    m = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", txt)
    n = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", txt)
    c = re.findall(r"Call Rate\s*\|\s*[\d.]+ cps\s*\|\s*([\d.]+) cps", txt)
    ok += int(m[-1]) if m else 0
    failed += int(n[-1]) if n else 0
    # SIPp's own cumulative rate: calls created over its elapsed time.
    rate += float(c[-1]) if c else 0.0
rtt = []
for f in glob.glob(os.path.join(d, "*_rtt.csv")):
    for line in open(f):
        p = line.strip().split(";")
        if len(p) == 3 and p[0] != "Date_ms":
            rtt.append(float(p[1]))
rtt.sort()
q = lambda x: rtt[min(len(rtt) - 1, int(x * len(rtt)))] if rtt else -1
lj = os.path.join(d, "load.json")
if os.path.exists(lj):
    # tern load sip: its own counts and µs percentiles.
    import json
    try:
        j = json.load(open(lj))
        ok, failed, rate = j["completed"], j["failed"], j["achieved_cps"]
        p50, p99 = j["setup_latency"]["p50_us"] / 1000, j["setup_latency"]["p99_us"] / 1000
        q = lambda x: round(p50 if x == 0.5 else p99, 2)
    except (ValueError, KeyError):
        ok, failed, rate = 0, 1, 0.0
print(f"{rate:.1f} {failed} {rc} {q(0.5):g} {q(0.99):g} "
      f"{100 * int(sut) / int(tick) / wall:.0f} {100 * int(gen) / int(tick) / wall:.0f} {ok} "
      f"{1000 * int(sut) / int(tick) / max(ok, 1):.3f} {drops} {gdrops} {held}")
PY
}

# prefill: every user registers once (PAIRS SIPp processes sharing
# PREFILL_RATE), unmeasured; bounded by its own timeout.
prefill() {
  local i pids=() per=$(( (PREFILL_RATE + PAIRS - 1) / PAIRS )) n rc=0
  mkdir -p "$OUT/prefill-$run"
  for i in $(seq 0 $((PAIRS - 1))); do
    n=$(( $(wc -l <"$OUT/users-$i.csv") - 1 ))
    (cd "$OUT/prefill-$run" && exec taskset -c "$SIPP_CPU" timeout $((n / per + 120)) sipp \
      "127.0.0.1:$SIP_PORT" -sf "$ROOT/$HERE/register_auth.xml" \
      -inf "$OUT/users-$i.csv" -i 127.0.0.1 -p $((15760 + i)) \
      -r "$per" -m "$n" -l $((per * 10 + 100)) -buff_size 4194304 -nostdin \
      -recv_timeout 10000 -timeout $((n / per + 100))s -timeout_error >/dev/null 2>&1) &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || rc=$?; done
  echo "run $run: prefill of $USERS registrations: rc $rc" >&2
}

# ramp SUT KIND RATES: one fresh SUT, rates ascending until the first
# failing step; results appended to $OUT/results.tsv.
ramp() {
  local sut=$1 kind=$2 rates=$3 r
  start_sut "$sut" "$kind"
  if [ "$kind" = cps ] && [ "$GEN" != tern ]; then start_uas; fi
  if [ "$kind" = reg ] && [ "$PREFILL" = 1 ]; then prefill; fi
  for r in $rates; do
    local res pass try
    # A failed step is tried once more: other work on this shared machine
    # can stall either side for a moment; a second failure ends the ramp.
    for try in 1 2; do
      res=$(step "$kind" "$r" "$OUT/$sut-$kind-$run-$r-$try")
      # shellcheck disable=SC2086
      set -- $res
      pass=$(python3 -c "print(int($2 == 0 and $3 == 0 and $1 >= 0.95 * $r))")
      printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$sut" "$kind" "$r" "$res $pass" >>"$OUT/results.tsv"
      echo "run $run $sut $kind target $r/s try $try: achieved $1/s failed $2 rc $3 p50 $4 ms p99 $5 ms sut_cpu $6% ($9 ms/call) gen_cpu $7% drops sut ${10} gen ${11} held ${12} pass $pass" >&2
      [ "$pass" = 1 ] && break
    done
    [ "$pass" = 1 ] || break
  done
  stop_sut
}

printf 'run\tsut\tkind\ttarget\tachieved failed rc p50_ms p99_ms sut_cpu%% gen_cpu%% calls sut_ms_per_call sut_drops gen_drops held pass\n' >"$OUT/results.tsv"
for run in $(seq 1 "$RUNS"); do
  for sut in $SUTS; do
    ramp "$sut" cps "$CPS_RATES"
    ramp "$sut" reg "$REG_RATES"
  done
done

python3 - "$OUT/results.tsv" <<'PY'
# Markdown summary: per SUT and load, the highest clean step of each run
# and their median, with the median p99 setup time and SUT CPU per call
# at that step, and the median p99 at every rate both SUTs passed in
# every run.
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
passed = {}   # (sut, kind, run, target) -> fields of the passing try
runs = sorted({r[0] for r in rows})
for run, sut, kind, target, rest in rows:
    v = rest.split()
    if v[-1] == "1":
        passed[(sut, kind, run, int(target))] = v
suts = sorted({k[0] for k in passed})
med = statistics.median
print("| SUT | load | max clean rate per run | median | p99 setup ms at max (median) | SUT CPU % at max | SUT CPU ms per call at max |")
print("|---|---|---|---|---|---|---|")
for kind in ("cps", "reg"):
    for sut in suts:
        best = []
        for run in runs:
            t = [k[3] for k in passed if k[:3] == (sut, kind, run)]
            if t:
                best.append((max(t), passed[(sut, kind, run, max(t))]))
        if not best:
            continue
        print(f"| {sut} | {kind} | {', '.join(str(b[0]) for b in best)} | {med(b[0] for b in best):g} "
              f"| {med(float(b[1][4]) for b in best):g} | {med(float(b[1][5]) for b in best):g} "
              f"| {med(float(b[1][8]) for b in best):.3f} |")
print()
print("| load | rate/s | " + " | ".join(f"{s} p99 ms, CPU ms/call" for s in suts) + " |")
print("|---|---|" + "---|" * len(suts))
for kind in ("cps", "reg"):
    rates = sorted({k[3] for k in passed if k[1] == kind})
    for r in rates:
        cells = []
        for sut in suts:
            v = [passed.get((sut, kind, run, r)) for run in runs]
            if any(x is None for x in v):
                break
            cells.append(f"{med(float(x[4]) for x in v):g}, {med(float(x[8]) for x in v):.3f}")
        if len(cells) == len(suts):
            print(f"| {kind} | {r} | " + " | ".join(cells) + " |")
PY
echo "results: $OUT/results.tsv" >&2
