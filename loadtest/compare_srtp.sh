#!/usr/bin/env bash
# RTP↔SRTP bridging: tern vs rtpengine (userspace), in one run, with a
# plain RTP↔RTP run of both for reference.
#
# Every call streams both ways (`tern load rtp --both-ways`): the caller
# (A) sends plain RTP, the callee (B) sends back. In mode `srtp` the offer
# asks for `transport-protocol: RTP/SAVP` with SDES restricted to SUITE
# and the callee answers RTP/SAVP with a key of its own (`--srtp SUITE`):
# the relay encrypts A→B and decrypts B→A; call 0's first packets each
# way are checked (A→B must authenticate under the key the relay offered,
# B→A must arrive plain with the payload sent), and a failed check fails
# the run loudly. In mode `plain` both legs are RTP/AVP. In mode `pcma`
# (issue 14) the offer asks for `codec: {transcode: [PCMA]}` and the
# callee answers PCMA alone: the relay transcodes PCMU→PCMA A→B and
# PCMA→PCMU B→A (`tern load rtp --transcode PCMA`; packets counted by the
# relay port they come from, no latency). In mode `opus` the caller
# offers Opus with `transcode: [PCMU]` and the callee answers PCMU: the
# relay decodes Opus A→B and encodes it B→A (`--transcode OPUS`).
#
# Each relay runs pinned to RELAY_CPU with one worker (`tern relay
# --workers 1`, `rtpengine --table=-1 --num-threads=1`); the generator is
# pinned to GEN_CPU. Every measurement is against a fresh relay; runs
# interleave relays and modes (run 1: tern srtp, rtpengine srtp, tern
# plain, rtpengine plain; run 2: ...). Prints the medians and the ratios
# tern/rtpengine of the relay's own CPU per forwarded packet (all its
# threads, /proc/PID/task/*/schedstat) and of the system-wide CPU per
# forwarded packet (Δ(user + system + irq + softirq) over all CPUs from
# /proc/stat: relay, generator and kernel, and anything else running).
#
#   loadtest/compare_srtp.sh
#   CALLS=1000 PPS=50000 RUNS=3 DURATION=5 loadtest/compare_srtp.sh
#
# Env: CALLS (1000), PPS (100000: total over both directions, i.e.
# CALLS x 50 pps each way at 1,000 calls), DURATION (seconds, 5), RUNS
# (3), SUITE (AES_CM_128_HMAC_SHA1_80), MODES ("srtp plain"), RELAYS
# ("tern rtpengine"), GEN_CPU (0), RELAY_CPU (1), PORT_LO (9000), NG_PORT
# (23393), OUT (results directory, target/compare-srtp-<time>), TERN
# (a tern binary; else target/release/tern, built).
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS=${CALLS:-1000}
PPS=${PPS:-100000}
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
SUITE=${SUITE:-AES_CM_128_HMAC_SHA1_80}
MODES=${MODES:-"srtp plain"}
RELAYS=${RELAYS:-"tern rtpengine"}
GEN_CPU=${GEN_CPU:-0}
RELAY_CPU=${RELAY_CPU:-1}
PORT_LO=${PORT_LO:-9000}
NG_PORT=${NG_PORT:-23393}
OUT=${OUT:-target/compare-srtp-$(date +%Y%m%d-%H%M%S)}
# As rtpengine's --log-level=3.
TERN_RUST_LOG=${TERN_RUST_LOG:-warn}
if [ -z "${TERN:-}" ]; then
  TERN=target/release/tern
  cargo build --release --bin tern >&2
fi

mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
command -v rtpengine >/dev/null || { echo "warning: no rtpengine: measuring tern only" >&2; RELAYS=${RELAYS//rtpengine/}; }

# start_relay, stop_relay
. loadtest/relay_fns.sh
trap stop_relay EXIT

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs"
  echo "kernel: $(uname -r)"
  echo "rtpengine: $(rtpengine --version 2>&1 | head -1 || true)"
  echo "env: CALLS=$CALLS PPS=$PPS DURATION=$DURATION RUNS=$RUNS SUITE=$SUITE MODES='$MODES' RELAYS='$RELAYS' GEN_CPU=$GEN_CPU RELAY_CPU=$RELAY_CPU"
} >"$OUT/machine.txt"

failed=0
# measure RELAY MODE RUN: one `tern load rtp` against a fresh relay.
measure() {
  local relay=$1 mode=$2 run=$3
  local args=(load rtp --calls "$CALLS" --pps "$PPS" --duration "$DURATION" --json
              --cpu "$GEN_CPU" --label "$relay" --ng "127.0.0.1:$NG_PORT")
  case $mode in
    srtp) args+=(--srtp "$SUITE") ;;
    plain) args+=(--both-ways) ;;
    pcma) args+=(--transcode PCMA) ;;
    opus) args+=(--transcode OPUS) ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  start_relay "$relay" "$CALLS"
  args+=(--relay-pid "$relay_pid")
  local f="$OUT/$relay-$mode-$run.json"
  echo "run $run: $relay, $mode, $CALLS calls, $PPS pps" >&2
  if ! taskset -c "$GEN_CPU" "$TERN" "${args[@]}" >"$f" 2>"$OUT/$relay-$mode-$run.err"; then
    echo "  FAILED (kept as $f.failed):" >&2
    sed 's/^/    /' "$OUT/$relay-$mode-$run.err" >&2
    mv "$f" "$f.failed"
    failed=$((failed + 1))
  fi
  stop_relay
  sleep 0.5
}

