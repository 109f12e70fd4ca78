#!/usr/bin/env bash
# Side-by-side RTP forwarding: tern vs rtpengine (userspace) vs the floor.
#
# Each relay runs pinned to RELAY_CPU with one worker; the generator
# (`tern load rtp`) runs pinned to GEN_CPU. For each call count and relay,
# two runs, each against a fresh relay: one at the nominal rate (calls x
# 50 pps: G.711, 20 ms) gives CPU per packet and latency at nominal load;
# one with --find-max from START_PPS gives the highest rate with loss
# under 0.1 % and p99 latency under 20 ms (ramping up by 25 %, stopping at
# the first failure). With RUNS > 1 the medians are printed; "limit" says
# what ended the search (relay, or the generator could not send faster).
#
#   loadtest/compare.sh
#   CALLS="100 1000" DURATION=1 RUNS=1 loadtest/compare.sh   # quick
#
# Env: CALLS ("100 1000 5000"), DURATION (seconds per trial, 2), RUNS (3),
# START_PPS (20000: where --find-max starts),
# GEN_CPU (0), RELAY_CPU (1), RELAYS ("tern rtpengine floor"),
# PORT_LO (9000), OUT (results directory, target/compare-<time>),
# FIRST_RUN (1: number of the first run, to add runs to an OUT directory),
# PPS (unset: the fixed-rate trial runs at calls x 50 pps; set, e.g.
# 100000, at that rate instead), FIND_MAX (1; 0 skips the --find-max run).
#
# A relay needs a socket per port (four per call): a call count that does
# not fit the open-files hard limit (ulimit -Hn) is lowered to one that
# does, with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS=${CALLS:-"100 1000 5000"}
DURATION=${DURATION:-2}
RUNS=${RUNS:-3}
FIRST_RUN=${FIRST_RUN:-1}
GEN_CPU=${GEN_CPU:-0}
RELAY_CPU=${RELAY_CPU:-1}
RELAYS=${RELAYS:-"tern rtpengine floor"}
PORT_LO=${PORT_LO:-9000}
NG_PORT=${NG_PORT:-23391}
START_PPS=${START_PPS:-20000}
PPS=${PPS:-}
FIND_MAX=${FIND_MAX:-1}
OUT=${OUT:-target/compare-$(date +%Y%m%d-%H%M%S)}
# TERN=/path/to/tern measures that binary (e.g. a copy kept while others
# change the tree) instead of building target/release/tern.
if [ -z "${TERN:-}" ]; then
  TERN=target/release/tern
  cargo build --release --bin tern >&2
fi

mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
command -v rtpengine >/dev/null || RELAYS=${RELAYS//rtpengine/}
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ]; then
  fit=$(( (hard - 320) / 4 / 100 * 100 ))
  capped=""
  for c in $CALLS; do
    if [ "$c" -gt "$fit" ]; then
      echo "warning: $c calls need $((4 * c + 320)) descriptors; the hard limit is $hard: measuring $fit calls" >&2
      c=$fit
    fi
    capped="$capped $c"
  done
  CALLS=$capped
fi

# start_relay, stop_relay
. loadtest/relay_fns.sh
trap stop_relay EXIT

# measure RELAY CALLS RUN KIND: one `tern load rtp` against a fresh relay.
# KIND nominal: calls x 50 pps for DURATION; KIND max: --find-max from
# START_PPS up (a fresh relay, since an overloaded rtpengine keeps
# discarding for a while).
measure() {
  local relay=$1 calls=$2 run=$3 kind=$4
  local args=(load rtp --calls "$calls" --duration "$DURATION" --json
              --cpu "$GEN_CPU" --label "$relay")
  [ "$kind" = max ] && args+=(--find-max --pps "$START_PPS")
  if [ "$kind" = nominal ] && [ -n "$PPS" ]; then args+=(--pps "$PPS"); fi
  if [ "$relay" = floor ]; then
    args+=(--floor --floor-cpu "$RELAY_CPU")
  else
    start_relay "$relay" "$calls"
    args+=(--ng "127.0.0.1:$NG_PORT" --relay-pid "$relay_pid")
  fi
  local f="$OUT/$relay-$calls-$run-$kind.json"
  echo "run $run: $relay, $calls calls, $kind" >&2
  if ! taskset -c "$GEN_CPU" "$TERN" "${args[@]}" >"$f"; then
    echo "  failed; see $f" >&2
    rm -f "$f"
  fi
  stop_relay
  sleep 0.5
}

