#include "runtime/remote_client.hpp"

#include "messages/type_ids.hpp"
#include "runtime/openssl_error_queue.hpp"

#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/remote_actor.hpp>

namespace bulwark {

void configure_remote(caf::actor_system_config& cfg, const remote_config& remote) {
  register_types(cfg);
  cfg.load<caf::io::middleman>();
  // A peer that sends nothing, not even a heartbeat, for peer_timeout is gone: its connection
  // closes, so its proxies go down (CAF 0.17 checks the timeout on each heartbeat tick).
  cfg.set("middleman.heartbeat-interval", caf::timespan{remote.heartbeat_interval});
  cfg.set("middleman.connection-timeout", caf::timespan{remote.peer_timeout});
  if (remote.plain)
    return;
  // Mutual TLS: CAF's OpenSSL module requires a certificate chained to `ca` from every peer,
  // both ways, and refuses the handshake otherwise.
  cfg.load<caf::openssl::manager>();
  cfg.openssl_certificate = remote.tls.certificate;
  cfg.openssl_key = remote.tls.key;
  cfg.openssl_cafile = remote.tls.ca;
}

caf::expected<remote_caller_actor> connect_remote(caf::actor_system& sys,
                                                  const remote_config& remote,
                                                  const std::string& host, uint16_t port,
                                                  remote_caller_options opts) {
  if (!remote.plain)
    (void)openssl_error_queue_fixed(); // links runtime/openssl_error_queue.cpp in: CAF needs it
  auto node = remote.plain ? sys.middleman().remote_actor<remote_gateway_actor>(host, port)
                           : caf::openssl::remote_actor<remote_gateway_actor>(sys, host, port);
  if (!node)
    return node.error();
  return spawn_remote_caller(sys, *node, opts);
}

} // namespace bulwark
