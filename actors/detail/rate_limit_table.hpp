#pragma once
/// The rate limiter's key table, CAF-free: an exact per-key limit, a table of keys bounded in
/// bytes with idle expiry and frequency-based admission, and one shared overflow bucket for the
/// keys that do not fit. The `rate_limiter` actor owns time, the expiry timer and the pressure
/// signal; this class only decides. Every method takes `now`, a monotonic clock reading in ns
/// (expected never to go backwards; an earlier reading is treated conservatively, see below), so
/// tests are exact. There is no decision cache: every request is decided against the key's state.
///
/// Per-key limit, `algorithm`:
/// - gcra (generic cell rate algorithm). T = ⌈1e9 / rate_per_sec⌉ ns (rounded up, so the real
///   rate never exceeds the configured one) and τ = (burst − 1) × T. A key keeps its theoretical
///   arrival time TAT (a new key has none). At `now`, with tat = max(TAT, now):
///   allowed iff tat − now <= τ; then TAT = tat + T and
///   remaining = ⌊(burst × T − (TAT − now)) / T⌋ (requests still allowed at this instant);
///   else limited with retry_after = tat − τ − now (> 0), remaining 0, and TAT unchanged.
///   Guarantee: over any interval [a, b] one key gets at most ⌊(b − a) / T⌋ + burst <=
///   rate_per_sec × (b − a) + burst allowed requests.
/// - sliding_window: a key keeps its last `limit` allowed timestamps (a ring). Allowed iff fewer
///   than `limit` of them lie in (now − window, now], i.e. the oldest is <= now − window; then now
///   replaces the oldest and remaining = the number of stored timestamps <= now − window (requests
///   still allowed at this instant); else limited with retry_after = oldest + window − now.
///   Guarantee: any half-open interval of length `window` holds at most `limit` allowed requests
///   of one key. (An allowed request is stored at max(now, the key's newest timestamp), so a
///   reading that goes backwards can only make the limit stricter.)
/// Both: a request at now + retry_after is allowed and one at now + retry_after − 1 ns is not
/// (when no other request of that key came in between); a limited request changes nothing, so
/// denied traffic never consumes capacity (the original added denied requests to its window).
///
/// Cost. A request may cost n >= 1 units (a batch of n items, POST /v1/batch): it is decided as n
/// requests at the same instant, all or none. gcra: allowed iff tat + (n − 1) × T − now <= τ,
/// then TAT = tat + n × T; retry_after = tat + (n − 1) × T − τ − now. sliding_window: allowed iff
/// the n oldest stored timestamps are <= now − window, then n copies of the time replace them;
/// retry_after = the n-th oldest + window − now. The guarantees above hold counting units. A
/// cost above the capacity (burst, or limit) could never be allowed: it is decided as the
/// capacity (the config check keeps batches within it; see database.max_batch_items).
///
/// Idle keys. A key is *idle* at `now` when its state is indistinguishable from a new key's:
/// TAT <= now (gcra), or newest timestamp <= now − window (sliding_window). Its `idle_at` is that
/// moment, at most `horizon` after its last request, horizon = burst × T (gcra) or window
/// (sliding_window). Dropping an idle key loses nothing. Keys are kept in least-recently-used
/// order (a request, allowed or limited, moves its key to the MRU end), and idle keys are dropped
/// from the LRU end only: `expire(now)` drops LRU keys while they are idle and stops at the first
/// one that is not, and every decision does the same for at most `idle_sweep_per_decision` keys.
/// Since the LRU key is the one asked for least recently, a key whose last request was at t is
/// certainly gone after expire(now) for any now >= t + horizon; an idle key behind a busier LRU
/// key may stay up to that long (it is still counted in bytes()).
///
/// Who gets a place in the table. A request for a key in the table is decided by its own limit
/// (outcome allowed or limited). A new key is inserted when it fits in max_bytes (see Bytes). When
/// it does not fit:
/// 1. idle keys are dropped from the LRU end until it fits (eviction reason idle);
/// 2. else the newcomer may take the place of the LRU keys, walking at most 4 of them from the LRU
///    end until enough bytes are freed, but only if every one of them is idle or less frequent
///    than the newcomer: sketch estimate of the victim < estimate of the newcomer (TinyLFU; the
///    sketch counts every request, this one included). Then they are evicted (reason capacity,
///    or idle) and the newcomer is inserted;
/// 3. otherwise nobody is evicted and the newcomer is not stored. It is served by `overflow`:
///    - fail_closed (default): the shared overflow bucket, one GCRA with overflow_rate_per_sec and
///      overflow_burst (rules as above), decides: outcome overflow_allowed or overflow_limited
///      with its exact retry_after and remaining. All keys outside the table share it.
///    - fail_open: allowed, outcome open_allowed, remaining as for a new key (burst − 1 or
///      limit − 1), retry_after 0. Keys outside the table are not limited at all.
///    A key that stays out is not limited by its own rate (fail_closed limits it only through the
///    shared bucket); asking again raises its sketch estimate until it beats the LRU key.
/// So a flood of one-off keys does not flush established keys: count-min never undercounts, so a
/// key with n requests since the sketch's last halving is displaced only by a newcomer estimated
/// above n, and a one-off newcomer's estimate is 1 plus collisions (a few, in a sketch sized for
/// the table). The flood lands in the overflow bucket (fail_closed), limited as a whole. The
/// protection is only as good as the key's frequency: the sketch halves every 10 × sketch_keys
/// requests (all keys together), so a key asked for only a couple of times per such period decays
/// to the collision level and a large enough flood can displace it (measured: with the default
/// sketch, keys asked ~9 times per period kept their place against a 10:1 flood; keys asked ~2
/// times did not).
///
/// When a key that is not idle loses its state, and why that is acceptable. It happens only
/// (a) in step 2 above: it was among the 4 least recently used keys and the newcomer is strictly
/// more frequent, i.e. the newcomer's claim on the memory is better; and (b) in set_max_bytes
/// below the current bytes(): the process's memory wins over exact limits (every component
/// obeys pressure). The key then starts over as a new key when it returns (if it gets a place),
/// so over an interval containing the eviction it gets at most one extra `burst` (gcra) or
/// `limit` (sliding_window) beyond its guarantee, once per eviction.
///
/// Bytes. bytes() = Σ entries + index, and is <= max_bytes after every call returns:
/// - an entry is one allocation of 48 bytes (LRU links, chain link, hash, idle_at, key length,
///   ring position) + 8 × limit (sliding_window ring) + the key's bytes, charged as glibc malloc
///   rounds it: request + 8 rounded up to a multiple of 16, at least 32 (entry_bytes()). E.g.
///   gcra with a key of 9..24 bytes: 80 bytes.
/// - the index is a chained hash table of 8-byte bucket heads, a power of two >= keys() (at least
///   16), doubled when a new key would exceed one key per bucket: 8 to 16 bytes per key while the
///   table grows. It shrinks only in set_max_bytes (when it must, or when it is 4 times what the
///   keys need), so after many keys expired it can cost more per key (it is still counted). A
///   doubling rehashes every key in that call (O(n) once per doubling, O(1) amortised: but the
///   decision that doubles 8M keys to 16M buckets took ~150 ms in bench/limiter_bench.cpp's
///   setting), and the old array (half the new one) is alive during the rehash only.
/// - not counted: the frequency sketch, fixed at construction (sketch_bytes(), 8 to 16 bytes per
///   `sketch_keys`), and this object itself.
/// A key longer than fits in max_bytes on its own is never stored (it goes to overflow).
///
/// Pressure. set_max_bytes(b, now) evicts until the keys left and an index shrunk to fit them are
/// within b: idle keys first (found walking from the LRU end over at most about twice as many keys
/// as must go, plus 64), then least recently used keys (reason pressure; idle ones still count as
/// idle), then shrinks the index; with b = 0 the table is empty and every request goes to
/// overflow. A later, larger b lets the table grow again (the sketch keeps its size).
///
/// Cost: decide is O(1) amortised: one hash of the key, one bucket chain (expected < 1.5 keys),
/// the sketch (4 words), an LRU relink, at most idle_sweep_per_decision idle checks and at most 4
/// victim checks; each drop or eviction is paid for by the insertion of that key. A sliding-window
/// decision adds O(log limit) for `remaining` and an insertion O(limit) to initialise the ring.
/// expire and set_max_bytes are O(keys removed + 1) (set_max_bytes also O(keys) when it shrinks
/// the index).

