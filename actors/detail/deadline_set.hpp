#pragma once
/// The deadlines of many pending things (calls, requests) served by one timer in flight at a
/// time, instead of one timer per thing.
///
/// Why: CAF 0.17's clock is one thread behind a mutex; every timer set or cancelled, whether a
/// delayed_send or a request's timeout, takes that mutex and wakes the clock thread with a
/// condition variable. Per request that was the largest single source of thread wake-ups on the
/// point-query path (bench/RESULTS.md, "The cost of mediation"). Deadlines on the request path
/// are mostly later than every one already pending (now + the same timeout), so a timer armed
/// for the earliest deadline stays valid while requests come and go: under steady load about
/// one timer per timeout period, whatever the rate.
///
///   if (auto at = deadlines.set(id, deadline)) arm a timer for *at;  // when a thing starts
///   deadlines.erase(id);                                             // when it ends in time
///   on the timer: for (auto id : deadlines.expire(now)) ...;         // those whose time came
///                 if (auto at = deadlines.next()) arm a timer for *at;
///
/// A timer that fires early or late (a stale one, after an earlier one was armed) is harmless:
/// expire() takes only what is due. Pure and single-threaded, like the actor that owns it.
///
/// Storage: a binary heap of (deadline, id) in one vector and an open-addressing index from id to
/// heap position in another, so set and erase cost O(log n) and allocate nothing once both have
/// grown to the most deadlines pending at once (a tree and a hash map cost two allocations per
/// set: on the request path, two per request in the front door and two per call in the pool;
/// bench/RESULTS.md "Allocations per request").

#include <caf/timestamp.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace bulwark::detail {

/// An open-addressing map from id to a heap position (linear probing, deletion by backward shift,
/// at most half full), growing by doubling: no allocation per entry.
class deadline_index {
public:
  static constexpr uint32_t none = UINT32_MAX;

  uint32_t find(uint64_t id) const {
    if (slots_.empty())
      return none;
    for (size_t i = home(id);; i = (i + 1) & mask_) {
      auto& s = slots_[i];
      if (s.pos == none || s.id == id)
        return s.pos;
    }
  }

  /// Sets `id`'s position, adding it when absent.
  void put(uint64_t id, uint32_t pos) {
    if ((used_ + 1) * 2 > slots_.size())
      grow();
    size_t i = home(id);
    while (slots_[i].pos != none && slots_[i].id != id)
      i = (i + 1) & mask_;
    if (slots_[i].pos == none)
      ++used_;
    slots_[i] = slot{id, pos};
  }

  void erase(uint64_t id) {
    if (slots_.empty())
      return;
    size_t i = home(id);
    for (; slots_[i].id != id || slots_[i].pos == none; i = (i + 1) & mask_)
      if (slots_[i].pos == none)
        return;
    --used_;
    // Backward shift: move later entries of the probe run into the hole unless their home lies
    // cyclically within (hole, their position].
    for (size_t j = (i + 1) & mask_; slots_[j].pos != none; j = (j + 1) & mask_) {
      size_t h = home(slots_[j].id);
      bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
      if (!stays) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = slot{};
  }

  size_t size() const { return used_; }
  size_t capacity() const { return slots_.size(); }

private:
  struct slot {
    uint64_t id = 0;
    uint32_t pos = none;
  };

  /// Ids are mostly consecutive: a multiplicative hash spreads them over the table.
  size_t home(uint64_t id) const {
    return static_cast<size_t>((id * 0x9E3779B97F4A7C15ull) >> 32) & mask_;
  }

  void grow() {
    std::vector<slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 16 : 2 * old.size(), slot{});
    mask_ = slots_.size() - 1;
    used_ = 0;
    for (auto& s : old)
      if (s.pos != none)
        put(s.id, s.pos);
  }

  std::vector<slot> slots_;
  size_t mask_ = 0;
  size_t used_ = 0;
};

class deadline_set {
public:
  using time = caf::timespan;

  /// Sets (or moves) `id`'s deadline to `at`. Returns when a new timer must fire: `at`, when no
  /// timer is in flight or the one in flight fires later than `at`.
  std::optional<time> set(uint64_t id, time at) {
    if (auto p = index_.find(id); p != deadline_index::none) {
      heap_[p].at = at;
      sift_down(sift_up(p));
    } else {
      heap_.push_back(entry{at, id});
      auto last = static_cast<uint32_t>(heap_.size() - 1);
      index_.put(id, last);
      sift_up(last);
    }
    if (armed_ && *armed_ <= at)
      return std::nullopt;
    armed_ = at;
    return at;
  }

  /// Forgets `id` (ended before its deadline); unknown ids are ignored.
  void erase(uint64_t id) {
    auto p = index_.find(id);
    if (p != deadline_index::none)
      remove_at(p);
  }

  /// A timer fired at `now`: the ids whose deadline is at or before `now`, earliest first,
  /// removed. Call next() afterwards (and after acting on them: acting may set new deadlines).
  std::vector<uint64_t> expire(time now) {
    if (armed_ && *armed_ <= now)
      armed_.reset(); // the earliest timer in flight has fired (this one or an earlier one)
    std::vector<uint64_t> due;
    while (!heap_.empty() && heap_.front().at <= now) {
      due.push_back(heap_.front().id);
      remove_at(0);
    }
    return due;
  }

  /// When a new timer must fire, if one must: the earliest deadline, when no timer in flight
  /// fires at or before it.
  std::optional<time> next() {
    if (heap_.empty())
      return std::nullopt;
    auto earliest = heap_.front().at;
    if (armed_ && *armed_ <= earliest)
      return std::nullopt;
    armed_ = earliest;
    return earliest;
  }

  bool contains(uint64_t id) const { return index_.find(id) != deadline_index::none; }
  size_t size() const { return heap_.size(); }
  /// The earliest timer in flight, as far as this set knows.
  std::optional<time> armed() const { return armed_; }
  /// Deadlines the storage holds room for without growing (it never shrinks).
  size_t capacity() const { return std::min(heap_.capacity(), index_.capacity() / 2); }

private:
  struct entry {
    time at;
    uint64_t id;
    /// Earliest first; equal deadlines by id, as a sorted set of (deadline, id) would be.
    bool before(const entry& o) const { return at < o.at || (at == o.at && id < o.id); }
  };

  void place(uint32_t p, entry e) {
    heap_[p] = e;
    index_.put(e.id, p);
  }

  uint32_t sift_up(uint32_t p) {
    auto e = heap_[p];
    while (p > 0) {
      auto parent = (p - 1) / 2;
      if (!e.before(heap_[parent]))
        break;
      place(p, heap_[parent]);
      p = parent;
    }
    place(p, e);
    return p;
  }

  void sift_down(uint32_t p) {
    auto e = heap_[p];
    auto n = static_cast<uint32_t>(heap_.size());
    for (;;) {
      auto child = 2 * p + 1;
      if (child >= n)
        break;
      if (child + 1 < n && heap_[child + 1].before(heap_[child]))
        ++child;
      if (!heap_[child].before(e))
        break;
      place(p, heap_[child]);
      p = child;
    }
    place(p, e);
  }

  void remove_at(uint32_t p) {
    index_.erase(heap_[p].id);
    auto last = static_cast<uint32_t>(heap_.size() - 1);
    if (p != last) {
      heap_[p] = heap_[last];
      heap_.pop_back();
      sift_down(sift_up(p));
    } else {
      heap_.pop_back();
    }
  }

  std::vector<entry> heap_;
  deadline_index index_;
  std::optional<time> armed_;
};

} // namespace bulwark::detail
