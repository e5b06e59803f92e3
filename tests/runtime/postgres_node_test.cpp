// bulwarkd against a real PostgreSQL: the shipped demo served from it, and a hung server
// (SIGSTOP on every one of its processes) answered with 503/504 instead of hangs, the breaker
// opening, and service coming back after SIGCONT.

#include "support/node_process.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>

using namespace bulwark;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

std::string shared_conninfo() {
  auto c = std::getenv("BULWARK_TEST_PG_CONNINFO");
  if (!c)
    FAIL("BULWARK_TEST_PG_CONNINFO is not set: scripts/test.sh starts a PostgreSQL for the suite");
  return c ? c : "";
}

json demo_config() {
  std::ifstream in{std::string{BULWARK_SOURCE_DIR} + "/config/default.json"};
  auto cfg = json::parse(in);
  return {{"backend", cfg["backend"]}, {"statements", cfg["statements"]}};
}

/// A PostgreSQL of the test's own, so stopping it disturbs no other test.
struct own_postgres {
  test::temp_dir dir{"bulwark-pg-"};
  std::string conninfo;

  own_postgres() {
    auto [rc, out] =
        test::run_command(std::string{BULWARK_SOURCE_DIR} + "/scripts/pg-test-server.sh start " +
                          dir.path.string() + "/pg 2>/dev/null");
    INFO(out);
    REQUIRE(rc == 0);
    conninfo = out.substr(0, out.find_last_not_of("\n") + 1);
  }
  ~own_postgres() {
    test::run_command(std::string{BULWARK_SOURCE_DIR} + "/scripts/pg-test-server.sh stop " +
                      dir.path.string() + "/pg");
  }

  /// Every process of this server: the postmaster (first line of postmaster.pid) and its
  /// children.
  void signal_all(int sig) {
    std::ifstream pidfile{dir.path.string() + "/pg/data/postmaster.pid"};
    pid_t postmaster = 0;
    pidfile >> postmaster;
    REQUIRE(postmaster > 0);
    auto [rc, children] = test::run_command("pgrep -P " + std::to_string(postmaster));
    ::kill(postmaster, sig);
    std::istringstream in{children};
    pid_t child;
    while (in >> child)
      ::kill(child, sig);
  }
};

double metric(uint16_t port, const std::string& series) {
  auto body = test::http_get(port, "/metrics").body;
  auto at = body.find("\n" + series + " ");
  return at == std::string::npos ? 0 : std::stod(body.substr(at + series.size() + 2));
}

double requests_total(uint16_t port) {
  double sum = 0;
  for (auto outcome :
       {"served", "served_truncated", "rejected_queue_full", "rejected_circuit_open",
        "rejected_unavailable", "failed_backend", "timed_out", "bad_request", "unknown_statement"})
    sum += metric(port, std::string{"bulwark_requests_total{outcome=\""} + outcome + "\"}");
  return sum;
}

} // namespace

TEST_CASE("bulwarkd serves the shipped demo statements from PostgreSQL",
          "[postgres][bulwarkd][integration]") {
  auto cfg = demo_config();
  cfg["backend"]["kind"] = "postgres";
  cfg["backend"]["postgres"]["conninfo"] = shared_conninfo();
  test::node_process n{cfg};
  auto r = n.query("user_by_id", json{1});
  REQUIRE(r.status == 200);
  auto j = json::parse(r.body);
  CHECK(j["rows"] == json{{1, "Ada Lovelace", "ada@example.org"}});
  auto totals = json::parse(n.query("event_totals").body);
  CHECK(totals["rows"].size() == 3);
  // The planner measured the join (through the pool, like all backend work).
  CHECK(n.status()["breaker"]["successes"].get<int>() >= 1);
}

TEST_CASE("a hung PostgreSQL gets answers, not hangs; the breaker opens and service returns after "
          "SIGCONT",
          "[postgres][faults][integration]") {
  own_postgres pg;
  auto cfg = demo_config();
  cfg["backend"]["kind"] = "postgres";
  cfg["backend"]["postgres"]["conninfo"] = pg.conninfo;
  cfg["pool"] = {{"min_connections", 2}, {"max_connections", 2}, {"acquire_timeout_ms", 300}};
  cfg["breaker"] = {
      {"window_size", 4},     {"minimum_calls", 2},       {"failure_rate_threshold", 0.5},
      {"open_wait_ms", 1000}, {"open_wait_max_ms", 1000}, {"call_timeout_ms", 400},
      {"half_open_probes", 1}};
  cfg["database"] = {{"default_timeout_ms", 1000}};
  test::node_process n{cfg};
  REQUIRE(n.query("user_by_id", json{1}).status == 200);

  pg.signal_all(SIGSTOP);
  int sent = 1;
  std::map<int, int> codes;
  bool saw_open = false;
  auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until && !(saw_open && sent > 8)) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = n.query("user_by_id", json{1}, 5s);
    ++sent;
    CHECK(std::chrono::steady_clock::now() - t0 < 3s); // an answer, not a hang
    ++codes[r.status];
    CHECK((r.status == 503 || r.status == 504));
    if (r.status == 503 && json::parse(r.body)["error"] == "circuit_open")
      saw_open = true;
  }
  CHECK(saw_open);
  CHECK(codes[200] == 0);
  CHECK(metric(n.port, "bulwark_breaker_transitions_total{breaker=\"backend\",to=\"open\"}") >= 1);

  pg.signal_all(SIGCONT);
  int status = 0;
  auto back = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < back) {
    status = n.query("user_by_id", json{1}).status;
    ++sent;
    if (status == 200)
      break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(status == 200);
  n.wait_status([](const json& s) { return s["breaker"]["state"] == "closed"; });
  // Every request ended in exactly one accounted outcome.
  CHECK(requests_total(n.port) == sent);
}
