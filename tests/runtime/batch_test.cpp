// Batches (issue 18 item 2) through the embedded facade, on real SQLite and a real PostgreSQL:
// every item checked before any runs, fail fast (the first failure stops the batch and names the
// items that ran) or collect (every item's answer or error), never more items in flight than the
// pool may give one caller under the current pressure, and every item's rows charged to the
// memory budget.

#include "runtime/facade.hpp"

#include "actors/connection_pool.hpp"
#include "actors/detail/backend.hpp"

#include "support/kv_config.hpp"
#include "support/memory_source.hpp"
#include "support/node_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include <caf/scoped_actor.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;
using test::wait_until;

namespace {

int64_t count_of(embedded& node) {
  auto r = node.query("count").get();
  REQUIRE(r.ok());
  return r.result.rows.at(0).at(0).integer;
}

bool stored(embedded& node, int64_t k) {
  auto r = node.query("get", {k}).get();
  REQUIRE(r.ok());
  return !r.result.rows.empty();
}

/// Items put(k, "v<k>") for k in [from, to), with `taken` (a key already in the table) at `at`.
std::vector<std::vector<param>> puts(int64_t from, int64_t to, size_t at = SIZE_MAX) {
  std::vector<std::vector<param>> out;
  for (int64_t k = from; k < to; ++k)
    out.push_back({out.size() == at ? int64_t{42} : k, "v" + std::to_string(k)});
  return out;
}

/// The batch cases every backend must pass.
void batches_run_every_item_once(embedded& node) {
  SECTION("every item runs, each answered in order") {
    auto r = node.batch("put", puts(1, 21)).get();
    INFO(r.info.error << ": " << r.info.detail);
    REQUIRE(r.ok());
    CHECK(r.info.outcome == query_outcome::served);
    REQUIRE(r.result.items.size() == 20);
    for (auto& item : r.result.items) {
      CHECK_FALSE(item.error);
      CHECK(item.result.rows_affected == 1);
    }
    CHECK(r.result.rows_affected == 20);
    CHECK(count_of(node) == 21);
    auto reads = node.batch("get", {{42}, {7}, {1000}}).get();
    REQUIRE(reads.ok());
    REQUIRE(reads.result.items.size() == 3);
    CHECK(reads.result.items[0].result.rows.at(0).at(0) == db_value::of(std::string{"answer"}));
    CHECK(reads.result.items[1].result.rows.at(0).at(0) == db_value::of(std::string{"v7"}));
    CHECK(reads.result.items[2].result.rows.empty());
  }
  SECTION("fail fast: the first failure stops the batch and the answer names what ran") {
    auto r = node.batch("put", puts(1, 41, 10)).get();
    INFO(r.info.error << ": " << r.info.detail);
    CHECK(r.info.outcome == query_outcome::conflict);
    CHECK(r.info.http_status == 409);
    REQUIRE(r.info.item.has_value());
    CHECK(r.info.item->index == 10);
    CHECK(r.info.item->statement == "put");
    auto& ran = r.info.item->succeeded;
    CHECK(std::is_sorted(ran.begin(), ran.end()));
    CHECK(std::find(ran.begin(), ran.end(), 10u) == ran.end());
    // Items start in order, so all before the failed one ran; what the answer lists is exactly
    // what the table holds. (That nothing starts after the failure is seen is shown on
    // PostgreSQL below, where the items in flight can be held.)
    for (uint32_t i = 0; i < 10; ++i)
      CHECK(std::find(ran.begin(), ran.end(), i) != ran.end());
    std::set<uint32_t> listed(ran.begin(), ran.end());
    for (uint32_t i = 0; i < 40; ++i)
      if (i != 10)
        CHECK(stored(node, i + 1) == (listed.count(i) == 1));
    CHECK(count_of(node) == 1 + static_cast<int64_t>(ran.size()));
  }
  SECTION("collect: every item runs and has its own answer or error") {
    batch_options opts;
    opts.collect = true;
    auto r = node.batch("put", puts(1, 41, 10), opts).get();
    INFO(r.info.error << ": " << r.info.detail);
    REQUIRE(r.ok());
    REQUIRE(r.result.items.size() == 40);
    for (size_t i = 0; i < 40; ++i) {
      auto& item = r.result.items[i];
      if (i == 10) {
        CHECK(classify(item.error).outcome == query_outcome::conflict);
      } else {
        CHECK_FALSE(item.error);
        CHECK(item.result.rows_affected == 1);
      }
    }
    CHECK(r.result.rows_affected == 39);
    CHECK(count_of(node) == 40);
  }
  SECTION("items are checked before any runs") {
    auto bad = node.batch("put", {{1, "one"}, {2, "two"}, {"three", 3}}).get();
    CHECK(bad.info.outcome == query_outcome::bad_request);
    CHECK(bad.info.detail == "parameter 1 (int): expected an integer, got a string");
    REQUIRE(bad.info.item.has_value());
    CHECK(bad.info.item->index == 2);
    CHECK(bad.info.item->succeeded.empty());
    CHECK(count_of(node) == 1);
    CHECK(node.batch("nope", {{1}}).get().info.outcome == query_outcome::unknown_statement);
    CHECK(node.batch("put", {}).get().info.outcome == query_outcome::bad_request);
    auto many = node.batch("put", puts(1, 102)).get(); // database.max_batch_items is 100
    CHECK(many.info.outcome == query_outcome::bad_request);
    CHECK(many.info.detail == "101 items; a batch runs at most 100 (database.max_batch_items)");
    CHECK(count_of(node) == 1);
  }
}

/// Asks the pool how it stands.
pool_status pool_of(embedded& node) {
  caf::scoped_actor self{node.engine().system()};
  auto pool = node.engine().directory().get<connection_pool_actor>("connection_pool");
  REQUIRE(pool);
  pool_status out;
  self->request(pool, 5s, caf::get_atom::value)
      .receive([&](pool_status& s) { out = s; }, [&](caf::error& e) { FAIL(to_string(e)); });
  return out;
}

} // namespace

