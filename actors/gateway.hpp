#pragma once
/// gateway: the request pipeline for HTTP, the embedded facade and remote callers. Every query
/// passes, in order:
/// 1. **shedding**: at critical memory pressure, low-priority requests are refused with `shed`
///    (retry-after `shed_retry_after`) before they cost anything;
///    **admission by bytes**: the query reserves what its statement's answers have lately cost
///    in memory (a decaying maximum, learned here from every answer; while a read-only
///    statement's first query is in flight the others of it wait for the cost it teaches; 4 KiB
///    for writes and when it fails)
///    from the node's memory account, under its priority's ceiling
///    (actors/detail/memory_account.hpp). No room: the request waits, in arrival order, for up
///    to half of its remaining deadline (at most `memory_wait_max` of them; none at critical
///    unless high priority; none while the oldest waiter has waited 100 ms: a standing queue is
///    overload, and refusing at once beats refusing late), retried every 5 ms; then
///    `insufficient_memory` (retry-after
///    `shed_retry_after`), before anything is allocated. The reservation travels with the query
///    (the connection grows it row by row, or cuts the result) and comes back in the answer,
///    which holds it until the caller drops it;
/// 2. **rate limiter**: the client's key (HTTP: X-Client-Id, else the peer address) is checked;
///    `limited` becomes `rate_limited` with the limiter's retry-after. A limiter that does not
///    answer fails the request closed (component_unavailable), never open. An empty client is an
///    in-process caller (the embedded facade, actor code): trusted, not limited;
/// 3. **cache**: read-only statements with `cache_ttl_ms > 0` are looked up by statement and
///    parameters in the shard `hash(key) % cache.shards`; a hit answers with `from_cache` set.
///    A cache shard that is down or slow is a miss, never a failure;
/// 4. **database**: on a miss, the query goes to the database actor (then breaker, pool), with
///    the request's priority as the pool's (`pool_priority`: high is served first, low shed
///    first). A complete (not truncated) answer is stored in the cache for the statement's TTL.
/// Reads may be stale for up to the statement's TTL after a write; set cache_ttl_ms to 0 for
/// statements that must always be fresh.
/// A batch (db_query::batch) passes the same stages once: it is admitted under
/// batch_label(statement) (its answer holds every item's rows), costs its item count at the
/// limiter (all or none), and bypasses the cache, reads included; the database runs its items.
///
/// | receives         | replies   | errors                                                   |
/// |------------------|-----------|----------------------------------------------------------|
/// | gateway_request  | db_result | shed, insufficient_memory, rate_limited,                 |
/// |                  |           | component_unavailable, database's                        |
/// | pressure_changed | -         | remembers the level for shedding                         |
/// Keeps nothing across a restart.

#include "actors/cache.hpp"
#include "actors/database.hpp"
#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

namespace bulwark {

struct gateway_config {
  /// gateway.shed_retry_after_ms: the retry-after of a request shed at critical pressure.
  std::chrono::milliseconds shed_retry_after{1000};
  /// gateway.component_timeout_ms: how long to wait for the limiter or a cache shard.
  std::chrono::milliseconds component_timeout{1000};
  /// gateway.memory_wait_max: how many requests may wait for room in the memory account (each
  /// for up to half of its remaining deadline) before more are refused at once; 0: none wait.
  uint32_t memory_wait_max = 256;
  /// gateway.shards: gateway actors, each with its front door and its rate limiter shard (0: one
  /// per scheduler thread; the engine resolves it before the gateways start).
  /// A single gateway and front door on every request's path bound the node at one core's
  /// worth, whatever the cores (bench/RESULTS.md, "The 2-core scaling proxy").
  uint32_t shards = 0;
};

struct gateway_metrics {
  explicit gateway_metrics(prometheus::Registry& reg);
  prometheus::Family<prometheus::Counter>* stages; ///< by stage and result
  /// bulwark_request_duration_seconds{class}: arrival to answer.
  prometheus::Histogram* served;
  prometheus::Histogram* rejected;
  prometheus::Histogram* failed;
};

/// The cache key of a query: statement and typed parameters, unambiguous (texts are
/// length-prefixed, so no parameter list can spell another's key).
std::string cache_key(const db_query& q);

/// The directory name of gateway shard `i`: "gateway/<i>". The engine runs gateway.shards of
/// them, and as many rate limiter shards; a front door sends a client's requests to gateway
/// `client_shard(client, shards)`, and every gateway asks limiter shard `client_shard` of the
/// client, so one client's limits are always decided in one place (exact per client) and its
/// requests wait in one memory queue. An in-process caller (no client) goes to its front door's
/// own gateway and is not limited.
std::string gateway_shard_name(uint32_t i);

/// The shard, of `shards`, that holds `client` (a non-empty client name).
uint32_t client_shard(const std::string& client, uint32_t shards);

/// `account`: the node's memory account (null: no admission by bytes).
gateway_actor spawn_gateway(caf::actor_system& sys, gateway_config cfg, uint32_t cache_shards,
                            std::shared_ptr<const detail::statement_catalog> statements,
                            std::chrono::milliseconds default_timeout,
                            std::shared_ptr<component_directory> dir, gateway_metrics* metrics,
                            std::shared_ptr<detail::memory_account> account = nullptr);

} // namespace bulwark
