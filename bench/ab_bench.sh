#!/usr/bin/env bash
# ab_bench.sh -- two builds of bulwarkd side by side on the same machine, in alternating rounds, so
# a change's cost or gain is measured against its own baseline and not against an older run.
#
#   bench/ab_bench.sh A_BIN_DIR B_BIN_DIR [rounds, default 3] [seconds per run, default 8]
#
# Each *_BIN_DIR holds a Release bulwarkd and bulwark_bench (e.g. build/bench of a worktree at the
# older commit). Per round and build: a fresh node on config/default.json's statements and the
# build's own defaults (`--print-default-config`, so an older build gets only keys it knows), with
# pipeline_bench.sh's settings (bench/http_node_config.py: http.threads 1, 2 scheduler threads):
# capacity of a cached and an uncached read (wrk -t2 -c32, closed loop), then the uncached read
# at a fixed rate (bulwark_load, open loop, 64 connections: latency from when each request was
# due), then `bulwark_bench query_point_sqlite` (one call at a time into the engine). Prints every
# round and the medians. The load generators share the machine's cores with the node.
set -euo pipefail
cd "$(dirname "$0")/.."
a_dir=$1
b_dir=$2
rounds=${3:-3}
secs=${4:-8}
rate=${BULWARK_AB_RATE:-8000}
# BULWARK_AB_CAF_WAITS=1: a build that exposes scheduler.stealing runs with CAF's own idle waits
# (500 moderate polls 50 us apart) and its point query is the bench's matching row, so a build
# from before that setting and one after it are compared on one scheduler behaviour.
caf_waits=${BULWARK_AB_CAF_WAITS:-0}
# BULWARK_AB_LATENCY_ONLY=1: only the open-loop run (no capacity runs before it, no point query).
latency_only=${BULWARK_AB_LATENCY_ONLY:-0}
# BULWARK_AB_B_PATCH='{"pool": {"lane_slice_us": 0}}': a JSON merge patch (RFC 7386) on B's node
# config, so one build can be compared with itself under another setting (A_BIN_DIR = B_BIN_DIR).
# The point query column is then left out (0): bulwark_bench's rows do not take the patch.
b_patch=${BULWARK_AB_B_PATCH:-}
load=build/bench/bulwark_load
[[ -x $load ]] || cmake --build build/bench -j2 --target bulwark_load >/dev/null

source bench/node.sh # $tmp, node_pid and their cleanup; post_lua (each side's node is started here)
port=18191
body='{"params": [1]}'
post_lua "$tmp/post.lua" "$body"

config() { # bin_dir side -> $tmp/node.json
  "$1/bulwarkd" --print-default-config >"$tmp/defaults.json"
  BULWARK_CAF_WAITS=$caf_waits bench/http_node_config.py "$tmp/defaults.json" "$tmp" "$port" >"$tmp/node.json"
  if [[ $2 == B && -n $b_patch ]]; then
    python3 - "$tmp/node.json" "$b_patch" <<'PY'
import json, sys
def merge(a, b):
    for k, v in b.items():
        if v is None:
            a.pop(k, None)
        elif isinstance(v, dict) and isinstance(a.get(k), dict):
            merge(a[k], v)
        else:
            a[k] = v
cfg = json.load(open(sys.argv[1]))
merge(cfg, json.loads(sys.argv[2]))
json.dump(cfg, open(sys.argv[1], "w"))
PY
  fi
}

capacity() { # path -> req/s
  wrk -t2 -c32 -d"${secs}s" -s "$tmp/post.lua" "http://127.0.0.1:$port$1" | awk '/Requests\/sec/ {printf "%d", $2}'
}

run_round() { # label bin_dir
  rm -rf "$tmp/data"
  config "$2" "$1"
  "$2/bulwarkd" --config "$tmp/node.json" 2>"$tmp/node.log" &
  node_pid=$!
  for _ in $(seq 200); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.05
  done
  curl -fs -X POST -d "$body" "http://127.0.0.1:$port/v1/query/user_by_id" >/dev/null
  local hit fresh line p50 p99
  hit=0
  fresh=0
  if [[ $latency_only != 1 ]]; then
    hit=$(capacity /v1/query/user_by_id)
    fresh=$(capacity /v1/query/user_by_id_fresh)
  fi
  line=$($load --port "$port" --path /v1/query/user_by_id_fresh --method POST --body "$body" \
    --rate "$rate" --seconds "$secs" --connections 64 --csv)
  IFS=, read -r _ _ p50 _ p99 _ _ _ <<<"$line"
  kill "$node_pid"
  wait "$node_pid" 2>/dev/null || true
  node_pid=""
  local point
  local rows=""
  [[ $latency_only == 1 || -n $b_patch ]] || rows=$("$2/bulwark_bench" query_point_sqlite 2>/dev/null | grep 'through the engine, stealing')
  if [[ $caf_waits == 1 ]] && grep -q "CAF's moderate" <<<"$rows"; then rows=$(grep "CAF's moderate" <<<"$rows"); fi
  point=$(head -1 <<<"$rows" | sed -E 's/.*p50 ([0-9.]+) us.*/\1/')
  [[ -n $point ]] || point=0
  echo "$1 $hit $fresh $p50 $p99 ${point:-?}" >>"$tmp/rows"
  echo "| $1 | $hit | $fresh | $p50 | $p99 | ${point:-?} |"
}

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); A=$a_dir B=$b_dir${b_patch:+ with $b_patch}; open loop at $rate req/s"
echo "| build | cached req/s | uncached req/s | uncached p50 µs at $rate/s | p99 µs | engine point query p50 µs |"
echo "|---|---:|---:|---:|---:|---:|"
for r in $(seq "$rounds"); do
  run_round A "$a_dir"
  run_round B "$b_dir"
done
python3 - "$tmp/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for build in ("A", "B"):
    mine = [r for r in rows if r[0] == build]
    med = [statistics.median(float(r[i]) for r in mine) for i in range(1, 6)]
    print(f"| {build}, median of {len(mine)} | {med[0]:.0f} | {med[1]:.0f} | {med[2]:.0f} | {med[3]:.0f} | {med[4]:.1f} µs |")
PY
