#include "runtime/config.hpp"

#include "support/pki.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

/// The message of the one error at `path`; fails the test when there is not exactly one.
std::string error_at(const config_result& r, const std::string& path) {
  std::string found;
  int n = 0;
  for (auto& e : r.errors)
    if (e.path == path) {
      found = e.message;
      ++n;
    }
  INFO(format_errors(r.errors));
  CHECK(n == 1);
  return found;
}

} // namespace

TEST_CASE("an empty object yields the defaults", "[config]") {
  auto r = parse_config("{}");
  REQUIRE(r.ok());
  engine_config d;
  CHECK(r.config.node.name == "bulwark");
  CHECK(r.config.node.data_dir == d.node.data_dir);
  CHECK(r.config.http.listen == "127.0.0.1:8080");
  CHECK(r.config.http.request_timeout == 10s);
  CHECK(r.config.memory.source == "auto");
  CHECK(r.config.memory.thresholds.high == d.memory.thresholds.high);
  CHECK(r.config.memory.min_dwell == d.memory.min_dwell);
  CHECK(r.config.cleanup.stale_factor == d.cleanup.stale_factor);
  CHECK(r.config.supervisor.backoff_max == d.supervisor.backoff_max);
  CHECK_FALSE(r.config.admin.fault_injection);
  CHECK(r.config.shutdown.drain == 5s);
  CHECK(r.config.scheduler.policy == "stealing");
  CHECK(r.config.log.level == "info");
}

TEST_CASE("valid overrides are applied and other keys keep their defaults", "[config]") {
  auto r = parse_config(R"({
    "node": {"name": "edge-1"},
    "http": {"listen": "[::1]:0", "threads": 4, "idle_timeout_ms": 1500},
    "memory": {"source": "file", "file": "/tmp/ratio", "budget_bytes": 2048,
               "thresholds": {"medium": 0.5, "high": 0.6, "critical": 1},
               "hysteresis": 0, "min_dwell_ms": 0},
    "cleanup": {"stale_factor": 2, "task_max_restarts": 0},
    "supervisor": {"backoff_initial_ms": 100, "backoff_max_ms": 100, "backoff_multiplier": 1.5},
    "admin": {"fault_injection": true},
    "shutdown": {"drain_ms": 0},
    "scheduler": {"threads": 8, "policy": "sharing"},
    "log": {"level": "debug"}
  })");
  INFO(format_errors(r.errors));
  REQUIRE(r.ok());
  auto& c = r.config;
  CHECK(c.node.name == "edge-1");
  CHECK(c.node.data_dir == "data");
  CHECK(c.http.listen == "[::1]:0");
  CHECK(c.http.threads == 4);
  CHECK(c.http.idle_timeout == 1500ms);
  CHECK(c.http.request_timeout == 10s);
  CHECK(c.memory.source == "file");
  CHECK(c.memory.file == "/tmp/ratio");
  CHECK(c.memory.budget_bytes == 2048);
  CHECK(c.memory.thresholds.medium == 0.5);
  CHECK(c.memory.thresholds.high == 0.6);
  CHECK(c.memory.thresholds.critical == 1.0);
  CHECK(c.memory.hysteresis == 0.0);
  CHECK(c.memory.min_dwell == 0ms);
  CHECK(c.memory.history_size == 256);
  CHECK(c.cleanup.stale_factor == 2.0);
  CHECK(c.cleanup.task_max_restarts == 0);
  CHECK(c.supervisor.backoff_initial == 100ms);
  CHECK(c.supervisor.backoff_max == 100ms);
  CHECK(c.supervisor.backoff_multiplier == 1.5);
  CHECK(c.admin.fault_injection);
  CHECK(c.shutdown.drain == 0ms);
  CHECK(c.scheduler.threads == 8);
  CHECK(c.scheduler.policy == "sharing");
  CHECK(c.log.level == "debug");
}

TEST_CASE("a value of the wrong type is an error at its path", "[config]") {
  CHECK(error_at(parse_config(R"({"http": {"threads": 1.5}})"), "http.threads") ==
        "expected an integer >= 1, got 1.5");
  CHECK(error_at(parse_config(R"({"http": {"threads": "10"}})"), "http.threads") ==
        "expected an integer >= 1, got \"10\"");
  CHECK(error_at(parse_config(R"({"shutdown": {"drain_ms": true}})"), "shutdown.drain_ms") ==
        "expected an integer >= 0, got true");
  CHECK(error_at(parse_config(R"({"memory": {"hysteresis": "0.1"}})"), "memory.hysteresis") ==
        "expected a number in [0, 0.5), got \"0.1\"");
  CHECK(error_at(parse_config(R"({"admin": {"fault_injection": 1}})"), "admin.fault_injection") ==
        "expected true or false, got 1");
  CHECK(error_at(parse_config(R"({"node": {"name": 7}})"), "node.name") ==
        "expected a non-empty string, got 7");
  CHECK(error_at(parse_config(R"({"memory": {"thresholds": [0.7]}})"), "memory.thresholds") ==
        "expected an object, got [0.7]");
  CHECK(error_at(parse_config(R"({"log": "debug"})"), "log") ==
        "expected an object, got \"debug\"");
}

TEST_CASE("a value out of range is an error at its path", "[config]") {
  CHECK(error_at(parse_config(R"({"http": {"max_connections": -3}})"), "http.max_connections") ==
        "expected an integer >= 1, got -3");
  CHECK(error_at(parse_config(R"({"http": {"max_header_bytes": 511}})"), "http.max_header_bytes") ==
        "expected an integer >= 512, got 511");
  CHECK(error_at(parse_config(R"({"http": {"request_timeout_ms": 0}})"),
                 "http.request_timeout_ms") == "expected an integer >= 1, got 0");
  CHECK(error_at(parse_config(R"({"memory": {"thresholds": {"critical": 1.2}}})"),
                 "memory.thresholds.critical") == "expected a number in (0, 1], got 1.2");
  CHECK(error_at(parse_config(R"({"memory": {"hysteresis": 0.5}})"), "memory.hysteresis") ==
        "expected a number in [0, 0.5), got 0.5");
  CHECK(error_at(parse_config(R"({"cleanup": {"stale_factor": 0.9}})"), "cleanup.stale_factor") ==
        "expected a number >= 1, got 0.9");
  CHECK(error_at(parse_config(R"({"node": {"data_dir": ""}})"), "node.data_dir") ==
        "expected a non-empty string, got \"\"");
  CHECK(error_at(parse_config(R"({"supervisor": {"window_ms": 10000000000000000}})"),
                 "supervisor.window_ms") ==
        "expected an integer <= 9223372036854, got 10000000000000000");
}

