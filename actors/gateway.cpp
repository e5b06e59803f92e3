#include "actors/gateway.hpp"

#include "actors/clock.hpp"
#include "actors/detail/fifo_deadlines.hpp"
#include "actors/detail/frequency_sketch.hpp"
#include "actors/detail/text.hpp"
#include "actors/latency.hpp"
#include "actors/log.hpp"
#include "actors/metric_children.hpp"
#include "actors/owed_answers.hpp"
#include "actors/pressure_subscription.hpp"
#include "actors/rate_limiter.hpp"

#include <caf/all.hpp>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>

#include <cstdio>

namespace bulwark {

gateway_metrics::gateway_metrics(prometheus::Registry& reg)
    : stages(&prometheus::BuildCounter()
                  .Name("bulwark_gateway_stage_results_total")
                  .Help("What each pipeline stage decided: stage (shed, memory, limiter, cache, "
                        "database) "
                        "and result")
                  .Register(reg)) {
  auto& family = prometheus::BuildHistogram()
                     .Name("bulwark_request_duration_seconds")
                     .Help("Gateway requests from arrival to answer, by class (served, rejected: "
                           "refused before backend work, failed: errors and timeouts)")
                     .Register(reg);
  served = &family.Add({{"class", "served"}}, latency_buckets());
  rejected = &family.Add({{"class", "rejected"}}, latency_buckets());
  failed = &family.Add({{"class", "failed"}}, latency_buckets());
}

std::string cache_key(const db_query& q) {
  std::string key = q.statement;
  for (auto& p : q.params) {
    key += '\x1f';
    key += static_cast<char>('0' + static_cast<int>(p.kind));
    switch (p.kind) {
    case db_value_kind::null:
      break;
    case db_value_kind::integer:
      key += std::to_string(p.integer);
      break;
    case db_value_kind::real: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", p.real);
      key += buf;
      break;
    }
    case db_value_kind::text:
      // Length-prefixed: a text holding the separator cannot pass for two parameters
      // (["a\x1f3b", "c"] and ["a", "b\x1f3c"] would otherwise share a key, and one would be
      // answered with the other's rows).
      key += std::to_string(p.text.size());
      key += ':';
      key += p.text;
      break;
    case db_value_kind::boolean:
      key += p.boolean ? '1' : '0';
      break;
    }
  }
  return key;
}

namespace {

struct gateway_state;
using self_ptr = gateway_actor::stateful_pointer<gateway_state>;

/// What an ask of the limiter or a cache shard does when no answer came within
/// gateway.component_timeout: `act(self, what)`, `what` being the ask's own shared state.
struct ask_action {
  void (*act)(self_ptr, std::shared_ptr<void>&) = nullptr;
  std::shared_ptr<void> what;
};

struct gateway_state {
  static constexpr const char* name = "gateway";
  labelled_children<prometheus::Counter> stages; ///< bulwark_gateway_stage_total's children

