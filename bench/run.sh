#!/usr/bin/env bash
# run.sh -- every benchmark, Release build, no sanitizers. Paste the output into bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DBULWARK_BUILD_TESTS=OFF >/dev/null
cmake --build build/bench -j2 >/dev/null
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print $2/1024/1024 " GiB"}' /proc/meminfo), $(uname -r), g++ $(g++ -dumpfullversion)"
build/bench/bulwark_bench "$@"
bench/http_bench.sh
bench/pipeline_bench.sh
bench/recovery_bench.sh
