#include "actors/detail/rate_limit_table.hpp"

#include "actors/detail/text.hpp"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>

namespace bulwark::detail {

/// One key's state, followed in the same allocation by the sliding-window ring (`limit`
/// int64_t, oldest at `pos`) and the key's bytes.
struct rate_limit_table::entry {
  entry* newer;          // towards the MRU end
  entry* older;          // towards the LRU end
  entry* next_in_bucket; // the index's chain
  uint64_t hash;         // hash_bytes(key)
  int64_t idle_at;       // gcra: TAT; sliding_window: newest timestamp + window
  uint32_t key_length;
  uint32_t pos; // sliding_window: ring index of the oldest timestamp
};

namespace {

using std::chrono::nanoseconds;

static_assert(sizeof(void*) == 8, "the byte accounting assumes 64-bit pointers");

constexpr int64_t never = std::numeric_limits<int64_t>::min();
constexpr uint32_t max_limit = 1'000'000;
constexpr auto one_year = std::chrono::hours(24 * 365);
constexpr double one_year_s = 365.0 * 24 * 3600;
constexpr std::size_t min_buckets = 16;
constexpr std::size_t max_victims = 4;
constexpr std::size_t max_sweep = 64;
constexpr std::size_t max_sketch_keys = std::size_t{1} << 30;
constexpr std::size_t max_key_length = std::numeric_limits<uint32_t>::max();
/// sizeof(rate_limit_table::entry), checked in the constructor.
constexpr std::size_t header_bytes = 48;

/// What glibc malloc takes for a request of n bytes: n plus its 8-byte chunk header, rounded up to
/// 16, at least 32.
constexpr std::size_t charged(std::size_t n) {
  return std::max<std::size_t>(32, (n + 8 + 15) & ~std::size_t{15});
}

std::size_t ring_bytes(const rate_limit_config& x) {
  return x.algorithm == rate_limit_algorithm::sliding_window
             ? sizeof(int64_t) * std::clamp<std::size_t>(x.limit, 1, max_limit)
             : 0;
}

std::size_t entry_charge(const rate_limit_config& x, std::size_t key_length) {
  return charged(header_bytes + ring_bytes(x) + key_length);
}

/// The smallest useful budget: the smallest index and one entry with a 64-byte key.
std::size_t min_max_bytes(const rate_limit_config& x) {
  return min_buckets * sizeof(void*) + entry_charge(x, 64);
}

std::size_t pow2_at_least(std::size_t n) {
  std::size_t x = 1;
  while (x < n)
    x <<= 1;
  return x;
}

/// Buckets of an index that holds `keys` keys and is as small as allowed.
std::size_t buckets_for(std::size_t keys) {
  return keys == 0 ? 0 : std::max(min_buckets, pow2_at_least(keys));
}

/// T = ⌈1e9 / rate⌉ ns (>= 1 for a valid rate).
int64_t interval_of(double rate_per_sec) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(1e9 / rate_per_sec)));
}

struct gcra_result {
  bool allowed;
  int64_t retry_after;
  uint64_t remaining;
};

/// One GCRA decision of `cost` units on `tat` (see the header comment); a refusal leaves `tat`
/// alone. `cost` is at most the burst (span / interval), so the last unit's place fits in int64.
gcra_result gcra(int64_t& tat, int64_t now, int64_t interval, int64_t tolerance, int64_t span,
                 uint32_t cost) {
  int64_t t = std::max(tat, now);
  int64_t last = t + (static_cast<int64_t>(cost) - 1) * interval; // the n-th unit's arrival
  if (last - now <= tolerance) {
    tat = last + interval;
    return {true, 0, static_cast<uint64_t>((span - (tat - now)) / interval)};
  }
  return {false, last - tolerance - now, 0};
}

rate_limit_config checked(rate_limit_config cfg) {
  auto problems = validate(cfg);
  if (!problems.empty()) {
    std::string what = "invalid rate_limit_config:";
    for (auto& p : problems)
      what += "\n  " + p;
    throw std::invalid_argument(what);
  }
  return cfg;
}

