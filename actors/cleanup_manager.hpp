#pragma once
/// cleanup_manager: owns all periodic background work. Each registered task runs in its own
/// task timer actor (task_timer.hpp) that the manager spawns, monitors and supervises.
///
// clang-format off
/// | receives                 | replies                      | notes                          |
/// |--------------------------|------------------------------|--------------------------------|
/// | cleanup_task             | ok_atom / error invalid_task | register or replace by name    |
/// | (delete_atom, name)      | bool (was it registered)     | unregister                     |
/// | get_atom                 | vector<cleanup_task_status>  | for /v1/status                 |
/// | (run_atom, name)         | ok_atom / error unknown_task | run a task now                 |
/// | task_run_report          | -                            | from its timers                |
/// | pressure_changed         | -                            | defers / runs urgent tasks     |
/// | health_atom              | -                            | its own health-check timer     |
// clang-format on
///
/// A task is stale when its last completed run (or its registration, before the first run) is
/// older than `stale_factor` x its effective interval (and than one interval plus the timeout: a
/// run in progress is judged by its timeout); a run past its timeout is hung; a timer
/// actor that exits abnormally crashed. All three restart the timer actor, within the task's own
/// restart budget (`task_max_restarts` in `task_restart_window`); past it the task is given up
/// (state "given_up", logged, counted) and the manager itself keeps running.
/// Under high or critical pressure deferrable tasks stretch their interval by `defer_factor`;
/// urgent tasks run at once whenever the level rises. Each reaction is reported to the monitor.
///
/// A task's owner (the component that registered it, register_cleanup_tasks) is monitored: when
/// it goes, its tasks are removed, and its next incarnation registers them again.
///
/// Kept across a restart (in `cleanup_manager_memory`): the registered tasks and their counters,
/// so components need not register again; timer actors are spawned anew and owners watched again.

#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>

namespace bulwark {

struct cleanup_manager_config {
  /// cleanup.health_check_interval_ms: how often stale and hung tasks are looked for.
  std::chrono::milliseconds health_check_interval{1000};
  /// cleanup.stale_factor: stale after this many intervals without a completed run.
  double stale_factor = 3.0;
  /// cleanup.defer_factor: interval multiplier for deferrable tasks at high or critical.
  double defer_factor = 4.0;
  /// cleanup.task_max_restarts / cleanup.task_restart_window_ms: a task's own restart budget.
  size_t task_max_restarts = 5;
  std::chrono::milliseconds task_restart_window{60000};
};

struct cleanup_manager_metrics {
  explicit cleanup_manager_metrics(prometheus::Registry& reg);
  prometheus::Family<prometheus::Counter>* runs;
  prometheus::Family<prometheus::Counter>* failures;
  prometheus::Family<prometheus::Counter>* hung;
  prometheus::Family<prometheus::Counter>* stale;
  prometheus::Family<prometheus::Counter>* restarts;
  prometheus::Family<prometheus::Gauge>* last_duration;
  prometheus::Gauge* tasks;
  prometheus::Gauge* given_up; ///< tasks past their restart budget, run by nobody
};

/// One registered task as the manager keeps it (across restarts too).
struct cleanup_task_record {
  cleanup_task task;
  caf::timespan registered_at{0};
  caf::timespan last_completed_at{0}; ///< registration time until the first run completes
  caf::timespan next_run_at{0};       ///< when its timer runs it next
  caf::timespan run_started_at{0};    ///< when the current run began, while `in_run`
  bool in_run = false;
  uint64_t runs = 0;
  uint64_t failures = 0;
  uint64_t hung = 0;
  uint64_t stale = 0;
  uint64_t restarts = 0;
  std::deque<caf::timespan> restart_times; ///< inside the restart window
  caf::timespan last_duration{0};
  std::string last_error;
  bool given_up = false;
};

struct cleanup_manager_memory {
  std::map<std::string, cleanup_task_record> tasks;
};

/// How a component registers its periodic work, when it starts and again after each restart:
/// the tasks are owned by `owner` (they go when it goes, so a restart never duplicates them).
/// A small registrar actor hands them over and waits for the manager's answer: it sends as soon
/// as the manager runs (now, or when it starts) and again should the manager die before
/// answering, so nothing is lost while the manager (re)starts; it ends when they are registered
/// or the owner is gone. The manager logs what it refuses.
void register_cleanup_tasks(caf::local_actor* owner, std::shared_ptr<component_directory> dir,
                            std::vector<cleanup_task> tasks);

/// A task that sends `message` to `target` every `interval`, neither deferrable nor urgent (set
/// those after). Its timeout is the interval, at least 5 s: a component answers its tick between
/// requests, and a mailbox that is busy for a moment under load is not a stuck component.
cleanup_task periodic_task(std::string name, std::string target, caf::timespan interval,
                           caf::message message);

cleanup_manager_actor spawn_cleanup_manager(caf::actor_system& sys, cleanup_manager_config cfg,
                                            std::shared_ptr<component_directory> dir,
                                            cleanup_manager_metrics* metrics,
                                            std::shared_ptr<cleanup_manager_memory> memory);

} // namespace bulwark
