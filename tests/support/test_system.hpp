#pragma once
/// A deterministic actor system for tests: CAF's test coordinator runs every job on the test's
/// thread and its clock only moves when the test says so. Nothing sleeps.

#include "messages/fwd.hpp"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <memory>
#include <optional>
#include <vector>

namespace bulwark::test {

inline caf::actor_system_config& testing_config(caf::actor_system_config& cfg) {
  register_types(cfg);
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.console", caf::atom("none"));
  cfg.set("logger.file-verbosity", caf::atom("quiet"));
  return cfg;
}

struct test_system {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  /// Actors the test spawned; killed before the system goes (timer actors never end alone).
  std::vector<caf::actor> spawned;

  test_system()
      : sys(testing_config(cfg)),
        sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {}

  ~test_system() {
    for (auto& a : spawned)
      caf::anon_send_exit(a, caf::exit_reason::kill);
    run();
  }

  template <class Handle>
  Handle keep(Handle h) {
    spawned.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }

  /// Runs every job that is ready.
  size_t run() { return sched.run(); }

  /// Moves the clock forward in `steps` equal steps, running everything that became due after
  /// each, so a timer that re-arms inside the window fires as often as real time would make it.
  void advance(caf::timespan by, int steps = 1) {
    for (int i = 0; i < steps; ++i) {
      sched.advance_time(by / steps);
      run();
    }
  }

  caf::timespan now() { return sched.clock().now().time_since_epoch(); }

  /// Sends a request from a throwaway actor and runs the system until it is answered.
  template <class T, class Handle, class... Ts>
  caf::expected<T> ask(const Handle& dest, Ts... xs) {
    auto result = std::make_shared<std::optional<caf::expected<T>>>();
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, xs...)
          .then([=](T& x) { *result = std::move(x); },
                [=](caf::error& e) { *result = std::move(e); });
    });
    run();
    if (!*result)
      return caf::make_error(caf::sec::request_timeout);
    return std::move(**result);
  }
};

/// A pressure subscriber that records every event it receives.
struct recorded_events {
  std::vector<pressure_changed> events;
};

inline pressure_subscriber_actor spawn_recorder(caf::actor_system& sys,
                                                std::shared_ptr<recorded_events> out) {
  return sys.spawn([out]() -> pressure_subscriber_actor::behavior_type {
    return {[out](pressure_changed& ev) { out->events.push_back(ev); }};
  });
}

} // namespace bulwark::test
