#!/usr/bin/env bash
# run.sh -- set up, build and run a Bulwark node on its embedded default: SQLite under the node's
# data dir, HTTP on 127.0.0.1:8080. The README's run command. Extra arguments replace the config:
#
#   scripts/run.sh                                  bulwarkd --config config/default.json
#   scripts/run.sh --config my.json                 another config
#   scripts/run.sh --check-config my.json           validate only
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DBULWARK_BUILD_TESTS=OFF \
  -DBULWARK_BUILD_BENCH=OFF >/dev/null
cmake --build build/release -j2 --target bulwarkd
if (($# == 0)); then
  set -- --config config/default.json
fi
exec build/release/bulwarkd "$@"