std::size_t sketch_size(const rate_limit_config& x) {
  if (x.sketch_keys != 0)
    return x.sketch_keys;
  return x.max_bytes / (entry_charge(x, 16) + sizeof(void*));
}

} // namespace

const char* to_string(rate_limit_algorithm x) {
  switch (x) {
  case rate_limit_algorithm::gcra:
    return "gcra";
  case rate_limit_algorithm::sliding_window:
    return "sliding_window";
  }
  return "invalid";
}

const char* to_string(rate_limit_overflow_policy x) {
  switch (x) {
  case rate_limit_overflow_policy::fail_closed:
    return "fail_closed";
  case rate_limit_overflow_policy::fail_open:
    return "fail_open";
  }
  return "invalid";
}

const char* to_string(rate_limit_outcome x) {
  switch (x) {
  case rate_limit_outcome::allowed:
    return "allowed";
  case rate_limit_outcome::limited:
    return "limited";
  case rate_limit_outcome::overflow_allowed:
    return "overflow_allowed";
  case rate_limit_outcome::overflow_limited:
    return "overflow_limited";
  case rate_limit_outcome::open_allowed:
    return "open_allowed";
  }
  return "invalid";
}

const char* to_string(rate_limit_eviction x) {
  switch (x) {
  case rate_limit_eviction::idle:
    return "idle";
  case rate_limit_eviction::capacity:
    return "capacity";
  case rate_limit_eviction::pressure:
    return "pressure";
  }
  return "invalid";
}

std::vector<std::string> validate(const rate_limit_config& x) {
  std::vector<std::string> out;
  auto bad = [&](const char* field, const std::string& what) {
    out.push_back(std::string(field) + ": " + what);
  };
  auto rate_ok = [](double v) { return v > 0 && v <= 1e9; };
  auto bucket = [&](const char* rate_field, double rate, const char* burst_field, uint32_t burst) {
    if (!rate_ok(rate))
      bad(rate_field, format("must be in (0, 1e9], is %g", rate));
    if (burst < 1)
      bad(burst_field, "must be >= 1, is 0");
    else if (rate_ok(rate) && burst / rate > one_year_s)
      bad(burst_field,
          format(
              "%s / %s (the time to refill a full burst) must be <= 1 year (31536000 s), is %g s",
              burst_field, rate_field, burst / rate));
  };
  if (x.algorithm == rate_limit_algorithm::gcra) {
    bucket("rate_per_sec", x.rate_per_sec, "burst", x.burst);
  } else {
    if (x.limit < 1 || x.limit > max_limit)
      bad("limit", format("must be in [1, %u], is %u", max_limit, x.limit));
    if (x.window <= nanoseconds(0) || x.window > one_year)
      bad("window", format("must be in (0, 31536000] s, is %g s", secs(x.window)));
  }
  if (x.overflow == rate_limit_overflow_policy::fail_closed)
    bucket("overflow_rate_per_sec", x.overflow_rate_per_sec, "overflow_burst", x.overflow_burst);
  if (x.max_bytes < min_max_bytes(x))
    bad("max_bytes",
        format("must be >= %zu (the smallest index and one entry with a 64-byte key), is %zu",
               min_max_bytes(x), x.max_bytes));
  if (x.idle_sweep_per_decision > max_sweep)
    bad("idle_sweep_per_decision",
        format("must be in [0, %zu], is %zu", max_sweep, x.idle_sweep_per_decision));
  if (x.sketch_keys > max_sketch_keys)
    bad("sketch_keys", format("must be <= %zu, is %zu", max_sketch_keys, x.sketch_keys));
  return out;
}

// -- rate_limit_table -----------------------------------------------------------------------------

namespace {

int64_t* ring_of(void* e) {
  return reinterpret_cast<int64_t*>(static_cast<char*>(e) + header_bytes);
}

const char* key_of(const void* e, std::size_t ring) {
  return static_cast<const char*>(e) + header_bytes + ring;
}

} // namespace

