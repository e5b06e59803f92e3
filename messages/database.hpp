#pragma once
/// Messages of the backend path: the database actor takes a `db_query` (a named statement and its
/// parameters), the circuit breaker and the pool pass a `db_call` down to a connection actor, and
/// a `db_result` comes back. Every call carries an absolute deadline on the actor clock.

#include "messages/memory.hpp"
#include "messages/pressure.hpp"

#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace bulwark::detail {
class result_stream; // actors/detail/result_stream.hpp
} // namespace bulwark::detail

namespace bulwark {

enum class db_value_kind : uint8_t { null = 0, integer = 1, real = 2, text = 3, boolean = 4 };

/// A parameter or a cell, serializable for remote callers.
struct db_value {
  db_value_kind kind = db_value_kind::null;
  int64_t integer = 0;
  double real = 0;
  std::string text;
  bool boolean = false;

  static db_value of_null() { return {}; }
  static db_value of(int64_t x) { return {db_value_kind::integer, x, 0, {}, false}; }
  static db_value of(double x) { return {db_value_kind::real, 0, x, {}, false}; }
  static db_value of(std::string x) { return {db_value_kind::text, 0, 0, std::move(x), false}; }
  static db_value of(bool x) { return {db_value_kind::boolean, 0, 0, {}, x}; }

