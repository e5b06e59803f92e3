#include "runtime/http_api.hpp"

#include "actors/detail/backend.hpp"

#include "runtime/json_render.hpp"

#include "support/http_client.hpp"
#include "support/memory_source.hpp"
#include "support/temp_dir.hpp"
#include "support/threads.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <future>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

/// A real engine (real scheduler) and HTTP server on a free loopback port, fed by a memory
/// source the test sets.
struct node {
  std::shared_ptr<std::atomic<double>> ratio = std::make_shared<std::atomic<double>>(0.2);
  /// Attached by the tests that fill the memory budget: then samples count reservations as used.
  std::shared_ptr<test::reservations_as_used> reserved =
      std::make_shared<test::reservations_as_used>();
  std::unique_ptr<engine> eng;
  std::unique_ptr<http_api_metrics> api_metrics;
  std::unique_ptr<http_server> http;
  std::unique_ptr<http_server> admin; ///< the admin listener (admin.listen), as bulwarkd runs it

  test::temp_dir data;

  explicit node(bool fault_injection = true, std::function<void(engine_config&)> tweak = {},
                http_api_fault fault = {}, const std::string& admin_token = {}) {
    engine_config cfg;
    cfg.node.data_dir = data.path.string();
    cfg.http.listen = "127.0.0.1:0";
    cfg.admin.fault_injection = fault_injection;
    cfg.memory.sample_interval = 10ms;
    cfg.memory.min_dwell = 0ms;
    cfg.scheduler.threads = 2;
    if (tweak)
      tweak(cfg);
    engine_options opts;
    opts.memory_source = test::scripted_memory(ratio, 1ull << 30, reserved);
    eng = std::make_unique<engine>(cfg, opts);
    api_metrics = std::make_unique<http_api_metrics>(*eng->registry());
    http = std::make_unique<http_server>(cfg.http, make_http_api(*eng, *api_metrics, {}, fault));
    http->start();
    auto admin_cfg = cfg.http;
    admin_cfg.listen = "127.0.0.1:0";
    admin = std::make_unique<http_server>(
        admin_cfg, make_http_api(*eng, *api_metrics, {}, fault, {true, admin_token}));
    admin->start();
  }

  ~node() {
    admin->stop();
    http->stop();
    eng->stop();
  }

  test::http_result get(const std::string& path) { return test::http_get(http->port(), path); }

  /// Polls `path` until `pred` holds on its JSON body; the engine runs on real threads, so the
  /// test waits for an observable state with a deadline rather than for a guessed time.
  json wait_for(const std::string& path, const std::function<bool(const json&)>& pred,
                std::chrono::milliseconds deadline = 5s) {
    auto until = std::chrono::steady_clock::now() + deadline;
    json last;
    do {
      auto r = get(path);
      if (r.status != 0) {
        last = json::parse(r.body, nullptr, false);
        if (!last.is_discarded() && pred(last))
          return last;
      }
      std::this_thread::sleep_for(5ms);
    } while (std::chrono::steady_clock::now() < until);
    FAIL("condition on " << path << " not met within the deadline; last body: " << last.dump());
    return last;
  }
};

/// A POST to the admin listener.
test::http_result admin_post(node& n, const std::string& path,
                             std::vector<std::pair<std::string, std::string>> headers = {}) {
  return test::http_call(n.admin->port(), "POST", path, {}, std::chrono::seconds(10), headers);
}

/// Clients behind a proxy on loopback: their X-Client-Id names them (http.trusted_proxies).
void behind_loopback_proxy(engine_config& cfg) {
  cfg.http.trusted_proxies = {"127.0.0.1"};
}

} // namespace

TEST_CASE("healthz answers 200 without touching an actor", "[http_api][integration]") {
  node n;
  auto r = n.get("/healthz");
  CHECK(r.status == 200);
  CHECK(json::parse(r.body)["status"] == "ok");
}

TEST_CASE("readyz is 200 when the tree is up", "[http_api][integration]") {
  node n;
  auto r = n.get("/readyz");
  CHECK(r.status == 200);
  CHECK(json::parse(r.body)["ready"] == true);
}

TEST_CASE("status lists components, pressure and tasks", "[http_api][integration]") {
  node n;
  auto s = n.wait_for("/v1/status", [](const json& j) {
    return j.contains("pressure") && j["pressure"].value("samples", 0) > 0;
  });
  std::vector<std::string> names;
  for (auto& c : s["components"])
    names.push_back(c["name"]);
  CHECK(names == std::vector<std::string>{
                     "memory_pressure_monitor", "cleanup_manager", "performance_monitor", "backend",
                     "pipeline", "connection_pool", "circuit_breaker", "database", "rate_limiter/0",
                     "rate_limiter/1", "cache/0", "cache/1", "gateway/0", "gateway/1"});
  // a gateway and a limiter shard per scheduler thread
  CHECK(s["pool"]["connections"].get<int>() >= 1);
  CHECK(s["breaker"]["state"] == "closed");
  CHECK(s["pressure"]["source"] == "scripted");
  CHECK(s["pressure"]["ratio"].get<double>() == Approx(0.2));
  REQUIRE(s["rate_limiter"].is_array());
  REQUIRE(s["rate_limiter"].size() == 2);
  CHECK(s["rate_limiter"][1]["keys"] == 0);
  CHECK(s["rate_limiter"][1]["budget_bytes"].get<uint64_t>() > 0);
  REQUIRE(s["cache"].is_array());
  REQUIRE(s["cache"].size() == 2);
  CHECK(s["cache"][1]["shard"] == 1);
  CHECK_THAT(s["cache"][0]["policy_shape"].get<std::string>(), Catch::StartsWith("window "));
}

namespace {

/// The node's cleanup tasks by name, once every component has registered its own.
std::map<std::string, json> node_tasks(node& n) {
  auto s = n.wait_for("/v1/status",
                      [](const json& j) { return j.contains("tasks") && j["tasks"].size() == 8; });
  std::map<std::string, json> out;
  for (auto& t : s["tasks"])
    out[t["name"]] = t;
  return out;
}

} // namespace

TEST_CASE("every component's periodic work is a cleanup task in status",
          "[http_api][integration]") {
  node n;
  auto tasks = node_tasks(n);
  // name -> target, interval, deferrable, urgent: docs/architecture.md's table.
  struct row {
    const char* target;
    double interval;
    bool deferrable;
    bool urgent;
  };
  std::map<std::string, row> expected{
      {"memory_trim", {"memory_pressure_monitor", 60, false, true}},
      {"cache_sweep/0", {"cache/0", 1, false, true}},
      {"cache_sweep/1", {"cache/1", 1, false, true}},
      {"limiter_expiry/0", {"rate_limiter/0", 1, false, true}},
      {"limiter_expiry/1", {"rate_limiter/1", 1, false, true}},
      {"pool_maintenance", {"connection_pool", 5, false, false}},
      {"database_plans", {"database", 1, true, false}},
      {"breaker_watch", {"circuit_breaker", 0.25, false, false}},
  };
  REQUIRE(tasks.size() == expected.size());
  for (auto& [name, want] : expected) {
    INFO(name);
    REQUIRE(tasks.count(name) == 1);
    auto& t = tasks[name];
    CHECK(t["target"] == want.target);
    CHECK(t["interval_seconds"].get<double>() == Approx(want.interval));
    CHECK(t["deferrable"] == want.deferrable);
    CHECK(t["urgent"] == want.urgent);
    CHECK(t["state"] == "running");
    CHECK(t["next_run_seconds"].get<double>() <= want.interval);
  }
}

TEST_CASE("a restarted component registers its tasks again, once", "[http_api][integration]") {
  node n;
  node_tasks(n);
  auto r = admin_post(n, "/admin/v1/crash/rate_limiter%2F0");
  CHECK(r.status == 202);
  // Its task went with it and came back with its next incarnation: one of it, running anew.
  auto s = n.wait_for("/v1/status", [](const json& j) {
    if (!j.contains("tasks") || j["tasks"].size() != 8)
      return false;
    for (auto& t : j["tasks"])
      if (t["name"] == "limiter_expiry/0")
        return t["runs"].get<int>() >= 1 && t["state"] == "running";
    return false;
  });
  int count = 0;
  for (auto& t : s["tasks"])
    count += t["name"] == "limiter_expiry/0" ? 1 : 0;
  CHECK(count == 1);
  CHECK_THAT(n.get("/metrics").body, Catch::Contains("bulwark_cleanup_tasks 8"));
}

TEST_CASE("a pressure change shows in status history and metrics", "[http_api][integration]") {
  node n;
  n.ratio->store(0.99);
  auto s = n.wait_for("/v1/status",
                      [](const json& j) { return j["pressure"].value("level", "") == "critical"; });
  bool logged = false;
  for (auto& h : s["pressure"]["history"])
    logged = logged || h["what"].get<std::string>().find("-> critical") != std::string::npos;
  CHECK(logged);
  auto m = n.get("/metrics");
  CHECK(m.status == 200);
  CHECK_THAT(m.headers["content-type"], Catch::StartsWith("text/plain; version=0.0.4"));
  CHECK_THAT(m.body, Catch::Contains("bulwark_memory_pressure_level 3"));
  CHECK_THAT(m.body,
             Catch::Contains("bulwark_memory_pressure_changes_total{level=\"critical\"} 1"));
}

