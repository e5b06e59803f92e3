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
/// C/R behaves like a cache of C on the full stream (the miniature-simulation result).
///
/// When to switch. The ghosts are compared *paired*, on the same accesses: for each shape i the
/// selector counts the sampled accesses i hit and the current shape missed (wins) and the reverse
/// (losses), both decayed by `decay` every epoch (the ghost capacity in sampled accesses, at least
/// 256). If there were no difference, each such discordant access would be a fair coin, so the
/// lead wins - losses has a standard deviation of sqrt(wins + losses). At the end of an epoch the
/// real cache takes the shape with the largest lead above `switch_z` standard deviations, and the
/// counts start again against it. Most accesses hit or miss in every ghost alike, so the paired
/// test sees a real difference of a few tenths of a point within a few epochs while ten noisy
/// scores no longer pull the cache back and forth (the winner's curse of taking the best of ten
/// noisy estimates; the first version, which took the best decayed hit count, lost to its own
/// best fixed shape on most traces: bench/RESULTS.md). `decay` and `switch_z` were chosen on the
/// reference traces only (oltp, gli, scarab, cdn) and then measured on the evaluation and the
/// generated traces.
///
/// Cost: per access one hash comparison; per sampled access one ghost access per shape (O(1)
/// each: a probe in the ghost's flat index and a list move). Memory: shapes × ghost capacity ×
/// (node 24 B + index 32-64 B, the index being a power of two at most half full), about
/// 11 × 1000 × 56-88 B ≈ 0.6-1 MB at the default, independent of the real cache's size except for
/// caches smaller than `ghost_entries` (then ghosts hold capacity entries each).

#include "actors/detail/cache_segments.hpp"
#include "actors/detail/frequency_sketch.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bulwark::detail {

struct cache_shape {
  double window_fraction = 0.01;   ///< the window's share of the entry capacity, (0, 1]
  bool frequency_admission = true; ///< candidates must be more frequent than the victim
};

/// The shapes the selector chooses from: windows of 1, 10, 30, 50 and 80 % with frequency or
/// plain admission, and all window (plain LRU: the classic policy the cache must never trail on
/// recency-heavy traffic).
std::vector<cache_shape> default_cache_shapes();

/// Window and protected shares, in entries, for a capacity and a shape (protected = 80 % of the
/// main part, as in Caffeine; the window gets at least one entry).
struct segment_shares {
  size_t window;
  size_t protected_max;
};
segment_shares shares_for(size_t capacity, const cache_shape& s);

/// A fixed-size open-addressing map from a key's 64-bit hash to a ghost slot (linear probing,
/// deletion by backward shift, at most half full): a ghost access is one probe sequence in one
/// array instead of a node-based hash map's bucket walk and allocation, which made up most of a
/// ghost's cost when ghosts see every access.
class ghost_index {
public:
  static constexpr uint32_t none = UINT32_MAX;
  explicit ghost_index(size_t entries);
  uint32_t find(uint64_t h) const;
  void insert(uint64_t h, uint32_t slot); ///< `h` must not be present
  void erase(uint64_t h);
  size_t bytes() const { return slots_.capacity() * sizeof(entry); }

private:
  struct entry {
    uint64_t hash = 0;
    uint32_t slot = none;
  };
  std::vector<entry> slots_;
  size_t mask_ = 0;
};

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
  ghost_index index_;
};

class shape_selector {
public:
  /// How much evidence a switch needs: the lead in standard deviations (see the header comment).
  static constexpr double switch_z = 3.0;
  /// Each epoch keeps this share of the evidence before it (about ten epochs' memory).
  static constexpr double decay = 0.9;

  /// `capacity`: the real cache's entry capacity; `ghost_entries`: the target ghost size.
  shape_selector(size_t capacity, size_t ghost_entries, std::vector<cache_shape> shapes);

  /// Feeds one access of the real cache (its key's hash). Returns true when the chosen shape
  /// changed (read it with `current()`).
  bool record(uint64_t h, const frequency_sketch& sketch);

  /// The real cache now holds about `capacity` entries (a byte budget binds before the entry
  /// count): ghosts are rebuilt for it when it is off by a factor of two or more.
  void resize(size_t capacity);

  const cache_shape& current() const { return shapes_[current_]; }
  size_t current_index() const { return current_; }
  size_t sampling_divisor() const { return divisor_; }
  /// The real cache's entry capacity the ghosts are built for.
  size_t capacity() const { return built_for_; }
  uint64_t switches() const { return switches_; }
  size_t bytes() const;

private:
  void build(size_t capacity);
  std::vector<cache_shape> shapes_;
  std::vector<ghost_cache> ghosts_;
  size_t ghost_entries_ = 1000;
  size_t built_for_ = 0;
  std::vector<double> wins_;   ///< decayed: sampled accesses shape i hit and the current missed
  std::vector<double> losses_; ///< decayed: sampled accesses the current hit and shape i missed
  std::vector<char> hit_;      ///< per shape: whether the access being recorded hit its ghost
  size_t divisor_ = 1;
  uint64_t threshold_ = UINT64_MAX;
  size_t epoch_ = 256;
  size_t sampled_ = 0;
  size_t current_ = 0;
  uint64_t switches_ = 0;
};

} // namespace bulwark::detail
