#!/usr/bin/env bash
# pipeline_bench.sh -- the query path over HTTP on a Release bulwarkd (SQLite, default demo data):
#   1. capacity (wrk, closed loop): a cached read (POST /v1/query/user_by_id, cache hit) and the
#      same read uncached (statement user_by_id_fresh, cache_ttl_ms 0: limiter, database,
#      breaker, pool, SQLite), beside nginx serving the cached answer's bytes from a static file;
#   2. latency under a fixed rate (bulwark_load, open loop) at half of each capacity, with the
#      outcome mix by HTTP status: p50/p95/p99 measured from when each request was due; and the
#      uncached read at 1.5 x its capacity, to see the overload answered rather than queued.
#
#   bench/pipeline_bench.sh [seconds per run, default 10] [connections, default 32]
#   BULWARK_SCHEDULER_POLICY=sharing bench/pipeline_bench.sh   # the node on the other scheduler
#
# bulwarkd: http.threads 1, scheduler threads 2; nginx: worker_processes 1. wrk and the load
# generator share the machine's 2 cores with the servers. The rate limiter stays in the path
# with limits no run reaches. nginx answers GET (its static module refuses POST).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}

scripts/setup.sh >/dev/null
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DBULWARK_BUILD_TESTS=OFF >/dev/null
cmake --build build/bench -j2 --target bulwarkd bulwark_load >/dev/null

source bench/node.sh
nginx_pid=""
cleanup() {
  if [[ -n "$nginx_pid" ]]; then kill "$nginx_pid" 2>/dev/null || true; fi
  node_cleanup
}
trap cleanup EXIT

node_port=18183
nginx_port=18184
start_node "$node_port" "${BULWARK_SCHEDULER_POLICY:-stealing}"
body='{"params": [1]}'
curl -fs -X POST -d "$body" "http://127.0.0.1:$node_port/v1/query/user_by_id" >/dev/null
mkdir -p "$tmp/www"
curl -fs -X POST -d "$body" "http://127.0.0.1:$node_port/v1/query/user_by_id" >"$tmp/www/cached"
source bench/nginx.sh
start_nginx "$nginx_port" /cached

post_lua "$tmp/post.lua" "$body"

capacity() { # url [lua] -> req/s
  local out
  if [[ -n "${2:-}" ]]; then out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$2" "$1"); else out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$1"); fi
  awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out"
}

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); answer $(wc -c <"$tmp/www/cached") bytes"
echo
echo "capacity: wrk -t2 -c$conns -d${secs}s (closed loop)"
nginx_rps=$(capacity "http://127.0.0.1:$nginx_port/cached")
hit_rps=$(capacity "http://127.0.0.1:$node_port/v1/query/user_by_id" "$tmp/post.lua")
fresh_rps=$(capacity "http://127.0.0.1:$node_port/v1/query/user_by_id_fresh" "$tmp/post.lua")
echo "| target | req/s |"
echo "|---|---:|"
echo "| nginx static file, same bytes (baseline) | $nginx_rps |"
echo "| bulwarkd cached read (limiter + cache hit) | $hit_rps |"
echo "| bulwarkd uncached read (limiter + database + breaker + pool + SQLite) | $fresh_rps |"
echo
echo "open loop at half of each capacity: bulwark_load --seconds $secs --connections 64"
echo "| target | offered req/s | achieved | p50 µs | p95 µs | p99 µs | p99.9 µs | max µs | outcomes (HTTP status:count) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
open_loop() { # label rate path method port [source addresses]
  local line
  line=$(build/bench/bulwark_load --port "$5" --path "$3" --method "$4" --body "$( [[ $4 == POST ]] && echo "$body")" \
    --rate "$2" --seconds "$secs" --connections 64 --sources "${6:-0}" --csv)
  IFS=, read -r offered achieved p50 p95 p99 p999 mx outcomes <<<"$line"
  echo "| $1 | $offered | $achieved | $p50 | $p95 | $p99 | $p999 | $mx | $outcomes |"
}
open_loop "nginx static file" $((hit_rps / 2)) /cached GET "$nginx_port"
open_loop "bulwarkd cached read" $((hit_rps / 2)) /v1/query/user_by_id POST "$node_port"
open_loop "bulwarkd uncached read" $((fresh_rps / 2)) /v1/query/user_by_id_fresh POST "$node_port"
# The same cached reads from 16 clients (connections bound to 127.0.0.2-17) rather than one: a
# client's requests all go to one gateway and limiter shard (by design, for exact limits), so
# only many clients spread over the shards. (Near capacity the load generator, on the same two
# cores, cannot keep up: half of capacity is where it measures the node.)
open_loop "bulwarkd cached read, 16 clients" $((hit_rps / 2)) /v1/query/user_by_id POST "$node_port" 16
# Overload: 1.5 x the uncached capacity over 512 connections, each request allowing 20 ms
# (X-Request-Timeout-Ms): the node must refuse what it cannot serve in time (504 at once from the
# pool's deadline-aware queue, 503 when full) instead of letting every request queue.
line=$(build/bench/bulwark_load --port "$node_port" --path /v1/query/user_by_id_fresh --method POST \
  --body "$body" --header 'X-Request-Timeout-Ms: 20' --rate $((fresh_rps * 3 / 2)) --seconds "$secs" \
  --connections 512 --csv)
IFS=, read -r offered achieved p50 p95 p99 p999 mx outcomes <<<"$line"
echo "| bulwarkd uncached read, 1.5 x capacity, 20 ms deadline, 512 conns | $offered | $achieved | $p50 | $p95 | $p99 | $p999 | $mx | $outcomes |"
echo
curl -fs "http://127.0.0.1:$node_port/metrics" | grep -E '^bulwark_(requests_total|cache_hits_total|ratelimit_decisions_total|pool_(rejections|acquire_timeouts|call_timeouts|connect_failures|replacements)|memory_pressure_level|supervisor_restarts|breaker_transitions_total|cleanup_task_(hung|stale|restarts)_total)' | grep -v ' 0$'
echo "node RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$node_pid/status) peak"
