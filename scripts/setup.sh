#!/usr/bin/env bash
# setup.sh -- install the Debian packages Bulwark needs, and only those that are missing.
#
#   scripts/setup.sh           build, test and benchmark dependencies
#   scripts/setup.sh --tsan    the same plus what scripts/build-caf-tsan.sh needs
#   scripts/setup.sh --image   the same plus what scripts/image.sh needs (builds deploy/Dockerfile)
#
# Idempotent: one dpkg-query call decides; apt-get runs only when something is missing, so a
# machine that has everything returns in well under a second. Runs as root, or through sudo.
# This file is the single place for package lists: extend the arrays below, nowhere else.
set -euo pipefail

# --- package lists ----------------------------------------------------------------------------
# Needed by every build, test and benchmark run.
PACKAGES=(
  # toolchain (cmake + make; no ninja)
  build-essential g++ cmake pkg-config
  # libraries the project links (CMakeLists.txt, cmake/FindCAF.cmake)
  libcaf-dev prometheus-cpp-dev catch2 nlohmann-json3-dev
  libboost-dev libboost-system-dev libsqlite3-dev libpq-dev
  # mutual TLS between nodes (CAF's OpenSSL module; the engine checks the files with OpenSSL)
  libssl-dev openssl
  # PostgreSQL server for the database tests (they start their own cluster; see below)
  postgresql
  # helpers used by scripts and tests
  curl python3 clang-format
  # fuzzing (scripts/fuzz.sh): clang and its libFuzzer runtime
  clang libclang-rt-14-dev
  # judging tools: HTTP load generator, promtool (metrics-format check), and nginx as the
  # benchmark baseline. In bookworm `nginx` is the real binary package; `nginx-light` is only a
  # metapackage that adds the echo module on top of it, so plain `nginx` is the smaller choice.
  wrk prometheus nginx
  # plots: bench/memory_drill.sh draws its timeline (SVG) with gnuplot; -nox has no X11 deps
  gnuplot-nox
  # deploy/ validation (tests/deploy/validate.sh): yamllint on the manifests; the rest of its
  # tools (promtool, prometheus) are above, its npm packages come from tests/deploy/package.json
  yamllint
)
# Extra for scripts/build-caf-tsan.sh (--tsan): `apt-get source` and Debian source tarballs.
# (build-essential already pulls dpkg-dev; listed so the dependency is explicit.)
TSAN_PACKAGES=(
  dpkg-dev xz-utils ca-certificates
)
# Extra for scripts/image.sh (--image): buildah builds deploy/Dockerfile without a Docker daemon
# (chroot isolation, vfs storage); mmdebstrap makes its two Debian base images from Debian's own
# packages; iproute2 gives the running container a network namespace of its own.
IMAGE_PACKAGES=(
  buildah mmdebstrap iproute2
)
# ----------------------------------------------------------------------------------------------

usage() { echo "usage: $0 [--tsan] [--image]" >&2; }

# --- npm packages of the deploy/ validation (tests/deploy/validate.sh) --------------------------
# Pinned by tests/deploy/package-lock.json and installed into tests/deploy/node_modules (never
# globally) with `npm ci` when that is missing or older than the lock file; npm writes
# node_modules/.package-lock.json last, so an interrupted install is redone. Node.js comes from
# Debian (nodejs npm) only when there is no `node` at all. Skipped where the lock file is absent
# (deploy/Dockerfile's build stage copies only this script).
DEPLOY_TESTS="$(cd "$(dirname "$0")/.." && pwd)/tests/deploy"
npm_deps() {
  [[ -f "$DEPLOY_TESTS/package-lock.json" ]] || return 0
  local stamp="$DEPLOY_TESTS/node_modules/.package-lock.json"
  if [[ -f "$stamp" && ! "$DEPLOY_TESTS/package-lock.json" -nt "$stamp" ]]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || { echo "setup.sh: node is installed but npm is not" >&2; exit 1; }
  echo "setup.sh: npm ci --prefix tests/deploy" >&2
  npm ci --prefix "$DEPLOY_TESTS" --no-audit --no-fund --loglevel=error >/dev/null
  echo "setup.sh: installed tests/deploy/node_modules from package-lock.json"
}

want=("${PACKAGES[@]}")
for arg in "$@"; do
  case "$arg" in
    --tsan) want+=("${TSAN_PACKAGES[@]}") ;;
    --image) want+=("${IMAGE_PACKAGES[@]}") ;;
    -h|--help) usage; exit 0 ;;
    *) usage; exit 2 ;;
  esac
done
if [[ -f "$DEPLOY_TESTS/package-lock.json" ]] && ! command -v node >/dev/null 2>&1; then
  want+=(nodejs npm)
fi

# One dpkg-query for all packages (fast). Unknown packages print nothing and make it exit 1,
# hence `|| true`; anything not reported as "installed" (absent, config-files, half-installed)
# counts as missing.
declare -A have=()
while read -r pkg status; do
  [[ "$status" == installed ]] && have["$pkg"]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${want[@]}" 2>/dev/null || true)

missing=()
for pkg in "${want[@]}"; do
  [[ -n "${have[$pkg]:-}" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "setup.sh: all packages present (${#want[@]} checked)"
  npm_deps
  exit 0
fi

# Root runs apt directly; otherwise sudo if it exists; otherwise stop with a clear message.
SUDO=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "setup.sh: missing packages: ${missing[*]}" >&2
    echo "setup.sh: not root and sudo is not installed; run this script as root" >&2
    exit 1
  fi
fi

# Installing must not start daemons: nginx would grab port 80 (and its postinst fails when
# port 80 is already taken), prometheus would grab 9090 and postgresql 5432, where the tests
# and benchmarks start their own instances. If the machine has no policy-rc.d (Docker images
# usually ship one that denies everything), install a temporary one that denies all starts and
# remove it again afterwards. An existing policy-rc.d is site policy and is left alone.
POLICY=/usr/sbin/policy-rc.d
POLICY_MARK="# bulwark setup.sh: temporary, deny service starts during install"
own_policy=0
remove_policy() {
  if ((own_policy)) && grep -qxF "$POLICY_MARK" "$POLICY" 2>/dev/null; then
    "${SUDO[@]}" rm -f "$POLICY"
  fi
}
if [[ ! -e "$POLICY" ]] || grep -qxF "$POLICY_MARK" "$POLICY" 2>/dev/null; then
  own_policy=1
  trap remove_policy EXIT
  printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
fi

echo "setup.sh: installing ${missing[*]}" >&2
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup.sh: installed ${#missing[@]} package(s): ${missing[*]}"
npm_deps
