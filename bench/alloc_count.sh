#!/usr/bin/env bash
# alloc_count.sh -- how many malloc calls one request costs the node, by thread kind: perf
# counts libc's malloc (a uprobe, so root) in a Release build/bench/bulwarkd (node.sh's config)
# while wrk sends the request for a few seconds; the counts divided by the requests wrk
# completed. Exact counts, not timings: the uprobe slows every malloc, so the rate it prints
# is no capacity. The idle node's own allocations (monitors, timers) fall in too, a few hundred
# a second against tens of thousands here.
#
#   bench/alloc_count.sh [statement, default user_by_id (a cached read)] [seconds, default 3]
#
# BULWARK_BIN_DIR=DIR counts DIR/bulwarkd instead (an older build, to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
statement=${1:-user_by_id}
secs=${2:-3}
source bench/node.sh
libc=$(ldd "${BULWARK_BIN_DIR:-build/bench}/bulwarkd" | awk '/libc.so.6/ {print $3}')
perf probe -q -x "$libc" malloc 2>/dev/null || true
port=18467
start_node "$port"
post_lua "$tmp/post.lua" '{"params": [1]}'
curl -fs -X POST -d '{"params": [1]}' "http://127.0.0.1:$port/v1/query/$statement" >/dev/null
perf stat -e probe_libc:malloc --per-thread -p "$node_pid" -o "$tmp/stat" -- sleep $((secs + 1)) &
stat_pid=$!
sleep 0.5
requests=$(wrk -t1 -c8 -d"${secs}s" -s "$tmp/post.lua" "http://127.0.0.1:$port/v1/query/$statement" |
  awk '/requests in/ {print $1}')
wait "$stat_pid"
echo "$statement: $requests requests; malloc calls per request, by thread:"
awk -v n="$requests" '/probe_libc:malloc/ && $2 ~ /^[0-9]+$/ {
    name = $1; sub(/-[0-9]+$/, "", name); kind[name] += $2 }
  END { total = 0
    for (k in kind) { printf "  %-16s %6.1f\n", k, kind[k] / n; total += kind[k] }
    printf "  %-16s %6.1f\n", "all", total / n }' "$tmp/stat"