TEST_CASE("the admin listener: loopback by default, never the public port; trusted proxies are "
          "CIDR ranges, none by default",
          "[config]") {
  auto defaults = parse_config("{}");
  REQUIRE(defaults.ok());
  CHECK(defaults.config.admin.listen == "127.0.0.1:8081");
  CHECK(defaults.config.admin.token_file.empty());
  CHECK(defaults.config.http.trusted_proxies.empty());
  CHECK(parse_config(R"({"admin": {"listen": ""}})").ok());
  CHECK(parse_config(R"({"http": {"listen": "127.0.0.1:0"}, "admin": {"listen": "127.0.0.1:0"}})")
            .ok());
  CHECK(error_at(parse_config(R"({"admin": {"listen": "127.0.0.1:8080"}})"), "admin.listen") ==
        "expected another address than http.listen (\"127.0.0.1:8080\"): the admin routes never "
        "share the public port");
  CHECK(error_at(parse_config(R"({"admin": {"listen": "nowhere"}})"), "admin.listen")
            .rfind("expected \"\" (off) or \"host:port\"", 0) == 0);
  auto ok = parse_config(R"({"http": {"trusted_proxies": ["10.0.0.0/8", "::1", "fd00::/8"]}})");
  REQUIRE(ok.ok());
  CHECK(ok.config.http.trusted_proxies.size() == 3);
  auto bad = parse_config(R"({"http": {"trusted_proxies": ["10.0.0.0/8", "10.0.0.0/40", 7]}})");
  CHECK(error_at(bad, "http.trusted_proxies[1]").rfind("expected an address or a CIDR range", 0) ==
        0);
  CHECK_FALSE(error_at(bad, "http.trusted_proxies[2]").empty());
  CHECK(
      error_at(parse_config(R"({"gateway": {"trust_client_id": true}})"), "gateway.trust_client_id")
          .rfind("unknown key", 0) == 0);
}

TEST_CASE("http.listen must be host:port with a port up to 65535", "[config]") {
  for (auto good : {"0.0.0.0:80", "localhost:65535", "[::]:0", "[fe80::1]:8080"})
    CHECK(parse_config(std::string(R"({"http": {"listen": ")") + good + "\"}}").ok());
  for (auto bad : {"localhost", ":8080", "host:", "host:65536", "host:80a", "::1:80", "[]:80",
                   "[127.0.0.1]:80", "my host:80"}) {
    auto r = parse_config(std::string(R"({"http": {"listen": ")") + bad + "\"}}");
    INFO(bad);
    CHECK(error_at(r, "http.listen").rfind("expected \"host:port\" with a port 0..65535", 0) == 0);
  }
}

TEST_CASE("a value outside its choices is an error naming them", "[config]") {
  CHECK(error_at(parse_config(R"({"memory": {"source": "cgroups"}})"), "memory.source") ==
        R"(expected one of "auto", "cgroup", "process", "file", got "cgroups")");
  CHECK(error_at(parse_config(R"({"scheduler": {"policy": "fifo"}})"), "scheduler.policy") ==
        R"(expected one of "stealing", "sharing", got "fifo")");
  CHECK(error_at(parse_config(R"({"log": {"level": "trace"}})"), "log.level") ==
        R"(expected one of "debug", "info", "warn", "error", got "trace")");
}

TEST_CASE("unknown keys are errors at the top level and nested", "[config]") {
  auto r =
      parse_config(R"({"htp": {}, "memory": {"thresholds": {"hgih": 0.8}}, "log": {"lvl": 1}})");
  CHECK(r.errors.size() == 3);
  CHECK(error_at(r, "htp").rfind("unknown key", 0) == 0);
  CHECK(error_at(r, "memory.thresholds.hgih") ==
        "unknown key (known here: medium, high, critical)");
  CHECK(error_at(r, "log.lvl") == "unknown key (known here: level)");
}

TEST_CASE("a duplicate key is an error instead of the last one silently winning", "[config]") {
  auto r = parse_config(R"({"http": {"threads": 2, "threads": 3}})");
  CHECK(error_at(r, "http.threads") == "duplicate key");
}

TEST_CASE("the file source requires memory.file", "[config]") {
  CHECK(error_at(parse_config(R"({"memory": {"source": "file"}})"), "memory.file") ==
        R"(expected a non-empty path when memory.source is "file", got nothing)");
  CHECK(error_at(parse_config(R"({"memory": {"source": "file", "file": ""}})"), "memory.file") ==
        R"(expected a non-empty path when memory.source is "file", got "")");
  CHECK(parse_config(R"({"memory": {"source": "file", "file": "/run/ratio"}})").ok());
}

TEST_CASE("thresholds that are not ascending are reported at the offending key", "[config]") {
  auto both = parse_config(R"({"memory": {"thresholds": {"medium": 0.9, "high": 0.85}}})");
  CHECK(both.errors.size() == 1);
  CHECK(error_at(both, "memory.thresholds.high") ==
        "expected a number > memory.thresholds.medium (0.9), got 0.85");

  // Only medium is set: the document's own key is blamed, not the default it collides with.
  auto one = parse_config(R"({"memory": {"thresholds": {"medium": 0.9}}})");
  CHECK(error_at(one, "memory.thresholds.medium") ==
        "expected a number < memory.thresholds.high (0.85), got 0.9");

  auto equal = parse_config(R"({"memory": {"thresholds": {"high": 0.95}}})");
  CHECK(error_at(equal, "memory.thresholds.high") ==
        "expected a number < memory.thresholds.critical (0.95), got 0.95");
}

TEST_CASE("hysteresis must be smaller than the medium threshold", "[config]") {
  auto r = parse_config(R"({"memory": {"thresholds": {"medium": 0.2}, "hysteresis": 0.3}})");
  CHECK(r.errors.size() == 1);
  CHECK(error_at(r, "memory.hysteresis") ==
        "expected a number < memory.thresholds.medium (0.2), got 0.3");
}

TEST_CASE("backoff_max_ms may not be below backoff_initial_ms", "[config]") {
  auto r = parse_config(R"({"supervisor": {"backoff_initial_ms": 6000}})");
  CHECK(error_at(r, "supervisor.backoff_initial_ms") ==
        "expected an integer <= supervisor.backoff_max_ms (5000), got 6000");
  auto both = parse_config(R"({"supervisor": {"backoff_initial_ms": 200, "backoff_max_ms": 100}})");
  CHECK(error_at(both, "supervisor.backoff_max_ms") ==
        "expected an integer >= supervisor.backoff_initial_ms (200), got 100");
}

TEST_CASE("every problem is reported at once", "[config]") {
  auto r = parse_config(R"({
    "http": {"listen": "nope", "threads": 0},
    "memory": {"source": "cgroups", "thresholds": {"medium": 2}},
    "cleanup": {"defer_factor": "x"},
    "extra": 1
  })");
  CHECK(r.errors.size() == 6);
  for (auto path : {"http.listen", "http.threads", "memory.source", "memory.thresholds.medium",
                    "cleanup.defer_factor", "extra"})
    CHECK_FALSE(error_at(r, path).empty());
  // The defaults stay where a value was rejected.
  CHECK(r.config.http.threads == 1);
  CHECK(r.config.memory.thresholds.medium == 0.70);
}

