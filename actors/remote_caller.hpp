#pragma once
/// remote_caller: an application's way to a Bulwark node on another process or machine. It
/// forwards each `gateway_request` to the node's published front door and answers it exactly
/// once, and it watches the node: when the node goes (its connection closes, or it sends nothing
/// for remote.peer_timeout_ms, CAF's heartbeat check), every pending request is failed at once
/// with backend_unavailable naming the node. CAF 0.17 alone would leave them waiting for their
/// own timeouts (CAF-0.17.md §8). runtime/remote_client.hpp connects one.
///
/// | receives        | replies   | errors                                                    |
/// |-----------------|-----------|-----------------------------------------------------------|
/// | gateway_request | db_result | the node's; backend_unavailable when the node goes;       |
/// |                 |           | queue_full past `max_pending`; deadline_exceeded when the |
/// |                 |           | node does not answer within the request's timeout + 2 s   |
///
/// A request without a timeout of its own gets `default_timeout` (the node's default deadline
/// is not known here). Once the node is gone the actor ends, and CAF answers every later request
/// at once with request_receiver_down; connect again for a new one. Not supervised: the
/// application owns it.

#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>

#include <chrono>
#include <cstddef>

namespace bulwark {

/// What a remote_caller answers to: the front door's interface, so code written against a
/// local front door works through it unchanged.
using remote_caller_actor = front_door_actor;

struct remote_caller_options {
  /// Requests pending at once; more are refused queue_full.
  size_t max_pending = 1024;
  /// The budget of a request that brings none (gateway_request::timeout 0).
  std::chrono::milliseconds default_timeout{5000};
};

remote_caller_actor spawn_remote_caller(caf::actor_system& sys, remote_gateway_actor node,
                                        remote_caller_options opts = {});

} // namespace bulwark
