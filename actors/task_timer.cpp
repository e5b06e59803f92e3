#include "actors/task_timer.hpp"

#include "actors/clock.hpp"

#include <caf/all.hpp>

namespace bulwark {

namespace {

struct task_timer_state {
  static constexpr const char* name = "task_timer";

  cleanup_task task;
  uint64_t generation = 0;
  double stretch = 1.0;
  cleanup_manager_actor manager;
  std::shared_ptr<component_directory> dir;
  /// Bumped whenever the schedule changes, so ticks armed before are dropped.
  uint64_t schedule = 0;
  bool running = false;
  caf::timespan next_at{0}; ///< when the armed tick is due
};

using self_ptr = task_timer_actor::stateful_pointer<task_timer_state>;

caf::timespan interval_of(const task_timer_state& st) {
  return std::chrono::duration_cast<caf::timespan>(st.task.interval * st.stretch);
}

void arm(self_ptr self) {
  auto& st = self->state;
  st.next_at = now_of(self) + interval_of(st);
  self->delayed_send(self, interval_of(st), caf::tick_atom::value, st.schedule);
}

void report(self_ptr self, task_outcome outcome, caf::timespan started, std::string error) {
  auto& st = self->state;
  st.running = false;
  auto took = now_of(self) - started;
  self->send(st.manager, task_run_report{st.task.name, st.generation, outcome, took,
                                         std::move(error), st.next_at});
}

void run(self_ptr self) {
  auto& st = self->state;
  if (st.running)
    return; // runs never overlap
  auto started = now_of(self);
  // An owned task runs on its owner (the manager drops it when the owner goes); another is looked
  // up by name on every run, so a restarted target is found again.
  auto target =
      st.task.owner ? caf::actor_cast<caf::actor>(st.task.owner) : st.dir->lookup(st.task.target);
  if (!target) {
    report(self, task_outcome::failed, started,
           describe(make_error(errc::task_target_missing, st.task.target)));
    return;
  }
  st.running = true;
  self->request(target, st.task.timeout, st.task.message)
      .then([=](caf::ok_atom) { report(self, task_outcome::ok, started, {}); },
            [=](caf::error& err) {
              if (err == caf::sec::request_timeout)
                report(self, task_outcome::hung, started,
                       describe(make_error(errc::task_hung, self->state.task.name)));
              else
                report(self, task_outcome::failed, started, describe(err));
            });
}

task_timer_actor::behavior_type task_timer(self_ptr self, cleanup_task task, uint64_t generation,
                                           double stretch, cleanup_manager_actor manager,
                                           std::shared_ptr<component_directory> dir) {
  auto& st = self->state;
  st.task = std::move(task);
  st.generation = generation;
  st.stretch = stretch;
  st.manager = std::move(manager);
  st.dir = std::move(dir);
  // A timer lives no longer than its manager.
  self->monitor(st.manager);
  self->set_down_handler([self](caf::down_msg& dm) { self->quit(dm.reason); });
  arm(self);
  return {
      [=](caf::tick_atom, uint64_t schedule) {
        if (schedule != self->state.schedule)
          return;
        arm(self);
        run(self);
      },
      [=](run_atom) { run(self); },
      [=](stretch_atom, double factor) {
        auto& st = self->state;
        if (factor == st.stretch)
          return;
        st.stretch = factor;
        ++st.schedule;
        arm(self);
      },
  };
}

} // namespace

task_timer_actor spawn_task_timer(caf::actor_system& sys, cleanup_task task, uint64_t generation,
                                  double stretch, cleanup_manager_actor manager,
                                  std::shared_ptr<component_directory> dir) {
  return sys.spawn(task_timer, std::move(task), generation, stretch, std::move(manager),
                   std::move(dir));
}

} // namespace bulwark