TEST_CASE("invalid JSON is one document error with the byte position", "[config]") {
  auto r = parse_config(R"({"http": {"threads": 1,}})");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].path.empty());
  CHECK(r.errors[0].message.rfind("invalid JSON at byte 24: ", 0) == 0);
  CHECK(r.errors[0].message.find("line 1, column 24") != std::string::npos);

  auto empty = parse_config("");
  REQUIRE(empty.errors.size() == 1);
  CHECK(empty.errors[0].path.empty());
}

TEST_CASE("a document that is not an object is one document error", "[config]") {
  auto r = parse_config("[1, 2]");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].path.empty());
  CHECK(r.errors[0].message == "expected a JSON object, got [1,2]");
  CHECK(format_errors(r.errors) == "(document): expected a JSON object, got [1,2]\n");
}

TEST_CASE("an unreadable file is one document error naming the file", "[config]") {
  auto r = load_config_file("/nonexistent/bulwark.json");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].path.empty());
  CHECK(r.errors[0].message == "cannot read /nonexistent/bulwark.json: No such file or directory");
  auto dir = load_config_file(BULWARK_SOURCE_DIR "/config");
  REQUIRE(dir.errors.size() == 1);
  CHECK(dir.errors[0].message.find("Is a directory") != std::string::npos);
}

TEST_CASE("format_errors writes one path: message line per error", "[config]") {
  auto r = parse_config(R"({"node": {"name": ""}, "log": {"level": "x"}})");
  CHECK(format_errors(r.errors) ==
        "node.name: expected a non-empty string, got \"\"\n"
        "log.level: expected one of \"debug\", \"info\", \"warn\", \"error\", got \"x\"\n");
}

TEST_CASE("the default configuration parses back to the defaults", "[config]") {
  auto r = parse_config(default_config_json());
  INFO(format_errors(r.errors));
  REQUIRE(r.ok());
  CHECK(default_config_json().rfind("{\n  \"node\": {\n    \"name\": \"bulwark\"", 0) == 0);
}

TEST_CASE("config/default.json holds the built-in defaults and the demo", "[config]") {
  const std::string file = BULWARK_SOURCE_DIR "/config/default.json";
  auto loaded = load_config_file(file);
  INFO(format_errors(loaded.errors));
  REQUIRE(loaded.ok());

  auto on_disk = nlohmann::json::parse(test::read_file(file));
  auto defaults = nlohmann::json::parse(default_config_json());
  // backend.init_sql and statements are empty by default; the file ships the demo there.
  REQUIRE(defaults["backend"]["init_sql"] == nlohmann::json::array());
  REQUIRE(defaults["statements"] == nlohmann::json::object());
  REQUIRE(defaults["transactions"] == nlohmann::json::object());
  CHECK_FALSE(on_disk["backend"]["init_sql"].empty());
  CHECK_FALSE(on_disk["statements"].empty());
  CHECK_FALSE(on_disk["transactions"].empty());
  auto rest = on_disk;
  rest["backend"]["init_sql"] = defaults["backend"]["init_sql"];
  rest["statements"] = defaults["statements"];
  rest["transactions"] = defaults["transactions"];
  CHECK(rest == defaults);
  auto leaves = defaults.flatten(); // {"/memory/thresholds/high": 0.85, ...}
  REQUIRE(leaves.size() > 60);
  for (auto& leaf : leaves.items()) {
    INFO(leaf.key());
    CHECK(on_disk.contains(nlohmann::json::json_pointer(leaf.key())));
  }
}

TEST_CASE("a number past a double's range is an error, not a crash (found by fuzzing)",
          "[config]") {
  // fuzz/findings: config_fuzz's first crash, "\n99999999999e9999".
  for (auto text : {"\n99999999999e9999", "{\"memory\": {\"hysteresis\": 1e9999}}"}) {
    auto r = parse_config(text);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].path.empty());
    CHECK_THAT(r.errors[0].message, Catch::StartsWith("invalid JSON: number overflow parsing"));
  }
}

TEST_CASE("docs/configuration.md is the generated reference of every key", "[config]") {
  auto reference = config_reference_markdown();
  const std::string begin = "<!-- BEGIN generated by bulwarkd --print-config-reference -->\n";
  const std::string end = "<!-- END generated -->";
  auto doc = test::read_file(BULWARK_SOURCE_DIR "/docs/configuration.md");
  auto i = doc.find(begin);
  auto j = doc.find(end);
  REQUIRE(i != std::string::npos);
  REQUIRE(j != std::string::npos);
  INFO("stale: run scripts/update-docs.sh after changing a key in runtime/config.cpp");
  CHECK(doc.substr(i + begin.size(), j - i - begin.size()) == reference);

  // Every key of the defaults has a row, and every row says what its key means.
  auto leaves = nlohmann::json::parse(default_config_json()).flatten();
  for (auto& leaf : leaves.items()) {
    auto path = leaf.key().substr(1); // "/memory/thresholds/high"
    if (path.rfind("alerts/", 0) == 0)
      path = "alerts[]" + path.substr(path.find('/', 7)); // "alerts/0/name" -> "alerts[]/name"
    std::replace(path.begin(), path.end(), '/', '.');
    INFO(path);
    CHECK(reference.find("| `" + path + "` |") != std::string::npos);
  }
  std::istringstream rows{reference};
  size_t keys = 0;
  for (std::string row; std::getline(rows, row);) {
    if (row.rfind("| `", 0) != 0)
      continue;
    ++keys;
    INFO(row);
    CHECK(row.size() > 6);
    CHECK(row.compare(row.size() - 4, 4, "|  |") != 0); // an empty meaning
  }
  CHECK(keys > leaves.size() / 2);
}

// -- the backend path -----------------------------------------------------------------------------

