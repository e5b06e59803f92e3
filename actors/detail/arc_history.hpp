#pragma once
/// ARC's adaptation (Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST
/// 2003) for a segmented cache, kept apart from the lists it steers so that the real cache and its
/// ghost run the same rule. The cache's probation queue plays ARC's T1 (keys seen once while
/// cached) and protected plays T2 (seen more than once); this class keeps B1 and B2, the hashes of
/// keys recently evicted from each, and the target size `p` of T1:
/// - a miss whose key is in B1 means T1 was too small: p grows by max(1, |B2| / |B1|), the key
///   goes straight to T2;
/// - a miss in B2 means T2 was too small: p shrinks by max(1, |B1| / |B2|), the key goes to T2;
/// - a victim comes from T1 while T1 is larger than p (or as large, after a hit in B2), else from
///   T2; it leaves its hash in B1 or B2;
/// - B1 holds at most c - |T1| hashes and all four lists at most 2c (c: the cache's capacity in
///   entries), oldest dropped first.
/// Every operation is O(1): B1 and B2 are index-linked lists (cache_segments' window and probation
/// queues) with an open-addressing index of the hashes. Memory follows what it remembers: at most
/// c hashes, about 60-90 bytes each (node 24 B, index 32-64 B), none until the first eviction.

#include "actors/detail/cache_segments.hpp"
#include "actors/detail/ghost_index.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace bulwark::detail {

class arc_history {
public:
  enum class seen : uint8_t { no = 0, in_b1 = 1, in_b2 = 2 };

  /// `capacity`: the cache's, in entries; `p`: T1's target to start from (a fresh ARC starts at 0).
  explicit arc_history(size_t capacity, double p = 0)
      : capacity_(std::max<size_t>(capacity, 1)),
        p_(std::clamp(p, 0.0, static_cast<double>(capacity_))), index_(16) {}

  /// The cache now holds `capacity` entries (a byte budget binds): p keeps its share of it, and
  /// the oldest hashes beyond c are dropped.
  void resize(size_t capacity) {
    capacity = std::max<size_t>(capacity, 1);
    p_ = p_ * static_cast<double>(capacity) / static_cast<double>(capacity_);
    capacity_ = capacity;
    while (lists_.size() > capacity_)
      drop(lists_.size(b2_queue) > 0 ? b2_queue : b1_queue);
  }

  /// A miss on `h`: where its hash was, adapting p if it was in B1 or B2 (and forgetting it).
  seen on_miss(uint64_t h) {
    auto i = index_.find(h);
    if (i == ghost_index::none)
      return seen::no;
    bool b1 = lists_[i].queue == b1_queue;
    auto n1 = static_cast<double>(lists_.size(b1_queue));
    auto n2 = static_cast<double>(lists_.size(b2_queue));
    if (b1)
      p_ = std::min(static_cast<double>(capacity_), p_ + std::max(1.0, n2 / n1));
    else
      p_ = std::max(0.0, p_ - std::max(1.0, n1 / n2));
    index_.erase(h);
    lists_.release(i);
    return b1 ? seen::in_b1 : seen::in_b2;
  }

  /// Whether the next victim comes from T1, given T1's and T2's sizes (T1 not counting an entry
  /// just inserted into it) and whether the miss being served was found in B2.
  bool victim_from_t1(size_t t1, size_t t2, bool miss_in_b2) const {
    auto n1 = static_cast<double>(t1);
    return t1 > 0 && ((miss_in_b2 && n1 == p_) || n1 > p_ || t2 == 0);
  }

  /// A victim left T1 (`from_t1`) or T2: remember its hash.
  void evicted(uint64_t h, bool from_t1) {
    if (index_.find(h) != ghost_index::none)
      return;
    auto i = lists_.allocate();
    lists_[i].hash = h;
    lists_.push_mru(from_t1 ? b1_queue : b2_queue, i);
    index_.insert(h, i);
  }

  /// Drops the oldest hashes until |T1| + |B1| <= c and all four lists hold at most 2c (and B1
  /// and B2 together at most c, which a full cache implies).
  void trim(size_t t1, size_t t2) {
    while (lists_.size(b1_queue) > 0 && t1 + lists_.size(b1_queue) > capacity_)
      drop(b1_queue);
    while (lists_.size() > 0 &&
           (t1 + t2 + lists_.size() > 2 * capacity_ || lists_.size() > capacity_))
      drop(lists_.size(b2_queue) > 0 ? b2_queue : b1_queue);
  }

  double p() const { return p_; }
  size_t capacity() const { return capacity_; }
  size_t size() const { return lists_.size(); }
  size_t bytes() const { return lists_.bytes() + index_.bytes(); }

private:
  static constexpr cache_queue b1_queue = cache_queue::window;
  static constexpr cache_queue b2_queue = cache_queue::probation;
  struct node : segment_links {
    uint64_t hash = 0;
  };

  void drop(cache_queue q) {
    auto i = lists_.lru(q);
    index_.erase(lists_[i].hash);
    lists_.release(i);
  }

  size_t capacity_;
  double p_;
  cache_segments<node> lists_;
  ghost_index index_;
};

} // namespace bulwark::detail
