#include "actors/cleanup_manager.hpp"

#include "actors/cache.hpp"
#include "actors/memory_pressure_monitor.hpp"
#include "actors/rate_limiter.hpp"
#include "runtime/config.hpp"
#include "support/cleanup_service.hpp"
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

  /// Started as the node starts it: found in the directory, where components register.
  cleanup_manager_actor start_in_directory() {
    auto m = keep(spawn_cleanup_manager(sys, cfg, dir, &metrics, kept));
    dir->declare("cleanup_manager", "");
    dir->set_running("cleanup_manager", caf::actor_cast<caf::actor>(m));
    run();
    return m;
  }

  /// A component that registers its own task ("own", every 100 ms) when it starts and answers
  /// it; `runs` counts the runs it got.
  caf::actor spawn_owner(std::shared_ptr<int> runs) {
    auto d = dir;
    return keep(sys.spawn([d, runs](caf::event_based_actor* self) -> caf::behavior {
      register_cleanup_tasks(
          self, d,
          {periodic_task("own", "owner", 100ms, caf::make_message(caf::tick_atom::value))});
      return {[runs](caf::tick_atom) {
        ++*runs;
        return caf::ok_atom::value;
      }};
    }));
  }

  std::vector<cleanup_task_status> all(const cleanup_manager_actor& m) {
    auto s = ask<std::vector<cleanup_task_status>>(m, caf::get_atom::value);
    REQUIRE(s);
    return *s;
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
  cfg.task_max_restarts = 10;
  add_target(target_mode::park); // never answers
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 30ms)));
  advance(300ms, 6);
  auto s = status(m);
  CHECK(s.hung == 2); // at 130 and 260 ms; neither resets the staleness clock
  CHECK(s.stale == 0);
  advance(50ms, 1);
  s = status(m);
  CHECK(s.stale == 1);
  CHECK(s.restarts == 3);
  CHECK(metrics.stale->Add({{"task", "sweep"}}).Value() == 1);
}

TEST_CASE_METHOD(fixture, "a run in progress is not stale before it could be hung", "[cleanup]") {
  add_target(target_mode::park);
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 1s))); // a slow target: 1 s allowed per run
  advance(1050ms, 21);
  auto s = status(m);
  CHECK(s.stale == 0); // 3 intervals passed, but the run may take 1 s
  CHECK(s.hung == 0);
  caf::anon_send(target, caf::ok_atom::value);
  run();
  CHECK(status(m).runs == 1);
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
  // Hung at 130 and 260 ms (restarted each time); a hung run does not refresh the staleness
  // clock, so at 350 ms (no completed run for 3 intervals) it is stale too: the third restart
  // is past the budget.
  CHECK(s.hung == 2);
  CHECK(s.stale == 1);
  CHECK(s.next_run_in == caf::timespan{0});
  CHECK(metrics.given_up->Value() == 1);
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

TEST_CASE_METHOD(fixture, "status says when a task runs next", "[cleanup]") {
  add_target(target_mode::ok);
  auto m = start();
  REQUIRE(ask<caf::ok_atom>(m, task(100ms, 50ms)));
  CHECK(status(m).next_run_in == 100ms);
  advance(30ms);
  CHECK(status(m).next_run_in == 70ms);
  advance(70ms); // runs at 100 ms; next at 200 ms
  advance(30ms);
  CHECK(status(m).runs == 1);
  CHECK(status(m).next_run_in == 70ms);
}

TEST_CASE_METHOD(fixture, "a task goes with its owner and its next incarnation registers it once",
                 "[cleanup]") {
  auto m = start_in_directory();
  auto first = std::make_shared<int>(0);
  auto owner = spawn_owner(first);
  run();
  advance(300ms, 3);
  CHECK(*first == 3);
  REQUIRE(all(m).size() == 1);
  caf::anon_send_exit(owner, caf::exit_reason::kill);
  run();
  CHECK(all(m).empty());
  CHECK(metrics.tasks->Value() == 0);
  auto second = std::make_shared<int>(0);
  spawn_owner(second);
  run();
  advance(300ms, 3);
  auto ts = all(m);
  REQUIRE(ts.size() == 1);
  CHECK(ts[0].name == "own");
  CHECK(ts[0].runs == 3); // a fresh record: the task of the new incarnation
  CHECK(*first == 3);
  CHECK(*second == 3);
}

TEST_CASE_METHOD(fixture, "a task registered before the manager runs reaches it when it starts",
                 "[cleanup]") {
  auto runs = std::make_shared<int>(0);
  spawn_owner(runs); // the node starts the pressure monitor before the cleanup manager
  run();
  advance(1s, 10);
  CHECK(*runs == 0);
  auto m = start_in_directory();
  advance(200ms, 2);
  CHECK(*runs == 2);
  REQUIRE(all(m).size() == 1);
}

