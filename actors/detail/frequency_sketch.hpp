#pragma once
/// Hashing and a popularity estimate shared by the cache's eviction policy and the rate limiter's
/// key admission (CAF-free).
///
/// `frequency_sketch` is TinyLFU's count-min sketch (Einziger, Friedman, Manes 2017): four 4-bit
/// counters per key, one in each of four 64-bit words picked by four hashes, so an increment or a
/// lookup touches four words (up to four cache misses on a sketch larger than the cache). A
/// counter saturates at 15. After `sample_size` increments (10 × the width it was sized for)
/// every counter is halved, so the estimate follows the recent past and old popularity fades.
/// Estimates never undercount a key's increments since the last halving (count-min), and
/// overcount only through collisions.
///
/// Memory: 8 bytes per slot, slots = next power of two >= the expected number of distinct keys
/// (at least 64), i.e. about 8-16 bytes per key.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace bulwark::detail {

/// A strong 64-bit finaliser (splitmix64's): every input bit affects every output bit.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/// A 64-bit hash of bytes (FNV-1a, then mix64 so that low bits are usable as a shard index).
constexpr uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return mix64(h);
}

class frequency_sketch {
public:
  /// Sized for about `expected_keys` distinct keys.
  explicit frequency_sketch(size_t expected_keys = 0);

  /// Re-sizes (and clears) for a new expected number of keys.
  void resize(size_t expected_keys);

  /// Counts one occurrence of the key whose hash is `h` (any well-mixed 64-bit hash).
  void increment(uint64_t h);

  /// The estimated number of occurrences of `h` since the last halvings, 0..15.
  uint32_t frequency(uint64_t h) const;

  /// Forgets everything.
  void clear();

  size_t bytes() const { return table_.size() * sizeof(uint64_t); }
  size_t sample_size() const { return sample_size_; }

private:
  size_t index_of(uint64_t h, int i) const;
  void halve();

  std::vector<uint64_t> table_;
  uint64_t mask_ = 0;
  size_t sample_size_ = 0;
  size_t additions_ = 0;
};

} // namespace bulwark::detail
