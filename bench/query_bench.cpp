// The backend path's cost: the same point query on the same SQLite file, called directly through
// the backend interface (baseline) and through the engine (bridge -> database -> breaker -> pool
// -> connection actor -> back), one call at a time, so each number is the added latency.
//   query_point_sqlite

#include "bench/bench.hpp"

#include "actors/detail/backend.hpp"
#include "actors/log.hpp"
#include "runtime/engine.hpp"

#include <caf/all.hpp>

#include <filesystem>
#include <future>

using namespace bulwark;
using namespace std::chrono;

namespace {

constexpr int calls = 20000;
constexpr int warmup = 500;

const char* schema =
    "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)";
const char* rows = "INSERT INTO items (id, name) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT "
                   "i + 1 FROM n WHERE i < 10000) SELECT i, 'item ' || i FROM n WHERE true ON "
                   "CONFLICT (id) DO NOTHING";
const char* point = "SELECT id, name FROM items WHERE id = $1";

void report(const char* what, std::vector<double>& us, double secs) {
  std::printf("%-34s %d calls: p50 %.1f us, p95 %.1f us, p99 %.1f us, %.0f calls/s\n", what,
              static_cast<int>(us.size()), bench::percentile(us, 0.5), bench::percentile(us, 0.95),
              bench::percentile(us, 0.99), static_cast<double>(us.size()) / secs);
}

} // namespace

BULWARK_BENCH(query_point_sqlite) {
  set_log_level(log_level::warn);
  auto dir = std::filesystem::temp_directory_path() / "bulwark-query-bench";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto file = (dir / "bench.sqlite3").string();
  {
    // Baseline: the backend interface, no actors.
    auto c = detail::connect_sqlite({file, 1000});
    c->exec(schema);
    c->exec(rows);
    c->prepare("point", point, 1);
    std::vector<double> us;
    detail::fetch_limits lim;
    auto t0 = steady_clock::now();
    for (int i = 0; i < warmup + calls; ++i) {
      auto s = steady_clock::now();
      auto r = c->execute("point", {int64_t{1 + i % 10000}}, lim);
      if (r.rows.size() != 1)
        std::abort();
      if (i >= warmup)
        us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
      if (i == warmup - 1)
        t0 = steady_clock::now();
    }
    report("direct SQLite (baseline)", us, bench::seconds_since(t0));
  }
  for (auto policy : {"stealing", "sharing"}) {
    engine_config cfg;
    cfg.scheduler.policy = policy;
    cfg.node.data_dir = dir.string();
    cfg.backend.sqlite_path = file;
    cfg.scheduler.threads = 2;
    cfg.pool.min_connections = 1;
    cfg.pool.max_connections = 1;
    cfg.database.statements["point"] = {point, {"int"}, true};
    engine eng{cfg};
    auto db = eng.directory().get<database_actor>("database");
    std::vector<double> us;
    auto t0 = steady_clock::now();
    for (int i = 0; i < warmup + calls; ++i) {
      auto s = steady_clock::now();
      std::promise<bool> done;
      auto fut = done.get_future();
      db_query q;
      q.statement = "point";
      q.params = {db_value::of(int64_t{1 + i % 10000})};
      eng.post([&done, db, q](caf::event_based_actor* self) {
        self->request(db, std::chrono::seconds(10), q)
            .then([&done](db_result& r) { done.set_value(r.rows.size() == 1); },
                  [&done](caf::error&) { done.set_value(false); });
      });
      if (!fut.get())
        std::abort();
      if (i >= warmup)
        us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
      if (i == warmup - 1)
        t0 = steady_clock::now();
    }
    auto label = std::string{"through the engine, "} + policy;
    report(label.c_str(), us, bench::seconds_since(t0));
  }
  std::filesystem::remove_all(dir);
}
