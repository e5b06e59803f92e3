#pragma once
/// A remote client node for tests: its own CAF actor system with the network layer and
/// Bulwark's types, to query a node's published gateway over BASP.

#include "messages/fwd.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/remote_actor.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace bulwark::test {

/// A client's TLS files (CAF's OpenSSL module): all empty for plain BASP.
struct client_tls {
  std::string certificate;
  std::string key;
  std::string ca;
};

struct client_node {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  bool tls = false;

  explicit client_node(client_tls files = {}) {
    register_types(cfg);
    cfg.load<caf::io::middleman>();
    cfg.set("logger.console", caf::atom("none"));
    tls = !files.certificate.empty() || !files.ca.empty();
    if (tls) {
      cfg.load<caf::openssl::manager>();
      cfg.openssl_certificate = files.certificate;
      cfg.openssl_key = files.key;
      cfg.openssl_cafile = files.ca;
    }
    sys = std::make_unique<caf::actor_system>(cfg);
  }

  /// The node's published gateway, over TLS when this client has TLS files.
  caf::expected<remote_gateway_actor> connect(uint16_t port) {
    if (tls)
      return caf::openssl::remote_actor<remote_gateway_actor>(*sys, "127.0.0.1", port);
    return sys->middleman().remote_actor<remote_gateway_actor>("127.0.0.1", port);
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
