#!/usr/bin/env bash
# http_profile.sh -- where a cached read's time goes: perf samples a Release bulwarkd (the
# pipeline_bench.sh config: http.threads 1, 2 scheduler threads, the default SQLite demo) while
# wrk drives POST /v1/query/user_by_id (a cache hit) closed loop, then groups the HTTP thread's
# symbols into kinds of work (kernel, allocator, asio, Beast, ...). Needs root or
# kernel.perf_event_paranoid <= 1.
#
#   bench/http_profile.sh [seconds sampled, default 8] [statement, default user_by_id]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
statement=${2:-user_by_id}

scripts/setup.sh >/dev/null
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DBULWARK_BUILD_TESTS=OFF >/dev/null
cmake --build build/bench -j2 --target bulwarkd >/dev/null

port=18185
source bench/node.sh
start_node "$port"
body='{"params": [1]}'
curl -fs -X POST -d "$body" "http://127.0.0.1:$port/v1/query/$statement" >/dev/null # cached
post_lua "$tmp/post.lua" "$body"
wrk -t1 -c32 -d"$((secs + 4))s" -s "$tmp/post.lua" "http://127.0.0.1:$port/v1/query/$statement" \
  >"$tmp/wrk.out" &
wrk_pid=$!
sleep 2
perf record -q -F 1999 -p "$node_pid" -o "$tmp/perf.data" -- sleep "$secs" >/dev/null 2>&1
wait "$wrk_pid"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load: wrk -t1 -c32, POST /v1/query/$statement: $(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.out") req/s"
perf report -i "$tmp/perf.data" --no-children --sort comm --stdio 2>/dev/null |
  awk '/%/ && !/^#/ {print "  thread " $2 ": " $1 " of the node'"'"'s samples"}'
# The HTTP I/O thread keeps the process's name; CAF's threads are named caf.*.
perf report -i "$tmp/perf.data" --no-children --comm bulwarkd --sort dso,sym --stdio 2>/dev/null |
  python3 -c '
import collections, re, sys
kinds = [
    # Under KVM, enabling interrupts is a paravirt call inside many kernel paths (spin unlocks
    # after a wake-up, softirq ends): counted apart, as what the VM adds.
    ("kernel: paravirt interrupt enable (the VM)", r"pvm_irq"),
    ("kernel: futex, wake-ups, scheduling", r"\[k\].*(futex|wake|schedule|finish_task)"),
    ("kernel: TCP send/receive, epoll", r"\[k\]"),
    ("allocator (malloc/free/new/delete)", r"malloc|free|_int_|operator new|operator delete|tcache"),
    ("shared_ptr reference counts", r"_Sp_counted|__shared_count|shared_ptr"),
    ("mutexes and condition variables", r"mutex|cond_|lll_"),
    ("Beast: parser and serializer", r"beast"),
    ("asio: executors, strands, timers", r"asio"),
    ("nlohmann::json", r"nlohmann"),
    ("CAF", r"caf::|libcaf"),
    ("bulwark code", r"bulwark"),
    ("libc system-call wrappers", r"__libc_|epoll|recvmsg|sendmsg"),
]
share, total = collections.Counter(), 0.0
for line in sys.stdin:
    m = re.match(r"\s+([\d.]+)%\s+(.*)", line)
    if not m:
        continue
    p, sym = float(m.group(1)), m.group(2)
    total += p
    share[next((k for k, r in kinds if re.search(r, sym)), "other")] += p
print("the HTTP thread, by kind of work (share of its samples):")
for k, v in share.most_common():
    print(f"  {100 * v / total:5.1f} %  {k}")
'
