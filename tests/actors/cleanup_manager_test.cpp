#include "actors/cleanup_manager.hpp"

#include "actors/memory_pressure_monitor.hpp"
#include "support/test_system.hpp"

#include <catch2/catch.hpp>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

/// A task target: answers ok, fails, or parks every request until released.
struct target_log {
  int requests = 0;
  std::vector<caf::response_promise> parked;
};

enum class target_mode { ok, fail, park };

caf::actor spawn_target(caf::actor_system& sys, std::shared_ptr<target_log> log, target_mode mode) {
  return sys.spawn([log, mode](caf::event_based_actor* self) -> caf::behavior {
    return {
        [=](trim_atom) -> caf::result<caf::ok_atom> {
          ++log->requests;
          if (mode == target_mode::fail)
            return caf::make_error(caf::sec::runtime_error, "cleanup failed");
          if (mode == target_mode::park) {
            log->parked.push_back(self->make_response_promise());
            return caf::delegated<caf::ok_atom>{};
          }
          return caf::ok_atom::value;
        },
        // Releases every parked request (promises are delivered from inside the actor).
        [=](caf::ok_atom) {
          for (auto& p : log->parked)
            p.deliver(caf::ok_atom::value);
          log->parked.clear();
        },
    };
  });
}

struct fixture : test::test_system {
  prometheus::Registry registry;
  cleanup_manager_metrics metrics{registry};
  std::shared_ptr<component_directory> dir = std::make_shared<component_directory>();
  std::shared_ptr<cleanup_manager_memory> kept = std::make_shared<cleanup_manager_memory>();
  cleanup_manager_config cfg;
  std::shared_ptr<target_log> log = std::make_shared<target_log>();

  fixture() {
    // Start far from the clock's epoch, so "last run at 0" would look ancient (the original's bug).
    sched.advance_time(std::chrono::hours(1));
    cfg.health_check_interval = 50ms;
    cfg.task_max_restarts = 2;
    cfg.task_restart_window = 10s;
  }

  caf::actor target;

  void add_target(target_mode mode) {
    auto t = target = keep(spawn_target(sys, log, mode));
    dir->declare("target", "");
    dir->set_running("target", t);
  }

  cleanup_manager_actor start() {
    auto m = keep(spawn_cleanup_manager(sys, cfg, dir, &metrics, kept));
    run();
    return m;
  }

  cleanup_task task(caf::timespan interval, caf::timespan timeout) {
    cleanup_task t;
    t.name = "sweep";
    t.interval = interval;
    t.timeout = timeout;
    t.target = "target";
    t.message = caf::make_message(trim_atom::value);
    return t;
  }

  cleanup_task_status status(const cleanup_manager_actor& m) {
    auto s = ask<std::vector<cleanup_task_status>>(m, caf::get_atom::value);
    REQUIRE(s);
    REQUIRE(s->size() == 1);
    return s->front();
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "a task runs once per interval", "[cleanup]") {
  add_target(target_mode::ok);
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 50ms)));
  advance(1s, 20);
  CHECK(log->requests == 10);
  auto s = status(m);
  CHECK(s.runs == 10);
  CHECK(s.failures == 0);
  CHECK(s.stale == 0);
  CHECK(s.state == "running");
  CHECK(metrics.runs->Add({{"task", "sweep"}}).Value() == 10);
}

TEST_CASE_METHOD(fixture, "a newly registered task is not stale before its first run",
                 "[cleanup]") {
  add_target(target_mode::ok);
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(10s, 1s)));
  advance(9s, 90); // many health checks, no run yet
  auto s = status(m);
  CHECK(s.runs == 0);
  CHECK(s.stale == 0);
  CHECK(s.restarts == 0);
}

TEST_CASE_METHOD(fixture, "runs never overlap", "[cleanup]") {
  add_target(target_mode::park);
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 10s)));
  advance(250ms, 5); // ticks at 100 and 200 ms; the second finds the first still running
  CHECK(log->requests == 1);
  caf::anon_send(target, caf::ok_atom::value);
  run();
  CHECK(status(m).runs == 1);
  advance(100ms, 2);
  CHECK(log->requests == 2);
}

TEST_CASE_METHOD(fixture, "a failing run is counted without restarting the timer", "[cleanup]") {
  add_target(target_mode::fail);
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 50ms)));
  advance(500ms, 10);
  auto s = status(m);
  CHECK(s.failures == 5);
  CHECK(s.restarts == 0);
  CHECK_THAT(s.last_error, Catch::Contains("cleanup failed"));
}

TEST_CASE_METHOD(fixture, "a run past its timeout is hung and its timer is restarted",
                 "[cleanup]") {
  add_target(target_mode::park);
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 30ms)));
  advance(130ms, 13);
  auto s = status(m);
  CHECK(s.hung == 1);
  CHECK(s.restarts == 1);
  CHECK(s.state == "running");
  CHECK_THAT(s.last_error, Catch::Contains("task_hung"));
}