TEST_CASE("a crash through the admin endpoint is restarted, counted and ready again",
          "[http_api][integration]") {
  node n;
  auto old = n.eng->directory().lookup("cleanup_manager");
  auto r = admin_post(n, "/admin/v1/crash/cleanup_manager");
  CHECK(r.status == 202);
  n.wait_for("/v1/status", [](const json& j) {
    return j["ready"] == true && j["components"][1]["restarts"] == 1;
  });
  CHECK(n.eng->directory().lookup("cleanup_manager") != old);
  CHECK(n.get("/readyz").status == 200);
  CHECK_THAT(n.get("/metrics").body,
             Catch::Contains("bulwark_supervisor_restarts_total{child=\"cleanup_manager\"} 1"));
  // The restarted manager kept every component's tasks.
  CHECK(node_tasks(n).count("memory_trim") == 1);
}

TEST_CASE("crashing an unknown component is 404", "[http_api][integration]") {
  node n;
  auto r = admin_post(n, "/admin/v1/crash/no_such_thing");
  CHECK(r.status == 404);
  CHECK(json::parse(r.body)["error"] == "unknown_component");
}

TEST_CASE("the crash endpoint does not exist without fault injection", "[http_api][integration]") {
  node n{false};
  auto r = admin_post(n, "/admin/v1/crash/cleanup_manager");
  CHECK(r.status == 404);
  CHECK(n.eng->directory().lookup("cleanup_manager"));
  CHECK(n.get("/readyz").status == 200);
}

TEST_CASE("unknown routes are 404 and wrong methods 405", "[http_api][integration]") {
  node n;
  CHECK(n.get("/nope").status == 404);
  auto r = test::http_call(n.http->port(), "POST", "/healthz");
  CHECK(r.status == 405);
  CHECK(r.headers["allow"] == "GET");
  CHECK(test::http_call(n.admin->port(), "GET", "/admin/v1/crash/cleanup_manager").status == 405);
}

namespace {

/// A node whose SQLite database holds `n` numbered rows and a few statements.
void with_demo(engine_config& cfg) {
  cfg.backend.init_sql = {
      "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
      "INSERT INTO items (id, name) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
      "WHERE i < 500) SELECT i, 'item ' || i FROM n WHERE true ON CONFLICT (id) DO NOTHING"};
  cfg.database.statements["item"] = {"SELECT id, name FROM items WHERE id = $1", {"int"}, true};
  cfg.database.statements["items"] = {"SELECT id, name FROM items ORDER BY id", {}, true};
  cfg.database.statements["spin"] = {
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
      {},
      true};
  cfg.database.statements["pairs"] = {
      "SELECT a.id, b.id FROM items a JOIN items b ON b.id = a.id + 1 ORDER BY a.id", {}, true};
  cfg.database.limits.base_rows = 100;
  cfg.database.limits.floor_rows = 10;
}

test::http_result post(node& n, const std::string& path, const std::string& body = {},
                       std::vector<std::pair<std::string, std::string>> headers = {}) {
  return test::http_call(n.http->port(), "POST", path, body, std::chrono::seconds(10), headers);
}

double metric(node& n, const std::string& series) {
  auto body = n.get("/metrics").body;
  auto at = body.find("\n" + series + " ");
  if (at == std::string::npos)
    return 0;
  return std::stod(body.substr(at + series.size() + 2));
}

/// The sum of every series of metric `name` (e.g. one per shard).
double metric_sum(node& n, const std::string& name) {
  auto body = n.get("/metrics").body;
  double sum = 0;
  std::istringstream lines{body};
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(name + "{", 0) == 0 || line.rfind(name + " ", 0) == 0)
      sum += std::stod(line.substr(line.rfind(' ') + 1));
  return sum;
}

} // namespace

TEST_CASE("a named query is served from SQLite over HTTP", "[http_api][query][integration]") {
  node n{true, with_demo};
  auto r = post(n, "/v1/query/item", R"({"params": [42]})");
  REQUIRE(r.status == 200);
  auto j = json::parse(r.body);
  CHECK(j["columns"] == json{"id", "name"});
  CHECK(j["rows"] == json{{42, "item 42"}});
  CHECK(j["truncated"] == false);
  CHECK(j["warnings"].empty());
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served\"}") == 1);
}

TEST_CASE("a result over the row limit is truncated and says so",
          "[http_api][query][integration]") {
  node n{true, with_demo};
  auto r = post(n, "/v1/query/items");
  REQUIRE(r.status == 200);
  auto j = json::parse(r.body);
  CHECK(j["rows"].size() == 100);
  CHECK(j["truncated"] == true);
  CHECK(j["limit"]["max_rows"] == 100);
  CHECK(j["limit"]["truncated_by"] == "rows");
  REQUIRE(j["warnings"].size() == 1);
  CHECK_THAT(j["warnings"][0].get<std::string>(), Catch::Contains("keyset pagination"));
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served_truncated\"}") == 1);
}

TEST_CASE("the row limit shrinks at critical pressure", "[http_api][query][integration]") {
  node n{true, with_demo};
  n.ratio->store(0.99);
  n.wait_for("/v1/status",
             [](const json& j) { return j["pressure"].value("level", "") == "critical"; });
  // The database hears of the change asynchronously; wait until its limit follows.
  json j;
  for (int i = 0; i < 500; ++i) {
    // At critical pressure only high-priority work is admitted at all.
    j = json::parse(post(n, "/v1/query/items", "", {{"X-Priority", "high"}}).body);
    if (j["limit"]["max_rows"] == 30)
      break;
    std::this_thread::sleep_for(5ms);
  }
  CHECK(j["limit"]["max_rows"] == 30); // 100 x 0.3
  CHECK(j["rows"].size() == 30);
  CHECK_THAT(j["limit"]["reason"].get<std::string>(), Catch::Contains("critical"));
}

TEST_CASE("bad queries get 400 or 404 saying what was wrong", "[http_api][query][integration]") {
  node n{true, with_demo};
  auto unknown = post(n, "/v1/query/nope");
  CHECK(unknown.status == 404);
  CHECK(json::parse(unknown.body)["error"] == "unknown_statement");
  auto wrong_type = post(n, "/v1/query/item", R"({"params": ["forty-two"]})");
  CHECK(wrong_type.status == 400);
  CHECK_THAT(json::parse(wrong_type.body)["detail"].get<std::string>(),
             Catch::Contains("parameter 1 (int): expected an integer"));
  auto missing = post(n, "/v1/query/item", R"({"params": []})");
  CHECK(missing.status == 400);
  CHECK(post(n, "/v1/query/item", R"({"params": [1)").status == 400);
  CHECK(post(n, "/v1/query/item", R"({"args": [1]})").status == 400);
  CHECK(post(n, "/v1/query/item", R"({"params": [[1]]})").status == 400);
  CHECK(
      post(n, "/v1/query/item", R"({"params": [1]})", {{"X-Request-Timeout-Ms", "soon"}}).status ==
      400);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"bad_request\"}") == 6);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"unknown_statement\"}") == 1);
}

TEST_CASE(
    "a query past its deadline gets 504, is cancelled in SQLite, and the connection serves again",
    "[http_api][query][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.pool.min_connections = 1;
           cfg.pool.max_connections = 1;
         }};
  auto t0 = std::chrono::steady_clock::now();
  auto r = post(n, "/v1/query/spin", {}, {{"X-Request-Timeout-Ms", "300"}});
  CHECK(r.status == 504);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  // One connection: this is only served once sqlite3_interrupt stopped the spinning query.
  auto ok = post(n, "/v1/query/item", R"({"params": [1]})");
  CHECK(ok.status == 200);
  CHECK(metric(n, "bulwark_pool_call_timeouts_total") == 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"timed_out\"}") == 1);
}

TEST_CASE("a forced-open breaker answers 503 with Retry-After until reset",
          "[http_api][query][integration]") {
  node n{true, with_demo};
  auto opened = admin_post(n, "/admin/v1/breaker/backend/force_open");
  REQUIRE(opened.status == 200);
  CHECK(json::parse(opened.body)["state"] == "open");
  auto r = post(n, "/v1/query/item", R"({"params": [1]})");
  CHECK(r.status == 503);
  CHECK(json::parse(r.body)["error"] == "circuit_open");
  CHECK_FALSE(r.headers["retry-after"].empty());
  CHECK(admin_post(n, "/admin/v1/breaker/backend/reset").status == 200);
  auto after = post(n, "/v1/query/item", R"({"params": [1]})");
  INFO(after.body);
  CHECK(after.status == 200);
  CHECK(admin_post(n, "/admin/v1/breaker/backend/explode").status == 404);
  CHECK_THAT(
      n.get("/metrics").body,
      Catch::Contains("bulwark_breaker_transitions_total{breaker=\"backend\",to=\"open\"} 1"));
}

TEST_CASE("a complex statement, as the planner sees it, gets a smaller limit",
          "[http_api][query][integration]") {
  node n{true, with_demo};
  // The database asks the planner once the backend is up; until then the lexical score stands.
  json j;
  for (int i = 0; i < 500; ++i) {
    j = json::parse(post(n, "/v1/query/pairs").body);
    if (j["limit"]["reason"].get<std::string>().find("complexity 8") != std::string::npos)
      break;
    std::this_thread::sleep_for(5ms);
  }
  // SQLite's plan: SCAN a (a full scan, +2), SEARCH b (a join, +5), base 1. The lexical score
  // would be 6 (one JOIN): seeing 8 proves the planner was asked.
  CHECK_THAT(j["limit"]["reason"].get<std::string>(), Catch::Contains("complexity 8"));
  CHECK(j["limit"]["max_rows"] == 70); // above 5: x0.7
  CHECK(j["rows"].size() == 70);
  CHECK(j["truncated"] == true);
}

