#pragma once
/// Messages of the cleanup manager: components register named periodic tasks; each task runs in a
/// timer actor that the manager supervises.

#include <caf/actor_addr.hpp>
#include <caf/message.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/timestamp.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace bulwark {

/// A periodic task. Every `interval` the task's timer actor sends `message` as a request to its
/// owner, or without one to the component named `target` (looked up in the directory on every
/// run, so a restarted target is found again), and waits at most `timeout` for an `ok_atom` reply
/// (or an error). Registering a task under an existing name replaces it. A task with an `owner`
/// goes when its owner goes (the owner's next incarnation registers it again); one without lives
/// until it is unregistered.
struct cleanup_task {
  std::string name;
  caf::timespan interval{0};
  caf::timespan timeout{0};
  std::string target;
  caf::message message;
  /// Under high or critical pressure, the interval stretches by the manager's defer factor.
  bool deferrable = false;
  /// When the pressure level rises, the task runs at once.
  bool urgent = false;
  /// The actor whose work this is (register_cleanup_tasks sets it); none: the task has no owner.
  caf::actor_addr owner;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cleanup_task& x) {
  return f(caf::meta::type_name("bulwark::cleanup_task"), x.name, x.interval, x.timeout, x.target,
           x.message, x.deferrable, x.urgent, x.owner);
}

/// How one run of a task ended, sent by its timer actor to the manager.
enum class task_outcome : uint8_t { ok = 0, failed = 1, hung = 2 };

struct task_run_report {
  std::string name;
  uint64_t generation = 0; ///< which timer incarnation ran it; stale reports are ignored
  task_outcome outcome = task_outcome::ok;
  caf::timespan duration{0};
  std::string error;
  caf::timespan next_at{0}; ///< when the timer runs the task next (actor clock)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_run_report& x) {
  return f(caf::meta::type_name("bulwark::task_run_report"), x.name, x.generation, x.outcome,
           x.duration, x.error, x.next_at);
}

/// One row of the manager's answer to `get_atom`.
struct cleanup_task_status {
  std::string name;
  std::string target;
  std::string state; ///< "running", "restarting" or "given_up"
  caf::timespan interval{0};
  caf::timespan effective_interval{0};
  bool deferrable = false;
  bool urgent = false;
  uint64_t runs = 0;
  uint64_t failures = 0;
  uint64_t hung = 0;
  uint64_t stale = 0;
  uint64_t restarts = 0;
  caf::timespan last_duration{0};
  caf::timespan since_last_completion{0}; ///< counted from registration before the first run
  caf::timespan next_run_in{0};           ///< 0 while given up or restarting
  std::string last_error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cleanup_task_status& x) {
  return f(caf::meta::type_name("bulwark::cleanup_task_status"), x.name, x.target, x.state,
           x.interval, x.effective_interval, x.deferrable, x.urgent, x.runs, x.failures, x.hung,
           x.stale, x.restarts, x.last_duration, x.since_last_completion, x.next_run_in,
           x.last_error);
}

} // namespace bulwark
