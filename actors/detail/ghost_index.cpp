#include "actors/detail/ghost_index.hpp"

namespace bulwark::detail {

ghost_index::ghost_index(size_t entries) {
  size_t size = 16;
  while (size < 2 * entries + 2)
    size <<= 1;
  slots_.assign(size, entry{});
  mask_ = size - 1;
}

uint32_t ghost_index::find(uint64_t h) const {
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    auto& e = slots_[i];
    if (e.slot == none || e.hash == h)
      return e.slot;
  }
}

void ghost_index::insert(uint64_t h, uint32_t slot) {
  if (2 * (size_ + 1) + 2 > slots_.size()) { // keep it at most half full: double it
    auto old = std::move(slots_);
    slots_.assign(old.size() * 2, entry{});
    mask_ = slots_.size() - 1;
    for (auto& e : old)
      if (e.slot != none)
        place(e.hash, e.slot);
  }
  place(h, slot);
  ++size_;
}

void ghost_index::place(uint64_t h, uint32_t slot) {
  size_t i = h & mask_;
  while (slots_[i].slot != none)
    i = (i + 1) & mask_;
  slots_[i] = entry{h, slot};
}

void ghost_index::erase(uint64_t h) {
  size_t i = h & mask_;
  for (; slots_[i].hash != h || slots_[i].slot == none; i = (i + 1) & mask_)
    if (slots_[i].slot == none)
      return;
  // Backward shift: move later entries of the probe run into the hole unless their home
  // bucket lies cyclically within (hole, their position].
  for (size_t j = (i + 1) & mask_; slots_[j].slot != none; j = (j + 1) & mask_) {
    size_t home = slots_[j].hash & mask_;
    bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i] = entry{};
  --size_;
}

} // namespace bulwark::detail
