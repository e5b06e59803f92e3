#pragma once
/// How often the performance monitor really collects: a sampling ratio that falls while the
/// process is loaded and recovers when it is not, and a deterministic credit counter that turns
/// the ratio into skipped ticks (ratio 0.3 collects exactly 3 of every 10 ticks; no random draw,
/// so tests are exact and the skipping is real).
///
/// The rule is the original's (seed-behaviour.md 6.3), with its bugs left out: every adjustment
/// multiplies the ratio by `down` (0.8) when the load is above `high_load` (0.8) and by `up`
/// (1.2) when it is below `low_load` (0.3), between `min_ratio` (0.3) and 1. In between it holds.
/// The load is the caller's: the performance monitor takes the *highest* of memory pressure, CPU
/// and scheduler lag (the original averaged them, so one saturated resource hid behind idle ones).

#include <algorithm>

namespace bulwark::detail {

struct sampling_rule {
  double min_ratio = 0.3;
  double high_load = 0.8;
  double low_load = 0.3;
  double down = 0.8;
  double up = 1.2;
};

class adaptive_sampler {
public:
  explicit adaptive_sampler(sampling_rule rule = {}) : rule_(rule) {}

  double ratio() const { return ratio_; }

  /// One tick: true when this tick collects.
  bool take() {
    credit_ += ratio_;
    if (credit_ + 1e-9 < 1.0)
      return false;
    credit_ -= 1.0;
    return true;
  }

  /// Adjusts the ratio for `load` (0..1, higher is busier); returns the new ratio.
  double adjust(double load) {
    if (load > rule_.high_load)
      ratio_ *= rule_.down;
    else if (load < rule_.low_load)
      ratio_ *= rule_.up;
    ratio_ = std::clamp(ratio_, rule_.min_ratio, 1.0);
    return ratio_;
  }

private:
  sampling_rule rule_;
  double ratio_ = 1.0;
  double credit_ = 0.0;
};

} // namespace bulwark::detail
