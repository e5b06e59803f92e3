#include "actors/front_door.hpp"

#include "actors/clock.hpp"
#include "actors/detail/deadline_set.hpp"
#include "actors/gateway.hpp"

#include <caf/all.hpp>

#include <map>
#include <set>

namespace bulwark {

namespace {

/// A request relayed to the gateway and not yet answered: its sink (in-process) or its reply
/// promise (remote), and the gateway it went to.
struct pending_request {
  std::shared_ptr<front_answer_fn> sink;
  caf::typed_response_promise<db_result> rp;
  caf::actor_addr gateway;
  /// A remote request's place: in the gate (given back when this goes) and in the memory
  /// account.
  std::shared_ptr<void> slot;
  detail::memory_reservation memory;
};

struct front_door_state {
  static constexpr const char* name = "front_door";
  std::shared_ptr<component_directory> dir;
  caf::timespan timeout{0};
  front_door_accounting account;
  uint64_t next_id = 0;
  std::map<uint64_t, pending_request> pending;
  /// Each pending request's last moment (its deadline plus the path's grace): the components
  /// answer by the deadline, so this only catches an answer lost to a bug. One timer for all.
  detail::deadline_set backstops;
  std::set<caf::actor_addr> watched; ///< gateways monitored (one down message each)
  bool stopping = false;             ///< the engine is stopping: every request is refused
  front_door_remote remote;
  front_door_route route;
  std::vector<std::string> gateways; ///< the shards' directory names, made once
};

using self_ptr = front_door_actor::stateful_pointer<front_door_state>;

/// The backstop timer's message: private, so it is not in the published interface (a node that
/// sends it anyway only makes the front door look for requests past their last moment).
using backstop_atom = caf::atom_constant<caf::atom("backstop")>;

void arm_backstop(self_ptr self, caf::timespan at) {
  caf::delayed_anon_send(caf::actor_cast<caf::actor>(self),
                         std::max(at - now_of(self), caf::timespan{0}), backstop_atom::value);
}

/// Gives `answer` to the request's caller, once, and counts its outcome: a remote caller's at
/// once, an in-process caller's when its sink says its answer is the one the caller gets.
void answer(self_ptr self, pending_request& p, caf::expected<db_result> answer) {
  auto& st = self->state;
  auto count = [&st, &answer] {
    if (answer)
      st.account.answered(&*answer, nullptr);
    else
      st.account.answered(nullptr, &answer.error());
  };
  if (p.sink) {
    bool counted = false;
    try {
      (*p.sink)(answer, [&] {
        if (!counted) {
          counted = true;
          count();
        }
      });
    } catch (...) {
      // The sinks guard themselves; one that throws anyway must not take the front door down.
    }
    return;
  }
  count();
  if (answer)
    p.rp.deliver(std::move(*answer));
  else
    p.rp.deliver(std::move(answer.error()));
}

/// Answers request `id` once: later answers for it (the gateway's, after a failure was already
/// sent) find nothing and are dropped.
void finish(self_ptr self, uint64_t id, caf::expected<db_result> result) {
  auto i = self->state.pending.find(id);
  if (i == self->state.pending.end())
    return;
  auto p = std::move(i->second);
  self->state.pending.erase(i);
  self->state.backstops.erase(id);
  answer(self, p, std::move(result));
}

/// Fails every pending request relayed to `gateway` (or all of them when it is null).
void fail_pending(self_ptr self, const caf::actor_addr& gateway, const caf::error& why) {
  std::vector<uint64_t> ids;
  for (auto& [id, p] : self->state.pending)
    if (!gateway || p.gateway == gateway)
      ids.push_back(id);
  for (auto id : ids)
    finish(self, id, why);
}

/// What the handler returns: the reply promise for a remote caller, nothing for one with a sink.
caf::result<db_result> reply_of(const pending_request& p) {
  if (p.sink)
    return caf::delegated<db_result>{};
  return p.rp;
}

/// Answers a request the front door refuses itself.
caf::result<db_result> refuse(self_ptr self, pending_request& p, caf::error why) {
  auto out = reply_of(p);
  answer(self, p, std::move(why));
  return out;
}

/// A remote request's place in the gate and the memory account; an error when it gets none.
caf::error admit_remote(self_ptr self, const gateway_request& req, pending_request& p) {
  auto& remote = self->state.remote;
  if (auto& gate = remote.gate) {
    if (gate->draining())
      return make_error(errc::shutting_down, std::string{"node draining"});
    if (!gate->try_enter())
      return make_error(errc::queue_full, int64_t{1000}, std::string{"remote_pending"},
                        std::to_string(gate->max_pending()) +
                            " remote requests are pending (remote.max_pending)");
    p.slot = std::shared_ptr<void>(nullptr, [gate](void*) { gate->leave(); });
  }
  if (remote.memory) {
    auto cost = remote_request_cost(req);
    auto k = static_cast<detail::memory_class>(clamp_priority(req.priority));
    p.memory = remote.memory->try_reserve(detail::memory_consumer::remote, cost, k);
    if (!p.memory)
      return make_error(errc::insufficient_memory, int64_t{1000},
                        "the memory budget has no room for a remote request (" +
                            std::to_string(cost) + " bytes)");
  }
  return caf::none;
}

caf::result<db_result> on_request(self_ptr self, gateway_request& req) {
  auto& st = self->state;
  // Read before the response promise is made: CAF 0.17 moves the sender into it.
  auto sender = self->current_sender();
  pending_request p;
  p.sink = std::move(req.sink.fn);
  req.sink = {};
  if (!p.sink) {
    st.account.received();
    p.rp = self->make_response_promise<db_result>();
  }
  if (st.stopping)
    return refuse(self, p, make_error(errc::shutting_down, std::string{"node stopping"}));
  if (!p.sink) {
    if (auto why = admit_remote(self, req, p))
      return refuse(self, p, std::move(why));
    // From another node: limited as that node, whatever client it names (unless trusted).
    if (!st.remote.trust_client && sender && sender->node() != self->node())
      req.client = "node:" + to_string(sender->node());
  }
  auto shard = req.client.empty() ? st.route.index % st.route.gateways
                                  : client_shard(req.client, st.route.gateways);
  auto& name = st.gateways[shard];
  auto gw = st.dir->get<gateway_actor>(name);
  if (!gw)
    return refuse(self, p, make_error(errc::component_unavailable, name));
  if (st.watched.insert(gw.address()).second)
    self->monitor(gw);
  // One deadline for the whole path, set here: the caller's budget within the node's default.
  auto budget = shortened(st.timeout, to_ms(req.timeout));
  req.timeout = caf::timespan{0};
  req.query.deadline = now_of(self) + budget;
  req.priority = clamp_priority(req.priority); // any byte arrives from outside
  p.gateway = gw.address();
  auto out = reply_of(p);
  auto id = ++st.next_id;
  st.pending.emplace(id, std::move(p));
  if (auto t = st.backstops.set(id, now_of(self) + budget + path_grace))
    arm_backstop(self, *t);
  self->request(gw, caf::infinite, std::move(req))
      .then([=](db_result& r) { finish(self, id, std::move(r)); },
            [=](caf::error& e) { finish(self, id, std::move(e)); });
  return out;
}

front_door_actor::behavior_type front_door(self_ptr self, std::shared_ptr<component_directory> dir,
                                           caf::timespan timeout, front_door_accounting account,
                                           front_door_remote remote, front_door_route route) {
  auto& st = self->state;
  st.remote = std::move(remote);
  st.route = route;
  st.route.gateways = std::max<uint32_t>(route.gateways, 1);
  for (uint32_t i = 0; i < st.route.gateways; ++i)
    st.gateways.push_back(gateway_shard_name(i));
  st.dir = std::move(dir);
  st.timeout = timeout;
  st.account = std::move(account);
  self->set_default_handler(
      [self](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
        if (!x.content().match_elements<backstop_atom>())
          return caf::sec::unexpected_message;
        auto& st = self->state;
        for (auto id : st.backstops.expire(now_of(self)))
          finish(self, id, caf::make_error(caf::sec::request_timeout));
        if (auto t = st.backstops.next())
          arm_backstop(self, *t);
        return caf::message{};
      });
  // A gateway that dies under a request does not answer it: fail those at once.
  self->set_down_handler([self](caf::down_msg& dm) {
    self->state.watched.erase(dm.source);
    fail_pending(self, dm.source,
                 make_error(errc::component_unavailable, std::string{"gateway"},
                            std::string{"the gateway stopped while handling the request"}));
  });
  // The engine stops (user_shutdown): every request still pending gets an answer, not a silent
  // timeout, and every later one is refused at once; the front door lives on until the engine
  // kills it last, so no caller's message is dropped unanswered meanwhile.
  self->set_exit_handler([self](caf::exit_msg& em) {
    fail_pending(self, nullptr, make_error(errc::shutting_down, std::string{"node stopping"}));
    self->state.stopping = true;
    if (em.reason != caf::exit_reason::user_shutdown)
      self->quit(em.reason);
  });
  return {
      [=](gateway_request& req) { return on_request(self, req); },
  };
}

} // namespace

uint64_t remote_request_cost(const gateway_request& req) {
  uint64_t bytes = sizeof(pending_request) + sizeof(gateway_request) + 128 + // map node, promise
                   req.client.size() + req.query.statement.size();
  auto values = [&](const std::vector<db_value>& xs) {
    for (auto& v : xs)
      bytes += sizeof(db_value) + v.text.size();
  };
  values(req.query.params);
  for (auto& step : req.query.steps) {
    bytes += sizeof(db_step) + step.statement.size();
    values(step.params);
  }
  for (auto& item : req.query.batch) {
    bytes += sizeof(item);
    values(item);
  }
  return bytes;
}

front_door_actor spawn_front_door(caf::actor_system& sys, std::shared_ptr<component_directory> dir,
                                  caf::timespan default_timeout, front_door_accounting account,
                                  front_door_remote remote, front_door_route route) {
  return sys.spawn(front_door, std::move(dir), default_timeout, std::move(account),
                   std::move(remote), route);
}

} // namespace bulwark
