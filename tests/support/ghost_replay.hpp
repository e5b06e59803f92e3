#pragma once
/// Replays a trace through one ghost cache (actors/detail/cache_shape.hpp) that sees every access,
/// its sketch counting each as the real cache's would: the cache tests compare it with textbook
/// ARC and with the real cache held at the same shape.

#include "actors/detail/cache_shape.hpp"

#include "bench/trace.hpp"

#include <algorithm>
#include <cstddef>
#include <vector>

namespace bulwark::test {

struct ghost_replay {
  size_t hits = 0;
  size_t largest = 0; ///< the most entries the ghost held after any access
};

/// Replays `trace` through a ghost of `capacity` entries in `shape`.
inline ghost_replay replay_ghost(const std::vector<bench::trace_request>& trace, size_t capacity,
                                 const detail::cache_shape& shape) {
  detail::frequency_sketch sketch{capacity};
  detail::ghost_cache ghost{capacity, shape};
  ghost_replay out;
  for (auto& r : trace) {
    auto h = detail::mix64(r.key);
    sketch.increment(h);
    out.hits += ghost.access(h, sketch) ? 1 : 0;
    out.largest = std::max(out.largest, ghost.size());
  }
  return out;
}

} // namespace bulwark::test
