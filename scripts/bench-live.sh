#!/usr/bin/env bash
# Measures live push from the browser's side against the built binary and a
# real Mosquitto: the delay from publish to a WebSocket client at p50, p90,
# p99 and max over every reading received, and what an idle browser costs
# the server. Prints the rows the README's "Live push" table holds. Not part
# of `make test`: it takes about two minutes and wants a quiet machine.
#
#   scripts/bench-live.sh            # every row
#   ROWS="latency" scripts/bench-live.sh
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/test-deps.sh)"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/bin/" ./cmd/iotdash ./cmd/iotload ./scripts/livefloor

# free_port prints a TCP port on 127.0.0.1 nobody listens on.
free_port() {
  while :; do
    p=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

mq=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mq" >"$work/mosquitto.conf"
"$IOTDASH_TEST_MOSQUITTO" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)

password=bench-live-password
export IOTLOAD_PASSWORD=$password

# start_iotdash starts iotdash on the embedded store with the broker above
# and the flags it is given (or, given "floor", scripts/livefloor), and
# waits until it is ready; its URL is in $url.
start_iotdash() {
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
  rm -rf "$work/data"
  http=$(free_port)
  url="http://127.0.0.1:$http"
  if [ "${1:-}" = floor ]; then
    "$work/bin/livefloor" -mqtt "tcp://127.0.0.1:$mq" -http "127.0.0.1:$http" >"$work/iotdash.log" 2>&1 &
  else
    IOTDASH_ADMIN_PASSWORD=$password "$work/bin/iotdash" -pprof -mqtt "tcp://127.0.0.1:$mq" -simulate 0 \
      -http "127.0.0.1:$http" -data "$work/data" -max-websockets 30000 -max-websockets-per-addr 30000 \
      -log-level warn "$@" >"$work/iotdash.log" 2>&1 &
  fi
  pids+=($!)
  for _ in $(seq 100); do
    curl -fs "$url/readyz" >/dev/null 2>&1 && return
    sleep 0.2
  done
  echo "iotdash did not start:" >&2
  cat "$work/iotdash.log" >&2
  exit 1
}

echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg); open-file limit $(ulimit -Hn)"
# profile keeps a CPU profile of the server from the middle of row $1's
# run, if PROFILE names a directory.
profile() {
  [ -n "${PROFILE:-}" ] || return 0
  mkdir -p "$PROFILE"
  (sleep 8 && curl -fs -u "admin:$password" "$url/debug/pprof/profile?seconds=10" >"$PROFILE/$1.pprof") &
}

# pressure prints the kernel's total time, in µs, that some task waited for
# a core (0 where the kernel does not say).
pressure() { sed -n 's/^some .*total=//p' /proc/pressure/cpu 2>/dev/null || echo 0; }

rows=${ROWS:-"latency latency-early all ingest50k overviews50k idle"}
for round in $(seq "${ROUNDS:-1}"); do
for row in $rows; do
  case $row in
  *-floor) start_iotdash floor ;;
  *-early) start_iotdash -push-before-commit ;;
  *) start_iotdash ;;
  esac
  case $row in
  *-floor) pushed="by scripts/livefloor, which stores nothing" ;;
  *-early) pushed="pushed before the commit" ;;
  *) pushed="pushed after the commit" ;;
  esac
  echo "# round $round, row $row; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  profile "$row-$round"
  p0=$(pressure) t0=$(date +%s%N)
  case $row in
  latency | latency-early | latency-floor)
    echo "## 10,000 readings/s (5,000 msg/s of 2 readings, QoS 1, 100 devices): 200 device pages, 200 overviews; $pushed"
    "$work/bin/iotload" -url "$url" -device-clients 200 -overview-clients 200 -latest 4 \
      -mqtt "tcp://127.0.0.1:$mq" -rate 5000 -for 20s
    ;;
  pages | pages-early | pages-floor)
    echo "## 10,000 readings/s (5,000 msg/s of 2 readings, QoS 1, 100 devices): 200 device pages only; $pushed"
    "$work/bin/iotload" -url "$url" -device-clients 200 -mqtt "tcp://127.0.0.1:$mq" -rate 5000 -for 20s
    ;;
  one | one-early | one-floor)
    echo "## 10,000 readings/s (5,000 msg/s of 2 readings, QoS 1, 100 devices): 1 client, every device, every reading; $pushed"
    "$work/bin/iotload" -url "$url" -all-clients 1 -mqtt "tcp://127.0.0.1:$mq" -rate 5000 -for 20s
    ;;
  all)
    echo "## 3,000 readings/s (1,500 msg/s): 100 clients on every device, every reading"
    "$work/bin/iotload" -url "$url" -all-clients 100 -mqtt "tcp://127.0.0.1:$mq" -rate 1500 -for 20s
    ;;
  ingest50k)
    echo "## 50,000 readings/s (25,000 msg/s of 2 readings, QoS 0): no browser; what the server spends is the ingest's"
    "$work/bin/iotload" -url "$url" -mqtt "tcp://127.0.0.1:$mq" -qos 0 -rate 25000 -for 10s
    ;;
  overviews50k)
    echo "## 50,000 readings/s (25,000 msg/s of 2 readings, QoS 0): 500 overviews; the server's CPU less the row above is theirs"
    "$work/bin/iotload" -url "$url" -overview-clients 500 -latest 4 -mqtt "tcp://127.0.0.1:$mq" -qos 0 -rate 25000 -for 10s
    ;;
  idle)
    n=$(( $(ulimit -Hn) - 500 ))
    n=$(( n > 20000 ? 20000 : n ))
    echo "## $n idle subscribed clients"
    "$work/bin/iotload" -url "$url" -idle-clients "$n" -for 1s
    ;;
  *)
    echo "unknown row $row (latency, pages and one, each also -early and -floor; all, ingest50k, overviews50k, idle)" >&2
    exit 2
    ;;
  esac
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); some task waited for a core $(( ($(pressure) - p0) * 100000 / ($(date +%s%N) - t0) ))% of the row's time (/proc/pressure/cpu)"
done
done