  gateway_config cfg;
  uint32_t shards = 1;
  std::shared_ptr<const detail::statement_catalog> statements;
  caf::timespan default_timeout{0};
  std::shared_ptr<component_directory> dir;
  std::vector<std::string> limiters; ///< the rate limiter shards' names, by client_shard
  gateway_metrics* metrics = nullptr;
  pressure_level level = pressure_level::low;
  owed_answers<db_result> owed; ///< requests in flight, answered if it dies
  std::shared_ptr<detail::memory_account> account;
  /// What each statement's answers have lately cost in memory (bytes): a maximum that decays
  /// by 1/8 toward each new answer's cost. The admission asks for this much.
  std::map<std::string, uint64_t> expected_cost;
  /// Requests waiting for room in the memory account, oldest first (gateway.memory_wait_max).
  struct memory_waiter {
    gateway_request req;
    std::shared_ptr<void> rp; ///< the request's promise (a `promise`, see below)
    caf::timespan start{0};   ///< arrival (the request's duration)
    caf::timespan give_up{0}; ///< halfway from arrival to the deadline
    uint64_t need = 0;
  };
  std::deque<memory_waiter> waiting;
  bool retry_armed = false;
  /// Statements whose cost is not known yet and whose first query is in flight: the others of
  /// the statement wait for its answer to say what they cost, rather than all being admitted at
  /// a guess on a cold node.
  std::set<std::string> learning;
  /// Asks of the limiter and of cache shards still waiting, each with what it does when no
  /// answer came within gateway.component_timeout; one timer for all of them.
  detail::fifo_deadlines<ask_action> asks;
};

/// The asks' timer message: private, not in the gateway's interface.
using ask_timeout_atom = caf::atom_constant<caf::atom("asktimeout")>;

void arm_ask_timer(self_ptr self, caf::timespan at) {
  caf::delayed_anon_send(caf::actor_cast<caf::actor>(self),
                         std::max(at - now_of(self), caf::timespan{0}), ask_timeout_atom::value);
}

/// Starts an ask of the limiter or a cache shard, sent with no timeout of its own: CAF 0.17 sets
/// a clock timer per timed request and wakes the clock's thread for it (detail/deadline_set.hpp).
/// `on_timeout` runs if the ask is still open gateway.component_timeout from now.
uint64_t start_ask(self_ptr self, ask_action on_timeout) {
  auto& st = self->state;
  auto [id, arm] = st.asks.start(now_of(self) + st.cfg.component_timeout, std::move(on_timeout));
  if (arm)
    arm_ask_timer(self, *arm);
  return id;
}

/// Ends ask `id` as its answer comes: false if its time ran out first (the answer is late and
/// its timeout already acted).
bool end_ask(self_ptr self, uint64_t id) {
  return self->state.asks.end(id);
}

void expire_asks(self_ptr self) {
  auto& st = self->state;
  st.asks.expire(now_of(self), [self](ask_action& a) { a.act(self, a.what); });
  if (auto t = st.asks.next())
    arm_ask_timer(self, *t);
}

/// Refused before any backend work: the caller's or the load's doing, not a failure.
bool is_rejection(const caf::error& e) {
  if (e.category() != errc_category)
    return false;
  switch (static_cast<errc>(e.code())) {
  case errc::shed:
  case errc::insufficient_memory:
  case errc::rate_limited:
  case errc::queue_full:
  case errc::circuit_open:
  case errc::unknown_statement:
  case errc::bad_parameters:
    return true;
  default:
    return false;
  }
}

/// The request's response promise, which also times the request from its arrival to its answer
/// (bulwark_request_duration_seconds by class). Every answer of the pipeline goes through here.
class promise {
public:
  promise(self_ptr self, caf::timespan start)
      : self_(self), start_(start), rp_(self->state.owed.make(self)) {}

  void deliver(db_result r) {
    observe(self_->state.metrics->served);
    done_learning();
    rp_.deliver(std::move(r));
  }

  void deliver(caf::error e) {
    observe(is_rejection(e) ? self_->state.metrics->rejected : self_->state.metrics->failed);
    done_learning();
    rp_.deliver(std::move(e));
  }

  /// This request is its statement's first on a node that knows no cost for it yet.
  void learns(const std::string& statement) { learns_ = std::make_shared<std::string>(statement); }

private:
  void observe(prometheus::Histogram* h) { h->Observe(detail::secs(now_of(self_) - start_)); }

  /// The first answer taught the cost (learn_cost); one that failed teaches nothing, and the
  /// statement goes on from the 4 KiB guess rather than sending its queries one at a time.
  void done_learning() {
    if (!learns_)
      return;
    auto& st = self_->state;
    st.learning.erase(*learns_);
    st.expected_cost.emplace(*learns_, detail::result_cost(0, 0, 0));
    learns_.reset();
  }

  self_ptr self_;
  caf::timespan start_;
  owed_answers<db_result>::promise rp_;
  std::shared_ptr<std::string> learns_;
};

void count(self_ptr self, const char* stage, const char* result) {
  self->state.stages.at<2>({"stage", "result"}, {stage, result}).Increment();
}

/// CAF 0.17's inspectors take their argument by non-const reference, even to write it out; `r`
/// is only read.
std::string serialize(db_result& r) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  if (auto err = sink(r))
    return {};
  return std::string(buf.begin(), buf.end());
}

