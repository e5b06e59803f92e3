#include "actors/cleanup_manager.hpp"

#include "actors/clock.hpp"
#include "actors/log.hpp"
#include "actors/pressure_subscription.hpp"
#include "actors/task_timer.hpp"

#include <caf/all.hpp>

#include <unordered_map>

namespace bulwark {

cleanup_manager_metrics::cleanup_manager_metrics(prometheus::Registry& reg) {
  using namespace prometheus;
  runs = &BuildCounter()
              .Name("bulwark_cleanup_task_runs_total")
              .Help("Completed runs of a cleanup task")
              .Register(reg);
  failures = &BuildCounter()
                  .Name("bulwark_cleanup_task_failures_total")
                  .Help("Runs of a cleanup task that ended in an error")
                  .Register(reg);
  hung = &BuildCounter()
              .Name("bulwark_cleanup_task_hung_total")
              .Help("Runs of a cleanup task that exceeded their timeout")
              .Register(reg);
  stale = &BuildCounter()
               .Name("bulwark_cleanup_task_stale_total")
               .Help("Times a cleanup task was found stale (no completed run for stale_factor "
                     "intervals)")
               .Register(reg);
  restarts = &BuildCounter()
                  .Name("bulwark_cleanup_task_restarts_total")
                  .Help("Restarts of a cleanup task's timer actor")
                  .Register(reg);
  last_duration = &BuildGauge()
                       .Name("bulwark_cleanup_task_last_duration_seconds")
                       .Help("Duration of a cleanup task's last run")
                       .Register(reg);
  tasks = &BuildGauge()
               .Name("bulwark_cleanup_tasks")
               .Help("Registered cleanup tasks")
               .Register(reg)
               .Add({});
}

namespace {

constexpr const char* component = "cleanup_manager";

struct timer_slot {
  task_timer_actor handle;
  uint64_t generation = 0;
};

struct cleanup_manager_state {
  static constexpr const char* name = "cleanup_manager";

