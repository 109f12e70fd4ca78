#!/usr/bin/env bash
# Runs every test of tern. Installs what the tests need first, from
# Debian's packages, when it is missing: sipp (sip-tester), tshark,
# rtpengine-ng-client (rtpengine-utils), rtpengine (rtpengine-daemon, the
# independent peer for SRTP, DTLS-SRTP and ICE), baresip (a second SRTP
# stack, in a network namespace) and kamailio; then
# cargo-fuzz, for a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v rtpengine-ng-client >/dev/null 2>&1 || need+=(rtpengine-utils)
command -v rtpengine >/dev/null 2>&1 || need+=(rtpengine-daemon)
# baresip (with its srtp and dtls_srtp modules): the second SRTP stack.
command -v baresip >/dev/null 2>&1 || need+=(baresip)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# kamailio ships its rtpengine module (modules/rtpengine.so) in the same package.
{ command -v kamailio || [ -x /usr/sbin/kamailio ]; } >/dev/null 2>&1 || need+=(kamailio)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}"
fi

if [ ! -d ../shared/testdata/sip ]; then
  echo "warning: ../shared/testdata/sip is missing; corpus tests will fail" >&2
fi

cargo build --workspace --all-targets
# Default targets (libs, bins, tests, doc tests); the criterion benches are
# built above but not run: they are measurements, not tests.
cargo test --workspace -- --test-threads=2
# Every fuzz target of fuzz/ for a few seconds (the parsers of network
# input: STUN, SRTP/SRTCP, a=crypto, a=fingerprint); a crash fails the run.
scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
