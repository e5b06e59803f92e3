#pragma once
/// performance_monitor: measures the process for real and less when it is busy, keeps a bounded
/// history, and evaluates the alert rules over the engine's own metrics.
///
/// Every `interval` (its own timer) it:
/// 1. decides whether this tick collects: the adaptive sampler (detail/adaptive_sampler.hpp)
///    turns the sampling ratio into really skipped ticks (counted as skipped);
/// 2. when collecting, measures process CPU (delta of /proc/self/stat over wall time, over all
///    cores) and RSS, the scheduler lag (how late its own timer message ran: the queueing delay
///    of a message through CAF's clock and scheduler), and the request and backend latency
///    histograms the gateway and the database feed (their increase since the last sample:
///    request rate, served p99 and mean, backend p99), the failed share of the queries answered
///    since then (the error rate) and the cache's hit rate; each series goes into a bounded
///    series_history;
/// 3. every `adjust_interval`, adjusts the ratio to the load: the highest of the memory pressure
///    ratio (the memory monitor's gauge), CPU over the cores the process may use, and scheduler
///    lag over `lag_reference`. A pressure event rising to high or critical adjusts at once (and
///    is reported to the memory monitor's history);
/// 4. evaluates every alert rule (detail/alert_rules.hpp) on a registry snapshot, on every tick
///    whether sampled or not (alerts must not go blind under load); firing and resolved
///    transitions are logged and exported.
///
/// | receives                  | replies                 | notes                              |
/// |---------------------------|-------------------------|------------------------------------|
/// | get_atom                  | perf_status             | ratio, counts, last sample, series,|
/// |                           |                         | score and findings (perf_score.hpp)|
/// | (get_atom, series)        | std::vector<perf_point> | one series' history                |
/// | (get_atom, alerts_atom)   | std::vector<alert_info> | every rule and its state           |
/// | pressure_changed          | -                       | subscribed through the directory   |
/// | (tick_atom, due)          | -                       | private timer                      |
///
/// Metrics: bulwark_perf_sampling_ratio, bulwark_perf_samples_total{result}, bulwark_perf_cpu_
/// usage_ratio, bulwark_perf_resident_memory_bytes, bulwark_perf_scheduler_lag_seconds (and the
/// last sample's, bulwark_perf_last_scheduler_lag_seconds), bulwark_perf_error_ratio,
/// bulwark_perf_history_{points,bytes}, bulwark_perf_self_cpu_seconds_total (what the ticks
/// themselves cost, the telemetry's own CPU), bulwark_alerts_firing{alert},
/// bulwark_alerts_transitions_total{alert,to}.
///
/// Kept across a restart (`performance_monitor_memory`, owned by its child spec): the sampler,
/// the histories and the alert states, so a restart neither resolves a firing alert nor forgets
/// the past. Telemetry memory is bounded by config (history bytes, rule count, rate windows),
/// not by load.

#include "actors/detail/adaptive_sampler.hpp"
#include "actors/detail/alert_rules.hpp"
#include "actors/detail/perf_history.hpp"
#include "actors/detail/process_stats.hpp"
#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace bulwark {

struct performance_monitor_config {
  /// performance.enabled: false leaves the monitor (and its alerts) out of the tree.
  bool enabled = true;
  /// performance.interval_ms: the tick; alerts are evaluated on every tick.
  std::chrono::milliseconds interval{1000};
  /// performance.adjust_interval_ms: how often the sampling ratio follows the load.
  std::chrono::milliseconds adjust_interval{10000};
  /// performance.{min_sampling_ratio, high_load, low_load}.
  detail::sampling_rule sampling;
  /// performance.lag_reference_ms: a scheduler lag this long counts as full load.
  std::chrono::milliseconds lag_reference{100};
  /// performance.history_max_age_ms, history_max_bytes (over all series), outlier_sigma.
  std::chrono::milliseconds history_max_age{std::chrono::hours(24)};
  size_t history_max_bytes = 1024 * 1024;
  double outlier_sigma = 3.0;
  /// The top-level `alerts` key; the original's four by default.
  std::vector<detail::alert_rule> alerts = detail::default_alert_rules();
};

/// The series the history keeps, in perf_status order.
const std::vector<std::string>& perf_series_names();

struct performance_monitor_metrics {
  explicit performance_monitor_metrics(prometheus::Registry& reg);
  prometheus::Gauge* sampling_ratio;
  prometheus::Counter* collected;
  prometheus::Counter* skipped;
  prometheus::Gauge* cpu;
  prometheus::Gauge* rss;
  prometheus::Histogram* lag;
  prometheus::Gauge* last_lag;    ///< the last sample's scheduler lag (the lag alert reads it)
  prometheus::Gauge* error_ratio; ///< the last sample's failed share of answers
  prometheus::Counter* self_cpu;  ///< the monitor's own thread CPU time in its ticks
  prometheus::Gauge* history_points;
  prometheus::Gauge* history_bytes;
  prometheus::Family<prometheus::Gauge>* firing;
  prometheus::Family<prometheus::Counter>* transitions;
};

/// Cumulative counts of answered queries, and of those the node failed.
struct request_tally {
  uint64_t answered = 0;
  uint64_t failed = 0;
};

/// What the monitor reads besides its own measurements.
struct performance_monitor_inputs {
  detail::process_reader process = detail::proc_process_reader();
  /// The CPUs the process may use (detail::available_cores): CPU load is time over these.
  double cores = 1;
  /// The memory monitor's ratio gauge: the pressure part of the load, read on every adjustment
  /// (pressure events come only on level changes, so their ratio goes stale in between).
  prometheus::Gauge* pressure_ratio = nullptr;
  /// The engine's registry: alert rules are evaluated on its snapshots.
  prometheus::Registry* registry = nullptr;
  /// Latency histograms fed by the gateway (served requests) and the database (backend calls);
  /// either may be null. The request rate counts `requests` and `other_requests` (the rejected
  /// and failed classes), the p99 served requests only.
  prometheus::Histogram* requests = nullptr;
  std::vector<prometheus::Histogram*> other_requests;
  prometheus::Histogram* backend = nullptr;
  /// Queries answered and failed so far (cumulative; the engine counts them by outcome, see
  /// runtime/outcome.hpp is_failure): the error-rate series. Empty: no error rate.
  std::function<request_tally()> requests_tally;
  /// The cache's hit and miss counters, summed over their series (either null: no cache hit
  /// rate).
  prometheus::Family<prometheus::Counter>* cache_hits = nullptr;
  prometheus::Family<prometheus::Counter>* cache_misses = nullptr;
};

/// What survives a restart (see the header comment).
struct performance_monitor_memory {
  explicit performance_monitor_memory(const performance_monitor_config& cfg);
  detail::adaptive_sampler sampler;
  detail::alert_evaluator alerts;
  std::map<std::string, detail::series_history> history;
  double load = 0;
  pressure_level level = pressure_level::low; ///< so a restart's re-sent level is no rise
  uint64_t collected = 0;
  uint64_t skipped = 0;
  double self_cpu_seconds = 0;
  std::optional<perf_sample> latest;
};

performance_monitor_actor
spawn_performance_monitor(caf::actor_system& sys, performance_monitor_config cfg,
                          performance_monitor_inputs in, std::shared_ptr<component_directory> dir,
                          performance_monitor_metrics* metrics,
                          std::shared_ptr<performance_monitor_memory> memory);

} // namespace bulwark
