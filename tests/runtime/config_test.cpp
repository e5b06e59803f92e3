#include "runtime/config.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

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

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
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

TEST_CASE("config/default.json holds exactly the built-in defaults", "[config]") {
  const std::string file = BULWARK_SOURCE_DIR "/config/default.json";
  auto loaded = load_config_file(file);
  INFO(format_errors(loaded.errors));
  REQUIRE(loaded.ok());

  auto on_disk = nlohmann::json::parse(read_file(file));
  auto defaults = nlohmann::json::parse(default_config_json());
  CHECK(on_disk == defaults);
  auto leaves = defaults.flatten(); // {"/memory/thresholds/high": 0.85, ...}
  REQUIRE(leaves.size() > 30);
  for (auto& leaf : leaves.items()) {
    INFO(leaf.key());
    CHECK(on_disk.contains(nlohmann::json::json_pointer(leaf.key())));
  }
}
