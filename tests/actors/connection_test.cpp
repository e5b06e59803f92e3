// connection_handle: a cancel names its call, so it reaches that call and nothing else, on a real
// SQLite connection (sqlite3_interrupt interrupts whatever runs on the handle when it lands).

#include "actors/connection.hpp"

#include "support/temp_dir.hpp"
#include "support/test_system.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <optional>
#include <thread>

using namespace bulwark;

namespace {

/// Counts to `n` in SQLite: long enough to be running while another thread cancels.
constexpr const char* counting =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) "
    "SELECT count(*) FROM c";

struct outcome {
  std::optional<detail::backend_error_kind> error;
  int64_t count = 0;
};

/// Runs `counting` as call `id` on another thread while `poke` is called over and over until the
/// statement ends.
outcome run_while(detail::connection& c, connection_handle& h, uint64_t id, int64_t n,
                  const std::function<void()>& poke) {
  outcome out;
  std::atomic<bool> done{false};
  std::thread t([&] {
    h.begin(id);
    try {
      auto r = c.execute("count", {n}, {});
      out.count = std::get<int64_t>(r.rows.at(0).at(0));
    } catch (const detail::backend_error& e) {
      out.error = e.kind();
    }
    h.end();
    done = true;
  });
  while (!done)
    poke();
  t.join();
  return out;
}

} // namespace

TEST_CASE("a late cancel never interrupts the next call on the same connection",
          "[connection][sqlite]") {
  test::temp_dir d;
  auto c = detail::connect_sqlite({(d.path / "db.sqlite3").string(), 1000});
  c->prepare("count", counting, 1);
  connection_handle h;
  h.set_canceller(c->canceller());
  // Call 1 ran and ended; its cancel arrives late, again and again, while call 2 runs.
  auto r = run_while(*c, h, 2, 300000, [&] { h.cancel(1); });
  CHECK_FALSE(r.error.has_value());
  CHECK(r.count == 300000);
}

TEST_CASE("a cancel naming the running call interrupts it", "[connection][sqlite]") {
  test::temp_dir d;
  auto c = detail::connect_sqlite({(d.path / "db.sqlite3").string(), 1000});
  c->prepare("count", counting, 1);
  connection_handle h;
  h.set_canceller(c->canceller());
  // Counting to 1e9 takes minutes: only the cancel ends it.
  auto r = run_while(*c, h, 7, 1000000000, [&] { h.cancel(7); });
  REQUIRE(r.error.has_value());
  CHECK(*r.error == detail::backend_error_kind::cancelled);
}

TEST_CASE("a cancel after the connection closed touches nothing", "[connection][sqlite]") {
  test::temp_dir d;
  auto c = detail::connect_sqlite({(d.path / "db.sqlite3").string(), 1000});
  connection_handle h;
  int ran = 0;
  h.set_canceller([&ran, f = c->canceller()] {
    ++ran;
    f();
  });
  h.begin(3);
  h.cancel(3); // the running call: it reaches the connection
  CHECK(ran == 1);
  // The connection actor withdraws the canceller before its connection goes (AddressSanitizer
  // would report the freed sqlite3 handle otherwise).
  h.close();
  c.reset();
  h.cancel(3);
  h.cancel(0);
  CHECK(ran == 1);
}

TEST_CASE("a call offered ahead runs once claimed, and never once revoked", "[connection]") {
  connection_handle h;
  h.offer(5);
  CHECK_FALSE(h.revoke(4)); // not the one offered
  CHECK(h.revoke(5));
  CHECK_FALSE(h.revoke(5)); // once
  h.offer(6);
  CHECK(h.claim(6));
  CHECK_FALSE(h.revoke(6)); // claimed: it runs
  CHECK_FALSE(h.claim(5));  // revoked before: refused when it arrives
  CHECK(h.claim(5));        // ... once: an id the pool never offered is the connection's to run
  CHECK(h.claim(9));
}

TEST_CASE("a revoke and a claim racing for one call: exactly one wins", "[connection]") {
  connection_handle h;
  int claimed = 0, revoked = 0;
  for (uint64_t id = 1; id <= 5000; ++id) {
    h.offer(id);
    std::atomic<bool> go{false};
    bool claim = false;
    std::thread t([&] {
      while (!go.load())
        ;
      claim = h.claim(id);
    });
    go = true;
    bool revoke = h.revoke(id);
    t.join();
    REQUIRE(claim != revoke);
    claimed += claim;
    revoked += revoke;
  }
  CHECK(claimed + revoked == 5000);
}

TEST_CASE("a connection refuses a call the pool took back, and runs nothing of it",
          "[connection][sqlite]") {
  test::test_system ts;
  test::temp_dir d;
  backend_config b;
  b.sqlite_path = (d.path / "db.sqlite3").string();
  b.init_sql = {"CREATE TABLE t(x INTEGER)"};
  auto handle = std::make_shared<connection_handle>();
  auto owner =
      ts.keep(ts.sys.spawn([](caf::event_based_actor*) -> caf::behavior { return {[](int) {}}; }));
  // The scheduler lane's kind of connection: it runs on the test's deterministic scheduler.
  auto conn = spawn_connection(ts.sys, make_connection_factory(b, d.path.string()), handle, owner,
                               std::chrono::milliseconds(100));
  db_call call;
  call.statement = "count";
  call.sql = "SELECT count(*) FROM t";
  call.read_only = true;
  call.limit.max_rows = 10;
  call.limit.max_bytes = 1000;
  call.id = 1;
  handle->offer(1);
  REQUIRE(handle->revoke(1));
  auto refused = ts.ask<db_result>(conn, call);
  REQUIRE_FALSE(refused);
  CHECK(is(refused.error(), errc::call_revoked));
  call.id = 2;
  handle->offer(2);
  auto ran = ts.ask<db_result>(conn, call);
  REQUIRE(ran);
  CHECK(ran->rows.at(0).at(0) == db_value::of(int64_t{0}));
  CHECK_FALSE(handle->revoke(2));
}
