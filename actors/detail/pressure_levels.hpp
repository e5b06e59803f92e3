#pragma once
/// Maps a memory ratio to a pressure level with hysteresis and a minimum dwell time. CAF-free.
///
/// Rising is immediate: the level becomes the highest whose threshold the ratio reaches (a rise is
/// what protects the process, so it is never delayed). Falling needs both: the ratio is at least
/// `hysteresis` below the current level's threshold, and the current level has been held for
/// `min_dwell`. It then falls to the level the ratio's own band gives (again applying the margin).
/// A ratio hovering at a threshold therefore causes no change at all, and at most one fall per
/// dwell period can follow a rise: the level never flaps.

#include "messages/pressure.hpp"

#include <chrono>
#include <cstdint>
#include <optional>

namespace bulwark::detail {

struct pressure_thresholds {
  double medium = 0.70;
  double high = 0.85;
  double critical = 0.95;
};

class pressure_classifier {
public:
  using duration = std::chrono::nanoseconds;

  pressure_classifier(pressure_thresholds t, double hysteresis, duration min_dwell);

  /// Feeds one sample taken at `now` (any monotonic clock). Returns the new level when it changed.
  std::optional<pressure_level> update(double ratio, duration now);

  pressure_level level() const { return level_; }

  /// Starts from a known level (a restarted monitor resumes where it was), held since `now`.
  void resume(pressure_level x, duration now) {
    level_ = x;
    since_ = now;
  }

  /// The threshold a ratio must reach to enter `x` (0 for low).
  double threshold(pressure_level x) const;

private:
  pressure_level band(double ratio) const;

  pressure_thresholds t_;
  double hysteresis_;
  duration min_dwell_;
  pressure_level level_ = pressure_level::low;
  duration since_{0};
};

/// A byte budget under pressure: `configured` × (1 − 0.15 / 0.30 / 0.50) at medium, high and
/// critical (the original cache's eviction fractions). The cache and the rate limiter's key table
/// both shrink by it.
uint64_t budget_at(uint64_t configured, pressure_level level);

} // namespace bulwark::detail
