#!/usr/bin/env bash
# fuzz.sh -- build the libFuzzer targets (fuzz/*_fuzz.cpp) with clang, ASan and UBSan, and run
# each for a fixed time on its seed corpus (fuzz/corpus/<target>). Fails on the first crash, leak,
# sanitizer report, hang or out-of-memory, and names the reproducer (rerun it with
# `build/fuzz/<target> <file>`; a fixed finding becomes a regression test in tests/). Prints, per
# target, the executions, the coverage (edges, features) and the corpus size reached.
#
#   scripts/fuzz.sh [seconds per target, default 60] [target ...]
#   scripts/fuzz.sh --seeds      rewrite fuzz/corpus/remote_message_fuzz from the message types
set -euo pipefail
cd "$(dirname "$0")/.."

secs=60
targets=()
seeds_only=0
for arg in "$@"; do
  case "$arg" in
    --seeds) seeds_only=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    [0-9]*) secs=$arg ;;
    *) targets+=("$arg") ;;
  esac
done

scripts/setup.sh
build=build/fuzz
CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBULWARK_FUZZ=ON \
  -DBULWARK_BUILD_TESTS=OFF -DBULWARK_BUILD_BENCH=OFF >/dev/null
if ((${#targets[@]} == 0)); then
  for f in fuzz/*_fuzz.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
cmake --build "$build" -j2 --target "${targets[@]}"

export ASAN_OPTIONS="detect_leaks=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="suppressions=$PWD/tests/ubsan.supp print_stacktrace=1 halt_on_error=1 ${UBSAN_OPTIONS:-}"

if ((seeds_only)); then
  dir=fuzz/corpus/remote_message_fuzz
  mkdir -p "$dir"
  BULWARK_FUZZ_WRITE_SEEDS=$dir "$build/remote_message_fuzz" -runs=0 >/dev/null 2>&1
  echo "$dir: $(ls "$dir" | wc -l) seeds"
  exit 0
fi

work=$(mktemp -d /tmp/bulwark-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
status=0
echo "| target | seconds | executions | exec/s | edges (cov) | features (ft) | corpus |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "$work/$t.artifacts"
  log="$work/$t.log"
  # New inputs go to the work folder; the seeds in the repo are only read.
  if ! "$build/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$work/$t.artifacts/" "$work/$t" "fuzz/corpus/$t" >"$log" 2>&1; then
    status=1
    tail -60 "$log"
    for a in "$work/$t.artifacts"/*; do
      [[ -e $a ]] || continue
      mkdir -p fuzz/findings
      cp "$a" "fuzz/findings/$t-$(basename "$a")"
      echo "$t: reproducer kept as fuzz/findings/$t-$(basename "$a")" >&2
    done
  fi
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$last")
  echo "| $t | $secs | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} |"
done
exit "$status"
