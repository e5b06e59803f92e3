#pragma once
/// The cache's eviction policy and storage, CAF-free: an adaptive W-TinyLFU cache bounded by
/// entries and by bytes, with priorities and TTLs. The `cache` actors each own one (a shard).
///
/// Structure (cache_segments.hpp): window LRU → probation → protected, a frequency sketch
/// (frequency_sketch.hpp) of every key asked for, and a shape selector (cache_shape.hpp) that
/// picks the window share and the admission rule by miniature simulation. Every operation is O(1)
/// amortised: a get is one hash lookup and one list move; a put may evict several entries, each
/// evicted entry paid for by the put that inserted it. Nothing ever scans or sorts the entries
/// (the original sorted them all on every insert at capacity).
///
/// Who is evicted. While the cache is over its entry capacity or its byte budget, the entry at
/// probation's MRU end (the newest *candidate*, fresh from the window) is matched against the one
/// at its LRU end (the *victim*); the loser leaves. In order:
/// 1. an expired entry loses;
/// 2. the lower priority loses (`low` < `normal` < `high`): a high-priority entry, such as a rate
///    limiter's *blocked* decision, is never evicted in favour of a normal one while normal
///    entries remain to be matched against;
/// 3. under frequency admission, the candidate wins only if the sketch has seen it more often
///    than the victim; otherwise (plain admission) the candidate wins. A victim that wins by two
///    counts or more moves to probation's MRU end (victim rotation, cache_shape.hpp), so that a
///    once-hot key cannot hold every newcomer out until the sketch halves.
/// When the candidate is also the victim (probation holds one entry) it leaves. If probation is
/// empty, protected's LRU entry (else the window's) is demoted first. Evictions for the byte
/// budget match the same candidate against one victim after another, so a large entry stays
/// only if it beats every entry it displaces: it must earn its space.
///
/// Size-aware admission. Under frequency admission, a key the sketch has not seen before (this
/// request is its first) whose entry is larger than the mean entry held is not admitted when
/// storing it would evict for bytes: one large one-off entry would displace several smaller ones,
/// each as likely to be asked for again, and every hit is a query not run. Its second request
/// finds it known and it gets in like any other. Plain-admission shapes, which the selector picks
/// for recency-heavy traffic, admit everything; high-priority entries are never refused this way.
/// Measured on the sized traces (bench/RESULTS.md, "Size-aware admission"): a higher object hit
/// ratio on every row, the byte hit ratio about level on average.
///
/// Refused inserts are reported, never silent: `put` returns `refused_too_large` for an entry
/// bigger than `max_entry_bytes` (or the whole byte budget), and `refused_admission` when the new
/// entry itself lost the match above or was refused by size-aware admission (it is not in the
/// cache afterwards).
///
/// TTL: an entry past its expiry is never returned; `get` drops it (reason expired), and an
/// expired entry loses every match. `expire(now, budget)` sweeps `budget` slots round robin, for
/// timers that want memory back sooner (O(budget) per call).
///
/// Bytes: each entry is charged `weight` (the caller's estimate of key + value bytes) plus
/// `entry_overhead` for the node, the index entry and the bookkeeping. `bytes()` never exceeds
/// `max_bytes` after an operation returns. Where the bytes bind before `max_entries` does, the
/// segments' shares and the selector's ghosts are sized by the entries the bytes hold
/// (`effective_entries`; bench/RESULTS.md, "Bytes, not just objects").

#include "actors/detail/cache_segments.hpp"
#include "actors/detail/cache_shape.hpp"
#include "actors/detail/frequency_sketch.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace bulwark::detail {

enum class cache_priority : uint8_t { low = 0, normal = 1, high = 2 };

enum class eviction_reason : uint8_t { capacity = 0, expired = 1, pressure = 2 };
constexpr size_t eviction_reason_count = 3;
/// "capacity", "expired" or "pressure" (metric labels).
const char* to_string(eviction_reason r);

enum class put_status : uint8_t {
  stored,            ///< inserted or replaced
  refused_too_large, ///< weight > max_entry_bytes or > max_bytes
  refused_admission, ///< lost the admission match, not cached
};
/// "stored", "too_large" or "admission".
const char* to_string(put_status s);

