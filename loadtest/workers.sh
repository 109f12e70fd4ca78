#!/usr/bin/env bash
# Multi-core: the highest lossless rate of `tern relay --workers W` for
# each W in WORKERS, and the ratio to one worker.
#
# One worker runs pinned to RELAY_CPU (`taskset`, `--no-pin`), as in
# compare.sh. W > 1 workers pin themselves (worker i on CPU i mod
# nproc). `tern load rtp --find-max` runs pinned to GEN_CPU: on a machine
# with W or fewer CPUs it shares a CPU with a worker, and the ratio says
# as much about the generator as about tern (the script prints nproc).
# Each run is against a fresh relay; RUNS runs; medians.
#
#   loadtest/workers.sh
#   WORKERS="1 2 4 8" GEN_CPU=15 loadtest/workers.sh    # on a bigger machine
#
# Env: WORKERS ("1 2"), CALLS (1000), DURATION (1, per trial), RUNS (3),
# START_PPS (20000), MAX_P99_MS (20: --max-p99-ms, the p99 latency a
# trial may have; large values leave loss alone as the criterion),
# GEN_CPU (0), RELAY_CPU (1), PORT_LO (9000),
# NG_PORT (22367), OUT (results directory, target/workers-<time>).
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERS=${WORKERS:-"1 2"}
CALLS=${CALLS:-1000}
DURATION=${DURATION:-1}
RUNS=${RUNS:-3}
START_PPS=${START_PPS:-20000}
MAX_P99_MS=${MAX_P99_MS:-20}
GEN_CPU=${GEN_CPU:-0}
RELAY_CPU=${RELAY_CPU:-1}
PORT_LO=${PORT_LO:-9000}
NG_PORT=${NG_PORT:-22367}
OUT=${OUT:-target/workers-$(date +%Y%m%d-%H%M%S)}
# TERN=/path/to/tern measures that binary (e.g. a copy kept while others
# change the tree) instead of building target/release/tern.
if [ -z "${TERN:-}" ]; then
  TERN=target/release/tern
  cargo build --release --bin tern >&2
fi
hi=$((PORT_LO + 4 * CALLS + 63))
inst="workers-$$"

mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "nproc $(nproc); generator on CPU $GEN_CPU; ports $PORT_LO-$hi" >&2

relay_pid=""
stop_relay() {
  if [ -n "$relay_pid" ]; then
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=""
  fi
  rm -f "/dev/shm/tern-$inst"
}
trap stop_relay EXIT

for run in $(seq 1 "$RUNS"); do
  for w in $WORKERS; do
    args=(relay --workers "$w" --ports "$PORT_LO-$hi" --ng "127.0.0.1:$NG_PORT"
          --http off --instance "$inst" --timeout 0)
    if [ "$w" = 1 ]; then
      RUST_LOG=warn taskset -c "$RELAY_CPU" "$TERN" "${args[@]}" --no-pin \
        >"$OUT/tern-$w-$run.log" 2>&1 &
    else
      RUST_LOG=warn "$TERN" "${args[@]}" >"$OUT/tern-$w-$run.log" 2>&1 &
    fi
    relay_pid=$!
    sleep 1.5
    kill -0 "$relay_pid" || { echo "tern relay did not start; see $OUT/tern-$w-$run.log" >&2; exit 1; }
    echo "run $run: $w worker(s), $CALLS calls, --find-max from $START_PPS pps" >&2
    if ! taskset -c "$GEN_CPU" "$TERN" load rtp --ng "127.0.0.1:$NG_PORT" \
        --calls "$CALLS" --duration "$DURATION" --find-max --pps "$START_PPS" --max-p99-ms "$MAX_P99_MS" \
        --cpu "$GEN_CPU" --relay-pid "$relay_pid" --label "tern-w$w" --json \
        >"$OUT/w$w-$run.json"; then
      echo "  failed; see $OUT/w$w-$run.json" >&2
      rm -f "$OUT/w$w-$run.json"
    fi
    stop_relay
    sleep 0.5
  done
done

python3 - "$OUT" "$MAX_P99_MS" <<'PY'
import json, glob, os, statistics, sys
out, max_p99_us = sys.argv[1], float(sys.argv[2]) * 1000
res = {}
for f in sorted(glob.glob(os.path.join(out, "w*.json"))):
    w = int(os.path.basename(f)[1:].split("-")[0])
    d = json.load(open(f))
    ok = [r for r in d["runs"] if r["loss_ratio"] < 0.001 and r["sent"] > 0
          and r["latency"]["p99_us"] < max_p99_us]
    best = max(ok, key=lambda r: r["forwarded_pps"]) if ok else {}
    res.setdefault(w, []).append({
        "max": d["max_pps"] or 0.0, "limit": d.get("max_limited_by") or "?",
        "relay_cpu": best.get("relay_cpu_util") or float("nan"),
        "ns": best.get("relay_cpu_ns_per_pkt") or float("nan"),
        "gen": best.get("gen_cpu_util") or float("nan"),
    })
med = lambda w, k: statistics.median(x[k] for x in res[w])
print(f"medians of {max(len(v) for v in res.values())} run(s); results in {out}")
print(f"{'workers':>7} {'max pps':>9} {'runs':>24} {'relay cpu@max':>13} {'ns/pkt@max':>10} {'gen cpu@max':>11}  limit")
for w in sorted(res):
    runs = ",".join(f"{x['max']/1e3:.0f}k" for x in res[w])
    print(f"{w:>7} {med(w,'max'):>9.0f} {runs:>24} {med(w,'relay_cpu')*100:>12.0f}% {med(w,'ns'):>10.0f} {med(w,'gen')*100:>10.0f}%  "
          + ",".join(sorted({x['limit'] for x in res[w]})))
if 1 in res:
    for w in sorted(res):
        if w != 1:
            print(f"max pps {w} workers / 1 worker: {med(w,'max') / max(med(1,'max'), 1):.2f}")
PY
