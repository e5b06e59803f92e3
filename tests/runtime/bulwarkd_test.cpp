// bulwarkd as a real process: config errors, the pressure drill, a crash drill through the admin
// endpoint, promtool on the live metrics, and SIGTERM.

#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/threads.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

using scratch = test::temp_dir;
using running_node = test::node_process;

TEST_CASE("bulwarkd runs a pressure drill and a crash drill, then exits 0 on SIGTERM",
          "[bulwarkd][integration]") {
  // The drill's alert: a configured rule over the pressure ratio, fast enough for a test.
  running_node n{json{{"performance", {{"interval_ms", 20}}},
                      {"alerts",
                       {{{"name", "DrillPressure"},
                         {"metric", "bulwark_memory_pressure_ratio"},
                         {"op", ">"},
                         {"threshold", 0.9},
                         {"for_seconds", 0.2},
                         {"clear_threshold", 0.5},
                         {"severity", "critical"}}}}}};
  CHECK(test::http_get(n.port, "/healthz").status == 200);
  CHECK(test::http_get(n.port, "/readyz").status == 200);
  auto alert = [&] {
    auto r = test::http_get(n.port, "/v1/alerts");
    REQUIRE(r.status == 200);
    return json::parse(r.body)["alerts"].at(0);
  };
  auto wait_alert = [&](const std::string& state) {
    auto until = std::chrono::steady_clock::now() + 5s;
    while (alert()["state"] != state && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(10ms);
    return alert();
  };
  CHECK(alert()["state"] == "inactive");

  // Pressure drill: the file source drives the level to critical and back; the alert fires
  // while it is high and resolves after.
  n.set_ratio(0.97);
  n.wait_status([](const json& s) { return s["pressure"]["level"] == "critical"; });
  CHECK_THAT(test::http_get(n.port, "/metrics").body,
             Catch::Contains("bulwark_memory_pressure_level 3"));
  CHECK(wait_alert("firing")["fired"] == 1);
  CHECK_THAT(test::http_get(n.port, "/metrics").body,
             Catch::Contains("bulwark_alerts_firing{alert=\"DrillPressure\"} 1"));
  n.set_ratio(0.10);
  auto s = n.wait_status([](const json& s) { return s["pressure"]["level"] == "low"; });
  std::vector<std::string> changes;
  for (auto& h : s["pressure"]["history"])
    if (h["component"] == "memory_pressure_monitor")
      changes.push_back(h["level"]);
  CHECK(changes == std::vector<std::string>{"critical", "low"});
  CHECK_THAT(test::http_get(n.port, "/metrics").body,
             Catch::Contains("bulwark_memory_pressure_level 0"));
  CHECK(wait_alert("inactive")["fired"] == 1);
  CHECK_THAT(test::http_get(n.port, "/metrics").body,
             Catch::Contains("bulwark_alerts_firing{alert=\"DrillPressure\"} 0"));
  CHECK_THAT(n.proc->output(), Catch::Contains("alert DrillPressure firing"));
  CHECK_THAT(n.proc->output(), Catch::Contains("alert DrillPressure resolved"));

  // Crash drill: restarted, counted, ready again within a second of the crash.
  CHECK(n.admin_post("/admin/v1/crash/memory_pressure_monitor").status == 202);
  auto after = n.wait_status(
      [](const json& s) {
        return s["components"][0]["restarts"] == 1 && s["ready"] == true &&
               s["pressure"].contains("level");
      },
      1s);
  CHECK(test::http_get(n.port, "/readyz").status == 200);
  CHECK(after["components"][0]["last_exit_reason"].get<std::string>().find("fault_injected") !=
        std::string::npos);
  // The restarted monitor kept its level and its subscribers.
  CHECK(after["pressure"]["level"] == "low");
  // cleanup_manager, performance_monitor, connection_pool, database, cache/0, cache/1, and
  // every gateway shard and its limiter shard (one per scheduler thread: one per core here)
  int gateways = 0;
  for (auto& c : after["components"])
    gateways += c["name"].get<std::string>().rfind("gateway/", 0) == 0 ? 1 : 0;
  CHECK(gateways >= 1);
  CHECK(after["pressure"]["subscribers"] == 6 + 2 * gateways);

  // The live exposition passes Prometheus' own checker.
  auto metrics = test::http_get(n.port, "/metrics").body;
  CHECK_THAT(
      metrics,
      Catch::Contains("bulwark_supervisor_restarts_total{child=\"memory_pressure_monitor\"} 1"));
  auto file = n.tmp.put("metrics.txt", metrics);
  auto [rc, out] = test::run_command("promtool check metrics < " + file);
  INFO(out);
  CHECK(rc == 0);

  n.proc->signal(SIGTERM);
  auto code = n.proc->wait(10s);
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK_THAT(n.proc->output(), Catch::Contains("stopped"));
}

TEST_CASE("docs/metrics.md names every metric the node exports, and only ones the code registers",
          "[bulwarkd][integration]") {
  running_node n{test::shipped_demo()};
  CHECK(n.query("user_by_id", json::array({1})).status == 200);
  CHECK(n.query("user_by_id", json::array({1})).status == 200); // a cache hit
  const fs::path root{BULWARK_SOURCE_DIR};
  auto doc = test::read_file(root / "docs/metrics.md");
  REQUIRE_FALSE(doc.empty());

  // The first group of every match of `pattern` in `text`.
  auto names = [](const std::string& text, const char* pattern) {
    std::vector<std::string> out;
    std::regex re{pattern};
    for (std::sregex_iterator i{text.begin(), text.end(), re}, end; i != end; ++i)
      out.push_back((*i)[1].str());
    return out;
  };

  auto exported = names(test::http_get(n.port, "/metrics").body, "# TYPE (bulwark_[a-z_]+) ");
  CHECK(exported.size() > 50);
  for (auto& name : exported) {
    INFO(name << " is exported but not in docs/metrics.md");
    CHECK(doc.find("| `" + name + "` |") != std::string::npos);
  }

  // Every name the page lists is one the code registers (a literal in actors/ or runtime/).
  std::string sources;
  for (auto dir : {"actors", "runtime"})
    for (auto& f : fs::directory_iterator{root / dir})
      if (f.path().extension() == ".cpp")
        sources += test::read_file(f.path());
  auto documented = names(doc, "\\| `(bulwark_[a-z_]+)` \\|");
  CHECK(documented.size() >= exported.size());
  for (auto& name : documented) {
    INFO(name << " is in docs/metrics.md but registered nowhere");
    CHECK(sources.find("\"" + name + "\"") != std::string::npos);
  }
}

namespace {

/// Sends raw bytes and returns whatever the server answers before closing (or 2 s pass).
std::string raw_exchange(uint16_t port, const std::string& bytes) {
  namespace asio = boost::asio;
  asio::io_context ioc;
  boost::beast::tcp_stream s{ioc};
  s.expires_after(2s);
  s.connect(asio::ip::tcp::endpoint{asio::ip::make_address("127.0.0.1"), port});
  asio::write(s.socket(), asio::buffer(bytes));
  std::string out;
  char buf[4096];
  boost::system::error_code ec;
  for (;;) {
    auto n = s.socket().read_some(asio::buffer(buf), ec);
    if (ec)
      break;
    out.append(buf, n);
  }
  return out;
}

} // namespace

TEST_CASE(
    "bulwarkd answers malformed and oversized requests with 400, 413 and 431 and keeps serving",
    "[bulwarkd][integration]") {
  running_node n;
  CHECK_THAT(raw_exchange(n.port, "GARBAGE\r\n\r\n"), Catch::StartsWith("HTTP/1.1 400"));
  CHECK_THAT(raw_exchange(n.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                      std::string(20000, 'a') + "\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 431"));
  CHECK_THAT(raw_exchange(n.port, "POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                  "99999999\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 413"));
  CHECK(test::http_get(n.port, "/healthz").status == 200);
  CHECK(test::http_get(n.port, "/readyz").status == 200);
  CHECK_THAT(test::http_get(n.port, "/metrics").body,
             Catch::Contains("bulwark_http_bad_requests_total 3"));
}

TEST_CASE("bulwarkd refuses an invalid config with exit 2 naming every bad key",
          "[bulwarkd][integration]") {
  scratch tmp;
  auto bad = tmp.put("bad.json", R"({"http": {"listen": "nowhere"},
    "memory": {"sample_interval_ms": -5, "thresholds": {"high": 0.6}}, "admin": {"fault": true}})");
  for (auto flag : {"--config", "--check-config"}) {
    auto [rc, out] = test::run_command(std::string{BULWARKD_PATH} + " " + flag + " " + bad);
    CHECK(rc == 2);
    CHECK_THAT(out, Catch::Contains("http.listen"));
    CHECK_THAT(out, Catch::Contains("memory.sample_interval_ms"));
    CHECK_THAT(out, Catch::Contains("memory.thresholds.high"));
    CHECK_THAT(out, Catch::Contains("admin.fault: unknown key"));
  }
}

TEST_CASE("an admin token file that cannot be read, or holds no usable token, stops the node "
          "naming admin.token_file",
          "[bulwarkd][admin][integration]") {
  scratch tmp;
  auto short_token = tmp.put("short", "abc\n");
  for (auto& token_file : {(tmp.path / "missing").string(), short_token}) {
    nlohmann::json cfg = {{"http", {{"listen", "127.0.0.1:0"}}},
                          {"node", {{"data_dir", (tmp.path / "data").string()}}},
                          {"admin", {{"listen", "127.0.0.1:0"}, {"token_file", token_file}}}};
    auto file = tmp.put("node.json", cfg.dump());
    auto [rc, out] = test::run_command("timeout 30 " + std::string{BULWARKD_PATH} + " --config " +
                                       file + " 2>&1");
    INFO(out);
    CHECK(rc == 2);
    CHECK_THAT(out, Catch::Contains("admin.token_file"));
  }
}

TEST_CASE("bulwarkd serves the admin routes on admin.listen only, behind its bearer token",
          "[bulwarkd][admin][integration]") {
  scratch tmp;
  auto token = tmp.put("token", "0123456789abcdef-token\n");
  test::node_process n{{{"admin", {{"token_file", token}}}}};
  REQUIRE(n.admin_port != 0);
  CHECK(test::http_call(n.port, "POST", "/admin/v1/breaker/backend/force_open").status == 404);
  CHECK(test::http_call(n.admin_port, "POST", "/admin/v1/breaker/backend/force_open").status ==
        401);
  auto ok = test::http_call(n.admin_port, "POST", "/admin/v1/breaker/backend/force_open", {},
                            std::chrono::seconds(5),
                            {{"Authorization", "Bearer 0123456789abcdef-token"}});
  CHECK(ok.status == 200);
  CHECK(n.status()["breaker"]["state"] == "open");
}

TEST_CASE("the shipped default config is valid", "[bulwarkd][integration]") {
  auto [rc, out] = test::run_command(std::string{BULWARKD_PATH} + " --check-config " +
                                     BULWARK_SOURCE_DIR + "/config/default.json");
  INFO(out);
  CHECK(rc == 0);
}

TEST_CASE("shipped defaults: an overload of callers in a hurry never opens the breaker",
          "[bulwarkd][faults][integration]") {
  // A healthy SQLite, callers that give up after 20 ms on a statement that takes longer: every
  // call is cancelled at its deadline or times out in the queue. That is load, not a failing
  // backend (the cancels come back at once), so the breaker stays closed. The scenario adds only
  // the statement.
  auto cfg = test::shipped_demo();
  cfg["statements"]["spin"] = {
      {"sql", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) "
              "SELECT count(*) FROM c"},
      {"params", json::array()},
      {"read_only", true},
      {"cache_ttl_ms", 0}};
  running_node n{cfg};
  REQUIRE(n.query("spin").status == 200);
  std::atomic<int> timed_out{0}; // 504, or 503 queue_full: refused as unable to make 20 ms
  auto until = std::chrono::steady_clock::now() + 3s;
  test::thread_group clients;
  for (int c = 0; c < 16; ++c)
    clients.spawn([&] {
      while (std::chrono::steady_clock::now() < until) {
        auto r = test::http_call(n.port, "POST", "/v1/query/spin", "{}", 5s,
                                 {{"X-Request-Timeout-Ms", "20"}});
        if (r.status == 504 || (r.status == 503 && r.body.find("queue_full") != std::string::npos))
          ++timed_out;
      }
    });
  clients.join();
  CHECK(timed_out > 100);
  CHECK(test::metric(n.port, "bulwark_pool_call_timeouts_total") > 0); // cancelled while running
  auto b = n.status()["breaker"];
  CHECK(b["state"] == "closed");
  CHECK(b["failures"] == 0);
  CHECK(n.query("spin").status == 200);
}

TEST_CASE("shipped defaults: point reads run in the scheduler lane; a read that outruns its slice "
          "runs on a connection thread and is answered once",
          "[bulwarkd][pool][integration]") {
  // The scenario adds only a slow statement: counting to 300 000 takes tens of milliseconds,
  // far past the shipped 200 us slice (pool.lane_slice_us).
  auto cfg = test::shipped_demo();
  cfg["statements"]["spin"] = {
      {"sql", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) "
              "SELECT count(*) AS n FROM c"},
      {"params", json::array()},
      {"read_only", true},
      {"cache_ttl_ms", 0}};
  running_node n{cfg};
  const std::string served = "bulwark_pool_lane_calls_total{outcome=\"served\"}";
  const std::string back = "bulwark_pool_lane_calls_total{outcome=\"handed_back\"}";
  // The lane opens once a thread connection is up, so the first read may come before it: read
  // a new key (a cache miss) until one runs there.
  int reads = 0;
  for (int id = 1; id <= 50 && test::metric(n.port, served) == 0; ++id, ++reads)
    REQUIRE(n.query("user_by_id", json::array({id})).status == 200);
  INFO(reads << " reads");
  REQUIRE(test::metric(n.port, served) >= 1);
  CHECK(test::metric(n.port, back) == 0);
  auto r = n.query("spin");
  REQUIRE(r.status == 200);
  CHECK(json::parse(r.body)["rows"] == json::array({json::array({300000})}));
  CHECK(test::metric(n.port, back) == 1);
  CHECK(test::metric(n.port, "bulwark_pool_call_timeouts_total") == 0);
  // Its statement skips the lane for a while: the next runs on a thread straight away.
  REQUIRE(n.query("spin").status == 200);
  CHECK(test::metric(n.port, back) == 1);
  CHECK(n.status()["breaker"]["failures"] == 0);
}

