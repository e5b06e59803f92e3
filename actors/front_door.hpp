#pragma once
/// front_door: the one entry for queries, whoever asks: the HTTP API and the embedded facade
/// (in-process: a `gateway_request` with a sink, sent without waiting for a reply) and other
/// nodes (the same message over CAF's network layer when `remote.listen` is set, answered with a
/// reply). Owned by the engine outside the supervision tree, so the handle it publishes outlives
/// every restart of what is behind it.
///
/// | receives        | replies   | errors                                                    |
/// |-----------------|-----------|-----------------------------------------------------------|
/// | gateway_request | db_result | the gateway's; component_unavailable while it restarts or |
/// |                 |           | when it dies under the request; shutting_down at stop      |
///
/// For every request it
/// - sets the one deadline of the whole path: now + `database.default_timeout_ms`, shortened by
///   the request's `timeout` (a duration, so it means the same on every machine; a caller's
///   `query.deadline` is ignored). Inner hops carry it and wait at most `path_grace` past it;
/// - clamps the priority (any byte can arrive from outside; the gateway sets the pool's priority
///   from it, never from `query.priority`);
/// - looks the gateway up per request and monitors it: a gateway that dies under a request
///   answers it component_unavailable at once (CAF 0.17 would only time the request out);
/// - answers exactly once: through the request's sink (in-process) or its reply (remote); a
///   gateway answer that comes after the request was answered is dropped;
/// - counts: `received` for a remote request when it arrives (an in-process caller counted its
///   own, with what it refused before asking), and the outcome of every request it answers,
///   through `answered`: for a remote one when it replies, for an in-process one when the sink
///   calls its `count` (the sink knows whether its answer is the one its caller gets).
///
/// A remote caller names its client in the request: empty is trusted (not rate limited), as for
/// in-process callers, so publish on loopback or a private network only. Remote callers need a
/// timeout of their own: a request to a node that vanished is not failed fast (CAF-0.17.md §8).

#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>

#include <functional>
#include <memory>

namespace bulwark {

struct front_door_accounting {
  /// A remote request arrived.
  std::function<void()> received;
  /// A request's answer went out (exactly one of the two non-null).
  std::function<void(const db_result*, const caf::error*)> answered;
};

front_door_actor spawn_front_door(caf::actor_system& sys, std::shared_ptr<component_directory> dir,
                                  caf::timespan default_timeout, front_door_accounting account);

} // namespace bulwark
