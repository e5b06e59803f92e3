# node.sh -- sourced by the HTTP benchmarks, as nginx.sh is: the node under test and wrk's POST.
#
# start_node PORT [policy]: a Release build/bench/bulwarkd (or $BULWARK_BIN_DIR/bulwarkd) on
# pipeline_bench.sh's config (bench/http_node_config.py: config/default.json's demo,
# http.threads 1, 2 scheduler threads) on 127.0.0.1:PORT, in "$tmp" (its log in $tmp/node.log).
# Sets node_pid and returns once /readyz answers, or fails.
#
# Sourcing it makes "$tmp" (a fresh folder) and, on exit, node_cleanup: the node stopped and
# "$tmp" removed. A script with more to clean traps its own cleanup and calls node_cleanup there.
tmp=$(mktemp -d)
node_pid=""
node_cleanup() {
  if [[ -n "$node_pid" ]]; then kill "$node_pid" 2>/dev/null; wait "$node_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap node_cleanup EXIT

start_node() {
  local port=$1 policy=${2:-stealing}
  bench/http_node_config.py config/default.json "$tmp" "$port" "$policy" >"$tmp/node.json"
  "${BULWARK_BIN_DIR:-build/bench}/bulwarkd" --config "$tmp/node.json" 2>"$tmp/node.log" &
  node_pid=$!
  for _ in $(seq 200); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.05
  done
  echo "bulwarkd did not become ready on port $port (log: $tmp/node.log)" >&2
  return 1
}

# post_lua FILE BODY: a wrk script that POSTs BODY as JSON.
post_lua() {
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '$2'
wrk.headers["Content-Type"] = "application/json"
LUA
}
