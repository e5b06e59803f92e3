#pragma once
/// Replays a trace through one ghost cache (actors/detail/cache_shape.hpp) that sees every access,
/// its sketch counting each as the real cache's would: the cache tests compare it with textbook
/// ARC and with the real cache held at the same shape.

#include "actors/detail/cache_shape.hpp"

#include "bench/trace.hpp"

#include <cstddef>
#include <vector>

namespace bulwark::test {

/// Hits of a ghost of `capacity` entries in `shape` over `trace`.
inline size_t ghost_hits(const std::vector<bench::trace_request>& trace, size_t capacity,
                         const detail::cache_shape& shape) {
  detail::frequency_sketch sketch{capacity};
  detail::ghost_cache ghost{capacity, shape};
  size_t hits = 0;
  for (auto& r : trace) {
    auto h = detail::mix64(r.key);
    sketch.increment(h);
    hits += ghost.access(h, sketch) ? 1 : 0;
  }
  return hits;
}

} // namespace bulwark::test
