#!/usr/bin/env bash
# idle_cpu.sh -- what a node burns idle or under a light constant load: bulwarkd (BIN_DIR's) on
# bench/http_node_config.py's settings, one query, then the node's CPU time (utime + stime of
# /proc/PID/stat) over SECS seconds, in milliseconds. Idle still runs the periodic tasks (breaker
# watch every 250 ms, cache sweeps, memory samples), and each wakes a worker that spins its polls
# before it sleeps again. With RATE, bulwark_load sends that many uncached reads a second
# (user_by_id_fresh, open loop, 8 connections) meanwhile, and the CPU per request is printed too.
#
#   bench/idle_cpu.sh BIN_DIR [SECS, default 10] [RATE, default 0: idle]
#
# BULWARK_AGGRESSIVE_POLLS=N sets scheduler.stealing.aggressive_poll_attempts for the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1
secs=${2:-10}
rate=${3:-0}
tmp=$(mktemp -d)
port=18193
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
"$bin/bulwarkd" --print-default-config >"$tmp/defaults.json"
bench/http_node_config.py "$tmp/defaults.json" "$tmp" "$port" >"$tmp/node.json"
"$bin/bulwarkd" --config "$tmp/node.json" 2>"$tmp/node.log" &
pid=$!
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -sf -X POST -d '{"params": [1]}' "http://127.0.0.1:$port/v1/query/user_by_id_fresh" >/dev/null
sleep 1
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
a=$(ticks)
if ((rate > 0)); then
  build/bench/bulwark_load --port "$port" --path /v1/query/user_by_id_fresh --method POST \
    --body '{"params": [1]}' --rate "$rate" --seconds "$secs" --connections 8 --csv >"$tmp/load.csv"
else
  sleep "$secs"
fi
b=$(ticks)
ms=$(((b - a) * 1000 / hz))
if ((rate > 0)); then
  echo "$ms ms of CPU in ${secs} s at $rate requests/s: $((ms * 1000 / (rate * secs))) us per request; load: $(cat "$tmp/load.csv")"
else
  echo "$ms ms of CPU in ${secs} s idle"
fi
