#include "actors/memory_pressure_monitor.hpp"

#include "support/test_system.hpp"

#include <catch2/catch.hpp>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

/// A memory source the test sets by hand; `fail` makes reads fail.
struct scripted_memory {
  double ratio = 0.1;
  bool fail = false;
  detail::memory_source source() {
    return {"scripted", [this] {
              detail::memory_read r;
              if (fail) {
                r.error = "scripted failure";
                return r;
              }
              r.ok = true;
              r.sample = detail::make_sample(static_cast<uint64_t>(ratio * 1000), 1000);
              return r;
            }};
  }
};

struct fixture : test::test_system {
  prometheus::Registry registry;
  memory_pressure_monitor_metrics metrics{registry};
  scripted_memory mem;
  std::shared_ptr<memory_pressure_monitor_memory> kept =
      std::make_shared<memory_pressure_monitor_memory>();
  memory_pressure_monitor_config cfg;

  fixture() {
    cfg.sample_interval = 100ms;
    cfg.min_dwell = 500ms;
  }

  memory_pressure_monitor_actor start() {
    auto m = keep(spawn_memory_pressure_monitor(sys, cfg, mem.source(), &metrics, kept));
    run();
    return m;
  }

  std::shared_ptr<test::recorded_events> subscribe(const memory_pressure_monitor_actor& m) {
    auto rec = std::make_shared<test::recorded_events>();
    auto s = keep(test::spawn_recorder(sys, rec));
    caf::anon_send(m, caf::subscribe_atom::value, s);
    run();
    return rec;
  }

  pressure_status status(const memory_pressure_monitor_actor& m) {
    auto s = ask<pressure_status>(m, caf::get_atom::value);
    REQUIRE(s);
    return *s;
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "a new subscriber gets the current level at once", "[pressure]") {
  mem.ratio = 0.9;
  auto m = start();
  auto rec = subscribe(m);
  REQUIRE(rec->events.size() == 1);
  CHECK(rec->events[0].level == pressure_level::high);
  CHECK(rec->events[0].ratio == Approx(0.9));
  CHECK(rec->events[0].limit_bytes == 1000);
}

TEST_CASE_METHOD(fixture, "every level change reaches every subscriber exactly once",
                 "[pressure]") {
  auto m = start();
  std::vector<std::shared_ptr<test::recorded_events>> recs;
  for (int i = 0; i < 5; ++i)
    recs.push_back(subscribe(m));
  mem.ratio = 0.96;
  advance(1s, 10); // ten samples at critical: one change
  mem.ratio = 0.2;
  advance(1s, 10); // falls after the dwell: one change
  for (auto& r : recs) {
    REQUIRE(r->events.size() == 3); // current level on subscribe, then two changes
    CHECK(r->events[1].level == pressure_level::critical);
    CHECK(r->events[1].previous == pressure_level::low);
    CHECK(r->events[2].level == pressure_level::low);
    CHECK(r->events[2].previous == pressure_level::critical);
  }
  CHECK(metrics.changes[3]->Value() == 1);
  CHECK(metrics.changes[0]->Value() == 1);
  CHECK(metrics.level->Value() == 0);
}

TEST_CASE_METHOD(fixture, "samples follow the configured interval on the actor clock",
                 "[pressure]") {
  auto m = start();
  auto before = status(m).samples;
  advance(1s, 10);
  CHECK(status(m).samples == before + 10);
  mem.ratio = 0.75;
  advance(99ms);
  CHECK(status(m).level == pressure_level::low); // no sample yet
  advance(1ms);
  CHECK(status(m).level == pressure_level::medium);
}

TEST_CASE_METHOD(fixture, "a dead subscriber is dropped", "[pressure]") {
  auto m = start();
  auto rec = std::make_shared<test::recorded_events>();
  auto s = test::spawn_recorder(sys, rec);
  caf::anon_send(m, caf::subscribe_atom::value, s);
  run();
  CHECK(status(m).subscribers == 1);
  caf::anon_send_exit(s, caf::exit_reason::kill);
  run();
  CHECK(status(m).subscribers == 0);
}

TEST_CASE_METHOD(fixture, "heap is trimmed only when memory is short", "[pressure]") {
  mem.ratio = 0.2;
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, trim_atom::value));
  CHECK(metrics.trims->Value() == 0);
  CHECK(metrics.trims_skipped->Value() == 1);
  mem.ratio = 0.8; // medium
  advance(100ms);
  REQUIRE(status(m).level == pressure_level::medium);
  REQUIRE(ask<caf::ok_atom>(m, trim_atom::value));
  CHECK(metrics.trims->Value() == 1);
  CHECK(metrics.trims_skipped->Value() == 1);
}

TEST_CASE_METHOD(fixture, "a failing source is counted and leaves the level alone", "[pressure]") {
  mem.ratio = 0.9;
  auto m = start();
  mem.fail = true;
  advance(1s, 10);
  auto s = status(m);
  CHECK(s.level == pressure_level::high);
  CHECK(s.sample_errors == 10);
  CHECK(s.last_error == "scripted failure");
  CHECK(metrics.sample_errors->Value() == 10);
}

TEST_CASE_METHOD(fixture, "subscriber actions and level changes land in the bounded history",
                 "[pressure]") {
  cfg.history_size = 3;
  auto m = start();
  mem.ratio = 0.99;
  advance(100ms);
  caf::anon_send(m, pressure_action{"cache", pressure_level::critical, "shrank to 50 %"});
  caf::anon_send(m, pressure_action{"limiter", pressure_level::critical, "trimmed keys"});
  caf::anon_send(m, pressure_action{"pool", pressure_level::critical, "queue limit 8"});
  run();
  auto s = status(m);
  REQUIRE(s.history.size() == 3); // the oldest (the level change) was dropped
  CHECK(s.history[0].component == "cache");
  CHECK(s.history[2].what == "queue limit 8");
  CHECK(metrics.actions->Value() == 3);
}

TEST_CASE_METHOD(fixture, "a restarted monitor keeps its subscribers and its level", "[pressure]") {
  mem.ratio = 0.9;
  auto m = start();
  auto rec = subscribe(m);
  caf::anon_send_exit(m, caf::exit_reason::kill);
  run();
  auto m2 = start(); // same kept memory, as the supervisor's child spec does
  CHECK(status(m2).level == pressure_level::high);
  CHECK(rec->events.size() == 1); // no spurious change from the restart
  mem.ratio = 0.97;
  advance(100ms);
  REQUIRE(rec->events.size() == 2);
  CHECK(rec->events[1].level == pressure_level::critical);
}
