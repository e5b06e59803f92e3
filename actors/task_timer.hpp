#pragma once
/// task_timer: runs one cleanup task periodically. Spawned, linked and supervised by the
/// cleanup manager; one per task.
///
/// | receives                 | replies | notes                                                 |
/// |--------------------------|---------|-------------------------------------------------------|
/// | (tick_atom, schedule)    | -       | its own timer; ticks of an older schedule are ignored |
/// | run_atom                 | -       | run now (urgent task on a pressure rise)              |
/// | (stretch_atom, factor)   | -       | interval x factor from now on; reschedules            |
///
/// A run sends the task's message as a request to its owner (or the target looked up in the
/// directory), and waits up to the task's timeout for `ok_atom`. Runs never overlap: a tick that
/// finds a run in progress is skipped. Sends `task_run_report` to the manager after every run: ok,
/// failed (an error reply, or no target running) or hung (timeout). Never blocks. Keeps nothing
/// across a restart: the manager owns the task's record.

#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>

#include <memory>

namespace bulwark {

task_timer_actor spawn_task_timer(caf::actor_system& sys, cleanup_task task, uint64_t generation,
                                  double stretch, cleanup_manager_actor manager,
                                  std::shared_ptr<component_directory> dir);

} // namespace bulwark
