#include "runtime/config.hpp"

#include "actors/detail/host_port.hpp"
#include "actors/detail/sql_lexer.hpp"
#include "actors/detail/text.hpp"
#include "runtime/address_ranges.hpp"

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

/// Every key of the document. `v` is a reader or a writer; adding a section is one more block.
template <class Visitor>
void visit(Visitor& v, engine_config& c) {
  v.section("node", [&] {
    v.text("name", c.node.name, non_empty());
    v.text("data_dir", c.node.data_dir, non_empty());
  });
  v.section("http", [&] {
    auto& h = c.http;
    v.text("listen", h.listen, host_port());
    v.integer("threads", h.threads, {1, max_threads});
    v.integer("max_connections", h.max_connections, {1, max_count});
    v.integer("max_header_bytes", h.max_header_bytes, {512, mib});
    v.integer("max_body_bytes", h.max_body_bytes, {1, max_structure_bytes});
    v.duration("request_timeout_ms", h.request_timeout, {1});
    v.duration("idle_timeout_ms", h.idle_timeout, {1});
    v.integer("stream_after_bytes", h.stream_after_bytes, {0, max_structure_bytes});
    v.integer("stream_window_bytes", h.stream_window_bytes, {4096, 64 * mib});
    v.text_list("trusted_proxies", h.trusted_proxies,
                {"an address or a CIDR range (\"10.0.0.0/8\", \"fd00::/8\")",
                 [](const std::string& s) { return cidr_problem(s).empty(); }});
  });
  v.section("memory", [&] {
    auto& m = c.memory;
    v.text("source", m.source, one_of({"auto", "cgroup", "process", "file"}));
    v.text("file", m.file, any_text()); // required for source "file": see check_relations
    v.integer("budget_bytes", m.budget_bytes, {1, max_node_bytes});
    v.duration("sample_interval_ms", m.sample_interval, {1});
    v.section("thresholds", [&] {
      v.number("medium", m.thresholds.medium, ratio);
      v.number("high", m.thresholds.high, ratio);
      v.number("critical", m.thresholds.critical, ratio);
    });
    v.number("hysteresis", m.hysteresis, {0.0, 0.5, false, true});
    v.duration("min_dwell_ms", m.min_dwell, {0});
    v.integer("history_size", m.history_size, {1, max_count});
    v.boolean("admission", m.admission);
  });
  v.section("cleanup", [&] {
    auto& k = c.cleanup;
    v.duration("health_check_interval_ms", k.health_check_interval, {1});
    v.number("stale_factor", k.stale_factor, at_least_one);
    v.number("defer_factor", k.defer_factor, at_least_one);
    v.integer("task_max_restarts", k.task_max_restarts, {0, max_count});
    v.duration("task_restart_window_ms", k.task_restart_window, {1});
  });
  v.section("supervisor", [&] {
    auto& s = c.supervisor;
    v.integer("max_restarts", s.max_restarts, {0, max_count});
    v.duration("window_ms", s.window, {1});
    v.duration("backoff_initial_ms", s.backoff_initial, {0});
    v.duration("backoff_max_ms", s.backoff_max, {0});
    v.number("backoff_multiplier", s.backoff_multiplier, at_least_one);
  });
  v.section("admin", [&] {
    auto rule = host_port();
    v.text("listen", c.admin.listen,
           {"\"\" (off) or " + rule.expected,
            [rule](const std::string& s) { return s.empty() || rule.accepts(s); }});
    v.text("token_file", c.admin.token_file, any_text()); // read by bulwarkd at start
    v.boolean("fault_injection", c.admin.fault_injection);
  });
  v.section("shutdown", [&] { v.duration("drain_ms", c.shutdown.drain, {0}); });
  v.section("scheduler", [&] {
    v.integer("threads", c.scheduler.threads, {0, max_threads}); // 0: the cores
    v.text("policy", c.scheduler.policy, one_of({"stealing", "sharing"}));
    v.section("stealing", [&] {
      auto& w = c.scheduler.stealing;
      v.integer("aggressive_poll_attempts", w.aggressive_poll_attempts, {0, 1'000'000});
      v.integer("moderate_poll_attempts", w.moderate_poll_attempts, {0, 1'000'000});
      v.integer("moderate_sleep_us", w.moderate_sleep_us, {0, 1'000'000});
      v.integer("relaxed_sleep_ms", w.relaxed_sleep_ms, {1, 60'000});
    });
  });
  v.section("log", [&] {
    v.text("level", c.log.level, one_of({"debug", "info", "warn", "error"}));
  });
  v.section("remote", [&] {
    auto rule = host_port();
    v.text("listen", c.remote.listen,
           {"\"\" (off) or " + rule.expected,
            [rule](const std::string& s) { return s.empty() || rule.accepts(s); }});
  });
  v.section("backend", [&] {
    auto& b = c.backend;
    v.text("kind", b.kind, one_of({"sqlite", "postgres"}));
    v.section("sqlite", [&] {
      v.text("path", b.sqlite_path, any_text()); // empty: <node.data_dir>/bulwark.sqlite3
      v.duration("busy_timeout_ms", b.sqlite_busy_timeout,
                 {0, static_cast<uint64_t>(std::numeric_limits<int>::max())}); // an int in SQLite
    });
    v.section("postgres", [&] {
      v.text("conninfo", b.postgres_conninfo, any_text()); // required for kind "postgres"
      v.integer("connect_timeout_s", b.postgres_connect_timeout_s, {1, 86400});
    });
    v.text_list("init_sql", b.init_sql, non_empty());
  });
  v.section("pool", [&] {
    auto& p = c.pool;
    v.integer("min_connections", p.min_connections, {0, max_backend_connections});
    v.integer("max_connections", p.max_connections, {1, max_backend_connections});
    v.duration("acquire_timeout_ms", p.acquire_timeout, {1});
    v.duration("call_timeout_ms", p.call_timeout, {1});
    v.duration("idle_timeout_ms", p.idle_timeout, {1});
    v.duration("max_lifetime_ms", p.max_lifetime, {1});
    v.duration("health_check_interval_ms", p.health_check_interval, {1});
    v.duration("connect_backoff_initial_ms", p.connect_backoff_initial, {1});
    v.duration("connect_backoff_max_ms", p.connect_backoff_max, {1});
    v.duration("stuck_after_ms", p.stuck_after, {0});
    v.integer("max_waiters", p.queue.max_waiters, {1, max_count});
    v.number("moderate_shed_fraction", p.queue.moderate_shed_fraction, ratio);
    v.number("aggressive_shed_fraction", p.queue.aggressive_shed_fraction, ratio);
    v.duration("queue_delay_target_ms", p.queue.delay_target, {0});
    v.duration("queue_delay_interval_ms", p.queue.delay_interval, {1});
  });
  v.section("breaker", [&] {
    // Only the types are checked here; the ranges are detail::validate's (see check_relations).
    auto& b = c.breaker.core;
    using kind = detail::breaker_window_kind;
    std::string window = b.window_kind == kind::time_based ? "time" : "count";
    v.text("window", window, one_of({"count", "time"}));
    b.window_kind = window == "time" ? kind::time_based : kind::count_based;
    v.integer("window_size", b.window_size, {0});
    v.duration("window_ms", b.window_duration, {0});
    v.integer("minimum_calls", b.minimum_calls, {0});
    v.number("failure_rate_threshold", b.failure_rate_threshold, any_number);
    v.number("slow_call_rate_threshold", b.slow_call_rate_threshold, any_number);
    v.duration("slow_call_ms", b.slow_call_duration, {0});
    v.duration("open_wait_ms", b.open_wait, {0});
    v.duration("open_wait_max_ms", b.open_wait_max, {0});
    v.number("open_wait_multiplier", b.open_wait_multiplier, any_number);
    v.number("jitter", b.jitter, any_number);
    v.integer("half_open_probes", b.half_open_probes, {0});
    v.duration("call_timeout_ms", c.breaker.call_timeout, {1});
    v.duration("watch_interval_ms", c.breaker.watch_interval, {1});
    v.duration("contention_grace_ms", c.breaker.contention_grace, {0});
  });
  v.section("database", [&] {
    auto& l = c.database.limits;
    v.integer("max_rows", l.base_rows, {1, max_rows_or_entries});
    v.integer("max_bytes", l.base_bytes, {1, max_structure_bytes});
    v.integer("floor_rows", l.floor_rows, {1, max_rows_or_entries});
    v.integer("floor_bytes", l.floor_bytes, {1, max_structure_bytes});
    v.duration("default_timeout_ms", c.database.default_timeout, {1});
  });
  v.object_map("statements", c.database.statements, url_name(), [&](statement_config& s) {
    v.text("sql", s.sql, non_empty()); // required: see check_relations
    v.text_list("params", s.params, one_of({"int", "real", "text", "bool"}));
    v.boolean("read_only", s.read_only);
    v.duration("cache_ttl_ms", s.cache_ttl, {0});
  });
  v.section("cache", [&] {
    auto& k = c.cache;
    v.integer("shards", k.shards, {1, 256});
    v.integer("max_entries", k.max_entries, {1, max_rows_or_entries});
    v.integer("max_bytes", k.max_bytes, {1, max_node_bytes});
    v.integer("max_entry_bytes", k.max_entry_bytes, {1, max_structure_bytes});
    v.duration("default_ttl_ms", k.default_ttl, {1});
    v.duration("tick_ms", k.tick, {1});
    v.number("restore_step", k.restore_step, {0.0, 1.0, true, false});
  });
  v.section("rate_limiter", [&] {
    // Only the types are checked here; the ranges are detail::validate's (see check_relations).
    auto& t = c.rate_limiter.table;
    using algo = detail::rate_limit_algorithm;
    std::string algorithm = t.algorithm == algo::sliding_window ? "sliding_window" : "gcra";
    v.text("algorithm", algorithm, one_of({"gcra", "sliding_window"}));
    t.algorithm = algorithm == "sliding_window" ? algo::sliding_window : algo::gcra;
    v.number("rate_per_sec", t.rate_per_sec, any_number);
    v.integer("burst", t.burst, {0});
    v.integer("limit", t.limit, {0});
    v.duration("window_ms", t.window, {0});
    v.integer("max_bytes", t.max_bytes, {1, max_structure_bytes});
    using overflow = detail::rate_limit_overflow_policy;
    std::string policy = t.overflow == overflow::fail_open ? "fail_open" : "fail_closed";
    v.text("overflow", policy, one_of({"fail_closed", "fail_open"}));
    t.overflow = policy == "fail_open" ? overflow::fail_open : overflow::fail_closed;
    v.number("overflow_rate_per_sec", t.overflow_rate_per_sec, any_number);
    v.integer("overflow_burst", t.overflow_burst, {0});
    v.duration("expire_interval_ms", c.rate_limiter.expire_interval, {1});
  });
  v.section("gateway", [&] {
    v.duration("shed_retry_after_ms", c.gateway.shed_retry_after, {1});
    v.duration("component_timeout_ms", c.gateway.component_timeout, {1});
    v.integer("memory_wait_max", c.gateway.memory_wait_max, {0, max_count});
  });
  v.section("performance", [&] {
    auto& p = c.performance;
    v.boolean("enabled", p.enabled);
    v.duration("interval_ms", p.interval, {1});
    v.duration("adjust_interval_ms", p.adjust_interval, {1});
    v.number("min_sampling_ratio", p.sampling.min_ratio, ratio);
    v.number("high_load", p.sampling.high_load, ratio);
    v.number("low_load", p.sampling.low_load, {0.0, 1.0});
    v.duration("lag_reference_ms", p.lag_reference, {1});
    v.duration("history_max_age_ms", p.history_max_age, {1});
    // At least 64 points per series (below that one spike cannot stand out by 3 sigma).
    v.integer(
        "history_max_bytes", p.history_max_bytes,
        {perf_series_names().size() * 64 * sizeof(detail::history_point), max_structure_bytes});
    v.number("outlier_sigma", p.outlier_sigma,
             {0.0, std::numeric_limits<double>::infinity(), true});
  });
  // Ranges and the metric expression are detail::validate's (see check_relations).
  v.object_list("alerts", c.performance.alerts, [&](detail::alert_rule& a) {
    v.text("name", a.name, url_name());
    v.text("metric", a.metric, non_empty());
    std::string op = detail::to_string(a.op);
    v.text("op", op, one_of({">", ">=", "<", "<=", "==", "!="}));
    detail::parse_alert_op(op, a.op);
    v.number("threshold", a.threshold, any_number);
    double for_s = detail::secs(a.for_duration);
    v.number("for_seconds", for_s, {0.0, 1e9}); // 1e9 s still fits a caf::timespan
    a.for_duration =
        std::chrono::duration_cast<caf::timespan>(std::chrono::duration<double>(for_s));
    // Absent: the threshold (no hysteresis).
    v.optional_number("clear_threshold", a.clear_threshold, any_number);
    if (std::isnan(a.clear_threshold))
      a.clear_threshold = a.threshold;
    v.text("severity", a.severity, one_of({"info", "warning", "critical"}));
  });
}

/// Builds the JSON of a config (used for the defaults).
class writer {
public:
  explicit writer(json& root) : cur_(&root) {}

  template <class F>
  void section(const char* key, F&& body) {
    json* outer = cur_;
    cur_ = &((*outer)[key] = json::object());
    body();
    cur_ = outer;
  }
  template <class T>
  void integer(const char* key, const T& x, int_range) {
    (*cur_)[key] = x;
  }
  template <class Rep, class Period>
  void duration(const char* key, const std::chrono::duration<Rep, Period>& x, int_range) {
    (*cur_)[key] = std::chrono::duration_cast<millis>(x).count();
  }
  void number(const char* key, double x, const real_range&) { (*cur_)[key] = x; }
  void boolean(const char* key, bool x) { (*cur_)[key] = x; }
  void text(const char* key, const std::string& x, const text_rule&) { (*cur_)[key] = x; }
  void text_list(const char* key, const std::vector<std::string>& xs, const text_rule&) {
    (*cur_)[key] = xs;
  }
  /// An array of objects, each written by `body(entry)`.
  template <class T, class F>
  void object_list(const char* key, std::vector<T>& entries, F&& body) {
    json* outer = cur_;
    json& arr = ((*outer)[key] = json::array());
    for (auto& entry : entries) {
      arr.push_back(json::object());
      cur_ = &arr.back();
      body(entry);
    }
    cur_ = outer;
  }
  void optional_number(const char* key, double x, const real_range&) { (*cur_)[key] = x; }
  /// An object of objects, one per map entry, each written by `body(entry)`.
  template <class T, class F>
  void object_map(const char* key, std::map<std::string, T>& entries, const text_rule&, F&& body) {
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
  void section(const char* key, F&& body) {
    if (const json* value = find(key)) {
      if (value->is_object())
        object(*value, join(path_, key), std::forward<F>(body));
      else
        error(join(path_, key), "expected an object, got " + show(*value));
    }
  }

  template <class T>
  void integer(const char* key, T& out, int_range r) {
    r.hi = std::min<uint64_t>(r.hi, std::numeric_limits<T>::max());
    if (auto x = read_integer(key, r))
      out = static_cast<T>(*x);
  }

  /// Read as milliseconds (the key says so: `*_ms`), stored in whatever unit `out` has.
  template <class Rep, class Period>
  void duration(const char* key, std::chrono::duration<Rep, Period>& out, int_range r) {
    using target = std::chrono::duration<Rep, Period>;
    static_assert(sizeof(Rep) >= 8 && std::ratio_greater_equal_v<Period, std::nano> &&
                      std::ratio_less_equal_v<Period, std::milli>,
                  "exact for a 64-bit count of units from ns to ms (max_ms fits in nanoseconds)");
    r.hi = std::min(r.hi, max_ms);
    if (auto x = read_integer(key, r))
      out = std::chrono::duration_cast<target>(millis{static_cast<millis::rep>(*x)});
  }

  void number(const char* key, double& out, const real_range& r) {
    const json* value = find(key);
    if (value == nullptr)
      return;
    if (!value->is_number() || !r.contains(value->get<double>()))
      return error(join(path_, key), "expected " + expected(r) + ", got " + show(*value));
    out = value->get<double>();
  }

  void boolean(const char* key, bool& out) {
    const json* value = find(key);
    if (value == nullptr)
      return;
    if (!value->is_boolean())
      return error(join(path_, key), "expected true or false, got " + show(*value));
    out = value->get<bool>();
  }

  void text(const char* key, std::string& out, const text_rule& rule) {
    const json* value = find(key);
    if (value == nullptr)
      return;
    if (!value->is_string() || !rule.accepts(value->get<std::string>()))
      return error(join(path_, key), "expected " + rule.expected + ", got " + show(*value));
    out = value->get<std::string>();
  }

  /// An array of strings, each accepted by `rule`; an error is reported at its index
  /// (`key[2]`), and then the whole array is rejected (the default stays).
  void text_list(const char* key, std::vector<std::string>& out, const text_rule& rule) {
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
                  F&& body) {
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
  void object_list(const char* key, std::vector<T>& out, F&& body) {
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
  void optional_number(const char* key, double& out, const real_range& r) {
    out = std::numeric_limits<double>::quiet_NaN();
    number(key, out, r);
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

} // namespace bulwark
