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

# go_tool PATH PACKAGE@VERSION HOW-LONG builds a service the tests run from
# the Go module proxy into PATH (in $cache), once.
go_tool() {
  if [ ! -x "$1" ]; then
    echo "building $2 from the Go module proxy into $cache ($3, once)" >&2
    tmp=$(mktemp -d)
    GOBIN="$tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "$2" >&2
    mv "$tmp"/* "$1"
    rm -rf "$tmp"
  fi
}
go_tool "$influxd" "github.com/influxdata/influxdb/cmd/influxd@$influx_version" "about 3 minutes"
# Prometheus Alertmanager, the real receiver the alert tests deliver to.
am_version="v0.31.1" # the newest whose module builds: from v0.32 its UI embeds assets the module zip lacks
alertmanager="$cache/alertmanager-$am_version"
go_tool "$alertmanager" "github.com/prometheus/alertmanager/cmd/alertmanager@$am_version" "about 20 seconds"

# npm_tool DIR PACKAGE@VERSION FILE installs a tool the tests run from the
# npm registry into $cache/DIR, once; FILE is what shows it is there. Where
# npm is absent nothing is installed and the tests that need it skip, loudly.
npm_tool() {
  if [ ! -e "$cache/$1/$3" ] && command -v npm >/dev/null 2>&1; then
    echo "installing $2 from the npm registry into $cache/$1" >&2
    mkdir -p "$cache/$1"
    npm install --prefix "$cache/$1" --no-audit --no-fund --silent "$2" >&2
  fi
}
# axe-core, the accessibility engine the browser tests run in Chromium.
npm_tool axe-4.14.1 axe-core@4.14.1 node_modules/axe-core/axe.min.js
axe="$cache/axe-4.14.1/node_modules/axe-core/axe.min.js"
# Redocly CLI, the OpenAPI linter the API's test runs with its recommended rules.
npm_tool redocly-2.77.0 @redocly/cli@2.77.0 node_modules/.bin/redocly
redocly="$cache/redocly-2.77.0/node_modules/.bin/redocly"

mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
echo "export IOTDASH_TEST_MOSQUITTO=$mosq"
echo "export IOTDASH_TEST_INFLUXD=$influxd"
echo "export IOTDASH_TEST_ALERTMANAGER=$alertmanager"
echo "export IOTDASH_TEST_CHROMIUM=$(command -v chromium)"
if [ -f "$axe" ]; then echo "export IOTDASH_TEST_AXE=$axe"; fi
if [ -x "$redocly" ]; then echo "export IOTDASH_TEST_REDOCLY=$redocly"; fi
