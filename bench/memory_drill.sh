#!/usr/bin/env bash
# memory_drill.sh -- the memory flood drill of issue 10 (items 5 and 6): a flood of ~10 MB answers
# against a Release bulwarkd, three ways in one run, each on a fresh node:
#   process  memory.source "process", memory.budget_bytes 256 MiB;
#   cgroup   memory.source "auto", the node inside a cgroup v1 memory group bulwark-drill-<pid>
#            (made under this shell's own memory group: /sys/fs/cgroup/memory/ when that is the
#            root) whose memory.limit_in_bytes is 256 MiB, moved in before it starts; needs root;
#   blinded  the baseline, protection off: memory.source "file" reading a file that holds 0,
#            memory.admission false (left out, with a note, where the binary does not know it)
#            http.stream_after_bytes 0 (every answer whole) and pool.queue_delay_target_ms 0 (no
#            standing-queue shedding; each where config/default.json has it).
# The config is config/default.json with only these keys changed: http.listen, admin.listen (off), node.data_dir,
# log.level (warn), memory.budget_bytes, memory.source (+ memory.file, memory.admission and
# http.stream_after_bytes and pool.queue_delay_target_ms in the baseline), and one added read-only statement "big" (cache_ttl_ms 0, no parameters) that asks
# for 10 000 rows of ~1 KB, about 10 MB, under the default database.max_bytes (16 MiB); the
# node's own row limit may cut that (the drill prints the answer an idle node gives).
#
#   bench/memory_drill.sh [flood seconds per mode, default 20] [rate/s, default max(200, 10 x
#                         measured capacity)] [connections, default 200]
#   BULWARKD=/path/to/bulwarkd bench/memory_drill.sh   # that binary instead of building one
#   DRILL_SVG=/tmp/x.svg DRILL_PORT=18191 bench/memory_drill.sh 5   # plot elsewhere, another port
#
# Load: open loop (bench/drill_load.py: request i due at i / rate, keep-alive connections, a FIFO
# for requests that find none free). The capacity for big answers is measured first on a
# separate node (wrk, closed loop, 8 connections -- the pool's size -- for 4 s), and the default
# rate is at least 10 x that. bulwark_load is not used: it stops reading at 8 MiB (Beast's
# default response body limit) and never ends when the node is killed.
# Sampling: bench/drill_sampler.py, RSS (and the cgroup's usage) at 20 Hz, /metrics at 5 Hz.
# Per mode: 2 s idle, the flood, then up to http.request_timeout_ms + 5 s for the last answers,
# then 5 s more to see whether the memory comes back. Prints one markdown row per mode
# (bench/drill_report.py says what each column means) and draws bench/results/memory_drill.svg
# (bench/drill_plot.gp, gnuplot). Raw samples stay in the directory printed at the end; the
# nodes, their data, the cgroup and the configs are removed on any exit. About 2.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
secs=${1:-20}
rate=${2:-}
conns=${3:-200}
budget=$((256 * 1024 * 1024))
port=${DRILL_PORT:-18191}
after=5
grace=15 # http.request_timeout_ms (10 s: the node answers 503 by then) + 5 s
svg=${DRILL_SVG:-bench/results/memory_drill.svg}

if [[ -z "${BULWARKD:-}" ]]; then
  scripts/setup.sh >/dev/null
  cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DBULWARK_BUILD_TESTS=OFF >/dev/null
  cmake --build build/bench -j2 --target bulwarkd >/dev/null
  BULWARKD=build/bench/bulwarkd
fi
for tool in python3 gnuplot wrk curl; do
  command -v "$tool" >/dev/null || { echo "memory_drill.sh: $tool is missing (scripts/setup.sh)" >&2; exit 1; }
done
python3 -c 'import socket as so, sys; s = so.socket(); s.setsockopt(so.SOL_SOCKET, so.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null ||
  { echo "memory_drill.sh: port $port is taken (DRILL_PORT=...)" >&2; exit 1; }