TEST_CASE("repeated reads are served from the cache", "[http_api][pipeline][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.database.statements["item"].cache_ttl = 60s;
           cfg.database.statements["fresh_item"] = cfg.database.statements["item"];
           cfg.database.statements["fresh_item"].cache_ttl = 0s;
         }};
  auto first = post(n, "/v1/query/item", R"({"params": [7]})");
  REQUIRE(first.status == 200);
  CHECK(first.headers["x-cache"] == "miss");
  auto second = post(n, "/v1/query/item", R"({"params": [7]})");
  REQUIRE(second.status == 200);
  CHECK(second.headers["x-cache"] == "hit");
  CHECK(json::parse(second.body)["rows"] == json::parse(first.body)["rows"]);
  // Other parameters are another key; statements without a TTL are never cached.
  CHECK(post(n, "/v1/query/item", R"({"params": [8]})").headers["x-cache"] == "miss");
  CHECK(post(n, "/v1/query/fresh_item", R"({"params": [7]})").headers["x-cache"] == "miss");
  CHECK(post(n, "/v1/query/fresh_item", R"({"params": [7]})").headers["x-cache"] == "miss");
  auto hits = metric(n, "bulwark_cache_hits_total{shard=\"0\"}") +
              metric(n, "bulwark_cache_hits_total{shard=\"1\"}");
  CHECK(hits == 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served_cached\"}") == 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served\"}") == 4);
}

TEST_CASE("a client over its limit gets 429 with Retry-After while another is served",
          "[http_api][pipeline][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           behind_loopback_proxy(cfg);
           cfg.rate_limiter.table.rate_per_sec = 0.01; // one request per 100 s after the burst
           cfg.rate_limiter.table.burst = 2;
         }};
  auto as = [&](const std::string& client) {
    return post(n, "/v1/query/item", R"({"params": [1]})", {{"X-Client-Id", client}});
  };
  CHECK(as("alice").status == 200);
  CHECK(as("alice").status == 200);
  auto limited = as("alice");
  CHECK(limited.status == 429);
  CHECK(json::parse(limited.body)["error"] == "rate_limited");
  REQUIRE_FALSE(limited.headers["retry-after"].empty());
  auto retry = std::stoi(limited.headers["retry-after"]);
  CHECK(retry >= 99);
  CHECK(retry <= 100);
  CHECK(as("bob").status == 200);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"rejected_rate_limited\"}") == 1);
  CHECK(metric(n, "bulwark_ratelimit_decisions_total{decision=\"limited\"}") == 1);
  CHECK(metric(n, "bulwark_ratelimit_decisions_total{decision=\"allowed\"}") == 3);
  CHECK(metric_sum(n, "bulwark_ratelimit_keys") == 2);
}

TEST_CASE("low-priority requests are shed at critical pressure, others served",
          "[http_api][pipeline][integration]") {
  node n{true, with_demo};
  auto low = [&] {
    return post(n, "/v1/query/item", R"({"params": [1]})", {{"X-Priority", "low"}});
  };
  CHECK(low().status == 200);
  CHECK(post(n, "/v1/query/item", R"({"params": [1]})", {{"X-Priority", "urgent"}}).status == 400);
  n.ratio->store(0.99);
  n.wait_for("/v1/status",
             [](const json& j) { return j["pressure"].value("level", "") == "critical"; });
  // The gateway hears of the change asynchronously: wait until it sheds.
  test::http_result r;
  for (int i = 0; i < 500; ++i) {
    r = low();
    if (r.status == 503)
      break;
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(r.status == 503);
  CHECK(json::parse(r.body)["error"] == "shed");
  CHECK_FALSE(r.headers["retry-after"].empty());
  // Normal work is refused by the memory account at critical pressure, before it allocates.
  auto normal = post(n, "/v1/query/item", R"({"params": [1]})");
  CHECK(normal.status == 503);
  CHECK(json::parse(normal.body)["error"] == "insufficient_memory");
  CHECK_FALSE(normal.headers["retry-after"].empty());
  CHECK(post(n, "/v1/query/item", R"({"params": [1]})", {{"X-Priority", "high"}}).status == 200);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"rejected_shed\"}") >= 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"rejected_memory\"}") == 1);
}

TEST_CASE("by default, a client cannot dodge its limit with fresh ids or forwarded addresses",
          "[http_api][pipeline][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.rate_limiter.table.rate_per_sec = 0.01;
           cfg.rate_limiter.table.burst = 2;
         }};
  auto as = [&](const std::string& header, const std::string& value) {
    return post(n, "/v1/query/item", R"({"params": [1]})", {{header, value}});
  };
  CHECK(as("X-Client-Id", "a").status == 200);
  CHECK(as("X-Forwarded-For", "203.0.113.9").status == 200);
  CHECK(as("X-Client-Id", "c").status == 429); // all three are 127.0.0.1: nobody is trusted
  CHECK(metric_sum(n, "bulwark_ratelimit_keys") == 1);
}

TEST_CASE("a pressure drill fires a configured alert, shown in /v1/alerts and metrics, then "
          "resolves it",
          "[http_api][alerts][integration]") {
  node n{true, [](engine_config& cfg) {
           cfg.performance.interval = 20ms;
           detail::alert_rule r;
           r.name = "DrillPressure";
           r.metric = "bulwark_memory_pressure_ratio";
           r.op = detail::alert_op::gt;
           r.threshold = 0.9;
           r.for_duration = 300ms;
           r.clear_threshold = 0.5;
           r.severity = "critical";
           cfg.performance.alerts = {r};
         }};
  auto drill = [](const json& body) { return body["alerts"].at(0); };
  auto a = drill(n.wait_for("/v1/alerts", [&](const json& b) { return b["alerts"].size() == 1; }));
  CHECK(a["name"] == "DrillPressure");
  CHECK(a["state"] == "inactive");
  CHECK(a["metric"] == "bulwark_memory_pressure_ratio");
  CHECK(a["op"] == ">");
  CHECK(a["for_seconds"] == 0.3);
  CHECK(metric(n, "bulwark_alerts_firing{alert=\"DrillPressure\"}") == 0);

  auto rose = std::chrono::steady_clock::now();
  *n.ratio = 0.97;
  n.wait_for("/v1/alerts", [&](const json& b) { return drill(b)["state"] == "pending"; });
  auto body =
      n.wait_for("/v1/alerts", [&](const json& b) { return drill(b)["state"] == "firing"; });
  // It held for its 300 ms first (the ratio rose after `rose`, so this bound is safe).
  CHECK(std::chrono::steady_clock::now() - rose >= 300ms);
  CHECK(body["firing"] == 1);
  CHECK(drill(body)["value"].get<double>() == Approx(0.97));
  CHECK(drill(body)["fired"] == 1);
  CHECK(metric(n, "bulwark_alerts_firing{alert=\"DrillPressure\"}") == 1);
  CHECK(metric(n, "bulwark_alerts_transitions_total{alert=\"DrillPressure\",to=\"firing\"}") == 1);

  // Between the clear threshold and the threshold it keeps firing: wait until the engine has
  // seen 0.7 and then evaluated several more ticks.
  *n.ratio = 0.7;
  n.wait_for("/v1/alerts", [&](const json& b) {
    return drill(b)["value"].is_number() && drill(b)["value"].get<double>() == Approx(0.7);
  });
  auto ticks = [&] {
    auto p = json::parse(n.get("/v1/perf").body);
    return p["collected"].get<uint64_t>() + p["skipped"].get<uint64_t>();
  };
  auto t0 = ticks();
  while (ticks() < t0 + 5)
    std::this_thread::sleep_for(5ms);
  CHECK(drill(json::parse(n.get("/v1/alerts").body))["state"] == "firing");

  *n.ratio = 0.3;
  body = n.wait_for("/v1/alerts", [&](const json& b) { return drill(b)["state"] == "inactive"; });
  CHECK(body["firing"] == 0);
  CHECK(drill(body)["fired"] == 1);
  CHECK(metric(n, "bulwark_alerts_firing{alert=\"DrillPressure\"}") == 0);
  CHECK(metric(n, "bulwark_alerts_transitions_total{alert=\"DrillPressure\",to=\"resolved\"}") ==
        1);
}

TEST_CASE("the performance monitor reports samples, history and request latency over HTTP",
          "[http_api][perf][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.performance.interval = 20ms;
         }};
  REQUIRE(post(n, "/v1/query/item", R"({"params": [1]})").status == 200);
  CHECK(post(n, "/v1/query/nope", R"({"params": [1]})").status == 404);
  CHECK(metric(n, "bulwark_request_duration_seconds_count{class=\"served\"}") == 1);
  CHECK(metric(n, "bulwark_request_duration_seconds_count{class=\"rejected\"}") == 1);
  CHECK(metric(n, "bulwark_database_query_duration_seconds_count") >= 1);
  auto perf = n.wait_for("/v1/perf", [](const json& p) {
    return p["latest"].is_object() && p["series"].at(0)["points"].get<int>() >= 3;
  });
  CHECK(perf["sampling_ratio"] == 1.0);
  CHECK(perf["latest"]["rss_bytes"].get<uint64_t>() > 1'000'000);
  CHECK(perf["series"].size() == perf_series_names().size());
  auto hist = json::parse(n.get("/v1/perf/history/rss_bytes").body);
  CHECK(hist["series"] == "rss_bytes");
  REQUIRE(hist["points"].size() >= 3);
  CHECK(hist["points"][0][0].get<double>() < 0); // seconds before now
  CHECK(hist["points"][0][1].get<double>() > 1'000'000);
  auto unknown = n.get("/v1/perf/history/nope");
  CHECK(unknown.status == 404);
  CHECK_THAT(unknown.body, Catch::Contains("rss_bytes"));
  CHECK(metric(n, "bulwark_perf_resident_memory_bytes") > 1'000'000);
  CHECK(metric(n, "bulwark_perf_samples_total{result=\"collected\"}") >= 3);
  auto status = json::parse(n.get("/v1/status").body);
  CHECK(status["performance"]["sampling_ratio"] == 1.0);
}

