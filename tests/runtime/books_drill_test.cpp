// The books under concurrency and faults (issue 11, item 3; issue 20, item 10): one node on the
// shipped defaults over a PostgreSQL of the test's own takes hundreds of requests in flight at
// once through all three doors (HTTP, the embedded facade, a remote CAF node), mixed with caller
// errors and poison URLs, while the backend hangs, comes back, is killed and restarted, and the
// gateway, breaker, database and pool are crashed through the admin route. Every request must get
// exactly one answer within its deadline plus a bound, and the books must balance at every
// scrape: received = sum of outcomes + in flight.
//
// Keys changed from config/default.json, all for the scenario: the backend (this PostgreSQL),
// listen addresses (free loopback ports), data_dir, admin.fault_injection, and cache_ttl_ms 0 on
// the statements (a cached answer would hide the faults); under a sanitizer also the memory
// source and budget (see below).

#include "runtime/facade.hpp"
#include "runtime/http_api.hpp"
#include "runtime/http_server.hpp"
#include "support/client_node.hpp"
#include "support/node_process.hpp"
#include "support/own_postgres.hpp"
#include "support/threads.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int scale = 2; // sanitizers run the node 5-15 times slower: fewer clients
#else
constexpr int scale = 1;
#endif

/// What each door saw: answers by kind, and how many got none (or more than one).
struct door {
  std::mutex mtx;
  std::map<std::string, int> answers;
  int issued = 0;
  int unanswered = 0;
  int late = 0; ///< answered past its deadline plus the bound
  std::vector<std::string> examples;

  void note(const std::string& kind, steady::duration took, steady::duration limit) {
    std::lock_guard<std::mutex> g{mtx};
    ++answers[kind];
    if (took > limit) {
      ++late;
      if (examples.size() < 5)
        examples.push_back(
            kind + " after " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()) +
            " ms");
    }
  }
  int answered() {
    int n = 0;
    for (auto& [k, v] : answers)
      n += v;
    return n;
  }
  std::string describe() {
    std::string s = std::to_string(issued) + " issued, " + std::to_string(unanswered) +
                    " unanswered, " + std::to_string(late) + " late;";
    for (auto& [k, v] : answers)
      s += " [" + k + "] x" + std::to_string(v);
    for (auto& e : examples)
      s += "; late: " + e;
    return s;
  }
};

} // namespace

