#!/usr/bin/env bash
# Scale: one tern worker holding SLOTS concurrent calls (four sockets
# each), a low rate of RTP through all of them, and the relay's memory per
# slot.
#
# Starts `tern relay --workers 1` pinned to RELAY_CPU with a port range of
# exactly 4 x SLOTS ports from PORT_LO, then `tern load rtp --calls SLOTS
# --pps (PPS_PER_CALL x SLOTS) --relay-pid` pinned to GEN_CPU, which
# reads the relay's /proc/PID/status and the socket slab caches before
# the calls are set up and once every call is set up and delivered a
# packet. Per slot it prints: resident memory (VmRSS, and its anonymous
# and shared-memory parts), the slot table (/dev/shm/tern-<instance>,
# bytes / capacity), and the kernel's socket objects (UDP +
# sock_inode_cache slabs, root only; machine-wide, so noisy), plus loss
# and duplicates at the low rate. RUNS runs, each against a fresh relay;
# medians.
#
#   loadtest/slots.sh                           # 1,500 slots in 9000-14999
#   SLOTS=4900 PORT_LO=40000 loadtest/slots.sh   # the most a 20,000 fd limit allows
#
# Env: SLOTS (1500), PORT_LO (9000), PPS_PER_CALL (5), DURATION (5),
# RUNS (3), GEN_CPU (0), RELAY_CPU (1), NG_PORT (22364), HTTP_PORT
# (22368), MEDIA_IP
# (127.0.0.2: the relay's media address), GEN_IP (127.0.0.1: the
# generator's), OUT (results directory, target/slots-<time>).
#
# The relay needs 4 x SLOTS + 256 descriptors and raises its soft limit up
# to the hard limit (`ulimit -Hn`); above it, it exits with a clear error,
# which this script shows. A range inside the kernel's ephemeral range
# (/proc/sys/net/ipv4/ip_local_port_range) works while no other socket
# holds one of its ports on MEDIA_IP or the wildcard address (hence
# MEDIA_IP 127.0.0.2; tern retries a port that is taken every second);
# a production node reserves the range
# (net.ipv4.ip_local_reserved_ports) or moves the ephemeral range.
set -euo pipefail
cd "$(dirname "$0")/.."

SLOTS=${SLOTS:-1500}
PORT_LO=${PORT_LO:-9000}
PPS_PER_CALL=${PPS_PER_CALL:-5}
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
GEN_CPU=${GEN_CPU:-0}
RELAY_CPU=${RELAY_CPU:-1}
NG_PORT=${NG_PORT:-22364}
# tern's HTTP API: its forwarded/dropped counters after each run tell
# the relay's losses from the generator's.
HTTP_PORT=${HTTP_PORT:-22368}
# The relay's media sockets live on another loopback address than
# everything else on the machine (which binds 127.0.0.1 or the wildcard
# address): ephemeral ports others hold on 127.0.0.1, the generator's
# own included, then never collide with the relay's range.
MEDIA_IP=${MEDIA_IP:-127.0.0.2}
GEN_IP=${GEN_IP:-127.0.0.1}
OUT=${OUT:-target/slots-$(date +%Y%m%d-%H%M%S)}
# TERN=/path/to/tern measures that binary (e.g. a copy kept while others
# change the tree) instead of building target/release/tern.
if [ -z "${TERN:-}" ]; then
  TERN=target/release/tern
  cargo build --release --bin tern >&2
fi
hi=$((PORT_LO + 4 * SLOTS - 1))
inst="slots-$$"