TEST_CASE("bulwarkd --check-config refuses values that would kill the node, with exit 2 and their "
          "paths",
          "[bulwarkd][integration]") {
  scratch tmp;
  auto big = tmp.put("big.json", R"({"rate_limiter": {"max_bytes": 18446744073709551615},
    "scheduler": {"threads": 1000000}})");
  auto [rc, out] = test::run_command(std::string{BULWARKD_PATH} + " --check-config " + big);
  CHECK(rc == 2);
  CHECK_THAT(out, Catch::Contains("rate_limiter.max_bytes: expected an integer <= 1073741824"));
  CHECK_THAT(out, Catch::Contains("scheduler.threads: expected an integer <= 256"));
  // Nested 100 000 deep: refused with a message, not a segfault.
  auto deep = tmp.put("deep.json",
                      R"({"node": )" + std::string(100000, '[') + std::string(100000, ']') + "}");
  auto [deep_rc, deep_out] =
      test::run_command(std::string{BULWARKD_PATH} + " --check-config " + deep);
  CHECK(deep_rc == 2);
  CHECK_THAT(deep_out, Catch::Contains("nest deeper than 64 levels"));
}

TEST_CASE("bulwarkd starts with the default alert rules without calling any dead, and warns about "
          "a rule over an unknown metric",
          "[bulwarkd][alerts][integration]") {
  {
    test::node_process n; // the default rules: HighCacheEvictions' family has no series yet
    // The monitor answers only after its start, where it checks the rules.
    REQUIRE(test::http_get(n.port, "/v1/alerts").status == 200);
    auto log = n.proc->output();
    INFO(log);
    CHECK_THAT(log, !Catch::Contains("will never fire"));
  }
  nlohmann::json rules = {{"alerts",
                           {{{"name", "Ghost"},
                             {"metric", "bulwark_no_such_metric_total"},
                             {"op", ">"},
                             {"threshold", 1}}}}};
  test::node_process n{rules};
  REQUIRE(test::http_get(n.port, "/v1/alerts").status == 200);
  auto log = n.proc->output();
  INFO(log);
  CHECK_THAT(log, Catch::Contains("alert Ghost: no metric \"bulwark_no_such_metric_total\""));
}

