#include "actors/detail/cache_shape.hpp"

#include <algorithm>
#include <cmath>

namespace bulwark::detail {

std::vector<cache_shape> default_cache_shapes() {
  std::vector<cache_shape> result;
  for (double w : {0.01, 0.1, 0.3, 0.5, 0.8})
    for (bool admission : {true, false})
      result.push_back(cache_shape{w, admission});
  return result;
}

segment_shares shares_for(size_t capacity, const cache_shape& s) {
  auto window =
      static_cast<size_t>(std::llround(static_cast<double>(capacity) * s.window_fraction));
  window = std::clamp<size_t>(window, 1, std::max<size_t>(capacity, 1));
  auto main = capacity - std::min(window, capacity);
  return {window, static_cast<size_t>(static_cast<double>(main) * 0.8)};
}

ghost_cache::ghost_cache(size_t capacity, cache_shape shape)
    : capacity_(std::max<size_t>(capacity, 1)), shape_(shape) {
  auto s = shares_for(capacity_, shape_);
  segments_.set_shares(s.window, s.protected_max);
  index_.reserve(capacity_ + 1);
}

bool ghost_cache::access(uint64_t h, const frequency_sketch& sketch) {
  if (auto i = index_.find(h); i != index_.end()) {
    segments_.on_hit(i->second);
    segments_.rebalance();
    return true;
  }
  auto i = segments_.allocate();
  segments_[i].hash = h;
  segments_.insert(i);
  index_.emplace(h, i);
  segments_.rebalance();
  while (segments_.size() > capacity_)
    evict(sketch);
  return false;
}

void ghost_cache::evict(const frequency_sketch& sketch) {
  if (segments_.size(cache_queue::probation) == 0) {
    // Everything is in window/protected (a shape with a full window): demote one.
    auto from =
        segments_.size(cache_queue::protected_) > 0 ? cache_queue::protected_ : cache_queue::window;
    segments_.move_to(cache_queue::probation, segments_.lru(from));
  }
  auto candidate = segments_.mru(cache_queue::probation);
  auto victim = segments_.lru(cache_queue::probation);
  auto loser = victim;
  if (candidate != victim && shape_.frequency_admission &&
      sketch.frequency(segments_[candidate].hash) <= sketch.frequency(segments_[victim].hash))
    loser = candidate;
  index_.erase(segments_[loser].hash);
  segments_.release(loser);
}

size_t ghost_cache::bytes() const {
  return segments_.bytes() + index_.bucket_count() * sizeof(void*) +
         index_.size() * (sizeof(std::pair<uint64_t, uint32_t>) + 2 * sizeof(void*));
}

shape_selector::shape_selector(size_t capacity, size_t ghost_entries,
                               std::vector<cache_shape> shapes)
    : shapes_(std::move(shapes)) {
  ghost_entries = std::max<size_t>(ghost_entries, 16);
  divisor_ = std::max<size_t>(1, capacity / ghost_entries);
  threshold_ = divisor_ == 1 ? UINT64_MAX : UINT64_MAX / divisor_;
  auto ghost_capacity = std::max<size_t>(1, capacity / divisor_);
  epoch_ = std::max<size_t>(5 * ghost_capacity, 256);
  for (auto& s : shapes_)
    ghosts_.emplace_back(ghost_capacity, s);
  scores_.assign(shapes_.size(), 0.0);
  epoch_hits_.assign(shapes_.size(), 0);
}

bool shape_selector::record(uint64_t h, const frequency_sketch& sketch) {
  if (h > threshold_ || ghosts_.size() < 2)
    return false;
  for (size_t i = 0; i < ghosts_.size(); ++i)
    epoch_hits_[i] += ghosts_[i].access(h, sketch) ? 1 : 0;
  if (++sampled_ % epoch_ != 0)
    return false;
  size_t best = current_;
  for (size_t i = 0; i < ghosts_.size(); ++i) {
    scores_[i] = 0.5 * scores_[i] + static_cast<double>(epoch_hits_[i]);
    epoch_hits_[i] = 0;
  }
  for (size_t i = 0; i < ghosts_.size(); ++i)
    if (scores_[i] > scores_[best])
      best = i;
  if (best == current_)
    return false;
  current_ = best;
  ++switches_;
  return true;
}

size_t shape_selector::bytes() const {
  size_t total = 0;
  for (auto& g : ghosts_)
    total += g.bytes();
  return total;
}

} // namespace bulwark::detail
