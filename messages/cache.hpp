#pragma once
/// Messages of the cache shards. Values are opaque bytes: the gateway stores a serialized
/// `db_result`, other users whatever they like, so a shard never needs to know what it keeps.

#include <caf/meta/type_name.hpp>
#include <caf/timestamp.hpp>

#include <cstdint>
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
  std::string shape;         ///< the eviction policy's current shape, "window 1% tinylfu"
  uint64_t policy_bytes = 0; ///< the policy's sketch and ghost caches (charged with `bytes`)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_stats& x) {
  return f(caf::meta::type_name("bulwark::cache_stats"), x.shard, x.entries, x.bytes, x.max_bytes,
           x.hits, x.misses, x.evictions, x.refused, x.shape, x.policy_bytes);
}

} // namespace bulwark
