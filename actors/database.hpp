#pragma once
/// database: the query front. Callers name a statement from the config and pass parameters;
/// HTTP callers never send SQL.
///
/// | receives         | replies   | errors                                                   |
/// |------------------|-----------|----------------------------------------------------------|
/// | db_query         | db_result | unknown_statement, bad_parameters, and whatever the      |
/// |                  |           | breaker or pool answer (circuit_open, queue_full, ...)   |
/// | pressure_changed | -         | result limits follow the level                           |
///
/// - Parameters are checked against the statement's declared types ("int", "real", "text",
///   "bool"; JSON null is SQL NULL) before anything reaches the backend.
/// - Each statement's complexity comes from the backend's planner at start (EXPLAIN QUERY PLAN /
///   EXPLAIN, through the pool like all backend work), with the lexical score as fallback.
/// - The row and byte limit of each call: the base from config scaled by pressure (x0.7, x0.5,
///   x0.3 at medium, high, critical) and complexity (x0.7 above 5, x0.5 above 10), never below
///   the floor (detail/query_limits.hpp). Rows are streamed and fetching stops at the limit;
///   truncation is always reported (flag, the limit that applied and why, a recommendation).
/// - The call goes to the circuit breaker (looked up per call), which guards the pool.
/// - A query with `steps` is a transaction: at most database.max_transaction_steps, every step
///   checked first (an error names the step: messages/database.hpp's failed_step), each with its
///   own limit as above, then one db_call with the steps: one breaker call, one pool connection,
///   one outcome (actors/connection.hpp runs it between BEGIN and COMMIT). A declared one
///   (`statement` is declared_transaction_label(name)) must run exactly its configured steps, at
///   its configured isolation; an ad-hoc one is transaction_label.
/// - Sends unprompted: a `pressure_action` to the monitor when the limits change.
/// Statement complexity is measured with the planner at start and by its cleanup task
/// `database_plans` (tick_atom every second, deferrable) until every statement is measured.
/// Keeps nothing across a restart but its config; complexities are measured again.

#include "actors/detail/query_limits.hpp"
#include "actors/detail/statement_catalog.hpp"
#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace bulwark {

/// transactions.<name>: a fixed sequence of statements run as one transaction under its name.
struct transaction_config {
  /// transactions.<name>.steps: the statements it runs, in order (each one configured).
  std::vector<std::string> steps;
  /// transactions.<name>.isolation: "" (the backend's default), "repeatable_read" or
  /// "serializable".
  std::string isolation;
};

struct database_config {
  /// database.max_rows / max_bytes / floor_rows / floor_bytes: the base and the floor of the
  /// per-call limit.
  detail::limit_config limits;
  /// database.default_timeout_ms: the deadline of a query that brings none.
  std::chrono::milliseconds default_timeout{5000};
  /// database.max_transaction_steps: the most statements one transaction may run.
  uint32_t max_transaction_steps = 32;
  /// statements: name -> statement (the engine builds the statement catalog from it once).
  std::map<std::string, statement_config> statements;
  /// transactions: name -> the statements it runs (POST /v1/transaction/{name}).
  std::map<std::string, transaction_config> transactions;
};

struct database_metrics {
  explicit database_metrics(prometheus::Registry& reg);
  prometheus::Family<prometheus::Counter>* queries; ///< by statement
  prometheus::Counter* truncated;
  prometheus::Family<prometheus::Counter>* transactions; ///< by name ("" ad hoc)
  prometheus::Counter* rejected_parameters;
  /// bulwark_database_query_duration_seconds: from handing a call to the breaker to its answer
  /// (queueing in the pool included), whatever the answer.
  prometheus::Histogram* duration;
};

/// `catalog`: the statements it runs (the one the engine built from `cfg.statements`).
/// `backend_kind` ("sqlite" or "postgres") says how to read the planner's output.
database_actor spawn_database(caf::actor_system& sys, database_config cfg,
                              std::shared_ptr<const detail::statement_catalog> catalog,
                              std::string backend_kind, std::shared_ptr<component_directory> dir,
                              database_metrics* metrics);

/// Checks `params` against the declared `kinds`; an empty string when they fit, else what is
/// wrong.
std::string check_parameters(const std::vector<detail::param_kind>& kinds,
                             const std::vector<db_value>& params);

} // namespace bulwark
