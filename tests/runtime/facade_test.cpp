#include "runtime/facade.hpp"

#include "actors/pressure_subscription.hpp"

#include "support/memory_source.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <caf/actor_system_config.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

engine_config facade_config(const test::temp_dir& dir) {
  engine_config cfg;
  cfg.node.data_dir = dir.path.string();
  cfg.scheduler.threads = 2;
  // The test runner's own RSS (large under ASan, after every test before this one) is no node's:
  // a budget it cannot reach keeps the memory account out of these tests.
  cfg.memory.source = "process";
  cfg.memory.budget_bytes = 64ull << 30;
  cfg.backend.init_sql = {"CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v TEXT)",
                          "INSERT INTO kv VALUES (42, 'answer') ON CONFLICT (k) DO NOTHING"};
  cfg.database.statements["get"] = {"SELECT v FROM kv WHERE k = $1", {"int"}, true};
  cfg.database.statements["put"] = {"INSERT INTO kv VALUES ($1, $2)", {"int", "text"}, false};
  return cfg;
}

} // namespace

TEST_CASE("an embedded engine serves a named query through the facade", "[facade][integration]") {
  test::temp_dir dir;
  embedded node{facade_config(dir)};
  auto r = node.query("get", {42}).get();
  REQUIRE(r.ok());
  CHECK(r.info.outcome == query_outcome::served);
  REQUIRE(r.result.rows.size() == 1);
  CHECK(r.result.rows[0][0] == db_value::of(std::string{"answer"}));
  auto w = node.query("put", {7, "seven"}).get();
  REQUIRE(w.ok());
  CHECK(w.result.rows_affected == 1);
  CHECK(node.query("get", {7}).get().result.rows[0][0] == db_value::of(std::string{"seven"}));
}

TEST_CASE("call() waits on the calling thread and answers as the future does",
          "[facade][integration]") {
  test::temp_dir dir;
  embedded node{facade_config(dir)};
  auto r = node.call("get", {42});
  REQUIRE(r.ok());
  REQUIRE(r.result.rows.size() == 1);
  CHECK(r.result.rows[0][0] == db_value::of(std::string{"answer"}));
  CHECK(node.call("nope").info.outcome == query_outcome::unknown_statement);
  // No spin at all: the thread sleeps until the answer wakes it.
  call_options asleep;
  asleep.spin = 0us;
  CHECK(node.call("get", {42}, asleep).ok());
  call_options user;
  user.client = "user-17";
  auto counted = [&](const char* outcome) {
    return node.engine().metrics().requests->Add({{"outcome", outcome}}).Value();
  };
  auto served = counted("served");
  CHECK(node.call("put", {8, "eight"}, user).result.rows_affected == 1);
  CHECK(counted("served") == served + 1); // counted once, like any other call
  node.engine().stop();
  auto stopped = node.call("get", {42});
  CHECK(stopped.info.outcome == query_outcome::rejected_unavailable);
  CHECK(stopped.info.http_status == 503);
}

TEST_CASE("the facade reports the HTTP API's outcomes", "[facade][integration]") {
  test::temp_dir dir;
  embedded node{facade_config(dir)};
  auto unknown = node.query("nope").get();
  CHECK(unknown.info.outcome == query_outcome::unknown_statement);
  CHECK(unknown.info.http_status == 404);
  auto bad = node.query("get", {"forty-two"}).get();
  CHECK(bad.info.outcome == query_outcome::bad_request);
  CHECK(bad.info.detail == "parameter 1 (int): expected an integer, got a string");
  auto dup = node.query("put", {42, "again"}).get();  // primary key taken
  CHECK(dup.info.outcome == query_outcome::conflict); // the caller's fault, not the backend's
  CHECK(dup.info.http_status == 409);
  CHECK(dup.info.constraint == "kv.k");
  bool called = false;
  std::promise<void> done;
  node.query("get", {42}, [&](query_result r) {
    called = r.ok();
    done.set_value();
  });
  done.get_future().wait();
  CHECK(called);
}

