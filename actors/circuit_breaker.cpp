#include "actors/circuit_breaker.hpp"

#include "actors/cleanup_manager.hpp"
#include "actors/clock.hpp"
#include "actors/log.hpp"
#include "actors/metric_children.hpp"
#include "actors/owed_answers.hpp"
#include "messages/gateway.hpp"

#include <caf/all.hpp>

#include <optional>

namespace bulwark {

circuit_breaker_metrics::circuit_breaker_metrics(prometheus::Registry& reg, const std::string& name)
    : breaker(name) {
  using namespace prometheus;
  state = &BuildGauge()
               .Name("bulwark_breaker_state")
               .Help("Circuit breaker state: 0 closed, 1 open, 2 half-open")
               .Register(reg)
               .Add({{"breaker", name}});
  transitions = &BuildCounter()
                     .Name("bulwark_breaker_transitions_total")
                     .Help("Circuit breaker transitions, by the state entered")
                     .Register(reg);
  calls = &BuildCounter()
               .Name("bulwark_breaker_calls_total")
               .Help("Calls through the circuit breaker, by outcome (success, failure, rejected, "
                     "caller_error, contention, ignored)")
               .Register(reg);
  self_probes = &BuildCounter()
                     .Name("bulwark_breaker_self_probes_total")
                     .Help("Probes the breaker sent by itself when its open wait ended with no "
                           "traffic, by result")
                     .Register(reg);
}

namespace {

constexpr const char* component = "circuit_breaker";

struct circuit_breaker_state {
  static constexpr const char* name = "circuit_breaker";

