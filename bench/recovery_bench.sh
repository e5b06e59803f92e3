#!/usr/bin/env bash
# recovery_bench.sh -- how long until a Release bulwarkd serves again after its PostgreSQL comes
# back. An open-loop load (bulwark_load, constant rate) runs the uncached point query for
# 25 s; at 5 s every PostgreSQL process is killed (SIGKILL, as a crash), at 10 s the server is
# started again. Prints the answers per 250 ms and the recovery time: from the restart until
# the 2xx rate first holds >= 90 % of the offered rate for a whole second.
#
#   bench/recovery_bench.sh [rate, default 500]
#
# The node runs the default breaker and pool (open wait 5 s doubling per consecutive open up
# to 60 s, connect backoff 100 ms doubling up to 10 s, both jittered), so the number is what an
# operator gets without tuning.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-500}

scripts/setup.sh >/dev/null
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DBULWARK_BUILD_TESTS=OFF >/dev/null
cmake --build build/bench -j2 --target bulwarkd bulwark_load >/dev/null

tmp=$(mktemp -d)
node_pid=""
cleanup() {
  if [[ -n "$node_pid" ]]; then kill "$node_pid" 2>/dev/null; wait "$node_pid" 2>/dev/null || true; fi
  scripts/pg-test-server.sh stop "$tmp/pg" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

chmod 755 "$tmp" # the server runs as postgres and must reach its folder
conninfo=$(scripts/pg-test-server.sh start "$tmp/pg")
node_port=18185
python3 - "$tmp" "$node_port" "$conninfo" <<'PY'
import json, sys
tmp, port, conninfo = sys.argv[1:4]
cfg = json.load(open("config/default.json"))
cfg["http"]["listen"] = "127.0.0.1:" + port
cfg["admin"]["listen"] = ""  # no admin routes needed
cfg["node"]["data_dir"] = tmp + "/data"
cfg["log"]["level"] = "warn"
cfg["backend"]["kind"] = "postgres"
cfg["backend"]["postgres"]["conninfo"] = conninfo
cfg["rate_limiter"]["rate_per_sec"] = 1e8
cfg["rate_limiter"]["burst"] = 100000000
for s in cfg["statements"].values():
    s["cache_ttl_ms"] = 0
json.dump(cfg, open(tmp + "/node.json", "w"))
PY
build/bench/bulwarkd --config "$tmp/node.json" 2>"$tmp/node.log" &
node_pid=$!
for _ in $(seq 200); do curl -fs "http://127.0.0.1:$node_port/readyz" >/dev/null && break; sleep 0.05; done
curl -fs -X POST -d '{"params": [1]}' "http://127.0.0.1:$node_port/v1/query/user_by_id" >/dev/null

build/bench/bulwark_load --port "$node_port" --path /v1/query/user_by_id --method POST \
  --body '{"params": [1]}' --rate "$rate" --seconds 25 --connections 64 --series 250 \
  >"$tmp/load.out" &
load_pid=$!
t0=$(date +%s.%N)
sleep 5
t_kill=$(date +%s.%N) # when the kill was sent
scripts/pg-test-server.sh kill "$tmp/pg"
sleep 5
scripts/pg-test-server.sh restart "$tmp/pg" >/dev/null 2>&1
t_back=$(date +%s.%N) # when the restarted server accepts connections (restart waits for it)
wait "$load_pid"

python3 - "$tmp/load.out" "$rate" "$t0" "$t_kill" "$t_back" <<'PY'
import sys
path, rate, t0, t_kill, t_back = sys.argv[1], float(sys.argv[2]), *map(float, sys.argv[3:6])
series = []
for line in open(path):
    if line.startswith("series,"):
        _, ms, ok, other = line.strip().split(",")
        series.append((int(ms), int(ok), int(other)))
    else:
        print(line.rstrip())
kill_ms, back_ms = (t_kill - t0) * 1000, (t_back - t0) * 1000
print(f"offered {rate:.0f} req/s; PostgreSQL killed at {kill_ms/1000:.2f} s, accepting again at {back_ms/1000:.2f} s (since the load started)")
print("answers per second (2xx/other): " + " ".join(f"{ms//1000}s:{sum(o for m, o, _ in series if m//1000 == ms//1000)}/{sum(x for m, _, x in series if m//1000 == ms//1000)}" for ms, _, _ in series if ms % 1000 == 0))
need = 0.9 * rate * 0.25
by = {ms: ok for ms, ok, _ in series}
recovered = None
for ms, _, _ in series:
    if ms < back_ms:
        continue
    window = [by.get(ms + 250 * k, 0) for k in range(4)]
    if all(x >= need for x in window):
        recovered = ms
        break
if recovered is None:
    print("did not reach 90 % of the offered rate for a whole second before the load ended")
else:
    print(f"recovery: 2xx >= 90 % of the offered rate from {recovered/1000:.2f} s, "
          f"{(recovered - back_ms)/1000:.2f} s after PostgreSQL was back (bucket resolution 0.25 s)")
PY
echo "node log (warnings):"; grep -E "WARN|ERROR" "$tmp/node.log" | cut -c1-160 | head -20