  cleanup_manager_config cfg;
  std::shared_ptr<component_directory> dir;
  cleanup_manager_metrics* metrics = nullptr;
  std::shared_ptr<cleanup_manager_memory> memory;
  std::unordered_map<std::string, timer_slot> timers;
  uint64_t next_generation = 0;
  pressure_level level = pressure_level::low;
  /// Re-subscribed on the next health check when the monitor goes away.
  pressure_subscription pressure;
};

using self_ptr = cleanup_manager_actor::stateful_pointer<cleanup_manager_state>;

bool deferred(const cleanup_manager_state& st) {
  return st.level >= pressure_level::high;
}

double stretch_for(const cleanup_manager_state& st, const cleanup_task& t) {
  return t.deferrable && deferred(st) ? st.cfg.defer_factor : 1.0;
}

prometheus::Labels labels(const std::string& task) {
  return {{"task", task}};
}

void stop_timer(self_ptr self, const std::string& name) {
  auto i = self->state.timers.find(name);
  if (i == self->state.timers.end())
    return;
  self->demonitor(i->second.handle.address());
  self->send_exit(i->second.handle, caf::exit_reason::user_shutdown);
  self->state.timers.erase(i);
}

void start_timer(self_ptr self, cleanup_task_record& rec) {
  auto& st = self->state;
  auto gen = ++st.next_generation;
  auto h = spawn_task_timer(self->system(), rec.task, gen, stretch_for(st, rec.task), self, st.dir);
  // Monitors both ways instead of a link: we see a timer crash as a down message, the timer quits
  // when we go, and no exit message is ever mistaken for an order to stop.
  self->monitor(h);
  st.timers[rec.task.name] = timer_slot{h, gen};
  rec.in_run = false;
}

/// Stale, hung or crashed: restart the task's timer within the task's own budget.
void restart_task(self_ptr self, cleanup_task_record& rec, const std::string& why) {
  auto& st = self->state;
  auto& name = rec.task.name;
  stop_timer(self, name);
  auto now = now_of(self);
  rec.restart_times.push_back(now);
  while (!rec.restart_times.empty() && now - rec.restart_times.front() > st.cfg.task_restart_window)
    rec.restart_times.pop_front();
  if (rec.restart_times.size() > st.cfg.task_max_restarts) {
    rec.given_up = true;
    log_error(component, "task " + name + " " + why + "; restart budget spent (" +
                             std::to_string(st.cfg.task_max_restarts) + " in " +
                             std::to_string(st.cfg.task_restart_window.count()) + " ms): given up");
    return;
  }
  ++rec.restarts;
  st.metrics->restarts->Add(labels(name)).Increment();
  log_warn(component, "task " + name + " " + why + "; restarting its timer");
  // A restarted timer gets a fresh staleness budget, like a new registration.
  rec.last_completed_at = now;
  start_timer(self, rec);
}

void register_task(self_ptr self, cleanup_task t) {
  auto& st = self->state;
  stop_timer(self, t.name);
  cleanup_task_record rec;
  rec.task = std::move(t);
  rec.registered_at = now_of(self);
  // Counted from registration: a new task is not stale (the original's bug).
  rec.last_completed_at = rec.registered_at;
  auto& slot = st.memory->tasks[rec.task.name] = std::move(rec);
  st.metrics->tasks->Set(static_cast<double>(st.memory->tasks.size()));
  start_timer(self, slot);
}

void on_report(self_ptr self, task_run_report& r) {
  auto& st = self->state;
  auto t = st.timers.find(r.name);
  auto rec = st.memory->tasks.find(r.name);
  if (t == st.timers.end() || t->second.generation != r.generation || rec == st.memory->tasks.end())
    return; // from a timer we already replaced
  auto& x = rec->second;
  x.last_duration = r.duration;
  st.metrics->last_duration->Add(labels(r.name))
      .Set(std::chrono::duration<double>(r.duration).count());
  switch (r.outcome) {
  case task_outcome::ok:
    ++x.runs;
    x.last_completed_at = now_of(self);
    st.metrics->runs->Add(labels(r.name)).Increment();
    break;
  case task_outcome::failed:
    // A failed run still completed: the timer is alive. Failures are counted, not restarted.
    ++x.runs;
    ++x.failures;
    x.last_error = r.error;
    x.last_completed_at = now_of(self);
    st.metrics->runs->Add(labels(r.name)).Increment();
    st.metrics->failures->Add(labels(r.name)).Increment();
    break;
  case task_outcome::hung:
    ++x.hung;
    x.last_error = r.error;
    st.metrics->hung->Add(labels(r.name)).Increment();
    restart_task(
        self, x,
        "hung (no answer within " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(x.task.timeout).count()) +
            " ms)");
    break;
  }
}

void on_pressure(self_ptr self, const pressure_changed& ev) {
  auto& st = self->state;
  bool was_deferred = deferred(st);
  bool rose = ev.level > st.level;
  st.level = ev.level;
  size_t stretched = 0;
  size_t urgent = 0;
  for (auto& [name, rec] : st.memory->tasks) {
    auto t = st.timers.find(name);
    if (t == st.timers.end())
      continue;
    if (rec.task.deferrable && was_deferred != deferred(st)) {
      self->send(t->second.handle, stretch_atom::value, stretch_for(st, rec.task));
      ++stretched;
    }
    if (rec.task.urgent && rose) {
      self->send(t->second.handle, run_atom::value);
      ++urgent;
    }
  }
  if (stretched == 0 && urgent == 0)
    return;
  std::string what;
  if (stretched > 0)
    what = deferred(st) ? "stretched " + std::to_string(stretched) + " deferrable tasks x" +
                              std::to_string(st.cfg.defer_factor).substr(0, 4)
                        : "restored " + std::to_string(stretched) + " deferrable tasks";
  if (urgent > 0)
    what +=
        (what.empty() ? "" : "; ") + std::string{"ran "} + std::to_string(urgent) + " urgent tasks";
  pressure_subscription::report(self, *st.dir, component, ev.level, std::move(what));
}

void on_health(self_ptr self) {
  auto& st = self->state;
  st.pressure.ensure(self, *st.dir);
  auto now = now_of(self);
  for (auto& [name, rec] : st.memory->tasks) {
    if (rec.given_up)
      continue;
    auto limit = std::chrono::duration_cast<caf::timespan>(
        rec.task.interval * stretch_for(st, rec.task) * st.cfg.stale_factor);
    if (now - rec.last_completed_at > limit) {
      ++rec.stale;
      st.metrics->stale->Add(labels(name)).Increment();
      restart_task(self, rec,
                   "is stale (no completed run for " +
                       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          now - rec.last_completed_at)
                                          .count()) +
                       " ms)");
    }
  }
}

