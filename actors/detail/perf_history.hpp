#pragma once
/// A bounded time series for the performance monitor's history. Bounded twice: points older
/// than `max_age` go, and the series never holds more than `max_bytes` of points.
///
/// When the byte bound is reached it trims, keeping what a reader of history wants rather than
/// the oldest points (the original's bug, seed-behaviour.md 6.4):
/// - the newest half of the capacity stays as it is;
/// - of the older points, the outliers (|v - mean| > k·σ over that older block) are kept, the
///   most extreme first if there are more than fit;
/// - the rest of the room (the trim leaves the series at 3/4 of capacity) goes to normal older
///   points, evenly spaced from the oldest to the newest, so the past stays covered back to its
///   start (until `max_age`), more thinly the older it is.
/// A trim is O(n) and happens once per capacity/4 pushes: O(1) amortised per point.

#include <caf/timestamp.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>

namespace bulwark::detail {

struct history_point {
  caf::timespan at{0};
  double value = 0;
};

struct history_bounds {
  caf::timespan max_age = std::chrono::hours(24);
  size_t max_bytes = 64 * 1024;
  double outlier_sigma = 3.0; ///< k
};

class series_history {
public:
  explicit series_history(history_bounds b = {});

  /// Capacity: max_bytes / 16 points, at least 64 (fewer cannot hold a 3-sigma outlier).
  void push(caf::timespan at, double value);

  const std::deque<history_point>& points() const { return points_; }
  size_t capacity() const { return capacity_; }
  size_t bytes() const { return points_.size() * sizeof(history_point); }
  uint64_t trims() const { return trims_; }

private:
  void trim();

  history_bounds bounds_;
  size_t capacity_;
  std::deque<history_point> points_;
  uint64_t trims_ = 0;
};

} // namespace bulwark::detail