struct adaptive_cache_config {
  size_t max_entries = 100'000;
  size_t max_bytes = 64u << 20;
  size_t max_entry_bytes = 1u << 20;
  /// Choose the shape by miniature simulation; false keeps `initial_shape` (a plain W-TinyLFU).
  bool adaptive = true;
  cache_shape initial_shape{};
  /// Target entries per ghost cache (see cache_shape.hpp).
  size_t ghost_entries = 1000;
  /// Size-aware admission (the header comment); false only to measure without it.
  bool size_aware_admission = true;
};

struct cache_counters {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions[eviction_reason_count] = {};
  uint64_t refused_too_large = 0;
  uint64_t refused_admission = 0;
};

/// Default key hashing: integers are mixed, strings hashed with hash_bytes.
template <class Key>
struct cache_key_hash {
  uint64_t operator()(const Key& k) const { return mix64(static_cast<uint64_t>(k)); }
};
template <>
struct cache_key_hash<std::string> {
  uint64_t operator()(const std::string& k) const { return hash_bytes(k); }
};

template <class Key, class Value, class Hash = cache_key_hash<Key>>
class adaptive_cache {
public:
  using clock_time = std::chrono::nanoseconds;
  static constexpr clock_time never = clock_time::max();
  /// Bytes charged per entry besides its weight: node, index entry and bucket, rounded up.
  static constexpr size_t entry_overhead = sizeof(Key) + sizeof(Value) + 96;

  explicit adaptive_cache(adaptive_cache_config cfg)
      : cfg_(cfg), sketch_(cfg.max_entries),
        selector_(cfg.max_entries, cfg.ghost_entries,
                  cfg.adaptive ? default_cache_shapes() : std::vector<cache_shape>{}) {
    shape_ = cfg.adaptive ? selector_.current() : cfg.initial_shape;
    apply_shape();
    index_.reserve(std::min<size_t>(cfg.max_entries, 1u << 20));
  }