TEST_CASE_METHOD(fixture, "a registration the manager died before answering reaches the next one",
                 "[cleanup]") {
  auto m = start_in_directory();
  caf::anon_send_exit(m, caf::exit_reason::kill); // dies before it reads the registration
  auto runs = std::make_shared<int>(0);
  spawn_owner(runs);
  run();
  advance(100ms, 10); // the directory still names the dead manager: nothing to hand over to
  CHECK(*runs == 0);
  auto m2 = start_in_directory(); // as its supervisor would
  advance(20ms, 2);
  REQUIRE(all(m2).size() == 1);
  advance(200ms, 2);
  CHECK(*runs == 2);
}

TEST_CASE_METHOD(fixture, "a manager restarted after an owner went drops the owner's tasks",
                 "[cleanup]") {
  auto m = start_in_directory();
  auto runs = std::make_shared<int>(0);
  auto owner = spawn_owner(runs);
  run();
  caf::anon_send_exit(m, caf::exit_reason::kill);
  run();
  caf::anon_send_exit(owner, caf::exit_reason::kill);
  run();
  REQUIRE(kept->tasks.size() == 1); // the dead manager could not see the owner go
  auto m2 = start();
  CHECK(all(m2).empty());
  CHECK(kept->tasks.empty());
}

// Issue 13's drill, on the shipped config/default.json (nothing changed): the cleanup manager, a
// cache shard and the rate limiter with their own tasks, and one component the test makes stuck:
// it takes its task's message and never answers.
TEST_CASE("drill: a stuck component's task is hung, then stale, restarted within its budget and "
          "given up, while the other tasks keep their schedule",
          "[cleanup][drill]") {
  auto loaded = load_config_file(BULWARK_SOURCE_DIR "/config/default.json");
  INFO(format_errors(loaded.errors));
  REQUIRE(loaded.ok());
  auto& cfg = loaded.config;
  test::test_system t;
  auto dir = std::make_shared<component_directory>();
  test::cleanup_service cleanup{t, dir, cfg.cleanup};
  prometheus::Registry reg;
  cache_metrics cache_m{reg};
  rate_limiter_metrics limiter_m{reg};
  t.keep(spawn_cache_shard(t.sys, cfg.cache, 0, dir, &cache_m));
  t.keep(spawn_rate_limiter(t.sys, cfg.rate_limiter, 0, dir, &limiter_m));
  auto asked = std::make_shared<int>(0);
  t.keep(t.sys.spawn([dir, asked](caf::event_based_actor* self) -> caf::behavior {
    register_cleanup_tasks(
        self, dir,
        {periodic_task("stuck_sweep", "stuck", 1s, caf::make_message(caf::tick_atom::value))});
    return {[asked](caf::tick_atom) -> caf::result<caf::ok_atom> {
      ++*asked;
      return caf::delegated<caf::ok_atom>{}; // never answered
    }};
  }));
  t.run();
  auto by_name = [&] {
    std::map<std::string, cleanup_task_status> out;
    for (auto& s : cleanup.tasks(t))
      out[s.name] = s;
    return out;
  };
  REQUIRE(by_name().size() == 3);
  t.advance(30s, 300);
  auto ts = by_name();
  auto& stuck = ts.at("stuck_sweep");
  CHECK(stuck.hung >= 1);
  CHECK(stuck.stale >= 1);
  CHECK(stuck.restarts == cfg.cleanup.task_max_restarts);
  CHECK(stuck.state == "given_up");
  CHECK(stuck.runs == 0);
  CHECK(cleanup.metrics.given_up->Value() == 1);
  CHECK(cleanup.metrics.hung->Add({{"task", "stuck_sweep"}}).Value() == stuck.hung);
  CHECK(cleanup.metrics.stale->Add({{"task", "stuck_sweep"}}).Value() == stuck.stale);
  for (auto name : {"cache_sweep/0", "limiter_expiry/0"}) {
    INFO(name);
    auto& s = ts.at(name);
    CHECK(s.runs == 30); // once a second (cache.tick_ms, rate_limiter.expire_interval_ms)
    CHECK(s.failures == 0);
    CHECK(s.hung + s.stale + s.restarts == 0);
    CHECK(s.state == "running");
  }
  // Given up: nothing runs it any more; the others go on.
  auto asked_then = *asked;
  t.advance(10s, 100);
  CHECK(*asked == asked_then);
  ts = by_name();
  CHECK(ts.at("cache_sweep/0").runs == 40);
  CHECK(ts.at("limiter_expiry/0").runs == 40);
}