bool deserialize(const std::string& bytes, db_result& out) {
  caf::binary_deserializer source{nullptr, bytes.data(), bytes.size()};
  return !source(out);
}

/// Learns what answers of `statement` cost from one answer's final reservation.
void learn_cost(self_ptr self, const std::string& statement, uint64_t cost) {
  if (!self->state.account || cost == 0)
    return;
  auto& est = self->state.expected_cost[statement];
  est = std::max(cost, est - est / 8 + cost / 8);
}

/// The cost of answering from the cache: the cached bytes rendered, plus the decoded copy.
constexpr uint64_t cached_cost(uint64_t cached_bytes) {
  return detail::result_cost(cached_bytes, 0, 0);
}

/// What `q`'s answers are learned and admitted under: its statement (for a transaction its label),
/// or batch_label() for a batch, whose answer holds all its items.
std::string cost_label(const db_query& q) {
  return q.batch.empty() ? q.statement : batch_label(q.statement);
}

void run_database(self_ptr self, db_query q, promise rp, std::string key, caf::timespan ttl) {
  auto& st = self->state;
  auto db = st.dir->get<database_actor>("database");
  if (!db) {
    rp.deliver(make_error(errc::component_unavailable, "database"));
    return;
  }
  auto statement = cost_label(q);
  self->request(db, caf::infinite, std::move(q))
      .then(
          [=](db_result& r) mutable {
            count(self, "database", "served");
            learn_cost(self, statement, r.grant.bytes());
            if (!key.empty() && !r.truncated) {
              auto& st = self->state;
              auto shard = static_cast<uint32_t>(detail::hash_bytes(key) % st.shards);
              if (auto c = st.dir->get<cache_actor>(cache_shard_name(shard)))
                caf::anon_send(c, cache_put{std::move(key), serialize(r), ttl,
                                            1}); // nobody waits for "stored"
            }
            rp.deliver(std::move(r));
          },
          [=](caf::error& e) mutable {
            count(self, "database", "error");
            rp.deliver(std::move(e));
          });
}

void after_limiter(self_ptr self, db_query q, promise rp) {
  auto& st = self->state;
  auto* s = st.statements->find(q.statement);
  if (s == nullptr || !s->cacheable() || !q.batch.empty()) {
    // A batch passes the cache, reads too: its items run where the batch's width allows.
    run_database(self, std::move(q), std::move(rp), {}, caf::timespan{0});
    return;
  }
  // A cached statement's answers are kept whole (the cache stores them), so they are never
  // streamed (!may_stream(): HTTP opens no stream for them): their size is bounded by the
  // cache's own limits and the query limits.
  q.stream = {};
  auto ttl = caf::timespan{s->cache_ttl};
  auto key = cache_key(q);
  auto shard = static_cast<uint32_t>(detail::hash_bytes(key) % st.shards);
  auto c = st.dir->get<cache_actor>(cache_shard_name(shard));
  if (!c) {
    count(self, "cache", "unavailable");
    run_database(self, std::move(q), std::move(rp), std::move(key), ttl);
    return;
  }
  // What the lookup's answer and its timeout share: the first of them takes the query on.
  struct lookup {
    db_query q;
    promise rp;
    std::string key;
    caf::timespan ttl;
  };
  auto l = std::make_shared<lookup>(lookup{std::move(q), std::move(rp), std::move(key), ttl});
  static constexpr auto miss_as = [](self_ptr self, lookup& l, const char* what) {
    count(self, "cache", what);
    run_database(self, std::move(l.q), std::move(l.rp), std::move(l.key), l.ttl);
  };
  auto miss = [self, l](const char* what) { miss_as(self, *l, what); };
  // A shard slower than component_timeout is a miss.
  auto ask = start_ask(self, {[](self_ptr self, std::shared_ptr<void>& what) {
                                miss_as(self, *static_cast<lookup*>(what.get()), "unavailable");
                              },
                              l});
  self->request(c, caf::infinite, cache_get{l->key})
      .then(
          [self, l, ask, miss](cache_lookup& hit) {
            if (!end_ask(self, ask))
              return;
            db_result r;
            if (hit.found && deserialize(hit.value, r)) {
              count(self, "cache", "hit");
              r.from_cache = true;
              r.grant = std::move(l->q.grant);
              if (r.grant.held)
                r.grant.held->resize(cached_cost(hit.value.size()));
              l->rp.deliver(std::move(r));
              return;
            }
            miss("miss");
          },
          [self, ask, miss](caf::error&) {
            if (end_ask(self, ask))
              miss("unavailable");
          });
}

