# Shared by loadtest/compare.sh and loadtest/compare_srtp.sh (sourced):
# start and stop one relay under test.
#
# Needs TERN (the tern binary), OUT (results directory), RELAY_CPU,
# PORT_LO and NG_PORT. TERN_RUST_LOG, when set, is tern's RUST_LOG (e.g.
# `warn`, to log as little as `rtpengine --log-level=3`).

relay_pid=""
stop_relay() {
  if [ -n "$relay_pid" ]; then
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=""
  fi
  rm -f "/dev/shm/tern-compare-$$"
}

# start_relay NAME CALLS: starts the relay in the background, sets relay_pid.
# Ports PORT_LO .. PORT_LO + 4 x CALLS + 63; one worker (thread), pinned to
# RELAY_CPU; rtpengine in userspace (--table=-1).
start_relay() {
  local hi=$((PORT_LO + 4 * $2 + 63))
  case $1 in
    tern)
      env ${TERN_RUST_LOG:+RUST_LOG="$TERN_RUST_LOG"} \
        taskset -c "$RELAY_CPU" "$TERN" relay --workers 1 --no-pin \
        --ports "$PORT_LO-$hi" --ng "127.0.0.1:$NG_PORT" \
        --instance "compare-$$" --timeout 0 --http off >"$OUT/tern.log" 2>&1 &
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
