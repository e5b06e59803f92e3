#pragma once
/// `bulwark::errc`: every error Bulwark raises, registered with CAF as the error category
/// `bulwark` (register_types in type_ids.hpp installs its renderer). Values are explicitly
/// numbered by component range; CAF 0.17 stores error codes in a uint8_t, so ranges are tens,
/// not thousands.
///   1-9 general, 10-19 supervision, 20-29 memory pressure and the memory account,
///   30-39 cleanup, 40-59 pool and breaker, 60-69 database, 70-79 limiter and gateway.
/// Never renumber a value: remote nodes compare codes.

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>

#include <cstdint>
#include <string>

namespace bulwark {

enum class errc : uint8_t {
  none = 0,
  /// A configuration value was rejected (context: the JSON path and the reason).
  invalid_config = 1,
  /// A component named in a request does not exist (context: the name).
  unknown_component = 2,
  /// The component exists but is being restarted by its supervisor right now.
  component_unavailable = 3,
  /// The operator made this actor fail through the fault-injection endpoint.
  fault_injected = 4,
  /// The caller's deadline passed before an answer was ready.
  deadline_exceeded = 5,
  /// The engine is shutting down and takes no new work.
  shutting_down = 6,
  /// A supervisor saw more restarts than its intensity allows and gave up.
  restart_intensity_exceeded = 10,
  /// A supervisor's child factory threw or returned an invalid handle.
  child_start_failed = 11,
  /// The memory source could not be read (context: source and the OS error).
  memory_source_unreadable = 20,
  /// The node's memory account has no room for the work (context: retry-after in ms, what was
  /// asked and what was free). Nothing was allocated for it.
  insufficient_memory = 21,
  /// A cleanup task with that name is not registered.
  unknown_task = 30,
  /// A cleanup task's target is not in the directory (context: the target name).
  task_target_missing = 31,
  /// A cleanup task's run did not finish within its timeout.
  task_hung = 32,
  /// A cleanup task was registered with invalid parameters (zero interval, ...).
  invalid_task = 33,
  /// The pool's wait queue refused the call (context: retry-after in ms, the strategy).
  queue_full = 40,
  /// The circuit breaker is open (context: retry-after in ms, the reason it opened).
  circuit_open = 41,
  /// The backend cannot be reached or the connection broke (context: the backend's message).
  backend_unavailable = 42,
  /// The backend failed running the statement through its own fault: out of memory or disk,
  /// I/O, an internal error (context: its message). Counts against the breaker.
  backend_error = 43,
  /// The statement lost a race for a lock (busy, locked, deadlock, serialization failure); the
  /// call may be retried (context: retry-after in ms, the backend's message).
  backend_busy = 44,
  /// The pool is shutting down.
  pool_closed = 45,
  /// The call's deadline passed while it waited for a connection, or before it could start
  /// (context: what happened). Under load a shed: it says nothing about the backend.
  queue_timeout = 46,
  /// The call's deadline passed while every connection was still busy with work whose callers
  /// were answered at their deadlines: the backend does not return even cancelled work
  /// (context: what happened). The backend's failure.
  backend_stuck = 47,
  /// The call ran on the backend past its deadline and was cancelled there (context: what
  /// happened, and how long it ran on the backend in ms).
  call_cancelled = 48,
  /// Between the pool and its scheduler lane only, never a caller's answer: the read did not
  /// finish in its time slice (it ran past it, would wait for a lock, writes, or streams), and
  /// the pool runs it on a connection thread instead (context: why).
  slice_over = 49,
  /// Between the pool and a connection only, never a caller's answer: the pool took back a call
  /// it had sent ahead to a busy connection before the connection started it (another
  /// connection freed first, its wait ended, or the connection went down).
  call_revoked = 50,
  /// No statement with that name is configured (context: the name).
  unknown_statement = 60,
  /// The parameters do not match the statement's declared types (context: what was wrong).
  bad_parameters = 61,
  /// The backend rejected the statement itself (syntax, unknown table; context: its message).
  bad_statement = 62,
  /// An integrity constraint rejected the caller's data: a duplicate key, a missing foreign key
  /// (context: the constraint's name, the backend's message).
  conflict = 63,
  /// A value the statement cannot take: bad input syntax, out of range, too long (context: the
  /// 1-based parameter as int32_t, 0 when the backend names none; the backend's message).
  invalid_data = 64,

  // 70-79: the request pipeline (gateway, rate limiter, cache)
  /// The client is over its rate limit (context: retry-after in ms, the limiter's decision).
  rate_limited = 70,
  /// Shed at critical memory pressure because of its low priority (context: retry-after ms).
  shed = 71,
};

/// The CAF error category of `errc`.
constexpr caf::atom_value errc_category = caf::atom("bulwark");

/// The stable, lower_snake_case name of a code (`"restart_intensity_exceeded"`).
const char* to_string(errc x);

inline caf::error make_error(errc x) {
  return caf::error{static_cast<uint8_t>(x), errc_category};
}

/// An error with context: `make_error(errc::unknown_task, "no task named", name)`.
template <class T, class... Ts>
caf::error make_error(errc x, T&& y, Ts&&... ys) {
  return caf::error{static_cast<uint8_t>(x), errc_category,
                    caf::make_message(std::forward<T>(y), std::forward<Ts>(ys)...)};
}

/// True when `e` is a Bulwark error with code `x`.
inline bool is(const caf::error& e, errc x) {
  return e.category() == errc_category && e.code() == static_cast<uint8_t>(x);
}

/// Renders any CAF error for logs and JSON: "bulwark: task_hung (\"cleanup\", ...)".
std::string describe(const caf::error& e);

} // namespace bulwark
