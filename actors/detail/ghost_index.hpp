#pragma once
/// The ghost caches' index (cache_shape.hpp, arc_history.hpp): hashes only, no keys.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bulwark::detail {

/// An open-addressing map from a key's 64-bit hash to a ghost slot (linear probing, deletion by
/// backward shift, at most half full): a ghost access is one probe sequence in one array instead
/// of a node-based hash map's bucket walk and allocation, which made up most of a ghost's cost
/// when ghosts see every access. Sized for `entries` at construction; it doubles if it ever holds
/// more (a ghost cache never does; ARC's history starts small and grows with what it remembers).
class ghost_index {
public:
  static constexpr uint32_t none = UINT32_MAX;
  explicit ghost_index(size_t entries);
  uint32_t find(uint64_t h) const;
  void insert(uint64_t h, uint32_t slot); ///< `h` must not be present
  void erase(uint64_t h);
  size_t size() const { return size_; }
  size_t bytes() const { return slots_.capacity() * sizeof(entry); }

private:
  struct entry {
    uint64_t hash = 0;
    uint32_t slot = none;
  };
  void place(uint64_t h, uint32_t slot);
  std::vector<entry> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

} // namespace bulwark::detail