TEST_CASE("the performance monitor measures the error rate and scores the node over HTTP",
          "[http_api][perf][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.performance.interval = 20ms;
         }};
  // One served, one refused by the caller's fault (404: not a failure), three timed out.
  REQUIRE(post(n, "/v1/query/item", R"({"params": [1]})").status == 200);
  CHECK(post(n, "/v1/query/nope", R"({"params": [1]})").status == 404);
  for (int i = 0; i < 3; ++i)
    CHECK(post(n, "/v1/query/spin", {}, {{"X-Request-Timeout-Ms", "50"}}).status == 504);
  // Some sample saw the failures: its error ratio is failed over answered in its interval.
  auto most = [](const json& h) {
    double x = 0;
    for (auto& p : h["points"])
      x = std::max(x, p[1].get<double>());
    return x;
  };
  auto h = n.wait_for("/v1/perf/history/error_ratio", [&](const json& h) { return most(h) > 0; });
  CHECK(most(h) <= 1);
  auto perf = json::parse(n.get("/v1/perf").body);
  CHECK(perf["score"].is_number_integer());
  CHECK(perf["score"].get<int>() <= 100);
  CHECK(perf["findings"].is_array());
  CHECK(perf["latest"].contains("error_ratio"));
  CHECK(metric(n, "bulwark_perf_error_ratio") >= 0);
  CHECK(metric(n, "bulwark_perf_last_scheduler_lag_seconds") >= 0);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"timed_out\"}") == 3);
}

TEST_CASE("with the performance monitor off there is no monitor, and /v1/alerts says so",
          "[http_api][perf][integration]") {
  node n{true, [](engine_config& cfg) { cfg.performance.enabled = false; }};
  auto r = n.get("/v1/alerts");
  CHECK(r.status == 404);
  CHECK(json::parse(r.body)["error"] == "disabled");
  auto status = json::parse(n.get("/v1/status").body);
  CHECK_FALSE(status.contains("performance"));
  for (auto& c : status["components"])
    CHECK(c["name"] != "performance_monitor");
}

// -- issue 20: no single request can take the node down ------------------------------------------

TEST_CASE("any byte string renders as JSON that parses and is valid UTF-8", "[http_api][utf8]") {
  std::mt19937_64 prng{20}; // deterministic: the same strings every run
  std::uniform_int_distribution<int> length{0, 24};
  std::uniform_int_distribution<int> byte{0, 255};
  std::uniform_int_distribution<int> high{0x80, 0xFF}; // biased towards multi-byte trouble
  for (int i = 0; i < 20000; ++i) {
    std::string bytes;
    auto n = length(prng);
    for (int k = 0; k < n; ++k)
      bytes += static_cast<char>(k % 2 == 0 ? byte(prng) : high(prng));
    std::string text;
    REQUIRE_NOTHROW(text = render_json(json{{"value", bytes}, {bytes, json::array({bytes})}}));
    INFO("input #" << i << " of " << bytes.size() << " bytes");
    REQUIRE(is_valid_utf8(text));
    auto back = json::parse(text, nullptr, false); // nlohmann's parser refuses invalid UTF-8
    REQUIRE_FALSE(back.is_discarded());
    if (is_valid_utf8(bytes)) // valid text is kept as it is
      REQUIRE(back["value"] == bytes);
    auto quoted = json_quote(bytes);
    REQUIRE(is_valid_utf8(quoted));
    REQUIRE(json::parse(quoted, nullptr, false).is_string());
  }
  CHECK(render_json(json("\xC3\x28\xFF")) == "\"\xEF\xBF\xBD(\xEF\xBF\xBD\"");
}

TEST_CASE("is_valid_utf8 accepts UTF-8 and refuses overlongs, surrogates and stray bytes",
          "[http_api][utf8]") {
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("plain"));
  CHECK(is_valid_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80")); // é € 😀
  CHECK_FALSE(is_valid_utf8("\xFF"));
  CHECK_FALSE(is_valid_utf8("\xC3\x28"));
  CHECK_FALSE(is_valid_utf8("\xC0\xAF"));         // overlong '/'
  CHECK_FALSE(is_valid_utf8("\xED\xA0\x80"));     // a surrogate
  CHECK_FALSE(is_valid_utf8("\xF4\x90\x80\x80")); // above U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xE2\x82"));         // cut short
}

TEST_CASE("path segments are percent-decoded and must be UTF-8", "[http_api]") {
  std::string out;
  CHECK(decode_path_segment("user%5Fby%5fid", out));
  CHECK(out == "user_by_id");
  CHECK(decode_path_segment("caf%C3%A9", out));
  CHECK(out == "caf\xC3\xA9");
  CHECK_FALSE(decode_path_segment("%FF", out));  // decodes to a byte that is not UTF-8
  CHECK_FALSE(decode_path_segment("\xFF", out)); // a raw byte likewise
  CHECK_FALSE(decode_path_segment("a%2", out));  // cut short
  CHECK_FALSE(decode_path_segment("a%zz", out)); // not hex
  CHECK_FALSE(decode_path_segment("%", out));
}

TEST_CASE("integer parameters outside int64 are refused for int and exact for real", "[http_api]") {
  std::vector<detail::param_kind> types{detail::param_kind::integer, detail::param_kind::real};
  std::vector<db_value> out;
  CHECK(parse_query_params(R"({"params": [18446744073709551615, 1]})", &types, out) ==
        "params[0]: 18446744073709551615 is out of range for int "
        "(-9223372036854775808..9223372036854775807)");
  out.clear();
  CHECK(parse_query_params(R"({"params": [9223372036854775808, 1]})", &types, out) ==
        "params[0]: 9223372036854775808 is out of range for int "
        "(-9223372036854775808..9223372036854775807)");
  out.clear();
  CHECK_THAT(parse_query_params(R"({"params": [-9223372036854775809, 1]})", &types, out),
             Catch::StartsWith("params[0]: ") && Catch::Contains("out of range for int"));
  out.clear();
  REQUIRE(
      parse_query_params(R"({"params": [9223372036854775807, 18446744073709551615]})", &types, out)
          .empty());
  REQUIRE(out.size() == 2);
  CHECK(out[0] == db_value::of(int64_t{9223372036854775807}));
  CHECK(out[1].kind == db_value_kind::real);
  CHECK(out[1].real == 18446744073709551615.0); // never wrapped to -1
  out.clear();
  REQUIRE(parse_query_params(R"({"params": [-9223372036854775808, 2.5]})", &types, out).empty());
  CHECK(out[0] == db_value::of(std::numeric_limits<int64_t>::min()));
  CHECK(out[1] == db_value::of(2.5));
}

TEST_CASE("a query body answers as the whole JSON tree reads it, plain or not", "[http_api]") {
  std::vector<detail::param_kind> kinds{detail::param_kind::integer, detail::param_kind::real,
                                        detail::param_kind::text};
  // Each problem kind, in each order they can meet in one body, and bodies that are fine.
  const char* bodies[] = {
      R"({"params": [1, 2.5, "x"]})",
      R"({"params": []})",
      R"({})",
      R"({"params": [null, true, false, "caf\u00e9"]})",
      R"({"params": [1], "params": [2, 3]})", // the last one counts
      R"({"params": [[1]], "params": [2]})",  // so does its problem, or none
      R"({"params": [2], "params": [[1]]})",
      R"({"params": [1, {"a": [2]}, 99999999999999999999]})", // the first problem wins
      R"({"params": [18446744073709551615, 1]})",
      R"({"params": [1, 18446744073709551615]})",
      R"({"params": [9.3e18, 1]})",
      R"({"params": [-9223372036854775809]})",
      R"({"params": 5})",
      R"({"params": {"a": 1}})",
      R"({"params": null})",
      R"({"zeta": 1, "alpha": 2, "params": [1]})", // the first unknown key in key order
      R"({"params": [[1]], "extra": 1})",          // an unknown key before a bad parameter
      R"({"extra": {"params": [1]}})",
      R"([1, 2])",
      R"("params")",
      R"(5)",
      R"({"params": [1])",
      R"({"zeta": 1, )", // not JSON beats an unknown key
      R"({"params": [1]} trailing)",
      R"({"params": [1e400]})",
      "{\"params\": [\"\xff\"]}", // not UTF-8
      R"(  {"params" : [ 1 , 2 ] }  )",
      // The plain shape read by hand, and its edges, which go to the tree.
      "{\"params\":[1,-2,true,false,null,\"a b\"]}",
      "\t{\r\n\"params\"\n:\t[ 123456789012345678 , -123456789012345678 ]\n}\r\n",
      R"({"params": [1234567890123456789, 9223372036854775807, -9223372036854775808]})",
      R"({"params": [0, -0, 01, 1.0, 1e3, 1E3, -1]})",
      R"({"params": [01]})",
      R"({"params": [-]})",
      R"({"params": [1,]})",
      R"({"params": [,1]})",
      R"({"params": [1 2]})",
      R"({"params": [truex]})",
      R"({"params": [nul]})",
      R"({"params": ["a\"b", "tab\tx"]})",
      "{\"params\": [\"caf\xc3\xa9\"]}",
      "{\"params\": [\"a\tb\"]}", // a raw control character: not JSON
      R"({"params": ["unterminated]})",
      R"({"params": [1]}})",
      R"({"params": [1]} )",
      R"({"params" [1]})",
      R"({"paramsx": [1]})",
      R"({"params": [1]   )",
      R"({"params": [])",
      R"({"params": [], "params": [1]})",
  };
  for (const char* body : bodies) {
    INFO(body);
    std::vector<db_value> read{db_value::of(int64_t{7})}; // kept: both readings append
    std::vector<db_value> tree{db_value::of(int64_t{7})};
    auto problem = parse_query_params(body, &kinds, read);
    CHECK(problem == detail::parse_query_params_tree(body, &kinds, tree));
    if (problem.empty())
      CHECK(read == tree);
    std::vector<db_value> untyped;
    std::vector<db_value> untyped_tree;
    CHECK(parse_query_params(body, nullptr, untyped) ==
          detail::parse_query_params_tree(body, nullptr, untyped_tree));
  }
  std::vector<db_value> out;
  CHECK(parse_query_params(R"({"zeta": 1, "alpha": 2})", &kinds, out) ==
        R"(unknown key "alpha" (expected only "params"))");
  CHECK(parse_query_params(R"({"params": [1, [2]]})", &kinds, out) ==
        "parameter 2 is an array or object; parameters are numbers, strings, booleans or null");
  out.clear();
  REQUIRE(parse_query_params(R"({"params": [1], "params": [2, 3]})", &kinds, out).empty());
  CHECK(out == std::vector<db_value>{db_value::of(int64_t{2}), db_value::of(int64_t{3})});
}

