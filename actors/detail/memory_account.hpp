#pragma once
/// The node's memory account: one budget from which every allocation that grows with load
/// reserves before it allocates and releases when it is gone. CAF-free and thread-safe (atomics;
/// any thread may reserve, grow or release).
///
/// The budget is the memory monitor's limit (the cgroup limit, or `memory.budget_bytes`); the
/// monitor also reports, on every sample, what the node uses in all (`observe`). What it uses
/// beyond the reservations is the *unaccounted* part (code, stacks, caches of the allocator,
/// memory freed but not yet given back). So the two views of the one budget are:
///
///   pressure ratio  = used / budget                          (measured, every sample)
///   admission test  = unaccounted + reserved + asked <= ceiling(class) x budget   (every ask)
///
/// The ceilings sit on the monitor's thresholds, so the account alone keeps the ratio below the
/// level that would refuse everything: low-priority work may fill the budget up to the `medium`
/// threshold, normal work up to `high`, high-priority work all of it. At critical pressure
/// (the monitor's level, fed in by `observe`) low and normal work is refused whatever the
/// account says. Work already admitted that must finish may `force` past its ceiling (counted as
/// an overdraft), so nothing admitted is ever dropped for memory.
///
/// A reservation is a handle: its destructor releases what it holds, so nothing leaks on an
/// exception, a timeout or an actor that dies holding it.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace bulwark::detail {

/// Who holds reserved bytes (the label of `bulwark_memory_reserved_bytes{consumer}`).
enum class memory_consumer : uint8_t {
  /// Every query admitted by the gateway, whoever sent it (HTTP, the facade, a remote node), from
  /// admission until its answer is gone: waiting in the pool's queue, its rows in the connection
  /// and in messages, the rendered answer on its way out.
  results = 0,
  http_bodies, ///< request bodies being read
  cache,       ///< the cache shards' entries
  limiter,     ///< the rate limiter's per-key table
  remote,      ///< remote requests pending at the front door (their place in its map)
};
constexpr size_t memory_consumer_count = 5;

/// "results", "http_bodies", "cache", "limiter", "remote".
const char* to_string(memory_consumer x);

/// The admission class of the work asking (a request's priority): which ceiling applies.
enum class memory_class : uint8_t { low = 0, normal = 1, high = 2 };

struct memory_account_options {
  /// The budget before the first observation (then the monitor's limit).
  uint64_t budget_bytes = 1024ull * 1024 * 1024;
  /// Fractions of the budget up to which each class may fill it (unaccounted + reserved):
  /// low, normal, high. Default: the monitor's default medium and high thresholds, and 1.
  std::array<double, 3> ceilings{0.70, 0.85, 1.0};
  /// false: nothing is refused (the account still counts); the blinded baseline of drills.
  bool admission = true;
};

class memory_account;

/// Bytes held from the account; move-only; the destructor releases them.
class memory_reservation {
public:
  memory_reservation() = default;
  ~memory_reservation() { release(); }
  memory_reservation(memory_reservation&& other) noexcept;
  memory_reservation& operator=(memory_reservation&& other) noexcept;
  memory_reservation(const memory_reservation&) = delete;
  memory_reservation& operator=(const memory_reservation&) = delete;

  /// True when it holds a place in an account (even of 0 bytes).
  explicit operator bool() const { return account_ != nullptr; }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  memory_consumer consumer() const { return consumer_; }

  /// Asks for `more` bytes under the reservation's class; false (nothing changes) when the
  /// account has no room. An empty reservation grants anything (nothing is accounted).
  bool grow(uint64_t more);
  /// Takes `more` bytes even past the ceiling (work already admitted that must finish); counted
  /// as an overdraft.
  void force(uint64_t more);
  /// Grows (forcing) or shrinks to exactly `n` bytes.
  void resize(uint64_t n);
  /// Gives everything back now.
  void release();
  /// A new reservation of 0 bytes in the same account, for the same consumer and class, to grow
  /// on its own (one part of a larger piece of work: a batch's item); empty when this is empty.
  memory_reservation sibling() const;
  /// Takes over what `other` holds (a sibling's), which ends up empty: the account's total does
  /// not change. From another account (or none) the bytes are forced here and given back there.
  void absorb(memory_reservation& other);

private:
  friend class memory_account;
  memory_reservation(std::shared_ptr<memory_account> a, memory_consumer c, memory_class k,
                     uint64_t n)
      : account_(std::move(a)), consumer_(c), class_(k), bytes_(n) {}

