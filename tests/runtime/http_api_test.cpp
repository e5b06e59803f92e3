#include "runtime/http_api.hpp"

#include "support/http_client.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

/// A real engine (real scheduler) and HTTP server on a free loopback port, fed by a memory
/// source the test sets.
struct node {
  std::shared_ptr<std::atomic<double>> ratio = std::make_shared<std::atomic<double>>(0.2);
  std::unique_ptr<engine> eng;
  std::unique_ptr<http_api_metrics> api_metrics;
  std::unique_ptr<http_server> http;

  explicit node(bool fault_injection = true) {
    engine_config cfg;
    cfg.http.listen = "127.0.0.1:0";
    cfg.admin.fault_injection = fault_injection;
    cfg.memory.sample_interval = 10ms;
    cfg.memory.min_dwell = 0ms;
    cfg.scheduler.threads = 2;
    engine_options opts;
    auto r = ratio;
    opts.memory_source = detail::memory_source{"scripted", [r] {
                                                 detail::memory_read out;
                                                 out.ok = true;
                                                 out.sample = detail::make_sample(
                                                     static_cast<uint64_t>(r->load() * 1000), 1000);
                                                 return out;
                                               }};
    eng = std::make_unique<engine>(cfg, opts);
    api_metrics = std::make_unique<http_api_metrics>(*eng->registry());
    http = std::make_unique<http_server>(cfg.http, make_http_api(*eng, *api_metrics));
    http->start();
  }

  ~node() {
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
  REQUIRE(s["components"].size() == 2);
  CHECK(s["components"][0]["name"] == "memory_pressure_monitor");
  CHECK(s["components"][1]["name"] == "cleanup_manager");
  CHECK(s["pressure"]["source"] == "scripted");
  CHECK(s["pressure"]["ratio"].get<double>() == Approx(0.2));
  REQUIRE(s["tasks"].size() == 1);
  CHECK(s["tasks"][0]["name"] == "memory_trim");
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
  auto r = test::http_call(n.http->port(), "POST", "/admin/v1/crash/cleanup_manager");
  CHECK(r.status == 202);
  n.wait_for("/v1/status", [](const json& j) {
    return j["ready"] == true && j["components"][1]["restarts"] == 1;
  });
  CHECK(n.eng->directory().lookup("cleanup_manager") != old);
  CHECK(n.get("/readyz").status == 200);
  CHECK_THAT(n.get("/metrics").body,
             Catch::Contains("bulwark_supervisor_restarts_total{child=\"cleanup_manager\"} 1"));
  // The restarted manager kept its task.
  auto s = n.get("/v1/status");
  CHECK(json::parse(s.body)["tasks"][0]["name"] == "memory_trim");
}

TEST_CASE("crashing an unknown component is 404", "[http_api][integration]") {
  node n;
  auto r = test::http_call(n.http->port(), "POST", "/admin/v1/crash/no_such_thing");
  CHECK(r.status == 404);
  CHECK(json::parse(r.body)["error"] == "unknown_component");
}

TEST_CASE("the crash endpoint does not exist without fault injection", "[http_api][integration]") {
  node n{false};
  auto r = test::http_call(n.http->port(), "POST", "/admin/v1/crash/cleanup_manager");
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
  CHECK(test::http_call(n.http->port(), "GET", "/admin/v1/crash/cleanup_manager").status == 405);
}