#include "actors/detail/frequency_sketch.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::detail {

enum class rate_limit_algorithm : uint8_t { gcra = 0, sliding_window = 1 };

/// "gcra" or "sliding_window".
const char* to_string(rate_limit_algorithm x);

enum class rate_limit_overflow_policy : uint8_t {
  fail_closed = 0, ///< keys without a place share the overflow bucket
  fail_open = 1,   ///< keys without a place are allowed (outcome open_allowed)
};

/// "fail_closed" or "fail_open".
const char* to_string(rate_limit_overflow_policy x);

enum class rate_limit_outcome : uint8_t {
  allowed = 0,          ///< the key's own limit allowed it
  limited = 1,          ///< the key's own limit refused it
  overflow_allowed = 2, ///< no place in the table; the shared overflow bucket allowed it
  overflow_limited = 3, ///< no place in the table; the shared overflow bucket refused it
  open_allowed = 4,     ///< no place in the table, fail_open: allowed without a limit
};
constexpr std::size_t rate_limit_outcome_count = 5;

/// "allowed", "limited", "overflow_allowed", "overflow_limited" or "open_allowed" (metric labels).
const char* to_string(rate_limit_outcome x);

enum class rate_limit_eviction : uint8_t {
  idle = 0,     ///< the key was idle (nothing lost): expire, the per-decision sweep, admission
  capacity = 1, ///< a more frequent newcomer took its place
  pressure = 2, ///< set_max_bytes lowered the budget
};
constexpr std::size_t rate_limit_eviction_count = 3;

