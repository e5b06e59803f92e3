#include "actors/front_door.hpp"

#include "actors/clock.hpp"

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
};

struct front_door_state {
  static constexpr const char* name = "front_door";
  std::shared_ptr<component_directory> dir;
  caf::timespan timeout{0};
  front_door_accounting account;
  uint64_t next_id = 0;
  std::map<uint64_t, pending_request> pending;
  std::set<caf::actor_addr> watched; ///< gateways monitored (one down message each)
  bool stopping = false;             ///< the engine is stopping: every request is refused
};

using self_ptr = front_door_actor::stateful_pointer<front_door_state>;

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

caf::result<db_result> on_request(self_ptr self, gateway_request& req) {
  auto& st = self->state;
  pending_request p;
  p.sink = std::move(req.sink.fn);
  req.sink = {};
  if (!p.sink) {
    st.account.received();
    p.rp = self->make_response_promise<db_result>();
  }
  if (st.stopping)
    return refuse(self, p, make_error(errc::shutting_down, std::string{"node stopping"}));
  auto gw = st.dir->get<gateway_actor>("gateway");
  if (!gw)
    return refuse(self, p, make_error(errc::component_unavailable, std::string{"gateway"}));
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
  self->request(gw, budget + path_grace, std::move(req))
      .then([=](db_result& r) { finish(self, id, std::move(r)); },
            [=](caf::error& e) { finish(self, id, std::move(e)); });
  return out;
}

front_door_actor::behavior_type front_door(self_ptr self, std::shared_ptr<component_directory> dir,
                                           caf::timespan timeout, front_door_accounting account) {
  auto& st = self->state;
  st.dir = std::move(dir);
  st.timeout = timeout;
  st.account = std::move(account);
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

front_door_actor spawn_front_door(caf::actor_system& sys, std::shared_ptr<component_directory> dir,
                                  caf::timespan default_timeout, front_door_accounting account) {
  return sys.spawn(front_door, std::move(dir), default_timeout, std::move(account));
}

} // namespace bulwark