  circuit_breaker_config cfg;
  std::shared_ptr<component_directory> dir;
  circuit_breaker_metrics* metrics = nullptr;
  std::shared_ptr<circuit_breaker_memory> mem; ///< the core and counters, kept across restarts
  owed_answers<db_result> owed;                ///< calls in flight, answered if it dies
  labelled_children<prometheus::Counter> call_counts; ///< bulwark_breaker_calls_total's children
  /// A caller's call sent to the pool and not yet settled.
  struct in_flight {
    caf::timespan start{0};
    caf::timespan deadline{0};
    uint64_t epoch = 0;
    bool own_timeout = false; ///< its deadline is the breaker's call timeout
    owed_answers<db_result>::promise rp;
  };
  std::map<uint64_t, in_flight> calls;
  uint64_t next_call = 0;
  uint64_t seen_epoch = 0;
  bool watching = false;      ///< its `breaker_watch` task runs do the watch
  caf::timespan wake_at{0};   ///< the end of the open wait a one-shot wake is armed for
  caf::timespan opened_at{0}; ///< when it last opened (a connection after this is news)
  caf::timespan last_call{0}; ///< when a caller's call last arrived (self-probes wait for quiet)
};

using self_ptr = circuit_breaker_actor::stateful_pointer<circuit_breaker_state>;

void count(self_ptr self, const char* outcome) {
  auto& m = *self->state.metrics;
  self->state.call_counts.at<2>({"breaker", "outcome"}, {m.breaker.c_str(), outcome}).Increment();
}

void start_watching(self_ptr self);

/// Logs and counts a transition once, whatever caused it.
void observe_transition(self_ptr self) {
  auto& st = self->state;
  auto& core = *st.mem->core;
  st.metrics->state->Set(static_cast<double>(core.state()));
  if (core.epoch() == st.seen_epoch)
    return;
  st.seen_epoch = core.epoch();
  auto& t = core.last_transition();
  if (!t)
    return;
  st.metrics->transitions->Add({{"breaker", st.metrics->breaker}, {"to", detail::to_string(t->to)}})
      .Increment();
  auto line = std::string{detail::to_string(t->from)} + " -> " + detail::to_string(t->to) + ": " +
              t->reason;
  if (t->to == detail::breaker_state::open) {
    log_warn(component, line);
    if (!core.forced())
      start_watching(self);
  } else {
    log_info(component, line);
  }
}

enum class verdict { failure, caller_error, contention, ignored };

/// What an error says about the backend's health. `own_timeout`: the call ran under the
/// breaker's call_timeout, not under a shorter deadline of the caller's; `slow`: the slow-call
/// duration.
verdict judge(const caf::error& e, bool own_timeout, caf::timespan slow) {
  if (is(e, errc::backend_unavailable) || is(e, errc::backend_error))
    return verdict::failure;
  if (is(e, errc::bad_statement) || is(e, errc::conflict) || is(e, errc::invalid_data))
    return verdict::caller_error;
  if (is(e, errc::backend_busy))
    return verdict::contention;
  // Waiting behind connections the backend never gave back: a failure.
  if (is(e, errc::backend_stuck))
    return verdict::failure;
  // Timed out waiting for a connection under load: a shed.
  if (is(e, errc::queue_timeout) || is(e, errc::deadline_exceeded))
    return verdict::ignored;
  if (is(e, errc::call_cancelled)) {
    // Cut on the backend: a failure when the breaker's own call_timeout ran out. When the
    // caller's shorter budget ran out first it says the caller was in a hurry, not that the
    // backend is broken (an overload with 20 ms client deadlines opened the breaker and turned
    // partial service into none), unless the call had already run for the slow-call duration:
    // then it was slow, whoever's deadline cut it.
    auto& ctx = e.context();
    auto ran = ctx.size() > 1 && ctx.match_element<int64_t>(1)
                   ? std::chrono::milliseconds(ctx.get_as<int64_t>(1))
                   : std::chrono::milliseconds(0);
    return own_timeout || ran >= slow ? verdict::failure : verdict::ignored;
  }
  // The pool did not answer by the deadline plus a grace: the path to the backend is broken.
  if (e == caf::sec::request_timeout)
    return verdict::failure;
  // queue_full, pool_closed, a pool that is restarting: nothing about the backend.
  return verdict::ignored;
}

/// Contention counts as a failure once it has been all that came back for contention_grace.
verdict on_contention(circuit_breaker_state& st, caf::timespan now) {
  if (!st.mem->contention_since || now - st.mem->contention_last > st.cfg.contention_grace)
    st.mem->contention_since = now;
  st.mem->contention_last = now;
  return now - *st.mem->contention_since >= st.cfg.contention_grace ? verdict::failure
                                                                    : verdict::contention;
}

breaker_status status_of(self_ptr self) {
  auto& st = self->state;
  auto now = now_of(self);
  breaker_status s;
  s.state = detail::to_string(st.mem->core->state());
  s.forced = st.mem->core->forced();
  if (st.mem->core->state() == detail::breaker_state::open && !st.mem->core->forced())
    s.open_remaining = std::max(caf::timespan{0}, st.mem->core->open_until() - now);
  auto w = st.mem->core->window(now);
  s.window_calls = w.calls;
  s.window_failures = w.failures;
  s.window_slow = w.slow;
  s.consecutive_opens = st.mem->core->consecutive_opens();
  if (auto& t = st.mem->core->last_transition())
    s.last_transition = std::string{detail::to_string(t->from)} + " -> " +
                        detail::to_string(t->to) + ": " + t->reason;
  s.successes = st.mem->successes;
  s.failures = st.mem->failures;
  s.rejected = st.mem->rejected;
  s.ignored = st.mem->ignored;
  s.caller_errors = st.mem->caller_errors;
  s.contention = st.mem->contention;
  return s;
}

/// While open (and not forced), asks the pool on every run of its cleanup task `breaker_watch`
/// (every `watch_interval`) whether it has opened a connection since the breaker opened: proof
/// that the backend is back, so the wait ends now and the next call probes
/// (breaker_core::backend_alive). The end of the open wait is a deadline of its own (a one-shot
/// wake), not up to a watch interval after it.
void watch(self_ptr self) {
  self->state.watching = true;
}

void start_watching(self_ptr self) {
  self->state.opened_at = now_of(self);
  watch(self);
}

void self_probe(self_ptr self);

void on_watch_tick(self_ptr self) {
  auto& st = self->state;
  auto& core = *st.mem->core;
  auto now = now_of(self);
  bool quiet = now - st.last_call >= st.cfg.watch_interval;
  if (core.state() == detail::breaker_state::half_open && !core.forced()) {
    // A probe slot freed by a shed or a restarting pool: with nobody calling, probe again.
    if (quiet && core.probes().admitted < core.config().half_open_probes) {
      st.watching = false;
      self_probe(self);
    }
    return;
  }
  if (core.state() != detail::breaker_state::open || core.forced()) {
    st.watching = false;
    return;
  }
  if (now >= core.open_until() && quiet) {
    // The wait is over and nobody is calling: nobody would probe. The breaker does.
    st.watching = false;
    self_probe(self);
    return;
  }
  // Wake at the end of the wait too, not up to a watch interval after it.
  if (core.open_until() > now && st.wake_at != core.open_until()) {
    st.wake_at = core.open_until();
    self->delayed_send(self, core.open_until() - now, caf::timeout_atom::value);
  }
  auto pool = st.dir->get<connection_pool_actor>("connection_pool");
  if (!pool)
    return;
  auto epoch = core.epoch();
  self->request(pool, st.cfg.watch_interval, caf::get_atom::value)
      .then(
          [=](pool_status& s) {
            auto& st = self->state;
            if (st.mem->core->epoch() != epoch || s.last_connected <= st.opened_at)
              return;
            auto now = now_of(self);
            if (st.mem->core->backend_alive(now))
              log_info(component, "the pool connected again " +
                                      std::to_string(to_ms(now - s.last_connected)) +
                                      " ms ago: probing now instead of waiting out the open wait");
          },
          [](caf::error&) {});
}

/// One half-open probe of the breaker's own: `SELECT 1` through the pool under the call timeout,
/// judged like any call. While the breaker stays half-open and has a probe slot, the next one
/// follows; back to open, the watch (and its timer) takes over again.
void self_probe(self_ptr self) {
  auto& st = self->state;
  auto now = now_of(self);
  auto adm = st.mem->core->try_acquire(now);
  observe_transition(self);
  if (!adm.permitted || !adm.probe) {
    // Callers hold the probe slots (look again later: one may be given back), or it is closed.
    if (st.mem->core->state() == detail::breaker_state::half_open)
      watch(self);
    return;
  }
  auto pool = st.dir->get<connection_pool_actor>("connection_pool");
  auto count_probe = [self](const char* result) {
    auto& m = *self->state.metrics;
    m.self_probes->Add({{"breaker", m.breaker}, {"result", result}}).Increment();
  };
  if (!pool) {
    // No pool to ask (restarting): give the slot back and look again after a watch interval.
    st.mem->core->on_ignored(adm.epoch);
    watch(self);
    return;
  }
  db_call call;
  call.statement = "breaker_probe";
  call.sql = "SELECT 1";
  call.deadline = now + st.cfg.call_timeout;
  call.priority = pool_priority(request_priority::high);
  auto epoch = adm.epoch;
  auto wait = st.cfg.call_timeout + path_grace;
  auto settle = [self, epoch, now, count_probe](bool ok) {
    auto& st = self->state;
    auto t = now_of(self);
    st.mem->core->on_result(epoch, ok, t - now, t);
    count_probe(ok ? "success" : "failure");
    log_info(component, std::string{"self-probe "} + (ok ? "succeeded" : "failed") + " in " +
                            std::to_string(to_ms(t - now)) + " ms");
    observe_transition(self);
    if (st.mem->core->state() == detail::breaker_state::half_open)
      self_probe(self);
  };
  self->request(pool, wait, std::move(call))
      .then([settle](db_result&) { settle(true); },
            [self, settle, epoch](caf::error& e) {
              // Only the backend's fault counts against it; a shed or a restarting pool frees
              // the slot and the watch tries again.
              auto v = judge(e, true, self->state.cfg.core.slow_call_duration);
              if (v == verdict::failure) {
                settle(false);
                return;
              }
              auto& st = self->state;
              st.mem->core->on_ignored(epoch);
              watch(self);
            });
}

/// Settles call `id` with the pool's answer (or the tick's judgement that none came): the core
/// hears how it went, the caller gets the answer. A call already settled is left alone.
void settle(self_ptr self, uint64_t id, caf::expected<db_result> answer) {
  auto& st = self->state;
  auto i = st.calls.find(id);
  if (i == st.calls.end())
    return;
  auto f = std::move(i->second);
  st.calls.erase(i);
  auto t = now_of(self);
  if (answer) {
    // Neither the wait for a connection (the node's load) nor a streamed answer's time on its
    // reader is the backend's.
    auto took = std::max(caf::timespan{0}, t - f.start - answer->pool_wait - answer->reader_wait);
    st.mem->core->on_result(f.epoch, true, took, t);
    st.mem->contention_since.reset();
    ++st.mem->successes;
    count(self, "success");
    observe_transition(self);
    f.rp.deliver(std::move(*answer));
    return;
  }
  auto& e = answer.error();
  auto v = judge(e, f.own_timeout, st.cfg.core.slow_call_duration);
  if (v == verdict::contention)
    v = on_contention(st, t);
  switch (v) {
  case verdict::failure:
    st.mem->core->on_result(f.epoch, false, t - f.start, t);
    ++st.mem->failures;
    count(self, "failure");
    break;
  case verdict::caller_error:
    st.mem->core->on_ignored(f.epoch);
    ++st.mem->caller_errors;
    count(self, "caller_error");
    break;
  case verdict::contention:
    st.mem->core->on_ignored(f.epoch);
    ++st.mem->contention;
    count(self, "contention");
    break;
  case verdict::ignored:
    st.mem->core->on_ignored(f.epoch);
    ++st.mem->ignored;
    count(self, "ignored");
  }
  observe_transition(self);
  f.rp.deliver(std::move(e));
}

/// Calls the pool has not answered a grace after their deadline: the path to the backend is
/// broken (judged as a request timeout always was). Run on every watch tick.
void expire_calls(self_ptr self) {
  auto& st = self->state;
  auto now = now_of(self);
  std::vector<uint64_t> late;
  for (auto& [id, f] : st.calls)
    if (now >= f.deadline + path_grace)
      late.push_back(id);
  for (auto id : late)
    settle(self, id, caf::make_error(caf::sec::request_timeout));
}

caf::result<db_result> on_call(self_ptr self, db_call& call) {
  auto& st = self->state;
  auto now = now_of(self);
  st.last_call = now;
  auto adm = st.mem->core->try_acquire(now);
  observe_transition(self);
  if (!adm.permitted) {
    ++st.mem->rejected;
    count(self, "rejected");
    std::string why;
    if (auto& t = st.mem->core->last_transition())
      why = t->reason;
    return make_error(errc::circuit_open, to_ms(adm.retry_after), why);
  }
  auto pool = st.dir->get<connection_pool_actor>("connection_pool");
  if (!pool) {
    st.mem->core->on_ignored(adm.epoch);
    ++st.mem->ignored;
    count(self, "ignored");
    return make_error(errc::component_unavailable, "connection_pool");
  }
  // The call's deadline: the caller's, but never longer than the call timeout. The pool
  // cancels the backend work when it passes.
  auto limit = now + st.cfg.call_timeout;
  if (call.deadline.count() == 0 || call.deadline > limit)
    call.deadline = limit;
  auto id = ++st.next_call;
  auto& f = st.calls[id];
  f.start = now;
  f.deadline = call.deadline;
  f.epoch = adm.epoch;
  f.own_timeout = call.deadline == limit;
  f.rp = st.owed.make(self);
  // No timer per call (detail/deadline_set.hpp says why): the pool answers every call by its
  // deadline, its owed answers do at once if it dies, and a call it still has not answered a
  // grace after the deadline is settled by the watch tick (expire_calls).
  self->request(pool, caf::infinite, std::move(call))
      .then([=](db_result& r) { settle(self, id, std::move(r)); },
            [=](caf::error& e) { settle(self, id, std::move(e)); });
  return caf::delegated<db_result>{};
}

circuit_breaker_actor::behavior_type circuit_breaker(self_ptr self, circuit_breaker_config cfg,
                                                     std::shared_ptr<component_directory> dir,
                                                     circuit_breaker_metrics* metrics,
                                                     std::shared_ptr<circuit_breaker_memory> mem) {
  auto& st = self->state;
  st.cfg = cfg;
  st.dir = std::move(dir);
  st.metrics = metrics;
  st.call_counts = labelled_children<prometheus::Counter>{metrics->calls};
  st.mem = mem ? std::move(mem) : std::make_shared<circuit_breaker_memory>();
  st.owed.attach(self, component);
  auto& core = st.mem->core;
  if (!core) {
    core = std::make_unique<detail::breaker_core>(cfg.core);
    st.seen_epoch = core->epoch();
  } else {
    // A restart: the state machine carries on. Calls the last incarnation admitted cannot report
    // any more; an open breaker keeps watching for the backend's return.
    st.seen_epoch = core->epoch();
    core->resume(now_of(self));
    log_info(component, std::string{"restarted in state "} + detail::to_string(core->state()));
  }
  observe_transition(self);
  if (core->state() == detail::breaker_state::open && !core->forced())
    start_watching(self);
  // The pool watch is periodic work: never deferred (it ends outages), not urgent.
  register_cleanup_tasks(self, st.dir,
                         {periodic_task("breaker_watch", component, cfg.watch_interval,
                                        caf::make_message(caf::tick_atom::value))});
  return {
      [=](db_call& call) { return on_call(self, call); },
      [=](caf::get_atom) { return status_of(self); },
      [=](caf::tick_atom) {
        expire_calls(self);
        if (self->state.watching)
          on_watch_tick(self);
        return caf::ok_atom::value;
      },
      [=](caf::timeout_atom) {
        if (self->state.watching)
          on_watch_tick(self);
      },
      [=](breaker_command cmd) {
        auto& core = *self->state.mem->core;
        auto now = now_of(self);
        switch (cmd) {
        case breaker_command::force_open:
          core.force_open(now);
          break;
        case breaker_command::force_closed:
          core.force_closed(now);
          break;
        case breaker_command::reset:
          core.reset(now);
          break;
        }
        observe_transition(self);
        return status_of(self);
      },
  };
}

} // namespace

circuit_breaker_actor spawn_circuit_breaker(caf::actor_system& sys, circuit_breaker_config cfg,
                                            std::shared_ptr<component_directory> dir,
                                            circuit_breaker_metrics* metrics,
                                            std::shared_ptr<circuit_breaker_memory> memory) {
  return sys.spawn(circuit_breaker, std::move(cfg), std::move(dir), metrics, std::move(memory));
}

} // namespace bulwark