TEST_CASE_METHOD(fixture, "a task with no completed run for three intervals is stale and restarted",
                 "[cleanup]") {
  add_target(target_mode::park); // never answers; the timeout is too long to call it hung
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 1h)));
  advance(300ms, 6);
  CHECK(status(m).stale == 0);
  advance(50ms, 1);
  auto s = status(m);
  CHECK(s.stale == 1);
  CHECK(s.restarts == 1);
  CHECK(metrics.stale->Add({{"task", "sweep"}}).Value() == 1);
}

TEST_CASE_METHOD(fixture, "a task past its restart budget is given up and the manager lives on",
                 "[cleanup]") {
  add_target(target_mode::park);
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 30ms)));
  advance(1s, 100);
  auto s = status(m);
  CHECK(s.state == "given_up");
  CHECK(s.restarts == 2);
  CHECK(s.hung == 3);
  auto requests = log->requests;
  advance(1s, 10);
  CHECK(log->requests == requests); // no timer runs it any more
}

TEST_CASE_METHOD(fixture, "a task whose target is not running fails its runs", "[cleanup]") {
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 50ms)));
  advance(200ms, 4);
  auto s = status(m);
  CHECK(s.failures == 2);
  CHECK_THAT(s.last_error, Catch::Contains("task_target_missing"));
}

TEST_CASE_METHOD(fixture, "invalid tasks are refused", "[cleanup]") {
  auto m = start();
  auto t = task(0ms, 50ms);
  auto r = ask<caf::ok_atom>(m, t);
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), errc::invalid_task));
}

TEST_CASE_METHOD(fixture, "deferrable tasks stretch at high pressure and recover after",
                 "[cleanup]") {
  add_target(target_mode::ok);
  auto m = start();
  auto t = task(100ms, 50ms);
  t.deferrable = true;
  REQUIRE(ask<caf::ok_atom>(m, t));
  caf::anon_send(
      m, pressure_changed{pressure_level::high, pressure_level::low, 0.9, 900, 1000, now()});
  run();
  CHECK(status(m).effective_interval == 400ms);
  log->requests = 0;
  advance(800ms, 16);
  CHECK(log->requests == 2);
  CHECK(status(m).stale == 0); // staleness is judged against the stretched interval
  caf::anon_send(
      m, pressure_changed{pressure_level::low, pressure_level::high, 0.1, 100, 1000, now()});
  run();
  CHECK(status(m).effective_interval == 100ms);
}

TEST_CASE_METHOD(fixture, "urgent tasks run at once when pressure rises and the action is reported",
                 "[cleanup]") {
  add_target(target_mode::ok);
  prometheus::Registry reg2;
  memory_pressure_monitor_metrics mon_metrics{reg2};
  auto ratio = std::make_shared<double>(0.1);
  detail::memory_source src{"scripted", [ratio] {
                              detail::memory_read r;
                              r.ok = true;
                              r.sample =
                                  detail::make_sample(static_cast<uint64_t>(*ratio * 1000), 1000);
                              return r;
                            }};
  memory_pressure_monitor_config mcfg;
  mcfg.sample_interval = 10ms;
  auto mon = keep(spawn_memory_pressure_monitor(
      sys, mcfg, src, &mon_metrics, std::make_shared<memory_pressure_monitor_memory>()));
  dir->declare("memory_pressure_monitor", "");
  dir->set_running("memory_pressure_monitor", caf::actor_cast<caf::actor>(mon));
  run();
  auto m = start();
  auto t = task(1h, 1s);
  t.urgent = true;
  REQUIRE(ask<caf::ok_atom>(m, t));
  CHECK(log->requests == 0);
  *ratio = 0.9;
  advance(10ms);
  CHECK(log->requests == 1);
  auto ms = ask<pressure_status>(mon, caf::get_atom::value);
  REQUIRE(ms);
  CHECK(ms->subscribers == 1);
  REQUIRE_FALSE(ms->history.empty());
  CHECK(ms->history.back().component == "cleanup_manager");
  CHECK_THAT(ms->history.back().what, Catch::Contains("ran 1 urgent"));
}

TEST_CASE_METHOD(fixture, "a restarted manager keeps its tasks and runs them again", "[cleanup]") {
  add_target(target_mode::ok);
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 50ms)));
  advance(200ms, 4);
  caf::anon_send_exit(m, caf::exit_reason::kill);
  run();
  auto m2 = start();
  auto before = log->requests;
  advance(300ms, 6);
  CHECK(log->requests == before + 3);
  CHECK(status(m2).runs == 5);
}

TEST_CASE_METHOD(fixture, "unregistering a task stops its runs", "[cleanup]") {
  add_target(target_mode::ok);
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 50ms)));
  auto erased = ask<bool>(m, caf::delete_atom::value, std::string{"sweep"});
  REQUIRE(erased);
  CHECK(*erased);
  advance(500ms, 5);
  CHECK(log->requests == 0);
}
