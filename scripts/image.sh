#!/usr/bin/env bash
# image.sh -- build deploy/Dockerfile for real, without Docker, then run the image and probe it
# from outside the container, as the user the image declares.
#
#   scripts/image.sh [--keep]    as root; about 4 minutes on 2 cores with a warm apt mirror
#
#   1. bases: `mmdebstrap --variant=minbase bookworm` (bookworm, -updates, -security; merged /usr
#      by mmdebstrap's hook, not the usrmerge package, as debuerreotype does) imported as
#      debian:bookworm, and the same with debuerreotype's slim path excludes (no man pages, docs,
#      locales) as debian:bookworm-slim: the two names the Dockerfile's FROM lines use, made here
#      from Debian's packages instead of pulled from a registry (--pull=never).
#   2. build: `buildah bud` (chroot isolation, vfs storage, docker format so HEALTHCHECK is kept)
#      of deploy/Dockerfile with deploy/Dockerfile.dockerignore, context the repository root.
#      Prints the image's size: uncompressed, and as an OCI archive with gzip layers (what a
#      registry would store and a node would pull).
#   3. run: the image's own ENTRYPOINT under `buildah run`, in a network namespace of its own
#      (a veth pair, the container at $ADDR) and a memory cgroup limited to 512 MiB (the
#      Kubernetes limit in deploy/k8s/deployment.yaml), so memory.source "cgroup" is real.
#   4. probes, from the host through the veth: /healthz, /readyz, /metrics (promtool check
#      metrics; bulwark_memory_limit_bytes is the cgroup's 512 MiB), one query; the admin port
#      refuses connections from outside (it listens on the container's loopback); the image's
#      HEALTHCHECK command passes inside the container, where the admin listener answers;
#      bulwarkd runs as uid/gid 10001, not root.
#   5. SIGTERM: bulwarkd drains and exits 0.
#
# Everything lives in $BULWARK_IMAGE_DIR (default /var/tmp/bulwark-image: storage, bases, logs),
# wiped at the start and removed at the end unless --keep (then reuse it with
#   buildah --root $BULWARK_IMAGE_DIR/storage --runroot $BULWARK_IMAGE_DIR/run --storage-driver vfs ...).
# Needs: scripts/setup.sh --image (buildah, mmdebstrap, iproute2), promtool, curl, python3, and
# network access to deb.debian.org (or $BULWARK_IMAGE_MIRROR) for the bases and the build's apt.
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    -h | --help)
      sed -n '2,28p' "$0"
      exit 0
      ;;
    *)
      echo "usage: $0 [--keep]" >&2
      exit 2
      ;;
  esac
done

die() {
  echo "image.sh: FAIL: $*" >&2
  exit 1
}
say() { echo "image.sh: $*"; }
((EUID == 0)) || die "run as root (buildah's vfs storage, a memory cgroup, a network namespace)"
for tool in buildah mmdebstrap ip promtool curl python3; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup.sh --image"
done