rate_limit_table::rate_limit_table(rate_limit_config cfg)
    : cfg_(checked(cfg)), overflow_tat_(never), sketch_(sketch_size(cfg_)),
      max_bytes_(cfg_.max_bytes) {
  static_assert(sizeof(entry) == header_bytes, "the header comment documents a 48-byte entry");
  if (cfg_.algorithm == rate_limit_algorithm::gcra) {
    interval_ = interval_of(cfg_.rate_per_sec);
    tolerance_ = (static_cast<int64_t>(cfg_.burst) - 1) * interval_;
    burst_span_ = static_cast<int64_t>(cfg_.burst) * interval_;
  } else {
    window_ = cfg_.window.count();
    ring_bytes_ = ring_bytes(cfg_);
  }
  if (cfg_.overflow == rate_limit_overflow_policy::fail_closed) {
    overflow_interval_ = interval_of(cfg_.overflow_rate_per_sec);
    overflow_tolerance_ = (static_cast<int64_t>(cfg_.overflow_burst) - 1) * overflow_interval_;
    overflow_burst_span_ = static_cast<int64_t>(cfg_.overflow_burst) * overflow_interval_;
  }
}

rate_limit_table::~rate_limit_table() {
  for (entry* e = newest_; e != nullptr;) {
    entry* next = e->older;
    e->~entry();
    ::operator delete(e);
    e = next;
  }
}

std::size_t rate_limit_table::entry_bytes(std::size_t key_length) const {
  return charged(sizeof(entry) + ring_bytes_ + key_length);
}

rate_limit_table::entry* rate_limit_table::find(uint64_t hash, std::string_view key) const {
  if (buckets_count_ == 0)
    return nullptr;
  for (entry* e = buckets_[hash & (buckets_count_ - 1)]; e != nullptr; e = e->next_in_bucket)
    if (e->hash == hash && e->key_length == key.size() &&
        (key.empty() || std::memcmp(key_of(e, ring_bytes_), key.data(), key.size()) == 0))
      return e;
  return nullptr;
}

bool rate_limit_table::contains(std::string_view key) const {
  return find(hash_bytes(key), key) != nullptr;
}

std::size_t rate_limit_table::index_growth(std::size_t keys_after) const {
  if (buckets_count_ == 0)
    return keys_after == 0 ? 0 : min_buckets * sizeof(void*);
  return keys_after > buckets_count_ ? buckets_count_ * sizeof(void*) : 0;
}

bool rate_limit_table::fits(std::size_t entry_size, std::size_t freed, std::size_t removed) const {
  auto total =
      entries_bytes_ - freed + entry_size + index_bytes() + index_growth(keys_ - removed + 1);
  return total <= max_bytes_;
}

void rate_limit_table::rehash(std::size_t buckets) {
  std::unique_ptr<entry*[]> fresh;
  if (buckets > 0)
    fresh = std::make_unique<entry*[]>(buckets); // value-initialised: all null
  for (entry* e = newest_; e != nullptr; e = e->older) {
    auto& head = fresh[e->hash & (buckets - 1)];
    e->next_in_bucket = head;
    head = e;
  }
  buckets_ = std::move(fresh);
  buckets_count_ = buckets;
}

rate_limit_table::entry* rate_limit_table::insert(std::string_view key, uint64_t hash) {
  if (index_growth(keys_ + 1) > 0)
    rehash(buckets_count_ == 0 ? min_buckets : buckets_count_ * 2);
  void* p = ::operator new(sizeof(entry) + ring_bytes_ + key.size());
  auto* e =
      new (p) entry{nullptr, nullptr, nullptr, hash, never, static_cast<uint32_t>(key.size()), 0};
  if (ring_bytes_ > 0)
    std::uninitialized_fill_n(ring_of(e), cfg_.limit, never);
  if (!key.empty())
    std::memcpy(static_cast<char*>(p) + sizeof(entry) + ring_bytes_, key.data(), key.size());
  auto& head = buckets_[hash & (buckets_count_ - 1)];
  e->next_in_bucket = head;
  head = e;
  e->older = newest_;
  if (newest_ != nullptr)
    newest_->newer = e;
  else
    oldest_ = e;
  newest_ = e;
  ++keys_;
  entries_bytes_ += entry_bytes(key.size());
  ++inserted_;
  return e;
}

