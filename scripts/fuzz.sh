#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails if
# any of them finds a crash (a panic, a failed assertion, an ASan report,
# a timeout or an out-of-memory).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Seconds default to 20; targets default to all of them (`cargo fuzz list`).
# Total time is about targets × seconds plus one build. Environment:
#   FUZZ_SANITIZER  address (default) or none (`cargo fuzz run -s none`)
#   FUZZ_JOBS       cargo build jobs (default: cargo's own)
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, …) to rustc;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. Seeds are read
# from fuzz/corpus/<target>/ and left untouched; what libFuzzer adds goes
# to fuzz/work/corpus/<target>/ (ignored by git, kept between runs), logs
# to fuzz/work/logs/, crashing inputs to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-20}"
shift || true
case "$secs" in
  '' | *[!0-9]*) echo "usage: $0 [seconds-per-target] [target...]" >&2; exit 2 ;;
esac
sanitizer="${FUZZ_SANITIZER:-address}"
[ -n "${FUZZ_JOBS:-}" ] && export CARGO_BUILD_JOBS="$FUZZ_JOBS"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${#targets[@]} targets (sanitizer: $sanitizer)"
for t in "${targets[@]}"; do
  cargo fuzz build -s "$sanitizer" "$t"
done

mkdir -p work/logs
declare -A result execs
failed=0
for t in "${targets[@]}"; do
  mkdir -p "work/corpus/$t" "corpus/$t"
  log="work/logs/$t.log"
  echo "== $t: ${secs}s"
  rc=0
  # A hard stop well past -max_total_time in case the process wedges.
  timeout --kill-after=10 "$((secs + 60))" \
    cargo fuzz run -s "$sanitizer" "$t" "work/corpus/$t" "corpus/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      >"$log" 2>&1 || rc=$?
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$n" ] || n=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  execs[$t]="${n:-?}"
  if [ "$rc" -eq 0 ]; then
    result[$t]="ok"
  else
    result[$t]="FAILED (exit $rc)"
    failed=1
    echo "-- $t failed; end of $log:"
    tail -40 "$log"
    echo "-- $t panic / sanitizer report:"
    grep -m1 -A2 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$log" || true
    for a in $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log"); do
      [ -f "$a" ] && echo "-- crashing input $a: $(od -An -v -tx1 "$a" | tr -d ' \n')"
    done
  fi
done

echo
echo "== summary (${secs}s per target, sanitizer: $sanitizer)"
printf '%-20s %14s  %s\n' target executions result
for t in "${targets[@]}"; do
  printf '%-20s %14s  %s\n' "$t" "${execs[$t]}" "${result[$t]}"
done
exit "$failed"