TEST_CASE("the backend sections default to the structs' defaults", "[config]") {
  auto r = parse_config("{}");
  REQUIRE(r.ok());
  auto& c = r.config;
  backend_config b;
  CHECK(c.backend.kind == "sqlite");
  CHECK(c.backend.sqlite_path.empty());
  CHECK(c.backend.sqlite_busy_timeout == b.sqlite_busy_timeout);
  CHECK(c.backend.postgres_conninfo == b.postgres_conninfo);
  CHECK(c.backend.postgres_connect_timeout_s == b.postgres_connect_timeout_s);
  CHECK(c.backend.init_sql.empty());
  connection_pool_config p;
  CHECK(c.pool.min_connections == p.min_connections);
  CHECK(c.pool.max_connections == p.max_connections);
  CHECK(c.pool.acquire_timeout == p.acquire_timeout);
  CHECK(c.pool.max_lifetime == p.max_lifetime);
  CHECK(c.pool.connect_backoff_max == p.connect_backoff_max);
  CHECK(c.pool.queue.max_waiters == p.queue.max_waiters);
  CHECK(c.pool.queue.moderate_shed_fraction == p.queue.moderate_shed_fraction);
  CHECK(c.pool.queue.aggressive_shed_fraction == p.queue.aggressive_shed_fraction);
  CHECK(c.pool.queue.delay_target == p.queue.delay_target);
  CHECK(c.pool.queue.delay_interval == p.queue.delay_interval);
  circuit_breaker_config k;
  CHECK(c.breaker.core.window_kind == detail::breaker_window_kind::count_based);
  CHECK(c.breaker.core.window_size == k.core.window_size);
  CHECK(c.breaker.core.window_duration == k.core.window_duration);
  CHECK(c.breaker.core.failure_rate_threshold == k.core.failure_rate_threshold);
  CHECK(c.breaker.core.slow_call_duration == k.core.slow_call_duration);
  CHECK(c.breaker.core.open_wait_max == k.core.open_wait_max);
  CHECK(c.breaker.core.jitter == k.core.jitter);
  CHECK(c.breaker.call_timeout == k.call_timeout);
  database_config d;
  CHECK(c.database.limits.base_rows == d.limits.base_rows);
  CHECK(c.database.limits.floor_bytes == d.limits.floor_bytes);
  CHECK(c.database.limits.medium == d.limits.medium);
  CHECK(c.database.default_timeout == d.default_timeout);
  CHECK(c.database.statements.empty());
}

TEST_CASE("the backend sections read every key", "[config]") {
  auto r = parse_config(R"json({
    "backend": {"kind": "postgres", "sqlite": {"path": "/var/db.sqlite3", "busy_timeout_ms": 0},
                "postgres": {"conninfo": "host=db dbname=x", "connect_timeout_s": 2},
                "init_sql": ["CREATE TABLE t (a INT)", "SELECT 1"]},
    "pool": {"min_connections": 0, "max_connections": 2, "acquire_timeout_ms": 10,
             "call_timeout_ms": 20, "idle_timeout_ms": 30, "max_lifetime_ms": 40,
             "health_check_interval_ms": 50, "connect_backoff_initial_ms": 60,
             "connect_backoff_max_ms": 60, "max_waiters": 7,
             "moderate_shed_fraction": 0.5, "aggressive_shed_fraction": 0.5,
             "queue_delay_target_ms": 0, "queue_delay_interval_ms": 250},
    "breaker": {"window": "time", "window_size": 5, "window_ms": 30000, "minimum_calls": 3,
                "failure_rate_threshold": 1, "slow_call_rate_threshold": 0.25,
                "slow_call_ms": 250, "open_wait_ms": 100, "open_wait_max_ms": 100,
                "open_wait_multiplier": 1, "jitter": 0, "half_open_probes": 1,
                "call_timeout_ms": 750},
    "database": {"max_rows": 500, "max_bytes": 4096, "floor_rows": 500, "floor_bytes": 1,
                 "default_timeout_ms": 1234},
    "statements": {
      "by_id_2": {"sql": "SELECT * FROM t WHERE a = $1 OR b = $2 OR c = $1",
                  "params": ["int", "text"], "read_only": false},
      "all": {"sql": "SELECT '$1', \"$2\", x$3 FROM t -- $4\n /* $5 */ WHERE y = $$ $6 $$"}
    }
  })json");
  INFO(format_errors(r.errors));
  REQUIRE(r.ok());
  auto& c = r.config;
  CHECK(c.backend.kind == "postgres");
  CHECK(c.backend.sqlite_path == "/var/db.sqlite3");
  CHECK(c.backend.sqlite_busy_timeout == 0ms);
  CHECK(c.backend.postgres_conninfo == "host=db dbname=x");
  CHECK(c.backend.postgres_connect_timeout_s == 2);
  CHECK(c.backend.init_sql == std::vector<std::string>{"CREATE TABLE t (a INT)", "SELECT 1"});
  CHECK(c.pool.min_connections == 0);
  CHECK(c.pool.max_connections == 2);
  CHECK(c.pool.acquire_timeout == 10ms);
  CHECK(c.pool.call_timeout == 20ms);
  CHECK(c.pool.idle_timeout == 30ms);
  CHECK(c.pool.max_lifetime == 40ms);
  CHECK(c.pool.health_check_interval == 50ms);
  CHECK(c.pool.connect_backoff_initial == 60ms);
  CHECK(c.pool.connect_backoff_max == 60ms);
  CHECK(c.pool.queue.max_waiters == 7);
  CHECK(c.pool.queue.moderate_shed_fraction == 0.5);
  CHECK(c.pool.queue.aggressive_shed_fraction == 0.5);
  CHECK(c.pool.queue.delay_target == std::chrono::milliseconds(0));
  CHECK(c.pool.queue.delay_interval == std::chrono::milliseconds(250));
  auto& k = c.breaker.core;
  CHECK(k.window_kind == detail::breaker_window_kind::time_based);
  CHECK(k.window_size == 5);
  CHECK(k.window_duration == 30s);
  CHECK(k.minimum_calls == 3);
  CHECK(k.failure_rate_threshold == 1.0);
  CHECK(k.slow_call_rate_threshold == 0.25);
  CHECK(k.slow_call_duration == 250ms);
  CHECK(k.open_wait == 100ms);
  CHECK(k.open_wait_max == 100ms);
  CHECK(k.open_wait_multiplier == 1.0);
  CHECK(k.jitter == 0.0);
  CHECK(k.half_open_probes == 1);
  CHECK(c.breaker.call_timeout == 750ms);
  CHECK(c.database.limits.base_rows == 500);
  CHECK(c.database.limits.base_bytes == 4096);
  CHECK(c.database.limits.floor_rows == 500);
  CHECK(c.database.limits.floor_bytes == 1);
  CHECK(c.database.limits.medium == detail::limit_config{}.medium); // not in JSON
  CHECK(c.database.default_timeout == 1234ms);
  REQUIRE(c.database.statements.size() == 2);
  auto& by_id = c.database.statements.at("by_id_2");
  CHECK(by_id.params == std::vector<std::string>{"int", "text"});
  CHECK_FALSE(by_id.read_only);
  auto& all = c.database.statements.at("all"); // quoted and commented $N are no placeholders
  CHECK(all.params.empty());
  CHECK(all.read_only);
}

