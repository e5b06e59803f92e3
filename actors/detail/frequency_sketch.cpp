#include "actors/detail/frequency_sketch.hpp"

#include <algorithm>

namespace bulwark::detail {

namespace {

// Four seeds, one per row of the count-min sketch (Caffeine's).
constexpr uint64_t seeds[4] = {0xc3a5c85c97cb3127ULL, 0xb492b66fbe98f273ULL, 0x9ae16a3b2f90404fULL,
                               0xcbf29ce484222325ULL};

} // namespace

frequency_sketch::frequency_sketch(size_t expected_keys) {
  resize(expected_keys);
}

void frequency_sketch::resize(size_t expected_keys) {
  size_t slots = 64;
  while (slots < expected_keys)
    slots <<= 1;
  table_.assign(slots, 0);
  mask_ = slots - 1;
  sample_size_ = 10 * std::max<size_t>(expected_keys, 1);
  additions_ = 0;
}

size_t frequency_sketch::index_of(uint64_t h, int i) const {
  uint64_t x = (h + seeds[i]) * seeds[i];
  x += x >> 32;
  return static_cast<size_t>(x & mask_);
}

uint32_t frequency_sketch::frequency(uint64_t h) const {
  // Each row reads its own word; within a word, row i owns 4 bits of each 16-bit lane.
  uint32_t best = 15;
  int start = static_cast<int>(h & 3) << 2;
  for (int i = 0; i < 4; ++i) {
    int shift = (start + i) << 2;
    auto count = static_cast<uint32_t>((table_[index_of(h, i)] >> shift) & 0xf);
    best = std::min(best, count);
  }
  return best;
}

void frequency_sketch::increment(uint64_t h) {
  int start = static_cast<int>(h & 3) << 2;
  bool added = false;
  for (int i = 0; i < 4; ++i) {
    int shift = (start + i) << 2;
    auto& word = table_[index_of(h, i)];
    if (((word >> shift) & 0xf) != 0xf) {
      word += uint64_t{1} << shift;
      added = true;
    }
  }
  if (added && ++additions_ >= sample_size_)
    halve();
}

void frequency_sketch::halve() {
  for (auto& word : table_)
    word = (word >> 1) & 0x7777777777777777ULL;
  additions_ /= 2;
}

void frequency_sketch::clear() {
  std::fill(table_.begin(), table_.end(), 0);
  additions_ = 0;
}

} // namespace bulwark::detail