TEST_CASE("SQLite batches: fail fast or collect, every item checked first",
          "[batch][integration]") {
  test::temp_dir dir;
  embedded node{test::kv_config(dir, "batch_kv")};
  batches_run_every_item_once(node);
}

TEST_CASE("PostgreSQL batches: fail fast or collect, every item checked first",
          "[batch][postgres][integration]") {
  test::temp_dir dir;
  embedded node{test::kv_config(dir, "batch_kv_all", test::suite_postgres())};
  batches_run_every_item_once(node);
}

/// A node on the suite's PostgreSQL whose statement "hold" waits for an advisory lock the test
/// holds, so the items in flight can be counted on the server while the pool says where the
/// rest are. Item 3 of "hold" fails at once, without waiting (division by zero in the lock's
/// key). The memory ratio is the test's.
struct held_node {
  test::temp_dir dir;
  std::string conninfo = test::suite_postgres();
  std::shared_ptr<std::atomic<double>> ratio = std::make_shared<std::atomic<double>>(0.2);
  std::unique_ptr<embedded> node;
  std::unique_ptr<detail::connection> holder;
  std::unique_ptr<detail::connection> probe;

  explicit held_node(const std::string& table) {
    auto cfg = test::kv_config(dir, table, conninfo);
    cfg.database.statements["hold"] = {
        "SELECT $1::bigint FROM pg_advisory_xact_lock_shared(7007 + 0 * (1 / ($1 - 3)))",
        {"int"},
        true};
    REQUIRE(cfg.pool.max_connections == 8); // the shipped pool width
    engine_options opts;
    opts.memory_source = test::scripted_memory(ratio, 1ull << 30);
    node = std::make_unique<embedded>(cfg, std::move(opts));
    REQUIRE(node->query("get", {42}, high()).get().ok());
    detail::postgres_options o;
    o.conninfo = conninfo;
    holder = detail::connect_postgres(o);
    probe = detail::connect_postgres(o);
    probe->prepare("waiting",
                   "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 7007 "
                   "AND NOT granted",
                   0);
  }

  /// At high pressure normal work has no room left in the budget: these tests ask as high.
  static call_options high() {
    call_options o;
    o.priority = request_priority::high;
    return o;
  }

  /// Items waiting for the lock now.
  int64_t waiting() {
    auto rs = probe->execute("waiting", {}, {});
    REQUIRE(rs.rows.size() == 1);
    return std::get<int64_t>(rs.rows[0][0]);
  }

  std::future<query_result> hold(int64_t items, bool collect = false) {
    std::vector<std::vector<param>> params;
    for (int64_t i = 0; i < items; ++i)
      params.push_back({i + (i == 3 ? 0 : 100)}); // item 3 runs $1 = 3
    batch_options bo;
    bo.priority = request_priority::high;
    bo.timeout = 20s;
    bo.collect = collect;
    return node->batch("hold", params, bo);
  }
};

