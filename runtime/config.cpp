#include "runtime/config.hpp"

#include "actors/detail/host_port.hpp"
#include "actors/detail/sql_lexer.hpp"
#include "actors/detail/text.hpp"
#include "runtime/address_ranges.hpp"
#include "runtime/tls_files.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <ratio>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>
#include <vector>

namespace bulwark {

namespace {

/// Ordered, so default_config_json() keeps the documented key order.
using json = nlohmann::ordered_json;
using millis = std::chrono::milliseconds;

/// The largest millisecond count that still fits a caf::timespan (int64 nanoseconds).
constexpr uint64_t max_ms = std::numeric_limits<int64_t>::max() / 1'000'000;

// Upper bounds. A value past them cannot serve one node and would take it down instead (a thread
// count the OS refuses, a structure sized from the value at start that cannot be allocated), so
// the config refuses it and --check-config names the key.
constexpr uint64_t kib = 1024;
constexpr uint64_t mib = 1024 * kib;
constexpr uint64_t gib = 1024 * mib;
/// Threads (http.threads, scheduler.threads).
constexpr uint64_t max_threads = 256;
/// Bytes of one structure sized from the config (request bodies, result limits, the limiter's
/// key table, whose sketch is sized from it at start, the performance history).
constexpr uint64_t max_structure_bytes = 1 * gib;
/// Whole-node byte amounts (memory.budget_bytes, cache.max_bytes): 1 TiB.
constexpr uint64_t max_node_bytes = 1024 * gib;
/// Counts of things kept in memory (history entries, restarts in a window, waiters, connections).
constexpr uint64_t max_count = 1'000'000;
/// Backend connections: each is a thread of its own (a detached actor).
constexpr uint64_t max_backend_connections = 1024;
/// Rows of one result and entries of the cache.
constexpr uint64_t max_rows_or_entries = 100'000'000;
/// Deepest nesting of arrays and objects in a config document (the real one nests 4 deep).
constexpr size_t max_nesting = 64;

// -- value descriptions ---------------------------------------------------------------------------

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

/// A JSON value as it appears in a message ("got ..."), shortened when long.
std::string show(const json& value) {
  auto text = value.dump(-1, ' ', true);
  return text.size() <= 60 ? text : text.substr(0, 57) + "...";
}

std::string show(double x) {
  std::ostringstream out;
  out << x;
  return out.str();
}

std::string show(uint64_t x) {
  return std::to_string(x);
}

std::string as_json_string(const std::string& s) {
  return json(s).dump(-1, ' ', true);
}

/// Integers: [lo, hi]. Only non-negative integers appear in the config.
struct int_range {
  uint64_t lo = 0;
  uint64_t hi = std::numeric_limits<uint64_t>::max();
};

std::string expected(const int_range& r, bool too_big = false) {
  return too_big ? "an integer <= " + show(r.hi) : "an integer >= " + show(r.lo);
}

/// Numbers: lo..hi, each end open or closed; hi = infinity means unbounded above.
struct real_range {
  double lo = 0;
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;
  bool hi_open = false;

