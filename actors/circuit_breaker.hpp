#pragma once
/// circuit_breaker: guards the connection pool (and so the backend). Its state machine is
/// detail/breaker_core.hpp; this actor owns the clock, the call timeouts and the metrics.
///
/// | receives                     | replies        | errors                                   |
/// |------------------------------|----------------|------------------------------------------|
/// | db_call                      | db_result      | circuit_open (retry-after ms = remaining |
/// |                              |                | open time, reason), and the pool's       |
/// | get_atom                     | breaker_status |                                          |
/// | (breaker_command)            | breaker_status | force_open, force_closed, reset          |
///
/// - Every call gets a deadline of at most `call_timeout`; the pool cancels the backend work at
///   the deadline (sqlite3_interrupt / PQcancel), and such a timeout counts as a failure.
/// - Outcomes (`bulwark_breaker_calls_total{outcome}`), judged by the error's code alone:
///
///   | the pool's answer                               | outcome      |
///   |-------------------------------------------------|--------------|
///   | a result (slow at `slow_call_duration` or more) | success      |
///   | backend_unavailable, backend_error              | failure      |
///   | backend_stuck (cancelled work never returns)    | failure      |
///   | call_cancelled, cut by the breaker's own        | failure      |
///   | call_timeout, or after running for              |              |
///   | `slow_call_duration` or longer                  |              |
///   | no answer from the pool (request timeout)       | failure      |
///   | bad_statement, conflict, invalid_data           | caller_error |
///   | backend_busy (locks, deadlocks, serialization)  | contention   |
///   | call_cancelled earlier by a caller's shorter    | ignored      |
///   | deadline; queue_timeout, queue_full,            |              |
///   | deadline_exceeded, pool_closed                  |              |
///
///   No caller's deadline can hide a hung or slow backend; a caller's own errors never open it
///   (detail/backend_errors.hpp classifies), so one client's bad writes cannot shut out everyone;
///   contention counts as a failure only once nothing but contention has come back for
///   `contention_grace` (any success ends it); sheds never open it.
/// - While open (not forced) it asks the pool every `watch_interval` whether a connection opened
///   since it opened; if so the open wait ends now and the next calls are the half-open probes.
/// - The open wait ends on a timer, traffic or not: when it is over and no call has arrived for a
///   `watch_interval`, the breaker probes by itself (`SELECT 1` through the pool under the call
///   timeout, `bulwark_breaker_self_probes_total{result}`), one probe after another until the
///   half-open probes decide. An idle node's breaker closes once the backend is back (and the
///   CircuitBreakerOpen alert resolves) or opens again with the next, longer wait. With traffic,
///   callers' requests are the probes, as before.
/// - Calls in flight when it dies (a crash, or a pool restart that restarts it under rest_for_one)
///   are answered component_unavailable at once (owed_answers.hpp), not left to their timeout.
/// Keeps across a restart (circuit_breaker_memory, owned by its child spec): the state machine and
/// the counters. An open breaker stays open with its wait, so a crash during an outage does not
/// let minimum_calls requests through to a dead backend; a half-open one resumes open with its
/// wait over (its probes died with it), so the next call probes afresh.

#include "actors/detail/breaker_core.hpp"
#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <caf/timespan.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace bulwark {

struct circuit_breaker_config {
  /// breaker.*: windows, thresholds, open wait and probes (detail/breaker_core.hpp).
  detail::breaker_config core;
  /// breaker.call_timeout_ms: the longest a call may run on the backend.
  std::chrono::milliseconds call_timeout{5000};
  /// breaker.watch_interval_ms: while open, how often to ask the pool whether it has connected
  /// again (then the open wait ends early and probes decide).
  std::chrono::milliseconds watch_interval{250};
  /// breaker.contention_grace_ms: contention (lock conflicts, deadlocks) is the callers racing
  /// each other, not a failing backend, until it is all that comes back for this long with no
  /// success between: then each further contention answer counts as a failure (a lock someone
  /// holds for good, a wedged server).
  std::chrono::milliseconds contention_grace{5000};
};

/// What the breaker keeps across its restarts; see the header comment.
struct circuit_breaker_memory {
  std::unique_ptr<detail::breaker_core> core; ///< made by the first incarnation
  uint64_t successes = 0;
  uint64_t failures = 0;
  uint64_t rejected = 0;
  uint64_t ignored = 0;
  uint64_t caller_errors = 0;
  uint64_t contention = 0;
  /// The first and the latest contention answer of the current run of contention (no success
  /// since the first, no gap longer than contention_grace between two).
  std::optional<caf::timespan> contention_since;
  caf::timespan contention_last{0};
};

struct circuit_breaker_metrics {
  circuit_breaker_metrics(prometheus::Registry& reg, const std::string& breaker);
  prometheus::Gauge* state;
  prometheus::Family<prometheus::Counter>* transitions; ///< by target state
  prometheus::Family<prometheus::Counter>* calls;       ///< by outcome
  prometheus::Family<prometheus::Counter>* self_probes; ///< by result (success, failure)
  std::string breaker;
};

circuit_breaker_actor spawn_circuit_breaker(caf::actor_system& sys, circuit_breaker_config cfg,
                                            std::shared_ptr<component_directory> dir,
                                            circuit_breaker_metrics* metrics,
                                            std::shared_ptr<circuit_breaker_memory> memory = {});

} // namespace bulwark
