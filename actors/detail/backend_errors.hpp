#pragma once
/// Whose fault a backend error is: one classification for both backends, CAF-free. Only the
/// backend's own faults may open the circuit breaker; a caller's bad write must never take the
/// service down for everyone (resilience4j's recordExceptions / ignoreExceptions, decided here
/// from PostgreSQL's SQLSTATE class and SQLite's primary result code).
///
/// | kind       | fault      | PostgreSQL SQLSTATE                 | SQLite primary code      |
/// answer               |
/// |------------|------------|-------------------------------------|--------------------------|----------------------|
/// | constraint | caller     | 23xxx, 40002                        | CONSTRAINT               | 409
/// conflict         | | data       | caller     | 21xxx, 22xxx, 27xxx, 44xxx, P0xxx   | MISMATCH,
/// RANGE, TOOBIG, | 422 invalid_data     | |            |            | | ERROR while running      |
/// | | statement  | caller     | 0Axxx, 24-2F, 34, 3B, 3D, 3F, 42xxx,| ERROR while preparing,   |
/// 400 bad_statement    | |            |            | 54xxx, 55xxx but 55006/55P03        | AUTH,
/// PERM, READONLY     |                      | | contention | contention | 40001, 40P01, 55P03,
/// 55006          | BUSY, LOCKED, ABORT,     | 503 contention,      | |            |            |
/// | SCHEMA                   | Retry-After          | | cancelled  | backend    | 57014 |
/// INTERRUPT                | 504 (the breaker     | |            |            | | | asks whose
/// deadline) | | connection | backend    | 08xxx, 28xxx, 57P01-57P05, a broken | CANTOPEN, NOTADB,
/// IOERR, | 502 backend_error,   | |            |            | connection | CORRUPT | connection
/// replaced  | | server     | backend    | everything else: 53xxx (resources), | everything else:
/// FULL,   | 502 backend_error    | |            |            | 58xxx (I/O), XXxxx, 57000, 40003,
/// | NOMEM, PROTOCOL, ...     |                      | |            |            | no SQLSTATE
/// (libpq's own errors)    |                          |                      |
///
/// An unknown code is the backend's fault: the breaker may see one error too many, but it never
/// misses a failing backend because a code was new.
///
/// Contention is retryable: the statement lost a race for a lock, and the same call may succeed a
/// moment later. It counts against the breaker only once it persists (circuit_breaker.hpp).

#include <string>
#include <string_view>

namespace bulwark::detail {

enum class backend_error_kind {
  connection, ///< cannot connect, or the connection broke: replace it
  server,     ///< the server failed on a live connection (resources, I/O, internal error)
  contention, ///< lost a race for a lock (busy, deadlock, serialization failure): retryable
  cancelled,  ///< interrupted by cancel() (a timeout)
  statement,  ///< the server rejects the statement itself (text, permissions, read-only)
  constraint, ///< an integrity constraint rejects the caller's data (duplicate key, ...)
  data,       ///< a value the statement cannot take (bad input syntax, overflow, too big)
};

/// "connection", "server", "contention", "cancelled", "statement", "constraint", "data".
const char* to_string(backend_error_kind x);

enum class backend_fault { caller, contention, backend };

/// The table above, column "fault".
backend_fault fault_of(backend_error_kind x);

/// The kind of a PostgreSQL error by its SQLSTATE (five characters; empty for libpq's own
/// errors). A connection that libpq reports broken is `connection` whatever the state: the
/// caller checks PQstatus first.
backend_error_kind classify_sqlstate(std::string_view sqlstate);

/// The kind of a SQLite result code (extended codes are reduced to their primary code).
/// `preparing`: the error came from sqlite3_prepare (or a bind), not from running.
backend_error_kind classify_sqlite(int result_code, bool preparing);

/// The constraint a SQLite message names: "UNIQUE constraint failed: events.id" -> "events.id",
/// "CHECK constraint failed: positive" -> "positive"; "FOREIGN KEY constraint failed" ->
/// "FOREIGN KEY" (SQLite names no foreign key). Empty when the message names none.
std::string sqlite_constraint(std::string_view message);

/// The 1-based parameter a PostgreSQL error context names ("unnamed portal parameter $2 =
/// '...'" -> 2, as the server reports a value it cannot convert while binding); 0 when none.
int postgres_parameter(std::string_view context);

} // namespace bulwark::detail
