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
# BULWARK_ALLOC_WHERE=THREAD (e.g. bulwarkd, the HTTP thread; caf.multiplexer, the workers)
# records the calls with their stacks instead (perf --call-graph dwarf, one second of wrk) and
# prints that thread's calls by the first frame that is neither the allocator nor a library's
# container or handler plumbing, as shares of the calls recorded (perf may drop some under load;
# the counts above are the exact ones): where the allocations come from.
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
where=${BULWARK_ALLOC_WHERE:-}
if [[ -n "$where" ]]; then
  secs=1
  perf record -q -e probe_libc:malloc --call-graph dwarf,8192 -p "$node_pid" -o "$tmp/perf.data" \
    -- sleep $((secs + 1)) 2>/dev/null &
else
  perf stat -e probe_libc:malloc --per-thread -p "$node_pid" -o "$tmp/stat" -- sleep $((secs + 1)) &
fi
stat_pid=$!
sleep 0.5
requests=$(wrk -t1 -c8 -d"${secs}s" -s "$tmp/post.lua" "http://127.0.0.1:$port/v1/query/$statement" |
  awk '/requests in/ {print $1}')
wait "$stat_pid"
if [[ -n "$where" ]]; then
  echo "$statement: $where's malloc calls, by the first frame past the allocator's plumbing:"
  perf script -i "$tmp/perf.data" --comm "$where" -F ip,sym 2>/dev/null | python3 -c '
import collections, sys
plumbing = ("malloc", "operator new", "std::", "__gnu_cxx", "__libc", "void std::",
            "nlohmann::json_abi", "boost::asio::detail::thread_info_base",
            "boost::asio::aligned_new", "boost::beast::detail::allocate")
counts, stack = collections.Counter(), []
def sample():
    frames = [f for f in stack[1:] if not f.startswith(plumbing)]
    counts[frames[0][:100] if frames else "?"] += 1
for line in sys.stdin:
    if not line.strip():
        if stack: sample()
        stack = []
        continue
    parts = line.split(None, 1)
    stack.append((parts[1] if len(parts) > 1 else "?").split("+0x")[0].strip())
if stack: sample()
total = sum(counts.values()) or 1
for k, v in counts.most_common(25):
    print(f"  {100 * v / total:5.1f} %  {k}")
print(f"  {total} calls recorded")
' 
  exit 0
fi
echo "$statement: $requests requests; malloc calls per request, by thread:"
awk -v n="$requests" '/probe_libc:malloc/ && $2 ~ /^[0-9]+$/ {
    name = $1; sub(/-[0-9]+$/, "", name); kind[name] += $2 }
  END { total = 0
    for (k in kind) { printf "  %-16s %6.1f\n", k, kind[k] / n; total += kind[k] }
    printf "  %-16s %6.1f\n", "all", total / n }' "$tmp/stat"