  std::shared_ptr<memory_account> account_;
  memory_consumer consumer_ = memory_consumer::results;
  memory_class class_ = memory_class::normal;
  std::atomic<uint64_t> bytes_{0};
};

struct memory_account_snapshot {
  uint64_t budget_bytes = 0;
  uint64_t used_bytes = 0;        ///< the last observation (0 before the first)
  uint64_t unaccounted_bytes = 0; ///< used minus reserved at the last observation
  uint64_t reserved_bytes = 0;
  std::array<uint64_t, memory_consumer_count> reserved{};
  std::array<uint64_t, memory_consumer_count> refused{};         ///< asks refused, by consumer
  std::array<uint64_t, memory_consumer_count> overdraft_bytes{}; ///< forced past a ceiling
  std::array<uint64_t, 3> ceiling_bytes{};                       ///< low, normal, high
  bool critical = false;
  bool admission = true;
};

class memory_account : public std::enable_shared_from_this<memory_account> {
public:
  explicit memory_account(memory_account_options opts = {});

  /// Reserves `bytes` for `consumer` as work of class `k`; an empty handle when refused (no
  /// room under the class's ceiling, or low/normal work at critical pressure). A refusal counts
  /// in `refused` unless `count_refusal` is false (an ask that will be retried: the asker counts
  /// its final refusal with count_refusal()).
  memory_reservation try_reserve(memory_consumer consumer, uint64_t bytes, memory_class k,
                                 bool count_refusal = true);

  /// Counts one refusal of `consumer`'s (see try_reserve).
  void count_refusal(memory_consumer consumer);

  /// Reserves whatever the room (cache bookkeeping of memory that exists already, work that must
  /// finish): never refused, counted as an overdraft past the class's ceiling.
  memory_reservation force_reserve(memory_consumer consumer, uint64_t bytes, memory_class k);

  /// The monitor's sample: what the node uses in all, its limit (the new budget), and whether
  /// the pressure level is critical.
  void observe(uint64_t used_bytes, uint64_t limit_bytes, bool critical);

  /// The level alone (a level change between samples).
  void set_critical(bool critical);

  /// Room left for class `k` right now (0 when none).
  uint64_t room(memory_class k) const;

  memory_account_snapshot snapshot() const;

private:
  friend class memory_reservation;
  bool take(memory_consumer c, memory_class k, uint64_t bytes, bool forced, bool count_refusal);
  void give(memory_consumer c, uint64_t bytes);
  uint64_t ceiling(memory_class k) const;

  memory_account_options opts_;
  std::atomic<uint64_t> budget_;
  std::atomic<uint64_t> used_{0};
  std::atomic<uint64_t> unaccounted_{0};
  std::atomic<uint64_t> reserved_{0};
  std::atomic<bool> critical_{false};
  std::array<std::atomic<uint64_t>, memory_consumer_count> by_consumer_{};
  std::array<std::atomic<uint64_t>, memory_consumer_count> refused_{};
  std::array<std::atomic<uint64_t>, memory_consumer_count> overdraft_{};
};

/// What a query's rows cost in memory on their way to the client, from the backend's own count
/// (`bytes`: text lengths plus 8 per number and per cell), `rows` and `cells`: the backend's
/// copy, the message copy and the rendered JSON of the same bytes (3x), plus the per-cell and
/// per-row bookkeeping of the two in-memory copies (a variant and a db_value per cell, a vector
/// per row). Measured against RSS by the flood drill (bench/memory_drill.sh).
constexpr uint64_t result_cost(uint64_t bytes, uint64_t rows, uint64_t cells) {
  return 3 * bytes + 112 * cells + 96 * rows + 4096;
}

} // namespace bulwark::detail
