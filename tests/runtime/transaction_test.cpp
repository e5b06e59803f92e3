// Transactions (issue 18) through the embedded facade, on real SQLite and a real PostgreSQL: all
// steps or none, the failed step named, a deadline that rolls back and leaves the connection
// usable, a serialization failure answered as retryable, and a server killed mid-transaction
// that leaves no partial write (read back directly from the server).

#include "runtime/facade.hpp"

#include "actors/detail/backend.hpp"

#include "support/kv_config.hpp"
#include "support/node_process.hpp"
#include "support/own_postgres.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;
using test::wait_until;

namespace {

/// The scenario's one change to the pool: a single connection, so "the next call works" means
/// the connection the transaction ran on works.
void one_connection(engine_config& cfg) {
  cfg.pool.min_connections = 1;
  cfg.pool.max_connections = 1;
}

int64_t count_of(embedded& node) {
  auto r = node.query("count").get();
  REQUIRE(r.ok());
  return r.result.rows.at(0).at(0).integer;
}

/// The transaction cases every backend must pass.
void commits_all_or_nothing(embedded& node) {
  SECTION("every step commits, each answered in order") {
    auto r = node.transaction({{"put", {1, "one"}}, {"put", {2, "two"}}, {"get", {1}}}).get();
    INFO(r.info.error << ": " << r.info.detail);
    REQUIRE(r.ok());
    CHECK(r.info.outcome == query_outcome::served);
    REQUIRE(r.result.steps.size() == 3);
    CHECK(r.result.steps[0].rows_affected == 1);
    CHECK(r.result.steps[1].rows_affected == 1);
    REQUIRE(r.result.steps[2].rows.size() == 1);
    CHECK(r.result.steps[2].rows[0][0] == db_value::of(std::string{"one"})); // its own write
    CHECK(r.result.rows_affected == 2);
    CHECK(count_of(node) == 3);
  }
  SECTION("a failing step rolls back the steps before it and is named") {
    auto r = node.transaction({{"put", {1, "one"}}, {"put", {42, "taken"}}}).get();
    CHECK(r.info.outcome == query_outcome::conflict);
    CHECK(r.info.http_status == 409);
    REQUIRE(r.info.step.has_value());
    CHECK(r.info.step->index == 1);
    CHECK(r.info.step->statement == "put");
    CHECK(count_of(node) == 1); // step 0's row is gone with the rest
    CHECK(node.query("get", {1}).get().result.rows.empty());
  }
  SECTION("steps are checked before any runs") {
    auto unknown = node.transaction({{"put", {1, "one"}}, {"nope", {}}}).get();
    CHECK(unknown.info.outcome == query_outcome::unknown_statement);
    REQUIRE(unknown.info.step.has_value());
    CHECK(unknown.info.step->index == 1);
    auto bad = node.transaction({{"put", {1, "one"}}, {"get", {"x"}}}).get();
    CHECK(bad.info.outcome == query_outcome::bad_request);
    CHECK(bad.info.detail == "parameter 1 (int): expected an integer, got a string");
    REQUIRE(bad.info.step.has_value());
    CHECK(bad.info.step->index == 1);
    CHECK(bad.info.step->statement == "get");
    CHECK(count_of(node) == 1);
    auto empty = node.transaction({}).get();
    CHECK(empty.info.outcome == query_outcome::bad_request);
    auto iso = node.transaction({{"get", {1}}}, {{}, "snapshot"}).get();
    CHECK(iso.info.outcome == query_outcome::bad_request);
  }
}

/// A deadline mid-transaction: the step running is cancelled on the server, everything rolls
/// back, the answer names the step, and the one connection serves the next call.
void deadline_rolls_back(embedded& node, param slow_arg) {
  transaction_options opts;
  opts.timeout = 300ms;
  auto r = node.transaction({{"put", {100, "hundred"}}, {"slow", {slow_arg}}}, opts).get();
  INFO(r.info.error << ": " << r.info.detail);
  CHECK(r.info.outcome == query_outcome::timed_out);
  CHECK(r.info.http_status == 504);
  REQUIRE(r.info.step.has_value());
  CHECK(r.info.step->index == 1);
  CHECK(r.info.step->statement == "slow");
  CHECK(r.info.detail.find("rolled back") != std::string::npos);
  CHECK(node.query("get", {100}).get().result.rows.empty());
  auto next = node.transaction({{"put", {101, "next"}}}).get();
  CHECK(next.ok());
  CHECK(count_of(node) == 2);
}

std::unique_ptr<detail::connection> direct_pg(const std::string& conninfo) {
  detail::postgres_options o;
  o.conninfo = conninfo;
  return detail::connect_postgres(o);
}

int64_t scalar(detail::connection& c, const std::string& name, const std::string& sql) {
  c.prepare(name, sql, 0);
  auto rs = c.execute(name, {}, {});
  REQUIRE(rs.rows.size() == 1);
  auto& v = rs.rows[0][0];
  return std::holds_alternative<int64_t>(v) ? std::get<int64_t>(v)
                                            : std::stoll(std::get<std::string>(v));
}

} // namespace

TEST_CASE("SQLite transactions commit all steps or none", "[transaction][integration]") {
  test::temp_dir dir;
  embedded node{test::kv_config(dir, "tx_kv")};
  commits_all_or_nothing(node);
}