void rate_limit_table::erase(entry* e, rate_limit_eviction why) {
  // LRU list
  if (e->newer != nullptr)
    e->newer->older = e->older;
  else
    newest_ = e->older;
  if (e->older != nullptr)
    e->older->newer = e->newer;
  else
    oldest_ = e->newer;
  // index
  entry** link = &buckets_[e->hash & (buckets_count_ - 1)];
  while (*link != e)
    link = &(*link)->next_in_bucket;
  *link = e->next_in_bucket;
  --keys_;
  entries_bytes_ -= entry_bytes(e->key_length);
  ++evictions_[static_cast<int>(why)];
  e->~entry();
  ::operator delete(e);
}

void rate_limit_table::touch(entry* e) {
  if (e == newest_)
    return;
  // e has a newer neighbour, so it is not newest_.
  e->newer->older = e->older;
  if (e->older != nullptr)
    e->older->newer = e->newer;
  else
    oldest_ = e->newer;
  e->newer = nullptr;
  e->older = newest_;
  newest_->newer = e;
  newest_ = e;
}

std::size_t rate_limit_table::drop_idle(int64_t now, std::size_t max) {
  std::size_t n = 0;
  while (n < max && oldest_ != nullptr && oldest_->idle_at <= now) {
    erase(oldest_, rate_limit_eviction::idle);
    ++n;
  }
  return n;
}

std::size_t rate_limit_table::expire(duration now, std::size_t max_removals) {
  return drop_idle(now.count(), max_removals);
}

std::optional<rate_limit_table::duration> rate_limit_table::next_expiry() const {
  if (oldest_ == nullptr)
    return std::nullopt;
  return duration{oldest_->idle_at};
}

bool rate_limit_table::admit(std::size_t key_length, uint64_t hash, int64_t now) {
  const auto size = entry_bytes(key_length);
  if (size + min_buckets * sizeof(void*) > max_bytes_)
    return false; // never fits, whatever leaves
  // 1. Idle keys cost nothing to drop.
  while (!fits(size, 0, 0) && oldest_ != nullptr && oldest_->idle_at <= now)
    erase(oldest_, rate_limit_eviction::idle);
  if (fits(size, 0, 0))
    return true;
  // 2. The newcomer replaces LRU keys only if it is more frequent than each of them.
  const auto mine = sketch_.frequency(hash);
  std::size_t freed = 0;
  std::size_t removed = 0;
  for (entry* v = oldest_; v != nullptr && removed < max_victims; v = v->newer) {
    if (v->idle_at > now && sketch_.frequency(v->hash) >= mine)
      return false;
    freed += entry_bytes(v->key_length);
    ++removed;
    if (fits(size, freed, removed)) {
      for (std::size_t i = 0; i < removed; ++i)
        erase(oldest_,
              oldest_->idle_at <= now ? rate_limit_eviction::idle : rate_limit_eviction::capacity);
      return true;
    }
  }
  // 3. Overflow.
  return false;
}

rate_limit_decision rate_limit_table::decide_entry(entry* e, int64_t now, uint32_t cost) {
  if (cfg_.algorithm == rate_limit_algorithm::gcra) {
    auto r = gcra(e->idle_at, now, interval_, tolerance_, burst_span_,
                  std::min<uint32_t>(cost, cfg_.burst));
    if (r.allowed)
      return {true, duration{0}, r.remaining, rate_limit_outcome::allowed};
    return {false, duration{r.retry_after}, 0, rate_limit_outcome::limited};
  }
  int64_t* ring = ring_of(e);
  const uint32_t limit = cfg_.limit;
  const int64_t threshold = now - window_; // a timestamp <= threshold is out of the window
  uint32_t pos = e->pos;
  const uint32_t n = std::min(cost, limit);
  // The ring, read from pos, is oldest first: the n oldest are out of the window iff the n-th is.
  const uint32_t nth = pos + n - 1 < limit ? pos + n - 1 : pos + n - 1 - limit;
  if (ring[nth] > threshold)
    return {false, duration{ring[nth] + window_ - now}, 0, rate_limit_outcome::limited};
  const int64_t newest = ring[pos == 0 ? limit - 1 : pos - 1];
  const int64_t at = std::max(now, newest); // keeps the ring in order
  for (uint32_t k = 0; k < n; ++k) {
    ring[pos] = at;
    pos = pos + 1 == limit ? 0 : pos + 1;
  }
  e->pos = pos;
  e->idle_at = at + window_;
  // The ring, read from pos, is oldest first: count its leading timestamps <= threshold.
  uint32_t lo = 0;
  uint32_t hi = limit;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    uint32_t i = pos + mid;
    if (i >= limit)
      i -= limit;
    if (ring[i] <= threshold)
      lo = mid + 1;
    else
      hi = mid;
  }
  return {true, duration{0}, lo, rate_limit_outcome::allowed};
}

