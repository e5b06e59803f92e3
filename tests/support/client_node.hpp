#pragma once
/// A remote client node for tests: its own CAF actor system with the network layer and
/// Bulwark's types, to query a node's published gateway over BASP.

#include "messages/fwd.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include <chrono>
#include <memory>

namespace bulwark::test {

struct client_node {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;

  client_node() {
    register_types(cfg);
    cfg.load<caf::io::middleman>();
    cfg.set("logger.console", caf::atom("none"));
    sys = std::make_unique<caf::actor_system>(cfg);
  }

  /// One request, waited for (10 s at most).
  caf::expected<db_result> query(const remote_gateway_actor& gw, gateway_request req) {
    caf::scoped_actor self{*sys};
    caf::expected<db_result> out = caf::make_error(caf::sec::request_timeout);
    self->request(gw, std::chrono::seconds(10), std::move(req))
        .receive([&](db_result& r) { out = std::move(r); },
                 [&](caf::error& e) { out = std::move(e); });
    return out;
  }
};

} // namespace bulwark::test