WORK=${BULWARK_IMAGE_DIR:-/var/tmp/bulwark-image}
MIRROR=${BULWARK_IMAGE_MIRROR:-http://deb.debian.org/debian}
SECURITY=${BULWARK_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
IMAGE=localhost/bulwark:dev
LIMIT=$((512 * 1024 * 1024))
HOST_ADDR=10.231.77.1
ADDR=10.231.77.2
NS=bulwark-image-$$
VETH_HOST=bwkh$$
VETH_CTR=bwkc$$
B=(buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
export BUILDAH_ISOLATION=chroot

CG=""
RUN_PID=""
cleanup() {
  set +e
  [[ -n "$RUN_PID" ]] && kill -KILL "$RUN_PID" 2>/dev/null && wait "$RUN_PID" 2>/dev/null
  if [[ -n "$CG" && -d "$CG" ]]; then
    for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    sleep 0.2
    rmdir "$CG" 2>/dev/null
  fi
  ip netns del "$NS" 2>/dev/null
  ip link del "$VETH_HOST" 2>/dev/null
  "${B[@]}" rm --all >/dev/null 2>&1
  if ((KEEP == 0)); then
    "${B[@]}" rmi --all --force >/dev/null 2>&1
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

rm -rf "$WORK"
mkdir -p "$WORK"
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0)) s"; }

# --- 1. base images from Debian's packages ------------------------------------------------------
SOURCES=("deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main"
  "deb $SECURITY bookworm-security main")
# Merged /usr set up by mmdebstrap's hook, as debuerreotype does, rather than by installing the
# usrmerge package, which would pull perl (about 50 MB) into both bases.
MERGED_USR=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
# debuerreotype's --slim excludes (what debian:bookworm-slim leaves out), copyright files kept.
SLIM=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/groff/*' --dpkgopt='path-exclude=/usr/share/linda/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*')
import_base() { # tarball name
  local ctr
  ctr=$("${B[@]}" from scratch)
  "${B[@]}" add "$ctr" "$1" / >/dev/null
  "${B[@]}" config --cmd /bin/bash \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  "${B[@]}" commit -q "$ctr" "$2" >/dev/null
  "${B[@]}" rm "$ctr" >/dev/null
}
say "bases: mmdebstrap --variant=minbase bookworm (full and slim)"
mmdebstrap --variant=minbase "${MERGED_USR[@]}" bookworm "$WORK/bookworm.tar" "${SOURCES[@]}" \
  >"$WORK/mmdebstrap.log" 2>&1 || die "mmdebstrap failed, see $WORK/mmdebstrap.log (--keep)"
mmdebstrap --variant=minbase "${MERGED_USR[@]}" "${SLIM[@]}" bookworm "$WORK/slim.tar" "${SOURCES[@]}" \
  >>"$WORK/mmdebstrap.log" 2>&1 || die "mmdebstrap (slim) failed, see $WORK/mmdebstrap.log (--keep)"
import_base "$WORK/bookworm.tar" localhost/debian:bookworm
import_base "$WORK/slim.tar" localhost/debian:bookworm-slim
rm -f "$WORK/bookworm.tar" "$WORK/slim.tar"
say "bases ready ($(elapsed))"

# --- 2. build -------------------------------------------------------------------------------------
say "build: buildah bud -f deploy/Dockerfile (log: $WORK/build.log)"
if ! "${B[@]}" bud --pull=never --format docker --ignorefile deploy/Dockerfile.dockerignore \
  -f deploy/Dockerfile -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
  tail -n 30 "$WORK/build.log" >&2
  die "the image did not build"
fi
size_human=$("${B[@]}" images --format '{{.Size}}' "$IMAGE")
"${B[@]}" push -q "$IMAGE" "oci-archive:$WORK/bulwark.oci.tar" >/dev/null 2>&1 ||
  die "could not write the image as an OCI archive"
archive_bytes=$(stat -c %s "$WORK/bulwark.oci.tar")
rm -f "$WORK/bulwark.oci.tar"
"${B[@]}" inspect --type image "$IMAGE" >"$WORK/inspect.json"
mapfile -t info < <(python3 - "$WORK/inspect.json" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))["Docker"]["config"]
print(cfg.get("User", ""))
print(json.dumps(cfg.get("Entrypoint") or []))
print(json.dumps((cfg.get("Healthcheck") or {}).get("Test") or []))
print(",".join(sorted(cfg.get("ExposedPorts") or {})))
EOF
)
user=${info[0]} entrypoint=${info[1]} healthcheck=${info[2]} exposed=${info[3]}
say "built $IMAGE ($(elapsed)): $size_human uncompressed, $((archive_bytes / 1000000)) MB as an OCI archive (gzip layers, $archive_bytes bytes); user $user, exposes $exposed"
[[ "$user" == 10001:10001 ]] || die "the image's USER is '$user', expected 10001:10001"
[[ "$exposed" == 8080/tcp ]] || die "the image exposes '$exposed', expected 8080/tcp"
[[ "$healthcheck" == '["CMD-SHELL",'* ]] || die "the image has no HEALTHCHECK (got $healthcheck)"

# --- 3. run it: own network namespace, 512 MiB memory cgroup, the image's entrypoint ------------
ip netns add "$NS"
ip link add "$VETH_HOST" type veth peer name "$VETH_CTR"
ip link set "$VETH_CTR" netns "$NS"
ip addr add "$HOST_ADDR/30" dev "$VETH_HOST"
ip link set "$VETH_HOST" up
ip netns exec "$NS" ip addr add "$ADDR/30" dev "$VETH_CTR"
ip netns exec "$NS" ip link set "$VETH_CTR" up
ip netns exec "$NS" ip link set lo up

if [[ -d /sys/fs/cgroup/memory ]]; then # cgroup v1
  CG=/sys/fs/cgroup/memory/bulwark-image-$$
  mkdir "$CG"
  echo "$LIMIT" >"$CG/memory.limit_in_bytes"
else # cgroup v2: the memory controller must be enabled for the root's children
  CG=/sys/fs/cgroup/bulwark-image-$$
  grep -qw memory /sys/fs/cgroup/cgroup.subtree_control ||
    echo +memory >/sys/fs/cgroup/cgroup.subtree_control
  mkdir "$CG"
  echo "$LIMIT" >"$CG/memory.max"
fi

# nsenter --net, not `ip netns exec`: the latter also remounts /sys for the new namespace, which
# hides /sys/fs/cgroup from the node (its cgroup memory source then finds no limit).
ctr=$("${B[@]}" from --pull=never "$IMAGE")
mapfile -t entry < <(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' "$entrypoint")
say "run: ${entry[*]} (network namespace $NS at $ADDR, memory cgroup $CG, limit 512 MiB)"
(
  echo "$BASHPID" >"$CG/cgroup.procs"
  exec nsenter --net="/run/netns/$NS" "${B[@]}" run "$ctr" -- "${entry[@]}"
) >"$WORK/node.log" 2>&1 &
RUN_PID=$!

base=http://$ADDR:8080
for _ in $(seq 100); do
  curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break
  kill -0 "$RUN_PID" 2>/dev/null || {
    cat "$WORK/node.log" >&2
    die "bulwarkd exited before it served"
  }
  sleep 0.1
done

# --- 4. probes from outside -------------------------------------------------------------------
fetch() { # path -> body in $WORK/body, status echoed
  curl -sS -o "$WORK/body" -w '%{http_code}' "$@"
}
code=$(fetch "$base/healthz")
[[ "$code" == 200 ]] || die "/healthz answered $code: $(cat "$WORK/body")"
say "GET /healthz: $code $(cat "$WORK/body")"
code=$(fetch "$base/readyz")
[[ "$code" == 200 ]] && grep -q '"ready":true' "$WORK/body" ||
  die "/readyz answered $code: $(cat "$WORK/body")"
say "GET /readyz: $code $(cat "$WORK/body")"
code=$(fetch "$base/metrics")
[[ "$code" == 200 ]] || die "/metrics answered $code"
promtool check metrics <"$WORK/body" >"$WORK/promtool.log" 2>&1 ||
  die "promtool check metrics: $(cat "$WORK/promtool.log")"
limit_seen=$(awk '$1 == "bulwark_memory_limit_bytes" { printf "%d", $2 }' "$WORK/body")
[[ "$limit_seen" == "$LIMIT" ]] ||
  die "bulwark_memory_limit_bytes is '$limit_seen', expected the cgroup's $LIMIT"
say "GET /metrics: $code, $(grep -c '^bulwark_' "$WORK/body") bulwark samples, promtool check metrics passes, memory limit read from the cgroup: $limit_seen"
code=$(fetch -X POST -H 'Content-Type: application/json' -d '{"params":[1]}' \
  "$base/v1/query/user_by_id")
[[ "$code" == 200 ]] && grep -q 'Ada Lovelace' "$WORK/body" ||
  die "query user_by_id answered $code: $(cat "$WORK/body")"
say "POST /v1/query/user_by_id: $code $(cut -c1-80 "$WORK/body")..."

# The admin listener is on the container's loopback: from outside, nothing listens on 8081.
set +e
curl -sS -o /dev/null --max-time 5 "http://$ADDR:8081/v1/status" 2>"$WORK/admin.err"
admin_rc=$?
set -e
((admin_rc == 7)) || die "admin port from outside: curl exit $admin_rc (expected 7, refused)"
say "admin port $ADDR:8081 from outside: refused (curl exit 7)"

hc_cmd=$(python3 -c 'import json,sys; t=json.loads(sys.argv[1]); print(t[1])' "$healthcheck")
nsenter --net="/run/netns/$NS" "${B[@]}" run "$ctr" -- /bin/sh -c "$hc_cmd" ||
  die "the image's HEALTHCHECK ($hc_cmd) failed inside the container"
say "HEALTHCHECK inside the container passes: $hc_cmd"
# ... and inside the container the admin listener is there (so "refused" above is its address).
admin_inside=$(nsenter --net="/run/netns/$NS" "${B[@]}" run "$ctr" -- \
  curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:8081/v1/status) || true
[[ "$admin_inside" == 200 ]] || die "admin /v1/status inside the container answered '$admin_inside'"
say "admin 127.0.0.1:8081/v1/status inside the container: 200"

node_pid=""
for p in $(cat "$CG/cgroup.procs"); do
  [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == bulwarkd ]] && node_pid=$p
done
[[ -n "$node_pid" ]] || die "no bulwarkd process in $CG"
uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$node_pid/status")
gids=$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "/proc/$node_pid/status")
[[ "$uids" == "10001 10001 10001 10001" && "$gids" == "10001 10001 10001 10001" ]] ||
  die "bulwarkd runs as uid ($uids) gid ($gids), expected 10001 throughout"
rss_kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$node_pid/status")
say "bulwarkd (pid $node_pid) runs as uid/gid 10001, RSS $((rss_kb / 1024)) MiB"

# --- 5. SIGTERM: drain and exit 0 ---------------------------------------------------------------
kill -TERM "$node_pid"
set +e
wait "$RUN_PID"
rc=$?
set -e
RUN_PID=""
((rc == 0)) || {
  tail -n 20 "$WORK/node.log" >&2
  die "after SIGTERM, the container exited $rc"
}
grep -q 'bulwarkd: stopped' "$WORK/node.log" || die "no 'bulwarkd: stopped' in the node's log"
say "SIGTERM: bulwarkd drained and exited 0"
say "PASS ($(elapsed)): image $IMAGE, $size_human uncompressed, $((archive_bytes / 1000000)) MB compressed"
