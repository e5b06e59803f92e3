#pragma once
/// supervisor: restarts its children by policy, within a restart intensity, and escalates past it.
/// CAF has no supervisor in any version; this is Bulwark's (Erlang/OTP semantics).
///
/// | receives                  | replies | notes                                              |
/// |---------------------------|---------|----------------------------------------------------|
/// | down_msg from a child     | -       | children are linked and monitored                  |
/// | exit_msg                  | -       | traps exits; from its parent: stop, then quit      |
/// | (restart_atom, name, gen) | -       | its own backoff timer                              |
///
/// - Children start in order; each is declared in the component directory and its handle is
///   published there on every (re)start, so callers that look it up never hold a stale handle.
/// - Policies: permanent (always restarted), transient (restarted after an abnormal exit only),
///   temporary (never restarted; removed from the directory when it exits).
/// - Strategies: one_for_one restarts the child that died; rest_for_one also stops every child
///   started after it (newest first, waiting for each to be gone) and restarts them all in order.
/// - Intensity: more than `max_restarts` restarts within `window` make the supervisor quit with
///   `errc::restart_intensity_exceeded`; its linked children die with it and its own supervisor
///   sees the exit (escalation).
/// - Backoff: the n-th restart inside the window waits backoff_initial x multiplier^(n-1), capped
///   at backoff_max; the first is immediate when backoff_initial is 0.
/// - Every restart is logged with its reason and counted in
///   `bulwark_supervisor_restarts_total{child}`.
/// On its own exit it stops its children in reverse start order (links take them down otherwise).

#include "actors/directory.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace bulwark {

enum class restart_policy { permanent, transient, temporary };
enum class supervision_strategy { one_for_one, rest_for_one };

struct child_spec {
  std::string name;
  /// Spawns the child (unlinked; the supervisor links it). May throw: a throw counts as a crash.
  std::function<caf::actor(caf::actor_system&)> start;
  restart_policy restart = restart_policy::permanent;
};

struct supervisor_config {
  supervision_strategy strategy = supervision_strategy::one_for_one;
  /// supervisor.max_restarts / supervisor.window_ms: the restart intensity.
  size_t max_restarts = 5;
  std::chrono::milliseconds window{10000};
  /// supervisor.backoff_initial_ms / backoff_max_ms / backoff_multiplier.
  std::chrono::milliseconds backoff_initial{10};
  std::chrono::milliseconds backoff_max{5000};
  double backoff_multiplier = 2.0;
};

struct supervisor_metrics {
  explicit supervisor_metrics(prometheus::Registry& reg);
  prometheus::Family<prometheus::Counter>* restarts;
};

caf::actor spawn_supervisor(caf::actor_system& sys, std::string name, supervisor_config cfg,
                            std::vector<child_spec> children,
                            std::shared_ptr<component_directory> dir, supervisor_metrics* metrics);

/// A child spec that runs a nested supervisor (e.g. `backend`, rest_for_one).
child_spec supervisor_child(std::string name, supervisor_config cfg,
                            std::vector<child_spec> children,
                            std::shared_ptr<component_directory> dir, supervisor_metrics* metrics);

} // namespace bulwark
