#pragma once
/// The performance score and its findings (CAF-free; the performance monitor calls it on
/// `/v1/perf` with its latest measurements). The original's getPerformanceScore and
/// getRecommendations (seed-behaviour.md 6.5), on what Bulwark measures:
///
/// | finding            | measured as                                        | -20 / -15 above |
/// -10 / -8 / -5 above |
/// |--------------------|----------------------------------------------------|-----------------|---------------------|
/// | cpu                | process CPU over the cores it may use (0..1)       | 0.80: -20       |
/// 0.60: -10           | | memory             | the memory monitor's pressure ratio (0..1) | 0.85:
/// -20       | 0.70: -10           | | scheduler_lag      | scheduler lag /
/// performance.lag_reference_ms       | 0.80: -20       | 0.60: -10           | | response_time |
/// served requests' mean time since the last sample   | 1 s: -15        | 0.5 s: -8           | |
/// error_rate         | failed share of answers since the last sample      | 0.05: -15       |
/// 0.01: -5            | | cache_hit_rate     | cache hits / lookups since the last sample | below
/// 0.5: no penalty, a finding only  |
///
/// The score starts at 100 and takes the larger penalty of each row whose value passes a
/// threshold (strictly). The penalties sum to at most 90, so the original's floor of 0 is never
/// reached. The scheduler lag stands where the original had the event
/// loop's utilisation. Every finding carries the measured value, the threshold it passed, its
/// penalty and one fixed piece of advice naming what to look at or turn in Bulwark; a row with
/// no measurement (no request, no lookup since the last sample) yields no finding.

#include <optional>
#include <string>
#include <vector>

namespace bulwark::detail {

struct perf_score_input {
  std::optional<double> cpu_ratio;
  std::optional<double> memory_ratio;
  std::optional<double> lag_ratio; ///< scheduler lag over the lag reference
  std::optional<double> mean_response_s;
  std::optional<double> error_ratio;
  std::optional<double> cache_hit_ratio;
};

struct score_finding {
  std::string name; ///< the table's first column
  double value = 0;
  double threshold = 0;
  int penalty = 0; ///< points taken off the score (0 for the cache's finding)
  std::string advice;
};

struct score_result {
  int score = 100;
  std::vector<score_finding> findings; ///< in the table's order
};

score_result score_performance(const perf_score_input& in);

} // namespace bulwark::detail