void after_admission(self_ptr self, gateway_request req, promise rp);

/// What a query of `statement` should reserve: what its answers have lately cost, 4 KiB before
/// the first (which grows its reservation as rows come, like any).
uint64_t expected_need(const gateway_state& st, const std::string& statement) {
  auto i = st.expected_cost.find(statement);
  return i != st.expected_cost.end() ? i->second : detail::result_cost(0, 0, 0);
}

/// Whether `statement`'s cost is still being learned by a query in flight: then this one waits.
/// Otherwise, if no cost is known, `rp`'s request becomes the one that learns it. Only reads
/// learn first: a write's answer is small, and serialising the first writes would change what
/// they do to each other (two calls that deadlock must still meet).
bool awaits_cost(gateway_state& st, const std::string& statement, promise& rp) {
  if (st.expected_cost.count(statement) != 0)
    return false;
  auto* s = st.statements->find(statement);
  if (s == nullptr || !s->read_only)
    return false;
  if (st.learning.count(statement) != 0)
    return true;
  st.learning.insert(statement);
  rp.learns(statement);
  return false;
}

/// Reserves `need` for `req` under its priority's ceiling; the grant travels with the query.
bool reserve(self_ptr self, gateway_request& req, uint64_t need) {
  auto& st = self->state;
  auto k = static_cast<detail::memory_class>(clamp_priority(req.priority));
  // Not counted by the account: a request that waits asks again; refuse_memory counts it once.
  auto r = st.account->try_reserve(detail::memory_consumer::results, need, k, false);
  if (!r)
    return false;
  req.query.grant.held = std::make_shared<detail::memory_reservation>(std::move(r));
  return true;
}

void refuse_memory(self_ptr self, const gateway_request& req, uint64_t need, promise& rp,
                   caf::timespan waited) {
  auto& st = self->state;
  auto k = static_cast<detail::memory_class>(clamp_priority(req.priority));
  count(self, "memory", "refused");
  st.account->count_refusal(detail::memory_consumer::results);
  auto why = "the memory budget has no room for " + std::to_string(need) + " bytes (" +
             std::to_string(st.account->room(k)) + " free for " + to_string(req.priority) +
             " priority)";
  if (waited.count() > 0)
    why += " after waiting " + std::to_string(to_ms(waited)) + " ms";
  rp.deliver(make_error(errc::insufficient_memory, to_ms(st.cfg.shed_retry_after), why));
}

/// While requests wait for memory, retry them every `memory_wait_interval`.
constexpr auto memory_wait_interval = std::chrono::milliseconds(5);
/// New requests join the memory queue only while its oldest has waited less than this: a burst
/// is absorbed, a standing queue (sustained overload) refuses at once.
constexpr auto memory_wait_target = std::chrono::milliseconds(100);

void arm_retry(self_ptr self) {
  auto& st = self->state;
  if (st.retry_armed || st.waiting.empty())
    return;
  st.retry_armed = true;
  self->delayed_send(self, memory_wait_interval, run_atom::value);
}

