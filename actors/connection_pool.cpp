#include "actors/connection_pool.hpp"

#include "actors/cleanup_manager.hpp"
#include "actors/clock.hpp"
#include "actors/detail/backoff.hpp"
#include "actors/detail/deadline_set.hpp"
#include "actors/log.hpp"
#include "actors/owed_answers.hpp"
#include "actors/pressure_subscription.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>

namespace bulwark {

connection_pool_metrics::connection_pool_metrics(prometheus::Registry& reg) {
  using namespace prometheus;
  auto& conns = BuildGauge()
                    .Name("bulwark_pool_connections")
                    .Help("Backend connections by state")
                    .Register(reg);
  idle = &conns.Add({{"state", "idle"}});
  busy = &conns.Add({{"state", "busy"}});
  connecting = &conns.Add({{"state", "connecting"}});
  queue_length = &BuildGauge()
                      .Name("bulwark_pool_queue_length")
                      .Help("Calls waiting for a connection")
                      .Register(reg)
                      .Add({});
  queue_limit =
      &BuildGauge()
           .Name("bulwark_pool_queue_limit")
           .Help("Current limit of the wait queue (tightens under pressure and poor health)")
           .Register(reg)
           .Add({});
  wait_seconds = &BuildHistogram()
                      .Name("bulwark_pool_wait_seconds")
                      .Help("Time calls waited for a connection")
                      .Register(reg)
                      .Add({}, Histogram::BucketBoundaries{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05,
                                                           0.1, 0.5, 1, 5});
  rejections = &BuildCounter()
                    .Name("bulwark_pool_rejections_total")
                    .Help("Calls refused or shed by the wait queue, by the strategy in force")
                    .Register(reg);
  acquire_timeouts = &BuildCounter()
                          .Name("bulwark_pool_acquire_timeouts_total")
                          .Help("Calls whose deadline passed (or could not be met) while waiting")
                          .Register(reg)
                          .Add({});
  call_timeouts = &BuildCounter()
                       .Name("bulwark_pool_call_timeouts_total")
                       .Help("Running calls cancelled on the backend at their deadline")
                       .Register(reg)
                       .Add({});
  replacements = &BuildCounter()
                      .Name("bulwark_pool_replacements_total")
                      .Help("Connections closed because they broke, aged or idled out")
                      .Register(reg)
                      .Add({});
  connect_failures = &BuildCounter()
                          .Name("bulwark_pool_connect_failures_total")
                          .Help("Connection attempts that failed")
                          .Register(reg)
                          .Add({});
  auto& lane = BuildCounter()
                   .Name("bulwark_pool_lane_calls_total")
                   .Help("Reads the scheduler lane took, by outcome: served there, or "
                         "handed_back to a connection thread (ran past the slice, would wait "
                         "for a lock, writes or streams)")
                   .Register(reg);
  lane_served = &lane.Add({{"outcome", "served"}});
  lane_handed_back = &lane.Add({{"outcome", "handed_back"}});
  auto& ahead = BuildCounter()
                    .Name("bulwark_pool_calls_ahead_total")
                    .Help("Calls sent ahead to a busy connection, by outcome: started there the "
                          "moment its call ended, or taken_back (another connection freed first, "
                          "the wait ended or was refused, the connection broke)")
                    .Register(reg);
  ahead_started = &ahead.Add({{"outcome", "started"}});
  ahead_taken_back = &ahead.Add({{"outcome", "taken_back"}});
}

connection_spawner backend_spawner(connection_factory connect) {
  return [connect](caf::actor_system& sys, std::shared_ptr<connection_handle> handle,
                   caf::actor owner) {
    return spawn_connection(sys, connect, std::move(handle), std::move(owner));
  };
}

connection_spawner lane_spawner(connection_factory connect, caf::timespan slice) {
  return [connect, slice](caf::actor_system& sys, std::shared_ptr<connection_handle> handle,
                          caf::actor owner) {
    return spawn_connection(sys, connect, std::move(handle), std::move(owner), slice);
  };
}

namespace {

constexpr const char* component = "connection_pool";

/// The id of the timeout that ends a connect backoff (call ids start at 1).
constexpr uint64_t connect_retry = 0;
/// The id of the timeout at the wait queue's `next_check` (its standing-delay rule).
constexpr uint64_t queue_check = std::numeric_limits<uint64_t>::max();
/// The timeout id of the one timer for every call's deadline (detail/deadline_set.hpp).
constexpr uint64_t deadline_tick = std::numeric_limits<uint64_t>::max() - 1;

enum class conn_state { connecting, idle, busy };

struct conn_entry {
  connection_actor handle;
  std::shared_ptr<connection_handle> control;
  conn_state state = conn_state::connecting;
  caf::timespan created{0};
  caf::timespan last_used{0};
  caf::timespan busy_since{0};  ///< when its current call started
  caf::timespan cancel_sent{0}; ///< when its current call was cancelled (0: not cancelled)
  uint64_t call = 0;            ///< the call it runs (0: none); may be answered already (timed out)
  /// The call sent ahead to it (0: none): it starts that one the moment `call` ends, unless the
  /// pool revokes it first (connection_handle::offer).
  uint64_t next = 0;
  bool lane = false; ///< the scheduler lane (outside min/max_connections)
};

struct call_entry {
  db_call call;
  owed_answers<db_result>::promise rp;
  caf::timespan enqueued{0};
  caf::timespan wait_deadline{0}; ///< while queued
  caf::timespan deadline{0};      ///< while running
  uint64_t conn = 0;              ///< 0 while queued
  caf::timespan started{0};       ///< when it got its connection
  /// Sent ahead to `conn`, which runs another call: it may not have started yet.
  bool ahead = false;
  /// A transaction past its deadline, cancelled, whose connection's answer is awaited.
  bool settling = false;
  /// The scheduler lane gave it back: its wait was counted when the lane took it.
  bool handed_back = false;
};

/// How long a transaction cancelled at its deadline may take to answer (rolled back or
/// committed) before the pool answers for it: well inside the path's grace, so the hops above
/// still wait for the answer.
constexpr caf::timespan transaction_settle = path_grace / 2;

struct connection_pool_state {
  static constexpr const char* name = "connection_pool";