TEST_CASE("backend errors are reported at their paths", "[config]") {
  CHECK(error_at(parse_config(R"({"backend": {"kind": "mysql"}})"), "backend.kind") ==
        R"(expected one of "sqlite", "postgres", got "mysql")");
  CHECK(error_at(parse_config(R"({"backend": {"kind": "postgres", "postgres": {"conninfo": ""}}})"),
                 "backend.postgres.conninfo") ==
        R"(expected a non-empty libpq connection string when backend.kind is "postgres", got "")");
  // An empty conninfo is fine while the backend is SQLite.
  CHECK(parse_config(R"({"backend": {"postgres": {"conninfo": ""}}})").ok());
  CHECK(error_at(parse_config(R"({"backend": {"postgres": {"connect_timeout_s": 0}}})"),
                 "backend.postgres.connect_timeout_s") == "expected an integer >= 1, got 0");
  CHECK(error_at(parse_config(R"({"backend": {"sqlite": {"busy_timeout_ms": 3000000000}}})"),
                 "backend.sqlite.busy_timeout_ms") ==
        "expected an integer <= 2147483647, got 3000000000");
  CHECK(error_at(parse_config(R"({"backend": {"sqlite": {"file": "x"}}})"),
                 "backend.sqlite.file") == "unknown key (known here: path, busy_timeout_ms)");

  auto not_text = parse_config(R"({"backend": {"init_sql": ["SELECT 1", 42, ""]}})");
  CHECK(not_text.errors.size() == 2);
  CHECK(error_at(not_text, "backend.init_sql[1]") == "expected a non-empty string, got 42");
  CHECK(error_at(not_text, "backend.init_sql[2]") == "expected a non-empty string, got \"\"");
  CHECK(not_text.config.backend.init_sql.empty()); // rejected as a whole
  CHECK(error_at(parse_config(R"({"backend": {"init_sql": "SELECT 1"}})"), "backend.init_sql") ==
        "expected an array (each element a non-empty string), got \"SELECT 1\"");
}

TEST_CASE("pool errors are reported at their paths", "[config]") {
  auto over = parse_config(R"({"pool": {"min_connections": 9}})");
  CHECK(over.errors.size() == 1);
  CHECK(error_at(over, "pool.min_connections") ==
        "expected an integer <= pool.max_connections (8), got 9");
  auto both = parse_config(R"({"pool": {"min_connections": 4, "max_connections": 3}})");
  CHECK(error_at(both, "pool.max_connections") ==
        "expected an integer >= pool.min_connections (4), got 3");
  CHECK(error_at(parse_config(R"({"pool": {"max_connections": 0}})"), "pool.max_connections") ==
        "expected an integer >= 1, got 0");
  CHECK(error_at(parse_config(R"({"pool": {"connect_backoff_initial_ms": 20000}})"),
                 "pool.connect_backoff_initial_ms") ==
        "expected an integer <= pool.connect_backoff_max_ms (10000), got 20000");
  CHECK(error_at(parse_config(R"({"pool": {"acquire_timeout_ms": 0}})"),
                 "pool.acquire_timeout_ms") == "expected an integer >= 1, got 0");
  CHECK(error_at(parse_config(R"({"pool": {"max_waiters": 0}})"), "pool.max_waiters") ==
        "expected an integer >= 1, got 0");
  CHECK(error_at(parse_config(R"({"pool": {"queue_delay_interval_ms": 0}})"),
                 "pool.queue_delay_interval_ms") == "expected an integer >= 1, got 0");
  CHECK(error_at(parse_config(R"({"pool": {"aggressive_shed_fraction": 0}})"),
                 "pool.aggressive_shed_fraction") == "expected a number in (0, 1], got 0");
  CHECK(error_at(parse_config(R"({"pool": {"moderate_shed_fraction": 0.75}})"),
                 "pool.moderate_shed_fraction") ==
        "expected a number <= pool.aggressive_shed_fraction (0.5), got 0.75");
  CHECK(error_at(parse_config(R"({"gateway": {"shards": 257}})"), "gateway.shards") ==
        "expected an integer <= 256, got 257");
  auto shards = parse_config(R"({"gateway": {"shards": 3}})");
  REQUIRE(shards.ok());
  CHECK(shards.config.gateway.shards == 3);
}

TEST_CASE("breaker rules come from detail::validate, reported at breaker", "[config]") {
  auto rate = parse_config(R"({"breaker": {"failure_rate_threshold": 1.5}})");
  CHECK(rate.errors.size() == 1);
  CHECK(error_at(rate, "breaker") == "failure_rate_threshold: must be in (0, 1], is 1.5");

  detail::breaker_config bad;
  bad.window_kind = detail::breaker_window_kind::time_based;
  bad.window_duration = 1500ms;
  bad.jitter = 1;
  auto expected = detail::validate(bad);
  REQUIRE(expected.size() == 2);
  auto r = parse_config(R"({"breaker": {"window": "time", "window_ms": 1500, "jitter": 1}})");
  REQUIRE(r.errors.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(r.errors[i].path == "breaker");
    CHECK(r.errors[i].message == expected[i]);
  }

  // The types are still checked here, at the key.
  CHECK(error_at(parse_config(R"({"breaker": {"window": "sliding"}})"), "breaker.window") ==
        R"(expected one of "count", "time", got "sliding")");
  CHECK(error_at(parse_config(R"({"breaker": {"jitter": "0.1"}})"), "breaker.jitter") ==
        "expected a number, got \"0.1\"");
  CHECK(error_at(parse_config(R"({"breaker": {"half_open_probes": -1}})"),
                 "breaker.half_open_probes") == "expected an integer >= 0, got -1");
  CHECK(error_at(parse_config(R"({"breaker": {"call_timeout_ms": 0}})"),
                 "breaker.call_timeout_ms") == "expected an integer >= 1, got 0");
}

TEST_CASE("database limits keep the floor at or below the base", "[config]") {
  CHECK(error_at(parse_config(R"({"database": {"max_rows": 50}})"), "database.max_rows") ==
        "expected an integer >= database.floor_rows (100), got 50");
  CHECK(error_at(parse_config(R"({"database": {"floor_bytes": 100000000}})"),
                 "database.floor_bytes") ==
        "expected an integer <= database.max_bytes (16777216), got 100000000");
  CHECK(error_at(parse_config(R"({"database": {"floor_rows": 0}})"), "database.floor_rows") ==
        "expected an integer >= 1, got 0");
  CHECK(error_at(parse_config(R"({"database": {"medium": 0.5}})"), "database.medium")
            .rfind("unknown key", 0) == 0);
}