TEST_CASE("on SIGTERM, requests still running when the drain time ends are answered 503 "
          "shutting_down before the node exits",
          "[integration][shutdown]") {
  // The shipped defaults but a short drain (shutdown.drain_ms, the scenario) and one statement
  // that runs on the backend until the default 5 s deadline would cancel it.
  auto cfg = test::shipped_demo();
  cfg["shutdown"] = {{"drain_ms", 300}};
  cfg["statements"]["spin"] = {{"sql", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                                       "FROM n WHERE i < 1000000000) SELECT count(*) FROM n"},
                               {"params", json::array()},
                               {"read_only", true},
                               {"cache_ttl_ms", 0}};
  running_node n{cfg};
  constexpr int clients = 6;
  std::vector<test::http_result> answers(clients);
  test::thread_group threads;
  for (int i = 0; i < clients; ++i)
    threads.spawn([&, i] { answers[i] = n.query("spin", json::array(), 20s); });
  // All of them in flight (running or queued for a connection), then the signal. The check is
  // on the reading that ended the wait, not on a second one taken after it.
  auto until = std::chrono::steady_clock::now() + 10s;
  double in_flight = 0;
  while ((in_flight = test::metric(n.port, "bulwark_requests_in_flight")) < clients &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(10ms);
  REQUIRE(in_flight == clients);
  auto t0 = std::chrono::steady_clock::now();
  n.proc->signal(SIGTERM);
  threads.join();
  auto code = n.proc->wait(10s);
  REQUIRE(code);
  CHECK(*code == 0);
  // Every client has an answer, the drain's, well before the backend's deadline.
  CHECK(std::chrono::steady_clock::now() - t0 < 4s);
  for (auto& a : answers) {
    INFO(a.error + " " + a.body);
    CHECK(a.status == 503);
    CHECK(json::parse(a.body.empty() ? "{}" : a.body).value("error", "") == "shutting_down");
    CHECK(a.headers["connection"] == "close");
    CHECK(a.headers["retry-after"] == "1");
  }
  CHECK_THAT(n.proc->output(), Catch::Contains("answered " + std::to_string(clients) +
                                               " requests still in flight 503 shutting_down"));
}