TEST_CASE("the whole client id is the rate limiter's key, up to its maximum", "[http_api]") {
  http_request a;
  a.peer = "10.0.0.1:4000";
  a.headers = {{"x-client-id", std::string(200, 'c') + "-one"}};
  auto b = a;
  b.headers = {{"x-client-id", std::string(200, 'c') + "-two"}};
  address_ranges proxies;
  REQUIRE(proxies.add("10.0.0.0/8").empty());
  std::string ka;
  std::string kb;
  REQUIRE(client_key(a, proxies, ka).empty());
  REQUIRE(client_key(b, proxies, kb).empty());
  CHECK(ka != kb);
  CHECK(ka == "id:" + std::string(200, 'c') + "-one");
  CHECK(client_key(a, address_ranges{}, ka).empty()); // nobody trusted: the header is ignored
  CHECK(ka == "ip:10.0.0.1");
  auto too_long = a;
  too_long.headers = {{"x-client-id", std::string(max_client_id_bytes + 1, 'x')}};
  CHECK_FALSE(client_key(too_long, proxies, ka).empty());
}

TEST_CASE("X-Forwarded-For names the client only behind a trusted proxy, as nginx's "
          "real_ip_recursive reads it",
          "[http_api]") {
  address_ranges proxies;
  REQUIRE(proxies.add("10.0.0.0/8").empty());
  REQUIRE(proxies.add("fd00::/8").empty());
  auto key_of = [&](const std::string& peer, const std::string& forwarded) {
    http_request r;
    r.peer = peer;
    if (!forwarded.empty())
      r.headers = {{"x-forwarded-for", forwarded}};
    std::string key;
    auto problem = client_key(r, proxies, key);
    return problem.empty() ? key : "error: " + problem;
  };
  // An untrusted peer is its address whatever it forwards.
  CHECK(key_of("198.51.100.7:5000", "203.0.113.9") == "ip:198.51.100.7");
  // A trusted proxy: the rightmost hop that is not a trusted proxy is the client.
  CHECK(key_of("10.1.2.3:5000", "203.0.113.9") == "ip:203.0.113.9");
  CHECK(key_of("10.1.2.3:5000", "6.6.6.6, 203.0.113.9, 10.9.9.9") == "ip:203.0.113.9");
  CHECK(key_of("[fd00::1]:5000", "2001:db8::5") == "ip:2001:db8::5");
  CHECK(key_of("10.1.2.3:5000", "10.2.2.2, 10.3.3.3") == "ip:10.2.2.2"); // all ours: the first
  CHECK(key_of("10.1.2.3:5000", "") == "ip:10.1.2.3");
  CHECK(key_of("10.1.2.3:5000", "203.0.113.9, not-an-ip").rfind("error: X-Forwarded-For", 0) == 0);
}

TEST_CASE("address ranges: CIDR entries as nginx reads them, and the errors of bad ones",
          "[http_api]") {
  address_ranges r;
  REQUIRE(r.add("192.168.1.77/24").empty()); // host bits are cleared: 192.168.1.0/24
  REQUIRE(r.add("2001:db8::/32").empty());
  REQUIRE(r.add("127.0.0.1").empty());
  CHECK(r.contains("192.168.1.1"));
  CHECK(r.contains("192.168.1.255"));
  CHECK_FALSE(r.contains("192.168.2.1"));
  CHECK(r.contains("::ffff:192.168.1.9")); // the IPv4-mapped form is the same address
  CHECK(r.contains("[2001:db8:ffff::1]"));
  CHECK_FALSE(r.contains("2001:db9::1"));
  CHECK(r.contains("127.0.0.1"));
  CHECK_FALSE(r.contains("127.0.0.2"));
  CHECK_FALSE(r.contains("localhost"));
  address_ranges all;
  REQUIRE(all.add("0.0.0.0/0").empty());
  CHECK(all.contains("8.8.8.8"));
  CHECK_FALSE(all.contains("2001:db8::1"));
  CHECK_THAT(cidr_problem("10.0.0.0/33"), Catch::Contains("longer than 32"));
  CHECK_THAT(cidr_problem("10.0.0.0/x"), Catch::Contains("prefix"));
  CHECK_THAT(cidr_problem("ten/8"), Catch::Contains("not an IPv4 or IPv6 address"));
  CHECK_THAT(cidr_problem("::/129"), Catch::Contains("longer than 128"));
  CHECK(cidr_problem("::/0").empty());
}

TEST_CASE("the public port answers 404 for every admin route; the admin listener serves them, "
          "and no queries",
          "[http_api][admin][integration]") {
  node n{true, with_demo};
  const std::vector<std::string> admin_routes = {"/admin/v1/breaker/backend/force_open",
                                                 "/admin/v1/breaker/backend/force_closed",
                                                 "/admin/v1/breaker/backend/reset",
                                                 "/admin/v1/crash/cleanup_manager",
                                                 "/admin/v1/crash/x",
                                                 "/admin/",
                                                 "/admin/v1/anything"};
  for (auto& path : admin_routes) {
    for (auto method : {"POST", "GET"}) {
      auto r = test::http_call(n.http->port(), method, path);
      INFO(method << " " << path << " -> " << r.status << " " << r.body);
      CHECK(r.status == 404);
    }
  }
  CHECK(json::parse(n.get("/v1/status").body)["breaker"]["state"] == "closed");
  CHECK(n.eng->directory().lookup("cleanup_manager"));
  // The admin listener: the routes, the probes and status; a query is not served there.
  CHECK(admin_post(n, "/admin/v1/breaker/backend/force_open").status == 200);
  CHECK(admin_post(n, "/admin/v1/breaker/backend/reset").status == 200);
  CHECK(test::http_get(n.admin->port(), "/readyz").status == 200);
  CHECK(test::http_get(n.admin->port(), "/v1/status").status == 200);
  auto q = test::http_call(n.admin->port(), "POST", "/v1/query/item", R"({"params": [1]})");
  CHECK(q.status == 404);
  CHECK_THAT(q.body, Catch::Contains("http.listen"));
  CHECK(metric(n, "bulwark_requests_received_total") == 0); // not a query: not in the books
}

TEST_CASE("the public port's status leaves out every last_error; the admin listener's has them",
          "[http_api][admin][integration]") {
  node n{true, with_demo};
  auto pub = n.get("/v1/status");
  REQUIRE(pub.status == 200);
  CHECK(pub.body.find("\"last_error\"") == std::string::npos);
  CHECK(json::parse(pub.body)["pool"]["last_error_on_admin_listener"] == true);
  auto adm = test::http_get(n.admin->port(), "/v1/status");
  REQUIRE(adm.status == 200);
  CHECK(json::parse(adm.body)["pool"].contains("last_error"));
  CHECK(adm.body.find("last_error_on_admin_listener") == std::string::npos);
}

TEST_CASE("a backend's error text never reaches an HTTP client; its kind and a request id do",
          "[http_api][query][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.database.statements["bad_sql"] = {"SELECT no_such_column FROM items", {}, true};
         }};
  auto r = post(n, "/v1/query/bad_sql");
  INFO(r.body);
  auto j = json::parse(r.body);
  CHECK(r.status == 400);
  CHECK(j["error"] == "bad_statement");
  CHECK_FALSE(j["request_id"].get<std::string>().empty());
  CHECK(r.body.find("no_such_column") == std::string::npos);
  CHECK(j["detail"] == public_detail(classify(make_error(errc::bad_statement, "x"))));
}

TEST_CASE("public details: the node's own words pass, a backend's never", "[http_api]") {
  auto conflict = classify(make_error(errc::conflict, std::string{"users_email_key"},
                                      std::string{"Key (email)=(a@b.c) already exists"}));
  CHECK(conflict.private_detail);
  CHECK(conflict.constraint == "users_email_key");
  CHECK(public_detail(conflict).find("a@b.c") == std::string::npos);
  auto failed = classify(make_error(errc::backend_error, "password authentication failed for u"));
  CHECK(public_detail(failed).find("password") == std::string::npos);
  auto limited = classify(make_error(errc::rate_limited, int64_t{1000}));
  CHECK_FALSE(limited.private_detail);
  CHECK(public_detail(limited) == limited.detail);
}