TEST_CASE("a declared transaction names configured statements, at most max_transaction_steps",
          "[config]") {
  auto ok = parse_config(R"({"statements": {"a": {"sql": "SELECT 1"}, "b": {"sql": "SELECT 2"}},
                             "transactions": {"ab": {"steps": ["a", "b"],
                                                     "isolation": "serializable"}}})");
  INFO(format_errors(ok.errors));
  REQUIRE(ok.ok());
  CHECK(ok.config.database.transactions.at("ab").steps == std::vector<std::string>{"a", "b"});
  CHECK(ok.config.database.transactions.at("ab").isolation == "serializable");
  auto stmts = std::string{R"("statements": {"a": {"sql": "SELECT 1"}})"};
  CHECK(error_at(parse_config("{" + stmts + R"(, "transactions": {"t": {"steps": ["a", "x"]}}})"),
                 "transactions.t.steps[1]") == R"("x" is not a configured statement)");
  CHECK(error_at(parse_config("{" + stmts + R"(, "transactions": {"t": {"steps": []}}})"),
                 "transactions.t.steps") == "expected at least one statement, got none");
  CHECK(error_at(parse_config("{" + stmts + R"(, "transactions": {"t": {}}})"),
                 "transactions.t.steps") == "expected at least one statement, got none");
  CHECK(error_at(parse_config("{" + stmts +
                              R"(, "database": {"max_transaction_steps": 1},
                                 "transactions": {"t": {"steps": ["a", "a"]}}})"),
                 "transactions.t.steps") ==
        "2 steps, more than database.max_transaction_steps (1)");
  CHECK(error_at(
            parse_config("{" + stmts +
                         R"(, "transactions": {"t": {"steps": ["a"], "isolation": "snapshot"}}})"),
            "transactions.t.isolation")
            .rfind("expected one of", 0) == 0);
}

TEST_CASE("a batch may not be larger than one client may send at once", "[config]") {
  CHECK(parse_config(R"({"database": {"max_batch_items": 2000}})").ok()); // burst 2000
  CHECK(error_at(parse_config(R"({"database": {"max_batch_items": 100},
                                  "rate_limiter": {"burst": 50}})"),
                 "database.max_batch_items") ==
        "100 is more than one client may send at once (rate_limiter.burst 50): a full batch "
        "costs its items and could never pass");
  CHECK(error_at(parse_config(R"({"rate_limiter": {"algorithm": "sliding_window", "limit": 20}})"),
                 "database.max_batch_items") ==
        "100 is more than one client may send at once (rate_limiter.limit 20): a full batch "
        "costs its items and could never pass");
  CHECK(
      error_at(parse_config(R"({"database": {"max_batch_items": 0}})"), "database.max_batch_items")
          .find("1") != std::string::npos);
}

TEST_CASE("statement errors are reported at the statement's paths", "[config]") {
  auto name = parse_config(R"({"statements": {"user-by-id": {"sql": "SELECT 1"}}})");
  CHECK(error_at(name, "statements.user-by-id") ==
        R"(expected a name of ASCII letters, digits and _, got "user-by-id")");
  CHECK(name.config.database.statements.empty());
  CHECK(error_at(parse_config(R"({"statements": {"": {"sql": "SELECT 1"}}})"), "statements.") ==
        R"(expected a name of ASCII letters, digits and _, got "")");

  CHECK(error_at(parse_config(R"({"statements": {"q": {"sql": "SELECT $1, $2",
                                                      "params": ["int", "integer"]}}})"),
                 "statements.q.params[1]") ==
        R"(expected one of "int", "real", "text", "bool", got "integer")");

  CHECK(error_at(parse_config(R"({"statements": {"q": {"sql": "SELECT $1, $2",
                                                      "params": ["int", "int", "int"]}}})"),
                 "statements.q.params") == "the SQL uses $1..$2 but 3 params are declared");
  CHECK(error_at(parse_config(R"({"statements": {"q": {"sql": "SELECT $1"}}})"),
                 "statements.q.params") == "the SQL uses $1 but 0 params are declared");
  CHECK(
      error_at(parse_config(R"({"statements": {"q": {"sql": "SELECT '$1'", "params": ["int"]}}})"),
               "statements.q.params") == "the SQL uses no placeholders but 1 param is declared");

  // SQLite numbers $N by first appearance, PostgreSQL wants no gaps: both are caught.
  CHECK(error_at(parse_config(R"({"statements": {"q": {"sql": "SELECT $2, $1",
                                                      "params": ["int", "int"]}}})"),
                 "statements.q.sql") ==
        "the SQL uses $2 before $1: placeholders must first appear in order $1, $2, ... (SQLite "
        "numbers them by first appearance)");
  CHECK(error_at(parse_config(R"({"statements": {"q": {"sql": "SELECT $1, $3",
                                                      "params": ["int", "int", "int"]}}})"),
                 "statements.q.sql") ==
        "the SQL uses $3 but never $2: placeholders must be $1..$N without gaps");

  CHECK(error_at(parse_config(R"({"statements": {"q": {"params": []}}})"), "statements.q.sql") ==
        "expected a non-empty string, got nothing");
  CHECK(error_at(parse_config(R"({"statements": {"q": {"sql": "SELECT 1", "ro": true}}})"),
                 "statements.q.ro") ==
        "unknown key (known here: sql, params, read_only, cache_ttl_ms)");
  CHECK(error_at(parse_config(R"({"statements": {"q": "SELECT 1"}})"), "statements.q") ==
        R"(expected an object, got "SELECT 1")");
  CHECK(error_at(parse_config(R"({"statements": []})"), "statements") ==
        "expected an object, got []");
  CHECK(error_at(parse_config(R"({"statements": {"q": {"sql": "SELECT 1"}, "q": {}}})"),
                 "statements.q") == "duplicate key");
}

TEST_CASE("the demo statements of config/default.json parse and match their placeholders",
          "[config]") {
  const std::string file = BULWARK_SOURCE_DIR "/config/default.json";
  auto loaded = load_config_file(file);
  INFO(format_errors(loaded.errors));
  REQUIRE(loaded.ok()); // includes the placeholder checks
  auto& c = loaded.config;
  CHECK(c.backend.kind == "sqlite");
  CHECK(c.backend.sqlite_path.empty()); // <data_dir>/bulwark.sqlite3
  CHECK(c.backend.init_sql.size() == 4);
  auto& st = c.database.statements;
  REQUIRE(st.size() == 4);
  using params = std::vector<std::string>;
  CHECK(st.at("user_by_id").params == params{"int"});
  CHECK(st.at("events_by_user").params == params{"int"});
  CHECK(st.at("event_totals").params.empty());
  CHECK(st.at("add_event").params == params{"int", "int", "text", "real"});
  CHECK_FALSE(st.at("add_event").read_only);
  for (auto& name : {"user_by_id", "events_by_user", "event_totals"})
    CHECK(st.at(name).read_only);

  // The check does bite on the shipped SQL: one param too few for add_event.
  auto doc = nlohmann::json::parse(test::read_file(file));
  doc["statements"]["add_event"]["params"].erase(3);
  CHECK(error_at(parse_config(doc.dump()), "statements.add_event.params") ==
        "the SQL uses $1..$4 but 3 params are declared");
}

