#pragma once
/// A real bulwarkd process for integration tests: its config is the drill setup (file memory
/// source, fast sampling, fault injection) merged with whatever the test adds; it learns the
/// port from the node's log line, and talks to it over HTTP.

#include "support/http_client.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <regex>
#include <sstream>
#include <vector>

namespace bulwark::test {

struct node_process {
  using json = nlohmann::json;

  temp_dir tmp;
  std::string ratio_file = tmp.put("ratio", "0.2\n");
  std::unique_ptr<child_process> proc;
  uint16_t port = 0;
  uint16_t admin_port = 0; ///< the admin listener (admin.listen), for the /admin/ routes

  explicit node_process(const json& extra = json::object()) {
    json cfg = {{"http", {{"listen", "127.0.0.1:0"}}},
                {"node", {{"data_dir", (tmp.path / "data").string()}}},
                {"admin", {{"listen", "127.0.0.1:0"}, {"fault_injection", true}}},
                {"memory",
                 {{"source", "file"},
                  {"file", ratio_file},
                  {"sample_interval_ms", 20},
                  {"min_dwell_ms", 100}}}};
    cfg.merge_patch(extra);
    auto cfg_file = tmp.put("node.json", cfg.dump());
    proc = std::make_unique<child_process>(
        std::vector<std::string>{BULWARKD_PATH, "--config", cfg_file},
        (tmp.path / "bulwarkd.log").string());
    auto out = proc->wait_output("serving http on port", std::chrono::seconds(20));
    INFO((proc ? proc->output() : std::string{}));
    REQUIRE(out);
    std::smatch m;
    REQUIRE(std::regex_search(*out, m, std::regex{"serving http on port ([0-9]+)"}));
    port = static_cast<uint16_t>(std::stoi(m[1]));
    // bulwarkd logs its admin port (when it has one) before the public one.
    if (std::regex_search(*out, m, std::regex{"serving admin on port ([0-9]+)"}))
      admin_port = static_cast<uint16_t>(std::stoi(m[1]));
  }

  /// A POST to the admin listener.
  http_result admin_post(const std::string& path) {
    REQUIRE(admin_port != 0);
    return http_call(admin_port, "POST", path);
  }

  void set_ratio(double r) { std::ofstream{ratio_file} << r << "\n"; }

  /// The node's last `max` WARN and ERROR log lines: what a failed check shows of why.
  std::string warnings(size_t max = 30) const {
    std::istringstream in{proc->output()};
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
      if (line.find(" WARN ") != std::string::npos || line.find(" ERROR ") != std::string::npos)
        lines.push_back(line);
    std::string out;
    for (auto i = lines.size() > max ? lines.size() - max : 0; i < lines.size(); ++i)
      out += lines[i] + "\n";
    return out;
  }

  json status() {
    auto r = http_get(port, "/v1/status");
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }

  http_result query(const std::string& statement, const json& params = json::array(),
                    std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
    return http_call(port, "POST", "/v1/query/" + statement, json{{"params", params}}.dump(),
                     deadline);
  }

  /// Polls status until `pred` holds (the node runs on real threads and its own timers).
  json wait_status(const std::function<bool(const json&)>& pred,
                   std::chrono::milliseconds d = std::chrono::seconds(5)) {
    auto until = std::chrono::steady_clock::now() + d;
    json s;
    do {
      s = status();
      if (pred(s))
        return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    } while (std::chrono::steady_clock::now() < until);
    FAIL("status never matched; last: " << s.dump());
    return s;
  }
};

/// The shipped demo of config/default.json: its backend (schema and 20 000 rows) and its
/// statements, exactly as shipped, on SQLite; on the PostgreSQL at `pg_conninfo` when given.
inline nlohmann::json shipped_demo(const std::string& pg_conninfo = "") {
  std::ifstream in{std::string{BULWARK_SOURCE_DIR} + "/config/default.json"};
  auto cfg = nlohmann::json::parse(in);
  nlohmann::json out = {{"backend", cfg["backend"]}, {"statements", cfg["statements"]}};
  if (!pg_conninfo.empty()) {
    out["backend"]["kind"] = "postgres";
    out["backend"]["postgres"]["conninfo"] = pg_conninfo;
  }
  return out;
}

/// The conninfo of the suite's PostgreSQL; scripts/test.sh starts one and exports it. The tests
/// that need it fail, not skip, without it.
inline std::string suite_postgres() {
  auto c = std::getenv("BULWARK_TEST_PG_CONNINFO");
  if (!c)
    FAIL("BULWARK_TEST_PG_CONNINFO is not set: scripts/test.sh starts a PostgreSQL for the suite");
  return c ? c : "";
}

/// A series' value on the node's /metrics ("name{label=\"x\"}"), 0 when it is absent.
inline double metric(uint16_t port, const std::string& series) {
  auto body = http_get(port, "/metrics").body;
  auto at = body.find("\n" + series + " ");
  return at == std::string::npos ? 0 : std::stod(body.substr(at + series.size() + 2));
}

/// The sum of bulwark_requests_total over every outcome: what the books say was answered.
inline double requests_total(uint16_t port) {
  auto body = http_get(port, "/metrics").body;
  double sum = 0;
  const std::string name = "\nbulwark_requests_total{";
  for (auto at = body.find(name); at != std::string::npos; at = body.find(name, at + 1)) {
    auto value = body.find(' ', body.find('}', at));
    sum += std::stod(body.substr(value + 1));
  }
  return sum;
}

/// The books on one scrape of /metrics: queries received, the sum of their outcomes, and those
/// in flight. They balance when received == answered + in_flight.
struct books {
  double received = 0;
  double answered = 0;
  double in_flight = 0;
  bool balanced() const { return received == answered + in_flight; }
  std::string describe() const {
    return std::to_string(received) + " received, " + std::to_string(answered) + " answered, " +
           std::to_string(in_flight) + " in flight";
  }
};

inline books scrape_books(uint16_t port) {
  books b;
  std::istringstream in{http_get(port, "/metrics").body};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#')
      continue;
    // Runs on auditor threads, where an exception would end the binary: a line without a
    // number (a scrape cut short) is skipped, and the books it leaves unbalanced say so.
    auto space = line.rfind(' ');
    char* end = nullptr;
    auto value = space == std::string::npos ? 0.0 : std::strtod(line.c_str() + space + 1, &end);
    if (end == nullptr || end == line.c_str() + space + 1)
      continue;
    if (line.rfind("bulwark_requests_received_total ", 0) == 0)
      b.received = value;
    else if (line.rfind("bulwark_requests_in_flight ", 0) == 0)
      b.in_flight = value;
    else if (line.rfind("bulwark_requests_total{", 0) == 0)
      b.answered += value;
  }
  return b;
}

} // namespace bulwark::test
