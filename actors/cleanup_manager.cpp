#include "actors/cleanup_manager.hpp"

#include "actors/clock.hpp"
#include "actors/log.hpp"
#include "actors/pressure_subscription.hpp"
#include "actors/task_timer.hpp"

#include <caf/all.hpp>

#include <set>
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
  given_up = &BuildGauge()
                  .Name("bulwark_cleanup_tasks_given_up")
                  .Help("Registered cleanup tasks past their restart budget, which no timer runs "
                        "any more (until their owner restarts and registers them again)")
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
  /// The owners of registered tasks this incarnation monitors (each once).
  std::set<caf::actor_addr> owners;
};

using self_ptr = cleanup_manager_actor::stateful_pointer<cleanup_manager_state>;

bool deferred(const cleanup_manager_state& st) {
  return st.level >= pressure_level::high;
}

double stretch_for(const cleanup_manager_state& st, const cleanup_task& t) {
  return t.deferrable && deferred(st) ? st.cfg.defer_factor : 1.0;
}

/// The task gauges: registered, and given up.
void count_tasks(cleanup_manager_state& st) {
  size_t given_up = 0;
  for (auto& [name, rec] : st.memory->tasks)
    given_up += rec.given_up ? 1 : 0;
  st.metrics->tasks->Set(static_cast<double>(st.memory->tasks.size()));
  st.metrics->given_up->Set(static_cast<double>(given_up));
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

caf::timespan effective_interval(const cleanup_manager_state& st, const cleanup_task& t) {
  return std::chrono::duration_cast<caf::timespan>(t.interval * stretch_for(st, t));
}

void start_timer(self_ptr self, cleanup_task_record& rec) {
  auto& st = self->state;
  auto gen = ++st.next_generation;
  rec.next_run_at = now_of(self) + effective_interval(st, rec.task);
  auto h = spawn_task_timer(self->system(), rec.task, gen, stretch_for(st, rec.task), self, st.dir);
  // Monitors both ways instead of a link: we see a timer crash as a down message, the timer quits
  // when we go, and no exit message is ever mistaken for an order to stop.
  self->monitor(h);
  st.timers[rec.task.name] = timer_slot{h, gen};
  rec.in_run = false;
}

/// A task's owner is watched from its registration on: when it goes, its tasks go. False when
/// it is gone already.
bool watch_owner(self_ptr self, const caf::actor_addr& owner) {
  if (!owner || self->state.owners.count(owner) > 0)
    return true;
  // A weak address may name an actor that is destroyed already: only a strong reference may be
  // monitored.
  auto alive = caf::actor_cast<caf::strong_actor_ptr>(owner);
  if (!alive)
    return false;
  self->state.owners.insert(owner);
  self->monitor(alive);
  return true;
}

/// Its owner went: so do its tasks (the owner's next incarnation registers them again).
void drop_owned(self_ptr self, const caf::actor_addr& owner) {
  auto& st = self->state;
  std::string gone;
  for (auto i = st.memory->tasks.begin(); i != st.memory->tasks.end();) {
    if (i->second.task.owner != owner) {
      ++i;
      continue;
    }
    stop_timer(self, i->first);
    gone += (gone.empty() ? "" : ", ") + i->first;
    i = st.memory->tasks.erase(i);
  }
  if (!gone.empty())
    log_info(component, "removed with their owner: " + gone);
  count_tasks(st);
}

/// Stale, hung or crashed: restart the task's timer within the task's own budget. A hung run
/// keeps the staleness clock running (a target that never answers is also stale after
/// `stale_factor` intervals); a stale or crashed timer gets a fresh budget, like a new
/// registration, or it would be stale again at the next health check.
void restart_task(self_ptr self, cleanup_task_record& rec, const std::string& why,
                  bool fresh_budget = true) {
  auto& st = self->state;
  auto& name = rec.task.name;
  stop_timer(self, name);
  auto now = now_of(self);
  rec.restart_times.push_back(now);
  while (!rec.restart_times.empty() && now - rec.restart_times.front() > st.cfg.task_restart_window)
    rec.restart_times.pop_front();
  if (rec.restart_times.size() > st.cfg.task_max_restarts) {
    rec.given_up = true;
    count_tasks(st);
    log_error(component, "task " + name + " " + why + "; restart budget spent (" +
                             std::to_string(st.cfg.task_max_restarts) + " in " +
                             std::to_string(st.cfg.task_restart_window.count()) + " ms): given up");
    return;
  }
  ++rec.restarts;
  st.metrics->restarts->Add(labels(name)).Increment();
  log_warn(component, "task " + name + " " + why + "; restarting its timer");
  if (fresh_budget)
    rec.last_completed_at = now;
  start_timer(self, rec);
}

void register_task(self_ptr self, cleanup_task t) {
  auto& st = self->state;
  if (!watch_owner(self, t.owner)) {
    log_info(component, "task " + t.name + " not registered: its owner stopped");
    return;
  }
  stop_timer(self, t.name);
  cleanup_task_record rec;
  rec.task = std::move(t);
  rec.registered_at = now_of(self);
  // Counted from registration: a new task is not stale (the original's bug).
  rec.last_completed_at = rec.registered_at;
  auto& slot = st.memory->tasks[rec.task.name] = std::move(rec);
  count_tasks(st);
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
  x.next_run_at = r.next_at;
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
            " ms)",
        false);
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
      rec.next_run_at = now_of(self) + effective_interval(st, rec.task); // the timer re-arms
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
  auto now = now_of(self);
  for (auto& [name, rec] : st.memory->tasks) {
    if (rec.given_up)
      continue;
    // Never before a run in progress could be called hung: a run that waits in a busy mailbox
    // is judged by its timeout, not restarted as stale.
    auto every = effective_interval(st, rec.task);
    auto limit = std::max(std::chrono::duration_cast<caf::timespan>(every * st.cfg.stale_factor),
                          every + rec.task.timeout);
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
  s.effective_interval = effective_interval(st, r.task);
  s.deferrable = r.task.deferrable;
  s.urgent = r.task.urgent;
  s.runs = r.runs;
  s.failures = r.failures;
  s.hung = r.hung;
  s.stale = r.stale;
  s.restarts = r.restarts;
  s.last_duration = r.last_duration;
  auto now = now_of(self);
  s.since_last_completion = now - r.last_completed_at;
  if (s.state == "running")
    s.next_run_in = std::max(r.next_run_at - now, caf::timespan{0});
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
    if (st.owners.erase(dm.source) > 0) {
      drop_owned(self, dm.source);
      return;
    }
    for (auto& [name, slot] : st.timers)
      if (slot.handle.address() == dm.source) {
        auto rec = st.memory->tasks.find(name);
        st.timers.erase(name);
        if (rec != st.memory->tasks.end())
          restart_task(self, rec->second, "timer crashed (" + describe(dm.reason) + ")");
        return;
      }
  });
  // Tasks kept from a previous incarnation get fresh timers and a fresh staleness budget; their
  // owners are watched again (an owner that went meanwhile takes its tasks at once).
  std::vector<caf::actor_addr> gone;
  for (auto& [name, rec] : st.memory->tasks) {
    if (!watch_owner(self, rec.task.owner)) {
      gone.push_back(rec.task.owner);
      continue;
    }
    if (rec.given_up)
      continue;
    rec.last_completed_at = now_of(self);
    start_timer(self, rec);
  }
  for (auto& owner : gone)
    drop_owned(self, owner);
  count_tasks(st);
  pressure_subscription::subscribe(self, *st.dir);
  self->delayed_send(self, st.cfg.health_check_interval, health_atom::value);
  return {
      [=](cleanup_task& t) -> caf::result<caf::ok_atom> {
        if (t.name.empty() || t.target.empty() || t.interval <= caf::timespan{0} ||
            t.timeout <= caf::timespan{0}) {
          // Logged as well: components register without waiting for the answer.
          log_error(component, "refused task \"" + t.name +
                                   "\": needs a name, a target, and a positive interval and "
                                   "timeout");
          return make_error(errc::invalid_task, t.name,
                            "needs a name, a target, and a positive interval and timeout");
        }
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
        count_tasks(self->state);
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

namespace {

struct registrar_state {
  static constexpr const char* name = "cleanup_registrar";
  std::shared_ptr<component_directory> dir;
  std::vector<cleanup_task> tasks; ///< not registered yet
  caf::actor failed;               ///< the manager that died before answering
};

using registrar_ptr = caf::stateful_actor<registrar_state>*;

/// Waits for the manager to run (the directory hands it over on this or another thread). The
/// waiting callback holds the registrar: nothing else does while it waits.
void await_manager(registrar_ptr self) {
  self->state.dir->when_running("cleanup_manager",
                                [me = caf::actor_cast<caf::actor>(self)](const caf::actor& m) {
                                  caf::anon_send(me, run_atom::value, m);
                                });
}

void hand_over(registrar_ptr self, const caf::actor& m) {
  auto& st = self->state;
  if (m == st.failed) {
    // The directory still names the manager that just died: look again shortly.
    self->delayed_send(self, std::chrono::milliseconds(10), caf::tick_atom::value);
    return;
  }
  auto mgr = caf::actor_cast<cleanup_manager_actor>(m);
  auto pending = std::make_shared<size_t>(st.tasks.size());
  auto again = std::make_shared<std::vector<cleanup_task>>();
  // After the last answer: done, or what the dead manager never took goes to the next one.
  auto settle = [self, pending, again, m] {
    if (--*pending > 0)
      return;
    auto& st = self->state;
    st.tasks = std::move(*again);
    if (st.tasks.empty()) {
      self->quit();
      return;
    }
    st.failed = m;
    await_manager(self);
  };
  for (auto& t : st.tasks)
    self->request(mgr, caf::infinite, t)
        .then([settle](caf::ok_atom) { settle(); },
              [settle, again, t](caf::error& e) {
                if (e.category() == caf::atom("system"))
                  again->push_back(t); // the manager died before answering
                else
                  log_error(component, "cleanup task " + t.name + " refused: " + describe(e));
                settle();
              });
}

caf::behavior registrar(registrar_ptr self, caf::actor_addr owner,
                        std::shared_ptr<component_directory> dir, std::vector<cleanup_task> tasks) {
  auto& st = self->state;
  st.dir = std::move(dir);
  st.tasks = std::move(tasks);
  auto alive = caf::actor_cast<caf::strong_actor_ptr>(owner);
  if (!alive) {
    self->quit();
    return {};
  }
  // Lives no longer than the owner: its tasks would go with it anyway.
  self->monitor(alive);
  self->set_down_handler([self](caf::down_msg&) { self->quit(); });
  await_manager(self);
  return {
      [=](run_atom, const caf::actor& m) { hand_over(self, m); },
      [=](caf::tick_atom) { await_manager(self); },
  };
}

} // namespace

void register_cleanup_tasks(caf::local_actor* owner, std::shared_ptr<component_directory> dir,
                            std::vector<cleanup_task> tasks) {
  for (auto& t : tasks)
    t.owner = owner->address();
  owner->system().spawn(registrar, owner->address(), std::move(dir), std::move(tasks));
}

cleanup_task periodic_task(std::string name, std::string target, caf::timespan interval,
                           caf::message message) {
  cleanup_task t;
  t.name = std::move(name);
  t.target = std::move(target);
  t.interval = interval;
  t.timeout = std::max(interval, caf::timespan{std::chrono::seconds(5)});
  t.message = std::move(message);
  return t;
}

cleanup_manager_actor spawn_cleanup_manager(caf::actor_system& sys, cleanup_manager_config cfg,
                                            std::shared_ptr<component_directory> dir,
                                            cleanup_manager_metrics* metrics,
                                            std::shared_ptr<cleanup_manager_memory> memory) {
  return sys.spawn(cleanup_manager, cfg, std::move(dir), metrics, std::move(memory));
}

} // namespace bulwark
