#pragma once
/// How the adaptive cache adapts: it is a W-TinyLFU cache (cache_segments.hpp) whose *shape* (the
/// window's share of the capacity, and whether a candidate leaving the window must be more
/// frequent than the victim to get in) is chosen by **miniature simulation** (Waldspurger et al.,
/// "Cache Modeling and Optimization using Miniature Simulations", USENIX ATC 2017).
///
/// The traces show why (../shared/data/traces/README.md): a small window with frequency admission
/// wins on loops and scans (gli, oltp at small sizes), a large window or plain admission wins on
/// recency-heavy traffic (scarab, oltp at 10 %). No single shape wins everywhere, and a hill
/// climber that nudges one knob by its own recent hit rate is misled by noise (the reference
/// table's W-TinyLFU+HC loses to the fixed 1 % window on oltp 10 %).
///
/// So `shape_selector` keeps one small *ghost* cache (keys' hashes only, no values) per candidate
/// shape, all fed the same spatially sampled part of the stream: a key takes part when its hash
/// falls in the lowest 1/R of the hash space, and every ghost holds capacity / R entries, R chosen
/// so that a ghost holds about `ghost_entries` (R = 1 for small caches: the ghosts then see the
/// whole stream). Sampling by key keeps each sampled key's whole history, so a ghost of capacity
/// C/R behaves like a cache of C on the full stream (the miniature-simulation result). Every
/// `epoch` sampled accesses (5 × the ghost capacity, at least 256) each shape's score becomes
/// 0.5 × its score + its hits in the epoch, and the real cache takes the best-scoring shape if it
/// beats the current one. The ghosts share the real cache's frequency sketch: a sampled key's
/// estimate is the same whichever cache asks.
///
/// Cost: per access one hash comparison; per sampled access one ghost access per shape (O(1)
/// each). Memory: shapes × ghost capacity × (node 24 B + hash-map entry ~32 B), about
/// 10 × 1000 × 56 B ≈ 0.6 MB at the default, independent of the real cache's size except for
/// caches smaller than `ghost_entries` (then ghosts hold capacity entries each).

#include "actors/detail/cache_segments.hpp"
#include "actors/detail/frequency_sketch.hpp"

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace bulwark::detail {

struct cache_shape {
  double window_fraction = 0.01;   ///< the window's share of the entry capacity, (0, 1]
  bool frequency_admission = true; ///< candidates must be more frequent than the victim
};

/// The shapes the selector chooses from.
std::vector<cache_shape> default_cache_shapes();

/// Window and protected shares, in entries, for a capacity and a shape (protected = 80 % of the
/// main part, as in Caffeine; the window gets at least one entry).
struct segment_shares {
  size_t window;
  size_t protected_max;
};
segment_shares shares_for(size_t capacity, const cache_shape& s);

/// A key-less W-TinyLFU cache of 64-bit hashes with an entry capacity: one per candidate shape.
class ghost_cache {
public:
  ghost_cache(size_t capacity, cache_shape shape);

  /// Returns whether `h` was cached; on a miss, inserts it and evicts by the shape's rules.
  bool access(uint64_t h, const frequency_sketch& sketch);

  size_t size() const { return segments_.size(); }
  size_t bytes() const;

private:
  struct node : segment_links {
    uint64_t hash = 0;
  };

  void evict(const frequency_sketch& sketch);

  size_t capacity_;
  cache_shape shape_;
  cache_segments<node> segments_;
  std::unordered_map<uint64_t, uint32_t> index_;
};

class shape_selector {
public:
  /// `capacity`: the real cache's entry capacity; `ghost_entries`: the target ghost size.
  shape_selector(size_t capacity, size_t ghost_entries, std::vector<cache_shape> shapes);

  /// Feeds one access of the real cache (its key's hash). Returns true when the chosen shape
  /// changed (read it with `current()`).
  bool record(uint64_t h, const frequency_sketch& sketch);

  const cache_shape& current() const { return shapes_[current_]; }
  size_t current_index() const { return current_; }
  size_t sampling_divisor() const { return divisor_; }
  uint64_t switches() const { return switches_; }
  size_t bytes() const;

private:
  std::vector<cache_shape> shapes_;
  std::vector<ghost_cache> ghosts_;
  std::vector<double> scores_;
  std::vector<uint64_t> epoch_hits_;
  size_t divisor_ = 1;
  uint64_t threshold_ = UINT64_MAX;
  size_t epoch_ = 256;
  size_t sampled_ = 0;
  size_t current_ = 0;
  uint64_t switches_ = 0;
};

} // namespace bulwark::detail