/// "idle", "capacity" or "pressure" (metric labels).
const char* to_string(rate_limit_eviction x);

struct rate_limit_config {
  rate_limit_algorithm algorithm = rate_limit_algorithm::gcra;
  /// gcra: sustained requests per second per key, in (0, 1e9].
  double rate_per_sec = 10;
  /// gcra: requests a key may make at once (>= 1); burst / rate_per_sec is at most one year.
  uint32_t burst = 20;
  /// sliding_window: requests per window per key, in [1, 1'000'000] (8 bytes each per key).
  uint32_t limit = 100;
  /// sliding_window: the window, in (0, 1 year].
  std::chrono::nanoseconds window = std::chrono::seconds(1);
  /// Budget of the key table (entries + index); see the header comment.
  std::size_t max_bytes = std::size_t{16} << 20;
  rate_limit_overflow_policy overflow = rate_limit_overflow_policy::fail_closed;
  /// fail_closed: the shared overflow bucket's rate, in (0, 1e9].
  double overflow_rate_per_sec = 100;
  /// fail_closed: the shared overflow bucket's burst (>= 1).
  uint32_t overflow_burst = 100;
  /// Idle LRU keys dropped at most per decision, in [0, 64] (0: only expire() drops them).
  std::size_t idle_sweep_per_decision = 2;
  /// Distinct keys the frequency sketch is sized for, at most 2^30; 0: as many keys as max_bytes
  /// holds with 16-byte keys (max_bytes / (entry_bytes(16) + 8)).
  std::size_t sketch_keys = 0;
};

/// Every problem with `x`, each naming its field ("burst: must be >= 1, is 0"); empty when valid.
/// Fields of the algorithm not chosen, and the overflow bucket under fail_open, are not checked.
std::vector<std::string> validate(const rate_limit_config& x);

struct rate_limit_decision {
  bool allowed = false;
  /// When refused: the exact wait until a request would be allowed (> 0); else 0.
  std::chrono::nanoseconds retry_after{0};
  /// Requests still allowed at this instant after this one (for the overflow outcomes: the
  /// overflow bucket's).
  uint64_t remaining = 0;
  rate_limit_outcome outcome = rate_limit_outcome::allowed;
};

class rate_limit_table {
public:
  using duration = std::chrono::nanoseconds;