  friend bool operator==(const db_value& a, const db_value& b) {
    return a.kind == b.kind && a.integer == b.integer && a.real == b.real && a.text == b.text &&
           a.boolean == b.boolean;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, db_value& x) {
  return f(caf::meta::type_name("bulwark::db_value"), x.kind, x.integer, x.real, x.text, x.boolean);
}

using db_row = std::vector<db_value>;

/// The row and byte limit that applied to a query, and why.
struct db_limit {
  uint64_t max_rows = 0;
  uint64_t max_bytes = 0;
  std::string reason; ///< "base 10000 rows x0.5 (pressure high)"
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, db_limit& x) {
  return f(caf::meta::type_name("bulwark::db_limit"), x.max_rows, x.max_bytes, x.reason);
}

/// A large answer's way to its reader without being whole in memory (actors/detail/
/// result_stream.hpp): set by the HTTP API on a query, dropped by the gateway for statements it
/// caches, carried down to the connection, which streams rows into it once they pass the
/// stream's switch size. Local to its node, like memory_grant: it serializes as nothing and
/// arrives empty (the facade and remote callers get whole, bounded answers).
struct result_stream_ref {
  std::shared_ptr<detail::result_stream> to;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, result_stream_ref&) {
  uint64_t local_only = 0;
  return f(caf::meta::type_name("bulwark::result_stream_ref"), local_only);
}

/// One step of a transaction: a named statement from the config and its parameters.
struct db_step {
  std::string statement;
  std::vector<db_value> params;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, db_step& x) {
  return f(caf::meta::type_name("bulwark::db_step"), x.statement, x.params);
}

/// `db_query::statement` of a transaction (its steps name the statements): what the gateway
/// learns its memory cost under. Not a valid statement name in the config.
constexpr const char* transaction_label = "(transaction)";

/// `db_query::statement` of a transaction declared in the config (`transactions.<name>`):
/// "transaction:<name>", learned, limited and counted under that name.
inline std::string declared_transaction_label(const std::string& name) {
  return "transaction:" + name;
}

/// What the gateway learns a batch's memory cost under: "batch:<statement>" (a batch's
/// `db_query::statement` is the statement its items run).
inline std::string batch_label(const std::string& statement) {
  return "batch:" + statement;
}

/// Whether `x` names an isolation a transaction may ask for ("" asks for none: the backend's
/// default). The one list: the database checks it, the HTTP API reads it, the connection maps it.
inline bool is_isolation(const std::string& x) {
  return x == "repeatable_read" || x == "serializable";
}

/// To the database actor: run a named statement from the config, or, with `steps`, a
/// transaction of named statements on one connection (actors/database.hpp).
struct db_query {
  std::string statement;
  std::vector<db_value> params;
  clock_point deadline{0}; ///< absolute, on the actor clock; 0 = the configured default
  /// Higher is served first and shed last by the pool. Through the gateway it is always the
  /// request's (pool_priority in messages/gateway.hpp: -1, 0, 1), whatever the caller set here.
  int32_t priority = 0;
  /// The query's memory reservation (set by the gateway's admission; empty otherwise).
  memory_grant grant;
  /// Where to stream a large answer (empty: answer whole). Never for a transaction.
  result_stream_ref stream;
  /// Not empty: a transaction. `statement` is then transaction_label and `params` is unused;
  /// the steps run in order between BEGIN and COMMIT on one connection, and any failure rolls
  /// the whole of it back.
  std::vector<db_step> steps;
  /// A transaction's isolation: "" (the backend's default: PostgreSQL read committed, SQLite
  /// serializable), "repeatable_read" or "serializable".
  std::string isolation;
  /// Not empty: a batch. `statement` runs once per parameter list here (`params` is unused),
  /// each item its own call down the path, at most as many at once as the pool may give one
  /// caller under the current pressure (actors/database.hpp). Never cached, never streamed.
  std::vector<std::vector<db_value>> batch;
  /// A batch's failure mode. false, fail fast: the first item that fails stops the batch (no
  /// other item starts; those running finish) and the batch answers that item's error, naming
  /// it and the items that ran (failed_item). true, collect: every item runs (until the
  /// deadline) and has its own answer or error in db_result::items.
  bool collect = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, db_query& x) {
  return f(caf::meta::type_name("bulwark::db_query"), x.statement, x.params, x.deadline, x.priority,
           x.grant, x.stream, x.steps, x.isolation, x.batch, x.collect);
}

/// A transaction's step down the path: a statement already validated, with its own limit.
struct db_call_step {
  std::string statement;
  std::string sql;
  std::vector<db_value> params;
  db_limit limit;
  bool read_only = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, db_call_step& x) {
  return f(caf::meta::type_name("bulwark::db_call_step"), x.statement, x.sql, x.params, x.limit,
           x.read_only);
}

/// Down the path (database -> breaker -> pool -> connection): a statement already validated.
struct db_call {
  uint64_t id = 0; ///< unique per call, for cancellation
  std::string statement;
  std::string sql;
  std::vector<db_value> params;
  db_limit limit;
  clock_point deadline{0};
  int32_t priority = 0;
  /// Instead of running `sql`, return the planner's view of it: one row per plan line in a
  /// column "plan" (EXPLAIN QUERY PLAN / EXPLAIN).
  bool explain = false;
  /// The query's memory reservation: the connection grows it as rows arrive (refused: the
  /// result is cut, truncated_by "memory") and hands it on in the db_result.
  memory_grant grant;
  /// Where to stream a large answer (db_query::stream).
  result_stream_ref stream;
  /// Not empty: a transaction (db_query::steps), run instead of `sql`: BEGIN, each step,
  /// COMMIT, on the one connection this call holds; ROLLBACK on any failure.
  std::vector<db_call_step> steps;
  /// db_query::isolation, checked.
  std::string isolation;
  /// The statement is declared read-only (statements.<name>.read_only): the pool may run it in
  /// its scheduler lane (the backend still refuses one that writes).
  bool read_only = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, db_call& x) {
  return f(caf::meta::type_name("bulwark::db_call"), x.id, x.statement, x.sql, x.params, x.limit,
           x.deadline, x.priority, x.explain, x.grant, x.stream, x.steps, x.isolation, x.read_only);
}

/// One step's answer in a committed transaction, or one item's in a batch.
struct db_step_result {
  std::vector<std::string> columns;
  std::vector<db_row> rows;
  bool truncated = false;
  std::string truncated_by; ///< "rows", "bytes" or "memory"
  db_limit limit;
  int64_t rows_affected = 0;
  uint64_t bytes = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, db_step_result& x) {
  return f(caf::meta::type_name("bulwark::db_step_result"), x.columns, x.rows, x.truncated,
           x.truncated_by, x.limit, x.rows_affected, x.bytes);
}

/// The last element of a failed transaction's error context: which step failed (0-based, in
/// the request's order; the step count when COMMIT itself failed) and its statement ("COMMIT"
/// then). The error's code and the elements before it are the step's own error, unchanged.
struct failed_step {
  uint32_t index = 0;
  std::string statement;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, failed_step& x) {
  return f(caf::meta::type_name("bulwark::failed_step"), x.index, x.statement);
}

/// `e` with `step` as the last element of its context (code and other elements unchanged).
caf::error with_failed_step(const caf::error& e, failed_step step);

/// The failed step an error names, if it names one.
std::optional<failed_step> failed_step_of(const caf::error& e);

/// One item's answer in a batch: its error (none when it ran to completion) or its result.
struct db_item_result {
  caf::error error;
  db_step_result result;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, db_item_result& x) {
  return f(caf::meta::type_name("bulwark::db_item_result"), x.error, x.result);
}

/// The last element of a fail-fast batch's error context: the item whose error stopped the
/// batch (0-based; the lowest when several failed at once), the batch's statement, and the items
/// that ran to completion (ascending). Every other item failed or never started; as for a single
/// query, one cut at its deadline may still have taken effect on the backend.
struct failed_item {
  uint32_t index = 0;
  std::string statement;
  std::vector<uint32_t> succeeded;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, failed_item& x) {
  return f(caf::meta::type_name("bulwark::failed_item"), x.index, x.statement, x.succeeded);
}

/// `e` with `item` as the last element of its context (code and other elements unchanged).
caf::error with_failed_item(const caf::error& e, failed_item item);

/// The failed item an error names, if it names one.
std::optional<failed_item> failed_item_of(const caf::error& e);

struct db_result {
  std::vector<std::string> columns;
  std::vector<db_row> rows;
  bool truncated = false;
  /// "rows", "bytes" or "memory"; for a streamed answer also "client" (the reader went away) or
  /// "deadline" (the deadline passed while the producer waited for a slow reader)
  std::string truncated_by;
  db_limit limit;
  std::vector<std::string> warnings;
  int64_t rows_affected = 0;
  uint64_t bytes = 0;
  bool from_cache = false; ///< served by the gateway's cache, not the backend
  /// The memory these rows hold until the last holder drops them (messages/memory.hpp).
  memory_grant grant;
  /// The rows went into the query's stream (`streamed_rows` of them), not into `rows`; the
  /// rest of this answer (columns, limit, truncation, warnings) is the document's end.
  bool streamed = false;
  uint64_t streamed_rows = 0;
  /// How long the call spent on the stream's reader (rendering rows for it, waiting for it to
  /// read): the reader's time, not the backend's.
  caf::timespan reader_wait{0};
  /// How long the call waited in the pool's queue for a connection: the node's load, not the
  /// backend's speed (the breaker's slow calls leave it out, like reader_wait).
  caf::timespan pool_wait{0};
  /// A committed transaction's answers, one per step in order (`columns` and `rows` are then
  /// empty; `bytes` and `rows_affected` are the sums, `truncated` whether any step was cut).
  std::vector<db_step_result> steps;
  /// A batch's answers, one per item in order (`columns` and `rows` are then empty; `bytes` and
  /// `rows_affected` are the sums over the items that ran, `truncated` whether any was cut).
  std::vector<db_item_result> items;

  /// The rows of the answer, wherever they went.
  uint64_t row_count() const { return streamed ? streamed_rows : rows.size(); }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, db_result& x) {
  return f(caf::meta::type_name("bulwark::db_result"), x.columns, x.rows, x.truncated,
           x.truncated_by, x.limit, x.warnings, x.rows_affected, x.bytes, x.from_cache, x.grant,
           x.streamed, x.streamed_rows, x.reader_wait, x.pool_wait, x.steps, x.items);
}

} // namespace bulwark
