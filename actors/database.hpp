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
/// - A query with `batch` runs its statement once per parameter list: at most
///   database.max_batch_items, every item's parameters checked first (an error names the item:
///   failed_item, and nothing runs), then each item as its own db_call to the breaker, with its
///   own limit as above and its own memory reservation (a sibling of the batch's, folded into it
///   when the item is done). At most `batch_width` items are in flight at once, scaled by the
///   pressure factor of the result limits and recomputed before each item starts: with the
///   default pool of 8, 8 / 5 / 4 / 2 at low / medium / high / critical pressure, so a batch
///   never asks for more of the pool than one caller may take and leaves the rest to others.
///   Items start in order; none starts past the deadline. Fail fast (the default): the first
///   failure stops it, and the answer is that item's error with failed_item (which items ran).
///   Collect: db_result::items has every item's answer or error.
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
  /// database.max_batch_items: the most parameter lists one batch may run.
  uint32_t max_batch_items = 100;
  /// The most items of one batch in flight at low pressure: the pool's max_connections (set by
  /// the engine from pool.max_connections, not a key of its own).
  uint32_t batch_width = 8;
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
  prometheus::Family<prometheus::Counter>* batches;      ///< by statement
  /// bulwark_database_batch_items_total{result}: ok, failed, not_run.
  prometheus::Family<prometheus::Counter>* batch_items;
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
