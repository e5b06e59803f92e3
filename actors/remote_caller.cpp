#include "actors/remote_caller.hpp"

#include "actors/clock.hpp"

#include <caf/all.hpp>

#include <map>

namespace bulwark {

namespace {

struct remote_caller_state {
  static constexpr const char* name = "remote_caller";
  remote_gateway_actor node;
  remote_caller_options opts;
  std::map<uint64_t, caf::typed_response_promise<db_result>> pending;
  uint64_t next_id = 0;
};

using self_ptr = remote_caller_actor::stateful_pointer<remote_caller_state>;

void finish(self_ptr self, uint64_t id, caf::expected<db_result> answer) {
  auto& pending = self->state.pending;
  auto i = pending.find(id);
  if (i == pending.end())
    return; // already failed when the node went
  auto rp = std::move(i->second);
  pending.erase(i);
  if (answer)
    rp.deliver(std::move(*answer));
  else
    rp.deliver(std::move(answer.error()));
}

/// How long a request may wait for the node: its budget plus the path's grace on the node and
/// a margin for the network.
caf::timespan wait_of(const remote_caller_state& st, const gateway_request& req) {
  auto budget = req.timeout.count() > 0 ? req.timeout : caf::timespan{st.opts.default_timeout};
  return budget + path_grace + std::chrono::seconds(1);
}

} // namespace

remote_caller_actor spawn_remote_caller(caf::actor_system& sys, remote_gateway_actor node,
                                        remote_caller_options opts) {
  return sys.spawn([node, opts](self_ptr self) -> remote_caller_actor::behavior_type {
    auto& st = self->state;
    st.node = node;
    st.opts = opts;
    self->monitor(node);
    self->set_down_handler([self](caf::down_msg& dm) {
      auto& st = self->state;
      auto gone = make_error(errc::backend_unavailable, "the node " + to_string(dm.source.node()) +
                                                            " is gone (" +
                                                            self->system().render(dm.reason) + ")");
      auto pending = std::move(st.pending);
      st.pending.clear();
      for (auto& kv : pending)
        kv.second.deliver(gone);
      // Nothing is left to do: it ends, so CAF answers every later request at once
      // (request_receiver_down), and an actor system can shut down without waiting for it.
      self->quit(gone);
    });
    return {
        [self](gateway_request& req) -> caf::result<db_result> {
          auto& st = self->state;
          if (st.pending.size() >= st.opts.max_pending)
            return make_error(errc::queue_full, int64_t{1000}, std::string{"remote_pending"},
                              std::to_string(st.opts.max_pending) +
                                  " requests to the node are pending");
          req.sink = {}; // local to this process: the node answers with a reply
          auto rp = self->make_response_promise<db_result>();
          auto id = ++st.next_id;
          st.pending.emplace(id, rp);
          self->request(st.node, wait_of(st, req), std::move(req))
              .then([self, id](db_result& r) { finish(self, id, std::move(r)); },
                    [self, id](caf::error& e) {
                      if (e == caf::sec::request_timeout)
                        e = make_error(errc::deadline_exceeded,
                                       std::string{"the node did not answer in time"});
                      finish(self, id, std::move(e));
                    });
          return rp;
        },
    };
  });
}

} // namespace bulwark
