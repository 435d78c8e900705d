#!/usr/bin/env bash
# Makes sure the real services the tests talk to are on this machine:
# Mosquitto and Chromium from Debian's packages (installed when run as root),
# and InfluxDB OSS 1.8.10 built from the Go module proxy and cached outside the
# repository. Prints the environment the tests read (IOTDASH_TEST_*), one
# export per line, so the Makefile can eval it.
set -euo pipefail

cache="${IOTDASH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iotdash}"
influx_version="v1.8.10"
influxd="$cache/influxd-$influx_version"
mkdir -p "$cache"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto mosquitto-clients)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
  else
    echo "missing: ${need_apt[*]}. Install them, e.g. 'sudo apt-get install ${need_apt[*]}'" >&2
    exit 1
  fi
fi

if [ ! -x "$influxd" ]; then
  echo "building influxd $influx_version from the Go module proxy into $cache (about 3 minutes, once)" >&2
  tmp=$(mktemp -d)
  GOBIN="$tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "github.com/influxdata/influxdb/cmd/influxd@$influx_version" >&2
  mv "$tmp/influxd" "$influxd"
  rm -rf "$tmp"
fi

# axe-core, the accessibility engine the browser tests run in Chromium, from
# the npm registry (the tests skip, loudly, where npm is absent).
axe_version="4.14.1"
axe="$cache/axe-$axe_version/node_modules/axe-core/axe.min.js"
if [ ! -f "$axe" ] && command -v npm >/dev/null 2>&1; then
  echo "installing axe-core $axe_version from the npm registry into $cache" >&2
  mkdir -p "$cache/axe-$axe_version"
  npm install --prefix "$cache/axe-$axe_version" --no-audit --no-fund --silent "axe-core@$axe_version" >&2
fi

# Redocly CLI, the OpenAPI linter the API's test runs with its recommended
# rules, from the npm registry (the test skips, loudly, where npm is absent).
redocly_version="2.77.0"
redocly="$cache/redocly-$redocly_version/node_modules/.bin/redocly"
if [ ! -x "$redocly" ] && command -v npm >/dev/null 2>&1; then
  echo "installing @redocly/cli $redocly_version from the npm registry into $cache" >&2
  mkdir -p "$cache/redocly-$redocly_version"
  npm install --prefix "$cache/redocly-$redocly_version" --no-audit --no-fund --silent "@redocly/cli@$redocly_version" >&2
fi

mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
echo "export IOTDASH_TEST_MOSQUITTO=$mosq"
echo "export IOTDASH_TEST_INFLUXD=$influxd"
echo "export IOTDASH_TEST_CHROMIUM=$(command -v chromium)"
if [ -f "$axe" ]; then echo "export IOTDASH_TEST_AXE=$axe"; fi
if [ -x "$redocly" ]; then echo "export IOTDASH_TEST_REDOCLY=$redocly"; fi
