#!/usr/bin/env bash
# http_bench.sh -- /healthz and /metrics throughput of a Release bulwarkd, driven by wrk, beside
# nginx serving the same bytes as /healthz from a static file, in the same run on this machine.
#
#   bench/http_bench.sh [seconds per run, default 10] [connections, default 32]
#
# Both servers get one I/O thread/worker (bulwarkd: http.threads=1; nginx: worker_processes 1).
# wrk runs closed-loop (it measures capacity, not latency under a fixed rate).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}

scripts/setup.sh >/dev/null
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DBULWARK_BUILD_TESTS=OFF >/dev/null
cmake --build build/bench -j2 --target bulwarkd >/dev/null

tmp=$(mktemp -d)
node_pid=""
nginx_pid=""
cleanup() {
  if [[ -n "$node_pid" ]]; then kill "$node_pid" 2>/dev/null; wait "$node_pid" 2>/dev/null || true; fi
  if [[ -n "$nginx_pid" ]]; then kill "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

node_port=18181
nginx_port=18182
cat >"$tmp/node.json" <<JSON
{"http": {"listen": "127.0.0.1:$node_port", "threads": 1}, "node": {"data_dir": "$tmp/data"},
 "admin": {"listen": ""}, "log": {"level": "warn"}}
JSON
build/bench/bulwarkd --config "$tmp/node.json" 2>"$tmp/node.log" &
node_pid=$!

mkdir -p "$tmp/www"
printf '{"status":"ok"}' >"$tmp/www/healthz"
source bench/nginx.sh
start_nginx "$nginx_port" /healthz
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$node_port/healthz" >/dev/null && break
  sleep 0.05
done
curl -fs "http://127.0.0.1:$node_port/healthz" >/dev/null # must answer 200

run() {
  local label=$1 url=$2
  local out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$url")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '| %-28s | %10s | %8s | %8s |\n' "$label" "$rps" "$p50" "$p99"
}

echo "wrk -t2 -c$conns -d${secs}s, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo "| target                       |      req/s |      p50 |      p99 |"
echo "|------------------------------|-----------:|---------:|---------:|"
run "nginx static (baseline)" "http://127.0.0.1:$nginx_port/healthz"
run "bulwarkd GET /healthz" "http://127.0.0.1:$node_port/healthz"
run "bulwarkd GET /metrics" "http://127.0.0.1:$node_port/metrics"
run "bulwarkd GET /v1/status" "http://127.0.0.1:$node_port/v1/status"
echo "node RSS after the runs: $(awk '/VmHWM/ {print $2, $3}' /proc/$node_pid/status) peak"