rate_limit_decision rate_limit_table::overflow(int64_t now, uint32_t cost) {
  if (cfg_.overflow == rate_limit_overflow_policy::fail_open) {
    uint64_t fresh = cfg_.algorithm == rate_limit_algorithm::gcra ? cfg_.burst - 1 : cfg_.limit - 1;
    return {true, duration{0}, fresh, rate_limit_outcome::open_allowed};
  }
  auto r = gcra(overflow_tat_, now, overflow_interval_, overflow_tolerance_, overflow_burst_span_,
                std::min<uint32_t>(cost, cfg_.overflow_burst));
  if (r.allowed)
    return {true, duration{0}, r.remaining, rate_limit_outcome::overflow_allowed};
  return {false, duration{r.retry_after}, 0, rate_limit_outcome::overflow_limited};
}

rate_limit_decision rate_limit_table::count(rate_limit_decision d) {
  ++decisions_[static_cast<int>(d.outcome)];
  return d;
}

rate_limit_decision rate_limit_table::decide(std::string_view key, duration now_reading,
                                             uint32_t cost) {
  const int64_t now = now_reading.count();
  cost = std::max<uint32_t>(cost, 1);
  const uint64_t hash = hash_bytes(key);
  if (buckets_count_ > 0) // the sketch's cache misses then overlap the bucket's
    __builtin_prefetch(&buckets_[hash & (buckets_count_ - 1)]);
  sketch_.increment(hash);
  if (entry* e = find(hash, key)) {
    auto d = decide_entry(e, now, cost);
    touch(e);
    // e is not idle after any decision (allowed or limited), so the sweep stops before it.
    drop_idle(now, cfg_.idle_sweep_per_decision);
    return count(d);
  }
  drop_idle(now, cfg_.idle_sweep_per_decision);
  if (key.size() <= max_key_length && admit(key.size(), hash, now))
    return count(decide_entry(insert(key, hash), now, cost));
  return count(overflow(now, cost));
}

void rate_limit_table::set_max_bytes(std::size_t bytes, duration now_reading) {
  const int64_t now = now_reading.count();
  max_bytes_ = bytes;
  // Over budget even with the index shrunk to fit the keys left?
  auto over = [&] { return entries_bytes_ + buckets_for(keys_) * sizeof(void*) > bytes; };
  if (over()) {
    // Idle keys first, looking from the LRU end at about twice as many keys as must go.
    const auto excess = entries_bytes_ + buckets_for(keys_) * sizeof(void*) - bytes;
    const auto average = std::max<std::size_t>(1, entries_bytes_ / keys_);
    auto budget = 2 * (excess / average + 1) + 64;
    for (entry* e = oldest_; e != nullptr && budget > 0 && over(); --budget) {
      entry* next = e->newer;
      if (e->idle_at <= now)
        erase(e, rate_limit_eviction::idle);
      e = next;
    }
  }
  while (oldest_ != nullptr && over())
    erase(oldest_,
          oldest_->idle_at <= now ? rate_limit_eviction::idle : rate_limit_eviction::pressure);
  const auto want = buckets_for(keys_);
  if (want != buckets_count_ && (this->bytes() > bytes || want * 4 <= buckets_count_))
    rehash(want);
}

} // namespace bulwark::detail
