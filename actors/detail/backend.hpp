#pragma once
/// The backend interface: one database connection, CAF-free and blocking. Connection actors
/// (detached, never on the scheduler's threads) own one each; nothing else opens a connection.
/// Two real implementations: SQLite (sqlite_backend.cpp) and PostgreSQL through libpq
/// (postgres_backend.cpp).
///
/// Errors are exceptions of type `backend_error` with a `kind` the pool and breaker branch on:
/// a broken connection is replaced, a busy database is retried by the caller, a cancelled query
/// was interrupted by `cancel()`, a bad statement is the caller's fault and no backend failure.

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace bulwark::detail {

/// A parameter or a cell. `std::monostate` is SQL NULL.
using sql_value = std::variant<std::monostate, int64_t, double, std::string, bool>;

/// Declared parameter types of a named statement ("int", "real", "text", "bool").
enum class sql_type { integer, real, text, boolean };

enum class backend_error_kind {
  connection, ///< cannot connect, or the connection broke: replace it
  busy,       ///< database locked / serialization failure: transient, may be retried
  cancelled,  ///< interrupted by cancel() (a timeout): counts as a failure of the call
  statement,  ///< the statement or its parameters are wrong: the caller's fault
  query,      ///< any other error the server reported while running the statement
};

const char* to_string(backend_error_kind x);

class backend_error : public std::runtime_error {
public:
  backend_error(backend_error_kind kind, const std::string& what)
      : std::runtime_error(what), kind_(kind) {}
  backend_error_kind kind() const { return kind_; }

private:
  backend_error_kind kind_;
};

/// Bounds for one execution. Fetching stops at the first bound reached: rows are streamed from
/// the server and never materialised beyond the limit.
struct fetch_limits {
  size_t max_rows = 10000;
  size_t max_bytes = 16 * 1024 * 1024;
};

struct result_set {
  std::vector<std::string> columns;
  std::vector<std::vector<sql_value>> rows;
  size_t bytes = 0;          ///< approximate payload size of `rows`
  bool truncated = false;    ///< more rows existed beyond a bound
  std::string truncated_by;  ///< "rows" or "bytes" when truncated
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

  /// A function that interrupts the statement running on this connection right now, callable
  /// from any thread while another thread is inside execute() (sqlite3_interrupt, PQcancel).
  /// It stays valid as long as the connection lives.
  virtual std::function<void()> canceller() = 0;
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
