#pragma once
/// The circuit breaker's status and the operator's commands.

#include <caf/meta/type_name.hpp>
#include <caf/timestamp.hpp>

#include <cstdint>
#include <string>

namespace bulwark {

enum class breaker_command : uint8_t { force_open = 0, force_closed = 1, reset = 2 };

struct breaker_status {
  std::string state; ///< "closed", "open", "half_open"
  bool forced = false;
  caf::timespan open_remaining{0};
  uint64_t window_calls = 0;
  uint64_t window_failures = 0;
  uint64_t window_slow = 0;
  uint32_t consecutive_opens = 0;
  std::string last_transition; ///< "closed -> open: failure rate 0.55 >= 0.50 over 20 calls ..."
  uint64_t successes = 0;
  uint64_t failures = 0;
  uint64_t rejected = 0;
  uint64_t ignored = 0;
  uint64_t caller_errors = 0; ///< the caller's fault (conflict, invalid_data, bad_statement)
  uint64_t contention = 0;    ///< lock races that did not (yet) count as failures
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, breaker_status& x) {
  return f(caf::meta::type_name("bulwark::breaker_status"), x.state, x.forced, x.open_remaining,
           x.window_calls, x.window_failures, x.window_slow, x.consecutive_opens, x.last_transition,
           x.successes, x.failures, x.rejected, x.ignored, x.caller_errors, x.contention);
}

} // namespace bulwark