work=$(mktemp -d /tmp/bulwark-drill-work.XXXXXX)
raw=$(mktemp -d /tmp/bulwark-drill-raw.XXXXXX)
node_pid=""
sampler_pid=""
load_pid=""
cgroup=""

alive() { [[ -n "$1" && -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
stop_node() { # TERM, then KILL after 15 s; sets node_rc
  node_rc=0
  if alive "$node_pid"; then
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in $(seq 150); do alive "$node_pid" || break; sleep 0.1; done
    alive "$node_pid" && kill -KILL "$node_pid" 2>/dev/null
  fi
  wait "$node_pid" 2>/dev/null || node_rc=$?
  node_pid=""
}
remove_cgroup() {
  [[ -n "$cgroup" && -d "$cgroup" ]] || return 0
  for _ in $(seq 50); do rmdir "$cgroup" 2>/dev/null && break; sleep 0.1; done
  [[ -d "$cgroup" ]] && echo "memory_drill.sh: could not remove $cgroup" >&2
  cgroup=""
}
cleanup() {
  set +e # every step, whatever failed before
  local p
  for p in "$sampler_pid" "$load_pid"; do
    if [[ -n "$p" ]]; then
      kill "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    fi
  done
  [[ -n "$node_pid" ]] && stop_node
  remove_cgroup
  rm -rf "$work"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- configs --------------------------------------------------------------------------------
# write_config MODE SOURCE [admission: keep|false|drop] -> $work/MODE.json; prints changed keys
write_config() {
  python3 - "$work" "$1" "$2" "${3:-keep}" "$port" "$budget" <<'PY'
import json, sys
work, mode, source, admission, port, budget = sys.argv[1:7]
base = json.load(open("config/default.json"))
cfg = json.loads(json.dumps(base))
cfg["http"]["listen"] = "127.0.0.1:" + port
cfg["admin"]["listen"] = ""  # no admin routes needed
cfg["node"]["data_dir"] = f"{work}/{mode}-data"
cfg["log"]["level"] = "warn"
cfg["memory"]["budget_bytes"] = int(budget)
cfg["memory"]["source"] = source
if source == "file":
    with open(f"{work}/ratio", "w") as f:
        f.write("0\n")
    cfg["memory"]["file"] = f"{work}/ratio"
if admission == "false":
    cfg["memory"]["admission"] = False
    # Streaming is protection too: the baseline answers whole, as the node did before it.
    if "stream_after_bytes" in cfg["http"]:
        cfg["http"]["stream_after_bytes"] = 0
    # So is the pool queue's delay target (a standing queue is shed at 100 ms): off.
    if "queue_delay_target_ms" in cfg["pool"]:
        cfg["pool"]["queue_delay_target_ms"] = 0
elif admission == "drop":
    cfg["memory"].pop("admission", None)
cfg["statements"]["big"] = {
    "sql": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 10000) "
           "SELECT i, hex(randomblob(512)) AS payload FROM n",
    "params": [], "read_only": True, "cache_ttl_ms": 0}
json.dump(cfg, open(f"{work}/{mode}.json", "w"), indent=1)

def flat(x, p=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from flat(v, f"{p}.{k}" if p else k)
    else:
        yield p, x
a, b = dict(flat(base)), dict(flat(cfg))
changed = [f"{k}={json.dumps(b[k])}" for k in b if k in a and a[k] != b[k]]
added = sorted({k.rsplit(".", 1)[0] if k.startswith("statements.big") else k
                for k in b if k not in a})
removed = [k for k in a if k not in b]
print(f"  {mode}: changed " + ", ".join(changed)
      + "; added " + ", ".join(a2 for a2 in added)
      + ("; removed " + ", ".join(removed) if removed else ""))
PY
}

# check_config MODE SOURCE ADMISSION: writes and validates; drops memory.admission if unknown
check_config() {
  local out keys
  keys=$(write_config "$@")
  if ! out=$("$BULWARKD" --check-config "$work/$1.json" 2>&1); then
    if grep -q '^memory.admission: unknown key' <<<"$out"; then
      echo "  note: this bulwarkd rejects memory.admission as an unknown key: left out of $1"
      keys=$(write_config "$1" "$2" drop)
      out=$("$BULWARKD" --check-config "$work/$1.json" 2>&1) || { echo "$out" >&2; exit 1; }
    else
      echo "$out" >&2
      exit 1
    fi
  fi
  echo "$keys"
}

start_node() { # MODE [cgroup dir]
  local cfg=$work/$1.json log=$raw/$1/node.log
  if [[ -n "${2:-}" ]]; then
    # the shell moves itself into the group, then becomes bulwarkd: the same pid, inside from the start
    sh -c 'echo $$ >"$1/cgroup.procs" && exec "$2" --config "$3"' sh "$2" "$BULWARKD" "$cfg" 2>"$log" &
  else
    "$BULWARKD" --config "$cfg" 2>"$log" &
  fi
  node_pid=$!
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    alive "$node_pid" || break
    sleep 0.05
  done
  echo "memory_drill.sh: bulwarkd ($1) did not become ready; its log:" >&2
  cat "$log" >&2
  exit 1
}

echo "# memory drill (issue 10): $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
if [[ $BULWARKD == build/bench/bulwarkd ]]; then
  node_desc="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo ' + uncommitted changes')"
  echo "bulwarkd: $BULWARKD, built from $node_desc"
else
  node_desc=$BULWARKD
  echo "bulwarkd: $BULWARKD (given by BULWARKD)"
fi
echo "config: config/default.json, per mode:"

# --- cgroup v1 (root) -------------------------------------------------------------------------
modes=(process cgroup blinded)
cg_parent=""
if ((EUID == 0)) && [[ -w /sys/fs/cgroup/memory/cgroup.procs ]]; then
  # Nested under this shell's own memory group (the top of the hierarchy when that is "/"),
  # so the node stays inside whatever limits the caller.
  own=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
  cg_parent=/sys/fs/cgroup/memory${own%/}
  [[ -w "$cg_parent/cgroup.procs" ]] || cg_parent=/sys/fs/cgroup/memory
else
  echo "  note: no writable cgroup v1 memory controller (or not root): the cgroup mode is skipped"
  modes=(process blinded)
fi

check_config process process
[[ -n "$cg_parent" ]] && check_config cgroup auto
check_config blinded file false

# --- capacity for big answers -----------------------------------------------------------------
# on its own node, the process mode's config with its own data directory
python3 -c 'import json, sys
c = json.load(open(sys.argv[1] + "/process.json"))
c["node"]["data_dir"] = sys.argv[1] + "/capacity-data"
json.dump(c, open(sys.argv[1] + "/capacity.json", "w"))' "$work"
mkdir -p "$raw/capacity"
start_node capacity
curl -fs -X POST -d '{"params":[]}' "http://127.0.0.1:$port/v1/query/big" -o "$work/answer.json"
answer=$(python3 - "$work/answer.json" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
lim = d.get("limit", {})
text = f"{os.path.getsize(sys.argv[1])} bytes, {len(d.get('rows', []))} rows"
if d.get("truncated"):
    text += f", truncated by {lim.get('truncated_by')} ({lim.get('reason')})"
print(text)
PY
)
answer_mb=$(awk -v b="$(stat -c %s "$work/answer.json")" 'BEGIN {printf "%.1f", b / 1e6}')
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"params":[]}'
wrk.headers["Content-Type"] = "application/json"
LUA
wrk_out=$(wrk -t1 -c8 -d4s --timeout 10s -s "$work/post.lua" "http://127.0.0.1:$port/v1/query/big")
capacity=$(awk '/requests in/ {n = $1; d = $4 + 0} /Non-2xx/ {bad = $NF} END {printf "%.1f", (n - bad) / d}' <<<"$wrk_out")
stop_node
rm -rf "$raw/capacity"
if [[ -z "$rate" ]]; then
  rate=$(python3 -c 'import math,sys; print(max(200, math.ceil(10 * float(sys.argv[1]))))' "$capacity")
fi
echo "answer (idle node): $answer"
echo "capacity for it: $capacity answers/s (wrk -t1 -c8 -d4s, closed loop, 2xx only)"
echo "flood: $rate requests/s ($(python3 -c 'import sys; c=float(sys.argv[2]); print(f"{float(sys.argv[1]) / c:.0f}" if c else "inf")' "$rate" "$capacity") x capacity) for $secs s over $conns connections, open loop; budget $((budget >> 20)) MiB"
echo

# --- the modes --------------------------------------------------------------------------------
run_mode() { # MODE
  local mode=$1 dir=$raw/$1 cg="" end rc sig
  mkdir -p "$dir"
  if [[ $mode == cgroup ]]; then
    cgroup=$cg_parent/bulwark-drill-$$
    mkdir "$cgroup"
    echo "$budget" >"$cgroup/memory.limit_in_bytes"
    cg=$cgroup
  fi
  start_node "$mode" "$cg"
  python3 bench/drill_sampler.py --pid "$node_pid" --port "$port" --out "$dir" ${cg:+--cgroup "$cg"} &
  sampler_pid=$!
  sleep 2
  echo -n "$mode: " >&2
  python3 bench/drill_load.py --port "$port" --path /v1/query/big --body '{"params":[]}' \
    --rate "$rate" --seconds "$secs" --connections "$conns" --grace "$grace" --out "$dir/load.json" >&2 &
  load_pid=$!
  # (2>/dev/null: bash's own "Killed" notice when the node dies meanwhile; the table says it)
  wait "$load_pid" 2>/dev/null
  load_pid=""
  sleep "$after.5"
  kill -TERM "$sampler_pid"
  wait "$sampler_pid" || true
  sampler_pid=""
  if alive "$node_pid"; then
    end="alive"
    stop_node
  else
    stop_node
    rc=$node_rc
    if ((rc > 128)); then
      sig=$((rc - 128))
      end="killed by SIG$(kill -l "$sig")"
    else
      end="exited $rc"
    fi
  fi
  python3 - "$dir/node.json" "$end" "${cg:-}" "${rc:-0}" <<'PY'
import json, sys
path, end, cg, rc = sys.argv[1:5]
node = {"end": end, "died_by_signal": int(rc) - 128 if int(rc) > 128 else None}
if cg:
    def read(name):
        try:
            return open(f"{cg}/{name}").read()
        except OSError:
            return None
    oom = dict(l.split() for l in (read("memory.oom_control") or "").splitlines() if l.strip())
    # oom_kill is there since Linux 4.13; before that, under_oom is all there is
    node["oom_kill"] = int(oom["oom_kill"]) if "oom_kill" in oom else int(oom.get("under_oom", 0))
    node["under_oom"] = int(oom.get("under_oom", 0))
    node["failcnt"] = int(read("memory.failcnt") or 0)
    node["max_usage"] = int(read("memory.max_usage_in_bytes") or 0)
json.dump(node, open(path, "w"))
PY
  remove_cgroup
  python3 bench/drill_report.py summarize --mode "$mode" --dir "$dir" --budget "$budget" --after "$after"
}

for m in "${modes[@]}"; do run_mode "$m"; done

dirs=()
for m in "${modes[@]}"; do dirs+=("$raw/$m"); done
echo
python3 bench/drill_report.py table "${dirs[@]}"
echo
echo "bar: peak RSS ≤ 1.1 × budget ($((budget * 11 / 10 >> 20)) MiB), zero OOM kills, every request answered"
mkdir -p "$(dirname "$svg")"
gnuplot -e "out='$svg'; budget=$((budget >> 20)); modes='${modes[*]}'; dirs='${dirs[*]}'; heading='bulwarkd $node_desc: $rate req/s of $answer_mb MB answers for $secs s over $conns connections, budget $((budget >> 20)) MiB ($(date -u +%Y-%m-%d))'" \
  bench/drill_plot.gp
echo "plot: $svg"
echo "raw samples: $raw (rss.csv, scrapes.jsonl, load.json, node.json, summary.json per mode)"
echo "took $(($(date +%s) - started)) s"
