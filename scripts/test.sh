#!/usr/bin/env bash
# Runs every test of tern. Installs what the tests need first, from
# Debian's packages, when it is missing: libopus-dev, libspandsp-dev and
# pkg-config (tern-codec links them), sipp (sip-tester), tshark,
# rtpengine-ng-client (rtpengine-utils), dnsmasq (dnsmasq-base), rtpengine (rtpengine-daemon, the
# independent peer for SRTP, DTLS-SRTP and ICE), baresip (a second SRTP
# stack, in a network namespace), kamailio with its websocket module, and
# chromium and nodejs/npm for the real-browser tests (tests/browser: npm ci
# of playwright-core and JsSIP, when node_modules is missing or stale); then
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
# dnsmasq: the DNS server (SRV records) of the RFC 3263 trunk test.
{ command -v dnsmasq || [ -x /usr/sbin/dnsmasq ]; } >/dev/null 2>&1 || need+=(dnsmasq-base)
# kamailio ships its rtpengine module (modules/rtpengine.so) in the same package.
{ command -v kamailio || [ -x /usr/sbin/kamailio ]; } >/dev/null 2>&1 || need+=(kamailio)
# SIP over WebSocket for Kamailio (tests/kamailio/kamailio-ws.cfg).
ls /usr/lib/*/kamailio/modules/websocket.so >/dev/null 2>&1 || need+=(kamailio-websocket-modules)
# The real browser of tests/browser_*.rs, and node to drive it.
[ -x /usr/bin/chromium ] || need+=(chromium)
# tern-codec links libopus (found by pkg-config) and libspandsp (G.722).
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
[ -f /usr/include/spandsp/g722.h ] || need+=(libspandsp-dev)
# tern-fastpath compiles its BPF programs with clang (-target bpf) against
# the kernel's UAPI headers and libbpf's bpf_helpers.h.
command -v clang >/dev/null 2>&1 || need+=(clang)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}"
fi

# playwright-core and JsSIP, exactly as package-lock.json pins them; npm ci
# also bundles JsSIP for the page (postinstall: bundle.mjs). Skipped when
# node_modules is newer than the lock file and the bundle is there.
if [ ! -f tests/browser/jssip.bundle.js ] || [ ! -d tests/browser/node_modules ] ||
  [ tests/browser/package-lock.json -nt tests/browser/node_modules ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
  touch tests/browser/node_modules
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