  /// Throws std::invalid_argument listing every problem validate() finds (a start-up error).
  explicit rate_limit_table(rate_limit_config cfg);
  ~rate_limit_table();

  rate_limit_table(const rate_limit_table&) = delete;
  rate_limit_table& operator=(const rate_limit_table&) = delete;

  /// Decides one request of `key` at `now`, costing `cost` units (0 counts as 1); see the header
  /// comment.
  rate_limit_decision decide(std::string_view key, duration now, uint32_t cost = 1);

  /// Drops idle keys from the LRU end, at most `max_removals`, stopping at the first key that is
  /// not idle. Returns how many were dropped (reason idle).
  std::size_t expire(duration now,
                     std::size_t max_removals = std::numeric_limits<std::size_t>::max());

  /// When the LRU key becomes idle, i.e. the earliest time expire() drops anything (nothing when
  /// the table is empty): for arming the actor's timer.
  std::optional<duration> next_expiry() const;

  /// Sets the budget and evicts down to it (see Pressure in the header comment).
  void set_max_bytes(std::size_t bytes, duration now);

  std::size_t max_bytes() const { return max_bytes_; }
  std::size_t keys() const { return keys_; }
  /// Entries + index, as charged (see Bytes in the header comment).
  std::size_t bytes() const { return entries_bytes_ + index_bytes(); }
  std::size_t index_bytes() const { return buckets_count_ * sizeof(void*); }
  std::size_t sketch_bytes() const { return sketch_.bytes(); }
  /// What one entry with a key of `key_length` bytes is charged (without its index share).
  std::size_t entry_bytes(std::size_t key_length) const;
  /// Whether `key` has a place in the table (changes nothing).
  bool contains(std::string_view key) const;

  uint64_t decisions(rate_limit_outcome x) const { return decisions_[static_cast<int>(x)]; }
  uint64_t evictions(rate_limit_eviction x) const { return evictions_[static_cast<int>(x)]; }
  /// Keys inserted so far; keys() == inserted() − the sum of evictions().
  uint64_t inserted() const { return inserted_; }

  /// gcra: T, the time between two requests at the sustained rate.
  duration emission_interval() const { return duration{interval_}; }
  const rate_limit_config& config() const { return cfg_; }

private:
  struct entry;

  entry* find(uint64_t hash, std::string_view key) const;
  entry* insert(std::string_view key, uint64_t hash);
  void erase(entry* e, rate_limit_eviction why);
  void touch(entry* e);
  void rehash(std::size_t buckets);
  /// Index bytes to add when the table grows to `keys_after` keys.
  std::size_t index_growth(std::size_t keys_after) const;
  bool fits(std::size_t entry_size, std::size_t freed, std::size_t removed) const;
  bool admit(std::size_t key_length, uint64_t hash, int64_t now);
  rate_limit_decision decide_entry(entry* e, int64_t now, uint32_t cost);
  rate_limit_decision overflow(int64_t now, uint32_t cost);
  std::size_t drop_idle(int64_t now, std::size_t max);
  rate_limit_decision count(rate_limit_decision d);

  rate_limit_config cfg_;
  // gcra: T, τ and burst × T for the keys and for the overflow bucket, in ns.
  int64_t interval_ = 0;
  int64_t tolerance_ = 0;
  int64_t burst_span_ = 0;
  int64_t overflow_interval_ = 0;
  int64_t overflow_tolerance_ = 0;
  int64_t overflow_burst_span_ = 0;
  int64_t overflow_tat_;
  // sliding_window
  int64_t window_ = 0;
  std::size_t ring_bytes_ = 0;

  frequency_sketch sketch_;
  std::size_t max_bytes_;
  std::size_t keys_ = 0;
  std::size_t entries_bytes_ = 0;
  std::unique_ptr<entry*[]> buckets_;
  std::size_t buckets_count_ = 0;
  entry* newest_ = nullptr; // MRU end
  entry* oldest_ = nullptr; // LRU end

  std::array<uint64_t, rate_limit_outcome_count> decisions_{};
  std::array<uint64_t, rate_limit_eviction_count> evictions_{};
  uint64_t inserted_ = 0;
};

} // namespace bulwark::detail
