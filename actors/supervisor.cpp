#include "actors/supervisor.hpp"

#include "actors/detail/backoff.hpp"

#include "actors/clock.hpp"
#include "actors/log.hpp"
#include "messages/type_ids.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <cmath>
#include <deque>
#include <optional>
#include <set>

namespace bulwark {

supervisor_metrics::supervisor_metrics(prometheus::Registry& reg) {
  restarts = &prometheus::BuildCounter()
                  .Name("bulwark_supervisor_restarts_total")
                  .Help("Restarts of a supervised component, by child name")
                  .Register(reg);
}

namespace {

struct child_entry {
  child_spec spec;
  caf::actor handle;
  /// Bumped on every start, so a restart timer armed for an older incarnation is ignored.
  uint64_t generation = 0;
  /// We asked it to stop (rest_for_one or our own shutdown); its exit is not a crash.
  bool stopping = false;
  /// Waiting for a restart timer (or for younger siblings to stop).
  bool restart_pending = false;
};

struct supervisor_state {
  static constexpr const char* name = "supervisor";

  std::string id; ///< this supervisor's component name
  supervisor_config cfg;
  std::vector<child_entry> children;
  std::shared_ptr<component_directory> dir;
  supervisor_metrics* metrics = nullptr;
  std::deque<caf::timespan> restart_times; ///< inside the intensity window
  /// rest_for_one: restart every child from this index once the younger ones stopped.
  std::optional<size_t> restart_from;
  /// Our own shutdown: quit with this once every child is gone.
  std::optional<caf::error> quitting;
  /// Every child still linked to us, including old incarnations whose link-exit message may
  /// still be on its way: their exit messages are not orders to stop.
  std::set<caf::actor_addr> linked;
};

using self_ptr = caf::stateful_actor<supervisor_state>*;

bool normal_exit(const caf::error& reason) {
  return !reason || reason == caf::exit_reason::user_shutdown;
}

void start_child(self_ptr self, size_t i);

/// A child did not start or died: the same path decides restart, backoff and escalation.
void on_child_down(self_ptr self, size_t i, const caf::error& reason);

void start_child(self_ptr self, size_t i) {
  auto& st = self->state;
  auto& c = st.children[i];
  c.restart_pending = false;
  c.stopping = false;
  ++c.generation;
  st.dir->declare(c.spec.name, st.id);
  caf::actor h;
  caf::error failure;
  try {
    h = c.spec.start(self->system());
    if (!h)
      failure = make_error(errc::child_start_failed, c.spec.name, "factory returned no actor");
  } catch (std::exception& e) {
    failure = make_error(errc::child_start_failed, c.spec.name, std::string{e.what()});
  }
  if (failure) {
    on_child_down(self, i, failure);
    return;
  }
  c.handle = h;
  // The link takes the child down with us; the monitor tells us when the child is gone. Links
  // alone do not: an actor that dies of an exit message from us removes that link silently.
  // Both deliver at once when the child already died, so a crash during start is seen too.
  self->link_to(h);
  self->monitor(h);
  st.linked.insert(h.address());
  st.dir->set_running(c.spec.name, h);
}

/// Stops the youngest running child after `from` (rest_for_one, shutdown); false when none is left.
bool stop_youngest(self_ptr self, size_t from) {
  auto& cs = self->state.children;
  for (size_t j = cs.size(); j-- > from;) {
    auto& c = cs[j];
    if (!c.handle)
      continue;
    if (!c.stopping) {
      c.stopping = true;
      self->send_exit(c.handle, caf::exit_reason::user_shutdown);
    }
    return true;
  }
  return false;
}

caf::timespan backoff_for(const supervisor_config& cfg, size_t nth) {
  detail::backoff b{cfg.backoff_initial, cfg.backoff_max, cfg.backoff_multiplier};
  return std::chrono::duration_cast<caf::timespan>(b.wait(nth));
}

/// Starts child `i` again: alone (one_for_one) or with every younger sibling that waits for it
/// (rest_for_one), in start order.
void resume_children(self_ptr self, size_t i) {
  auto& cs = self->state.children;
  if (self->state.cfg.strategy == supervision_strategy::one_for_one) {
    start_child(self, i);
    return;
  }
  for (size_t j = i; j < cs.size(); ++j)
    if (cs[j].restart_pending && !cs[j].handle)
      start_child(self, j);
}

void schedule_restart(self_ptr self, size_t i, caf::timespan delay) {
  auto& c = self->state.children[i];
  c.restart_pending = true;
  if (delay.count() == 0)
    resume_children(self, i);
  else
    self->delayed_send(self, delay, restart_atom::value, c.spec.name, c.generation);
}

/// Escalation: the restart budget is spent, so this supervisor gives up. Its linked children
/// die with it; its own supervisor sees the exit and decides.
void give_up(self_ptr self, const std::string& child, const caf::error& reason) {
  auto& st = self->state;
  auto why = make_error(errc::restart_intensity_exceeded, st.id, child);
  log_error(st.id, "restart intensity exceeded (" + std::to_string(st.cfg.max_restarts) +
                       " restarts in " + std::to_string(st.cfg.window.count()) +
                       " ms; last: " + child + " exited with " + describe(reason) + "); giving up");
  for (auto& c : st.children)
    st.dir->set_exited(c.spec.name, component_state::failed, describe(why));
  self->quit(why);
}

void on_child_down(self_ptr self, size_t i, const caf::error& reason) {
  auto& st = self->state;
  auto& c = st.children[i];
  c.handle = nullptr;
  auto& name = c.spec.name;
  bool restart = c.spec.restart == restart_policy::permanent ||
                 (c.spec.restart == restart_policy::transient && !normal_exit(reason));
  if (!restart) {
    log_info(st.id, name + " exited (" + describe(reason) + "); not restarted (" +
                        (c.spec.restart == restart_policy::temporary ? "temporary" : "transient") +
                        ")");
    if (c.spec.restart == restart_policy::temporary)
      st.dir->erase(name);
    else
      st.dir->set_exited(name, component_state::stopped, describe(reason));
    return;
  }
  // Restart intensity: at most max_restarts inside the sliding window.
  auto now = now_of(self);
  st.restart_times.push_back(now);
  while (!st.restart_times.empty() && now - st.restart_times.front() > st.cfg.window)
    st.restart_times.pop_front();
  if (st.restart_times.size() > st.cfg.max_restarts) {
    give_up(self, name, reason);
    return;
  }
  auto delay = backoff_for(st.cfg, st.restart_times.size());
  log_warn(st.id, "restarting " + name + " after exit: " + describe(reason) + " (restart " +
                      std::to_string(st.restart_times.size()) + " of " +
                      std::to_string(st.cfg.max_restarts) + " allowed in the window, in " +
                      std::to_string(
                          std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()) +
                      " ms)");
  st.metrics->restarts->Add({{"child", name}}).Increment();
  st.dir->count_restart(name);
  st.dir->set_exited(name, component_state::restarting, describe(reason));
  if (st.cfg.strategy == supervision_strategy::one_for_one) {
    schedule_restart(self, i, delay);
    return;
  }
  // rest_for_one: every younger sibling stops (newest first) and restarts after this one.
  c.restart_pending = true;
  st.restart_from = std::min(st.restart_from.value_or(i), i);
  for (size_t j = i + 1; j < st.children.size(); ++j)
    if (st.children[j].handle || st.children[j].restart_pending) {
      st.children[j].restart_pending = true;
      st.dir->set_exited(st.children[j].spec.name, component_state::restarting,
                         "sibling " + name + " restarted");
    }
  if (!stop_youngest(self, i + 1)) {
    auto from = *st.restart_from;
    st.restart_from.reset();
    // Only the first start waits out the backoff; siblings follow in order.
    schedule_restart(self, from, delay);
  }
}

/// The exit of a child reaches us as a down message (see start_child): it crashed, exited, or
/// stopped because we asked it to.
void on_down(self_ptr self, caf::down_msg& msg) {
  auto& st = self->state;
  auto i = std::find_if(st.children.begin(), st.children.end(), [&](const child_entry& c) {
    return c.handle && c.handle.address() == msg.source;
  });
  if (i == st.children.end())
    return;
  auto idx = static_cast<size_t>(i - st.children.begin());
  // A child that died of our exit message dropped the link silently: no exit message follows.
  if (i->stopping)
    st.linked.erase(msg.source);
  if (st.quitting) {
    i->handle = nullptr;
    st.dir->set_exited(i->spec.name, component_state::stopped, "shutdown");
    if (!stop_youngest(self, 0))
      self->quit(*st.quitting);
    return;
  }
  if (i->stopping) {
    // A younger sibling we stopped for rest_for_one is gone: stop the next, then restart.
    i->handle = nullptr;
    i->stopping = false;
    if (!stop_youngest(self, st.restart_from.value_or(idx) + 1) && st.restart_from) {
      auto from = *st.restart_from;
      st.restart_from.reset();
      schedule_restart(self, from,
                       backoff_for(st.cfg, std::max<size_t>(1, st.restart_times.size())));
    }
    return;
  }
  on_child_down(self, idx, msg.reason);
}

/// Exit messages: a linked child's is ignored (its down message follows); anything else is our
/// parent or the engine telling us to stop, so we stop the children newest first, then quit.
void on_exit(self_ptr self, caf::exit_msg& msg) {
  auto& st = self->state;
  if (st.linked.erase(msg.source) > 0)
    return;
  if (!st.quitting) {
    st.quitting = msg.reason;
    log_info(st.id, "stopping (" + describe(msg.reason) + ")");
  }
  if (!stop_youngest(self, 0))
    self->quit(*st.quitting);
}

caf::behavior supervisor(self_ptr self, std::string id, supervisor_config cfg,
                         std::vector<child_spec> specs, std::shared_ptr<component_directory> dir,
                         supervisor_metrics* metrics) {
  auto& st = self->state;
  st.id = std::move(id);
  st.cfg = cfg;
  st.dir = std::move(dir);
  st.metrics = metrics;
  for (auto& s : specs)
    st.children.push_back(child_entry{std::move(s), nullptr, 0, false, false});
  self->set_exit_handler([self](caf::exit_msg& msg) { on_exit(self, msg); });
  self->set_down_handler([self](caf::down_msg& msg) { on_down(self, msg); });
  for (size_t i = 0; i < st.children.size() && !st.quitting; ++i)
    if (!st.children[i].handle && !st.children[i].restart_pending)
      start_child(self, i);
  return {
      [=](restart_atom, const std::string& name, uint64_t generation) {
        auto& cs = self->state.children;
        auto i = std::find_if(cs.begin(), cs.end(),
                              [&](const child_entry& c) { return c.spec.name == name; });
        if (i == cs.end() || i->generation != generation || !i->restart_pending ||
            self->state.quitting)
          return;
        resume_children(self, static_cast<size_t>(i - cs.begin()));
      },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, std::string name, supervisor_config cfg,
                            std::vector<child_spec> children,
                            std::shared_ptr<component_directory> dir, supervisor_metrics* metrics) {
  // Declared before the actor runs, so the directory lists the whole tree (as "starting") from
  // the moment spawn returns: a readiness check never sees a half-declared tree as complete.
  for (auto& c : children)
    dir->declare(c.name, name);
  return sys.spawn(supervisor, std::move(name), cfg, std::move(children), std::move(dir), metrics);
}

child_spec supervisor_child(std::string name, supervisor_config cfg,
                            std::vector<child_spec> children,
                            std::shared_ptr<component_directory> dir, supervisor_metrics* metrics) {
  auto id = name;
  return child_spec{std::move(name),
                    [=](caf::actor_system& sys) {
                      return spawn_supervisor(sys, id, cfg, children, dir, metrics);
                    },
                    restart_policy::permanent};
}

} // namespace bulwark
