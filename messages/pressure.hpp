#pragma once
/// Messages of the pressure loop: the monitor broadcasts `pressure_changed` to every subscriber;
/// subscribers answer with `pressure_action` saying what they did about it.

#include <caf/meta/type_name.hpp>
#include <caf/timestamp.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace bulwark {

enum class pressure_level : uint8_t { low = 0, medium = 1, high = 2, critical = 3 };

/// "low", "medium", "high" or "critical".
const char* to_string(pressure_level x);

/// Times in the pressure loop are points on the actor clock (steady; the test coordinator's
/// clock in tests), as the duration since that clock's epoch. The runtime maps them to wall
/// time for humans.
using clock_point = caf::timespan;

/// Broadcast once to every subscriber on every level change, and once to a new subscriber.
struct pressure_changed {
  pressure_level level = pressure_level::low;
  pressure_level previous = pressure_level::low;
  double ratio = 0;
  uint64_t used_bytes = 0;
  uint64_t limit_bytes = 0;
  clock_point at{0};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pressure_changed& x) {
  return f(caf::meta::type_name("bulwark::pressure_changed"), x.level, x.previous, x.ratio,
           x.used_bytes, x.limit_bytes, x.at);
}

/// What a subscriber did about a level change ("shrank byte budget to 42 MiB").
struct pressure_action {
  std::string component;
  pressure_level level = pressure_level::low;
  std::string action;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pressure_action& x) {
  return f(caf::meta::type_name("bulwark::pressure_action"), x.component, x.level, x.action);
}

/// One row of the monitor's bounded history: a level change (component "memory_pressure_monitor")
/// or a subscriber's action.
struct pressure_history_entry {
  clock_point at{0};
  std::string component;
  pressure_level level = pressure_level::low;
  std::string what;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pressure_history_entry& x) {
  return f(caf::meta::type_name("bulwark::pressure_history_entry"), x.at, x.component, x.level,
           x.what);
}

/// The monitor's answer to `get_atom`.
struct pressure_status {
  pressure_level level = pressure_level::low;
  double ratio = 0;
  uint64_t used_bytes = 0;
  uint64_t limit_bytes = 0;
  std::string source;
  uint64_t samples = 0;
  uint64_t sample_errors = 0;
  std::string last_error;
  uint64_t subscribers = 0;
  std::vector<pressure_history_entry> history; // oldest first
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pressure_status& x) {
  return f(caf::meta::type_name("bulwark::pressure_status"), x.level, x.ratio, x.used_bytes,
           x.limit_bytes, x.source, x.samples, x.sample_errors, x.last_error, x.subscribers,
           x.history);
}

} // namespace bulwark
