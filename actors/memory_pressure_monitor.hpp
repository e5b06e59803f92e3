#pragma once
/// memory_pressure_monitor: the only place that reads memory. It samples an injected
/// `memory_source` every `sample_interval`, maps the ratio to a level with hysteresis and dwell
/// (detail/pressure_levels.hpp), and broadcasts each level change once to every subscriber.
///
/// | receives                     | replies         | notes                                      |
/// |------------------------------|-----------------|--------------------------------------------|
/// | (subscribe_atom, subscriber) | -               | the subscriber gets the current level now  |
/// | (unsubscribe_atom, subscr.)  | -               |                                            |
/// | pressure_action              | -               | recorded in the bounded history            |
/// | get_atom                     | pressure_status | level, ratio, source, history              |
/// | sample_atom                  | -               | sample now; also its own timer (tick_atom) |
/// | trim_atom                    | ok_atom         | malloc_trim(0) at medium pressure or above |
///
/// Registers its cleanup task (`dir` given): `memory_trim`, trim_atom every minute, urgent.
/// Trimming walks every malloc arena under its lock: on a 200 MB heap it took 118 ms, during
/// which every thread that allocates waits (it showed as a 100 ms stall in the open-loop
/// benchmark once a minute). Giving pages back only matters when memory is short, so at low
/// pressure a trim request is answered without trimming (counted as skipped).
///
/// Every sample also goes to the node's memory account (`account`, when given): the same used
/// bytes and limit, so the account's budget is the monitor's, and what the node uses beyond the
/// reservations is charged against admission (detail/memory_account.hpp). At high pressure or
/// above, or when more than a quarter of the budget is neither reserved nor accounted for (freed
/// memory the allocator keeps after a flood), a sample also trims the heap, at most every 2 s.
///
/// Sends unprompted: `pressure_changed` to every subscriber on every level change (one prebuilt
/// caf::message shared by all). Subscribers are monitored and dropped when they die. A sample
/// is a read of a small proc/sysfs file; only a trim under pressure takes long (above).
///
/// Kept across a restart (in `memory_pressure_monitor_memory`, owned by the supervisor's child
/// spec): the subscriber set, the level and the history, so subscribers need not re-subscribe and
/// a restart is not mistaken for a level change. Lost: nothing else.

#include "actors/detail/memory_account.hpp"
#include "actors/detail/memory_source.hpp"
#include "actors/detail/pressure_levels.hpp"
#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <array>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace bulwark {

struct memory_pressure_monitor_config {
  /// memory.source: "auto" | "cgroup" | "process" | "file".
  std::string source = "auto";
  /// memory.file: the ratio file read on every sample when source is "file".
  std::string file;
  /// memory.budget_bytes: the limit for the process and file sources.
  uint64_t budget_bytes = 1024ull * 1024 * 1024;
  /// memory.sample_interval_ms.
  std::chrono::milliseconds sample_interval{1000};
  /// memory.thresholds.{medium,high,critical}.
  detail::pressure_thresholds thresholds;
  /// memory.hysteresis: a level is left only when the ratio is this far below its threshold.
  double hysteresis = 0.05;
  /// memory.min_dwell_ms: a level is held at least this long before it may fall.
  std::chrono::milliseconds min_dwell{5000};
  /// memory.history_size: level changes and subscriber actions kept for /v1/status.
  size_t history_size = 256;
  /// memory.admission: refuse work the memory account has no room for (false: count only; the
  /// blinded baseline of drills). Read by the engine, which builds the account.
  bool admission = true;
};

struct memory_pressure_monitor_metrics {
  explicit memory_pressure_monitor_metrics(prometheus::Registry& reg);
  prometheus::Gauge* level;
  prometheus::Gauge* ratio;
  prometheus::Gauge* used_bytes;
  prometheus::Gauge* limit_bytes;
  std::array<prometheus::Counter*, 4> changes; ///< by level entered
  prometheus::Counter* sample_errors;
  prometheus::Counter* actions;
  prometheus::Counter* trims;         ///< malloc_trim calls made
  prometheus::Counter* trims_skipped; ///< trim requests at low pressure
};

/// What survives a restart of the monitor (see the header comment).
struct memory_pressure_monitor_memory {
  std::vector<pressure_subscriber_actor> subscribers;
  std::deque<pressure_history_entry> history;
  pressure_level level = pressure_level::low;
  pressure_changed last; ///< the last broadcast (what a new subscriber gets)
};

memory_pressure_monitor_actor
spawn_memory_pressure_monitor(caf::actor_system& sys, memory_pressure_monitor_config cfg,
                              detail::memory_source source,
                              memory_pressure_monitor_metrics* metrics,
                              std::shared_ptr<memory_pressure_monitor_memory> memory,
                              std::shared_ptr<detail::memory_account> account = nullptr,
                              std::shared_ptr<component_directory> dir = nullptr);

} // namespace bulwark
