#pragma once
/// For an application on another CAF node that calls a bulwarkd (or an embedded engine that
/// publishes with remote.listen): one place that sets up a CAF system to talk to Bulwark nodes
/// the way the node itself does, and a connection that fails fast when the node goes.
///
///   caf::actor_system_config cfg;
///   bulwark::remote_config remote;                      // the same keys as the node's remote.*
///   remote.tls = {"client.pem", "client.key", "ca.pem"};
///   bulwark::configure_remote(cfg, remote);
///   caf::actor_system sys{cfg};
///   auto caller = bulwark::connect_remote(sys, remote, "bulwark.internal", 7000);
///   // request(*caller, ..., gateway_request{...}) -> db_result, or the node's error, or
///   // backend_unavailable at once when the node is gone (actors/remote_caller.hpp)

#include "actors/remote_caller.hpp"
#include "runtime/config.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <string>

namespace bulwark {

/// Bulwark's types, CAF's network layer, heartbeats every remote.heartbeat_interval_ms and a
/// peer declared gone after remote.peer_timeout_ms of silence, and, unless remote.plain, CAF's
/// OpenSSL module with remote.tls's certificate, key and CA (mutual TLS).
void configure_remote(caf::actor_system_config& cfg, const remote_config& remote);

/// Connects to the node's published front door at host:port (TLS unless remote.plain; `sys` set
/// up by configure_remote with the same `remote`) and spawns a remote_caller for it.
caf::expected<remote_caller_actor> connect_remote(caf::actor_system& sys,
                                                  const remote_config& remote,
                                                  const std::string& host, uint16_t port,
                                                  remote_caller_options opts = {});

} // namespace bulwark
