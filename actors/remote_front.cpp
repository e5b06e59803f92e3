#include "actors/remote_front.hpp"

#include <caf/all.hpp>

namespace bulwark {

namespace {

remote_gateway_actor::behavior_type remote_front(remote_gateway_actor::pointer self,
                                                 std::shared_ptr<component_directory> dir,
                                                 caf::timespan timeout, remote_accounting account) {
  return {
      [=](gateway_request& req) -> caf::result<db_result> {
        auto gw = dir->get<gateway_actor>("gateway");
        if (!gw) {
          auto e = make_error(errc::component_unavailable, std::string{"gateway"});
          account(nullptr, &e);
          return e;
        }
        req.query.deadline = caf::timespan{0}; // the gateway applies the node's default
        auto rp = self->make_response_promise<db_result>();
        self->request(gw, timeout + std::chrono::seconds(3), std::move(req))
            .then(
                [=](db_result& r) mutable {
                  account(&r, nullptr);
                  rp.deliver(std::move(r));
                },
                [=](caf::error& e) mutable {
                  account(nullptr, &e);
                  rp.deliver(std::move(e));
                });
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
