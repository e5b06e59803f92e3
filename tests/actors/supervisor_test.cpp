#include "actors/supervisor.hpp"

#include "support/test_system.hpp"

#include <catch2/catch.hpp>
#include <prometheus/registry.h>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

/// A child that does nothing until told to fail; it counts its own starts.
caf::behavior idle_child(caf::event_based_actor*) {
  return {[](caf::ok_atom) {}};
}

struct fixture : test::test_system {
  prometheus::Registry registry;
  supervisor_metrics metrics{registry};
  std::shared_ptr<component_directory> dir = std::make_shared<component_directory>();
  std::map<std::string, int> starts;
  std::vector<std::string> start_order;

  child_spec child(const std::string& name, restart_policy p = restart_policy::permanent) {
    return child_spec{name,
                      [this, name](caf::actor_system& s) {
                        ++starts[name];
                        start_order.push_back(name);
                        return s.spawn(idle_child);
                      },
                      p};
  }

  caf::actor supervise(supervisor_config cfg, std::vector<child_spec> children) {
    auto sup = keep(spawn_supervisor(sys, "sup", cfg, std::move(children), dir, &metrics));
    run();
    return sup;
  }

  void crash(const std::string& name, caf::error reason = make_error(errc::fault_injected)) {
    auto h = dir->lookup(name);
    REQUIRE(h);
    h->enqueue(nullptr, caf::make_message_id(),
               caf::make_message(caf::exit_msg{h.address(), std::move(reason)}), nullptr);
    run();
  }

  double restarts_of(const std::string& name) {
    return metrics.restarts->Add({{"child", name}}).Value();
  }

  component_state state_of(const std::string& name) {
    for (auto& c : dir->snapshot())
      if (c.name == name)
        return c.state;
    FAIL("no component " << name);
    return component_state::failed;
  }
};

supervisor_config no_backoff(supervision_strategy s = supervision_strategy::one_for_one) {
  supervisor_config cfg;
  cfg.strategy = s;
  cfg.backoff_initial = 0ms;
  cfg.max_restarts = 3;
  cfg.window = 1000ms;
  return cfg;
}

} // namespace

TEST_CASE_METHOD(fixture, "one_for_one restarts only the child that crashed and republishes it",
                 "[supervisor]") {
  supervise(no_backoff(), {child("a"), child("b"), child("c")});
  auto old_b = dir->lookup("b");
  auto a = dir->lookup("a");
  crash("b");
  CHECK(starts["a"] == 1);
  CHECK(starts["b"] == 2);
  CHECK(starts["c"] == 1);
  auto new_b = dir->lookup("b");
  REQUIRE(new_b);
  CHECK(new_b != old_b);
  CHECK(dir->lookup("a") == a);
  CHECK(restarts_of("b") == 1);
  CHECK(restarts_of("a") == 0);
  CHECK(state_of("b") == component_state::running);
  CHECK(dir->not_ready_reasons().empty());
}

TEST_CASE_METHOD(fixture,
                 "rest_for_one restarts the crashed child and every younger sibling in order",
                 "[supervisor]") {
  supervise(no_backoff(supervision_strategy::rest_for_one),
            {child("pool"), child("breaker"), child("database")});
  start_order.clear();
  auto pool = dir->lookup("pool");
  crash("breaker");
  CHECK(start_order == std::vector<std::string>{"breaker", "database"});
  CHECK(dir->lookup("pool") == pool);
  CHECK(starts["database"] == 2);
  CHECK(restarts_of("breaker") == 1);
  CHECK(dir->not_ready_reasons().empty());
}

TEST_CASE_METHOD(fixture, "transient children restart after errors but not after a normal exit",
                 "[supervisor]") {
  supervise(no_backoff(), {child("t", restart_policy::transient)});
  crash("t");
  CHECK(starts["t"] == 2);
  crash("t", caf::exit_reason::user_shutdown);
  CHECK(starts["t"] == 2);
  CHECK(state_of("t") == component_state::stopped);
}

TEST_CASE_METHOD(fixture, "temporary children are never restarted and leave the directory",
                 "[supervisor]") {
  supervise(no_backoff(), {child("tmp", restart_policy::temporary), child("p")});
  crash("tmp");
  CHECK(starts["tmp"] == 1);
  CHECK(dir->snapshot().size() == 1);
  CHECK(dir->not_ready_reasons().empty());
}

