#pragma once
/// The facade's test engine over a small key-value table of its own, for the transaction and batch
/// tests: SQLite in `dir`, or the PostgreSQL at `postgres` (a conninfo), with the statements they
/// share.

#include "runtime/config.hpp"

#include "support/temp_dir.hpp"

#include <string>

namespace bulwark::test {

/// The facade's usual test engine (memory account out of the way, as in facade_test) with the
/// statements the transactions and batches use, on SQLite or the PostgreSQL at `postgres`, over a
/// table of its own (`table`, so tests sharing the suite's PostgreSQL do not meet).
inline engine_config kv_config(const test::temp_dir& dir, const std::string& table,
                               const std::string& postgres = {}) {
  engine_config cfg;
  cfg.node.data_dir = dir.path.string();
  cfg.scheduler.threads = 2;
  cfg.memory.source = "process";
  cfg.memory.budget_bytes = 64ull << 30;
  if (!postgres.empty()) {
    cfg.backend.kind = "postgres";
    cfg.backend.postgres_conninfo = postgres;
  }
  cfg.backend.init_sql = {"DROP TABLE IF EXISTS " + table,
                          "CREATE TABLE " + table + " (k INTEGER PRIMARY KEY, v TEXT)",
                          "INSERT INTO " + table + " VALUES (42, 'answer')"};
  cfg.database.statements["get"] = {"SELECT v FROM " + table + " WHERE k = $1", {"int"}, true};
  cfg.database.statements["count"] = {"SELECT count(*) FROM " + table, {}, true};
  cfg.database.statements["put"] = {
      "INSERT INTO " + table + " VALUES ($1, $2)", {"int", "text"}, false};
  if (postgres.empty())
    cfg.database.statements["slow"] = {
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1) "
        "SELECT count(*) FROM c",
        {"int"},
        true};
  else
    cfg.database.statements["slow"] = {"SELECT 1 FROM pg_sleep($1)", {"real"}, true};
  return cfg;
}

} // namespace bulwark::test
