#pragma once
/// The benchmarks' table: `items(id, name)` with ids 1..N, and an engine that serves cached
/// point reads of it (statement `item`, one int parameter). Shared by perf_bench and
/// remote_bench so both measure the same path.

#include "actors/detail/backend.hpp"
#include "runtime/engine.hpp"

#include <filesystem>
#include <string>
#include <utility>

namespace bulwark::bench {

inline const char* items_schema =
    "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)";

/// Idempotent: fills ids 1..n.
inline std::string items_rows(int n) {
  return "INSERT INTO items (id, name) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
         "FROM n WHERE i < " +
         std::to_string(n) +
         ") SELECT i, 'item ' || i FROM n WHERE true ON CONFLICT (id) DO NOTHING";
}

/// A fresh (emptied) folder `name` under the temporary directory, and the path of the SQLite
/// file the benchmark keeps there.
inline std::pair<std::filesystem::path, std::string> fresh_dir(const char* name) {
  auto dir = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return {dir, (dir / "bench.sqlite3").string()};
}

/// fresh_dir(name), its SQLite file holding the items table with ids 1..10 000.
inline std::pair<std::filesystem::path, std::string> items_dir(const char* name) {
  auto out = fresh_dir(name);
  auto c = detail::connect_sqlite({out.second, 1000});
  c->exec(items_schema);
  c->exec(items_rows(10000));
  return out;
}

/// SQLite under `dir`, 2 scheduler threads, `keys` items, `item` cached for 10 minutes.
inline engine_config cached_items_engine(const std::filesystem::path& dir, int keys) {
  using namespace std::chrono_literals;
  engine_config cfg;
  cfg.node.data_dir = dir.string();
  cfg.scheduler.threads = 2;
  cfg.backend.init_sql = {items_schema, items_rows(keys)};
  cfg.database.statements["item"] = {"SELECT id, name FROM items WHERE id = $1", {"int"}, true};
  cfg.database.statements["item"].cache_ttl = 600s;
  return cfg;
}

} // namespace bulwark::bench
