#pragma once
/// cache: one shard of the pipeline's cache. The gateway spreads keys over `cache.shards` shards
/// by key hash (detail::hash_bytes), so the cache scales with cores; each shard owns an
/// adaptive W-TinyLFU store (detail/adaptive_cache.hpp) with 1/shards of the entries and bytes.
///
/// | receives         | replies      | notes                                                |
/// |------------------|--------------|------------------------------------------------------|
/// | cache_get        | cache_lookup | a miss is found = false                              |
/// | cache_put        | string       | "stored", "too_large", "admission" (never silent)    |
/// | cache_erase      | bool         | whether the key was there                            |
/// | get_atom         | cache_stats  |                                                      |
/// | pressure_changed | -            | byte budget follows the level (below)                |
///
/// Pressure: on a rise the byte budget drops at once to the original's fractions below the
/// configured budget (15 %, 30 %, 50 % at medium, high, critical: detail::budget_at), evicting down
/// to it (reason "pressure"), and the action is reported to the monitor. On a fall the budget grows
/// back gradually, `restore_step` of the configured budget per tick, so a recovered node does not
/// refill in one burst and tip itself over again.
/// The expiry sweep and the restore run as its cleanup task `cache_sweep/<shard>` (tick_atom,
/// every `tick`, urgent at a rise), registered when the shard starts.
/// Keeps nothing across a restart: a shard restarts empty (DESIGN: "a cache restarts empty").

#include "actors/detail/memory_account.hpp"
#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace bulwark {

struct cache_config {
  /// cache.shards: how many shard actors.
  uint32_t shards = 2;
  /// cache.max_entries / cache.max_bytes: totals over all shards.
  uint64_t max_entries = 100'000;
  uint64_t max_bytes = 64u << 20;
  /// cache.max_entry_bytes: a larger value is refused (reported as too_large).
  uint64_t max_entry_bytes = 1u << 20;
  /// cache.default_ttl_ms: the TTL of a put that brings none.
  std::chrono::milliseconds default_ttl{300'000};
  /// cache.tick_ms: expiry sweep and budget restore period.
  std::chrono::milliseconds tick{1000};
  /// cache.restore_step: share of the configured budget given back per tick after a fall.
  double restore_step = 0.1;
};

struct cache_metrics {
  explicit cache_metrics(prometheus::Registry& reg);
  prometheus::Family<prometheus::Counter>* hits;       ///< by shard
  prometheus::Family<prometheus::Counter>* misses;     ///< by shard
  prometheus::Family<prometheus::Counter>* evictions;  ///< by reason
  prometheus::Family<prometheus::Counter>* refused;    ///< by reason
  prometheus::Family<prometheus::Gauge>* bytes;        ///< by shard
  prometheus::Family<prometheus::Gauge>* budget;       ///< by shard
  prometheus::Family<prometheus::Gauge>* entries;      ///< by shard
  prometheus::Family<prometheus::Gauge>* policy_bytes; ///< by shard: sketch and ghosts
};

/// The directory name of shard `i`: "cache/0", "cache/1", ...
std::string cache_shard_name(uint32_t i);

/// `account`: the node's memory account (null: none). The shard's bytes are reserved from it
/// (consumer "cache") as work of low priority, with the policy's own state (sketch and ghost
/// caches, `policy_bytes`): an entry the account has no room for is not
/// stored (refused, reason "memory"), so the cache only ever fills what low-priority work may.
cache_actor spawn_cache_shard(caf::actor_system& sys, cache_config cfg, uint32_t shard,
                              std::shared_ptr<component_directory> dir, cache_metrics* metrics,
                              std::shared_ptr<detail::memory_account> account = nullptr);

} // namespace bulwark