  bool contains(double x) const {
    return (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
  }
};

std::string expected(const real_range& r) {
  if (r.lo == -std::numeric_limits<double>::infinity())
    return "a number";
  if (r.hi == std::numeric_limits<double>::infinity())
    return std::string("a number ") + (r.lo_open ? "> " : ">= ") + show(r.lo);
  return std::string("a number in ") + (r.lo_open ? "(" : "[") + show(r.lo) + ", " + show(r.hi) +
         (r.hi_open ? ")" : "]");
}

const real_range at_least_one{1.0};
const real_range ratio{0.0, 1.0, true, false}; // (0, 1]
/// Any number: for values whose range another module checks (detail::validate for the breaker).
const real_range any_number{-std::numeric_limits<double>::infinity()};

/// Strings: what is expected, in words, and the test.
struct text_rule {
  std::string expected;
  std::function<bool(const std::string&)> accepts;
};

text_rule non_empty() {
  return {"a non-empty string", [](const std::string& s) { return !s.empty(); }};
}

text_rule any_text() {
  return {"a string", [](const std::string&) { return true; }};
}

text_rule one_of(std::vector<std::string> choices) {
  std::string words = "one of ";
  for (size_t i = 0; i < choices.size(); ++i)
    words += (i == 0 ? "" : ", ") + as_json_string(choices[i]);
  return {words, [choices](const std::string& s) {
            for (auto& c : choices)
              if (s == c)
                return true;
            return false;
          }};
}

/// "host:port", "[v6]:port"; the port 0..65535 (detail/host_port.hpp).
bool is_host_port(const std::string& s) {
  return detail::parse_host_port(s).has_value();
}

text_rule host_port() {
  return {"\"host:port\" with a port 0..65535 (IPv6 in brackets)", is_host_port};
}

/// Statement names appear in URLs: [A-Za-z0-9_]+.
text_rule url_name() {
  return {"a name of ASCII letters, digits and _", [](const std::string& s) {
            return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
              return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '_';
            });
          }};
}

std::string count_of(size_t n, const char* what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

// -- the layout: one description, read by `reader` and written by `writer` ------------------------

/// Every key of the document, with what it means (the help text goes into docs/configuration.md,
/// generated by config_reference_markdown()). `v` is a reader, a writer or a documenter; adding a
/// section is one more block, and a key without its help does not compile.
template <class Visitor>
void visit(Visitor& v, engine_config& c) {
  v.section("node", "The node's identity and files.", [&] {
    v.text("name", c.node.name, non_empty(), "Name in `/v1/status` and logs.");
    v.text("data_dir", c.node.data_dir, non_empty(),
           "Where the node keeps its files (created at start when missing); the SQLite database "
           "lives here unless `backend.sqlite.path` says otherwise.");
  });
  v.section("http", "The public HTTP listener: queries, probes, `/metrics`, status.", [&] {
    auto& h = c.http;
    v.text("listen", h.listen, host_port(), "`host:port`; port 0 picks a free port (logged).");
    v.integer("threads", h.threads, {1, max_threads}, "HTTP I/O threads (Boost.Beast).");
    v.integer("max_connections", h.max_connections, {1, max_count},
              "Open connections; one more is answered 503 and closed.");
    v.integer("max_header_bytes", h.max_header_bytes, {512, mib},
              "Request line and headers; above it 431.");
    v.integer("max_body_bytes", h.max_body_bytes, {1, max_structure_bytes},
              "Request body; above it 413, decided from `Content-Length` before the body is read.");
    v.duration("request_timeout_ms", h.request_timeout, {1},
               "A request that does not arrive whole within this gets 408; it also bounds each "
               "write of an answer (at least 1 s), so a reader that stalls is closed.");
    v.duration("idle_timeout_ms", h.idle_timeout, {1}, "Idle keep-alive connections are closed.");
    v.integer("stream_after_bytes", h.stream_after_bytes, {0, max_structure_bytes},
              "A query answer whose rows pass this (the backend's byte count) is streamed, "
              "chunked. 0: every answer whole (the blinded baseline of the memory drill).");
    v.integer("stream_window_bytes", h.stream_window_bytes, {4096, 64 * mib},
              "How far a streamed answer's fetch may run ahead of the socket.");
    v.text_list("trusted_proxies", h.trusted_proxies,
                {"an address or a CIDR range (\"10.0.0.0/8\", \"fd00::/8\")",
                 [](const std::string& s) { return cidr_problem(s).empty(); }},
                "The proxies whose `X-Client-Id` / `X-Forwarded-For` name the client (as nginx's "
                "`set_real_ip_from`). Nobody by default: the client is the peer's address, so a "
                "client cannot pick its own rate-limit bucket.");
  });
  v.section("memory", "The memory-pressure monitor and the node's one memory budget.", [&] {
    auto& m = c.memory;
    v.text("source", m.source, one_of({"auto", "cgroup", "process", "file"}),
           "`cgroup`: the working set (v2 `memory.current` minus `inactive_file` against "
           "`memory.max`, as the kubelet counts it; else v1 likewise); `process`: RSS against "
           "`budget_bytes`; `file`: a ratio 0..1 read from `memory.file` on every sample (drills); "
           "`auto`: the cgroup limit when there is one, else the budget.");
    v.text("file", m.file, any_text(), // required for source "file": see check_relations
           "The drill file of `source: file` (required then).");
    v.integer("budget_bytes", m.budget_bytes, {1, max_node_bytes},
              "The limit for the `process` and `file` sources, and the memory account's budget "
              "when no cgroup limit applies.");
    v.duration("sample_interval_ms", m.sample_interval, {1}, "Sampling period.");
    v.section("thresholds", "", [&] {
      v.number("medium", m.thresholds.medium, ratio,
               "Ratio at which the level is medium; low-priority work may fill the budget to it.");
      v.number("high", m.thresholds.high, ratio,
               "Ratio at which the level is high; normal work may fill the budget to it.");
      v.number("critical", m.thresholds.critical, ratio,
               "Ratio at which the level is critical: only high-priority work is admitted.");
    });
    v.number("hysteresis", m.hysteresis, {0.0, 0.5, false, true},
             "A level is left only this far below its threshold.");
    v.duration("min_dwell_ms", m.min_dwell, {0},
               "...and only after it was held this long, so a hovering ratio never flaps.");
    v.integer("history_size", m.history_size, {1, max_count},
              "Level changes and subscriber actions kept for `/v1/status`.");
    v.boolean("admission", m.admission,
              "Refuse work the memory account has no room for; false only counts (the drills' "
              "blinded baseline).");
  });
  v.section("cleanup", "The cleanup manager, which runs every component's periodic work.", [&] {
    auto& k = c.cleanup;
    v.duration("health_check_interval_ms", k.health_check_interval, {1},
               "How often stale and hung tasks are looked for.");
    v.number("stale_factor", k.stale_factor, at_least_one,
             "A task is stale after this many intervals without a completed run.");
    v.number("defer_factor", k.defer_factor, at_least_one,
             "Deferrable tasks stretch their interval by this at high and critical pressure.");
    v.integer("task_max_restarts", k.task_max_restarts, {0, max_count},
              "Each task's own restart budget; past it the task is given up (alert "
              "CleanupTaskGivenUp) until its owner restarts.");
    v.duration("task_restart_window_ms", k.task_restart_window, {1}, "The window of that budget.");
  });
  v.section("supervisor", "Restart intensity and backoff of every supervisor.", [&] {
    auto& s = c.supervisor;
    v.integer("max_restarts", s.max_restarts, {0, max_count},
              "More restarts than this inside the window escalate to the parent supervisor.");
    v.duration("window_ms", s.window, {1}, "The restart-intensity window.");
    v.duration("backoff_initial_ms", s.backoff_initial, {0},
               "The n-th restart in the window waits initial x multiplier^(n-1), capped.");
    v.duration("backoff_max_ms", s.backoff_max, {0}, "The cap of the restart backoff.");
    v.number("backoff_multiplier", s.backoff_multiplier, at_least_one,
             "Growth of the restart backoff.");
  });
  v.section("admin", "The admin listener: the routes that change the node's state.", [&] {
    auto rule = host_port();
    v.text("listen", c.admin.listen,
           {"\"\" (off) or " + rule.expected,
            [rule](const std::string& s) { return s.empty() || rule.accepts(s); }},
           "`host:port` of the admin listener (`/admin/` routes, probes, status); `\"\"`: none. "
           "Never the same as `http.listen`; keep it on loopback or a private network.");
    v.text("token_file", c.admin.token_file, any_text(), // read by bulwarkd at start
           "A file holding a bearer token (16+ characters, no spaces) the admin listener then "
           "requires; unreadable or unusable, the node refuses to start, naming the key.");
    v.boolean("fault_injection", c.admin.fault_injection,
              "Enables `POST /admin/v1/crash/{component}`. Off in production.");
  });
  v.section("shutdown", "What SIGTERM does.", [&] {
    v.duration("drain_ms", c.shutdown.drain, {0},
               "How long in-flight requests may finish after SIGTERM; the rest are answered 503 "
               "`shutting_down`.");
  });
  v.section("scheduler", "CAF's scheduler.", [&] {
    v.integer("threads", c.scheduler.threads, {0, max_threads}, // 0: the cores
              "Worker threads; 0: one per core.");
    v.text("policy", c.scheduler.policy, one_of({"stealing", "sharing"}),
           "`stealing` (CAF's default) or `sharing` (answers outside threads faster, paying a "
           "condition variable on every message).");
    v.section("stealing", "", [&] {
      auto& w = c.scheduler.stealing;
      v.integer("aggressive_poll_attempts", w.aggressive_poll_attempts, {0, 1'000'000},
                "An idle `stealing` worker polls its queue this many times back to back (about "
                "7 us at 1 000; CAF's default is 100, under 1 us, after which a worker that just "
                "answered is asleep by the time the application's next call comes, and must be "
                "woken: the facade's point query p50 ~35 -> ~24 us, CPU per HTTP request within "
                "noise; 10 000 also spans a connection thread's round trip; bench/RESULTS.md)...");
      v.integer("moderate_poll_attempts", w.moderate_poll_attempts, {0, 1'000'000},
                "...then this many times with `moderate_sleep_us` between (CAF's default: 500; "
                "0 here, so a message from an HTTP thread or the facade never waits out a sleep: "
                "point query p50 145 -> 75 us, an idle node's CPU 5 x lower, bench/RESULTS.md)...");
      v.integer("moderate_sleep_us", w.moderate_sleep_us, {0, 1'000'000},
                "The sleep between moderate polls.");
      v.integer("relaxed_sleep_ms", w.relaxed_sleep_ms, {1, 60'000},
                "...then waits on a condition variable that a new message wakes, and that wakes "
                "by itself after this long.");
    });
  });
  v.section("log", "Logging (one line per event on stderr).", [&] {
    v.text("level", c.log.level, one_of({"debug", "info", "warn", "error"}),
           "The lowest level written.");
  });
  v.section("remote", "Other CAF nodes.", [&] {
    auto rule = host_port();
    v.text("listen", c.remote.listen,
           {"\"\" (off) or " + rule.expected,
            [rule](const std::string& s) { return s.empty() || rule.accepts(s); }},
           "`host:port` where the node publishes its front door to other CAF nodes (BASP over "
           "mutual TLS, or plain on loopback; port 0 picks one, logged); `\"\"`: not published. "
           "See docs/architecture.md, remote nodes.");
    v.section("tls", "Mutual TLS between nodes (CAF's OpenSSL module).", [&] {
      v.text("certificate", c.remote.tls.certificate, any_text(),
             "This node's certificate chain (PEM), shown to every peer. Required with "
             "`remote.listen` unless `remote.plain`.");
      v.text("key", c.remote.tls.key, any_text(), "Its private key (PEM, unencrypted).");
      v.text("ca", c.remote.tls.ca, any_text(),
             "The CA certificates (PEM) a peer's certificate must chain to; a peer without one "
             "is refused during the handshake.");
    });
    v.boolean("plain", c.remote.plain,
              "Plain BASP: no authentication, no encryption. Only with a loopback "
              "`remote.listen` (tests, a sidecar on the same host).");
    v.duration("heartbeat_interval_ms", c.remote.heartbeat_interval, {1},
               "How often the node sends a heartbeat to each connected peer.");
    v.duration("peer_timeout_ms", c.remote.peer_timeout, {1},
               "A peer that sends nothing (not even a heartbeat) for this long is declared gone: "
               "its connection closes and requests to it fail (must exceed the heartbeat "
               "interval).");
    v.integer("max_pending", c.remote.max_pending, {1, 1000000},
              "Remote requests pending at once; more are refused 503 `queue_full` at once. Each "
              "holds a place in the memory budget until answered.");
    v.boolean("trust_client", c.remote.trust_client,
              "`false`: every request from another node is rate limited as that node "
              "(`node:<id>`, an authenticated peer), whatever client it names. `true`: as the "
              "client it names (empty: not limited), for a gateway node forwarding its users.");
  });
  v.section("backend", "The database behind the pool.", [&] {
    auto& b = c.backend;
    v.text("kind", b.kind, one_of({"sqlite", "postgres"}),
           "Only the pool's connection actors ever open a connection.");
    v.section("sqlite", "", [&] {
      v.text("path", b.sqlite_path, any_text(), // empty: <node.data_dir>/bulwark.sqlite3
             "The database file (WAL mode); `\"\"`: `<node.data_dir>/bulwark.sqlite3`.");
      v.duration("busy_timeout_ms", b.sqlite_busy_timeout,
                 {0, static_cast<uint64_t>(std::numeric_limits<int>::max())}, // an int in SQLite
                 "How long a statement waits for another writer's lock.");
    });
    v.section("postgres", "", [&] {
      v.text("conninfo", b.postgres_conninfo, any_text(), // required for kind "postgres"
             "A libpq connection string (required for `kind: postgres`).");
      v.integer("connect_timeout_s", b.postgres_connect_timeout_s, {1, 86400},
                "libpq's `connect_timeout`.");
    });
    v.text_list("init_sql", b.init_sql, non_empty(),
                "Idempotent statements run once, on the first connection that opens; a failure "
                "fails that connect, so a backend that comes up late still gets its schema. "
                "config/default.json has a demo schema with 20 000 rows.");
  });
  v.section("pool", "The connection pool: connections, the wait queue, backoff.", [&] {
    auto& p = c.pool;
    v.integer("min_connections", p.min_connections, {0, max_backend_connections},
              "Connections kept open (each a thread of its own).");
    v.integer("max_connections", p.max_connections, {1, max_backend_connections},
              "At most this many; connections being opened count against it.");
    v.duration("acquire_timeout_ms", p.acquire_timeout, {1}, "Longest wait for a connection.");
    v.duration("call_timeout_ms", p.call_timeout, {1}, "Deadline of a call that brings none.");
    v.duration("idle_timeout_ms", p.idle_timeout, {1},
               "Idle connections beyond the minimum close after this.");
    v.duration("max_lifetime_ms", p.max_lifetime, {1}, "Older connections are recycled.");
    v.duration("health_check_interval_ms", p.health_check_interval, {1},
               "Idle connections are pinged and replaced when broken (the `pool_maintenance` "
               "cleanup task).");
    v.duration("connect_backoff_initial_ms", p.connect_backoff_initial, {1},
               "The n-th failed connect in a row waits min(max, initial x 2^(n-1)) x a factor "
               "drawn from [0.5, 1] (`actors/detail/backoff.hpp`).");
    v.duration("connect_backoff_max_ms", p.connect_backoff_max, {1},
               "The cap of the connect backoff.");
    v.duration("stuck_after_ms", p.stuck_after, {0},
               "How long a cancel may go unanswered, with nothing else back from the backend "
               "either, before the backend counts as stuck: calls then fail at once "
               "(`backend_unavailable`), both failures to the breaker. A live backend honours a "
               "cancel in milliseconds, so load alone never looks stuck.");
    v.integer("max_waiters", p.queue.max_waiters, {1, max_count},
              "The wait queue's limit (tightens x0.75 / x0.5 under pressure or poor health; "
              "`actors/detail/pool_queue.hpp` says who is refused and why).");
    v.number("moderate_shed_fraction", p.queue.moderate_shed_fraction, ratio,
             "How much of the queue the moderate strategy may shed.");
    v.number("aggressive_shed_fraction", p.queue.aggressive_shed_fraction, ratio,
             "How much the aggressive strategy may shed.");
    v.duration("queue_delay_target_ms", p.queue.delay_target, {0},
               "A queue whose oldest waiter has been past this for `queue_delay_interval_ms` is "
               "standing: until it runs empty, waiters past the target and newcomers expected to "
               "wait past it get 503 `queue_full` at once (CoDel's rule, for requests). 0: off.");
    v.duration("queue_delay_interval_ms", p.queue.delay_interval, {1},
               "A burst that drains within this still waits up to the acquire timeout.");
    auto lane_us = static_cast<uint64_t>(p.lane_slice.count());
    v.integer("lane_slice_us", lane_us, {0, 1'000'000},
              "SQLite: a declared read (no steps) that finds the scheduler lane idle and nobody "
              "waiting runs on the scheduler's own thread, with no hand-off to a connection "
              "thread and back, and stops after this long (or at a lock wait, a write, or an "
              "answer large enough to stream) to run again on a connection thread. So no call "
              "holds a scheduler thread longer than this. 0: every call on a connection thread.");
    p.lane_slice = std::chrono::microseconds(static_cast<int64_t>(lane_us));
  });
  v.section("breaker", "The circuit breaker in front of the pool.", [&] {
    // Only the types are checked here; the ranges are detail::validate's (see check_relations).
    auto& b = c.breaker.core;
    using kind = detail::breaker_window_kind;
    std::string window = b.window_kind == kind::time_based ? "time" : "count";
    v.text("window", window, one_of({"count", "time"}),
           "The sliding window of outcomes: the last `window_size` calls, or `window_ms`.");
    b.window_kind = window == "time" ? kind::time_based : kind::count_based;
    v.integer("window_size", b.window_size, {0}, "Calls in a count window (at most 1 000 000).");
    v.duration("window_ms", b.window_duration, {0},
               "Length of a time window: whole seconds, 1 s to 1 h.");
    v.integer("minimum_calls", b.minimum_calls, {0},
              "Fewer calls in the window never open the breaker (>= 1; <= window_size).");
    v.number("failure_rate_threshold", b.failure_rate_threshold, any_number,
             "It opens when the failed share of the window reaches this, in (0, 1]...");
    v.number(
        "slow_call_rate_threshold", b.slow_call_rate_threshold, any_number,
        "...or the slow share reaches this, in (0, 1] (a slow success still counts as a success).");
    v.duration("slow_call_ms", b.slow_call_duration, {0},
               "A call running this long is slow; one cut by its caller's deadline after "
               "running this long is a failure.");
    v.duration("open_wait_ms", b.open_wait, {0}, "The first open wait.");
    v.duration("open_wait_max_ms", b.open_wait_max, {0},
               "The open wait grows across consecutive opens up to this.");
    v.number("open_wait_multiplier", b.open_wait_multiplier, any_number,
             "Growth of the open wait (>= 1).");
    v.number(
        "jitter", b.jitter, any_number,
        "Each open wait is multiplied by a factor uniform in [1 - jitter, 1 + jitter]; in [0, 1).");
    v.integer("half_open_probes", b.half_open_probes, {0}, "Probes admitted half-open (>= 1).");
    v.duration("call_timeout_ms", c.breaker.call_timeout, {1},
               "A call running longer is cancelled on the server and counts as a failure.");
    v.duration("watch_interval_ms", c.breaker.watch_interval, {1},
               "While open, how often the breaker asks the pool whether it has connected again "
               "(which ends the wait at once); an idle breaker whose wait ended probes by itself "
               "(`SELECT 1`), so it closes once the backend is back.");
    v.duration("contention_grace_ms", c.breaker.contention_grace, {0},
               "Contention (a lock conflict, deadlock or serialization failure) counts against "
               "the breaker only once it is all that has come back for this long.");
  });
  v.section("database", "The database actor: result limits and the default deadline.", [&] {
    auto& l = c.database.limits;
    v.integer("max_rows", l.base_rows, {1, max_rows_or_entries},
              "A call's row limit: scaled x0.7 / x0.5 / x0.3 at medium / high / critical pressure "
              "and x0.7 / x0.5 above complexity 5 / 10...");
    v.integer("max_bytes", l.base_bytes, {1, max_structure_bytes},
              "...and its byte limit, scaled alike.");
    v.integer("floor_rows", l.floor_rows, {1, max_rows_or_entries},
              "The row limit never goes below this...");
    v.integer("floor_bytes", l.floor_bytes, {1, max_structure_bytes},
              "...nor the byte limit below this.");
    v.duration("default_timeout_ms", c.database.default_timeout, {1},
               "A request's deadline, set once by the front door; `X-Request-Timeout-Ms` (or a "
               "remote caller's `timeout`) may only shorten it.");
    v.integer("max_transaction_steps", c.database.max_transaction_steps, {1, 1000},
              "The most statements one transaction (`POST /v1/transaction`) may run; more is "
              "413. Its connection is held for all of them.");
    v.integer("max_batch_items", c.database.max_batch_items, {1, 10000},
              "The most parameter lists one batch (`POST /v1/batch/{statement}`) may run; more "
              "is 413. A batch costs its item count at the rate limiter, so it may not exceed "
              "`rate_limiter.burst` (or `limit`).");
  });
  v.object_map(
      "statements", c.database.statements, url_name(),
      "The statements clients may run, by name (`POST /v1/query/{name}`); no SQL comes over the "
      "network.",
      [&](statement_config& s) {
        v.text("sql", s.sql, non_empty(), // required: see check_relations
               "Required. Placeholders `$1..$n`, first appearing in order, so one statement runs "
               "on both backends.");
        v.text_list("params", s.params, one_of({"int", "real", "text", "bool"}),
                    "The parameters' kinds, one per placeholder.");
        v.boolean("read_only", s.read_only, "A read: may be cached and planned.");
        v.duration("cache_ttl_ms", s.cache_ttl, {0},
                   "A read-only statement is answered from the cache for this long (so it may be "
                   "stale that long after a write); 0: never cached.");
      });
  v.object_map(
      "transactions", c.database.transactions, url_name(),
      "Fixed sequences of statements run as one transaction by name "
      "(`POST /v1/transaction/{name}`), learned, limited and counted under that name.",
      [&](transaction_config& t) {
        v.text_list("steps", t.steps, url_name(), // required: see check_relations
                    "Required. The statements it runs, in order; each one configured.");
        v.text("isolation", t.isolation, one_of({"", "repeatable_read", "serializable"}),
               "The isolation it runs at on PostgreSQL; \"\": the backend's default (SQLite is "
               "always serializable).");
      });
  v.section("cache", "The result cache, in shard actors.", [&] {
    auto& k = c.cache;
    v.integer("shards", k.shards, {1, 256}, "Shard actors (a key's shard is its hash modulo).");
    v.integer("max_entries", k.max_entries, {1, max_rows_or_entries}, "Entries over all shards.");
    v.integer("max_bytes", k.max_bytes, {1, max_node_bytes},
              "Bytes over all shards; the budget drops to 85 / 70 / 50 % as pressure rises.");
    v.integer("max_entry_bytes", k.max_entry_bytes, {1, max_structure_bytes},
              "A larger answer is refused and counted "
              "(`bulwark_cache_refused_total{reason=\"too_large\"}`).");
    v.duration("default_ttl_ms", k.default_ttl, {1}, "TTL of a put without one.");
    v.duration("tick_ms", k.tick, {1},
               "The expiry sweep and budget-restore period (the `cache_sweep/<shard>` tasks).");
    v.number("restore_step", k.restore_step, {0.0, 1.0, true, false},
             "Share of the budget given back per tick after pressure falls.");
  });
  v.section(
      "rate_limiter",
      "Per-client rate limits, in bounded memory. One limiter shard per gateway shard "
      "(`gateway.shards`); a client's key lives in one of them, so its limits are exact.",
      [&] {
        // Only the types are checked here; the ranges are detail::validate's (see check_relations).
        auto& t = c.rate_limiter.table;
        using algo = detail::rate_limit_algorithm;
        std::string algorithm = t.algorithm == algo::sliding_window ? "sliding_window" : "gcra";
        v.text("algorithm", algorithm, one_of({"gcra", "sliding_window"}),
               "`gcra` (`rate_per_sec`, `burst`) or `sliding_window` (`limit` per `window_ms`).");
        t.algorithm = algorithm == "sliding_window" ? algo::sliding_window : algo::gcra;
        v.number("rate_per_sec", t.rate_per_sec, any_number,
                 "GCRA: requests per second per client.");
        v.integer("burst", t.burst, {0}, "GCRA: the burst a client may send at once.");
        v.integer("limit", t.limit, {0}, "Sliding window: requests per window per client.");
        v.duration("window_ms", t.window, {0}, "Sliding window: its length.");
        v.integer(
            "max_bytes", t.max_bytes, {1, max_structure_bytes},
            "The key table's byte budget over all shards, each holding its share (shrinks with "
            "pressure).");
        using overflow = detail::rate_limit_overflow_policy;
        std::string policy = t.overflow == overflow::fail_open ? "fail_open" : "fail_closed";
        v.text(
            "overflow", policy, one_of({"fail_closed", "fail_open"}),
            "Clients that find no place in the table share the overflow bucket (`fail_closed`) or "
            "pass unlimited (`fail_open`).");
        t.overflow = policy == "fail_open" ? overflow::fail_open : overflow::fail_closed;
        v.number("overflow_rate_per_sec", t.overflow_rate_per_sec, any_number,
                 "The overflow bucket's rate, over all shards (each has its share).");
        v.integer("overflow_burst", t.overflow_burst, {0},
                  "The overflow bucket's burst, over all shards (each has its share).");
        v.duration("expire_interval_ms", c.rate_limiter.expire_interval, {1},
                   "How often idle keys are dropped (the `limiter_expiry/<shard>` tasks).");
      });
  v.section("gateway", "Admission of a query: shedding, limits, cache, memory.", [&] {
    v.duration("shed_retry_after_ms", c.gateway.shed_retry_after, {1},
               "`Retry-After` of a shed request.");
    v.duration("component_timeout_ms", c.gateway.component_timeout, {1},
               "How long the gateway waits for the limiter or a cache shard (a slow shard is a "
               "miss, a silent limiter fails the request closed).");
    v.integer("memory_wait_max", c.gateway.memory_wait_max, {0, max_count},
              "How many queries may wait for room in the memory budget (each for up to half of "
              "its remaining deadline) before more are refused at once with 503 "
              "`insufficient_memory`; 0: none wait. Each gateway shard holds its share "
              "(rounded up).");
    v.integer("shards", c.gateway.shards, {0, 256},
              "Gateway actors, each with a front door of its own; 0: one per scheduler thread. "
              "A client's requests always go to the same shard (hash of its key), and its "
              "limits to the rate limiter shard of the same number; each shard learns costs and "
              "queues for memory on its own.");
  });
  v.section("performance", "The performance monitor and its alert rules.", [&] {
    auto& p = c.performance;
    v.boolean("enabled", p.enabled, "false: not started, no alerts, `/v1/perf` 404.");
    v.duration("interval_ms", p.interval, {1},
               "Its tick; alert rules are evaluated on every tick, sampled or not.");
    v.duration("adjust_interval_ms", p.adjust_interval, {1},
               "How often the sampling ratio follows the load.");
    v.number("min_sampling_ratio", p.sampling.min_ratio, ratio,
             "The ratio goes x0.8 while the load is above `high_load`, x1.2 below `low_load`, "
             "between this floor and 1.");
    v.number("high_load", p.sampling.high_load, ratio,
             "The load is the highest of memory pressure, CPU over the cores the process may "
             "use, and scheduler lag over `lag_reference_ms`.");
    v.number("low_load", p.sampling.low_load, {0.0, 1.0}, "See `high_load`.");
    v.duration("lag_reference_ms", p.lag_reference, {1}, "Scheduler lag counted as full load.");
    v.duration("history_max_age_ms", p.history_max_age, {1}, "The history's age bound.");
    // At least 64 points per series (below that one spike cannot stand out by 3 sigma).
    v.integer(
        "history_max_bytes", p.history_max_bytes,
        {perf_series_names().size() * 64 * sizeof(detail::history_point), max_structure_bytes},
        "Bytes over all six history series (at least 64 points each).");
    v.number("outlier_sigma", p.outlier_sigma, {0.0, std::numeric_limits<double>::infinity(), true},
             "A trim keeps the newest half, the older points beyond k sigma, and evenly spaced "
             "others.");
  });
  // Ranges and the metric expression are detail::validate's (see check_relations).
  v.object_list(
      "alerts", c.performance.alerts,
      "In-process alert rules; the shipped eight are in the table under \"Alert rules\" below. "
      "`[]` turns them off.",
      [&](detail::alert_rule& a) {
        v.text("name", a.name, url_name(), "Required. Unique among the rules.");
        v.text("metric", a.metric, non_empty(),
               "Required. A PromQL subset over the node's own registry (`name{label=\"v\"}`, "
               "`sum`, `max`, `min`, `rate(...[5m])`, histograms' `_count` and `_sum`).");
        std::string op = detail::to_string(a.op);
        v.text("op", op, one_of({">", ">=", "<", "<=", "==", "!="}), "Required.");
        detail::parse_alert_op(op, a.op);
        v.number("threshold", a.threshold, any_number, "Required.");
        double for_s = detail::secs(a.for_duration);
        v.number("for_seconds", for_s, {0.0, 1e9}, // 1e9 s still fits a caf::timespan
                 "How long the condition must hold before the rule fires.");
        a.for_duration =
            std::chrono::duration_cast<caf::timespan>(std::chrono::duration<double>(for_s));
        // Absent: the threshold (no hysteresis).
        v.optional_number("clear_threshold", a.clear_threshold, any_number,
                          "A firing rule resolves only when the condition fails against this; "
                          "absent: the threshold (no hysteresis).");
        if (std::isnan(a.clear_threshold))
          a.clear_threshold = a.threshold;
        v.text("severity", a.severity, one_of({"info", "warning", "critical"}),
               "Shown in `/v1/alerts` and the logs.");
      });
}

/// Builds the JSON of a config (used for the defaults).
class writer {
public:
  explicit writer(json& root) : cur_(&root) {}

  template <class F>
  void section(const char* key, const char*, F&& body) {
    json* outer = cur_;
    cur_ = &((*outer)[key] = json::object());
    body();
    cur_ = outer;
  }
  template <class T>
  void integer(const char* key, const T& x, int_range, const char*) {
    (*cur_)[key] = x;
  }
  template <class Rep, class Period>
  void duration(const char* key, const std::chrono::duration<Rep, Period>& x, int_range,
                const char*) {
    (*cur_)[key] = std::chrono::duration_cast<millis>(x).count();
  }
  void number(const char* key, double x, const real_range&, const char*) { (*cur_)[key] = x; }
  void boolean(const char* key, bool x, const char*) { (*cur_)[key] = x; }
  void text(const char* key, const std::string& x, const text_rule&, const char*) {
    (*cur_)[key] = x;
  }
  void text_list(const char* key, const std::vector<std::string>& xs, const text_rule&,
                 const char*) {
    (*cur_)[key] = xs;
  }
  /// An array of objects, each written by `body(entry)`.
  template <class T, class F>
  void object_list(const char* key, std::vector<T>& entries, const char*, F&& body) {
    json* outer = cur_;
    json& arr = ((*outer)[key] = json::array());
    for (auto& entry : entries) {
      arr.push_back(json::object());
      cur_ = &arr.back();
      body(entry);
    }
    cur_ = outer;
  }
  void optional_number(const char* key, double x, const real_range&, const char*) {
    (*cur_)[key] = x;
  }
  /// An object of objects, one per map entry, each written by `body(entry)`.
  template <class T, class F>
  void object_map(const char* key, std::map<std::string, T>& entries, const text_rule&, const char*,
                  F&& body) {
    json* outer = cur_;
    json& obj = ((*outer)[key] = json::object());
    for (auto& [name, entry] : entries) {
      cur_ = &(obj[name] = json::object());
      body(entry);
    }
    cur_ = outer;
  }

private:
  json* cur_;
};

/// Writes the reference of every key (docs/configuration.md): one table per top-level section,
/// each key with its type and range, its default and its help text. The entries of `statements`
/// and `alerts` are described once, from a default entry; a key whose help starts "Required."
/// has no default there.
class documenter {
public:
  explicit documenter(std::string& out) : out_(out) {}

  template <class F>
  void section(const char* key, const char* help, F&& body) {
    if (path_.empty())
      heading(key, help);
    nested(key, body);
  }
  template <class T>
  void integer(const char* key, const T& x, int_range r, const char* help) {
    r.hi = std::min<uint64_t>(r.hi, std::numeric_limits<T>::max());
    auto type = "integer " + bounds(r, key);
    row(key, type, show_count(static_cast<uint64_t>(x), key), help);
  }
  template <class Rep, class Period>
  void duration(const char* key, const std::chrono::duration<Rep, Period>& x, int_range r,
                const char* help) {
    r.hi = std::min(r.hi, max_ms);
    row(key, "milliseconds " + bounds(r, key),
        show_count(static_cast<uint64_t>(std::chrono::duration_cast<millis>(x).count()), key),
        help);
  }
  void number(const char* key, double x, const real_range& r, const char* help) {
    row(key, expected(r).substr(2), json(x).dump(), help); // "a number ..." -> "number ..."
  }
  void boolean(const char* key, bool x, const char* help) {
    row(key, "boolean", x ? "true" : "false", help);
  }
  void text(const char* key, const std::string& x, const text_rule& rule, const char* help) {
    row(key, rule.expected, as_json_string(x), help);
  }
  void text_list(const char* key, const std::vector<std::string>& xs, const text_rule& rule,
                 const char* help) {
    row(key, "array, each " + rule.expected, xs.empty() ? "[]" : json(xs).dump(), help);
  }
  void optional_number(const char* key, double x, const real_range& r, const char* help) {
    // In an entry's description the value is a default entry's, which has no absent state.
    row(key, expected(r).substr(2) + ", or absent",
        entries_ || std::isnan(x) ? "absent" : json(x).dump(), help);
  }
  template <class T, class F>
  void object_list(const char* key, std::vector<T>& entries, const char* help, F&& body) {
    heading(key, help);
    auto n = std::to_string(entries.size()) + (entries.size() == 1 ? " entry" : " entries");
    row(key, "array of objects", n, "Each entry has the keys below.");
    T entry{};
    entries_ = true;
    nested(std::string(key) + "[]", [&] { body(entry); });
    entries_ = false;
  }
  template <class T, class F>
  void object_map(const char* key, std::map<std::string, T>& entries, const text_rule& name_rule,
                  const char* help, F&& body) {
    heading(key, help);
    std::string names;
    for (auto& item : entries)
      names += (names.empty() ? "" : ", ") + item.first;
    row(key, "object of objects, each keyed by " + name_rule.expected,
        entries.empty() ? "{}" : names, "Each entry has the keys below.");
    T entry{};
    entries_ = true;
    nested(std::string(key) + ".<name>", [&] { body(entry); });
    entries_ = false;
  }

private:
  template <class F>
  void nested(const std::string& key, F&& body) {
    auto outer = path_;
    path_ = join(path_, key);
    body();
    path_ = outer;
  }

  void heading(const char* key, const char* help) {
    out_ += "\n### `" + std::string(key) + "`\n\n";
    if (*help != '\0')
      out_ += std::string(help) + "\n\n";
    out_ += "| key | type | default | meaning |\n|---|---|---|---|\n";
  }

  void row(const std::string& key, const std::string& type, std::string value, const char* help) {
    auto path = join(path_, key);
    if (entries_ && std::string(help).rfind("Required.", 0) == 0)
      value = "required";
    else
      value = "`" + value + "`";
    out_ += "| `" + path + "` | " + cell(type) + " | " + cell(value) + " | " + cell(help) + " |\n";
  }

  /// A count as written in JSON; a byte count also in binary units: "1048576 (1 MiB)".
  static std::string show_count(uint64_t n, const std::string& key) {
    bool bytes = key.size() > 6 && key.compare(key.size() - 6, 6, "_bytes") == 0;
    if (!bytes || n < 1024 || n % 1024 != 0)
      return show(n);
    const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
    uint64_t v = n / 1024;
    size_t u = 0;
    while (u + 1 < std::size(units) && v % 1024 == 0) {
      v /= 1024;
      ++u;
    }
    return show(n) + " (" + std::to_string(v) + " " + units[u] + ")";
  }

  static std::string bounds(const int_range& r, const std::string& key) {
    bool unbounded = r.hi == std::numeric_limits<uint64_t>::max() || r.hi == max_ms;
    return unbounded ? ">= " + show_count(r.lo, key)
                     : show_count(r.lo, key) + " to " + show_count(r.hi, key);
  }

  /// A table cell: no pipe may end it early.
  static std::string cell(const std::string& s) {
    std::string out;
    for (char ch : s)
      out += ch == '|' ? std::string("\\|") : std::string(1, ch);
    return out;
  }

  std::string& out_;
  std::string path_;
  bool entries_ = false;
};

/// Reads a document into a config: checks each value's type and range, tracks the path, records
/// the keys it knows per object to report the unknown ones, and collects every error.
class reader {
public:
  explicit reader(std::vector<config_error>& errors) : errors_(errors) {}

  /// Reads `obj` (already known to be an object) at `path` with `body`, then reports unknown keys.
  template <class F>
  void object(const json& obj, std::string path, F&& body) {
    auto outer = std::make_tuple(cur_, std::move(path_), std::move(known_));
    cur_ = &obj;
    path_ = std::move(path);
    known_.clear();
    body();
    for (auto& item : obj.items()) {
      if (std::find(known_.begin(), known_.end(), item.key()) != known_.end())
        continue;
      std::string list;
      for (auto& k : known_)
        list += (list.empty() ? "" : ", ") + k;
      error(join(path_, item.key()), "unknown key (known here: " + list + ")");
    }
    std::tie(cur_, path_, known_) = std::move(outer);
  }

  template <class F>
  void section(const char* key, const char*, F&& body) {
    if (const json* value = find(key)) {
      if (value->is_object())
        object(*value, join(path_, key), std::forward<F>(body));
      else
        error(join(path_, key), "expected an object, got " + show(*value));
    }
  }

  template <class T>
  void integer(const char* key, T& out, int_range r, const char*) {
    r.hi = std::min<uint64_t>(r.hi, std::numeric_limits<T>::max());
    if (auto x = read_integer(key, r))
      out = static_cast<T>(*x);
  }

  /// Read as milliseconds (the key says so: `*_ms`), stored in whatever unit `out` has.
  template <class Rep, class Period>
  void duration(const char* key, std::chrono::duration<Rep, Period>& out, int_range r,
                const char*) {
    using target = std::chrono::duration<Rep, Period>;
    static_assert(sizeof(Rep) >= 8 && std::ratio_greater_equal_v<Period, std::nano> &&
                      std::ratio_less_equal_v<Period, std::milli>,
                  "exact for a 64-bit count of units from ns to ms (max_ms fits in nanoseconds)");
    r.hi = std::min(r.hi, max_ms);
    if (auto x = read_integer(key, r))
      out = std::chrono::duration_cast<target>(millis{static_cast<millis::rep>(*x)});
  }

  void number(const char* key, double& out, const real_range& r, const char*) {
    const json* value = find(key);
    if (value == nullptr)
      return;
    if (!value->is_number() || !r.contains(value->get<double>()))
      return error(join(path_, key), "expected " + expected(r) + ", got " + show(*value));
    out = value->get<double>();
  }

  void boolean(const char* key, bool& out, const char*) {
    const json* value = find(key);
    if (value == nullptr)
      return;
    if (!value->is_boolean())
      return error(join(path_, key), "expected true or false, got " + show(*value));
    out = value->get<bool>();
  }

  void text(const char* key, std::string& out, const text_rule& rule, const char*) {
    const json* value = find(key);
    if (value == nullptr)
      return;
    if (!value->is_string() || !rule.accepts(value->get<std::string>()))
      return error(join(path_, key), "expected " + rule.expected + ", got " + show(*value));
    out = value->get<std::string>();
  }

  /// An array of strings, each accepted by `rule`; an error is reported at its index
  /// (`key[2]`), and then the whole array is rejected (the default stays).
  void text_list(const char* key, std::vector<std::string>& out, const text_rule& rule,
                 const char*) {
    const json* value = find(key);
    if (value == nullptr)
      return;
    auto path = join(path_, key);
    if (!value->is_array())
      return error(path,
                   "expected an array (each element " + rule.expected + "), got " + show(*value));
    std::vector<std::string> items;
    for (size_t i = 0; i < value->size(); ++i) {
      auto& item = (*value)[i];
      if (item.is_string() && rule.accepts(item.get<std::string>()))
        items.push_back(item.get<std::string>());
      else
        error(path + "[" + std::to_string(i) + "]",
              "expected " + rule.expected + ", got " + show(item));
    }
    if (items.size() == value->size())
      out = std::move(items);
    else
      failed_.insert(path); // for the checks across keys: the array as a whole was rejected
  }

  /// An object whose keys are names accepted by `name_rule` and whose values are objects, each
  /// read into a default `T` by `body(entry)` at `key.<name>` (unknown keys in it are errors).
  /// Replaces `out` with the entries that have a valid name (all of them unless there are errors).
  template <class T, class F>
  void object_map(const char* key, std::map<std::string, T>& out, const text_rule& name_rule,
                  const char*, F&& body) {
    const json* value = find(key);
    if (value == nullptr)
      return;
    auto path = join(path_, key);
    if (!value->is_object())
      return error(path, "expected an object, got " + show(*value));
    std::map<std::string, T> entries;
    for (auto& item : value->items()) {
      auto entry_path = join(path, item.key());
      bool named = name_rule.accepts(item.key());
      if (!named)
        error(entry_path, "expected " + name_rule.expected + ", got " + as_json_string(item.key()));
      if (!item.value().is_object()) {
        error(entry_path, "expected an object, got " + show(item.value()));
        continue;
      }
      T entry{};
      object(item.value(), entry_path, [&] { body(entry); }); // its errors too, even if unnamed
      if (named)
        entries.emplace(item.key(), std::move(entry));
    }
    out = std::move(entries);
  }

  /// An array of objects, each read into a default `T` by `body(entry)` at `key[i]` (unknown
  /// keys in it are errors). Replaces `out`; an element that is no object is an error at
  /// `key[i]` and stays a default `T` there, so indices keep matching the document.
  template <class T, class F>
  void object_list(const char* key, std::vector<T>& out, const char*, F&& body) {
    const json* value = find(key);
    if (value == nullptr)
      return;
    auto path = join(path_, key);
    if (!value->is_array())
      return error(path, "expected an array of objects, got " + show(*value));
    std::vector<T> entries(value->size());
    for (size_t i = 0; i < value->size(); ++i) {
      auto entry_path = path + "[" + std::to_string(i) + "]";
      auto& item = (*value)[i];
      if (item.is_object())
        object(item, entry_path, [&] { body(entries[i]); });
      else
        error(entry_path, "expected an object, got " + show(item));
    }
    out = std::move(entries);
  }

  /// A number that may be absent: then `out` becomes NaN (the visitor picks its default).
  void optional_number(const char* key, double& out, const real_range& r, const char*) {
    out = std::numeric_limits<double>::quiet_NaN();
    number(key, out, r, nullptr);
  }

  // -- for the checks across keys ----------------------------------------------------------------

  void error(std::string path, std::string message) {
    failed_.insert(path);
    errors_.push_back({std::move(path), std::move(message)});
  }

  bool failed(const std::string& path) const { return failed_.count(path) > 0; }
  bool present(const std::string& path) const { return present_.count(path) > 0; }

  /// Requires lo < hi (strict) or lo <= hi. Reported at the key the document sets; when it sets
  /// both or neither, at `hi` (or at `lo` when `blame_lo`). Skipped when either key has an error.
  template <class T>
  void require_order(const std::string& lo_path, T lo, const std::string& hi_path, T hi,
                     bool strict, const std::string& kind, bool blame_lo = false) {
    if (failed(lo_path) || failed(hi_path) || (strict ? lo < hi : lo <= hi))
      return;
    bool at_lo =
        blame_lo ? present(lo_path) || !present(hi_path) : present(lo_path) && !present(hi_path);
    if (!at_lo)
      error(hi_path, "expected " + kind + (strict ? " > " : " >= ") + lo_path + " (" + show(lo) +
                         "), got " + show(hi));
    else
      error(lo_path, "expected " + kind + (strict ? " < " : " <= ") + hi_path + " (" + show(hi) +
                         "), got " + show(lo));
  }

private:
  /// The value of `key` in the current object, or nullptr; marks the key known (and present).
  const json* find(const char* key) {
    known_.emplace_back(key);
    if (cur_ == nullptr)
      return nullptr;
    auto i = cur_->find(key);
    if (i == cur_->end())
      return nullptr;
    present_.insert(join(path_, key));
    return &*i;
  }

  std::optional<uint64_t> read_integer(const char* key, const int_range& r) {
    const json* value = find(key);
    if (value == nullptr)
      return std::nullopt;
    auto path = join(path_, key);
    if (!value->is_number_integer() || (!value->is_number_unsigned() && value->get<int64_t>() < 0))
      return error(path, "expected " + expected(r) + ", got " + show(*value)), std::nullopt;
    auto x = value->get<uint64_t>();
    if (x < r.lo || x > r.hi)
      return error(path, "expected " + expected(r, x > r.hi) + ", got " + show(*value)),
             std::nullopt;
    return x;
  }

  std::vector<config_error>& errors_;
  const json* cur_ = nullptr;
  std::string path_;
  std::vector<std::string> known_; ///< the keys of the current object, in declaration order
  std::set<std::string> present_;
  std::set<std::string> failed_;
};

/// The rules that involve more than one key.
/// remote.*: a published node speaks mutual TLS with readable, matching files, or plain BASP
/// on loopback when asked to.
void check_remote(const engine_config& c, reader& r) {
  auto& rc = c.remote;
  r.require_order("remote.heartbeat_interval_ms",
                  static_cast<uint64_t>(rc.heartbeat_interval.count()), "remote.peer_timeout_ms",
                  static_cast<uint64_t>(rc.peer_timeout.count()), true, "an integer");
  if (rc.listen.empty() || r.failed("remote.listen"))
    return;
  auto& t = rc.tls;
  bool any_tls = !t.certificate.empty() || !t.key.empty() || !t.ca.empty();
  if (rc.plain) {
    if (any_tls)
      r.error("remote.plain", "expected false when remote.tls is set: a node speaks TLS or "
                              "plain BASP, not both");
    auto address = detail::parse_host_port(rc.listen);
    if (address && !detail::is_loopback_host(address->host))
      r.error("remote.plain", "plain BASP (no authentication, no encryption) is only served on "
                              "loopback; remote.listen is \"" +
                                  rc.listen + "\" (use remote.tls)");
    return;
  }
  for (auto& [key, problem] : check_tls_files(t.certificate, t.key, t.ca))
    if (!r.failed(key))
      r.error(key, problem);
}

void check_relations(const engine_config& c, reader& r) {
  auto& m = c.memory;
  if (m.source == "file" && m.file.empty() && !r.failed("memory.file"))
    r.error("memory.file", "expected a non-empty path when memory.source is \"file\", got " +
                               std::string(r.present("memory.file") ? "\"\"" : "nothing"));
  r.require_order("memory.thresholds.medium", m.thresholds.medium, "memory.thresholds.high",
                  m.thresholds.high, true, "a number");
  r.require_order("memory.thresholds.high", m.thresholds.high, "memory.thresholds.critical",
                  m.thresholds.critical, true, "a number");
  r.require_order("memory.hysteresis", m.hysteresis, "memory.thresholds.medium",
                  m.thresholds.medium, true, "a number", true);
  auto& s = c.supervisor;
  r.require_order("supervisor.backoff_initial_ms", static_cast<uint64_t>(s.backoff_initial.count()),
                  "supervisor.backoff_max_ms", static_cast<uint64_t>(s.backoff_max.count()), false,
                  "an integer");

  // The admin routes never share the public port (port 0 picks a fresh one for each).
  if (!c.admin.listen.empty() && c.admin.listen == c.http.listen && !r.failed("admin.listen") &&
      c.http.listen.size() > 2 && c.http.listen.compare(c.http.listen.size() - 2, 2, ":0") != 0)
    r.error("admin.listen", "expected another address than http.listen (\"" + c.http.listen +
                                "\"): the admin routes never share the public port");

  check_remote(c, r);

  auto& b = c.backend;
  if (b.kind == "postgres" && b.postgres_conninfo.empty() && !r.failed("backend.postgres.conninfo"))
    r.error("backend.postgres.conninfo",
            "expected a non-empty libpq connection string when backend.kind is \"postgres\", "
            "got \"\"");

  auto& p = c.pool;
  r.require_order("pool.min_connections", static_cast<uint64_t>(p.min_connections),
                  "pool.max_connections", static_cast<uint64_t>(p.max_connections), false,
                  "an integer");
  r.require_order("pool.connect_backoff_initial_ms",
                  static_cast<uint64_t>(p.connect_backoff_initial.count()),
                  "pool.connect_backoff_max_ms",
                  static_cast<uint64_t>(p.connect_backoff_max.count()), false, "an integer");
  r.require_order("pool.moderate_shed_fraction", p.queue.moderate_shed_fraction,
                  "pool.aggressive_shed_fraction", p.queue.aggressive_shed_fraction, false,
                  "a number");

  // The breaker's rules live in detail::validate; its messages name the core's fields.
  for (auto& problem : detail::validate(c.breaker.core))
    r.error("breaker", problem);
  for (auto& problem : detail::validate(c.rate_limiter.table))
    r.error("rate_limiter", problem);
  // A batch costs its items at the limiter: one above a client's capacity could never pass.
  auto& t = c.rate_limiter.table;
  bool gcra = t.algorithm == detail::rate_limit_algorithm::gcra;
  auto capacity = gcra ? t.burst : t.limit;
  if (c.database.max_batch_items > capacity && !r.failed("database.max_batch_items"))
    r.error("database.max_batch_items", std::to_string(c.database.max_batch_items) +
                                            " is more than one client may send at "
                                            "once (rate_limiter." +
                                            (gcra ? "burst" : "limit") + " " +
                                            std::to_string(capacity) +
                                            "): a full batch costs its items and could never pass");

  r.require_order("performance.low_load", c.performance.sampling.low_load, "performance.high_load",
                  c.performance.sampling.high_load, true, "a number");

  // Alert rules: detail::validate's messages start with the key they are about.
  std::set<std::string> alert_names;
  for (size_t i = 0; i < c.performance.alerts.size(); ++i) {
    auto& a = c.performance.alerts[i];
    auto path = "alerts[" + std::to_string(i) + "]";
    if (r.failed(path))
      continue;
    bool missing = false;
    for (auto key : {"name", "metric", "op", "threshold"}) // in rules the document gives
      if (r.present("alerts") && !r.present(join(path, key)) && !r.failed(join(path, key))) {
        r.error(join(path, key), "required");
        missing = true;
      }
    if (missing)
      continue;
    detail::metric_expr e;
    std::string err;
    if (detail::parse_metric_expr(a.metric, e, err) && e.func == detail::metric_func::rate &&
        e.window < 2 * c.performance.interval && !r.failed("performance.interval_ms"))
      r.error(join(path, "metric"),
              detail::format("the rate window (%.3g s) must be at least twice "
                             "performance.interval_ms (%.3g s): a rate needs two samples in it",
                             detail::secs(e.window), detail::secs(c.performance.interval)));
    for (auto& problem : detail::validate(a)) {
      auto colon = problem.find(": ");
      auto key = join(path, problem.substr(0, colon));
      if (!r.failed(key) && !r.failed(join(path, "threshold")))
        r.error(key, problem.substr(colon + 2));
    }
    if (!alert_names.insert(a.name).second && !r.failed(join(path, "name")))
      r.error(join(path, "name"), "duplicate alert name \"" + a.name + "\"");
  }

  auto& l = c.database.limits;
  r.require_order("database.floor_rows", static_cast<uint64_t>(l.floor_rows), "database.max_rows",
                  static_cast<uint64_t>(l.base_rows), false, "an integer", true);
  r.require_order("database.floor_bytes", static_cast<uint64_t>(l.floor_bytes),
                  "database.max_bytes", static_cast<uint64_t>(l.base_bytes), false, "an integer",
                  true);

  for (auto& [name, st] : c.database.statements) {
    auto path = join("statements", name);
    if (r.failed(path + ".sql"))
      continue;
    if (st.sql.empty()) {
      r.error(path + ".sql", "expected a non-empty string, got nothing");
      continue;
    }
    auto used = detail::sql_placeholders(st.sql);
    // SQLite numbers `$N` by first appearance and PostgreSQL needs every number up to the
    // highest, so both bind alike only when they first appear as $1, $2, $3, ...
    for (size_t i = 0; i < used.size(); ++i) {
      if (used[i] == i + 1)
        continue;
      auto want = "$" + std::to_string(i + 1);
      if (used[i] == 0)
        r.error(path + ".sql", "$0 is no placeholder: they are numbered from $1");
      else if (std::find(used.begin(), used.end(), i + 1) == used.end())
        r.error(path + ".sql", "the SQL uses $" + std::to_string(used[i]) + " but never " + want +
                                   ": placeholders must be $1..$N without gaps");
      else
        r.error(path + ".sql", "the SQL uses $" + std::to_string(used[i]) + " before " + want +
                                   ": placeholders must first appear in order $1, $2, ... "
                                   "(SQLite numbers them by first appearance)");
      break;
    }
    if (r.failed(path + ".params"))
      continue;
    uint64_t highest = used.empty() ? 0 : *std::max_element(used.begin(), used.end());
    if (highest != st.params.size()) {
      std::string uses = highest == 0   ? "no placeholders"
                         : highest == 1 ? "$1"
                                        : "$1..$" + std::to_string(highest);
      r.error(path + ".params", "the SQL uses " + uses + " but " +
                                    count_of(st.params.size(), "param") +
                                    (st.params.size() == 1 ? " is" : " are") + " declared");
    }
  }
  for (auto& [name, t] : c.database.transactions) {
    auto path = join("transactions", name);
    if (r.failed(path + ".steps"))
      continue;
    if (t.steps.empty())
      r.error(path + ".steps", "expected at least one statement, got none");
    else if (t.steps.size() > c.database.max_transaction_steps)
      r.error(path + ".steps", count_of(t.steps.size(), "step") + ", more than " +
                                   "database.max_transaction_steps (" +
                                   std::to_string(c.database.max_transaction_steps) + ")");
    for (size_t i = 0; i < t.steps.size(); ++i)
      if (c.database.statements.count(t.steps[i]) == 0 &&
          !r.failed(path + ".steps[" + std::to_string(i) + "]"))
        r.error(path + ".steps[" + std::to_string(i) + "]",
                "\"" + t.steps[i] + "\" is not a configured statement");
  }
}

/// Records duplicate keys, which the parser would silently resolve to the last one.
class duplicate_finder {
public:
  explicit duplicate_finder(std::vector<config_error>& errors) : errors_(errors) {}

  bool operator()(int, json::parse_event_t event, json& parsed) {
    using ev = json::parse_event_t;
    switch (event) {
    case ev::object_start:
    case ev::array_start:
      frames_.push_back({child_path(), event == ev::array_start, {}, {}});
      break;
    case ev::object_end:
    case ev::array_end:
      frames_.pop_back();
      break;
    case ev::key: {
      auto& top = frames_.back();
      top.last_key = parsed.get<std::string>();
      if (!top.seen.insert(top.last_key).second)
        errors_.push_back({join(top.path, top.last_key), "duplicate key"});
      break;
    }
    case ev::value:
      break;
    }
    return true;
  }

private:
  struct frame {
    std::string path;
    bool is_array;
    std::set<std::string> seen;
    std::string last_key;
  };

  std::string child_path() const {
    if (frames_.empty())
      return "";
    auto& top = frames_.back();
    return top.is_array ? top.path : join(top.path, top.last_key);
  }

  std::vector<config_error>& errors_;
  std::vector<frame> frames_;
};

/// The byte offset where arrays and objects first nest deeper than `max_nesting`, if they do.
/// Checked before parsing, so a hostile document is refused with a message rather than taking
/// the recursive parts of the parser and of dump() down with a stack overflow.
std::optional<size_t> too_deep(const std::string& text) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_nesting)
        return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

} // namespace

config_result parse_config(const std::string& json_text) {
  config_result result;
  if (auto at = too_deep(json_text)) {
    result.errors = {{"", "arrays and objects nest deeper than " + std::to_string(max_nesting) +
                              " levels at byte " + std::to_string(*at)}};
    return result;
  }
  json doc;
  try {
    doc = json::parse(json_text, duplicate_finder{result.errors});
  } catch (const json::parse_error& e) {
    std::string what = e.what(); // "[json.exception.parse_error.101] parse error at line ..."
    auto bracket = what.find("] ");
    if (bracket != std::string::npos)
      what = what.substr(bracket + 2);
    result.errors = {{"", "invalid JSON at byte " + std::to_string(e.byte) + ": " + what}};
    return result;
  } catch (const json::exception& e) {
    // A number past a double's range ("1e9999") is an out_of_range the parser throws even where
    // it reports syntax as parse_error: found by fuzz/config_fuzz.cpp, it ended bulwarkd with
    // std::terminate instead of an error naming the problem.
    std::string what = e.what(); // "[json.exception.out_of_range.406] number overflow parsing ..."
    auto bracket = what.find("] ");
    if (bracket != std::string::npos)
      what = what.substr(bracket + 2);
    result.errors = {{"", "invalid JSON: " + what}};
    return result;
  }
  if (!doc.is_object()) {
    result.errors = {{"", "expected a JSON object, got " + show(doc)}};
    return result;
  }
  reader r{result.errors};
  r.object(doc, "", [&] { visit(r, result.config); });
  check_relations(result.config, r);
  return result;
}

config_result load_config_file(const std::string& path) {
  auto fail = [&](int err) {
    config_result result;
    result.errors.push_back({"", "cannot read " + path + ": " + std::strerror(err)});
    return result;
  };
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr)
    return fail(errno);
  std::string text;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, file)) > 0)
    text.append(buf, n);
  int err = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (err != 0)
    return fail(err);
  return parse_config(text);
}

std::string format_errors(const std::vector<config_error>& errors) {
  std::string out;
  for (auto& e : errors)
    out += (e.path.empty() ? "(document)" : e.path) + ": " + e.message + "\n";
  return out;
}

std::string default_config_json() {
  engine_config defaults;
  json root = json::object();
  writer w{root};
  visit(w, defaults);
  return root.dump(2) + "\n";
}

std::string config_reference_markdown() {
  engine_config defaults;
  std::string out;
  documenter d{out};
  visit(d, defaults);
  return out;
}

} // namespace bulwark
