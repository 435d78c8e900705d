#!/usr/bin/env bash
# The peer benchmark: builds Telegraf with only the three plugins the
# comparison needs (inputs.mqtt_consumer, parsers.json, outputs.influxdb_v2)
# from the Go module proxy, caches it beside InfluxDB, then runs the same
# MQTT load through Telegraf and through iotdash against a real Mosquitto and
# InfluxDB 1.8.10 (scripts/benchpeers) and prints both rows and the ratios.
# Not part of `make test`: it takes a few minutes.
# IOTDASH_BENCH_CONNECTIONS=1,4,8 runs iotdash once per count of MQTT
# connections (-mqtt-connections); IOTDASH_BENCH_LOADS=qos1-20k runs only
# the loads named (qos1-20k, qos0-60k, qos0-max).
set -euo pipefail
cd "$(dirname "$0")/.."

deps="$(scripts/test-deps.sh)"
eval "$deps"

cache="${IOTDASH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iotdash}"
# The newest Telegraf, by the proxy's answer; offline, the newest one cached.
version=$(GOFLAGS=-mod=mod go list -m -f '{{.Version}}' github.com/influxdata/telegraf@latest 2>/dev/null || true)
if [ -z "$version" ]; then
  telegraf=$(ls -1 "$cache"/telegraf-v* 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$telegraf" ] || { echo "cannot reach the Go module proxy and no Telegraf is cached in $cache" >&2; exit 1; }
else
  telegraf="$cache/telegraf-$version"
fi
if [ ! -x "$telegraf" ]; then
  echo "building Telegraf $version (mqtt_consumer, json, influxdb_v2) into $cache (about a minute, once)" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && GOBIN="$tmp/bin" CGO_ENABLED=0 go install \
    -tags "custom,inputs.mqtt_consumer,outputs.influxdb_v2,parsers.json" \
    "github.com/influxdata/telegraf/cmd/telegraf@$version" >&2)
  mv "$tmp/bin/telegraf" "$telegraf"
  rm -rf "$tmp"
fi
echo "Telegraf: $telegraf; machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
IOTDASH_TELEGRAF="$telegraf" go test -count=1 -v -run '^TestPeers$' -timeout 30m ./scripts/benchpeers
