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
/// A remote caller is rate limited as its node unless remote.trust_client (front_door_remote);
/// nodes authenticate with mutual TLS (remote.tls). In-process callers (sinks, actors of this
/// node) name their own client: empty is trusted. Remote requests pending
/// here are bounded (`remote_gate`: remote.max_pending, then queue_full) and each holds a place
/// in the memory account (consumer "remote", refused: insufficient_memory) until answered. When
/// the node drains (SIGTERM), new remote requests are refused shutting_down and those pending
/// finish, as HTTP ones do. Remote callers need a timeout of their own or runtime/
/// remote_client.hpp, which fails them when the node goes (CAF 0.17 only times them out).

#include "actors/detail/memory_account.hpp"
#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

namespace bulwark {

/// What the engine and the front door share about remote requests: how many are pending (at most
/// `max_pending`), and whether the node drains. Thread-safe; CAF-free.
class remote_gate {
public:
  explicit remote_gate(size_t max_pending) : max_(max_pending) {}

  /// Takes a place for one more remote request; false when all `max_pending` are taken.
  bool try_enter() {
    std::lock_guard<std::mutex> lk(mu_);
    if (pending_ >= max_)
      return false;
    ++pending_;
    return true;
  }
  /// Gives a place back (its request was answered).
  void leave() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      --pending_;
    }
    idle_.notify_all();
  }
  /// From now on new remote requests are refused; those pending go on.
  void drain() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  /// Waits until no remote request is pending, at most `timeout`; true when none is.
  bool wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(mu_);
    return idle_.wait_for(lk, timeout, [this] { return pending_ == 0; });
  }
  size_t pending() const {
    std::lock_guard<std::mutex> lk(mu_);
    return pending_;
  }
  size_t max_pending() const { return max_; }

private:
  const size_t max_;
  mutable std::mutex mu_;
  std::condition_variable idle_;
  size_t pending_ = 0;
  std::atomic<bool> draining_{false};
};

/// What one pending remote request is charged in the memory account: its entry in the front
/// door's map with its promise, and the request as it arrived (statement, parameters).
uint64_t remote_request_cost(const gateway_request& req);

struct front_door_accounting {
  /// A remote request arrived.
  std::function<void()> received;
  /// A request's answer went out (exactly one of the two non-null).
  std::function<void(const db_result*, const caf::error*)> answered;
};

/// How the front door treats requests from other nodes.
struct front_door_remote {
  std::shared_ptr<remote_gate> gate;              ///< null: unbounded
  std::shared_ptr<detail::memory_account> memory; ///< null: not charged
  /// remote.trust_client. false: a request from another node is rate limited as that node,
  /// "node:<its node id>", whatever `client` it names (every node connected over mutual TLS
  /// has a certificate of the node's CA, so the id is an authenticated peer's). true: as the
  /// `client` it names (empty: trusted, not limited), for a gateway node forwarding its users.
  bool trust_client = false;
};

/// Where a front door sends requests: `gateways` gateway shards (gateway_shard_name), a client's
/// requests to shard hash(client) modulo `gateways`, an in-process caller's (no client) to shard
/// `index` modulo `gateways`, so that front door `index` and gateway `index` share the load.
struct front_door_route {
  uint32_t index = 0;
  uint32_t gateways = 1;
};

front_door_actor spawn_front_door(caf::actor_system& sys, std::shared_ptr<component_directory> dir,
                                  caf::timespan default_timeout, front_door_accounting account,
                                  front_door_remote remote = {}, front_door_route route = {});

} // namespace bulwark