TEST_CASE("a batch has at most the pool's width in flight, narrower under memory pressure",
          "[batch][postgres][integration]") {
  held_node h{"batch_kv_width"};
  auto& node = *h.node;
  auto in_flight_is = [&](int64_t width) {
    h.holder->exec("SELECT pg_advisory_lock(7007)");
    auto r = h.hold(30, true);
    // Item 3 fails at once and the next item takes its place (collect); the items in flight
    // wait for the lock.
    wait_until(
        [&] { return h.waiting() == width && static_cast<int64_t>(pool_of(node).busy) == width; },
        "the batch's first items wait for the lock");
    // Exactly `width` items are in the pool: they run, none waits in its queue (all 30 at once
    // would fill the pool's 8 connections and queue the rest).
    CHECK(pool_of(node).queue_length == 0);
    CHECK(h.waiting() == width);
    h.holder->exec("SELECT pg_advisory_unlock(7007)");
    auto done = r.get();
    INFO(done.info.error << ": " << done.info.detail);
    REQUIRE(done.ok());
    REQUIRE(done.result.items.size() == 30);
    for (int64_t i = 0; i < 30; ++i) {
      if (i == 3)
        CHECK(done.result.items[i].error);
      else
        CHECK(done.result.items[i].result.rows.at(0).at(0) == db_value::of(i + 100));
    }
  };
  SECTION("low pressure: the pool's width, 8") {
    in_flight_is(8);
  }
  SECTION("high pressure: x0.5 (the result limits' factor), 4") {
    h.ratio->store(0.9);
    wait_until(
        [&] {
          auto r = node.query("get", {42}, held_node::high()).get();
          return r.ok() && r.result.limit.reason.find("pressure high") != std::string::npos;
        },
        "the database sees high pressure");
    in_flight_is(4);
  }
}

TEST_CASE("fail fast: once an item fails no other starts, and the answer lists what ran",
          "[batch][postgres][integration]") {
  held_node h{"batch_kv_fast"};
  h.holder->exec("SELECT pg_advisory_lock(7007)");
  auto r = h.hold(30);
  // Items 0..7 started (the pool's width); item 3 failed at once (its answer has left the
  // pool), the other 7 wait.
  wait_until([&] { return h.waiting() == 7 && pool_of(*h.node).busy == 7; },
             "the batch's first items wait for the lock");
  CHECK(pool_of(*h.node).queue_length == 0);
  h.holder->exec("SELECT pg_advisory_unlock(7007)");
  auto done = r.get();
  INFO(done.info.error << ": " << done.info.detail);
  CHECK_FALSE(done.ok());
  REQUIRE(done.info.item.has_value());
  CHECK(done.info.item->index == 3);
  CHECK(done.info.item->statement == "hold");
  // The seven that were running finished; none after them started once item 3 had failed.
  CHECK(done.info.item->succeeded == std::vector<uint32_t>{0, 1, 2, 4, 5, 6, 7});
}

TEST_CASE("a batch's rows are charged to the memory budget, each item cut where room runs out",
          "[batch][memory][integration]") {
  test::temp_dir dir;
  auto cfg = test::kv_config(dir, "batch_kv_memory");
  // ~20 MB of rows per item: 10 000 rows of 2 048 hex characters.
  cfg.database.statements["big"] = {
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) "
      "SELECT i, hex(randomblob(1024)) AS payload FROM n",
      {"int"},
      true};
  auto ratio = std::make_shared<std::atomic<double>>(0.2);
  // The rows the items reserve count as used, as they would in a real node's samples.
  auto reserved = std::make_shared<test::reservations_as_used>();
  engine_options opts;
  opts.memory_source = test::scripted_memory(ratio, 1ull << 30, reserved);
  embedded node{cfg, std::move(opts)};
  reserved->attach(node.engine().memory_account_ptr());
  auto& account = node.engine().memory_account();
  auto results = [&] {
    return account.snapshot().reserved[static_cast<size_t>(detail::memory_consumer::results)];
  };
  // Used: 0.848 of the 1 GiB budget; normal work may fill it to 0.85: about 2 MB of room.
  ratio->store(0.848);
  wait_until(
      [&] {
        auto r = node.query("get", {42}).get();
        return r.ok() && r.result.limit.reason.find("pressure medium") != std::string::npos;
      },
      "the database sees medium pressure");
  auto room = account.room(detail::memory_class::normal);
  REQUIRE(room < (3u << 20));
  batch_options collect;
  collect.collect = true;
  auto r = node.batch("big", {{10000}, {10000}, {10000}}, collect).get();
  INFO(r.info.error << ": " << r.info.detail);
  REQUIRE(r.ok());
  REQUIRE(r.result.items.size() == 3);
  uint64_t rows = 0;
  bool cut_by_memory = false;
  for (auto& item : r.result.items) {
    REQUIRE_FALSE(item.error);
    CHECK(item.result.truncated);
    CHECK(item.result.rows.size() < item.result.limit.max_rows); // before its row limit
    cut_by_memory = cut_by_memory || item.result.truncated_by == "memory";
    rows += item.result.rows.size();
  }
  CHECK(cut_by_memory);
  CHECK(r.result.truncated);
  // Together the items stayed within the room there was: their rows (2 KB each) are what the
  // batch's answer holds from the account, until it is dropped.
  CHECK(rows * 2048 <= room);
  CHECK(r.result.grant.bytes() >= rows * 2048);
  CHECK(results() >= r.result.grant.bytes());
  r = {};
  wait_until([&] { return results() == 0; }, "the batch's memory is given back");
}