TEST_CASE("the facade rate-limits a named client and serves the application itself",
          "[facade][pipeline][integration]") {
  test::temp_dir dir;
  auto cfg = facade_config(dir);
  cfg.rate_limiter.table.rate_per_sec = 0.01;
  cfg.rate_limiter.table.burst = 1;
  embedded node{cfg};
  call_options user;
  user.client = "user-17";
  CHECK(node.query("get", {42}, user).get().ok());
  auto limited = node.query("get", {42}, user).get();
  CHECK(limited.info.outcome == query_outcome::rejected_rate_limited);
  CHECK(limited.info.http_status == 429);
  CHECK(limited.info.retry_after_ms > 99'000); // 100 s minus the time between the two calls
  CHECK(limited.info.retry_after_ms <= 100'000);
  // The application itself (no client) is never limited.
  for (int i = 0; i < 5; ++i)
    CHECK(node.query("get", {42}).get().ok());
}

TEST_CASE("the example application queries the shipped default config", "[facade][integration]") {
  test::temp_dir dir;
  auto [rc, out] =
      test::run_command("cd " + dir.path.string() + " && " + BULWARK_EXAMPLE_PATH + " " +
                        BULWARK_SOURCE_DIR + "/config/default.json" + " user_by_id 3");
  INFO(out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("Grace Hopper"));
}

TEST_CASE("a facade callback that throws does not take the bridge down", "[facade][integration]") {
  test::temp_dir dir;
  embedded node{facade_config(dir)};
  std::promise<void> called;
  node.query("get", {42}, [&](query_result) {
    called.set_value();
    throw std::runtime_error("the application's bug");
  });
  called.get_future().wait();
  // Served after the throw: the bridge actor that runs every callback is still there.
  auto next = node.query("get", {42});
  REQUIRE(next.wait_for(10s) == std::future_status::ready); // a dead bridge never answers
  CHECK(next.get().ok());
}

TEST_CASE("a facade call after the engine stopped answers 503 shutting_down and counts",
          "[facade][integration]") {
  test::temp_dir dir;
  embedded node{facade_config(dir)};
  auto counted = [&] {
    return node.engine().metrics().requests->Add({{"outcome", "rejected_unavailable"}}).Value();
  };
  node.engine().stop();
  auto fut = node.query("get", {42});
  REQUIRE(fut.wait_for(10s) == std::future_status::ready);
  auto r = fut.get();
  CHECK(r.info.outcome == query_outcome::rejected_unavailable);
  CHECK(r.info.http_status == 503);
  CHECK_THAT(r.info.detail, Catch::Contains("shutting_down"));
  std::promise<query_result> called;
  node.query("get", {42}, [&](query_result x) { called.set_value(std::move(x)); });
  auto cb = called.get_future();
  REQUIRE(cb.wait_for(10s) == std::future_status::ready);
  CHECK(cb.get().info.http_status == 503);
  CHECK(counted() == 2);
}

TEST_CASE("the scheduler's stealing settings reach CAF", "[facade][config][integration]") {
  test::temp_dir dir;
  auto cfg = facade_config(dir);
  cfg.scheduler.stealing.aggressive_poll_attempts = 7;
  cfg.scheduler.stealing.moderate_poll_attempts = 0;
  cfg.scheduler.stealing.moderate_sleep_us = 20;
  cfg.scheduler.stealing.relaxed_sleep_ms = 3;
  embedded node{cfg};
  auto& sys = node.engine().system().config();
  CHECK(caf::get_or(sys, "work-stealing.aggressive-poll-attempts", size_t{0}) == 7);
  CHECK(caf::get_or(sys, "work-stealing.moderate-poll-attempts", size_t{1}) == 0);
  CHECK(caf::get_or(sys, "work-stealing.moderate-sleep-duration", caf::timespan{0}) ==
        caf::timespan{20us});
  CHECK(caf::get_or(sys, "work-stealing.relaxed-sleep-duration", caf::timespan{0}) ==
        caf::timespan{3ms});
  CHECK(node.query("get", {42}).get().ok()); // and the node works with them
}

namespace {

/// What an application's actor heard, shared with the test thread.
struct heard {
  std::mutex mtx;
  std::vector<pressure_level> levels;
  int incarnations = 0;

  size_t count() {
    std::lock_guard<std::mutex> guard{mtx};
    return levels.size();
  }
  pressure_level last() {
    std::lock_guard<std::mutex> guard{mtx};
    return levels.back();
  }
};

/// An application actor written as the built-in components are: it subscribes to the pressure
/// signal when it starts (each incarnation anew) and acts on every change.
caf::behavior app_worker(caf::event_based_actor* self, std::shared_ptr<component_directory> dir,
                         std::shared_ptr<heard> log) {
  {
    std::lock_guard<std::mutex> guard{log->mtx};
    ++log->incarnations;
  }
  pressure_subscription::subscribe(self, *dir);
  return {
      [=](const pressure_changed& p) {
        std::lock_guard<std::mutex> guard{log->mtx};
        log->levels.push_back(p.level);
      },
  };
}

/// Polls `pred` (the engine runs on real threads) for up to 5 s.
template <class Pred>
bool eventually(Pred pred) {
  auto until = std::chrono::steady_clock::now() + 5s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

} // namespace

TEST_CASE("an application's own actor is supervised with the engine's and hears the pressure "
          "signal",
          "[facade][integration]") {
  test::temp_dir dir;
  auto cfg = facade_config(dir);
  cfg.memory.sample_interval = 10ms;
  cfg.memory.min_dwell = 0ms;
  auto ratio = std::make_shared<std::atomic<double>>(0.2);
  engine_options opts;
  opts.memory_source = test::scripted_memory(ratio, 64ull << 30);
  auto log = std::make_shared<heard>();
  opts.application = [log](std::shared_ptr<component_directory> d) {
    return std::vector<child_spec>{
        {"app_worker", [d, log](caf::actor_system& sys) { return sys.spawn(app_worker, d, log); }}};
  };
  embedded node{cfg, opts};
  auto& eng = node.engine();

  // A new subscriber hears the current level at once; a rise reaches it like any component.
  REQUIRE(eventually([&] { return log->count() >= 1; }));
  CHECK(log->last() == pressure_level::low);
  ratio->store(0.9);
  REQUIRE(eventually([&] { return log->last() == pressure_level::high; }));

  // It crashes: its supervisor (`application`, under the root) restarts it, the restart is
  // counted under its name, and the new incarnation subscribes again and hears the level.
  auto first = eng.directory().get<caf::actor>("app_worker");
  REQUIRE(first);
  auto heard_before = log->count();
  // (An error exit, as a crash is; CAF's exit_reason::kill cannot be trapped and would cross the
  // links to the supervisors.)
  first->enqueue(
      nullptr, caf::make_message_id(),
      caf::make_message(caf::exit_msg{first.address(), make_error(errc::fault_injected)}), nullptr);
  REQUIRE(eventually([&] {
    auto now = eng.directory().get<caf::actor>("app_worker");
    return now && now != first && log->count() > heard_before;
  }));
  CHECK(log->incarnations == 2);
  CHECK(log->last() == pressure_level::high);
  auto restarts = eng.metrics().supervisor.restarts->Add({{"child", "app_worker"}}).Value();
  CHECK(restarts == 1);
  REQUIRE(eventually([&] { return eng.not_ready_reasons().empty(); }));

  // The pressure falls, it hears that too, and the node serves as before.
  ratio->store(0.2);
  REQUIRE(eventually([&] { return log->last() == pressure_level::low; }));
  CHECK(node.query("get", {int64_t{42}}).get().ok());
}