for run in $(seq 1 "$RUNS"); do
  for mode in $MODES; do
    for relay in $RELAYS; do
      measure "$relay" "$mode" "$run"
    done
  done
done

python3 - "$OUT" <<'PY'
import json, glob, os, statistics, sys
out = sys.argv[1]
res = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    relay, mode, run = os.path.basename(f)[:-5].rsplit("-", 2)
    r = json.load(open(f))["runs"][0]
    res.setdefault((relay, mode), []).append({
        "fwd": r["forwarded_pps"],
        "loss": r["loss_ratio"],
        "loss_pct": r["loss_ratio"] * 100,
        "ab": r.get("received_a_to_b", 0) / max(r["duration_s"], 1e-9),
        "ba": r.get("received_b_to_a", 0) / max(r["duration_s"], 1e-9),
        "relay_ns": r["relay_cpu_ns_per_pkt"] or float("nan"),
        "sys_ns": r.get("sys_cpu_ns_per_pkt") or float("nan"),
        "relay_util": r["relay_cpu_util"] or float("nan"),
        "sys_util": r.get("sys_cpu_util") or float("nan"),
        "gen": r["gen_cpu_util"],
        "p50": r["latency"]["p50_us"],
        "p99": r["latency"]["p99_us"],
        "checked": r.get("checked_packets", 0),
        "genlim": r.get("generator_limited", False),
    })
def med(k, key):
    v = [x[key] for x in res.get(k, [])]
    return statistics.median(v) if v else float("nan")
def runs(k, key, fmt="{:.0f}"):
    return ", ".join(fmt.format(x[key]) for x in res.get(k, []))
print(open(os.path.join(out, "machine.txt")).read().rstrip())
print(f"results in {out}; medians over runs")
hdr = f"{'relay':<10} {'mode':<6} {'runs':>4} {'fwd pps':>9} {'A→B':>7} {'B→A':>7} {'loss%':>7} {'relay ns/pkt':>12} {'sys ns/pkt':>10} {'relay CPU':>9} {'sys CPUs':>8} {'gen':>5} {'p50 us':>8} {'p99 us':>9} {'checked':>7}"
print(hdr)
for mode in ["srtp", "pcma", "opus", "plain"]:
    for relay in ["tern", "rtpengine"]:
        k = (relay, mode)
        if k not in res:
            continue
        lim = " generator-limited" if any(x["genlim"] for x in res[k]) else ""
        print(f"{relay:<10} {mode:<6} {len(res[k]):>4} {med(k,'fwd'):>9.0f} {med(k,'ab'):>7.0f} {med(k,'ba'):>7.0f} {med(k,'loss')*100:>7.3f} {med(k,'relay_ns'):>12.0f} {med(k,'sys_ns'):>10.0f} {med(k,'relay_util'):>9.2f} {med(k,'sys_util'):>8.2f} {med(k,'gen')*100:>4.0f}% {med(k,'p50'):>8.1f} {med(k,'p99'):>9.1f} {min(x['checked'] for x in res[k]):>7}{lim}")
print()
print("per run (relay ns/pkt | system-wide ns/pkt | loss %):")
for k in sorted(res):
    print(f"  {k[0]:<10} {k[1]:<6} {runs(k,'relay_ns')} | {runs(k,'sys_ns')} | {runs(k,'loss_pct','{:.3f}')}")
print()
print("ratios tern/rtpengine of the medians (lower is better for tern):")
for mode in ["srtp", "pcma", "opus", "plain"]:
    t, p = ("tern", mode), ("rtpengine", mode)
    if t in res and p in res:
        print(f"  {mode:<6} relay CPU/pkt {med(t,'relay_ns')/med(p,'relay_ns'):.2f}   system-wide CPU/pkt {med(t,'sys_ns')/med(p,'sys_ns'):.2f}")
print("SRTP cost over plain, same relay (relay ns/pkt, srtp − plain):")
for relay in ["tern", "rtpengine"]:
    s, p = (relay, "srtp"), (relay, "plain")
    if s in res and p in res:
        print(f"  {relay:<10} {med(s,'relay_ns')-med(p,'relay_ns'):+.0f} ns/pkt ({med(s,'relay_ns')/med(p,'relay_ns'):.2f}x)")
PY
if [ "$failed" -gt 0 ]; then
  echo "$failed measurement(s) FAILED; see above and $OUT/*.failed" >&2
  exit 1
fi