/// Admits waiting requests in arrival order while the account has room for the oldest (a
/// younger, smaller one never overtakes: a large answer would starve), and refuses those whose
/// wait is over wherever they stand.
void retry_waiting(self_ptr self) {
  auto& st = self->state;
  st.retry_armed = false;
  auto now = now_of(self);
  bool blocked = false;
  std::deque<gateway_state::memory_waiter> still;
  while (!st.waiting.empty()) {
    auto w = std::move(st.waiting.front());
    st.waiting.pop_front();
    auto& rp = *std::static_pointer_cast<promise>(w.rp);
    if (awaits_cost(st, cost_label(w.req.query), rp)) {
      // Waits for its statement's first answer; blocks nobody else meanwhile.
      if (now >= w.give_up)
        refuse_memory(self, w.req, w.need, rp, now - w.start);
      else
        still.push_back(std::move(w));
      continue;
    }
    w.need = expected_need(st, cost_label(w.req.query)); // learned while it waited, perhaps
    if (!blocked && reserve(self, w.req, w.need)) {
      count(self, "memory", "admitted");
      after_admission(self, std::move(w.req), rp);
      continue;
    }
    blocked = true;
    if (now >= w.give_up)
      refuse_memory(self, w.req, w.need, rp, now - w.start);
    else
      still.push_back(std::move(w));
  }
  st.waiting = std::move(still);
  arm_retry(self);
}

caf::result<db_result> on_request(self_ptr self, gateway_request& req) {
  auto& st = self->state;
  if (req.query.deadline == caf::timespan{0})
    req.query.deadline = now_of(self) + st.default_timeout;
  // The request's class decides the pool's order; a priority a caller wrote into the query
  // itself (a remote node can send any int32) counts for nothing.
  req.query.priority = pool_priority(req.priority);
  if (!req.query.batch.empty())
    req.query.stream = {}; // a batch answers whole
  promise rp{self, now_of(self)};
  if (st.level == pressure_level::critical && req.priority == request_priority::low) {
    count(self, "shed", "shed");
    rp.deliver(make_error(errc::shed, to_ms(st.cfg.shed_retry_after),
                          std::string{"low-priority request shed at critical memory pressure"}));
    return caf::delegated<db_result>{};
  }
  if (!st.account) {
    req.query.grant = {}; // nothing a caller sent stands for a reservation here
    after_admission(self, std::move(req), rp);
    return caf::delegated<db_result>{};
  }
  auto now = now_of(self);
  auto label = cost_label(req.query);
  auto need = expected_need(st, label);
  bool cold = awaits_cost(st, label, rp);
  if (!cold && reserve(self, req, need)) {
    count(self, "memory", "admitted");
    after_admission(self, std::move(req), rp);
    return caf::delegated<db_result>{};
  }
  // No room now. Wait for some, in arrival order, for up to half of what is left of the
  // deadline (the other half is the query's), unless the queue is full or the budget is at
  // critical (where only high-priority work is admitted and waiting would only age it).
  bool critical = st.account->snapshot().critical && req.priority != request_priority::high;
  // A queue whose oldest has waited past the target is standing, not absorbing a burst: under
  // sustained overload waiting only turns fast refusals into slow ones (CoDel's observation).
  bool standing = !st.waiting.empty() && now - st.waiting.front().start >= memory_wait_target;
  if (critical || standing || st.waiting.size() >= st.cfg.memory_wait_max ||
      req.query.deadline <= now) {
    refuse_memory(self, req, need, rp, caf::timespan{0});
    return caf::delegated<db_result>{};
  }
  count(self, "memory", "queued");
  gateway_state::memory_waiter w;
  w.give_up = now + (req.query.deadline - now) / 2;
  w.need = need;
  w.req = std::move(req);
  w.rp = std::make_shared<promise>(std::move(rp));
  w.start = now;
  st.waiting.push_back(std::move(w));
  arm_retry(self);
  return caf::delegated<db_result>{};
}

