#!/usr/bin/env bash
# check.sh -- the installed package works outside the source tree: installs BUILD_DIR into a
# temporary prefix, configures examples/installed (find_package(bulwark 0.1 REQUIRED), nothing of
# this tree on its include path) in a temporary folder, builds it, and runs it on the installed
# config/default.json: an actor of the application's in the engine's tree, on the pressure signal,
# a query through the facade and one from another actor of the application's.
#
#   tests/package/check.sh BUILD_DIR      (ctest runs it as `package`)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$1" && pwd)
tmp=$(mktemp -d /tmp/bulwark-package.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log"
# Only the package's own files: no header of the source tree may be needed.
test -f "$tmp/prefix/include/bulwark/runtime/facade.hpp"
test -f "$tmp/prefix/lib/cmake/bulwark/bulwarkConfig.cmake"

# The application is copied out, so nothing relative to the tree can leak in.
cp -r "$src/examples/installed" "$tmp/app"
cmake -S "$tmp/app" -B "$tmp/app-build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$tmp/configure.log" || { cat "$tmp/configure.log"; exit 1; }
if grep -rq -- "-I$src\|-isystem $src" "$tmp/app-build/CMakeFiles/embedder.dir/flags.make"; then
  echo "check.sh: the application's include path reaches into the source tree" >&2
  exit 1
fi
cmake --build "$tmp/app-build" -j2 >"$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log"; exit 1; }

# A version the package does not accept is refused (0.x: same minor only).
sed 's/find_package(bulwark 0.1 REQUIRED)/find_package(bulwark 0.2 REQUIRED)/' \
  "$tmp/app/CMakeLists.txt" >"$tmp/app/CMakeLists.txt.new"
mkdir -p "$tmp/app2" && cp "$tmp/app/main.cpp" "$tmp/app2/" && mv "$tmp/app/CMakeLists.txt.new" "$tmp/app2/CMakeLists.txt"
if cmake -S "$tmp/app2" -B "$tmp/app2-build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null 2>&1; then
  echo "check.sh: find_package(bulwark 0.2) accepted a 0.1 package" >&2
  exit 1
fi

cd "$tmp"
python3 - "$tmp/prefix/share/bulwark/default.json" "$tmp/node.json" "$tmp/data" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["node"]["data_dir"] = sys.argv[3]
cfg["http"]["listen"] = "127.0.0.1:0"  # the facade needs no listener; nothing is served here
cfg["admin"]["listen"] = ""
cfg["log"]["level"] = "warn"
json.dump(cfg, open(sys.argv[2], "w"))
PY
out=$("$tmp/app-build/embedder" "$tmp/node.json" user_by_id 3 2>&1)
echo "$out"
# The config's log.level holds for an embedded engine too (warn: no INFO lines).
if grep -q ' INFO ' <<<"$out"; then
  echo "check.sh: log.level warn was not applied by the facade" >&2
  exit 1
fi
grep -q '^pressure: low$' <<<"$out"
grep -q '^facade: 1 rows, columns id name email$' <<<"$out"
grep -q '^transaction: 2 steps committed$' <<<"$out"
grep -q '^actor: rows: 1$' <<<"$out"
echo "check.sh: the installed package builds and runs an application outside the tree"
