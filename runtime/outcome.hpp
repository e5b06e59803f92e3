#pragma once
/// Every query ends in exactly one outcome. This is the one mapping from what the path answered
/// to that outcome, its HTTP status and its `bulwark_requests_total` label, shared by the HTTP
/// API and the embedded C++ facade so both report the same thing.

#include "messages/fwd.hpp"

#include <caf/error.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace bulwark {

enum class query_outcome {
  served,
  served_truncated,
  served_cached, ///< answered from the gateway's cache
  rejected_rate_limited,
  rejected_shed, ///< low priority at critical memory pressure
  rejected_queue_full,
  rejected_circuit_open,
  rejected_unavailable, ///< a component restarting, the pool or the engine stopping
  failed_backend,
  timed_out,
  bad_request, ///< malformed body, parameters that do not fit, a statement the backend rejects
  unknown_statement,
  conflict,            ///< an integrity constraint rejected the caller's data (409)
  invalid_data,        ///< a value the statement cannot take, found by the backend (422)
  rejected_contention, ///< lost a race for a lock on the backend; retryable (503)
  internal_error,      ///< the node failed to handle it (an exception in the HTTP bridge): 500
  rejected_memory,     ///< the memory account had no room for it; nothing was allocated (503)
};

/// How many outcomes there are (query_outcome's values are 0 .. this - 1).
constexpr size_t query_outcome_count = static_cast<size_t>(query_outcome::rejected_memory) + 1;

/// The `bulwark_requests_total{outcome}` label: "served", "rejected_queue_full", ...
const char* to_string(query_outcome x);

/// Whether the node failed the query: failed_backend, timed_out or internal_error. The error
/// rate (the performance monitor's error_ratio) counts these over every outcome; refusals under
/// load and the caller's own errors (bad_request, conflict, invalid_data, ...) are not failures.
bool is_failure(query_outcome x);
/// The same, by the `bulwark_requests_total{outcome}` label (false for an unknown label).
bool is_failure(const std::string& label);

struct outcome_info {
  query_outcome outcome = query_outcome::served;
  unsigned http_status = 200;
  std::string error;          ///< the JSON "error" value, empty when served
  std::string detail;         ///< what was wrong, for humans
  int64_t retry_after_ms = 0; ///< for rejections: when to try again (Retry-After)
  std::string constraint;     ///< for conflict: the constraint the backend names
  int parameter = 0;          ///< for invalid_data: the 1-based parameter, 0 when unknown
  /// For a failed transaction: the step that failed (messages/database.hpp), which rolled the
  /// whole transaction back. Unset for anything else.
  std::optional<failed_step> step;
  /// For a fail-fast batch: the item that stopped it and the items that ran
  /// (messages/database.hpp). Unset for anything else.
  std::optional<failed_item> item;
  /// `detail` is the backend's own text (or an exception's), which may hold other rows' values,
  /// schema, hosts or users: an HTTP client gets public_detail() and a request id instead, and
  /// the text goes to the node's log under that id.
  bool private_detail = false;
};

/// What an HTTP client is told of `o`: its detail when that is the node's own words, else a fixed
/// sentence for its error kind.
std::string public_detail(const outcome_info& o);

outcome_info classify(const db_result& r);
outcome_info classify(const caf::error& e);
/// A request the node itself failed to handle (an exception while handling it): 500.
outcome_info internal_failure(std::string detail);
/// A request the HTTP server answered itself, 503 handler_timeout, because the node gave no
/// answer within http.request_timeout_ms: unavailable, as the client saw it.
outcome_info handler_timed_out();

/// A request still in flight when the node's drain time ran out: 503 shutting_down, retryable
/// (elsewhere: the node is going away).
outcome_info shut_down_in_flight();

} // namespace bulwark
