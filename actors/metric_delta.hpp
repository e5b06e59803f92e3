#pragma once
/// Publishing a CAF-free core's cumulative counters as Prometheus counters: the core counts, the
/// actor adds what changed since it last published. Used by the cache shards and the limiter.

#include <prometheus/counter.h>
#include <prometheus/family.h>

#include <cstdint>
#include <map>
#include <string>

namespace bulwark {

/// Adds `total - reported` to the series `labels` of `family` (creating it only when there is
/// something to add) and remembers `total`.
inline void publish_delta(prometheus::Family<prometheus::Counter>& family,
                          const std::map<std::string, std::string>& labels, uint64_t total,
                          uint64_t& reported) {
  if (total == reported)
    return;
  family.Add(labels).Increment(static_cast<double>(total - reported));
  reported = total;
}

} // namespace bulwark
