#pragma once
/// Messages of the request pipeline: the cache shards (`cache_*`), the rate limiter
/// (`limit_check` → `limit_decision`) and the gateway (`gateway_request` → `db_result`).
/// Cache values are opaque bytes: the gateway stores a serialized `db_result`, other users
/// whatever they like, so a shard never needs to know what it keeps.

#include "messages/database.hpp"

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace bulwark {

/// Read `key`; the answer is a `cache_lookup` (a miss is `found == false`, not an error).
struct cache_get {
  std::string key;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_get& x) {
  return f(caf::meta::type_name("bulwark::cache_get"), x.key);
}

struct cache_lookup {
  bool found = false;
  std::string value;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_lookup& x) {
  return f(caf::meta::type_name("bulwark::cache_lookup"), x.found, x.value);
}

/// Store `value` under `key` for `ttl` (0: the shard's default). Priority 0 low, 1 normal,
/// 2 high (outlives normal entries). The answer says "stored", "too_large" or "admission".
struct cache_put {
  std::string key;
  std::string value;
  caf::timespan ttl{0};
  uint8_t priority = 1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_put& x) {
  return f(caf::meta::type_name("bulwark::cache_put"), x.key, x.value, x.ttl, x.priority);
}

struct cache_erase {
  std::string key;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_erase& x) {
  return f(caf::meta::type_name("bulwark::cache_erase"), x.key);
}

/// One shard's state (`get_atom`).
struct cache_stats {
  uint32_t shard = 0;
  uint64_t entries = 0;
  uint64_t bytes = 0;
  uint64_t max_bytes = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
  uint64_t refused = 0;
  std::string shape; ///< the eviction policy's current shape, "window 1% tinylfu"
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_stats& x) {
  return f(caf::meta::type_name("bulwark::cache_stats"), x.shard, x.entries, x.bytes, x.max_bytes,
           x.hits, x.misses, x.evictions, x.refused, x.shape);
}

/// Ask the rate limiter whether `key` may make one request now (and count it if so).
struct limit_check {
  std::string key;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, limit_check& x) {
  return f(caf::meta::type_name("bulwark::limit_check"), x.key);
}

/// The limiter's answer: a value, not an error (DESIGN: a decision is `{allowed, retry_after}`).
struct limit_decision {
  bool allowed = true;
  caf::timespan retry_after{0}; ///< when limited: wait this long
  uint64_t remaining = 0;       ///< requests still allowed at once
  std::string decision;         ///< the metric label: "allowed", "limited", "overflow_limited"...
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, limit_decision& x) {
  return f(caf::meta::type_name("bulwark::limit_decision"), x.allowed, x.retry_after, x.remaining,
           x.decision);
}

/// The limiter's state (`get_atom`).
struct limiter_stats {
  uint64_t keys = 0;
  uint64_t bytes = 0;
  uint64_t max_bytes = 0;
  uint64_t allowed = 0;
  uint64_t limited = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, limiter_stats& x) {
  return f(caf::meta::type_name("bulwark::limiter_stats"), x.keys, x.bytes, x.max_bytes, x.allowed,
           x.limited);
}

/// The priority classes of a request (header X-Priority): low work is shed first.
enum class request_priority : uint8_t { low = 0, normal = 1, high = 2 };

/// "low", "normal" or "high".
const char* to_string(request_priority x);

/// A query through the whole pipeline: rate limiter (by `client`), cache (read-only statements
/// with a cache TTL), database.
struct gateway_request {
  std::string client;
  request_priority priority = request_priority::normal;
  db_query query;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, gateway_request& x) {
  return f(caf::meta::type_name("bulwark::gateway_request"), x.client, x.priority, x.query);
}

} // namespace bulwark
