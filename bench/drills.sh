#!/usr/bin/env bash
# drills.sh -- the fault drills (bench/drills.py): a hung and a killed PostgreSQL, and the
# gateway, breaker, database and pool crashed, each against a fresh bulwarkd on the shipped
# defaults under an open-loop load; one line per drill with the time to detect, the time to
# recover, unanswered requests (must be 0), the books and the answers by outcome.
#
#   bench/drills.sh                      Release build, full-length drills
#   bench/drills.sh --ci --bulwarkd BIN  the test suite's twin: the given binary, shorter drills
#   ... [--only postgres_hung,crash_gateway] [--json results.json]
set -euo pipefail
cd "$(dirname "$0")/.."

bulwarkd=""
args=()
while (($#)); do
  case "$1" in
    --bulwarkd) bulwarkd="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [[ -z "$bulwarkd" ]]; then
  scripts/setup.sh >/dev/null
  cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DBULWARK_BUILD_TESTS=OFF >/dev/null
  cmake --build build/bench -j2 --target bulwarkd >/dev/null
  bulwarkd=build/bench/bulwarkd
fi

tmp=$(mktemp -d /tmp/bulwark-drills.XXXXXX)
trap 'scripts/pg-test-server.sh stop "$tmp/pg" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # the server runs as postgres and must reach its folder
conninfo=$(scripts/pg-test-server.sh start "$tmp/pg")
python3 bench/drills.py --bulwarkd "$bulwarkd" --pg-dir "$tmp/pg" --conninfo "$conninfo" \
  "${args[@]+"${args[@]}"}"