for run in $(seq "$FIRST_RUN" $((FIRST_RUN + RUNS - 1))); do
  for calls in $CALLS; do
    for relay in $RELAYS; do
      measure "$relay" "$calls" "$run" nominal
      if [ "$FIND_MAX" = 1 ]; then measure "$relay" "$calls" "$run" max; fi
    done
  done
done

python3 - "$OUT" <<'PY'
import json, glob, os, statistics, sys
out = sys.argv[1]
res = {}
for f in glob.glob(os.path.join(out, "*-nominal.json")):
    relay, calls, run, _ = os.path.basename(f)[:-5].rsplit("-", 3)
    first = json.load(open(f))["runs"][0]
    fm = f[:-len("nominal.json")] + "max.json"
    d = json.load(open(fm)) if os.path.exists(fm) else {"runs": [], "max_pps": None}
    ok = [r for r in d["runs"] if r["loss_ratio"] < 0.001 and r["sent"] > 0
          and r["latency"]["p99_us"] < 20000]
    best = max(ok, key=lambda r: r["forwarded_pps"]) if ok else {}
    res.setdefault((relay, int(calls)), []).append({
        "nominal_pps": first["forwarded_pps"],
        "loss_nominal": first["loss_ratio"],
        "cpu_ns": first["relay_cpu_ns_per_pkt"] or float("nan"),
        "p50": first["latency"]["p50_us"],
        "p99": first["latency"]["p99_us"],
        "p999": first["latency"]["p999_us"],
        "max_pps": d["max_pps"] or 0.0,
        "cpu_ns_max": best.get("relay_cpu_ns_per_pkt") or float("nan"),
        "gen": max([r["gen_cpu_util"] for r in d["runs"]] + [first["gen_cpu_util"]]),
        "limit": d.get("max_limited_by") or "?",
    })
def med(relay, calls, k):
    v = [r[k] for r in res.get((relay, calls), [])]
    return statistics.median(v) if v else float("nan")
calls_all = sorted({c for _, c in res})
relays = [r for r in ["tern", "rtpengine", "floor"] if any(k[0] == r for k in res)]
print(f"medians of {max((len(v) for v in res.values()), default=0)} run(s); results in {out}")
print(f"{'relay':<10} {'calls':>6} {'nominal pps':>11} {'loss%':>7} {'cpu ns/pkt':>10} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'max pps':>10} {'ns/pkt@max':>10} {'gen cpu':>7}  limit")
for c in calls_all:
    for r in relays:
        print(f"{r:<10} {c:>6} {med(r,c,'nominal_pps'):>11.0f} {med(r,c,'loss_nominal')*100:>7.3f} {med(r,c,'cpu_ns'):>10.0f} {med(r,c,'p50'):>8.1f} {med(r,c,'p99'):>8.1f} {med(r,c,'p999'):>9.1f} {med(r,c,'max_pps'):>10.0f} {med(r,c,'cpu_ns_max'):>10.0f} {med(r,c,'gen')*100:>6.0f}%  {','.join(sorted({x['limit'] for x in res[(r,c)]}))}")
print()
print("ratios (max pps: higher is better for tern; cpu/pkt at max rate: lower is better for tern)")
for c in calls_all:
    line = f"{c:>6} calls:"
    for peer in ["rtpengine", "floor"]:
        if (peer, c) in res and ("tern", c) in res:
            line += f"  max pps tern/{peer} {med('tern',c,'max_pps')/max(med(peer,c,'max_pps'),1):.2f}"
            line += f"  cpu/pkt@max tern/{peer} {med('tern',c,'cpu_ns_max')/med(peer,c,'cpu_ns_max'):.2f}"
    print(line)
print("ratios at the fixed rate (cpu/pkt and p99: lower is better for tern)")
for c in calls_all:
    line = f"{c:>6} calls:"
    for peer in ["rtpengine", "floor"]:
        if (peer, c) in res and ("tern", c) in res:
            line += f"  cpu/pkt tern/{peer} {med('tern',c,'cpu_ns')/med(peer,c,'cpu_ns'):.2f}"
            line += f"  p99 tern/{peer} {med('tern',c,'p99')/med(peer,c,'p99'):.2f}"
    print(line)
PY