  /// The value of `key`, or nullptr (a miss). Counts toward the key's popularity either way.
  const Value* get(const Key& key, clock_time now) {
    auto h = hash_(key);
    touch(h);
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++counters_.misses;
      return nullptr;
    }
    auto i = it->second;
    if (segments_[i].expires_at <= now) {
      remove(i, eviction_reason::expired);
      ++counters_.misses;
      return nullptr;
    }
    segments_.on_hit(i);
    segments_.rebalance();
    ++counters_.hits;
    return &segments_[i].value;
  }

  /// Inserts or replaces `key`. `weight`: the entry's bytes (key + value); `ttl`: how long it may
  /// be served (clock_time::max() for no expiry). Returns what happened and counts evictions.
  put_status put(const Key& key, Value value, size_t weight, clock_time now, clock_time ttl = never,
                 cache_priority priority = cache_priority::normal) {
    auto charged = weight + entry_overhead;
    if (weight > cfg_.max_entry_bytes || charged > max_bytes_) {
      erase(key);
      ++counters_.refused_too_large;
      return put_status::refused_too_large;
    }
    auto expires = ttl >= never - now ? never : now + ttl;
    if (auto it = index_.find(key); it != index_.end()) {
      auto& n = segments_[it->second];
      bytes_ = bytes_ - n.charged + charged;
      n.value = std::move(value);
      n.charged = charged;
      n.expires_at = expires;
      n.priority = priority;
      segments_.on_hit(it->second);
      segments_.rebalance();
      evict_to_fit(now, eviction_reason::capacity);
      return index_.count(key) ? put_status::stored : put_status::refused_admission;
    }
    auto h = hash_(key);
    if (refused_by_size(h, charged, priority)) {
      ++counters_.refused_admission;
      return put_status::refused_admission;
    }
    auto seen = arc_ ? arc_->on_miss(h) : arc_history::seen::no;
    auto i = segments_.allocate();
    auto& n = segments_[i];
    n.key = key;
    n.value = std::move(value);
    n.hash = h;
    n.charged = charged;
    n.expires_at = expires;
    n.priority = priority;
    segments_.insert(i);
    index_.emplace(key, i);
    bytes_ += charged;
    if (arc_) { // ARC: a key its history has seen goes straight to T2 (protected)
      arc_insert_ = {i, seen == arc_history::seen::in_b2};
      segments_.move_to(
          seen == arc_history::seen::no ? cache_queue::probation : cache_queue::protected_, i);
    }
    segments_.rebalance();
    evict_to_fit(now, eviction_reason::capacity);
    arc_insert_ = {};
    if (!index_.count(key)) {
      ++counters_.refused_admission;
      return put_status::refused_admission;
    }
    return put_status::stored;
  }

  /// The trace-driven model: a get, and on a miss a put. Returns whether it hit.
  bool access(const Key& key, Value value, size_t weight, clock_time now) {
    if (get(key, now))
      return true;
    put(key, std::move(value), weight, now);
    return false;
  }

  bool erase(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end())
      return false;
    auto i = it->second;
    bytes_ -= segments_[i].charged;
    index_.erase(it);
    segments_.release(i);
    return true;
  }

  void clear() {
    index_.clear();
    segments_.clear();
    bytes_ = 0;
  }

  /// A new byte budget (pressure shrinks it, recovery grows it); evicts down to it at once,
  /// counting the evictions under `reason`.
  void set_max_bytes(size_t bytes, clock_time now,
                     eviction_reason reason = eviction_reason::pressure) {
    max_bytes_ = bytes;
    evict_to_fit(now, reason);
  }

  /// Examines the next `budget` slots of the entry slab (round robin, so repeated calls visit
  /// every entry) and drops the expired ones. Returns how many it dropped.
  size_t expire(clock_time now, size_t budget) {
    size_t dropped = 0;
    auto slots = segments_.slots();
    for (size_t step = 0; step < budget && slots > 0; ++step) {
      auto i = static_cast<uint32_t>(sweep_cursor_++ % slots);
      if (segments_[i].queue != cache_queue::none && segments_[i].expires_at <= now) {
        remove(i, eviction_reason::expired);
        ++dropped;
      }
    }
    return dropped;
  }

  size_t size() const { return index_.size(); }
  size_t bytes() const { return bytes_; }
  size_t max_bytes() const { return max_bytes_; }
  size_t max_entries() const { return cfg_.max_entries; }
  /// The entries the shares and ghosts are sized for: what the last eviction found binding, the
  /// entries the byte budget held or `max_entries` (which until the first eviction).
  size_t effective_entries() const { return effective_entries_; }
  const cache_counters& counters() const { return counters_; }
  const cache_shape& shape() const { return shape_; }
  const shape_selector& selector() const { return selector_; }
  /// Memory the policy itself uses besides the entries' charge: sketch and ghosts.
  size_t policy_bytes() const {
    return sketch_.bytes() + selector_.bytes() + (arc_ ? arc_->bytes() : 0);
  }