/// Past the memory admission: the limiter, then the cache and the database.
void after_admission(self_ptr self, gateway_request req, promise rp) {
  auto& st = self->state;
  if (req.client.empty()) {
    // An in-process caller (the embedded facade, actor code) is trusted: no limit.
    after_limiter(self, std::move(req.query), rp);
    return;
  }
  auto& limiter_name =
      st.limiters[client_shard(req.client, static_cast<uint32_t>(st.limiters.size()))];
  auto limiter = st.dir->get<rate_limiter_actor>(limiter_name);
  if (!limiter) {
    count(self, "limiter", "unavailable");
    rp.deliver(make_error(errc::component_unavailable, limiter_name));
    return;
  }
  // A batch of n items costs n requests of the client's limit, all or none.
  auto cost = static_cast<uint32_t>(std::max<size_t>(1, req.query.batch.size()));
  struct limit_ask {
    db_query q;
    promise rp;
    const std::string* limiter; ///< its name, in the gateway's state (limiters)
  };
  auto a =
      std::make_shared<limit_ask>(limit_ask{std::move(req.query), std::move(rp), &limiter_name});
  // A limiter that does not answer within component_timeout fails the request closed.
  static constexpr auto unavailable_for = [](self_ptr self, limit_ask& a) {
    count(self, "limiter", "unavailable");
    a.rp.deliver(make_error(errc::component_unavailable, *a.limiter));
  };
  auto unavailable = [self, a] { unavailable_for(self, *a); };
  auto ask = start_ask(self, {[](self_ptr self, std::shared_ptr<void>& what) {
                                unavailable_for(self, *static_cast<limit_ask*>(what.get()));
                              },
                              a});
  self->request(limiter, caf::infinite, limit_check{req.client, cost})
      .then(
          [self, a, ask](limit_decision& d) {
            if (!end_ask(self, ask))
              return;
            if (!d.allowed) {
              count(self, "limiter", "limited");
              a->rp.deliver(make_error(errc::rate_limited, to_ms(d.retry_after), d.decision));
              return;
            }
            count(self, "limiter", "allowed");
            after_limiter(self, std::move(a->q), std::move(a->rp));
          },
          [self, ask, unavailable](caf::error&) {
            if (end_ask(self, ask))
              unavailable();
          });
}

gateway_actor::behavior_type gateway(self_ptr self, gateway_config cfg, uint32_t shards,
                                     std::shared_ptr<const detail::statement_catalog> statements,
                                     std::chrono::milliseconds default_timeout,
                                     std::shared_ptr<component_directory> dir,
                                     gateway_metrics* metrics,
                                     std::shared_ptr<detail::memory_account> account) {
  auto& st = self->state;
  st.account = std::move(account);
  st.cfg = cfg;
  st.shards = std::max<uint32_t>(shards, 1);
  st.statements = std::move(statements);
  st.default_timeout = default_timeout;
  st.dir = std::move(dir);
  for (uint32_t i = 0; i < std::max<uint32_t>(cfg.shards, 1); ++i)
    st.limiters.push_back(rate_limiter_shard_name(i));
  st.owed.attach(self, "gateway");
  st.metrics = metrics;
  st.stages = labelled_children<prometheus::Counter>{metrics->stages};
  pressure_subscription::subscribe(self, *st.dir);
  self->set_default_handler(
      [self](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
        if (!x.content().match_elements<ask_timeout_atom>())
          return caf::sec::unexpected_message;
        expire_asks(self);
        return caf::message{};
      });
  return {
      [=](gateway_request& req) { return on_request(self, req); },
      [=](run_atom) { retry_waiting(self); },
      [](health_atom) { return caf::ok_atom::value; },
      [=](pressure_changed& ev) {
        auto& st = self->state;
        if (ev.level == st.level)
          return;
        bool was_shedding = st.level == pressure_level::critical;
        st.level = ev.level;
        if (was_shedding != (ev.level == pressure_level::critical))
          pressure_subscription::report(self, *st.dir, "gateway", ev.level,
                                        was_shedding ? "stopped shedding low-priority requests"
                                                     : "shedding low-priority requests");
      },
  };
}

} // namespace

uint32_t client_shard(const std::string& client, uint32_t shards) {
  return static_cast<uint32_t>(detail::hash_bytes(client) % std::max<uint32_t>(shards, 1));
}

std::string gateway_shard_name(uint32_t i) {
  return "gateway/" + std::to_string(i);
}

gateway_actor spawn_gateway(caf::actor_system& sys, gateway_config cfg, uint32_t cache_shards,
                            std::shared_ptr<const detail::statement_catalog> statements,
                            std::chrono::milliseconds default_timeout,
                            std::shared_ptr<component_directory> dir, gateway_metrics* metrics,
                            std::shared_ptr<detail::memory_account> account) {
  return sys.spawn(gateway, std::move(cfg), cache_shards, std::move(statements), default_timeout,
                   std::move(dir), metrics, std::move(account));
}

} // namespace bulwark