TEST_CASE("the facade runs a transaction declared in the config", "[transaction][integration]") {
  test::temp_dir dir;
  auto cfg = test::kv_config(dir, "tx_kv");
  cfg.database.transactions["put_two"] = {{"put", "put"}, ""};
  embedded node{cfg};
  auto r = node.named_transaction("put_two", {{1, "one"}, {2, "two"}}).get();
  INFO(r.info.error << ": " << r.info.detail);
  REQUIRE(r.ok());
  CHECK(r.result.steps.size() == 2);
  CHECK(count_of(node) == 3);
  auto dup = node.named_transaction("put_two", {{3, "three"}, {42, "taken"}}).get();
  CHECK(dup.info.outcome == query_outcome::conflict);
  CHECK(dup.info.step->index == 1);
  CHECK(count_of(node) == 3);
  CHECK(node.named_transaction("nope").get().info.outcome == query_outcome::unknown_statement);
  CHECK(node.named_transaction("put_two", {{4, "four"}}).get().info.outcome ==
        query_outcome::bad_request);
}

TEST_CASE("SQLite: a deadline mid-transaction rolls back and the connection serves the next call",
          "[transaction][integration]") {
  test::temp_dir dir;
  auto cfg = test::kv_config(dir, "tx_kv");
  one_connection(cfg);
  embedded node{cfg};
  deadline_rolls_back(node, int64_t{10'000'000'000});
}

TEST_CASE("PostgreSQL transactions commit all steps or none",
          "[transaction][postgres][integration]") {
  test::temp_dir dir;
  embedded node{test::kv_config(dir, "tx_kv_all", test::suite_postgres())};
  commits_all_or_nothing(node);
}

TEST_CASE("PostgreSQL: a deadline mid-transaction rolls back and the connection serves the next "
          "call",
          "[transaction][postgres][integration]") {
  test::temp_dir dir;
  auto cfg = test::kv_config(dir, "tx_kv_deadline", test::suite_postgres());
  one_connection(cfg);
  embedded node{cfg};
  deadline_rolls_back(node, 30.0);
}

TEST_CASE("PostgreSQL: a serialization failure is answered as retryable, naming the step",
          "[transaction][postgres][integration]") {
  test::temp_dir dir;
  auto conninfo = test::suite_postgres();
  auto cfg = test::kv_config(dir, "tx_kv_ser", conninfo);
  // The scenario's statements: read, wait for the test's advisory lock, write the same row.
  cfg.database.statements["wait_turn"] = {"SELECT 1 FROM pg_advisory_xact_lock(18018)", {}, false};
  cfg.database.statements["bump"] = {"UPDATE tx_kv_ser SET v = v || '+' WHERE k = 42", {}, false};
  embedded node{cfg};
  REQUIRE(node.query("get", {42}).get().ok()); // the schema is in place
  auto holder = direct_pg(conninfo);
  holder->exec("SELECT pg_advisory_lock(18018)");
  // T1 takes its snapshot (step 0), then waits for the lock the test holds.
  transaction_options opts;
  opts.isolation = "repeatable_read";
  auto t1 = node.transaction({{"get", {42}}, {"wait_turn", {}}, {"bump", {}}}, opts);
  auto probe = direct_pg(conninfo);
  probe->prepare("waiting",
                 "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", 0);
  wait_until(
      [&] {
        auto rs = probe->execute("waiting", {}, {});
        return rs.rows.size() == 1 && rs.rows[0][0] == detail::sql_value{int64_t{1}};
      },
      "T1 waits for the advisory lock");
  // T2 changes the row T1 read, and commits.
  auto t2 = node.transaction({{"bump", {}}}).get();
  REQUIRE(t2.ok());
  holder->exec("SELECT pg_advisory_unlock(18018)");
  auto r = t1.get();
  INFO(r.info.error << ": " << r.info.detail);
  CHECK(r.info.outcome == query_outcome::rejected_contention);
  CHECK(r.info.http_status == 503);
  CHECK(r.info.retry_after_ms > 0);
  REQUIRE(r.info.step.has_value());
  CHECK(r.info.step->index == 2);
  CHECK(r.info.step->statement == "bump");
  auto after = node.query("get", {42}).get();
  REQUIRE(after.ok());
  CHECK(after.result.rows.at(0).at(0) == db_value::of(std::string{"answer+"})); // T2's only
}

TEST_CASE("PostgreSQL killed mid-transaction: the caller is answered, naming the step, and no "
          "partial write survives",
          "[transaction][postgres][faults][integration]") {
  test::own_postgres pg;
  test::temp_dir dir;
  auto cfg = test::kv_config(dir, "tx_kv_kill", pg.conninfo);
  embedded node{cfg};
  REQUIRE(node.query("get", {42}).get().ok());
  // The test server runs with synchronous_commit off (scripts/pg-test-server.sh), so a crash
  // may lose the last commits: one synchronous commit makes the table and row durable first.
  auto direct = direct_pg(pg.conninfo);
  direct->exec("SET synchronous_commit = on; INSERT INTO tx_kv_kill VALUES (1, 'durable')");
  transaction_options opts;
  opts.timeout = 20s;
  auto t = node.transaction({{"put", {7, "seven"}}, {"slow", {30.0}}}, opts);
  wait_until([&] { return pg.active_queries("pg_sleep") == 1; }, "the transaction sleeps");
  pg.script("kill");
  auto r = t.get();
  INFO(r.info.error << ": " << r.info.detail);
  CHECK(r.info.outcome == query_outcome::failed_backend);
  REQUIRE(r.info.step.has_value());
  CHECK(r.info.step->index == 1);
  pg.script("restart");
  direct = direct_pg(pg.conninfo);
  CHECK(scalar(*direct, "count_seven", "SELECT count(*) FROM tx_kv_kill WHERE k = 7") == 0);
  CHECK(scalar(*direct, "count_all", "SELECT count(*) FROM tx_kv_kill") == 2);
}