TEST_CASE("hundreds of requests in flight through HTTP, facade and remote, through backend and "
          "component faults: one answer each, in time, and the books balance at every scrape",
          "[books][faults][postgres][integration]") {
  test::own_postgres pg;
  test::temp_dir tmp;
  auto cfg = test::shipped_demo(pg.conninfo);
  for (auto& st : cfg["statements"])
    st["cache_ttl_ms"] = 0;
  cfg["http"] = {{"listen", "127.0.0.1:0"}};
  cfg["remote"] = {{"listen", "127.0.0.1:0"}, {"plain", true}};
  cfg["node"] = {{"data_dir", (tmp.path / "data").string()}};
  cfg["admin"] = {{"fault_injection", true}};
  if (scale > 1) {
    // The node is embedded: its memory source measures this test process, which a sanitizer
    // inflates with shadow memory far past any machine-sized budget (every query was refused).
    cfg["memory"] = {{"source", "process"}, {"budget_bytes", 64ull << 30}};
  }
  auto node = embedded::from_file(tmp.put("node.json", cfg.dump()));
  auto& eng = node->engine();
  http_api_metrics api_metrics{*eng.registry()};
  auto http_cfg = eng.config().http;
  http_cfg.account = eng.memory_account_ptr();
  http_server* server = nullptr;
  http_server http{http_cfg, make_http_api(eng, api_metrics, [&server] {
                     return server ? server->stats() : http_server_stats{};
                   })};
  server = &http;
  http.start();
  auto port = http.port();
  auto admin_cfg = http_cfg;
  admin_cfg.listen = "127.0.0.1:0";
  http_server admin{admin_cfg, make_http_api(eng, api_metrics, {}, {}, {true, {}})};
  admin.start();

  std::atomic<bool> stop{false};
  constexpr auto deadline = 1000ms;        // what HTTP and facade callers ask for
  constexpr auto remote_deadline = 5000ms; // database.default_timeout_ms: remote deadlines are ours
  const auto bound = 2000ms * scale;       // an answer may come this much past its deadline

  // -- HTTP: blocking clients, each one request in flight; a few ask wrongly on purpose ----------
  door web;
  test::thread_group http_clients{[&] { stop = true; }};
  for (int c = 0; c < 24 / scale; ++c)
    http_clients.spawn([&, c] {
      for (int i = 0; !stop; ++i) {
        std::string target = "/v1/query/user_by_id";
        std::string body = R"({"params": [)" + std::to_string(1 + i % 3) + "]}";
        if (c == 0 && i % 4 == 1)
          target = "/v1/query/%FF%FE"; // not UTF-8: a 400, counted, nothing else disturbed
        else if (c == 0 && i % 4 == 2)
          body = R"({"params": ["one"]})"; // the wrong type: 400
        else if (c == 0 && i % 4 == 3)
          target = "/v1/query/no_such_statement";
        auto t0 = steady::now();
        auto r = test::http_call(port, "POST", target, body, 20s,
                                 {{"X-Request-Timeout-Ms", std::to_string(deadline.count())}});
        {
          std::lock_guard<std::mutex> g{web.mtx};
          ++web.issued;
          if (r.status == 0)
            ++web.unanswered;
        }
        if (r.status != 0) {
          auto error = json::parse(r.body, nullptr, false);
          auto kind =
              std::to_string(r.status) +
              (r.status == 200 || error.is_discarded() ? "" : " " + error.value("error", ""));
          web.note(kind, steady::now() - t0, deadline + bound);
        }
      }
    });

  // -- the facade: many calls in flight at once, each callback starts the next ------------------
  door app;
  std::atomic<int> app_in_flight{0};
  std::function<void(int)> app_call = [&](int i) {
    ++app_in_flight;
    {
      std::lock_guard<std::mutex> g{app.mtx};
      ++app.issued;
    }
    auto t0 = steady::now();
    auto calls = std::make_shared<std::atomic<int>>(0);
    node->query(
        "user_by_id", {1 + i % 3},
        [&, i, t0, calls](query_result r) {
          if (calls->fetch_add(1) != 0) { // a second callback: the same request answered twice
            std::lock_guard<std::mutex> g{app.mtx};
            ++app.answers["answered twice"];
            return;
          }
          app.note(std::to_string(r.info.http_status) +
                       (r.info.error.empty() ? "" : " " + r.info.error),
                   steady::now() - t0, deadline + bound);
          --app_in_flight;
          if (!stop)
            app_call(i + 1);
        },
        deadline);
  };
  for (int i = 0; i < 160 / scale; ++i)
    app_call(i);

  // -- a remote node: many requests in flight at once over BASP --------------------------------
  door far;
  // The driver's loop, owned here (a function that held itself would never be freed), and
  // declared before the client node, whose actors use it until the node is gone.
  std::function<void(int)> far_call;
  test::client_node client;
  auto gw =
      client.sys->middleman().remote_actor<remote_gateway_actor>("127.0.0.1", eng.remote_port());
  REQUIRE(gw);
  std::atomic<int> far_in_flight{0};
  auto* next = &far_call;
  auto far_driver = client.sys->spawn([&, next, gw = *gw](caf::event_based_actor* self) {
    *next = [&, self, gw, next](int i) {
      ++far_in_flight;
      {
        std::lock_guard<std::mutex> g{far.mtx};
        ++far.issued;
      }
      gateway_request req;
      req.query.statement = "user_by_id";
      req.query.params = {db_value::of(int64_t{1 + i % 3})};
      auto t0 = steady::now();
      // Far longer than any answer may take: a timeout here is an unanswered request.
      self->request(gw, std::chrono::seconds(30), std::move(req))
          .then(
              [&, t0, next, i](db_result&) {
                far.note("200", steady::now() - t0, remote_deadline + bound);
                --far_in_flight;
                if (!stop)
                  (*next)(i + 1);
              },
              [&, t0, next, i](caf::error& e) {
                if (e == caf::sec::request_timeout) {
                  std::lock_guard<std::mutex> g{far.mtx};
                  ++far.unanswered;
                } else {
                  far.note(classify(e).error, steady::now() - t0, remote_deadline + bound);
                }
                --far_in_flight;
                if (!stop)
                  (*next)(i + 1);
              });
    };
    for (int i = 0; i < 80 / scale; ++i)
      (*next)(i);
  });

  // -- the auditor: the books at every scrape --------------------------------------------------
  std::vector<std::string> broken;
  int scrapes = 0;
  double peak_in_flight = 0;
  test::thread_group auditor{[&] { stop = true; }};
  auditor.spawn([&] {
    while (!stop) {
      auto b = test::scrape_books(port);
      ++scrapes;
      peak_in_flight = std::max(peak_in_flight, b.in_flight);
      if (!b.balanced() && broken.size() < 10)
        broken.push_back(b.describe());
      std::this_thread::sleep_for(50ms);
    }
  });

  // -- the faults, one after another under the load --------------------------------------------
  auto crash = [&](const std::string& part) {
    CHECK(test::http_call(admin.port(), "POST", "/admin/v1/crash/" + part).status == 202);
    std::this_thread::sleep_for(300ms);
  };
  std::this_thread::sleep_for(1s); // steady
  pg.signal_all(SIGSTOP);          // hung
  std::this_thread::sleep_for(3s);
  pg.signal_all(SIGCONT);
  std::this_thread::sleep_for(1500ms);
  pg.script("kill"); // dead, then back
  std::this_thread::sleep_for(1500ms);
  pg.script("restart");
  std::this_thread::sleep_for(1500ms);
  for (auto part : {"gateway%2F0", "circuit_breaker", "database", "connection_pool"})
    crash(part);
  std::this_thread::sleep_for(1s);
  stop = true;
  http_clients.join();
  auditor.join();
  // Wait for the calls still in flight (each ends by its deadline plus the bound).
  auto until = steady::now() + remote_deadline + bound + 5s;
  while ((app_in_flight > 0 || far_in_flight > 0) && steady::now() < until)
    std::this_thread::sleep_for(10ms);
  caf::anon_send_exit(far_driver, caf::exit_reason::user_shutdown);

  INFO("HTTP: " << web.describe());
  INFO("facade: " << app.describe());
  INFO("remote: " << far.describe());
  INFO("peak in flight " << peak_in_flight << " over " << scrapes << " scrapes");
  CHECK(app_in_flight == 0);
  CHECK(far_in_flight == 0);
  for (door* d : {&web, &app, &far}) {
    CHECK(d->unanswered == 0);
    CHECK(d->late == 0);
    CHECK(d->answers.count("answered twice") == 0);
    CHECK(d->answered() == d->issued);
    CHECK(d->answers["200"] > 0); // each door was served before and after the faults
  }
  // The faults were real: each door saw the backend's failure answers.
  CHECK(app.answered() > app.answers["200"]);
  CHECK(peak_in_flight >= 100 / scale);
  CHECK(scrapes > 50);
  CHECK(broken.empty());
  for (auto& b : broken)
    INFO(b);
  auto final_books = test::scrape_books(port);
  CHECK(final_books.in_flight == 0);
  CHECK(final_books.received == final_books.answered);
  // The node's count is the clients' count: nothing counted twice, nothing missed.
  CHECK(final_books.received == web.issued + app.issued + far.issued);
  admin.stop();
  http.stop();
}
