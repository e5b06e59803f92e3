#pragma once
/// remote_front: what a node publishes to other nodes over CAF's network layer (`remote.listen`).
/// Published handles must outlive restarts, but the gateway's handle changes with every restart
/// of the gateway; so the node publishes this forwarder, owned by the engine outside the
/// supervision tree, which looks the gateway up in the directory per request, relays its answer
/// (db_result, or an error of the `bulwark` category) and hands every answer to `account`, so
/// remote requests end in one counted outcome like HTTP and facade ones.
///
/// | receives        | replies   | errors                                                 |
/// |-----------------|-----------|--------------------------------------------------------|
/// | gateway_request | db_result | the gateway's; component_unavailable while it restarts |
///
/// Every request gets exactly one answer: the gateway's; component_unavailable at once when the
/// gateway dies while handling it (it is monitored; CAF 0.17 would only time the request out);
/// shutting_down for requests still pending when the engine stops the front.
///
/// The caller's priority is clamped to low..high (any byte can arrive; the gateway sets the
/// pool's priority from it, never from `query.priority`). The caller's `query.deadline` is ignored:
/// it is a time on the caller's clock, which means nothing on another machine. Remote queries get
/// the node's `database.default_timeout_ms`. A remote caller names its client in the request: empty
/// is trusted (not rate limited), as for in-process callers, so publish on loopback or a private
/// network only. Remote requests need a timeout of their own: a request to a node that vanished is
/// not failed fast (CAF-0.17.md §8).

#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>

#include <functional>
#include <memory>

namespace bulwark {

/// Called once when a request arrives (both null), then once with its answer (exactly one of
/// the two non-null).
using remote_accounting = std::function<void(const db_result*, const caf::error*)>;

remote_gateway_actor spawn_remote_front(caf::actor_system& sys,
                                        std::shared_ptr<component_directory> dir,
                                        caf::timespan default_timeout, remote_accounting account);

} // namespace bulwark