  connection_pool_config cfg;
  connection_spawner spawner;
  connection_spawner lane_spawner; ///< empty: no scheduler lane
  /// A failed lane connect is tried again from here on (the pool's maintenance tick).
  caf::timespan lane_retry_at{0};
  /// Statements that did not fit the lane's slice, and how many more of their calls skip it.
  std::unordered_map<std::string, uint32_t> lane_skips;
  cancel_runner run_cancel;
  std::shared_ptr<component_directory> dir;
  connection_pool_metrics* metrics = nullptr;
  std::map<uint64_t, conn_entry> conns;
  std::map<uint64_t, call_entry> calls;
  owed_answers<db_result> owed; ///< the calls' answers, paid if the pool dies
  /// Every call's next deadline (waiting, running or settling), one timer in flight for them.
  detail::deadline_set deadlines;
  std::unique_ptr<detail::wait_queue> queue;
  detail::service_rate rate;
  uint64_t next_id = 0;
  double pressure = 0;
  pressure_level level = pressure_level::low;
  size_t last_limit = 0;
  uint64_t served = 0;
  uint64_t ok_acquires = 0;
  uint64_t failed_acquires = 0;
  uint64_t rejected = 0;
  uint64_t connect_failures_total = 0;
  uint64_t replacements = 0;
  uint32_t consecutive_connect_failures = 0;
  caf::timespan last_connected{0};
  /// The last sign of life from the backend: a connection answered a call or a ping, or opened.
  caf::timespan last_alive{0};
  caf::timespan next_connect_at{0};
  bool connect_retry_armed = false;
  /// The earliest queue_check timer in flight (none: none is).
  std::optional<caf::timespan> queue_check_at;
  std::string last_error;
  std::function<double()> jitter; ///< the connect backoff's draws (connection_pool_config)
};

using self_ptr = connection_pool_actor::stateful_pointer<connection_pool_state>;

size_t count(const connection_pool_state& st, conn_state s) {
  return static_cast<size_t>(std::count_if(st.conns.begin(), st.conns.end(),
                                           [s](auto& kv) { return kv.second.state == s; }));
}

/// The connections on threads of their own (what min/max_connections bound: all but the lane),
/// those in state `s` if given.
size_t threads(const connection_pool_state& st, std::optional<conn_state> s = std::nullopt) {
  return static_cast<size_t>(std::count_if(st.conns.begin(), st.conns.end(), [s](auto& kv) {
    return !kv.second.lane && (!s || kv.second.state == *s);
  }));
}

/// The scheduler lane's entry, or conns.end() when there is none.
std::map<uint64_t, conn_entry>::iterator lane_of(connection_pool_state& st) {
  return std::find_if(st.conns.begin(), st.conns.end(), [](auto& kv) { return kv.second.lane; });
}

/// The pool's health over its thread connections (the lane is outside its sizing: counted in,
/// it would read as over the maximum, and its every call as a swing in utilisation).
double health(const connection_pool_state& st) {
  return detail::pool_health(threads(st, conn_state::busy), threads(st), st.cfg.max_connections,
                             st.ok_acquires, st.failed_acquires);
}

/// Keeps a timer in flight for the wait queue's next check (a stale one finds nothing to do).
void arm_queue_check(self_ptr self) {
  auto& st = self->state;
  auto at = st.queue->next_check();
  if (!at || (st.queue_check_at && *st.queue_check_at <= *at))
    return;
  st.queue_check_at = *at;
  self->delayed_send(self, std::max(*at - now_of(self), caf::timespan{0}), caf::timeout_atom::value,
                     queue_check);
}

void update_gauges(self_ptr self) {
  auto& st = self->state;
  // Waiting while no call runs or completes is waiting for capacity (connections opening, a
  // backend reconnecting, a hung call), not a standing queue; behind slow calls the queue's
  // target is at least their mean service time (detail/pool_queue.hpp, rule 4).
  st.queue->set_service(count(st, conn_state::busy), st.rate.per_second(now_of(self)),
                        now_of(self));
  arm_queue_check(self);
  // Every handler ends here: the rate estimator's clock runs only while calls exist.
  st.rate.set_demand(!st.calls.empty(), now_of(self));
  st.metrics->idle->Set(static_cast<double>(count(st, conn_state::idle)));
  st.metrics->busy->Set(static_cast<double>(count(st, conn_state::busy)));
  st.metrics->connecting->Set(static_cast<double>(count(st, conn_state::connecting)));
  st.metrics->queue_length->Set(static_cast<double>(st.queue->size()));
  auto limit = st.queue->limit(st.pressure, health(st));
  st.metrics->queue_limit->Set(static_cast<double>(limit));
  if (st.last_limit != 0 && limit != st.last_limit)
    pressure_subscription::report(self, *st.dir, component, st.level,
                                  "queue limit " + std::to_string(st.last_limit) + " -> " +
                                      std::to_string(limit));
  st.last_limit = limit;
}

/// Interrupts call `id` on the connection behind `h`, off the scheduler (spawn_connection_pool's
/// `run_cancel`; by default a detached actor of its own, since the cancel may block).
void cancel_aside(self_ptr self, const std::shared_ptr<connection_handle>& h, uint64_t id) {
  auto job = [h, id] { h->cancel(id); };
  if (self->state.run_cancel)
    self->state.run_cancel(job);
  else
    self->system().spawn<caf::detached>(job);
}

/// Answers a call once; the entry goes, so later answers (a late backend reply) are ignored.
template <class T>
void answer(self_ptr self, uint64_t id, T&& x) {
  auto i = self->state.calls.find(id);
  if (i == self->state.calls.end())
    return;
  i->second.rp.deliver(std::forward<T>(x));
  self->state.calls.erase(i);
  self->state.deadlines.erase(id);
}

void open_connection(self_ptr self, bool lane = false);
void serve_queue(self_ptr self);

/// Opens the scheduler lane when there is none: once a thread connection has been up (so the
/// backend's init statements ran there, not on the scheduler), unless its last connect failed
/// less than connect_backoff_max ago.
void ensure_lane(self_ptr self) {
  auto& st = self->state;
  if (!st.lane_spawner || st.cfg.lane_slice.count() == 0 || st.last_connected.count() == 0 ||
      now_of(self) < st.lane_retry_at || lane_of(st) != st.conns.end())
    return;
  open_connection(self, true);
}

/// Opens connections while below the minimum, or while more calls wait than connections are
/// being opened (up to the maximum; opening ones count against it), unless a failed connect is
/// still backing off: then a retry is armed for when the backoff ends.
void ensure_capacity(self_ptr self) {
  auto& st = self->state;
  auto now = now_of(self);
  ensure_lane(self);
  auto opening = threads(st, conn_state::connecting);
  auto open = threads(st);
  while (open < st.cfg.max_connections &&
         (open < st.cfg.min_connections || st.queue->size() > opening)) {
    if (now < st.next_connect_at) {
      if (!st.connect_retry_armed) {
        st.connect_retry_armed = true;
        self->delayed_send(self, st.next_connect_at - now, caf::timeout_atom::value, connect_retry);
      }
      return;
    }
    open_connection(self);
    ++opening;
    ++open;
  }
}

void on_connection_ready(self_ptr self, uint64_t id) {
  auto& st = self->state;
  auto i = st.conns.find(id);
  if (i == st.conns.end())
    return;
  st.consecutive_connect_failures = 0;
  st.last_connected = now_of(self);
  st.last_alive = st.last_connected;
  i->second.state = conn_state::idle;
  i->second.last_used = now_of(self);
  ensure_lane(self);
  serve_queue(self);
  update_gauges(self);
}

void open_connection(self_ptr self, bool lane) {
  auto& st = self->state;
  auto id = ++st.next_id;
  auto control = std::make_shared<connection_handle>();
  auto h = (lane ? st.lane_spawner : st.spawner)(self->system(), control,
                                                 caf::actor_cast<caf::actor>(self));
  self->monitor(h);
  conn_entry e;
  e.handle = h;
  e.control = control;
  e.lane = lane;
  e.created = now_of(self);
  st.conns.emplace(id, std::move(e));
  // Ready once it answers a ping: the connect happens on the connection's own thread.
  self->request(h, caf::infinite, caf::ping_atom::value)
      .then([=](caf::ok_atom) { on_connection_ready(self, id); },
            [](caf::error&) { /* a failed connect ends the actor: handled in on_down */ });
}

/// Keeps the one deadline timer in flight for `at`, if none fires by then.
void arm_deadline_timer(self_ptr self, caf::timespan at) {
  self->delayed_send(self, std::max(at - now_of(self), caf::timespan{0}), caf::timeout_atom::value,
                     deadline_tick);
}

/// Call `id`'s next deadline is `at` (it replaces the one before).
void arm_deadline(self_ptr self, uint64_t id, caf::timespan at) {
  if (auto t = self->state.deadlines.set(id, at))
    arm_deadline_timer(self, *t);
}

void release(self_ptr self, uint64_t conn_id) {
  auto& st = self->state;
  auto i = st.conns.find(conn_id);
  if (i == st.conns.end())
    return;
  auto now = now_of(self);
  i->second.state = conn_state::idle;
  i->second.call = 0;
  i->second.cancel_sent = caf::timespan{0};
  i->second.last_used = now;
  if (now - i->second.created > st.cfg.max_lifetime) {
    // Aged out: close it; a fresh one replaces it if needed.
    ++st.replacements;
    st.metrics->replacements->Increment();
    self->send_exit(i->second.handle, caf::exit_reason::user_shutdown);
    self->demonitor(i->second.handle.address());
    st.conns.erase(i);
    ensure_capacity(self);
  }
  serve_queue(self);
  update_gauges(self);
}

void hand_back(self_ptr self, uint64_t call_id, uint64_t conn_id);
/// Connection `i` is gone (its down message, or a call that bounced off it untaken): it leaves
/// the pool, its calls are placed again or answered, and a replacement is started.
void connection_gone(self_ptr self, std::map<uint64_t, conn_entry>::iterator i,
                     const caf::error& reason);
void finished(self_ptr self, uint64_t conn_id, uint64_t call_id);

/// Call `call_id` has connection `conn_id` from now on (sent to it now, or sent ahead and now
/// its turn): the connection is busy with it and its run deadline is armed.
void start(self_ptr self, uint64_t call_id, uint64_t conn_id) {
  auto& st = self->state;
  auto& c = st.calls.at(call_id);
  auto& conn = st.conns.at(conn_id);
  auto now = now_of(self);
  conn.state = conn_state::busy;
  conn.busy_since = now;
  conn.cancel_sent = caf::timespan{0};
  conn.call = call_id;
  if (c.ahead) {
    st.queue->remove(call_id, now); // it kept its place in the queue until now
    st.metrics->ahead_started->Increment();
  }
  c.conn = conn_id;
  c.ahead = false;
  c.started = now;
  if (!c.handed_back) {
    st.metrics->wait_seconds->Observe(std::chrono::duration<double>(now - c.enqueued).count());
    ++st.ok_acquires;
  }
  arm_deadline(self, call_id, c.deadline);
}

/// Sends call `call_id` to connection `conn_id` and handles its answer.
void send(self_ptr self, uint64_t call_id, uint64_t conn_id) {
  auto& st = self->state;
  auto& c = st.calls.at(call_id);
  auto lane = st.conns.at(conn_id).lane;
  c.call.id = call_id; // what a cancel, an offer and a claim name (connection_handle)
  self->request(st.conns.at(conn_id).handle, caf::infinite, c.call)
      .then(
          [=](db_result& r) {
            auto& st = self->state;
            auto i = st.calls.find(call_id);
            if (i != st.calls.end())
              r.pool_wait = i->second.started - i->second.enqueued;
            ++st.served;
            st.last_alive = now_of(self);
            st.rate.on_served(now_of(self));
            if (lane)
              st.metrics->lane_served->Increment();
            answer(self, call_id, std::move(r));
            finished(self, conn_id, call_id);
          },
          [=](caf::error& e) {
            auto& st = self->state;
            // Taken back before it started: nothing ran, and the pool placed it elsewhere.
            if (is(e, errc::call_revoked))
              return;
            // A call that moved on (revoked from a connection that went down, or given back by
            // a lane that went down) is no longer this connection's to answer.
            auto i = st.calls.find(call_id);
            if (i != st.calls.end() && i->second.conn != conn_id)
              return;
            // The lane gave it back, or went down under it (CAF's own error,
            // request_receiver_down): either way the call runs on a connection thread.
            if (is(e, errc::slice_over) || (lane && e.category() != errc_category)) {
              hand_back(self, call_id, conn_id);
              return;
            }
            // It bounced off a thread connection that went down before taking it (a health
            // check found it broken an instant before): the connection is gone, so it is handled
            // as its down message would be (connection_gone: a call it never took waits for
            // another connection; one sent ahead keeps its place in the queue), and the down
            // message then finds nothing. Left in the pool until then, the dead connection
            // would still look busy, and the next waiter would be sent ahead to it.
            if (e == caf::sec::request_receiver_down && i != st.calls.end()) {
              auto c = st.conns.find(conn_id);
              if (c != st.conns.end() && !c->second.control->took(call_id)) {
                connection_gone(self, c, e);
                return;
              }
            }
            st.rate.on_served(now_of(self));
            st.last_error = describe(e);
            if (!is(e, errc::backend_unavailable)) // the server answered, if with an error
              st.last_alive = now_of(self);
            if (i != st.calls.end() && i->second.settling && is(e, errc::deadline_exceeded)) {
              // A transaction cancelled at its deadline, rolled back: answered as a statement
              // cut there is (call_cancelled with how long it ran, which the breaker judges),
              // still naming the step it stopped at.
              auto now = now_of(self);
              auto c = st.conns.find(conn_id);
              auto ran = c != st.conns.end() ? now - c->second.busy_since : caf::timespan{0};
              auto err =
                  make_error(errc::call_cancelled,
                             "cancelled after " + std::to_string(to_ms(now - i->second.enqueued)) +
                                 " ms and rolled back",
                             to_ms(ran));
              if (auto step = failed_step_of(e))
                err = with_failed_step(err, *step);
              answer(self, call_id, std::move(err));
            } else {
              answer(self, call_id, e);
            }
            // A broken connection ends itself; on_down replaces it. Anything else: reuse it.
            if (!is(e, errc::backend_unavailable))
              finished(self, conn_id, call_id);
          });
}

void dispatch(self_ptr self, uint64_t call_id, uint64_t conn_id) {
  start(self, call_id, conn_id);
  send(self, call_id, conn_id);
}

/// Takes call `id`, sent ahead, back from its connection: true when it will not run there (it
/// waits on in its place in the queue, unless the caller removed it); false when the connection
/// has started it.
bool take_back(self_ptr self, uint64_t id) {
  auto& st = self->state;
  auto& c = st.calls.at(id);
  auto conn = st.conns.find(c.conn);
  if (conn != st.conns.end()) {
    if (!conn->second.control->revoke(id))
      return false;
    conn->second.next = 0;
  }
  c.conn = 0;
  c.ahead = false;
  st.metrics->ahead_taken_back->Increment();
  return true;
}

/// Sends each busy thread connection with nothing ahead the queue's next waiter not yet sent
/// ahead, which it starts the moment its running call ends, with no round trip through the pool
/// in between. The call keeps its place in the queue (its limit, its shedding and its deadline
/// rules still apply: the pool takes it back to refuse it) until it starts. Not to a connection
/// whose call was cancelled (the backend may not be returning work) or that aged out (it closes
/// when it is next free).
void offer_ahead(self_ptr self) {
  auto& st = self->state;
  if (!st.cfg.call_ahead || st.queue->empty())
    return;
  auto now = now_of(self);
  auto sent_ahead = [&](uint64_t id) {
    auto i = st.calls.find(id);
    return i == st.calls.end() || i->second.ahead;
  };
  for (auto& [cid, conn] : st.conns) {
    if (conn.lane || conn.state != conn_state::busy || conn.next != 0 ||
        conn.cancel_sent.count() != 0 || now - conn.created > st.cfg.max_lifetime)
      continue;
    auto w = st.queue->first_not(sent_ahead);
    if (!w)
      return;
    auto& c = st.calls.at(w->id);
    c.conn = cid;
    c.ahead = true;
    conn.next = w->id;
    conn.control->offer(w->id);
    send(self, w->id, cid);
  }
}

/// Connection `conn_id` answered call `call_id`: it runs the call sent ahead to it, if any
/// (it claimed it on its own: only the pool revokes), else it is free.
void finished(self_ptr self, uint64_t conn_id, uint64_t call_id) {
  auto& st = self->state;
  auto i = st.conns.find(conn_id);
  if (i == st.conns.end() || i->second.call != call_id)
    return;
  auto next = std::exchange(i->second.next, 0);
  if (next == 0) {
    release(self, conn_id);
    return;
  }
  i->second.last_used = now_of(self);
  if (st.calls.count(next) != 0) {
    start(self, next, conn_id);
  } else {
    // Its caller had its answer already (the pool takes back what it answers, so only if
    // answered from outside the pool's rules): it runs all the same, to no one.
    i->second.call = next;
    i->second.busy_since = now_of(self);
  }
  offer_ahead(self);
  update_gauges(self);
}

/// Whether waiter `id`, which the queue let go (refused, shed), is to be answered: not when it
/// was sent ahead and its connection has started it (it runs; its answer comes from there).
bool still_waiting(self_ptr self, uint64_t id) {
  auto i = self->state.calls.find(id);
  return i == self->state.calls.end() || !i->second.ahead || take_back(self, id);
}

void serve_queue(self_ptr self) {
  auto& st = self->state;
  for (auto& [id, conn] : st.conns) {
    if (conn.state != conn_state::idle || conn.lane)
      continue;
    // The next waiter, sent ahead to a busy connection or not: a free connection runs it now,
    // unless its connection has just started it.
    while (auto w = st.queue->pop(now_of(self))) {
      auto i = st.calls.find(w->id);
      if (i == st.calls.end() || (i->second.ahead && !take_back(self, w->id)))
        continue;
      dispatch(self, w->id, id);
      break;
    }
    if (st.queue->empty())
      break;
  }
  offer_ahead(self);
}

/// A waiter that waited and then could no longer be served in time has timed out (504); a
/// newcomer refused because the queue ahead of it is longer than its deadline never waited: that
/// is the queue refusing load, queue_full with a retry-after (503), like any other refusal.
caf::error rejection_error(self_ptr self, detail::rejection_reason reason,
                           caf::timespan retry_after,
                           std::optional<detail::rejection_strategy> strategy, bool newcomer) {
  if (reason == detail::rejection_reason::deadline_exceeded && !newcomer)
    return make_error(errc::queue_timeout,
                      std::string{"the deadline cannot be met waiting for a connection"});
  auto s = strategy ? detail::to_string(*strategy) : "conservative";
  self->state.metrics->rejections->Add({{"strategy", s}}).Increment();
  ++self->state.rejected;
  return make_error(errc::queue_full, to_ms(retry_after), std::string{s},
                    std::string{detail::to_string(reason)});
}

/// True when no connection is open or opening and the last attempt to connect failed: nothing
/// in flight could still serve a waiter. (One failed connect among several that are still
/// opening is not a dead backend.)
bool backend_down(const connection_pool_state& st) {
  return st.consecutive_connect_failures > 0 && threads(st) == 0;
}

/// True when the backend does not even return cancelled work: some connection still runs a call
/// that was cancelled at its deadline at least `stuck_after` ago, and nothing has come back from
/// the backend (an answer, a ping, a new connection) since that cancel was sent. A live
/// backend honours a cancel in milliseconds (sqlite3_interrupt, PQcancel), so this holds for a
/// hung or unreachable server whatever deadlines callers choose, and never under load alone:
/// under load, work keeps coming back.
bool backend_stuck(const connection_pool_state& st, caf::timespan now) {
  for (auto& [cid, c] : st.conns)
    if (c.state == conn_state::busy && c.cancel_sent.count() != 0 &&
        now - c.cancel_sent >= st.cfg.stuck_after && st.last_alive < c.cancel_sent)
      return true;
  return false;
}

/// Runs call `id` in the scheduler lane if it is a plain declared read, nobody waits (the lane
/// takes no one ahead of a waiter), its statement is not skipping the lane, and the lane is idle.
bool try_lane(self_ptr self, uint64_t id) {
  auto& st = self->state;
  auto& call = st.calls.at(id).call;
  if (!fits_lane(call) || !st.queue->empty())
    return false;
  auto skip = st.lane_skips.find(call.statement);
  if (skip != st.lane_skips.end()) {
    if (--skip->second == 0)
      st.lane_skips.erase(skip);
    return false;
  }
  auto lane = lane_of(st);
  if (lane == st.conns.end() || lane->second.state != conn_state::idle)
    return false;
  dispatch(self, id, lane->first);
  return true;
}

void place(self_ptr self, uint64_t id);

caf::result<db_result> on_call(self_ptr self, db_call& call) {
  auto& st = self->state;
  auto now = now_of(self);
  if (call.deadline.count() == 0)
    call.deadline = now + st.cfg.call_timeout;
  if (call.deadline <= now)
    return make_error(errc::queue_timeout, std::string{"the deadline passed before the call"});
  auto id = ++st.next_id;
  call_entry e;
  e.rp = st.owed.make(self);
  e.enqueued = now;
  e.wait_deadline = std::min(call.deadline, now + st.cfg.acquire_timeout);
  e.deadline = call.deadline;
  e.call = std::move(call);
  caf::result<db_result> rp = caf::delegated<db_result>{};
  st.calls.emplace(id, std::move(e));
  st.rate.set_demand(true, now);
  if (!try_lane(self, id))
    place(self, id);
  update_gauges(self);
  return rp;
}

/// Call `id`, which did not run where it was sent (the lane had it, or a thread connection went
/// down before taking it), runs on a connection thread as if it had just come (its wait was
/// counted when it was first sent); nothing if it was answered already.
void place_again(self_ptr self, uint64_t id) {
  auto i = self->state.calls.find(id);
  if (i == self->state.calls.end())
    return;
  i->second.conn = 0;
  i->second.handed_back = true;
  place(self, id);
}

/// The lane gave call `call_id` back (connection `conn_id`): it runs on a thread, and its
/// statement skips the lane for a while.
void hand_back(self_ptr self, uint64_t call_id, uint64_t conn_id) {
  auto& st = self->state;
  st.metrics->lane_handed_back->Increment();
  if (auto i = st.calls.find(call_id); i != st.calls.end()) {
    if (st.lane_skips.size() >= 1024) // statements are few; a bound all the same
      st.lane_skips.clear();
    st.lane_skips[i->second.call.statement] = st.cfg.lane_skip;
  }
  release(self, conn_id);
  place_again(self, call_id);
  update_gauges(self);
}

/// Call `id` (not running) gets an idle thread connection, a place in the queue, or its answer.
void place(self_ptr self, uint64_t id) {
  auto& st = self->state;
  auto now = now_of(self);
  auto priority = st.calls.at(id).call.priority;
  auto wait_deadline = st.calls.at(id).wait_deadline;
  // An idle connection serves it at once.
  for (auto& [cid, conn] : st.conns)
    if (conn.state == conn_state::idle && !conn.lane) {
      dispatch(self, id, cid);
      return;
    }
  // No connection at all and the last connects failed: the backend is down. Waiting for the
  // deadline would only turn a dead backend into timeouts the breaker cannot tell from load.
  if (backend_down(st)) {
    ++st.failed_acquires;
    answer(self, id, make_error(errc::backend_unavailable, "cannot connect", st.last_error));
    return;
  }
  // Likewise a backend that does not return cancelled work: nothing in flight will serve a
  // waiter, and the breaker must hear of it now, not at the waiter's deadline.
  if (backend_stuck(st, now)) {
    ++st.failed_acquires;
    answer(self, id,
           make_error(errc::backend_unavailable, "the backend does not answer",
                      "cancelled work has not returned for " +
                          std::to_string(to_ms(now - st.last_alive)) + " ms"));
    return;
  }
  auto adm = st.queue->admit(detail::waiter{id, now, wait_deadline, priority}, now, st.pressure,
                             health(st), st.rate.per_second(now));
  auto refuse = [&](uint64_t who, detail::rejection_reason why, bool newcomer) {
    if (why == detail::rejection_reason::deadline_exceeded && !newcomer) {
      ++st.failed_acquires;
      st.metrics->acquire_timeouts->Increment();
    }
    answer(self, who, rejection_error(self, why, adm.retry_after, adm.strategy, newcomer));
  };
  for (auto& r : adm.rejected)
    if (still_waiting(self, r.id))
      refuse(r.id, r.reason, false);
  if (!adm.admitted)
    refuse(id, adm.reason, true);
  if (adm.admitted) {
    arm_deadline(self, id, wait_deadline);
    ensure_capacity(self);
    offer_ahead(self);
  }
}

/// What a waiter that got no connection is told.
std::string no_connection_within(caf::timespan waited) {
  return "no connection within " + std::to_string(to_ms(waited)) + " ms";
}

void on_call_deadline(self_ptr self, uint64_t id);

void on_deadline(self_ptr self, uint64_t id) {
  auto& st = self->state;
  if (id == deadline_tick) {
    for (auto due : st.deadlines.expire(now_of(self)))
      on_call_deadline(self, due);
    if (auto t = st.deadlines.next())
      arm_deadline_timer(self, *t);
    return;
  }
  if (id == queue_check) {
    // A standing queue sheds who waited past the target: a refusal under load (503 with a
    // retry-after), not a timeout; behind a stuck backend it is that failure (as on_deadline).
    st.queue_check_at.reset();
    auto now = now_of(self);
    auto shed = st.queue->shed_stale(now);
    auto retry = st.queue->retry_after(st.queue->size(), st.rate.per_second(now));
    auto strategy = detail::choose_strategy(st.pressure, health(st));
    auto stuck = backend_stuck(st, now);
    for (auto& r : shed) {
      if (!still_waiting(self, r.id))
        continue;
      if (!stuck) {
        answer(self, r.id, rejection_error(self, r.reason, retry, strategy, false));
        continue;
      }
      ++st.failed_acquires;
      auto i = st.calls.find(r.id);
      auto waited = i == st.calls.end() ? caf::timespan{0} : now - i->second.enqueued;
      answer(self, r.id, make_error(errc::backend_stuck, no_connection_within(waited)));
    }
    update_gauges(self);
    return;
  }
  if (id == connect_retry) {
    st.connect_retry_armed = false;
    ensure_capacity(self);
    update_gauges(self);
  }
}

/// Call `id`'s deadline came: a waiter gets no connection, a running call is cancelled.
void on_call_deadline(self_ptr self, uint64_t id) {
  auto& st = self->state;
  auto i = st.calls.find(id);
  if (i == st.calls.end())
    return;
  auto now = now_of(self);
  auto& c = i->second;
  if (c.conn == 0 || c.ahead) {
    if (now < c.wait_deadline)
      return; // an older timer
    if (c.ahead && !take_back(self, id)) {
      // Its connection has started it: the answer of the call before it is already on its way
      // here, and starts its run deadline.
      arm_deadline(self, id, c.deadline);
      return;
    }
    st.queue->remove(id, now);
    ++st.failed_acquires;
    st.metrics->acquire_timeouts->Increment();
    // "stuck": every connection is still busy with a call whose caller was already answered at
    // its deadline, i.e. the backend does not return even cancelled work. That is the backend's
    // failure, not load: the breaker counts it (a plain "queued" timeout it does not).
    answer(self, id,
           make_error(backend_stuck(st, now) ? errc::backend_stuck : errc::queue_timeout,
                      no_connection_within(now - c.enqueued)));
    update_gauges(self);
    return;
  }
  if (now < c.deadline)
    return;
  auto conn = st.conns.find(c.conn);
  if (!c.call.steps.empty() && !c.settling && conn != st.conns.end()) {
    // A transaction's answer must say whether it committed: cancel it on the server and let the
    // connection answer (rolled back, or committed just before the cancel came), for up to
    // transaction_settle; only a backend that does not even return that is answered from here.
    c.settling = true;
    c.deadline = now + transaction_settle;
    conn->second.cancel_sent = now;
    st.metrics->call_timeouts->Increment();
    cancel_aside(self, conn->second.control, id);
    arm_deadline(self, id, c.deadline);
    return;
  }
  // Running past its deadline: answer now and interrupt the statement on the server. The
  // cancel may block (PQcancel connects to the server), so it runs on a thread of its own.
  // The context says how long it ran on the connection: the breaker counts a call that ran
  // past its slow-call duration whatever deadline cut it (circuit_breaker.hpp). While the backend
  // is stuck, the timeout is that failure ("stuck") rather than a caller in a hurry.
  auto ran = caf::timespan{0};
  auto reader = caf::timespan{0};
  if (conn != st.conns.end()) {
    ran = now - conn->second.busy_since;
    // A streamed answer's call also waits for its reader: that time is the client's, not the
    // backend's (detail/result_stream.hpp).
    reader = std::min(
        ran, std::chrono::duration_cast<caf::timespan>(conn->second.control->reader_wait(id)));
    if (conn->second.cancel_sent.count() == 0)
      conn->second.cancel_sent = now;
    if (!c.settling)
      cancel_aside(self, conn->second.control, id);
  }
  if (!c.settling)
    st.metrics->call_timeouts->Increment();
  auto what = "cancelled after " + std::to_string(to_ms(now - c.enqueued)) + " ms";
  if (c.settling)
    what += "; the transaction did not answer its cancel within " +
            std::to_string(to_ms(transaction_settle)) + " ms: whether it committed is unknown";
  if (backend_stuck(st, now))
    answer(self, id, make_error(errc::backend_stuck, std::move(what)));
  else if (reader.count() > 0 && 2 * reader >= ran)
    // Most of the call went waiting for a reader too slow for the deadline: the client's time
    // ran out, nothing about the backend (the breaker ignores it).
    answer(self, id,
           make_error(errc::deadline_exceeded,
                      what + ", " + std::to_string(to_ms(reader)) +
                          " ms of it waiting for the client to read the streamed answer"));
  else
    answer(self, id, make_error(errc::call_cancelled, std::move(what), to_ms(ran - reader)));
}

void on_down(self_ptr self, caf::down_msg& dm) {
  auto& st = self->state;
  auto i = std::find_if(st.conns.begin(), st.conns.end(),
                        [&](auto& kv) { return kv.second.handle.address() == dm.source; });
  if (i != st.conns.end())
    connection_gone(self, i, dm.reason);
}

void connection_gone(self_ptr self, std::map<uint64_t, conn_entry>::iterator i,
                     const caf::error& reason) {
  auto& st = self->state;
  auto was = i->second.state;
  auto call = i->second.call;
  auto next = i->second.next;
  auto control = i->second.control;
  auto lane = i->second.lane;
  st.conns.erase(i);
  if (lane) {
    // The lane is an optimisation: its failures are not the backend's (a thread connection
    // reports those); a failed connect is tried again after the longest connect backoff.
    if (was == conn_state::connecting) {
      st.lane_retry_at = now_of(self) + st.cfg.connect_backoff_max;
      log_warn(component, "the scheduler lane cannot connect (" + describe(reason) +
                              "); calls use connection threads");
    } else {
      ++st.replacements;
      st.metrics->replacements->Increment();
    }
    if (call != 0)
      place_again(self, call);
    ensure_capacity(self); // a new lane, unless its connect is backing off
    update_gauges(self);
    return;
  }
  if (was == conn_state::connecting) {
    // A failed connect: back off exponentially with jitter before the next attempt.
    ++st.connect_failures_total;
    st.metrics->connect_failures->Increment();
    detail::backoff b{st.cfg.connect_backoff_initial, st.cfg.connect_backoff_max, 2, 0.5, 1.0};
    auto wait = std::chrono::duration_cast<caf::timespan>(
        b.wait(++st.consecutive_connect_failures, st.jitter));
    st.next_connect_at = now_of(self) + wait;
    st.last_error = describe(reason);
    if (st.consecutive_connect_failures == 1 || st.consecutive_connect_failures % 10 == 0)
      log_warn(component, "cannot connect (" + st.last_error + "); attempt " +
                              std::to_string(st.consecutive_connect_failures) + ", next in " +
                              std::to_string(to_ms(wait)) + " ms");
    // With no connection left (so none holds a call ahead), everyone waiting learns now that
    // the backend is down.
    if (backend_down(st))
      while (auto w = st.queue->pop(now_of(self)))
        answer(self, w->id, make_error(errc::backend_unavailable, "cannot connect", st.last_error));
  } else {
    ++st.replacements;
    st.metrics->replacements->Increment();
    st.last_error = describe(reason);
    // Its call broke with it, unless it never took it (it went down first, and the call's
    // bounce is still on its way): that one waits for another connection.
    if (call != 0 && !control->took(call))
      place_again(self, call);
    else if (call != 0)
      answer(self, call,
             make_error(errc::backend_unavailable, "the connection broke", describe(reason)));
    // The call sent ahead waits on in its place in the queue, unless it had started here.
    if (next != 0 && st.calls.count(next) != 0) {
      auto& c = st.calls.at(next);
      c.conn = 0;
      c.ahead = false;
      if (control->revoke(next)) {
        st.metrics->ahead_taken_back->Increment();
      } else {
        st.queue->remove(next, now_of(self));
        answer(self, next,
               make_error(errc::backend_unavailable, "the connection broke", describe(reason)));
      }
    }
  }
  ensure_capacity(self);
  update_gauges(self);
}

void on_tick(self_ptr self) {
  auto& st = self->state;
  auto now = now_of(self);
  std::vector<uint64_t> retire;
  size_t open = threads(st);
  for (auto& [id, c] : st.conns) {
    if (c.state != conn_state::idle)
      continue;
    bool aged = now - c.created > st.cfg.max_lifetime;
    bool idled =
        !c.lane && now - c.last_used > st.cfg.idle_timeout && open > st.cfg.min_connections;
    if (aged || idled) {
      retire.push_back(id);
      if (!c.lane)
        --open;
      continue;
    }
    // Health check: a broken connection fails the ping, ends itself and is replaced.
    self->request(c.handle, caf::infinite, caf::ping_atom::value)
        .then([self](caf::ok_atom) { self->state.last_alive = now_of(self); }, [](caf::error&) {});
  }
  for (auto id : retire) {
    auto& c = st.conns.at(id);
    self->demonitor(c.handle.address());
    self->send_exit(c.handle, caf::exit_reason::user_shutdown);
    st.conns.erase(id);
    ++st.replacements;
    st.metrics->replacements->Increment();
  }
  ensure_capacity(self);
  update_gauges(self);
}

pool_status status_of(self_ptr self) {
  auto& st = self->state;
  pool_status s;
  s.connections = st.conns.size();
  s.idle = count(st, conn_state::idle);
  s.busy = count(st, conn_state::busy);
  s.connecting = count(st, conn_state::connecting);
  s.queue_length = st.queue->size();
  auto h = health(st);
  s.queue_limit = st.queue->limit(st.pressure, h);
  s.strategy = detail::to_string(detail::choose_strategy(st.pressure, h));
  s.health = h;
  s.service_rate_per_s = st.rate.per_second(now_of(self));
  s.served = st.served;
  s.rejected = st.rejected;
  s.connect_failures = st.connect_failures_total;
  s.replacements = st.replacements;
  s.last_error = st.last_error;
  s.last_connected = st.last_connected;
  return s;
}

connection_pool_actor::behavior_type
connection_pool(self_ptr self, connection_pool_config cfg, connection_spawner spawner,
                std::shared_ptr<component_directory> dir, connection_pool_metrics* metrics,
                cancel_runner run_cancel, connection_spawner lane) {
  auto& st = self->state;
  st.cfg = cfg;
  st.lane_spawner = std::move(lane);
  st.jitter = cfg.connect_jitter ? cfg.connect_jitter : detail::random_uniform();
  st.spawner = std::move(spawner);
  st.run_cancel = std::move(run_cancel);
  st.dir = std::move(dir);
  st.metrics = metrics;
  st.queue = std::make_unique<detail::wait_queue>(cfg.queue);
  // A crash (an exception in a handler) answers every call still owed too.
  st.owed.attach(self, "connection_pool");
  self->set_down_handler([self](caf::down_msg& dm) { on_down(self, dm); });
  // Stopped by its supervisor or crashed on purpose: every waiter and running call of this
  // incarnation gets an answer first, never silence.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    for (auto& [id, c] : self->state.calls)
      c.rp.deliver(
          make_error(errc::pool_closed, "the connection pool stopped", describe(msg.reason)));
    self->state.calls.clear();
    // The statements still running belong to no one now: stop them on the server, or a
    // connection would run on until its statement ends by itself (and close only then). A call
    // sent ahead must not start at all (a write its caller was told did not happen).
    for (auto& [cid, conn] : self->state.conns) {
      if (conn.next != 0 && !conn.control->revoke(conn.next))
        cancel_aside(self, conn.control, conn.next);
      if (conn.state == conn_state::busy && conn.call != 0)
        cancel_aside(self, conn.control, conn.call);
    }
    self->quit(msg.reason);
  });
  pressure_subscription::subscribe(self, *st.dir);
  ensure_capacity(self);
  update_gauges(self);
  // Health checks find broken connections before callers do; never deferred, not urgent.
  register_cleanup_tasks(
      self, st.dir,
      {periodic_task("pool_maintenance", "connection_pool", cfg.health_check_interval,
                     caf::make_message(caf::tick_atom::value))});
  return {
      [=](db_call& call) { return on_call(self, call); },
      [=](caf::get_atom) { return status_of(self); },
      [=](pressure_changed& ev) {
        self->state.pressure = ev.ratio;
        self->state.level = ev.level;
        update_gauges(self);
      },
      [=](caf::tick_atom) {
        on_tick(self);
        return caf::ok_atom::value;
      },
      [=](caf::timeout_atom, uint64_t id) { on_deadline(self, id); },
  };
}

} // namespace

connection_pool_actor spawn_connection_pool(caf::actor_system& sys, connection_pool_config cfg,
                                            connection_spawner spawner,
                                            std::shared_ptr<component_directory> dir,
                                            connection_pool_metrics* metrics,
                                            cancel_runner run_cancel, connection_spawner lane) {
  return sys.spawn(connection_pool, std::move(cfg), std::move(spawner), std::move(dir), metrics,
                   std::move(run_cancel), std::move(lane));
}

} // namespace bulwark
