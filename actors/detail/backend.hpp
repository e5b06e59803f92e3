#pragma once
/// The backend interface: one database connection, CAF-free and blocking. Connection actors
/// (detached, never on the scheduler's threads) own one each; nothing else opens a connection.
/// Two real implementations: SQLite (sqlite_backend.cpp) and PostgreSQL through libpq
/// (postgres_backend.cpp). One exception to "never on the scheduler": a SQLite connection in
/// the pool's scheduler lane runs short reads there, each in a time slice (`set_slice`).
///
/// Errors are exceptions of type `backend_error` with a `kind` (detail/backend_errors.hpp says
/// whose fault each is): a broken connection is replaced, contention may be retried, a cancelled
/// query was interrupted by `cancel()`, and the caller's own faults (a bad statement, a constraint
/// violation, a value the statement cannot take) are no backend failure.

#include "actors/detail/backend_errors.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace bulwark::detail {

/// A parameter or a cell. `std::monostate` is SQL NULL.
using sql_value = std::variant<std::monostate, int64_t, double, std::string, bool>;

/// Declared parameter types of a named statement ("int", "real", "text", "bool").
enum class sql_type { integer, real, text, boolean };

class backend_error : public std::runtime_error {
public:
  backend_error(backend_error_kind kind, const std::string& what, std::string constraint = {},
                int parameter = 0)
      : std::runtime_error(what), kind_(kind), constraint_(std::move(constraint)),
        parameter_(parameter) {}
  backend_error_kind kind() const { return kind_; }
  /// For `constraint`: the constraint the server names ("events_pkey"; SQLite: "events.id").
  const std::string& constraint() const { return constraint_; }
  /// For `data`: the 1-based parameter whose value the server could not take; 0 when unknown.
  int parameter() const { return parameter_; }

private:
  backend_error_kind kind_;
  std::string constraint_;
  int parameter_;
};

/// A statement run in a time slice (connection::set_slice) that did not finish in it: it ran
/// past the slice, would have waited for a lock, or writes (refused before it ran). It only
/// read, so nothing of it stays: the caller runs it again where it may take its time.
class slice_over : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct result_set;

/// Bounds for one execution. Fetching stops at the first bound reached: rows are streamed from
/// the server and never materialised beyond the limit.
struct fetch_limits {
  size_t max_rows = 10000;
  size_t max_bytes = 16 * 1024 * 1024;
  /// Asked before each row is kept, with the totals the result would have with it (bytes as
  /// counted above, rows, cells): false stops fetching there, truncated_by "memory" (the node's
  /// memory account has no room for more). Unset: no such bound.
  std::function<bool(size_t bytes, size_t rows, size_t cells)> admit;
  /// Called after each row is kept, with the result so far: it may move rows out of
  /// `rows` (a stream takes them; `row_count` and `bytes` still count them). A reason returned
  /// ("client", "deadline") stops fetching there: truncated_by that reason. Unset: rows stay.
  std::function<const char*(result_set&)> sink;
};

struct result_set {
  std::vector<std::string> columns;
  std::vector<std::vector<sql_value>> rows;
  size_t row_count = 0;      ///< rows kept, including those a sink took out of `rows`
  size_t bytes = 0;          ///< approximate payload size of the rows kept
  bool truncated = false;    ///< more rows existed beyond a bound
  std::string truncated_by;  ///< "rows", "bytes" or "memory" when truncated
  int64_t rows_affected = 0; ///< for statements that change data
};

class connection {
public:
  virtual ~connection() = default;

  /// "sqlite" or "postgres".
  virtual const char* kind() const = 0;

  /// Prepares `sql` under `name` (idempotent per name on this connection). Throws.
  virtual void prepare(const std::string& name, const std::string& sql, size_t param_count) = 0;

  /// Runs a prepared statement with bound parameters, streaming rows up to `limits`. Throws.
  virtual result_set execute(const std::string& name, const std::vector<sql_value>& params,
                             const fetch_limits& limits) = 0;

  /// Runs ad-hoc SQL without results (init statements). Throws.
  virtual void exec(const std::string& sql) = 0;

  /// The planner's text for `sql` (EXPLAIN QUERY PLAN / EXPLAIN), one line per plan row.
  virtual std::vector<std::string> explain(const std::string& sql) = 0;

  /// A cheap round trip that proves the connection works. Throws.
  virtual void ping() = 0;

  /// Whether a transaction is open on this connection (after BEGIN, before its COMMIT or
  /// ROLLBACK; PostgreSQL also while an aborted one waits for ROLLBACK). SQLite ends a
  /// transaction by itself on some errors (an interrupt, SQLITE_FULL): then ROLLBACK must not run.
  virtual bool in_transaction() const = 0;

  /// A function that interrupts the statement running on this connection right now, callable
  /// from any thread while another thread is inside execute() (sqlite3_interrupt, PQcancel).
  /// It stays valid as long as the connection lives.
  virtual std::function<void()> canceller() = 0;

  /// Runs the statements that follow in a time slice ending at `end`, until set_slice(nullopt):
  /// a statement still running at `end` stops, one that would wait for a lock does not wait,
  /// and one that writes is refused before it runs; each throws slice_over. A connection used
  /// in slices never waits for a lock again, slices or not. Returns false, and does nothing,
  /// where the backend cannot (PostgreSQL: its calls wait on the network).
  virtual bool set_slice(std::optional<std::chrono::steady_clock::time_point> end) {
    (void)end;
    return false;
  }
};

struct sqlite_options {
  std::string path;
  int busy_timeout_ms = 1000;
};

struct postgres_options {
  std::string conninfo;
  int connect_timeout_s = 5;
};

std::unique_ptr<connection> connect_sqlite(const sqlite_options& opts);
std::unique_ptr<connection> connect_postgres(const postgres_options& opts);

} // namespace bulwark::detail
