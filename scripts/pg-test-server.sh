#!/usr/bin/env bash
# pg-test-server.sh -- a throwaway PostgreSQL for the tests, on loopback, in a folder of its own.
#
#   scripts/pg-test-server.sh start DIR   initdb into DIR/data, start on 127.0.0.1 at the first
#                                         free port from 55432 up, create database bulwark_test,
#                                         print its libpq conninfo (the only output on stdout)
#   scripts/pg-test-server.sh stop DIR    stop it at once (-m immediate) and remove DIR
#   scripts/pg-test-server.sh kill DIR    fault drill: SIGKILL every server process, keep DIR
#   scripts/pg-test-server.sh restart DIR start a killed server again on its port (recovers)
#
#   CONN=$(scripts/pg-test-server.sh start /tmp/pgt) && BULWARK_TEST_PG_CONNINFO="$CONN" ...
#   scripts/pg-test-server.sh stop /tmp/pgt
#
# Uses the newest /usr/lib/postgresql/*/bin (override with PG_BIN); the system cluster and its
# service are not needed. Durability is off (fsync, full_page_writes, synchronous_commit): the
# data is thrown away. Trust authentication, listening on 127.0.0.1 only. As root, the server
# runs as the postgres user (initdb refuses root) and DIR is chowned to it.
set -euo pipefail

MARKER=.bulwark-pg-test-server
FIRST_PORT=55432
PORT_TRIES=100

die() {
  echo "pg-test-server: $*" >&2
  exit 1
}

usage() {
  sed -n '2,11p' "$0" >&2
  exit 2
}

pg_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    echo "$PG_BIN"
    return
  fi
  local newest
  newest="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
    sort -V | tail -n 1)"
  [[ -n "$newest" ]] || die "no /usr/lib/postgresql/*/bin: install the postgresql package (scripts/setup.sh)"
  echo "$newest"
}

# Runs a server binary as the postgres user when we are root, as ourselves otherwise.
as_owner() {
  if [[ "$(id -u)" -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# True when something already accepts connections on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  local dir=$1 bin port started=""
  bin="$(pg_bin)"
  [[ -x "$bin/pg_ctl" ]] || die "$bin/pg_ctl not found"
  # pg_ctl -o splits its option string on blanks, so the folder must not contain any.
  [[ "$dir" != *[[:space:]]* ]] || die "DIR must not contain blanks: '$dir'"
  if [[ -e "$dir/data" ]]; then
    die "$dir/data exists: run '$0 stop $dir' first"
  fi
  # stop removes DIR, so start only takes a new or empty folder.
  if [[ -d "$dir" && -n "$(ls -A "$dir")" ]]; then
    die "$dir is not empty"
  fi
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd -P)"
  # The Unix socket lives in DIR; its path must fit sun_path (107 bytes).
  ((${#dir} + 20 < 107)) || die "DIR path too long for a Unix socket: $dir"
  touch "$dir/$MARKER"
  if [[ "$(id -u)" -eq 0 ]]; then
    chown postgres:postgres "$dir"
    runuser -u postgres -- test -w "$dir" ||
      die "user postgres cannot write $dir (are its parent folders searchable?)"
  fi
  cd "$dir" # initdb and the server run with this as cwd, readable by their user

  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    die "initdb failed"
  }

  # Another process may take a port between the check and the bind: the start then fails and
  # the next port is tried. The first port tried is random: a server that a test killed frees
  # its port until it is restarted there, and a server started meanwhile (tests run in
  # parallel) must not find that port first.
  local offset=$((RANDOM % PORT_TRIES)) try
  for ((try = 0; try < PORT_TRIES; try++)); do
    port=$((FIRST_PORT + (offset + try) % PORT_TRIES))
    port_in_use "$port" && continue
    # pg_ctl appends to the log: keep only this attempt's lines for the check below.
    if [[ -f "$dir/log" ]]; then
      : >"$dir/log"
    fi
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 -o "-k $dir -p $port \
-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off" \
      start >/dev/null 2>&1; then
      started=$port
      break
    fi
    # A server that came up and went away again leaves no pid file; anything else is fatal.
    if [[ -f "$dir/data/postmaster.pid" ]]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    grep -q "could not bind\|could not create listen socket\|Address already in use" \
      "$dir/log" 2>/dev/null || {
      tail -n 20 "$dir/log" >&2 || true
      die "the server did not start (log: $dir/log)"
    }
  done
  [[ -n "$started" ]] || die "no free port in $FIRST_PORT..$((FIRST_PORT + PORT_TRIES - 1))"

  "$bin/createdb" -h 127.0.0.1 -p "$started" -U postgres bulwark_test || {
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    die "createdb failed (log: $dir/log)"
  }
  echo "$started" >"$dir/port"
  echo "host=127.0.0.1 port=$started dbname=bulwark_test user=postgres"
}

# Fault drills: kill every server process at once (as a crash would), keeping the data; then
# start it again on the same port, through crash recovery.
kill_server() {
  local dir=$1 pid children p
  [[ -f "$dir/data/postmaster.pid" ]] || die "no server running in $dir"
  pid=$(head -n 1 "$dir/data/postmaster.pid")
  children=$(pgrep -P "$pid" 2>/dev/null || true)
  pkill -KILL -P "$pid" 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
  # The postmaster gone (its pid file names it: a restart refuses while that pid exists), and
  # each child gone or a zombie: a backend still exiting holds the shared memory, and a restart
  # then refuses to start ("pre-existing shared memory block is still in use"); a zombie has let
  # go of its memory. At most 10 s for each child.
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  for p in $children; do
    for _ in $(seq 200); do
      [[ -e /proc/$p ]] || break
      [[ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" == Z ]] && break
      sleep 0.05
    done
  done
}

restart() {
  local dir=$1 bin port
  bin="$(pg_bin)"
  dir="$(cd "$dir" && pwd -P)"
  port=$(cat "$dir/port")
  cd "$dir"
  # Right after a SIGKILL the port can still be held for a moment (the killed processes' socket
  # not yet released, or another socket on it): PostgreSQL then says "Address already in use" and
  # hints to wait a few seconds; a killed backend still exiting holds the old shared memory
  # ("still in use"). Retry on exactly those, for up to 10 s; anything else is fatal.
  local try
  for ((try = 0; try < 20; try++)); do
    [[ -f "$dir/log" ]] && : >"$dir/log"
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 -o "-k $dir -p $port \
-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off" \
      start >/dev/null 2>&1; then
      return 0
    fi
    grep -q "Address already in use\|is still in use" "$dir/log" 2>/dev/null || break
    sleep 0.5
  done
  tail -n 20 "$dir/log" >&2 || true
  die "restart failed (log: $dir/log)"
}

stop() {
  local dir=$1 bin
  [[ -d "$dir" ]] || return 0
  dir="$(cd "$dir" && pwd -P)"
  # Never remove a folder this script did not make.
  [[ -f "$dir/$MARKER" ]] || die "$dir was not made by '$0 start': not removing it"
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    bin="$(pg_bin)"
    (cd "$dir" && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null) ||
      echo "pg-test-server: pg_ctl stop failed; removing $dir anyway" >&2
  fi
  rm -rf "$dir"
}

[[ $# -eq 2 ]] || usage
case "$1" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  kill) kill_server "$2" ;;
  restart) restart "$2" ;;
  *) usage ;;
esac
