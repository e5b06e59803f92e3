#pragma once
/// Messages of the performance monitor: its status, one series' history, and the alert rules'
/// states (`GET /v1/perf`, `GET /v1/alerts`).

#include "messages/pressure.hpp"

#include <caf/meta/type_name.hpp>
#include <caf/timestamp.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace bulwark {

/// One collected sample (what a tick that was not skipped measured).
struct perf_sample {
  clock_point at{0};
  double cpu_ratio = 0;       ///< process CPU time per wall second, over all cores (0..1)
  uint64_t rss_bytes = 0;     ///< resident set size
  double scheduler_lag_s = 0; ///< how late the monitor's own timer message ran
  double request_rate = 0;    ///< requests answered per second since the last sample
  double request_p99_s = 0;   ///< served requests' p99 since the last sample (0: none)
  double backend_p99_s = 0;   ///< backend calls' p99 since the last sample (0: none)
  /// Failed share of the queries answered since the last sample (failed_backend, timed_out,
  /// internal_error over every outcome; runtime/outcome.hpp is_failure); 0 with none answered.
  double error_ratio = 0;
  uint64_t answered = 0;      ///< queries answered since the last sample
  double request_mean_s = 0;  ///< served requests' mean time since the last sample (0: none)
  double cache_hit_ratio = 0; ///< cache hits over lookups since the last sample
  uint64_t cache_lookups = 0; ///< lookups since the last sample (0: the ratio means nothing)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, perf_sample& x) {
  return f(caf::meta::type_name("bulwark::perf_sample"), x.at, x.cpu_ratio, x.rss_bytes,
           x.scheduler_lag_s, x.request_rate, x.request_p99_s, x.backend_p99_s, x.error_ratio,
           x.answered, x.request_mean_s, x.cache_hit_ratio, x.cache_lookups);
}

/// The history of one series, for /v1/status readers.
struct perf_series_info {
  std::string name;
  uint64_t points = 0;
  uint64_t bytes = 0;
  uint64_t capacity = 0; ///< points
  uint64_t trims = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, perf_series_info& x) {
  return f(caf::meta::type_name("bulwark::perf_series_info"), x.name, x.points, x.bytes, x.capacity,
           x.trims);
}

/// One finding of the performance score (actors/detail/perf_score.hpp has the table).
struct perf_finding {
  std::string name;
  double value = 0;
  double threshold = 0;
  int32_t penalty = 0;
  std::string advice;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, perf_finding& x) {
  return f(caf::meta::type_name("bulwark::perf_finding"), x.name, x.value, x.threshold, x.penalty,
           x.advice);
}

struct perf_status {
  double sampling_ratio = 1;
  double load = 0; ///< the load the ratio last adjusted to
  uint64_t collected = 0;
  uint64_t skipped = 0;
  double self_cpu_seconds = 0; ///< CPU the monitor's ticks used, in all
  bool has_sample = false;
  perf_sample latest;
  std::vector<perf_series_info> series;
  /// The performance score (0..100) of the latest sample and its findings; 100 and none
  /// before the first sample.
  int32_t score = 100;
  std::vector<perf_finding> findings;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, perf_status& x) {
  return f(caf::meta::type_name("bulwark::perf_status"), x.sampling_ratio, x.load, x.collected,
           x.skipped, x.self_cpu_seconds, x.has_sample, x.latest, x.series, x.score, x.findings);
}

struct perf_point {
  clock_point at{0};
  double value = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, perf_point& x) {
  return f(caf::meta::type_name("bulwark::perf_point"), x.at, x.value);
}

/// One alert rule and where it stands.
struct alert_info {
  std::string name;
  std::string metric;
  std::string op;
  double threshold = 0;
  double clear_threshold = 0;
  caf::timespan for_duration{0};
  std::string severity;
  std::string state; ///< "inactive" | "pending" | "firing"
  bool has_value = false;
  double value = 0;
  caf::timespan in_state{0}; ///< how long it has been in `state`
  uint64_t fired = 0;        ///< times it went to firing
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, alert_info& x) {
  return f(caf::meta::type_name("bulwark::alert_info"), x.name, x.metric, x.op, x.threshold,
           x.clear_threshold, x.for_duration, x.severity, x.state, x.has_value, x.value, x.in_state,
           x.fired);
}

} // namespace bulwark
