#!/usr/bin/env bash
# test.sh -- set up, build and run Bulwark's test suite. The README's test command.
#
#   scripts/test.sh            everything (unit + integration), warnings as errors
#   scripts/test.sh --fast     unit tests only (deterministic, a few seconds): for iteration
#   scripts/test.sh --asan     everything under AddressSanitizer + UBSan (Debian's CAF)
#   scripts/test.sh --tsan     everything under ThreadSanitizer, against a TSan-built CAF that
#                              scripts/build-caf-tsan.sh makes once per machine (about 5 min)
#
# Each variant builds in its own folder (build/test, build/asan, build/tsan), so they coexist.
set -euo pipefail
cd "$(dirname "$0")/.."

variant="test"
filter=()
for arg in "$@"; do
  case "$arg" in
    --fast) filter=(-R '^unit$') ;;
    --asan) variant=asan ;;
    --tsan) variant=tsan ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--fast] [--asan|--tsan]" >&2; exit 2 ;;
  esac
done

scripts/setup.sh
# The node ships built Release (scripts/run.sh, deploy/Dockerfile: -O3); the tests compile at the
# same level, with debug info, so they test the code generation that ships: g++ 12.2 -O3 once
# turned a cache loop into one that never ended while every -O2 test passed (bench/RESULTS.md,
# "A loop that g++ -O3 never ended"). Sanitizer builds override the level (CMakeLists.txt).
# -Wmaybe-uninitialized is off at -O3: it guesses from the optimised code and g++ 12 reports
# std::optional<duration> members read behind their has_value() (GCC PR 80635); -Wuninitialized
# stays.
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O3 -g -DNDEBUG -Wno-maybe-uninitialized"
  -DBULWARK_WERROR=ON -DBULWARK_BUILD_BENCH=OFF)
case "$variant" in
  asan) flags+=(-DBULWARK_ASAN=ON) ;;
  tsan)
    scripts/setup.sh --tsan
    caf_prefix="$(scripts/build-caf-tsan.sh)"
    flags+=(-DBULWARK_TSAN=ON "-DCAF_ROOT_DIR=$caf_prefix")
    # Fail the test on the first report; reports from a run that exits 0 would pass unseen.
    # report_signal_unsafe=0: a test that dies of a signal (std::terminate's abort) reaches Catch's
    # handler, which allocates to name the test case; TSan would halt on that allocation first and
    # the name would be lost. No code of ours handles signals (bulwarkd sigwaits), so it hides
    # nothing of ours.
    export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 report_signal_unsafe=0 ${TSAN_OPTIONS:-}"
    ;;
esac
export ASAN_OPTIONS="detect_leaks=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="suppressions=$PWD/tests/ubsan.supp print_stacktrace=1 halt_on_error=1 ${UBSAN_OPTIONS:-}"

build="build/$variant"
cmake -S . -B "$build" "${flags[@]}" >/dev/null
cmake --build "$build" -j2

# The PostgreSQL tests run against a real server: a throwaway cluster on loopback in a temporary
# folder, started here and removed on exit (unit tests alone do not need it).
if ((${#filter[@]} == 0)); then
  pg_dir=$(mktemp -d /tmp/bulwark-pg.XXXXXX)
  trap 'scripts/pg-test-server.sh stop "$pg_dir" >/dev/null 2>&1 || true' EXIT
  BULWARK_TEST_PG_CONNINFO=$(scripts/pg-test-server.sh start "$pg_dir")
  export BULWARK_TEST_PG_CONNINFO
fi
# A failing test's whole output (logs included) goes by first; then, last, so that a truncated CI
# log still shows them: each failed assertion with its test case, and each sanitizer report.
# (No {n} intervals in the patterns: Debian's awk is mawk.)
log="$build/ctest-output.log"
if ctest --test-dir "$build" --output-on-failure -j2 "${filter[@]}" 2>&1 | tee "$log"; then
  exit 0
fi
echo "== what failed ($build, whole output in $log)"
awk '
  /^-+$/ && length($0) > 70 { header = !header; block = block $0 "\n"; next }
  header { block = block $0 "\n"; next }
  /: FAILED:$|^[^ ].*: FAILED:/ { printf "%s", block; block = ""; n = 6 }
  /(ThreadSanitizer|AddressSanitizer|LeakSanitizer): |runtime error: / { n = 40 }
  /^terminate called/ { n = 2 }
  /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T/ { next }
  n > 0 { print; n-- }
' "$log"
exit 1