mkdir -p "$OUT"
echo "slots $SLOTS: ports $PORT_LO-$hi, fd hard limit $(ulimit -Hn)" >&2

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
  RUST_LOG=warn taskset -c "$RELAY_CPU" "$TERN" relay --workers 1 --no-pin \
    --ports "$PORT_LO-$hi" --ng "127.0.0.1:$NG_PORT" --http "127.0.0.1:$HTTP_PORT" \
    --media-ip "$MEDIA_IP" --instance "$inst" --timeout 0 >"$OUT/tern-$run.log" 2>&1 &
  relay_pid=$!
  sleep 1.5
  if ! kill -0 "$relay_pid" 2>/dev/null; then
    echo "tern relay did not start:" >&2
    cat "$OUT/tern-$run.log" >&2
    relay_pid=""
    exit 1
  fi
  table=$(stat -c %s "/dev/shm/tern-$inst")
  echo "run $run: $SLOTS calls at $((PPS_PER_CALL * SLOTS)) pps" >&2
  # UDP receive errors of the whole network namespace: where loss happened.
  udp_errs() { awk '/^Udp:/ { if (h) print $4, $6; h = 1 }' /proc/net/snmp; }
  errs0=$(udp_errs)
  if taskset -c "$GEN_CPU" "$TERN" load rtp --ng "127.0.0.1:$NG_PORT" \
      --calls "$SLOTS" --pps $((PPS_PER_CALL * SLOTS)) --duration "$DURATION" \
      --cpu "$GEN_CPU" --relay-pid "$relay_pid" --label tern --json \
      --local-ip "$GEN_IP" \
      >"$OUT/run-$run.json"; then
    echo "$table" >"$OUT/run-$run.table"
    echo "$errs0 $(udp_errs)" >"$OUT/run-$run.udperrs"
    curl -s "http://127.0.0.1:$HTTP_PORT/metrics" |
      awk '/^tern_worker_(forwarded|dropped)_packets_total/ { split($1, k, "{"); v[k[1]] += $2 }
           END { print v["tern_worker_forwarded_packets_total"] + 0, v["tern_worker_dropped_packets_total"] + 0 }' \
      >"$OUT/run-$run.relay" || true
  else
    echo "  failed; see $OUT/run-$run.json and $OUT/tern-$run.log" >&2
  fi
  stop_relay
  sleep 1
done

python3 - "$OUT" "$SLOTS" <<'PY'
import json, glob, os, statistics, sys
out, slots = sys.argv[1], int(sys.argv[2])
rows = []
for f in sorted(glob.glob(os.path.join(out, "run-*.json"))):
    t = f[:-5] + ".table"
    if not os.path.exists(t):
        continue
    d = json.load(open(f))
    r, m0, m1 = d["runs"][0], d["relay_mem_idle"], d["relay_mem_loaded"]
    slab = lambda m: sum(n * s for _, n, s in m["slabs"])
    rows.append({
        "rss": (m1["vm_rss_kb"] - m0["vm_rss_kb"]) * 1024 / slots,
        "anon": (m1["rss_anon_kb"] - m0["rss_anon_kb"]) * 1024 / slots,
        "shmem": (m1["rss_shmem_kb"] - m0["rss_shmem_kb"]) * 1024 / slots,
        "table": int(open(t).read()) / slots,
        "slab": (slab(m1) - slab(m0)) / slots if m0["slabs"] and m1["slabs"] else float("nan"),
        "fds": m1["fds"] - m0["fds"],
        "rss_idle_kb": m0["vm_rss_kb"], "rss_loaded_kb": m1["vm_rss_kb"],
        "sent": r["sent"], "lost": r["lost"], "dup": r["duplicates"],
        "streams": r["streams_received"], "fwd": r["forwarded_pps"],
        "p99": r["latency"]["p99_us"], "cpu": r["relay_cpu_util"] or float("nan"),
    })
    e = f[:-5] + ".udperrs"
    if os.path.exists(e):
        a = [int(x) for x in open(e).read().split()]
        rows[-1]["udp_errs"] = f"InErrors +{a[2] - a[0]}, RcvbufErrors +{a[3] - a[1]}"
    c = f[:-5] + ".relay"
    if os.path.exists(c) and open(c).read().split():
        fwd, drop = (int(x) for x in open(c).read().split())
        rows[-1]["relay"] = f"relay forwarded {fwd} (trial sent {r['sent']} + priming), dropped {drop}"
if not rows:
    sys.exit("no successful run")
med = lambda k: statistics.median(x[k] for x in rows)
print(f"{slots} slots, medians of {len(rows)} run(s); results in {out}")
print(f"  VmRSS idle {med('rss_idle_kb'):.0f} kB -> loaded {med('rss_loaded_kb'):.0f} kB; fds +{med('fds'):.0f}")
print(f"  per slot: VmRSS {med('rss'):.0f} B (anon {med('anon'):.0f} B, shmem {med('shmem'):.0f} B); "
      f"slot table {med('table'):.0f} B; kernel socket slabs {med('slab'):.0f} B")
print(f"  low rate: {med('fwd'):.0f} pps forwarded, lost {[x['lost'] for x in rows]} of sent {[x['sent'] for x in rows]}, "
      f"duplicates {[x['dup'] for x in rows]}, streams received {[x['streams'] for x in rows]}, "
      f"p99 {med('p99'):.0f} us, relay cpu {med('cpu')*100:.1f}%")
print(f"  UDP receive errors (namespace-wide) per run: {[x.get('udp_errs', '?') for x in rows]}")
print(f"  relay counters per run: {[x.get('relay', '?') for x in rows]}")
PY
