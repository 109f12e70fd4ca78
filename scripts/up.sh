#!/usr/bin/env bash
# Starts a tern node on loopback defaults (`tern up`, both planes, no
# configuration file), after installing what building it needs on a fresh
# Debian machine when it is missing: pkg-config, libopus-dev and
# libspandsp-dev (the dataplane transcodes through tern-codec, which links
# libopus and libspandsp). Arguments go to `tern up`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
[ -f /usr/include/spandsp/g722.h ] || need+=(libspandsp-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}"
fi
exec cargo run --release -- up "$@"
