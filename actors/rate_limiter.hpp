#pragma once
/// rate_limiter: per-key limits for the gateway (detail/rate_limit_table.hpp decides; this actor
/// owns the clock, the pressure reaction and the metrics). The engine runs one shard per gateway
/// shard, `rate_limiter/<i>`; a client's key lives in shard `client_shard(client, shards)`
/// (gateway.hpp), so limits stay exact per client while no single limiter is on every request's
/// path. Each shard holds its share of the key table's bytes and of the overflow bucket
/// (`shard_share`).
///
/// | receives         | replies        | notes                                              |
/// |------------------|----------------|----------------------------------------------------|
/// | limit_check      | limit_decision | exact: every request is counted, no decision cache |
/// | get_atom         | limiter_stats  |                                                    |
/// | pressure_changed | -              | the key table's byte budget follows the level      |
/// | tick_atom        | ok_atom        | its cleanup task `limiter_expiry` (idle keys)      |
///
/// Pressure: the table's byte budget is detail::budget_at(rate_limiter.max_bytes, level) (15 %,
/// 30 %, 50 % smaller at medium, high, critical); a rise shrinks it at once (idle keys first, then
/// least recently used), a fall restores it. Keys that find no place share the overflow bucket
/// (fail_closed, the default) or pass unlimited (fail_open), as configured.
/// Keeps nothing across a restart: every key starts with a full burst again (a restart can let
/// one extra burst per key through; the supervisor's intensity limit bounds how often).

#include "actors/detail/memory_account.hpp"
#include "actors/detail/rate_limit_table.hpp"
#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <chrono>
#include <memory>

namespace bulwark {

struct rate_limiter_config {
  /// rate_limiter.*: algorithm, rate_per_sec, burst, limit, window_ms, max_bytes, overflow,
  /// overflow_rate_per_sec, overflow_burst (checked by detail::validate). Defaults generous
  /// enough that one user never notices: 1000 requests/s per client with bursts of 2000.
  detail::rate_limit_config table = [] {
    detail::rate_limit_config c;
    c.rate_per_sec = 1000;
    c.burst = 2000;
    c.overflow_rate_per_sec = 10000;
    c.overflow_burst = 20000;
    return c;
  }();
  /// rate_limiter.expire_interval_ms: how often idle keys are dropped.
  std::chrono::milliseconds expire_interval{1000};
};

struct rate_limiter_metrics {
  explicit rate_limiter_metrics(prometheus::Registry& reg);
  prometheus::Family<prometheus::Counter>* decisions; ///< by decision
  prometheus::Family<prometheus::Counter>* evictions; ///< by reason
  prometheus::Family<prometheus::Gauge>* keys;        ///< by shard
  prometheus::Family<prometheus::Gauge>* bytes;       ///< by shard
  prometheus::Family<prometheus::Gauge>* budget;      ///< by shard
};

/// The directory name of limiter shard `i`: "rate_limiter/<i>".
std::string rate_limiter_shard_name(uint32_t i);

/// One shard's part of the node's limiter configuration when `shards` share it: per-key limits
/// unchanged (a key lives in one shard), the key table's byte budget (and sketch) and the shared
/// overflow bucket's rate and burst divided, so the node as a whole keeps what is configured.
rate_limiter_config shard_share(rate_limiter_config cfg, uint32_t shards);

/// `account`: the node's memory account (null: none); the table's bytes are reserved from it
/// (consumer "limiter"; its own max_bytes bounds it, so it is booked, never refused).
rate_limiter_actor spawn_rate_limiter(caf::actor_system& sys, rate_limiter_config cfg,
                                      uint32_t shard, std::shared_ptr<component_directory> dir,
                                      rate_limiter_metrics* metrics,
                                      std::shared_ptr<detail::memory_account> account = nullptr);

} // namespace bulwark