TEST_CASE("with a token, the admin listener refuses requests without it",
          "[http_api][admin][integration]") {
  node n{true, with_demo, {}, "s3cret-token-0123456789"};
  auto none = admin_post(n, "/admin/v1/breaker/backend/force_open");
  CHECK(none.status == 401);
  CHECK(none.headers["www-authenticate"] == "Bearer");
  CHECK(admin_post(n, "/admin/v1/breaker/backend/force_open",
                   {{"Authorization", "Bearer s3cret-token-0123456788"}})
            .status == 401);
  CHECK(admin_post(n, "/admin/v1/breaker/backend/force_open", {{"Authorization", "Bearer "}})
            .status == 401);
  CHECK(json::parse(n.get("/v1/status").body)["breaker"]["state"] == "closed");
  auto ok = admin_post(n, "/admin/v1/breaker/backend/force_open",
                       {{"Authorization", "Bearer s3cret-token-0123456789"}});
  CHECK(ok.status == 200);
  CHECK(json::parse(ok.body)["state"] == "open");
}

TEST_CASE("a statement returning invalid UTF-8 answers 200 and the node keeps serving",
          "[http_api][query][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.database.statements["bad_text"] = {"SELECT CAST(X'C328FF' AS TEXT) AS t", {}, true};
         }};
  auto r = post(n, "/v1/query/bad%5Ftext"); // %5F: the name is percent-decoded
  REQUIRE(r.status == 200);
  CHECK(is_valid_utf8(r.body));
  auto body = json::parse(r.body);
  CHECK(body["rows"][0][0] == "\xEF\xBF\xBD(\xEF\xBF\xBD");
  CHECK(post(n, "/v1/query/item", R"({"params": [3]})").status == 200);
  CHECK(n.get("/v1/status").status == 200);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served\"}") == 2);
}

TEST_CASE("names in the URL that are not UTF-8 answer with a JSON error and the next request is "
          "served",
          "[http_api][query][integration]") {
  node n{true, with_demo};
  auto encoded = post(n, "/v1/query/%FF");
  CHECK(encoded.status == 400);
  CHECK(json::parse(encoded.body)["error"] == "bad_request");
  auto broken = post(n, "/v1/query/%F");
  CHECK(broken.status == 400);
  auto raw = post(n, "/v1/query/\xff");
  CHECK(raw.status == 400);
  CHECK(json::parse(raw.body, nullptr, false).is_object());
  auto nope = n.get("/nope\xff");
  CHECK(nope.status == 400);
  CHECK(json::parse(nope.body, nullptr, false).is_object());
  CHECK(n.get("/v1/perf/history/%FF").status == 400);
  CHECK(post(n, "/v1/query/item", R"({"params": [3]})").status == 200);
  CHECK(n.get("/v1/status").status == 200);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"bad_request\"}") == 2);
}

TEST_CASE("an exception while handling a request answers 500 internal_error, counted, and the "
          "bridge keeps serving",
          "[http_api][query][integration]") {
  auto armed = std::make_shared<std::atomic<int>>(2); // the next two answers throw
  node n{true, with_demo, [armed](const std::string&) {
           if (armed->fetch_sub(1) > 0)
             throw std::runtime_error("injected fault");
         }};
  auto failed = post(n, "/v1/query/item", R"({"params": [3]})");
  REQUIRE(failed.status == 500);
  auto body = json::parse(failed.body);
  CHECK(body["error"] == "internal_error");
  CHECK_THAT(body["detail"].get<std::string>(), !Catch::Contains("injected fault")); // logged
  CHECK_FALSE(body["request_id"].get<std::string>().empty());
  auto status = n.get("/v1/status");
  CHECK(status.status == 500);
  CHECK(json::parse(status.body)["error"] == "internal_error");
  // The bridge actor lives on: queries and status are served again.
  CHECK(post(n, "/v1/query/item", R"({"params": [3]})").status == 200);
  CHECK(n.get("/v1/status").status == 200);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"internal_error\"}") == 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served\"}") == 1);
}

TEST_CASE("an int parameter above int64 is 400 naming it; a real one keeps its value",
          "[http_api][query][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.database.statements["echo_real"] = {"SELECT $1 AS x", {"real"}, true};
         }};
  auto refused = post(n, "/v1/query/item", R"({"params": [18446744073709551615]})");
  CHECK(refused.status == 400);
  CHECK_THAT(json::parse(refused.body)["detail"].get<std::string>(),
             Catch::StartsWith("params[0]: 18446744073709551615 is out of range for int"));
  auto real = post(n, "/v1/query/echo_real", R"({"params": [18446744073709551615]})");
  REQUIRE(real.status == 200);
  CHECK(json::parse(real.body)["rows"][0][0].get<double>() == 18446744073709551615.0);
}

TEST_CASE("client ids that share a 200-byte prefix get separate buckets; a longer id than the "
          "maximum is 400",
          "[http_api][pipeline][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           behind_loopback_proxy(cfg);
           cfg.rate_limiter.table.rate_per_sec = 0.01;
           cfg.rate_limiter.table.burst = 1;
         }};
  auto as = [&](const std::string& client) {
    return post(n, "/v1/query/item", R"({"params": [1]})", {{"X-Client-Id", client}});
  };
  auto prefix = std::string(200, 'p');
  CHECK(as(prefix + "-alice").status == 200);
  CHECK(as(prefix + "-alice").status == 429);
  CHECK(as(prefix + "-bob").status == 200);
  auto too_long = as(std::string(max_client_id_bytes + 1, 'x'));
  CHECK(too_long.status == 400);
  CHECK(json::parse(too_long.body)["error"] == "bad_request");
}

TEST_CASE("a crash of any part of the request path answers its in-flight requests at once",
          "[http_api][faults][integration]") {
  // The deadline is 4 s and the statement never ends by itself: an answer well before the
  // deadline can only come from the crashing component (or one restarted with it) paying what it
  // owed. CAF 0.17 would drop the promise and leave the caller to its timeout.
  for (std::string name : {"gateway", "database", "circuit_breaker", "connection_pool"}) {
    INFO(name);
    node n{true, [](engine_config& cfg) {
             with_demo(cfg);
             cfg.pool.max_connections = 1;
             cfg.gateway.shards = 1; // the one gateway holds the request
           }};
    if (name == "gateway")
      name = "gateway%2F0";
    auto pending = std::async(std::launch::async, [&] {
      return post(n, "/v1/query/spin", {}, {{"X-Request-Timeout-Ms", "4000"}});
    });
    n.wait_for("/v1/status", [](const json& j) { return j["pool"]["busy"] == 1; });
    auto crashed_at = std::chrono::steady_clock::now();
    REQUIRE(admin_post(n, std::string{"/admin/v1/crash/"} + name).status == 202);
    auto r = pending.get();
    CHECK(std::chrono::steady_clock::now() - crashed_at < 2s);
    CHECK(r.status == 503);
    CHECK(json::parse(r.body)["error"] == "unavailable");
    CHECK_FALSE(r.headers["retry-after"].empty());
    CHECK(metric(n, "bulwark_requests_total{outcome=\"rejected_unavailable\"}") == 1);
    // And the path serves again once the supervisor restarted it.
    n.wait_for("/readyz", [](const json& j) { return j["ready"] == true; });
    int status = 0;
    for (int i = 0; i < 200 && status != 200; ++i) {
      status = post(n, "/v1/query/item", R"({"params": [1]})").status;
      if (status != 200)
        std::this_thread::sleep_for(10ms);
    }
    CHECK(status == 200);
  }
}

TEST_CASE("a query the handler timeout answers counts once, as the 503 the client got",
          "[http_api][query][integration]") {
  // The bridge holds the gateway's answer until the client has its 503 handler_timeout.
  auto client_answered = std::make_shared<std::promise<void>>();
  auto released = client_answered->get_future().share();
  node n{true,
         [](engine_config& cfg) {
           with_demo(cfg);
           cfg.http.request_timeout = 300ms;
         },
         [released](const std::string& path) {
           if (path.rfind("/v1/query/", 0) == 0)
             released.wait();
         }};
  auto r = post(n, "/v1/query/item", R"({"params": [1]})");
  CHECK(r.status == 503);
  CHECK(json::parse(r.body)["error"] == "handler_timeout");
  client_answered->set_value();
  // The late answer (served) is handled by the bridge before a job posted after it.
  std::promise<void> bridge_passed;
  n.eng->post([&](caf::event_based_actor*) { bridge_passed.set_value(); });
  REQUIRE(bridge_passed.get_future().wait_for(10s) == std::future_status::ready);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"rejected_unavailable\"}") == 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served\"}") == 0);
  CHECK(metric(n, "bulwark_http_responses_total{code=\"503\"}") == 1);
}

TEST_CASE("a huge X-Request-Timeout-Ms keeps the default deadline instead of overflowing",
          "[http_api][query][integration]") {
  node n{true, with_demo};
  // 9.3e12 ms is past what a nanosecond count holds; 18446744073710 ms is 2^64 ns + 0.45 ms,
  // which an overflowing conversion wraps to a deadline of 0.45 ms (504); the last is past int64.
  for (const char* ms :
       {"9300000000000", "18446744073710", "9223372036854775807", "99999999999999999999999"}) {
    INFO(ms);
    auto r = post(n, "/v1/query/item", R"({"params": [1]})", {{"X-Request-Timeout-Ms", ms}});
    CHECK(r.status == 200);
  }
  CHECK(post(n, "/v1/query/item", R"({"params": [1]})", {{"X-Request-Timeout-Ms", "-1"}}).status ==
        400);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served\"}") == 4);
}

