#!/usr/bin/env bash
# build-caf-tsan.sh -- build CAF 0.17.6 (core, io, openssl; shared) with -fsanitize=thread, once per
# machine.
#
# Debian's libcaf is not instrumented, so TSan cannot see the happens-before edges inside CAF's
# mailboxes and scheduler and reports hundreds of false races (shared/CAF-0.17.md, section 11).
# This builds the same upstream release from Debian's source archive with TSan and installs it
# into a cache outside the repository:
#
#   ${BULWARK_CAF_TSAN_PREFIX:-/var/cache/bulwark/caf-0.17.6-tsan}/{include,lib}
#
# Use it with:  cmake -DBULWARK_TSAN=ON -DCAF_ROOT_DIR="$(scripts/build-caf-tsan.sh)" ...
# stdout carries only the prefix; progress and build output go to stderr. When the stamp file
# exists the script prints the prefix and exits at once. To rebuild, delete the prefix.
set -euo pipefail

CAF_VERSION=0.17.6
SRC_PACKAGE=actor-framework
ORIG_TARBALL="${SRC_PACKAGE}_${CAF_VERSION}.orig.tar.gz"
PREFIX="${BULWARK_CAF_TSAN_PREFIX:-/var/cache/bulwark/caf-${CAF_VERSION}-tsan}"
case "$PREFIX" in /*) ;; *) PREFIX="$PWD/$PREFIX" ;; esac # CMake needs an absolute prefix
STAMP="$PREFIX/.bulwark-caf-tsan.stamp" # written last: present = complete build
MARKER="$PREFIX/.bulwark-caf-tsan"      # written first: this directory is ours to wipe
TSAN_FLAGS="-fsanitize=thread -O1 -g -fno-omit-frame-pointer"
JOBS="${BULWARK_JOBS:-$(nproc)}"

have_build() {
  [[ -f "$STAMP" && -e "$PREFIX/lib/libcaf_core.so" && -e "$PREFIX/lib/libcaf_io.so" &&
    -e "$PREFIX/lib/libcaf_openssl.so" ]]
}
if have_build; then
  echo "$PREFIX"
  exit 0
fi

log() { echo "build-caf-tsan: $*" >&2; }
die() { log "error: $*"; exit 1; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
start=$SECONDS

# Root-only steps (apt sources, apt-get update, creating the cache dir) go through sudo when
# not root; the build itself runs as the calling user.
SUDO=()
if ((EUID != 0)) && command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
as_root() {
  ((EUID == 0)) || ((${#SUDO[@]})) || die "'$*' needs root: run as root or install sudo"
  "${SUDO[@]}" "$@"
}

# Compilers, cmake, curl, dpkg-dev: the package lists live in setup.sh only.
"$here/setup.sh" --tsan >&2

# --- the cache directory, and a lock so two concurrent runs build only once ----------------
if ! mkdir -p "$PREFIX" 2>/dev/null || [[ ! -w "$PREFIX" ]]; then
  as_root mkdir -p "$PREFIX"
  as_root chown "$(id -u):$(id -g)" "$PREFIX"
fi
# Never wipe a directory this script did not create (e.g. a mistaken BULWARK_CAF_TSAN_PREFIX=/usr/local).
if [[ ! -e "$MARKER" ]]; then
  [[ -z "$(ls -A "$PREFIX")" ]] || die "$PREFIX is not empty and was not created by this script"
  echo "CAF ${CAF_VERSION} TSan build by bulwark scripts/build-caf-tsan.sh" >"$MARKER"
fi
exec 9>"$PREFIX/.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if have_build; then # the other run finished it
  echo "$PREFIX"
  exit 0
fi
rm -rf "${PREFIX:?}/include" "${PREFIX:?}/lib" "${PREFIX:?}/share" "${PREFIX:?}/bin" "$STAMP"

work="$(mktemp -d "${TMPDIR:-/tmp}/caf-tsan.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- deb-src: make Debian's source index for this release available -------------------------
# shellcheck source=/dev/null
codename="$(. /etc/os-release && echo "${VERSION_CODENAME:?}")"
srcs_file="/etc/apt/sources.list.d/bulwark-deb-src.sources"
have_src() {
  # (grep without -q: an early exit could SIGPIPE apt-cache and fail the pipeline)
  apt-cache showsrc --only-source "$SRC_PACKAGE" 2>/dev/null | grep "^Version: ${CAF_VERSION}-" >/dev/null
}
ensure_deb_src() {
  have_src && return 0
  # A deb-src entry may exist but not be indexed yet: update before adding a duplicate.
  if grep -rqsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    have_src && return 0
  fi
  # Add our own deb822 file instead of editing the image's debian.sources; same mirror as the
  # binary packages.
  if [[ ! -e "$srcs_file" ]]; then
    local site keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    # shellcheck disable=SC2016 # $(SITE) is apt's format syntax, not a shell expansion
    site="$(apt-get indextargets --format '$(SITE)' 'Created-By: Packages' \
      "Release: $codename" 'Component: main' 2>/dev/null | awk 'NR == 1')"
    site="${site:-http://deb.debian.org/debian}"
    log "adding $srcs_file (deb-src $site $codename main)"
    {
      echo "# Added by bulwark scripts/build-caf-tsan.sh: Debian source packages (apt-get source)."
      echo "Types: deb-src"
      echo "URIs: $site"
      echo "Suites: $codename"
      echo "Components: main"
      if [[ -f "$keyring" ]]; then echo "Signed-By: $keyring"; fi
    } | as_root tee "$srcs_file" >/dev/null
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  have_src || die "no source package $SRC_PACKAGE ${CAF_VERSION} after apt-get update"
}
ensure_deb_src

# --- fetch the upstream tarball ----------------------------------------------------------------
# Only the orig tarball matters. `apt-get source` also wants Debian's packaging tarball
# (0.17.6-2.1.debian.tar.xz), which has been missing (404) from the archive, so its failure is
# tolerated; the orig tarball is then fetched from the URI apt prints, and checked against the
# SHA256 from the signed Sources index either way.
mkdir -p "$work/dl"
if ((EUID == 0)) && id _apt >/dev/null 2>&1; then
  chown _apt "$work" "$work/dl" # lets apt download sandboxed instead of warning
fi
uri_line="$(cd "$work/dl" && apt-get source --print-uris --only-source "$SRC_PACKAGE" |
  grep -F " $ORIG_TARBALL ")" || die "apt does not list $ORIG_TARBALL"
orig_uri="$(awk '{print $1}' <<<"$uri_line" | tr -d "'")"
orig_sha="$(grep -oE 'SHA256:[0-9a-f]{64}' <<<"$uri_line" | cut -d: -f2)" ||
  die "no SHA256 for $ORIG_TARBALL"
if ! (cd "$work/dl" && apt-get source -q --download-only --only-source "$SRC_PACKAGE") >&2; then
  log "apt-get source failed (see above; the packaging tarball is known to be missing)"
fi
if [[ ! -f "$work/dl/$ORIG_TARBALL" ]]; then
  log "fetching $orig_uri"
  curl -fsSL --retry 3 -o "$work/dl/$ORIG_TARBALL" "$orig_uri"
fi
echo "$orig_sha  $work/dl/$ORIG_TARBALL" | sha256sum -c --quiet - ||
  die "$ORIG_TARBALL does not match the archive's SHA256"
log "got $ORIG_TARBALL (sha256 $orig_sha)"

# --- unpack and patch ----------------------------------------------------------------------------
src="$work/src"
mkdir -p "$src"
tar -xzf "$work/dl/$ORIG_TARBALL" -C "$src" --strip-components=1
# g++ 12 no longer gets <limits> transitively here (Debian carries the same fix).
rb="$src/libcaf_io/caf/io/network/receive_buffer.hpp"
if ! grep -q '^#include <limits>' "$rb"; then
  sed -i 's|^#include <cstddef>$|#include <cstddef>\n#include <limits>|' "$rb"
  grep -q '^#include <limits>' "$rb" || die "could not patch $rb"
fi

# --- configure, build, install ---------------------------------------------------------------
# CMAKE_CXX_FLAGS_RELWITHDEBINFO is set too because CMake's default (-O2) comes after
# CMAKE_CXX_FLAGS and would win over -O1. CAF adds -std=c++11 itself (as in Debian's build).
# libcaf_io gets RUNPATH $ORIGIN so it loads this libcaf_core, not Debian's, which has the same
# soname (libcaf_core.so.0.17.6).
log "configuring (prefix $PREFIX)"
# shellcheck disable=SC2016 # '$ORIGIN' is for the dynamic loader, not the shell
cmake -S "$src" -B "$work/build" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$TSAN_FLAGS" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" \
  -DCMAKE_INSTALL_LIBDIR=lib \
  -DCMAKE_INSTALL_INCLUDEDIR=include \
  -DCMAKE_INSTALL_RPATH='$ORIGIN' \
  -DCAF_LOG_LEVEL=QUIET \
  -DCAF_BUILD_STATIC=OFF -DCAF_BUILD_STATIC_ONLY=OFF \
  -DCAF_NO_EXAMPLES=ON -DCAF_NO_UNIT_TESTS=ON -DCAF_NO_TOOLS=ON \
  -DCAF_NO_OPENCL=ON -DCAF_NO_PYTHON=ON >&2
log "building with -j$JOBS (about 4-6 minutes on 2 cores)"
cmake --build "$work/build" -j "$JOBS" >&2
cmake --install "$work/build" >&2

# --- check the result, then stamp it -------------------------------------------------------------
for f in include/caf/config.hpp include/caf/detail/build_config.hpp \
  include/caf/io/network/receive_buffer.hpp include/caf/openssl/all.hpp lib/libcaf_core.so \
  lib/libcaf_io.so lib/libcaf_openssl.so; do
  [[ -e "$PREFIX/$f" ]] || die "install is missing $PREFIX/$f"
done
for l in core io openssl; do
  readelf -d "$PREFIX/lib/libcaf_$l.so" | grep 'NEEDED.*libtsan' >/dev/null ||
    die "libcaf_$l.so is not linked against libtsan"
done
{
  echo "caf_version=$CAF_VERSION"
  echo "source=$ORIG_TARBALL sha256=$orig_sha"
  echo "cxx_flags=$TSAN_FLAGS"
  echo "compiler=$(c++ --version | awk 'NR == 1')"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$((SECONDS - start))"
} >"$STAMP"
log "done in $((SECONDS - start)) s"
echo "$PREFIX"
