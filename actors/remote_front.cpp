#include "actors/remote_front.hpp"

#include <caf/all.hpp>

#include <map>
#include <set>

namespace bulwark {

namespace {

/// A request relayed to the gateway and not yet answered.
struct pending_request {
  caf::typed_response_promise<db_result> rp;
  caf::actor_addr gateway;
};

struct remote_front_state {
  static constexpr const char* name = "remote_front";
  std::shared_ptr<component_directory> dir;
  caf::timespan timeout{0};
  remote_accounting account;
  uint64_t next_id = 0;
  std::map<uint64_t, pending_request> pending;
  std::set<caf::actor_addr> watched; ///< gateways monitored (one down message each)
};

using self_ptr = remote_gateway_actor::stateful_pointer<remote_front_state>;

/// Answers request `id` once: later answers for it (the gateway's, after a failure was already
/// sent) find nothing and are dropped.
void finish(self_ptr self, uint64_t id, caf::expected<db_result> answer) {
  auto& st = self->state;
  auto i = st.pending.find(id);
  if (i == st.pending.end())
    return;
  auto rp = i->second.rp;
  st.pending.erase(i);
  if (answer) {
    st.account(&*answer, nullptr);
    rp.deliver(std::move(*answer));
  } else {
    st.account(nullptr, &answer.error());
    rp.deliver(std::move(answer.error()));
  }
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

remote_gateway_actor::behavior_type remote_front(self_ptr self,
                                                 std::shared_ptr<component_directory> dir,
                                                 caf::timespan timeout, remote_accounting account) {
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
  // Shutdown: every request still pending gets an answer, not a silent timeout.
  self->set_exit_handler([self](caf::exit_msg& em) {
    fail_pending(self, nullptr, make_error(errc::shutting_down, std::string{"node stopping"}));
    self->quit(em.reason);
  });
  return {
      [=](gateway_request& req) -> caf::result<db_result> {
        auto& st = self->state;
        st.account(nullptr, nullptr);
        auto gw = st.dir->get<gateway_actor>("gateway");
        if (!gw) {
          auto e = make_error(errc::component_unavailable, std::string{"gateway"});
          st.account(nullptr, &e);
          return e;
        }
        if (st.watched.insert(gw.address()).second)
          self->monitor(gw);
        req.query.deadline = caf::timespan{0};       // the gateway applies the node's default
        req.priority = clamp_priority(req.priority); // any byte arrives from outside
        auto id = ++st.next_id;
        auto rp = self->make_response_promise<db_result>();
        st.pending.emplace(id, pending_request{rp, gw.address()});
        self->request(gw, st.timeout + std::chrono::seconds(3), std::move(req))
            .then([=](db_result& r) { finish(self, id, std::move(r)); },
                  [=](caf::error& e) { finish(self, id, std::move(e)); });
        return rp;
      },
  };
}

} // namespace

remote_gateway_actor spawn_remote_front(caf::actor_system& sys,
                                        std::shared_ptr<component_directory> dir,
                                        caf::timespan default_timeout, remote_accounting account) {
  return sys.spawn(remote_front, std::move(dir), default_timeout, std::move(account));
}

} // namespace bulwark