private:
  struct node : segment_links {
    Key key{};
    Value value{};
    uint64_t hash = 0;
    size_t charged = 0;
    clock_time expires_at = never;
    cache_priority priority = cache_priority::normal;
  };

  void touch(uint64_t h) {
    sketch_.increment(h);
    if (cfg_.adaptive && selector_.record(h, sketch_)) {
      shape_ = selector_.current();
      apply_shape();
    }
  }

  void apply_shape() {
    auto s = shares_for(effective_entries_, shape_);
    segments_.set_shares(s.window, s.protected_max);
    if (!shape_.arc) {
      arc_.reset();
    } else if (arc_) {
      arc_->resize(effective_entries_);
    } else {
      enter_arc();
    }
  }

  /// The selector chose ARC: T1's target starts where the ARC ghost's has settled (0, as a
  /// textbook ARC, when no ghost runs), the history starts empty, and what the other shape's
  /// queues hold is sorted into ARC's two lists once: the window and probation are T1, and the
  /// entries there that the sketch has seen more than once move to T2 (oldest first, so T2 keeps
  /// their order); without it T2 starts empty, ARC then keeps every old entry's place for its
  /// newest, and the cache trails a fixed ARC for hundreds of thousands of requests. O(entries),
  /// at most once per selector epoch (at least the capacity in accesses): O(1) amortised.
  void enter_arc() {
    auto share = cfg_.adaptive ? selector_.arc_target_share() : 0.0;
    arc_ = std::make_unique<arc_history>(effective_entries_,
                                         share * static_cast<double>(effective_entries_));
    segments_.rebalance(); // a window share of 0: the window moves to probation
    for (auto i = segments_.lru(cache_queue::probation); i != segment_links::nil;) {
      auto next = segments_.next_towards_mru(i);
      if (sketch_.frequency(segments_[i].hash) >= 2)
        segments_.move_to(cache_queue::protected_, i);
      i = next;
    }
  }

  /// A cache bounded by bytes holds fewer entries than `max_entries`: its window and protected
  /// shares, and the selector's ghosts, are sized by the entries the bytes hold (else the window
  /// alone is most of the cache and the ghosts, never full, cannot tell shapes apart). Followed
  /// within 1/32 (the ghosts within a factor of two), so shares move only when the count has
  /// moved as much: O(1) amortised. Only evictions move it: a budget given back step by step
  /// after pressure changes nothing until the cache is full again, and then by what binds.
  void fit_shares_to(size_t entries) {
    entries = std::clamp<size_t>(entries, 1, cfg_.max_entries);
    if (entries * 32 < effective_entries_ * 31 || entries * 32 > effective_entries_ * 33) {
      effective_entries_ = entries;
      if (cfg_.adaptive)
        selector_.resize(entries);
      apply_shape();
    }
  }

  bool over(size_t extra = 0) const {
    return index_.size() + extra > cfg_.max_entries || bytes_ > max_bytes_;
  }

  void remove(uint32_t i, eviction_reason why) {
    ++counters_.evictions[static_cast<size_t>(why)];
    bytes_ -= segments_[i].charged;
    index_.erase(segments_[i].key);
    segments_.release(i);
  }

  /// Size-aware admission (the header comment): a first-seen key, larger than the mean entry,
  /// that would evict for bytes under frequency admission.
  bool refused_by_size(uint64_t h, size_t charged, cache_priority priority) const {
    return cfg_.size_aware_admission && admits_by_frequency(shape_) &&
           priority != cache_priority::high && bytes_ + charged > max_bytes_ &&
           charged * index_.size() > bytes_ && sketch_.frequency(h) < 2;
  }

  /// Which of candidate and victim leaves (the rules in the header comment).
  uint32_t loser(uint32_t candidate, uint32_t victim, clock_time now) const {
    if (segments_[victim].expires_at <= now || leaves_first(victim, candidate, now))
      return victim; // an expired victim leaves even when the candidate has expired too
    if (leaves_first(candidate, victim, now))
      return candidate;
    if (admits_by_frequency(shape_) &&
        sketch_.frequency(segments_[candidate].hash) <= sketch_.frequency(segments_[victim].hash))
      return candidate;
    return victim;
  }

  void evict_to_fit(clock_time now, eviction_reason why) {
    segments_.rebalance();
    bool for_bytes = bytes_ > max_bytes_;
    bool for_count = index_.size() > cfg_.max_entries;
    if (arc_)
      evict_arc(now, why);
    else
      evict_matched(now, why);
    if (for_bytes)
      fit_shares_to(index_.size());
    else if (for_count)
      fit_shares_to(cfg_.max_entries);
  }

  /// Whether `a` leaves before `b` whatever the shape: it has expired and `b` has not, or neither
  /// has and its priority is lower.
  bool leaves_first(uint32_t a, uint32_t b, clock_time now) const {
    bool a_expired = segments_[a].expires_at <= now;
    bool b_expired = segments_[b].expires_at <= now;
    if (a_expired != b_expired)
      return a_expired;
    return !a_expired && segments_[a].priority < segments_[b].priority;
  }

  /// ARC's eviction (arc_history.hpp): the victim is T1's or T2's LRU entry as ARC decides,
  /// unless the other list's LRU entry or the newest entry (the one being inserted, else T1's
  /// newest) leaves first (`leaves_first`: expiry, then priority), which then leaves instead: as
  /// in the segmented shapes, a high-priority entry is not evicted for a normal one while a normal
  /// one is there to be matched against. An entry being inserted that leaves is refused, and not
  /// remembered.
  void evict_arc(clock_time now, eviction_reason why) {
    while (over() && segments_.size() > 0) {
      auto inserting = arc_insert_.entry;
      bool inserting_in_t1 =
          inserting != segment_links::nil && segments_[inserting].queue == cache_queue::probation;
      auto t1 = segments_.size(cache_queue::probation) - (inserting_in_t1 ? 1 : 0);
      auto t2 = segments_.size(cache_queue::protected_);
      bool from_t1 = arc_->victim_from_t1(t1, t2, arc_insert_.seen_in_b2);
      auto out = segments_.lru(from_t1 ? cache_queue::probation : cache_queue::protected_);
      auto other = segments_.lru(from_t1 ? cache_queue::protected_ : cache_queue::probation);
      if (other != segment_links::nil && other != inserting && leaves_first(other, out, now))
        out = other;
      // The newest: the entry being inserted, else T1's MRU end (as the segmented shapes'
      // candidate).
      auto newest =
          inserting != segment_links::nil ? inserting : segments_.mru(cache_queue::probation);
      if (newest != segment_links::nil && newest != out && leaves_first(newest, out, now))
        out = newest;
      if (out == inserting)
        arc_insert_.entry = segment_links::nil;
      else
        arc_->evicted(segments_[out].hash, segments_[out].queue == cache_queue::probation);
      remove(out, segments_[out].expires_at <= now ? eviction_reason::expired : why);
    }
    arc_->trim(segments_.size(cache_queue::probation), segments_.size(cache_queue::protected_));
  }

  /// The segmented shapes' eviction: the candidate at probation's MRU end against the victim at
  /// its LRU end (the header comment).
  void evict_matched(clock_time now, eviction_reason why) {
    while (over() && segments_.size() > 0) {
      if (segments_.size(cache_queue::probation) == 0) {
        auto from = segments_.size(cache_queue::protected_) > 0 ? cache_queue::protected_
                                                                : cache_queue::window;
        segments_.move_to(cache_queue::probation, segments_.lru(from));
      }
      auto candidate = segments_.mru(cache_queue::probation);
      auto victim = segments_.lru(cache_queue::probation);
      auto out = candidate == victim ? victim : loser(candidate, victim, now);
      bool rotate = out == candidate && candidate != victim &&
                    !leaves_first(candidate, victim, now) &&
                    rotates_victim(shape_, sketch_.frequency(segments_[candidate].hash),
                                   sketch_.frequency(segments_[victim].hash));
      remove(out, segments_[out].expires_at <= now ? eviction_reason::expired : why);
      if (rotate)
        segments_.move_to(cache_queue::probation, victim);
    }
  }

  adaptive_cache_config cfg_;
  size_t max_bytes_ = cfg_.max_bytes;
  size_t effective_entries_ = cfg_.max_entries; ///< entries the shares are of (fit_shares_to)
  size_t bytes_ = 0;
  Hash hash_;
  frequency_sketch sketch_;
  shape_selector selector_;
  cache_shape shape_;
  cache_segments<node> segments_;
  std::unordered_map<Key, uint32_t, std::hash<Key>> index_;
  cache_counters counters_;
  size_t sweep_cursor_ = 0;
  std::unique_ptr<arc_history> arc_; ///< while the shape is ARC: B1, B2 and T1's target
  /// While `put` evicts for the entry it is inserting under ARC: that entry (until it is refused)
  /// and whether its key was found in B2 (ARC's tie rule for the victim). Reset after the put, so
  /// an eviction for a smaller budget does not apply it.
  struct arc_insert {
    uint32_t entry = segment_links::nil;
    bool seen_in_b2 = false;
  } arc_insert_;
};

} // namespace bulwark::detail