TEST_CASE("alerts default to the shipped eight and read every key", "[config][alerts]") {
  auto d = parse_config("{}");
  REQUIRE(d.ok());
  REQUIRE(d.config.performance.alerts.size() == 8);
  CHECK(d.config.performance.alerts[4].name == "HighCpuUsage");
  CHECK(d.config.performance.alerts[5].threshold == 0.1);
  CHECK(d.config.performance.alerts[6].metric == "bulwark_perf_error_ratio");
  CHECK(d.config.performance.alerts[7].name == "CleanupTaskGivenUp");
  CHECK(d.config.performance.alerts[0].name == "HighMemoryPressure");
  CHECK(d.config.performance.alerts[0].for_duration == 120s);
  CHECK(d.config.performance.alerts[3].metric == "bulwark_breaker_state{breaker=\"backend\"}");

  auto r = parse_config(R"json({
    "performance": {"interval_ms": 250, "min_sampling_ratio": 0.5, "history_max_bytes": 8192},
    "alerts": [
      {"name": "Hot", "metric": "max(bulwark_memory_pressure_ratio)", "op": ">=",
       "threshold": 0.9, "for_seconds": 1.5, "clear_threshold": 0.8, "severity": "info"},
      {"name": "Evicting", "metric": "rate(bulwark_cache_evictions_total[1m])", "op": ">",
       "threshold": 5, "for_seconds": 0, "severity": "warning"}
    ]})json");
  INFO(format_errors(r.errors));
  REQUIRE(r.ok());
  auto& p = r.config.performance;
  CHECK(p.interval == 250ms);
  CHECK(p.sampling.min_ratio == 0.5);
  CHECK(p.history_max_bytes == 8192);
  REQUIRE(p.alerts.size() == 2);
  CHECK(p.alerts[0].op == detail::alert_op::ge);
  CHECK(p.alerts[0].for_duration == 1500ms);
  CHECK(p.alerts[0].clear_threshold == 0.8);
  CHECK(p.alerts[0].severity == "info");
  CHECK(p.alerts[1].clear_threshold == 5); // absent: the threshold (no hysteresis)
  CHECK(p.alerts[1].for_duration == 0s);
  CHECK(parse_config(R"({"alerts": []})").config.performance.alerts.empty());
}

TEST_CASE("alert errors are reported at alerts[i].key", "[config][alerts]") {
  auto r = parse_config(R"json({"alerts": [
      {"name": "A", "metric": "rate(x)", "op": ">", "threshold": 1, "for_seconds": 1,
       "severity": "warning"},
      {"name": "B", "metric": "x", "op": "=>", "threshold": "high", "for_seconds": -1,
       "severity": "page", "labels": {}},
      {"name": "C", "metric": "x", "op": ">", "threshold": 1, "for_seconds": 1,
       "clear_threshold": 2, "severity": "warning"},
      {"name": "A", "metric": "x", "op": ">", "threshold": 1, "for_seconds": 1,
       "severity": "warning"},
      "nope"
    ]})json");
  CHECK_THAT(error_at(r, "alerts[0].metric"), Catch::Contains("rate needs a window"));
  CHECK_THAT(error_at(r, "alerts[1].op"), Catch::Contains("one of \">\""));
  CHECK_THAT(error_at(r, "alerts[1].threshold"), Catch::Contains("expected a number"));
  CHECK_THAT(error_at(r, "alerts[1].for_seconds"),
             Catch::Contains("expected a number in [0, 1e+09]"));
  CHECK_THAT(error_at(r, "alerts[1].severity"), Catch::Contains("\"critical\""));
  CHECK_THAT(error_at(r, "alerts[1].labels"), Catch::Contains("unknown key"));
  CHECK_THAT(error_at(r, "alerts[2].clear_threshold"), Catch::Contains("at or below threshold"));
  CHECK_THAT(error_at(r, "alerts[3].name"), Catch::Contains("duplicate alert name \"A\""));
  CHECK_THAT(error_at(r, "alerts[4]"), Catch::Contains("expected an object"));
  CHECK_THAT(error_at(parse_config(R"({"alerts": {}})"), "alerts"),
             Catch::Contains("expected an array"));
}

TEST_CASE("alert rules need their keys, a usable rate window and sane bounds", "[config][alerts]") {
  auto r = parse_config(R"json({
    "performance": {"interval_ms": 1000, "low_load": 0.9, "high_load": 0.8},
    "alerts": [
      {"metric": "x", "threshold": 1},
      {"name": "Fast", "metric": "rate(x[1s])", "op": ">", "threshold": 1},
      {"name": "Long", "metric": "x", "op": ">", "threshold": 1, "for_seconds": 1e12}
    ]})json");
  CHECK(error_at(r, "alerts[0].name") == "required");
  CHECK(error_at(r, "alerts[0].op") == "required");
  CHECK_THAT(error_at(r, "alerts[1].metric"),
             Catch::Contains("must be at least twice performance.interval_ms"));
  CHECK_THAT(error_at(r, "alerts[2].for_seconds"), Catch::Contains("[0, 1e+09]"));
  CHECK_THAT(error_at(r, "performance.high_load"), Catch::Contains("> performance.low_load"));
  CHECK_THAT(error_at(parse_config(R"({"performance": {"history_max_bytes": 1024}})"),
                      "performance.history_max_bytes"),
             Catch::Contains("an integer >= 7168")); // 7 series x 64 points x 16 bytes
}

TEST_CASE("remote.listen is off by default and else host:port", "[config][remote]") {
  CHECK(parse_config("{}").config.remote.listen.empty());
  auto ok = parse_config(R"({"remote": {"listen": "127.0.0.1:0", "plain": true}})");
  INFO(format_errors(ok.errors));
  REQUIRE(ok.ok());
  CHECK(ok.config.remote.listen == "127.0.0.1:0");
  CHECK_THAT(error_at(parse_config(R"({"remote": {"listen": "localhost"}})"), "remote.listen"),
             Catch::Contains("\"\" (off) or \"host:port\""));
}