TEST_CASE("readyz fails while any part of the request path cannot answer, and recovers with it",
          "[http_api][integration][readiness]") {
  // The scenario needs a crash to stay visible for a moment: restarts wait 300 ms
  // (supervisor.backoff_initial_ms); everything else is the default.
  node n{true, [](engine_config& c) {
           with_demo(c);
           c.supervisor.backoff_initial = 300ms;
         }};
  auto ready = [&] { return json::parse(n.get("/readyz").body); };
  REQUIRE(ready()["ready"] == true);
  for (std::string part : {"gateway%2F1", "database", "circuit_breaker", "connection_pool",
                           "rate_limiter%2F1", "cache%2F0"}) {
    auto name = part;
    if (auto slash = name.find("%2F"); slash != std::string::npos)
      name.replace(slash, 3, "/");
    INFO(name);
    CHECK(admin_post(n, "/admin/v1/crash/" + part).status == 202);
    // Down: not ready, and the reason names the part.
    n.wait_for("/readyz", [&](const json& j) {
      if (j["ready"] != false)
        return false;
      for (auto& r : j["reasons"])
        if (r.get<std::string>().rfind(name + " ", 0) == 0)
          return true;
      return false;
    });
    CHECK(n.get("/readyz").status == 503);
    // Restarted: ready again, and a query goes all the way through.
    n.wait_for("/readyz", [](const json& j) { return j["ready"] == true; });
    CHECK(post(n, "/v1/query/item", R"({"params": [42]})").status == 200);
  }
  // The memory budget at critical: only high-priority work is admitted, so not ready.
  *n.ratio = 0.99;
  auto critical = n.wait_for("/readyz", [](const json& j) { return j["ready"] == false; });
  CHECK_THAT(critical["reasons"][0].get<std::string>(), Catch::Contains("critical"));
  *n.ratio = 0.2;
  n.wait_for("/readyz", [](const json& j) { return j["ready"] == true; });
}

TEST_CASE("poison rows, poison URLs and exceptions under concurrent load: each answered once, in "
          "time, counted, and the rest of the traffic is untouched",
          "[http_api][query][integration][poison]") {
  // Exceptions are injected into the bridge for one statement only, so the drill can tell the
  // poisoned requests from everyone else's.
  node n{true,
         [](engine_config& cfg) {
           with_demo(cfg);
           behind_loopback_proxy(cfg);
           cfg.database.statements["bad_text"] = {"SELECT CAST(X'C328FF' AS TEXT) AS t", {}, true};
           cfg.database.statements["boom"] = {"SELECT 1 AS one", {}, true};
         },
         [](const std::string& path) {
           if (path == "/v1/query/boom")
             throw std::runtime_error("injected fault");
         }};
  struct kind {
    std::string path, body;
    int expect;
  };
  const std::vector<kind> kinds = {
      {"/v1/query/item", R"({"params": [3]})", 200},   // the rest of the traffic
      {"/v1/query/bad%5Ftext", "", 200},               // a row that is not UTF-8
      {"/v1/query/%FF%C3", "", 400},                   // a name that is not UTF-8
      {"/v1/query/\xff", "", 400},                     // a raw byte in the target
      {"/v1/query/boom", "", 500},                     // an exception in the bridge
      {"/v1/query/item", R"({"params": ["x"]})", 400}, // the wrong type
  };
  std::mutex mtx;
  std::map<std::string, int> wrong; ///< "kind index: status" for any unexpected answer
  std::vector<int> answered(kinds.size(), 0);
  int invalid_json = 0;
  std::atomic<int> sent{0};
  test::thread_group clients;
  auto until = std::chrono::steady_clock::now() + 2s;
  for (int c = 0; c < 12; ++c)
    clients.spawn([&, c] {
      for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
        auto k = (c + i) % kinds.size();
        auto t0 = std::chrono::steady_clock::now();
        // Each client its own id: the limiter keeps out of the picture.
        auto r = post(n, kinds[k].path, kinds[k].body, {{"X-Client-Id", "c" + std::to_string(c)}});
        ++sent;
        auto took = std::chrono::steady_clock::now() - t0;
        std::lock_guard<std::mutex> g{mtx};
        ++answered[k];
        if (r.status != kinds[k].expect || took > 3s)
          ++wrong[std::to_string(k) + ": " + std::to_string(r.status)];
        if (!is_valid_utf8(r.body) || json::parse(r.body, nullptr, false).is_discarded())
          ++invalid_json;
      }
    });
  clients.join();
  for (auto& [k, v] : wrong)
    INFO(k << " x" << v);
  CHECK(wrong.empty());
  CHECK(invalid_json == 0);
  for (auto a : answered)
    CHECK(a > 10);
  // Every one counted once, as what its client got: a raw byte in the target is refused by the
  // server before routing (bulwark_http_bad_requests_total); every other one is a query.
  CHECK(metric(n, "bulwark_requests_received_total") == sent - answered[3]);
  CHECK(metric(n, "bulwark_requests_in_flight") == 0);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"internal_error\"}") == answered[4]);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served\"}") == answered[0] + answered[1]);
  CHECK(n.get("/readyz").status == 200);
}

TEST_CASE("POST /v1/transaction runs its steps all or none and names the step that failed",
          "[http_api][transaction][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.database.statements["rename"] = {
               "UPDATE items SET name = $2 WHERE id = $1", {"int", "text"}, false};
           cfg.database.statements["add"] = {
               "INSERT INTO items (id, name) VALUES ($1, $2)", {"int", "text"}, false};
         }};
  auto ok = post(n, "/v1/transaction", R"({"steps": [
      {"statement": "rename", "params": [1, "first"]},
      {"statement": "item", "params": [1]}]})");
  REQUIRE(ok.status == 200);
  auto j = json::parse(ok.body);
  CHECK(j["committed"] == true);
  CHECK(j["rows_affected"] == 1);
  REQUIRE(j["steps"].size() == 2);
  CHECK(j["steps"][0]["rows_affected"] == 1);
  CHECK(j["steps"][1]["columns"] == json{"id", "name"});
  CHECK(j["steps"][1]["rows"] == json{{1, "first"}});

  // Step 1 hits the primary key: step 0's rename is rolled back with it.
  auto dup = post(n, "/v1/transaction", R"({"steps": [
      {"statement": "rename", "params": [2, "second"]},
      {"statement": "add", "params": [3, "again"]}]})");
  CHECK(dup.status == 409);
  auto d = json::parse(dup.body);
  CHECK(d["error"] == "conflict");
  CHECK(d["failed_step"] == json{{"index", 1}, {"statement", "add"}});
  CHECK(d.contains("request_id"));
  CHECK(json::parse(post(n, "/v1/query/item", R"({"params": [2]})").body)["rows"] ==
        json{{2, "item 2"}});

  auto unknown = post(n, "/v1/transaction", R"({"steps": [{"statement": "nope"}]})");
  CHECK(unknown.status == 404);
  CHECK(json::parse(unknown.body)["failed_step"]["index"] == 0);
  auto bad_type = post(n, "/v1/transaction",
                       R"({"steps": [{"statement": "item", "params": [1]},
                                     {"statement": "item", "params": ["x"]}]})");
  CHECK(bad_type.status == 400);
  CHECK(json::parse(bad_type.body)["failed_step"]["index"] == 1);

  // Malformed bodies: what is wrong, by path.
  auto detail = [&](const std::string& body) {
    auto r = post(n, "/v1/transaction", body);
    CHECK(r.status == 400);
    return json::parse(r.body)["detail"].get<std::string>();
  };
  CHECK(detail("[") == "the body is not valid JSON");
  CHECK(detail(R"({"steps": []})") ==
        R"("steps" must be a non-empty array of {"statement": ..., "params": [...]})");
  CHECK(detail(R"({"steps": [{"statement": "item", "params": 1}]})") ==
        R"("steps[0].params" must be an array)");
  CHECK(detail(R"({"steps": [{"statement": 7}]})") ==
        "steps[0].statement must be a string naming a configured statement");
  CHECK(detail(R"({"steps": [{"statement": "item", "sql": "DROP TABLE items"}]})") ==
        R"(steps[0]: unknown key "sql" (expected "statement" and "params"))");
  CHECK(
      detail(R"({"steps": [{"statement": "item", "params": [1]}], "isolation": "snapshot"})") ==
      R"("isolation" must be "repeatable_read" or "serializable" (or left out for the backend's default))");

  // More steps than database.max_transaction_steps (32 by default): 413, nothing runs.
  json many = {{"steps", json::array()}};
  for (int i = 0; i < 33; ++i)
    many["steps"].push_back({{"statement", "item"}, {"params", {1}}});
  auto big = post(n, "/v1/transaction", many.dump());
  CHECK(big.status == 413);
  CHECK(json::parse(big.body)["error"] == "too_many_steps");

  CHECK(test::http_call(n.http->port(), "GET", "/v1/transaction").status == 405);
  CHECK(test::http_call(n.admin->port(), "POST", "/v1/transaction", R"({"steps": []})").status ==
        404);
  // Every transaction request is one accounted outcome, as a query is.
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served\"}") == 2); // + the read-back query
  CHECK(metric(n, "bulwark_requests_total{outcome=\"conflict\"}") == 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"unknown_statement\"}") == 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"bad_request\"}") == 8);
  CHECK(metric(n, "bulwark_database_transactions_total{name=\"\"}") == 2);
}

