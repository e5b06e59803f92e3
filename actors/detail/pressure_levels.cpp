#include "actors/detail/pressure_levels.hpp"

namespace bulwark::detail {

pressure_classifier::pressure_classifier(pressure_thresholds t, double hysteresis,
                                         duration min_dwell)
    : t_(t), hysteresis_(hysteresis), min_dwell_(min_dwell) {}

double pressure_classifier::threshold(pressure_level x) const {
  switch (x) {
  case pressure_level::low:
    return 0;
  case pressure_level::medium:
    return t_.medium;
  case pressure_level::high:
    return t_.high;
  case pressure_level::critical:
    return t_.critical;
  }
  return 0;
}

pressure_level pressure_classifier::band(double ratio) const {
  if (ratio >= t_.critical)
    return pressure_level::critical;
  if (ratio >= t_.high)
    return pressure_level::high;
  if (ratio >= t_.medium)
    return pressure_level::medium;
  return pressure_level::low;
}

std::optional<pressure_level> pressure_classifier::update(double ratio, duration now) {
  auto target = band(ratio);
  if (target > level_) {
    level_ = target;
    since_ = now;
    return level_;
  }
  if (target == level_ || now - since_ < min_dwell_)
    return std::nullopt;
  // Falling: step down while the ratio is a full margin below the threshold of the level we
  // would leave. This keeps the margin for multi-level falls too.
  auto next = level_;
  while (next > pressure_level::low && ratio < threshold(next) - hysteresis_)
    next = static_cast<pressure_level>(static_cast<int>(next) - 1);
  if (next == level_)
    return std::nullopt;
  level_ = next;
  since_ = now;
  return level_;
}

uint64_t budget_at(uint64_t configured, pressure_level level) {
  static constexpr double below[] = {0.0, 0.15, 0.30, 0.50};
  auto f = 1.0 - below[static_cast<size_t>(level)];
  return static_cast<uint64_t>(static_cast<double>(configured) * f);
}

} // namespace bulwark::detail