TEST_CASE_METHOD(fixture,
                 "past its restart intensity a supervisor escalates and takes its children down",
                 "[supervisor]") {
  auto sup = supervise(no_backoff(), {child("a"), child("b")});
  auto reason = std::make_shared<caf::error>();
  sup->attach_functor([reason](const caf::error& e) { *reason = e; });
  auto b = dir->lookup("b");
  for (int i = 0; i < 3; ++i)
    crash("a");
  CHECK(starts["a"] == 4);
  REQUIRE_FALSE(*reason);
  crash("a"); // the fourth within the window: over max_restarts = 3
  CHECK(is(*reason, errc::restart_intensity_exceeded));
  CHECK(state_of("a") == component_state::failed);
  CHECK(state_of("b") == component_state::failed);
  CHECK_FALSE(dir->not_ready_reasons().empty());
}

TEST_CASE_METHOD(fixture, "restarts spread beyond the window do not escalate", "[supervisor]") {
  auto sup = supervise(no_backoff(), {child("a")});
  auto reason = std::make_shared<caf::error>();
  sup->attach_functor([reason](const caf::error& e) { *reason = e; });
  for (int i = 0; i < 10; ++i) {
    crash("a");
    advance(600ms); // at most two restarts inside any 1 s window
  }
  CHECK_FALSE(*reason);
  CHECK(starts["a"] == 11);
}

TEST_CASE_METHOD(fixture, "restart backoff grows exponentially and delays the restart",
                 "[supervisor]") {
  auto cfg = no_backoff();
  cfg.backoff_initial = 100ms;
  cfg.backoff_multiplier = 2;
  cfg.max_restarts = 10;
  cfg.window = 60s;
  supervise(cfg, {child("a")});
  crash("a");
  CHECK(state_of("a") == component_state::restarting);
  CHECK(dir->not_ready_reasons().size() == 1);
  advance(99ms);
  CHECK(starts["a"] == 1);
  advance(1ms);
  CHECK(starts["a"] == 2);
  crash("a"); // second restart in the window: 200 ms
  advance(199ms);
  CHECK(starts["a"] == 2);
  advance(1ms);
  CHECK(starts["a"] == 3);
}

TEST_CASE_METHOD(fixture, "a factory that throws counts as a crash", "[supervisor]") {
  int attempts = 0;
  child_spec flaky{"flaky",
                   [&](caf::actor_system& s) -> caf::actor {
                     if (++attempts < 3)
                       throw std::runtime_error("backend not ready");
                     return s.spawn(idle_child);
                   },
                   restart_policy::permanent};
  supervise(no_backoff(), {flaky});
  CHECK(attempts == 3);
  CHECK(state_of("flaky") == component_state::running);
  CHECK(restarts_of("flaky") == 2);
}

TEST_CASE_METHOD(fixture, "a nested supervisor that escalates is restarted by its parent",
                 "[supervisor]") {
  auto inner_cfg = no_backoff(supervision_strategy::rest_for_one);
  inner_cfg.max_restarts = 1;
  auto outer_cfg = no_backoff();
  supervise(outer_cfg,
            {child("monitor"),
             supervisor_child("backend", inner_cfg, {child("pool"), child("db")}, dir, &metrics)});
  crash("pool");
  CHECK(starts["pool"] == 2);
  crash("pool"); // over the inner budget: backend gives up, the outer restarts it
  CHECK(restarts_of("backend") == 1);
  CHECK(starts["pool"] == 3);
  CHECK(starts["db"] == 3);
  CHECK(state_of("backend") == component_state::running);
  CHECK(state_of("pool") == component_state::running);
  CHECK(starts["monitor"] == 1);
}

TEST_CASE_METHOD(fixture, "stopping a supervisor stops its children newest first", "[supervisor]") {
  auto sup = supervise(no_backoff(), {child("a"), child("b"), child("c")});
  std::vector<std::string> stopped;
  for (auto name : {"a", "b", "c"})
    dir->lookup(name)->attach_functor(
        [&stopped, n = std::string{name}](const caf::error&) { stopped.push_back(n); });
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  run();
  CHECK(stopped == std::vector<std::string>{"c", "b", "a"});
  CHECK(state_of("a") == component_state::stopped);
}
