#!/usr/bin/env bash
# Call setup rate over ng: tern vs rtpengine (userspace), side by side.
#
# Each relay runs pinned to RELAY_CPU (`tern relay --workers 1`,
# `rtpengine --table=-1 --num-threads=1`); `tern load setup` runs pinned
# to GEN_CPU and sets up CALLS calls one at a time (offer, then answer,
# after WARMUP unmeasured ones), deleting them at the end (DELETE=end) or
# after each (DELETE=each). Each run is against a fresh relay. Prints the
# medians of setups/s and of the setup latency percentiles, and the ratio
# tern/rtpengine.
#
#   loadtest/compare_setup.sh
#   CALLS=500 RUNS=1 loadtest/compare_setup.sh      # quick
#
# Env: CALLS (1000), WARMUP (50), RUNS (3), DELETE (end), GEN_CPU (0),
# RELAY_CPU (1), RELAYS ("tern rtpengine"), PORT_LO (9000), NG_PORT
# (22363), OUT (results directory, target/compare-setup-<time>).
#
# Both relays get the range PORT_LO .. PORT_LO + 4 x (CALLS + WARMUP) + 63.
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS=${CALLS:-1000}
WARMUP=${WARMUP:-50}
RUNS=${RUNS:-3}
DELETE=${DELETE:-end}
GEN_CPU=${GEN_CPU:-0}
RELAY_CPU=${RELAY_CPU:-1}
RELAYS=${RELAYS:-"tern rtpengine"}
PORT_LO=${PORT_LO:-9000}
NG_PORT=${NG_PORT:-22363}
OUT=${OUT:-target/compare-setup-$(date +%Y%m%d-%H%M%S)}
# TERN=/path/to/tern measures that binary (e.g. a copy kept while others
# change the tree) instead of building target/release/tern.
if [ -z "${TERN:-}" ]; then
  TERN=target/release/tern
  cargo build --release --bin tern >&2
fi

mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
command -v rtpengine >/dev/null || RELAYS=${RELAYS//rtpengine/}
hi=$((PORT_LO + 4 * (CALLS + WARMUP) + 63))

relay_pid=""
stop_relay() {
  if [ -n "$relay_pid" ]; then
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=""
  fi
  rm -f "/dev/shm/tern-setup-$$"
}
trap stop_relay EXIT

start_relay() {
  case $1 in
    tern)
      # Warnings only, as rtpengine's --log-level=3: tern logs each call
      # at info level, which costs the relay CPU time per setup.
      RUST_LOG=warn taskset -c "$RELAY_CPU" "$TERN" relay --workers 1 --no-pin \
        --ports "$PORT_LO-$hi" --ng "127.0.0.1:$NG_PORT" --http off \
        --instance "setup-$$" --timeout 0 >"$OUT/tern.log" 2>&1 &
      ;;
    rtpengine)
      taskset -c "$RELAY_CPU" rtpengine --config-file=none --table=-1 \
        --interface=127.0.0.1 --listen-ng="127.0.0.1:$NG_PORT" --foreground \
        --num-threads=1 --port-min="$PORT_LO" --port-max="$hi" \
        --log-level=3 --log-stderr --no-log-timestamps \
        --pidfile="$OUT/rtpengine.pid" >"$OUT/rtpengine.log" 2>&1 &
      ;;
  esac
  relay_pid=$!
  sleep 1.5
  kill -0 "$relay_pid" || { echo "relay $1 did not start; see $OUT/$1.log" >&2; exit 1; }
}

for run in $(seq 1 "$RUNS"); do
  for relay in $RELAYS; do
    start_relay "$relay"
    f="$OUT/$relay-$run.json"
    echo "run $run: $relay, $CALLS calls" >&2
    if ! taskset -c "$GEN_CPU" "$TERN" load setup --ng "127.0.0.1:$NG_PORT" \
        --calls "$CALLS" --warmup "$WARMUP" --delete "$DELETE" --cpu "$GEN_CPU" \
        --relay-pid "$relay_pid" --label "$relay" --json >"$f"; then
      echo "  failed; see $f" >&2
      rm -f "$f"
    fi
    stop_relay
    sleep 0.5
  done
done

python3 - "$OUT" <<'PY'
import json, glob, os, statistics, sys
out = sys.argv[1]
res = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    relay = os.path.basename(f)[:-5].rsplit("-", 1)[0]
    res.setdefault(relay, []).append(json.load(open(f)))
def med(relay, get):
    v = [get(r) for r in res.get(relay, [])]
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else float("nan")
print(f"medians of {max((len(v) for v in res.values()), default=0)} run(s); results in {out}")
print(f"{'relay':<10} {'setups/s':>9} {'runs':>22} {'p50 us':>8} {'p99 us':>8} {'max us':>8} {'relay cpu us/setup':>18} {'deletes/s':>9} {'retrans':>7}")
for r in ["tern", "rtpengine"]:
    if r not in res:
        continue
    runs = ",".join(f"{x['setups_per_s']:.0f}" for x in res[r])
    print(f"{r:<10} {med(r, lambda x: x['setups_per_s']):>9.0f} {runs:>22} "
          f"{med(r, lambda x: x['setup_latency']['p50_us']):>8.1f} "
          f"{med(r, lambda x: x['setup_latency']['p99_us']):>8.1f} "
          f"{med(r, lambda x: x['setup_latency']['max_us']):>8.1f} "
          f"{med(r, lambda x: x['relay_cpu_ns_per_setup'] and x['relay_cpu_ns_per_setup'] / 1e3):>18.1f} "
          f"{med(r, lambda x: x['deletes_per_s']):>9.0f} "
          f"{sum(x['retransmits'] for x in res[r]):>7}")
if "tern" in res and "rtpengine" in res:
    t = med("tern", lambda x: x["setups_per_s"])
    e = med("rtpengine", lambda x: x["setups_per_s"])
    print(f"setup rate tern/rtpengine: {t / e:.2f} (target >= 3)")
PY