TEST_CASE("POST /v1/transaction/{name} runs a transaction declared in the config",
          "[http_api][transaction][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.database.statements["rename"] = {
               "UPDATE items SET name = $2 WHERE id = $1", {"int", "text"}, false};
           cfg.database.transactions["rename_and_read"] = {{"rename", "item"}, ""};
         }};
  auto ok = post(n, "/v1/transaction/rename_and_read", R"({"params": [[5, "five"], [5]]})");
  REQUIRE(ok.status == 200);
  auto j = json::parse(ok.body);
  CHECK(j["steps"][0]["rows_affected"] == 1);
  CHECK(j["steps"][1]["rows"] == json{{5, "five"}});
  auto count = post(n, "/v1/transaction/rename_and_read", R"({"params": [[5, "five"]]})");
  CHECK(count.status == 400);
  CHECK(json::parse(count.body)["detail"] ==
        R"("params" must be an array of 2 arrays, one per step of rename_and_read)");
  auto type = post(n, "/v1/transaction/rename_and_read", R"({"params": [[5, "five"], ["x"]]})");
  CHECK(type.status == 400);
  CHECK(json::parse(type.body)["failed_step"] == json{{"index", 1}, {"statement", "item"}});
  CHECK(post(n, "/v1/transaction/nope", "{}").status == 404);
  CHECK(metric(n, "bulwark_database_transactions_total{name=\"rename_and_read\"}") == 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"bad_request\"}") == 2);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"unknown_statement\"}") == 1);
}

TEST_CASE("a transaction's rows are charged to the memory budget: a step with no room is cut",
          "[http_api][transaction][memory][integration]") {
  node n{true, [](engine_config& cfg) {
           // ~20 MB of rows: 10 000 rows of 2 048 hex characters; at medium pressure its limits
           // (3 500 rows, 5.9 MB) are still about three times the room below.
           cfg.database.statements["big"] = {
               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) "
               "SELECT i, hex(randomblob(1024)) AS payload FROM n",
               {},
               true};
         }};
  // Used: 0.848 of the 1 GiB budget; normal work may fill it to 0.85: about 2 MB of room. The
  // rows a query reserves count as used, as they would in a real node's samples.
  n.reserved->attach(n.eng->memory_account_ptr());
  n.ratio->store(0.848);
  n.wait_for("/v1/status",
             [](const json& j) { return j["pressure"].value("level", "") == "medium"; });
  auto r = post(n, "/v1/transaction", R"({"steps": [{"statement": "big"}]})");
  REQUIRE(r.status == 200);
  auto j = json::parse(r.body);
  auto& step = j["steps"][0];
  CHECK(step["truncated"] == true);
  CHECK(step["limit"]["truncated_by"] == "memory");
  CHECK(step["rows"].size() > 0);
  CHECK(step["rows"].size() < step["limit"]["max_rows"].get<size_t>()); // before the row limit
  CHECK(j["truncated"] == true);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served_truncated\"}") == 1);
  // With room again, the same transaction is cut only by its own limits.
  n.ratio->store(0.2);
  n.wait_for("/v1/status", [](const json& s) { return s["pressure"].value("level", "") == "low"; });
  auto whole = json::parse(post(n, "/v1/transaction", R"({"steps": [{"statement": "big"}]})").body);
  auto& again = whole["steps"][0];
  CHECK(again["limit"]["truncated_by"] != "memory");
  CHECK(again["rows"].size() > 3 * step["rows"].size());
}

TEST_CASE("POST /v1/batch/{statement} runs a statement per parameter list, fail fast or collect",
          "[http_api][batch][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           cfg.database.statements["add"] = {
               "INSERT INTO items (id, name) VALUES ($1, $2)", {"int", "text"}, false};
         }};
  auto ok = post(n, "/v1/batch/add", R"({"params": [[1001, "a"], [1002, "b"]]})");
  REQUIRE(ok.status == 200);
  auto j = json::parse(ok.body);
  REQUIRE(j["items"].size() == 2);
  CHECK(j["items"][0]["ok"] == true);
  CHECK(j["items"][0]["rows_affected"] == 1);
  CHECK(j["succeeded"] == 2);
  CHECK(j["failed"] == 0);
  CHECK(j["rows_affected"] == 2);
  auto reads = json::parse(post(n, "/v1/batch/item", R"({"params": [[1001], [2]]})").body);
  CHECK(reads["items"][0]["rows"] == json{{1001, "a"}});
  CHECK(reads["items"][1]["columns"] == json{"id", "name"});
  CHECK(reads["items"][1]["rows"] == json{{2, "item 2"}});

  // Fail fast (the default): item 1 hits the primary key; item 0 ran and is listed.
  auto dup = post(n, "/v1/batch/add", R"({"params": [[1003, "c"], [1, "again"]]})");
  CHECK(dup.status == 409);
  auto d = json::parse(dup.body);
  CHECK(d["error"] == "conflict");
  CHECK(d["failed_item"] == json{{"index", 1}, {"statement", "add"}});
  CHECK(d["succeeded"] == json{0});
  CHECK(d.contains("request_id"));
  // Collect: each item answers for itself.
  auto both =
      post(n, "/v1/batch/add", R"({"params": [[1004, "d"], [2, "again"]], "mode": "collect"})");
  REQUIRE(both.status == 200);
  auto c = json::parse(both.body);
  CHECK(c["items"][0]["ok"] == true);
  CHECK(c["items"][1]["ok"] == false);
  CHECK(c["items"][1]["status"] == 409);
  CHECK(c["items"][1]["error"] == "conflict");
  CHECK(c["succeeded"] == 1);
  CHECK(c["failed"] == 1);
  auto stored = json::parse(post(n, "/v1/batch/item", R"({"params": [[1003], [1004]]})").body);
  CHECK(stored["items"][0]["rows"] == json{{1003, "c"}});
  CHECK(stored["items"][1]["rows"] == json{{1004, "d"}});

  // Checked before anything runs: the item is named.
  auto bad_type = post(n, "/v1/batch/add", R"({"params": [[1005, "e"], ["x", "f"]]})");
  CHECK(bad_type.status == 400);
  CHECK(json::parse(bad_type.body)["failed_item"]["index"] == 1);
  CHECK(json::parse(post(n, "/v1/batch/item", R"({"params": [[1005]]})").body)["items"][0]["rows"]
            .empty());
  CHECK(post(n, "/v1/batch/nope", R"({"params": [[1]]})").status == 404);
  auto detail = [&](const std::string& body) {
    auto r = post(n, "/v1/batch/add", body);
    CHECK(r.status == 400);
    return json::parse(r.body)["detail"].get<std::string>();
  };
  CHECK(detail("[") == "the body is not valid JSON");
  CHECK(detail("") == "the body is not valid JSON");
  CHECK(detail(R"({"params": []})") ==
        R"("params" must be a non-empty array of parameter arrays, one per item)");
  CHECK(detail(R"({"params": [1]})") == R"("params[0]" must be an array)");
  CHECK(detail(R"({"params": [[1, "a"]], "mode": "some"})") ==
        R"("mode" must be "fail_fast" (the default) or "collect")");
  CHECK(detail(R"({"params": [[1, "a"]], "sql": "DROP TABLE items"})") ==
        R"(unknown key "sql" (expected "params" and optionally "mode"))");
  // More items than database.max_batch_items (100 by default): 413, nothing runs.
  json many = {{"params", json::array()}};
  for (int i = 0; i < 101; ++i)
    many["params"].push_back({2000 + i, "x"});
  auto big = post(n, "/v1/batch/add", many.dump());
  CHECK(big.status == 413);
  CHECK(json::parse(big.body)["error"] == "too_many_items");
  CHECK(test::http_call(n.http->port(), "GET", "/v1/batch/add").status == 405);
  CHECK(test::http_call(n.admin->port(), "POST", "/v1/batch/add", R"({"params": [[1, "a"]]})")
            .status == 404);
  // Every batch is one accounted outcome.
  CHECK(metric(n, "bulwark_requests_total{outcome=\"served\"}") == 5);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"conflict\"}") == 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"unknown_statement\"}") == 1);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"bad_request\"}") == 8);
  CHECK(metric(n, "bulwark_database_batches_total{statement=\"add\"}") == 3);
  CHECK(metric(n, "bulwark_database_batch_items_total{result=\"failed\"}") == 2);
}

TEST_CASE("a batch costs its item count at the rate limiter, all or none",
          "[http_api][batch][rate_limiter][integration]") {
  node n{true, [](engine_config& cfg) {
           with_demo(cfg);
           // The scenario's change: a burst of 10 that does not refill within the test.
           cfg.rate_limiter.table.burst = 10;
           cfg.rate_limiter.table.rate_per_sec = 0.001;
         }};
  auto six = R"({"params": [[1], [2], [3], [4], [5], [6]]})";
  CHECK(post(n, "/v1/batch/item", six).status == 200); // 4 left
  auto limited = post(n, "/v1/batch/item", six);
  CHECK(limited.status == 429); // 6 > 4: refused whole, nothing taken
  CHECK(json::parse(limited.body)["error"] == "rate_limited");
  CHECK(post(n, "/v1/batch/item", R"({"params": [[1], [2], [3]]})").status == 200); // 1 left
  CHECK(post(n, "/v1/query/item", R"({"params": [1]})").status == 200);             // 0 left
  CHECK(post(n, "/v1/query/item", R"({"params": [1]})").status == 429);
  CHECK(metric(n, "bulwark_requests_total{outcome=\"rejected_rate_limited\"}") == 2);
}