TEST_CASE("a published node speaks mutual TLS with files that load, or plain BASP on loopback",
          "[config][remote][tls]") {
  using json = nlohmann::json;
  test::temp_dir tmp;
  test::pki pki{tmp.path / "pki"};
  auto with = [&](json remote) { return parse_config(json{{"remote", remote}}.dump()); };
  auto tls = [&](const std::string& cert, const std::string& key, const std::string& ca) {
    return json{{"certificate", cert}, {"key", key}, {"ca", ca}};
  };
  auto ok = with({{"listen", "0.0.0.0:7000"},
                  {"tls", tls(pki.cert("node"), pki.key("node"), pki.cert("ca"))}});
  INFO(format_errors(ok.errors));
  CHECK(ok.ok());
  CHECK(ok.config.remote.heartbeat_interval == std::chrono::milliseconds(1000));
  CHECK(ok.config.remote.peer_timeout == std::chrono::milliseconds(5000));
  // Published without TLS and without asking for plain BASP: every file is named.
  auto bare = with({{"listen", "0.0.0.0:7000"}});
  for (auto key : {"remote.tls.certificate", "remote.tls.key", "remote.tls.ca"})
    CHECK_THAT(error_at(bare, key), Catch::StartsWith("expected a PEM file"));
  CHECK(with({{"listen", "127.0.0.1:7000"}, {"plain", true}}).ok());
  CHECK(with({{"listen", "[::1]:7000"}, {"plain", true}}).ok());
  CHECK_THAT(error_at(with({{"listen", "0.0.0.0:7000"}, {"plain", true}}), "remote.plain"),
             Catch::StartsWith("plain BASP (no authentication, no encryption) is only served on "
                               "loopback"));
  CHECK_THAT(error_at(with({{"listen", "127.0.0.1:7000"},
                            {"plain", true},
                            {"tls", tls(pki.cert("node"), pki.key("node"), pki.cert("ca"))}}),
                      "remote.plain"),
             Catch::StartsWith("expected false when remote.tls is set"));
  // Files that do not load are refused now, not at the first handshake.
  CHECK(error_at(with({{"listen", "0.0.0.0:7000"},
                       {"tls", tls("/nonexistent.pem", pki.key("node"), pki.cert("ca"))}}),
                 "remote.tls.certificate") == "cannot read \"/nonexistent.pem\"");
  CHECK_THAT(error_at(with({{"listen", "0.0.0.0:7000"},
                            {"tls", tls(pki.cert("node"), pki.key("client"), pki.cert("ca"))}}),
                      "remote.tls.key"),
             Catch::Contains("is not the key of the certificate"));
  CHECK_THAT(error_at(with({{"listen", "0.0.0.0:7000"},
                            {"tls", tls(pki.key("node"), pki.key("node"), pki.cert("ca"))}}),
                      "remote.tls.certificate"),
             Catch::Contains("is not a PEM certificate chain"));
  CHECK_THAT(error_at(with({{"listen", "0.0.0.0:7000"},
                            {"tls", tls(pki.cert("node"), pki.key("node"), pki.key("ca"))}}),
                      "remote.tls.ca"),
             Catch::Contains("holds no PEM CA certificate"));
  CHECK_THAT(error_at(with({{"heartbeat_interval_ms", 5000}, {"peer_timeout_ms", 5000}}),
                      "remote.peer_timeout_ms"),
             Catch::Contains("> remote.heartbeat_interval_ms"));
}

// -- issue 20: config values that would kill the node are refused -------------------------------

TEST_CASE("sizes, counts and threads past their upper bounds are errors at their paths",
          "[config]") {
  CHECK(error_at(parse_config(R"({"rate_limiter": {"max_bytes": 18446744073709551615}})"),
                 "rate_limiter.max_bytes") ==
        "expected an integer <= 1073741824, got 18446744073709551615");
  CHECK(error_at(parse_config(R"({"rate_limiter": {"max_bytes": 100000000000}})"),
                 "rate_limiter.max_bytes") ==
        "expected an integer <= 1073741824, got 100000000000");
  CHECK(error_at(parse_config(R"({"scheduler": {"threads": 1000000}})"), "scheduler.threads") ==
        "expected an integer <= 256, got 1000000");
  CHECK(error_at(parse_config(R"({"http": {"threads": 257}})"), "http.threads") ==
        "expected an integer <= 256, got 257");
  CHECK(error_at(parse_config(R"({"pool": {"max_connections": 1025}})"), "pool.max_connections") ==
        "expected an integer <= 1024, got 1025");
  CHECK(error_at(parse_config(R"({"memory": {"budget_bytes": 18446744073709551615}})"),
                 "memory.budget_bytes") ==
        "expected an integer <= 1099511627776, got 18446744073709551615");
  CHECK(error_at(parse_config(R"({"http": {"max_body_bytes": 2000000000}})"),
                 "http.max_body_bytes") == "expected an integer <= 1073741824, got 2000000000");
  CHECK(error_at(parse_config(R"({"http": {"stream_window_bytes": 100}})"),
                 "http.stream_window_bytes") == "expected an integer >= 4096, got 100");
  CHECK(error_at(parse_config(R"({"cache": {"max_entries": 1000000000}})"), "cache.max_entries") ==
        "expected an integer <= 100000000, got 1000000000");
  CHECK(error_at(parse_config(R"({"memory": {"history_size": 1000001}})"), "memory.history_size") ==
        "expected an integer <= 1000000, got 1000001");
  // Every problem at once, each at its path.
  auto r = parse_config(
      R"({"scheduler": {"threads": 1000000}, "rate_limiter": {"max_bytes": 100000000000}})");
  CHECK(r.errors.size() == 2);
  // The bounds themselves are accepted.
  auto edge = parse_config(R"({"scheduler": {"threads": 256}, "http": {"threads": 256},
                               "rate_limiter": {"max_bytes": 1073741824},
                               "pool": {"max_connections": 1024}})");
  INFO(format_errors(edge.errors));
  CHECK(edge.ok());
}

TEST_CASE("a document nested deeper than 64 levels is one document error, not a crash",
          "[config]") {
  auto deep = std::string(100000, '[') + std::string(100000, ']');
  auto r = parse_config(R"({"node": )" + deep + "}");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].path.empty());
  CHECK(r.errors[0].message == "arrays and objects nest deeper than 64 levels at byte 72");
  // Brackets inside strings do not count; 64 levels are fine (and then an ordinary error).
  auto text = parse_config(R"({"node": {"name": "[[[[{{{{"}})");
  CHECK(text.ok());
  auto at_limit = parse_config(R"({"node": )" + std::string(63, '[') + std::string(63, ']') + "}");
  CHECK(at_limit.errors.size() == 1);
  CHECK(at_limit.errors[0].path == "node");
}

TEST_CASE("the stealing scheduler's waiting is configured key by key", "[config]") {
  CHECK(error_at(parse_config(R"({"scheduler": {"stealing": {"relaxed_sleep_ms": 0}}})"),
                 "scheduler.stealing.relaxed_sleep_ms") == "expected an integer >= 1, got 0");
  CHECK(error_at(parse_config(R"({"scheduler": {"stealing": []}})"), "scheduler.stealing") ==
        "expected an object, got []");
  auto st = parse_config(R"({"scheduler": {"stealing": {"moderate_poll_attempts": 500}}})");
  REQUIRE(st.ok());
  CHECK(st.config.scheduler.stealing.moderate_poll_attempts == 500);
  CHECK(st.config.scheduler.stealing.moderate_sleep_us == 50); // the others keep their defaults
}