cleanup_task_status status_of(self_ptr self, const cleanup_task_record& r) {
  auto& st = self->state;
  cleanup_task_status s;
  s.name = r.task.name;
  s.target = r.task.target;
  s.state = r.given_up ? "given_up" : st.timers.count(r.task.name) ? "running" : "restarting";
  s.interval = r.task.interval;
  s.effective_interval =
      std::chrono::duration_cast<caf::timespan>(r.task.interval * stretch_for(st, r.task));
  s.deferrable = r.task.deferrable;
  s.urgent = r.task.urgent;
  s.runs = r.runs;
  s.failures = r.failures;
  s.hung = r.hung;
  s.stale = r.stale;
  s.restarts = r.restarts;
  s.last_duration = r.last_duration;
  s.since_last_completion = now_of(self) - r.last_completed_at;
  s.last_error = r.last_error;
  return s;
}

cleanup_manager_actor::behavior_type
cleanup_manager(self_ptr self, cleanup_manager_config cfg, std::shared_ptr<component_directory> dir,
                cleanup_manager_metrics* metrics, std::shared_ptr<cleanup_manager_memory> memory) {
  auto& st = self->state;
  st.cfg = cfg;
  st.dir = std::move(dir);
  st.metrics = metrics;
  st.memory = std::move(memory);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.pressure.on_down(dm.source))
      return; // the monitor restarts; subscribe again on the next health check
    for (auto& [name, slot] : st.timers)
      if (slot.handle.address() == dm.source) {
        auto rec = st.memory->tasks.find(name);
        st.timers.erase(name);
        if (rec != st.memory->tasks.end())
          restart_task(self, rec->second, "timer crashed (" + describe(dm.reason) + ")");
        return;
      }
  });
  // Tasks kept from a previous incarnation get fresh timers and a fresh staleness budget.
  for (auto& [name, rec] : st.memory->tasks) {
    if (rec.given_up)
      continue;
    rec.last_completed_at = now_of(self);
    start_timer(self, rec);
  }
  st.pressure.ensure(self, *st.dir);
  self->delayed_send(self, st.cfg.health_check_interval, health_atom::value);
  return {
      [=](cleanup_task& t) -> caf::result<caf::ok_atom> {
        if (t.name.empty() || t.target.empty() || t.interval <= caf::timespan{0} ||
            t.timeout <= caf::timespan{0})
          return make_error(errc::invalid_task, t.name,
                            "needs a name, a target, and a positive interval and timeout");
        log_info(
            component,
            "registered task " + t.name + " (every " +
                std::to_string(
                    std::chrono::duration_cast<std::chrono::milliseconds>(t.interval).count()) +
                " ms, target " + t.target + ")");
        register_task(self, std::move(t));
        return caf::ok_atom::value;
      },
      [=](caf::delete_atom, const std::string& name) {
        stop_timer(self, name);
        auto erased = self->state.memory->tasks.erase(name) > 0;
        self->state.metrics->tasks->Set(static_cast<double>(self->state.memory->tasks.size()));
        return erased;
      },
      [=](caf::get_atom) {
        std::vector<cleanup_task_status> out;
        for (auto& [name, rec] : self->state.memory->tasks)
          out.push_back(status_of(self, rec));
        return out;
      },
      [=](run_atom, const std::string& name) -> caf::result<caf::ok_atom> {
        auto t = self->state.timers.find(name);
        if (t == self->state.timers.end())
          return make_error(errc::unknown_task, name);
        self->send(t->second.handle, run_atom::value);
        return caf::ok_atom::value;
      },
      [=](task_run_report& r) { on_report(self, r); },
      [=](pressure_changed& ev) { on_pressure(self, ev); },
      [=](health_atom) {
        on_health(self);
        self->delayed_send(self, self->state.cfg.health_check_interval, health_atom::value);
      },
  };
}

} // namespace

cleanup_manager_actor spawn_cleanup_manager(caf::actor_system& sys, cleanup_manager_config cfg,
                                            std::shared_ptr<component_directory> dir,
                                            cleanup_manager_metrics* metrics,
                                            std::shared_ptr<cleanup_manager_memory> memory) {
  return sys.spawn(cleanup_manager, cfg, std::move(dir), metrics, std::move(memory));
}

} // namespace bulwark
