#include "actors/detail/cache_shape.hpp"

#include <algorithm>
#include <cmath>

namespace bulwark::detail {

std::vector<cache_shape> default_cache_shapes() {
  std::vector<cache_shape> result;
  result.push_back(cache_shape{0.01, true, false, true});
  result.push_back(cache_shape{0.01, false});
  for (double w : {0.1, 0.3, 0.5})
    result.push_back(cache_shape{w, true, false, true});
  result.push_back(cache_shape{1.0, false});       // all window: LRU
  result.push_back(cache_shape{1.0, false, true}); // ARC
  result.push_back(cache_shape{0.01, true});       // W-TinyLFU, victims not rotated
  return result;
}

segment_shares shares_for(size_t capacity, const cache_shape& s) {
  if (s.arc) // no window; protected (T2) never demoted: ARC decides between T1 and T2
    return {0, SIZE_MAX};
  auto window =
      static_cast<size_t>(std::llround(static_cast<double>(capacity) * s.window_fraction));
  window = std::clamp<size_t>(window, 1, std::max<size_t>(capacity, 1));
  auto main = capacity - std::min(window, capacity);
  return {window, static_cast<size_t>(static_cast<double>(main) * 0.8)};
}

ghost_cache::ghost_cache(size_t capacity, cache_shape shape)
    : capacity_(std::max<size_t>(capacity, 1)), shape_(shape), index_(capacity_ + 1) {
  auto s = shares_for(capacity_, shape_);
  segments_.set_shares(s.window, s.protected_max);
  if (shape_.arc)
    arc_ = std::make_unique<arc_history>(capacity_);
}

bool ghost_cache::access_arc(uint64_t h) {
  if (auto i = index_.find(h); i != ghost_index::none) {
    segments_.on_hit(i);
    return true;
  }
  auto seen = arc_->on_miss(h);
  bool in_t1 = seen == arc_history::seen::no;
  auto i = segments_.allocate();
  segments_[i].hash = h;
  segments_.push_mru(in_t1 ? cache_queue::probation : cache_queue::protected_, i);
  index_.insert(h, i);
  while (segments_.size() > capacity_) {
    auto t1 = segments_.size(cache_queue::probation) - (in_t1 ? 1 : 0);
    bool from_t1 = arc_->victim_from_t1(t1, segments_.size(cache_queue::protected_),
                                        seen == arc_history::seen::in_b2);
    auto victim = segments_.lru(from_t1 ? cache_queue::probation : cache_queue::protected_);
    arc_->evicted(segments_[victim].hash, from_t1);
    index_.erase(segments_[victim].hash);
    segments_.release(victim);
  }
  arc_->trim(segments_.size(cache_queue::probation), segments_.size(cache_queue::protected_));
  return false;
}

bool ghost_cache::access(uint64_t h, const frequency_sketch& sketch) {
  if (arc_)
    return access_arc(h);
  if (auto i = index_.find(h); i != ghost_index::none) {
    segments_.on_hit(i);
    segments_.rebalance();
    return true;
  }
  auto i = segments_.allocate();
  segments_[i].hash = h;
  segments_.insert(i);
  index_.insert(h, i);
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
  bool rotate = false;
  if (candidate != victim && shape_.frequency_admission) {
    auto c = sketch.frequency(segments_[candidate].hash);
    auto v = sketch.frequency(segments_[victim].hash);
    if (c <= v)
      loser = candidate;
    rotate = rotates_victim(shape_, c, v);
  }
  index_.erase(segments_[loser].hash);
  segments_.release(loser);
  if (rotate)
    segments_.move_to(cache_queue::probation, victim);
}

size_t ghost_cache::bytes() const {
  return segments_.bytes() + index_.bytes() + (arc_ ? arc_->bytes() : 0);
}

shape_selector::shape_selector(size_t capacity, size_t ghost_entries,
                               std::vector<cache_shape> shapes)
    : shapes_(std::move(shapes)), ghost_entries_(std::max<size_t>(ghost_entries, 16)) {
  build(capacity);
}

void shape_selector::build(size_t capacity) {
  built_for_ = capacity;
  divisor_ = std::max<size_t>(1, capacity / ghost_entries_);
  threshold_ = divisor_ == 1 ? UINT64_MAX : UINT64_MAX / divisor_;
  auto ghost_capacity = std::max<size_t>(1, capacity / divisor_);
  epoch_ = std::max<size_t>(ghost_capacity, 256);
  ghosts_.clear();
  for (auto& s : shapes_)
    ghosts_.emplace_back(ghost_capacity, s);
  hit_.assign(shapes_.size(), 0);
  wins_.assign(shapes_.size(), 0.0);
  losses_.assign(shapes_.size(), 0.0);
  sampled_ = 0;
}

void shape_selector::resize(size_t capacity) {
  if (capacity * 2 <= built_for_ || capacity >= built_for_ * 2)
    build(capacity);
}

bool shape_selector::record(uint64_t h, const frequency_sketch& sketch) {
  if (h > threshold_ || ghosts_.size() < 2)
    return false;
  for (size_t i = 0; i < ghosts_.size(); ++i)
    hit_[i] = ghosts_[i].access(h, sketch) ? 1 : 0;
  for (size_t i = 0; i < ghosts_.size(); ++i)
    if (hit_[i] != hit_[current_])
      (hit_[i] ? wins_[i] : losses_[i]) += 1;
  if (++sampled_ % epoch_ != 0)
    return false;
  // The shape that leads the current one by the most, if it leads by more than switch_z standard
  // deviations of the difference (under "no difference", the discordant accesses are a fair coin).
  size_t best = current_;
  double best_lead = 0;
  for (size_t i = 0; i < ghosts_.size(); ++i) {
    auto lead = wins_[i] - losses_[i];
    if (i != current_ && lead > switch_z * std::sqrt(wins_[i] + losses_[i]) && lead > best_lead) {
      best = i;
      best_lead = lead;
    }
    wins_[i] *= decay;
    losses_[i] *= decay;
  }
  if (best == current_)
    return false;
  current_ = best;
  ++switches_;
  std::fill(wins_.begin(), wins_.end(), 0.0); // the evidence was against the old current shape
  std::fill(losses_.begin(), losses_.end(), 0.0);
  return true;
}

double shape_selector::arc_target_share() const {
  for (auto& g : ghosts_)
    if (auto share = g.arc_target_share(); share > 0)
      return share;
  return 0.0;
}

size_t shape_selector::bytes() const {
  size_t total = 0;
  for (auto& g : ghosts_)
    total += g.bytes();
  return total;
}

} // namespace bulwark::detail
