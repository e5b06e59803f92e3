#include "actors/detail/backend_errors.hpp"

#include <catch2/catch.hpp>

#include <sqlite3.h>

using namespace bulwark::detail;
using k = backend_error_kind;

TEST_CASE("every backend error kind has a name and a fault", "[backend]") {
  CHECK(std::string(to_string(k::connection)) == "connection");
  CHECK(std::string(to_string(k::server)) == "server");
  CHECK(std::string(to_string(k::contention)) == "contention");
  CHECK(std::string(to_string(k::cancelled)) == "cancelled");
  CHECK(std::string(to_string(k::statement)) == "statement");
  CHECK(std::string(to_string(k::constraint)) == "constraint");
  CHECK(std::string(to_string(k::data)) == "data");
  for (auto x : {k::statement, k::constraint, k::data})
    CHECK(fault_of(x) == backend_fault::caller);
  CHECK(fault_of(k::contention) == backend_fault::contention);
  for (auto x : {k::connection, k::server, k::cancelled})
    CHECK(fault_of(x) == backend_fault::backend);
}

TEST_CASE("SQLSTATEs are classified by whose fault they are", "[backend]") {
  struct row {
    const char* state;
    k kind;
  };
  // One line per row of the table in backend_errors.hpp, and the exact codes that refine a class.
  const row rows[] = {
      {"23505", k::constraint}, // unique_violation
      {"23503", k::constraint}, // foreign_key_violation
      {"23502", k::constraint}, // not_null_violation
      {"40002", k::constraint}, // transaction_integrity_constraint_violation
      {"22P02", k::data},       // invalid_text_representation
      {"22003", k::data},       // numeric_value_out_of_range
      {"22001", k::data},       // string_data_right_truncation
      {"21000", k::data},       // cardinality_violation
      {"P0001", k::data},       // raise_exception
      {"42601", k::statement},  // syntax_error
      {"42P01", k::statement},  // undefined_table
      {"42501", k::statement},  // insufficient_privilege
      {"25006", k::statement},  // read_only_sql_transaction
      {"0A000", k::statement},  // feature_not_supported
      {"54001", k::statement},  // statement_too_complex
      {"55000", k::statement},  // object_not_in_prerequisite_state
      {"40001", k::contention}, // serialization_failure
      {"40P01", k::contention}, // deadlock_detected
      {"55P03", k::contention}, // lock_not_available
      {"55006", k::contention}, // object_in_use
      {"57014", k::cancelled},  // query_canceled
      {"08006", k::connection}, // connection_failure
      {"28P01", k::connection}, // invalid_password
      {"57P01", k::connection}, // admin_shutdown (pg_terminate_backend)
      {"57P03", k::connection}, // cannot_connect_now
      {"53100", k::server},     // disk_full
      {"53200", k::server},     // out_of_memory
      {"58030", k::server},     // io_error
      {"XX000", k::server},     // internal_error
      {"XX001", k::server},     // data_corrupted
      {"57000", k::server},     // operator_intervention
      {"40003", k::server},     // statement_completion_unknown
      {"ZZ999", k::server},     // a class nobody knows: the backend's, so the breaker sees it
      {"", k::server},          // libpq's own errors carry no SQLSTATE
  };
  for (auto& r : rows) {
    INFO(r.state);
    CHECK(classify_sqlstate(r.state) == r.kind);
  }
}

TEST_CASE("SQLite result codes are classified by whose fault they are", "[backend]") {
  CHECK(classify_sqlite(SQLITE_CONSTRAINT_UNIQUE, false) == k::constraint);
  CHECK(classify_sqlite(SQLITE_CONSTRAINT_FOREIGNKEY, false) == k::constraint);
  CHECK(classify_sqlite(SQLITE_MISMATCH, false) == k::data);
  CHECK(classify_sqlite(SQLITE_RANGE, true) == k::data);
  CHECK(classify_sqlite(SQLITE_TOOBIG, false) == k::data);
  CHECK(classify_sqlite(SQLITE_ERROR, false) == k::data); // a function's complaint, running
  CHECK(classify_sqlite(SQLITE_ERROR, true) == k::statement);
  CHECK(classify_sqlite(SQLITE_AUTH, true) == k::statement);
  CHECK(classify_sqlite(SQLITE_READONLY, false) == k::statement);
  CHECK(classify_sqlite(SQLITE_PERM, false) == k::statement);
  CHECK(classify_sqlite(SQLITE_BUSY, false) == k::contention);
  CHECK(classify_sqlite(SQLITE_BUSY_SNAPSHOT, false) == k::contention);
  CHECK(classify_sqlite(SQLITE_LOCKED, false) == k::contention);
  CHECK(classify_sqlite(SQLITE_ABORT_ROLLBACK, false) == k::contention);
  CHECK(classify_sqlite(SQLITE_SCHEMA, false) == k::contention);
  CHECK(classify_sqlite(SQLITE_INTERRUPT, false) == k::cancelled);
  CHECK(classify_sqlite(SQLITE_IOERR_WRITE, false) == k::connection);
  CHECK(classify_sqlite(SQLITE_CORRUPT, false) == k::connection);
  CHECK(classify_sqlite(SQLITE_CANTOPEN, false) == k::connection);
  CHECK(classify_sqlite(SQLITE_NOTADB, false) == k::connection);
  CHECK(classify_sqlite(SQLITE_FULL, false) == k::server);
  CHECK(classify_sqlite(SQLITE_NOMEM, false) == k::server);
  CHECK(classify_sqlite(SQLITE_PROTOCOL, false) == k::server);
}

TEST_CASE("the constraint a SQLite message names", "[backend]") {
  CHECK(sqlite_constraint("UNIQUE constraint failed: events.id") == "events.id");
  CHECK(sqlite_constraint("sqlite: 'x' failed: NOT NULL constraint failed: p.n") == "p.n");
  CHECK(sqlite_constraint("CHECK constraint failed: positive") == "positive");
  CHECK(sqlite_constraint("FOREIGN KEY constraint failed") == "FOREIGN KEY");
  CHECK(sqlite_constraint("sqlite: 'x' failed: FOREIGN KEY constraint failed") == "FOREIGN KEY");
  CHECK(sqlite_constraint("database is locked").empty());
}

TEST_CASE("the parameter a PostgreSQL error context names", "[backend]") {
  CHECK(postgres_parameter("unnamed portal parameter $2 = '...'") == 2);
  CHECK(postgres_parameter("portal \"p\" parameter $12 = 'x'") == 12);
  CHECK(postgres_parameter("SQL function \"f\" statement 1") == 0);
  CHECK(postgres_parameter("parameter $99999999999") == 0);
  CHECK(postgres_parameter("") == 0);
}
