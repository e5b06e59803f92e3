#pragma once
/// How the adaptive cache adapts: it is a W-TinyLFU cache (cache_segments.hpp) whose *shape* (the
/// window's share of the capacity, and whether a candidate leaving the window must be more
/// frequent than the victim to get in; or ARC's rule on the same queues, arc_history.hpp) is
/// chosen by **miniature simulation** (Waldspurger et al., "Cache Modeling and Optimization using
/// Miniature Simulations", USENIX ATC 2017).
///
/// The traces show why (../shared/data/traces/README.md): a small window with frequency admission
/// wins on loops and scans (gli, oltp at small sizes), a large window or plain admission wins on
/// recency-heavy traffic (scarab, oltp at 10 %), and ARC, which moves the split between keys seen
/// once and keys seen twice by where its misses were recently evicted from, wins where recency
/// and popularity mix or shift (cdn at 10 %, and the generated recency, phase, drift and loop
/// loads: the best of every shape held fixed on 33 of 68 tuning rows, bench/RESULTS.md). No single
/// shape wins everywhere, and a hill climber that nudges one knob by its own recent hit rate is
/// misled by noise (the reference table's W-TinyLFU+HC loses to the fixed 1 % window on oltp 10 %).
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
/// best fixed shape on most traces: bench/RESULTS.md). `switch_z` was chosen on the reference
/// traces only (oltp, gli, scarab, cdn), `decay` on the tuning rows (reference, evaluation and
/// generated seeds 1-3, with seeds 7-12 to choose between candidates); both were then measured
/// on generated seeds never tuned on.
///
/// Cost: per access one hash comparison; per sampled access one ghost access per shape (O(1)
/// each: a probe in the ghost's flat index and a list move). Memory: shapes × ghost capacity ×
/// (node 24 B + index 32-64 B, the index being a power of two at most half full), plus the ARC
/// ghost's history of at most as many hashes again, about 9 × 1000 × 56-88 B ≈ 0.5-0.8 MB at the
/// default, independent of the real cache's size except for caches smaller than `ghost_entries`
/// (then ghosts hold capacity entries each).

#include "actors/detail/arc_history.hpp"
#include "actors/detail/cache_segments.hpp"
#include "actors/detail/frequency_sketch.hpp"
#include "actors/detail/ghost_index.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace bulwark::detail {

struct cache_shape {
  double window_fraction = 0.01;   ///< the window's share of the entry capacity, (0, 1]
  bool frequency_admission = true; ///< candidates must be more frequent than the victim
  /// ARC's rule instead (arc_history.hpp): probation is T1, protected T2, no window, no admission
  /// test; `window_fraction` and `frequency_admission` are ignored.
  bool arc = false;
  /// Under frequency admission: a victim that beats the candidate by `rotation_margin` or more
  /// goes to probation's MRU end, so the next candidate meets the next victim (see below).
  bool rotate_victims = false;
};

/// Whether a candidate must be more frequent than its victim to get in.
inline bool admits_by_frequency(const cache_shape& s) {
  return s.frequency_admission && !s.arc;
}

/// Victim rotation. In plain W-TinyLFU the victim is always probation's LRU entry, and a victim
/// the sketch still counts high (a key that was hot and has cooled: popularity drifts) beats
/// every candidate until the sketch's next halving, hundreds of thousands of requests away; all
/// that time no new key gets in and probation behind it freezes (bench/RESULTS.md, "Victim
/// rotation": 10 467 one-hit keys sat in probation from request 300 000 to 450 000). A victim
/// that wins by `rotation_margin` counts or more keeps its place in the cache but moves to
/// probation's MRU end, so the next candidate meets the next victim. A victim that wins narrowly
/// stays put, as in W-TinyLFU: on loops larger than the cache, holding on is what wins (gli), and
/// one shape without rotation stays in the family for them.
constexpr uint32_t rotation_margin = 2;
inline bool rotates_victim(const cache_shape& s, uint32_t candidate_count, uint32_t victim_count) {
  return s.rotate_victims && admits_by_frequency(s) &&
         victim_count >= candidate_count + rotation_margin;
}

/// The shapes the selector chooses from: windows of 1, 10, 30 and 50 % with frequency admission
/// (rotating their victims), 1 % with plain admission, all window (plain LRU), ARC, and the 1 %
/// window with frequency admission and no rotation (plain W-TinyLFU): the classic policies the
/// cache must never trail are all in it. The first, where a cache starts, is the rotating 1 %
/// window. Eight: each ghost costs every sampled access, and the shapes left out (plain
/// admission with windows of 10-80 %, frequency admission at 80 %) were within 0.1 of the best
/// shape held fixed on almost none of the 68 tuning rows once ARC and rotation were in
/// (bench/RESULTS.md).
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
  /// The ARC shape's target for T1 as a share of the capacity (0 for other shapes).
  double arc_target_share() const {
    return arc_ ? arc_->p() / static_cast<double>(capacity_) : 0.0;
  }

private:
  struct node : segment_links {
    uint64_t hash = 0;
  };

  void evict(const frequency_sketch& sketch);
  bool access_arc(uint64_t h);

  size_t capacity_;
  cache_shape shape_;
  cache_segments<node> segments_;
  ghost_index index_;
  std::unique_ptr<arc_history> arc_; ///< the ARC shape's B1, B2 and p
};

class shape_selector {
public:
  /// How much evidence a switch needs: the lead in standard deviations (see the header comment).
  static constexpr double switch_z = 3.0;
  /// Each epoch keeps this share of the evidence before it (about fifty epochs' memory: a lead of
  /// a few tenths of a point against tens of discordant accesses per epoch needs that many to
  /// pass `switch_z`; at 0.9, ten epochs, the selector sat in a shape 0.56 points worse for
  /// 430 000 requests, bench/RESULTS.md).
  static constexpr double decay = 0.98;

  /// `capacity`: the real cache's entry capacity; `ghost_entries`: the target ghost size.
  shape_selector(size_t capacity, size_t ghost_entries, std::vector<cache_shape> shapes);

  /// Feeds one access of the real cache (its key's hash). Returns true when the chosen shape
  /// changed (read it with `current()`).
  bool record(uint64_t h, const frequency_sketch& sketch);

  /// The real cache now holds about `capacity` entries (a byte budget binds before the entry
  /// count): ghosts are rebuilt for it when it is off by a factor of two or more.
  void resize(size_t capacity);

  const cache_shape& current() const { return shapes_[current_]; }
  /// What the ARC shape's ghost has learnt: its target for T1 as a share of the capacity (0 if
  /// no shape is ARC). A real cache switching to ARC starts from it.
  double arc_target_share() const;
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
