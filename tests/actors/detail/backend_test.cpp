#include "actors/detail/backend.hpp"

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

using namespace bulwark::detail;
using bulwark::test::temp_dir;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

// -- shared helpers -------------------------------------------------------------------------

/// Runs `f` and returns the backend_error it throws (fails if it throws none).
template <class F>
backend_error error_of(F&& f) {
  try {
    f();
  } catch (const backend_error& e) {
    INFO("backend_error: " << e.what());
    return e;
  }
  FAIL("expected a backend_error");
  return backend_error{backend_error_kind::server, "none thrown"};
}

/// Runs `f` and returns the kind of the backend_error it throws (fails if it throws none).
template <class F>
backend_error_kind kind_of(F&& f) {
  return error_of(std::forward<F>(f)).kind();
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const backend_error& e) {
    return e.what();
  }
  return {};
}

result_set run(connection& c, const std::string& name, const std::string& sql,
               const std::vector<sql_value>& params = {}, fetch_limits limits = {}) {
  c.prepare(name, sql, params.size());
  return c.execute(name, params, limits);
}

int64_t as_int(const sql_value& v) {
  REQUIRE(std::holds_alternative<int64_t>(v));
  return std::get<int64_t>(v);
}

/// `series` is a statement with one parameter N that returns the rows 1..N.
void check_row_limit(connection& c, const std::string& series) {
  c.prepare("series", series, 1);
  fetch_limits lim;
  lim.max_rows = 10;
  auto r = c.execute("series", {int64_t{25}}, lim);
  CHECK(r.truncated);
  CHECK(r.truncated_by == "rows");
  REQUIRE(r.rows.size() == 10);
  CHECK(as_int(r.rows.front()[0]) == 1);
  CHECK(as_int(r.rows.back()[0]) == 10);

  auto exact = c.execute("series", {int64_t{10}}, lim);
  CHECK_FALSE(exact.truncated);
  CHECK(exact.truncated_by.empty());
  CHECK(exact.rows.size() == 10);

  auto fewer = c.execute("series", {int64_t{3}}, lim);
  CHECK_FALSE(fewer.truncated);
  CHECK(fewer.rows.size() == 3);
}

/// `wide` is a statement with one parameter N that returns N rows of one 100-character text.
void check_byte_limit(connection& c, const std::string& wide) {
  c.prepare("wide", wide, 1);
  fetch_limits lim;
  lim.max_bytes = 1000;
  auto r = c.execute("wide", {int64_t{100}}, lim);
  CHECK(r.truncated);
  CHECK(r.truncated_by == "bytes");
  CHECK(r.bytes <= 1000);
  CHECK(r.bytes >= 500); // each row is about 100 bytes: the bound, not an early stop
  CHECK(r.rows.size() >= 5);
  CHECK(r.rows.size() < 10);
  for (auto& row : r.rows)
    CHECK(std::get<std::string>(row[0]).size() == 100);

  lim.max_bytes = 1 << 20;
  auto all = c.execute("wide", {int64_t{100}}, lim);
  CHECK_FALSE(all.truncated);
  CHECK(all.rows.size() == 100);
  CHECK(all.bytes >= 100 * 100);
}

/// The connection answers after an error or a cancel.
void check_still_works(connection& c) {
  CHECK_NOTHROW(c.ping());
  auto r = run(c, "after", "SELECT 41 + 1");
  REQUIRE(r.rows.size() == 1);
  CHECK(as_int(r.rows[0][0]) == 42);
}

// -- SQLite ---------------------------------------------------------------------------------

std::unique_ptr<connection> open_sqlite(const temp_dir& d, int busy_timeout_ms = 1000) {
  sqlite_options o;
  o.path = (d.path / "test.db").string();
  o.busy_timeout_ms = busy_timeout_ms;
  return connect_sqlite(o);
}

/// Counting to 1e9 takes SQLite minutes: a query that runs until something stops it.
const char* sqlite_long = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                          "WHERE x < 1000000000) SELECT count(*) FROM c";

const char* sqlite_series = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                            "WHERE x < ?1) SELECT x FROM c";

// -- PostgreSQL -----------------------------------------------------------------------------

/// The server's conninfo from BULWARK_TEST_PG_CONNINFO (scripts/test.sh starts one). Missing,
/// it fails the test, unless BULWARK_TEST_PG_OPTIONAL=1 makes it a skip with a warning.
std::optional<std::string> pg_conninfo() {
  if (const char* c = std::getenv("BULWARK_TEST_PG_CONNINFO"); c != nullptr && *c != '\0')
    return std::string(c);
  if (const char* o = std::getenv("BULWARK_TEST_PG_OPTIONAL");
      o != nullptr && o == std::string("1")) {
    WARN("PostgreSQL test skipped: BULWARK_TEST_PG_CONNINFO is not set");
    return std::nullopt;
  }
  FAIL("BULWARK_TEST_PG_CONNINFO is not set. Start a server with `scripts/pg-test-server.sh "
       "start DIR` and export its output as BULWARK_TEST_PG_CONNINFO (scripts/test.sh does), "
       "or set BULWARK_TEST_PG_OPTIONAL=1 to skip the PostgreSQL tests");
  return std::nullopt;
}

std::unique_ptr<connection> open_pg(const std::string& conninfo) {
  postgres_options o;
  o.conninfo = conninfo;
  return connect_postgres(o);
}

#define PG_CONNINFO_OR_SKIP(var)                                                                   \
  auto var##_opt = pg_conninfo();                                                                  \
  if (!var##_opt)                                                                                  \
    return;                                                                                        \
  const std::string var = *var##_opt

int64_t backend_pid(connection& c) {
  auto r = run(c, "bulwark_test_pid", "SELECT pg_backend_pid()");
  return as_int(r.rows.at(0).at(0));
}

/// Statements of other sessions that are running and mention `text`.
int64_t active_queries_like(connection& observer, const std::string& text) {
  auto r = run(observer, "bulwark_test_active",
               "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
               "pid <> pg_backend_pid() AND strpos(query, $1::text) > 0",
               {text});
  return as_int(r.rows.at(0).at(0));
}

/// Polls until `pred` holds, at most `limit`; returns whether it did.
template <class Pred>
bool eventually(Pred pred, milliseconds limit = milliseconds(5000)) {
  auto until = steady_clock::now() + limit;
  while (!pred()) {
    if (steady_clock::now() > until)
      return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

/// Joins `t` when the scope ends, cancelling the query first: a failed check must not leave a
/// joinable thread (std::terminate) or a statement running.
struct cancel_and_join {
  std::thread& t;
  std::function<void()> cancel;
  ~cancel_and_join() {
    if (t.joinable()) {
      cancel();
      t.join();
    }
  }
};

/// A port on 127.0.0.1 where nothing listens: bound by the kernel's choice, then released.
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

} // namespace

// =========================================================================================
// backend_error_kind
// =========================================================================================

// =========================================================================================
// SQLite
// =========================================================================================

TEST_CASE("sqlite opens a new file in WAL mode with foreign keys on", "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  CHECK(std::string(c->kind()) == "sqlite");
  auto mode = run(*c, "mode", "PRAGMA journal_mode");
  CHECK(std::get<std::string>(mode.rows.at(0).at(0)) == "wal");
  auto fk = run(*c, "fk", "PRAGMA foreign_keys");
  CHECK(as_int(fk.rows.at(0).at(0)) == 1);
  CHECK_NOTHROW(c->ping());
}

TEST_CASE("sqlite reports a file it cannot open as a connection error naming the path",
          "[backend][sqlite]") {
  temp_dir d;
  sqlite_options o;
  o.path = (d.path / "no-such-dir" / "x.db").string();
  CHECK(kind_of([&] { connect_sqlite(o); }) == backend_error_kind::connection);
  CHECK_THAT(message_of([&] { connect_sqlite(o); }), Catch::Contains(o.path));

  o.path = d.put("junk.db", std::string(4096, 'j'));
  CHECK(kind_of([&] { connect_sqlite(o); }) == backend_error_kind::connection);
}

TEST_CASE("sqlite creates a table, inserts through exec and counts changed rows",
          "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  c->exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
          "INSERT INTO t (name) VALUES ('a'), ('b'), ('c');");
  auto all = run(*c, "all", "SELECT id, name FROM t ORDER BY id");
  CHECK(all.columns == std::vector<std::string>{"id", "name"});
  REQUIRE(all.rows.size() == 3);
  CHECK(std::get<std::string>(all.rows[2][1]) == "c");
  CHECK(all.rows_affected == 0);

  auto upd = run(*c, "upd", "UPDATE t SET name = name || ?1 WHERE id >= ?2",
                 {std::string("!"), int64_t{2}});
  CHECK(upd.rows_affected == 2);
  // A statement that changes no rows must not report the previous statement's count.
  auto ddl = run(*c, "ddl", "CREATE TABLE u (x INTEGER)");
  CHECK(ddl.rows_affected == 0);
}

TEST_CASE("sqlite round-trips every parameter type including NULL", "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  std::vector<sql_value> params{int64_t{-9007199254740993}, 0.1, std::string("it's ünïcode"), true,
                                std::monostate{}};
  auto r = run(*c, "echo", "SELECT ?1 AS i, ?2 AS r, ?3 AS t, ?4 AS b, ?5 AS n", params);
  CHECK(r.columns == std::vector<std::string>{"i", "r", "t", "b", "n"});
  REQUIRE(r.rows.size() == 1);
  auto& row = r.rows[0];
  CHECK(std::get<int64_t>(row[0]) == -9007199254740993);
  CHECK(std::get<double>(row[1]) == 0.1);
  CHECK(std::get<std::string>(row[2]) == "it's ünïcode");
  CHECK(std::get<int64_t>(row[3]) == 1); // SQLite has no boolean: stored as an integer
  CHECK(std::holds_alternative<std::monostate>(row[4]));

  c->exec("CREATE TABLE v (i INTEGER, r REAL, t TEXT, b BOOLEAN, n TEXT, bl BLOB)");
  run(*c, "ins", "INSERT INTO v VALUES (?1, ?2, ?3, ?4, ?5, x'00616263')", params);
  auto back = run(*c, "back", "SELECT i, r, t, b, n, bl FROM v");
  REQUIRE(back.rows.size() == 1);
  CHECK(std::get<int64_t>(back.rows[0][0]) == -9007199254740993);
  CHECK(std::get<double>(back.rows[0][1]) == 0.1);
  CHECK(std::get<std::string>(back.rows[0][2]) == "it's ünïcode");
  CHECK(std::get<int64_t>(back.rows[0][3]) == 1);
  CHECK(std::holds_alternative<std::monostate>(back.rows[0][4]));
  CHECK(std::get<std::string>(back.rows[0][5]) == std::string("\0abc", 4));
  CHECK(back.bytes > 0);
}

TEST_CASE("sqlite binds $N to parameter N wherever it first appears", "[backend][sqlite]") {
  // SQLite numbers "$N" parameters in order of first appearance: $2 before $1 once bound $1's
  // value to $2, so a config statement "SET name = $2 WHERE id = $1" changed nothing.
  temp_dir d;
  auto c = open_sqlite(d);
  auto r = run(*c, "order", "SELECT $2 AS second, $1 AS first, $2 AS again",
               {std::string("one"), std::string("two")});
  REQUIRE(r.rows.size() == 1);
  CHECK(std::get<std::string>(r.rows[0][0]) == "two");
  CHECK(std::get<std::string>(r.rows[0][1]) == "one");
  CHECK(std::get<std::string>(r.rows[0][2]) == "two");
  c->exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t VALUES (1, 'a')");
  auto upd = run(*c, "upd", "UPDATE t SET name = $2 WHERE id = $1", {int64_t{1}, std::string("b")});
  CHECK(upd.rows_affected == 1);
  CHECK(std::get<std::string>(run(*c, "back", "SELECT name FROM t").rows.at(0).at(0)) == "b");
}

TEST_CASE("sqlite stops at the row limit and says so only when more rows exist",
          "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  check_row_limit(*c, sqlite_series);
}

TEST_CASE("sqlite stops at the byte limit and says so", "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  check_byte_limit(*c, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE "
                       "x < ?1) SELECT printf('%.100c', 'x') FROM c");
}

TEST_CASE("sqlite rejects a wrong parameter count as a statement error", "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  CHECK(kind_of([&] { c->prepare("two", "SELECT ?1, ?2", 1); }) == backend_error_kind::statement);
  c->prepare("one", "SELECT ?1", 1);
  CHECK(kind_of([&] { c->execute("one", {}, {}); }) == backend_error_kind::statement);
  CHECK(kind_of([&] {
          c->execute("one", {int64_t{1}, int64_t{2}}, {});
        }) == backend_error_kind::statement);
  CHECK(kind_of([&] { c->execute("never-prepared", {}, {}); }) == backend_error_kind::statement);
  check_still_works(*c);
}

TEST_CASE("sqlite reports bad SQL and unknown tables as statement errors", "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  CHECK(kind_of([&] { c->prepare("bad", "SELEC 1", 0); }) == backend_error_kind::statement);
  CHECK(kind_of([&] { c->prepare("gone", "SELECT * FROM nowhere", 0); }) ==
        backend_error_kind::statement);
  CHECK(kind_of([&] { c->prepare("two", "SELECT 1; SELECT 2", 0); }) ==
        backend_error_kind::statement);
  CHECK(kind_of([&] { c->exec("CREATE TABLE (x)"); }) == backend_error_kind::statement);
  CHECK(kind_of([&] { c->explain("SELECT * FROM nowhere"); }) == backend_error_kind::statement);
  CHECK_NOTHROW(c->prepare("trailing", "SELECT 1; -- a comment", 0));
  check_still_works(*c);
}

TEST_CASE("sqlite reports constraint violations as the caller's, naming the constraint",
          "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  c->exec("CREATE TABLE p (id INTEGER PRIMARY KEY, n TEXT NOT NULL CHECK (length(n) < 5));"
          "CREATE TABLE ch (p INTEGER REFERENCES p(id));"
          "INSERT INTO p VALUES (1, 'one')");
  // Fails only because foreign keys are on.
  auto orphan = error_of([&] { run(*c, "orphan", "INSERT INTO ch VALUES (?1)", {int64_t{7}}); });
  CHECK(orphan.kind() == backend_error_kind::constraint);
  CHECK(orphan.constraint() == "FOREIGN KEY");
  auto dup = error_of([&] { run(*c, "dup", "INSERT INTO p VALUES (?1, 'x')", {int64_t{1}}); });
  CHECK(dup.kind() == backend_error_kind::constraint);
  CHECK(dup.constraint() == "p.id");
  auto null =
      error_of([&] { run(*c, "null", "INSERT INTO p VALUES (2, ?1)", {std::monostate{}}); });
  CHECK(null.kind() == backend_error_kind::constraint);
  CHECK(null.constraint() == "p.n");
  CHECK(kind_of([&] {
          run(*c, "long", "INSERT INTO p VALUES (3, ?1)", {std::string{"toolong"}});
        }) == backend_error_kind::constraint);
  check_still_works(*c);
}

TEST_CASE("sqlite reports a value the statement cannot take as the caller's data error",
          "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  c->exec("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  // A text key for a rowid column: datatype mismatch.
  CHECK(kind_of([&] { run(*c, "mismatch", "INSERT INTO t VALUES (?1)", {std::string{"x"}}); }) ==
        backend_error_kind::data);
  // A function's complaint about its argument, while running.
  CHECK(kind_of([&] {
          run(*c, "json", "SELECT json_extract(?1, '$.a')", {std::string{"{not json"}});
        }) == backend_error_kind::data);
  check_still_works(*c);
}

TEST_CASE("sqlite cancel from another thread interrupts a long query",
          "[backend][sqlite][integration]") {
  temp_dir d;
  auto c = open_sqlite(d);
  c->prepare("long", sqlite_long, 0);
  auto cancel = c->canceller();
  std::atomic<bool> done{false};
  std::optional<backend_error_kind> kind;
  std::string what;
  auto start = steady_clock::now();
  std::thread t([&] {
    try {
      c->execute("long", {}, {});
    } catch (const backend_error& e) {
      kind = e.kind();
      what = e.what();
    }
    done = true;
  });
  // SQLite cannot be asked whether the statement runs yet, and an interrupt while nothing
  // runs is a no-op: repeat it until the query ends.
  auto ended = eventually([&] {
    cancel();
    return done.load();
  });
  t.join();
  auto took = steady_clock::now() - start;
  REQUIRE(ended);
  INFO(what);
  REQUIRE(kind.has_value());
  CHECK(*kind == backend_error_kind::cancelled);
  CHECK(took < milliseconds(2000)); // counting to 1e9 takes minutes
  check_still_works(*c);
  CHECK(as_int(run(*c, "short", "SELECT count(*) FROM (" + std::string(sqlite_series) + ")",
                   {int64_t{1000}})
                   .rows.at(0)
                   .at(0)) == 1000);
}

/// Runs `f` and returns what the slice_over it throws says (fails if it throws none).
template <class F>
std::string slice_over_of(F&& f) {
  try {
    f();
  } catch (const slice_over& e) {
    return e.what();
  } catch (const backend_error& e) {
    FAIL("expected slice_over, got backend_error: " << e.what());
  }
  FAIL("expected slice_over");
  return {};
}

TEST_CASE("sqlite in a time slice: a read that outruns it stops, and the connection goes on",
          "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  c->prepare("long", sqlite_long, 0);
  // A slice that ended already: the first look at the clock (after 1 000 steps) stops it.
  REQUIRE(c->set_slice(steady_clock::now()));
  auto start = steady_clock::now();
  auto why = slice_over_of([&] { c->execute("long", {}, {}); });
  CHECK(steady_clock::now() - start < milliseconds(500)); // counting to 1e9 takes minutes
  CHECK(why.find("ran past its slice") != std::string::npos);
  // A point read is fewer steps than one look: it finishes even in a slice that has ended.
  CHECK(as_int(run(*c, "point", "SELECT 6 * 7").rows.at(0).at(0)) == 42);
  // A slice that has time left runs a read to its end.
  REQUIRE(c->set_slice(steady_clock::now() + std::chrono::seconds(60)));
  CHECK(as_int(run(*c, "count", "SELECT count(*) FROM (" + std::string(sqlite_series) + ")",
                   {int64_t{5000}})
                   .rows.at(0)
                   .at(0)) == 5000);
  c->set_slice(std::nullopt);
  check_still_works(*c);
}

TEST_CASE("sqlite in a time slice refuses a write before it runs, and never waits for a lock",
          "[backend][sqlite]") {
  temp_dir d;
  auto writer = open_sqlite(d);
  auto c = open_sqlite(d, 5000);
  c->exec("CREATE TABLE t (x INTEGER)");
  c->prepare("ins", "INSERT INTO t VALUES (?1)", 1);
  REQUIRE(c->set_slice(steady_clock::now() + std::chrono::seconds(60)));
  CHECK(slice_over_of([&] { c->execute("ins", {int64_t{1}}, {}); }).find("writes") !=
        std::string::npos);
  c->set_slice(std::nullopt);
  CHECK(as_int(run(*c, "count", "SELECT count(*) FROM t").rows.at(0).at(0)) == 0);
  // Out of a slice it writes, and a connection used in slices no longer waits out its busy
  // timeout (5 s here) for another writer's lock: it fails at once.
  CHECK(c->execute("ins", {int64_t{1}}, {}).rows_affected == 1);
  writer->exec("BEGIN IMMEDIATE");
  auto start = steady_clock::now();
  CHECK(kind_of([&] { c->execute("ins", {int64_t{2}}, {}); }) == backend_error_kind::contention);
  CHECK(steady_clock::now() - start < milliseconds(2500));
  // WAL: reads in a slice go on beside the writer.
  REQUIRE(c->set_slice(steady_clock::now() + std::chrono::seconds(60)));
  CHECK(as_int(run(*c, "count", "SELECT count(*) FROM t").rows.at(0).at(0)) == 1);
  writer->exec("ROLLBACK");
}

TEST_CASE("sqlite reports a database locked by another writer as contention", "[backend][sqlite]") {
  temp_dir d;
  auto writer = open_sqlite(d);
  auto c = open_sqlite(d, 50);
  c->exec("CREATE TABLE t (x INTEGER)");
  c->prepare("ins", "INSERT INTO t VALUES (?1)", 1);
  writer->exec("BEGIN IMMEDIATE");
  auto start = steady_clock::now();
  CHECK(kind_of([&] { c->execute("ins", {int64_t{1}}, {}); }) == backend_error_kind::contention);
  CHECK(steady_clock::now() - start >= milliseconds(40)); // it waited its busy timeout
  // WAL: a reader is not blocked by the writer.
  CHECK(run(*c, "count", "SELECT count(*) FROM t").rows.size() == 1);
  writer->exec("ROLLBACK");
  CHECK(c->execute("ins", {int64_t{1}}, {}).rows_affected == 1);
}

TEST_CASE("sqlite connections opened together on a fresh file all open, even beside a writer",
          "[backend][sqlite]") {
  // The pool opens several connections at once under load; a CI run once saw one of them fail
  // "database is locked" while switching to WAL. Twenty rounds of eight simultaneous opens on a
  // new file, with a writer busy in the same file from the first moment.
  for (int round = 0; round < 20; ++round) {
    temp_dir d;
    std::atomic<bool> go{false};
    std::atomic<int> failures{0};
    std::string first_error;
    std::mutex m;
    std::vector<std::thread> threads;
    threads.emplace_back([&] {
      while (!go)
        std::this_thread::yield();
      try {
        auto w = open_sqlite(d);
        w->exec("CREATE TABLE IF NOT EXISTS t (x INTEGER)");
        w->exec("INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                "WHERE x < 20000) SELECT x FROM c");
      } catch (const backend_error& e) {
        ++failures;
        std::lock_guard<std::mutex> g{m};
        first_error = e.what();
      }
    });
    for (int i = 0; i < 8; ++i)
      threads.emplace_back([&] {
        while (!go)
          std::this_thread::yield();
        try {
          open_sqlite(d);
        } catch (const backend_error& e) {
          ++failures;
          std::lock_guard<std::mutex> g{m};
          first_error = e.what();
        }
      });
    go = true;
    for (auto& t : threads)
      t.join();
    INFO("round " << round << ": " << first_error);
    REQUIRE(failures == 0);
  }
}

TEST_CASE("sqlite explains a query plan in at least one line", "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  c->exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)");
  auto plan = c->explain("SELECT name FROM t WHERE id = ?1");
  REQUIRE_FALSE(plan.empty());
  CHECK_THAT(plan[0], Catch::Contains("t"));
  CHECK_FALSE(c->explain("SELECT name FROM t WHERE name = ?1 ORDER BY name").empty());
}

TEST_CASE("sqlite prepare is idempotent per name and replaces changed SQL", "[backend][sqlite]") {
  temp_dir d;
  auto c = open_sqlite(d);
  c->prepare("q", "SELECT 1", 0);
  c->prepare("q", "SELECT 1", 0);
  CHECK(as_int(c->execute("q", {}, {}).rows.at(0).at(0)) == 1);
  c->prepare("q", "SELECT ?1 + 1", 1);
  CHECK(as_int(c->execute("q", {int64_t{2}}, {}).rows.at(0).at(0)) == 3);
}

// =========================================================================================
// PostgreSQL
// =========================================================================================

TEST_CASE("postgres reports a closed port as a connection error", "[backend][postgres]") {
  postgres_options o;
  o.conninfo = "host=127.0.0.1 port=" + std::to_string(closed_port()) + " dbname=x user=x";
  o.connect_timeout_s = 2;
  auto start = steady_clock::now();
  CHECK(kind_of([&] { connect_postgres(o); }) == backend_error_kind::connection);
  CHECK_THAT(message_of([&] { connect_postgres(o); }), Catch::Contains("cannot connect"));
  CHECK(steady_clock::now() - start < milliseconds(5000));
}

TEST_CASE("postgres creates a table, inserts through exec and counts changed rows",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  CHECK(std::string(c->kind()) == "postgres");
  c->exec("CREATE TEMP TABLE t (id bigserial PRIMARY KEY, name text NOT NULL);"
          "INSERT INTO t (name) VALUES ('a'), ('b'), ('c');");
  auto all = run(*c, "all", "SELECT id, name FROM t ORDER BY id");
  CHECK(all.columns == std::vector<std::string>{"id", "name"});
  REQUIRE(all.rows.size() == 3);
  CHECK(std::get<std::string>(all.rows[2][1]) == "c");
  CHECK(all.rows_affected == 0);
  auto upd = run(*c, "upd", "UPDATE t SET name = name || $1 WHERE id >= $2",
                 {std::string("!"), int64_t{2}});
  CHECK(upd.rows_affected == 2);
  auto ins = run(*c, "ins", "INSERT INTO t (name) VALUES ($1) RETURNING id", {std::string("d")});
  CHECK(ins.rows_affected == 1);
  CHECK(as_int(ins.rows.at(0).at(0)) == 4);
}

TEST_CASE("postgres round-trips every parameter type including NULL",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  std::vector<sql_value> params{int64_t{-9007199254740993}, 0.1, std::string("it's ünïcode"), true,
                                std::monostate{}};
  auto r = run(*c, "echo",
               "SELECT $1::int8 AS i, $2::float8 AS r, $3::text AS t, $4::bool AS b, "
               "$5::text AS n",
               params);
  CHECK(r.columns == std::vector<std::string>{"i", "r", "t", "b", "n"});
  REQUIRE(r.rows.size() == 1);
  auto& row = r.rows[0];
  CHECK(std::get<int64_t>(row[0]) == -9007199254740993);
  CHECK(std::get<double>(row[1]) == 0.1);
  CHECK(std::get<std::string>(row[2]) == "it's ünïcode");
  CHECK(std::get<bool>(row[3]) == true);
  CHECK(std::holds_alternative<std::monostate>(row[4]));

  c->exec("CREATE TEMP TABLE v (i bigint, r double precision, t text, b boolean, n text)");
  run(*c, "ins", "INSERT INTO v VALUES ($1, $2, $3, $4, $5)", params);
  auto back = run(*c, "back", "SELECT i, r, t, b, n FROM v");
  REQUIRE(back.rows.size() == 1);
  CHECK(back.rows[0] == row);

  auto types = run(*c, "types",
                   "SELECT 1::int2, 2::int4, 2.5::float4, 1.25::numeric, false, 'x'::varchar, "
                   "'Infinity'::float8, DATE '2024-02-29'");
  auto& t = types.rows.at(0);
  CHECK(std::get<int64_t>(t[0]) == 1);
  CHECK(std::get<int64_t>(t[1]) == 2);
  CHECK(std::get<double>(t[2]) == 2.5);
  CHECK(std::get<double>(t[3]) == 1.25);
  CHECK(std::get<bool>(t[4]) == false);
  CHECK(std::get<std::string>(t[5]) == "x");
  CHECK(std::isinf(std::get<double>(t[6])));
  CHECK(std::get<std::string>(t[7]) == "2024-02-29");
}

TEST_CASE("postgres stops at the row limit and says so only when more rows exist",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  check_row_limit(*c, "SELECT generate_series(1, $1::int8)");
  check_still_works(*c);
}

TEST_CASE("postgres stops at the byte limit and says so", "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  check_byte_limit(*c, "SELECT repeat('x', 100) FROM generate_series(1, $1::int8)");
  check_still_works(*c);
}

TEST_CASE("postgres truncation stops the server's work and leaves the connection clean",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  auto observer = open_pg(ci);
  fetch_limits lim;
  lim.max_rows = 5;
  auto start = steady_clock::now();
  // A hundred million rows take the server minutes to produce and send.
  // The marker names this session's statement among others on a shared server.
  auto marker = "huge_series_" + std::to_string(backend_pid(*c));
  auto r = run(*c, "huge", "SELECT generate_series(1, 100000000) AS " + marker, {}, lim);
  auto took = steady_clock::now() - start;
  CHECK(r.truncated);
  CHECK(r.truncated_by == "rows");
  CHECK(r.rows.size() == 5);
  CHECK(took < milliseconds(5000));
  CHECK(active_queries_like(*observer, marker) == 0);
  check_still_works(*c);

  // Inside a transaction block a cancel would abort the transaction: the rest is read and
  // dropped instead, and the transaction goes on.
  c->exec("BEGIN");
  auto in_tx = run(*c, "some", "SELECT generate_series(1, 1000)", {}, lim);
  CHECK(in_tx.truncated);
  CHECK(in_tx.rows.size() == 5);
  CHECK_NOTHROW(c->ping());
  c->exec("COMMIT");
}

TEST_CASE("postgres rejects a wrong parameter count as a statement error",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  CHECK(kind_of([&] { c->prepare("two", "SELECT $1::int, $2::int", 1); }) ==
        backend_error_kind::statement);
  c->prepare("one", "SELECT $1::int", 1);
  CHECK(kind_of([&] { c->execute("one", {}, {}); }) == backend_error_kind::statement);
  CHECK(kind_of([&] {
          c->execute("one", {int64_t{1}, int64_t{2}}, {});
        }) == backend_error_kind::statement);
  CHECK(kind_of([&] { c->execute("never-prepared", {}, {}); }) == backend_error_kind::statement);
  // The failed "two" was not left behind on the server: the name can be used again.
  CHECK_NOTHROW(c->prepare("two", "SELECT $1::int, $2::int", 2));
  // A parameter the column type cannot take is the caller's data error (22P02), and the server
  // says which parameter.
  auto bad = error_of([&] { c->execute("one", {std::string("not a number")}, {}); });
  CHECK(bad.kind() == backend_error_kind::data);
  CHECK(bad.parameter() == 1);
  check_still_works(*c);
}

TEST_CASE("postgres reports bad SQL and unknown tables as statement errors",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  CHECK(kind_of([&] { c->prepare("bad", "SELEC 1", 0); }) == backend_error_kind::statement);
  CHECK(kind_of([&] { c->prepare("gone", "SELECT * FROM nowhere", 0); }) ==
        backend_error_kind::statement);
  CHECK(kind_of([&] { c->exec("CREATE TABLE (x int)"); }) == backend_error_kind::statement);
  CHECK(kind_of([&] { c->explain("SELECT * FROM nowhere"); }) == backend_error_kind::statement);
  CHECK(kind_of([&] { run(*c, "div", "SELECT 1 / $1::int", {int64_t{0}}); }) ==
        backend_error_kind::data); // 22012 division_by_zero
  check_still_works(*c);
}

TEST_CASE("postgres reports constraint violations as the caller's, naming the constraint",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  c->exec("CREATE TEMP TABLE cv (id int CONSTRAINT cv_key PRIMARY KEY, n text NOT NULL)");
  c->exec("INSERT INTO cv VALUES (1, 'one')");
  auto dup =
      error_of([&] { run(*c, "dup", "INSERT INTO cv VALUES ($1::int, 'x')", {int64_t{1}}); });
  CHECK(dup.kind() == backend_error_kind::constraint); // 23505
  CHECK(dup.constraint() == "cv_key");
  auto null =
      error_of([&] { run(*c, "null", "INSERT INTO cv VALUES (2, $1::text)", {std::monostate{}}); });
  CHECK(null.kind() == backend_error_kind::constraint); // 23502 names the column
  CHECK(null.constraint() == "n");
  check_still_works(*c);
}

TEST_CASE("postgres cancel from another thread interrupts a long query and leaves nothing "
          "running",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  auto observer = open_pg(ci);
  auto pid = backend_pid(*c);
  // The marker names this session's statement among others on a shared server.
  auto marker = "cancel_test_" + std::to_string(pid);
  c->prepare("sleep", "SELECT pg_sleep(10) AS " + marker, 0);
  observer->prepare("running",
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int AND "
                    "state = 'active' AND strpos(query, 'pg_sleep') > 0",
                    1);
  std::optional<backend_error_kind> kind;
  std::string what;
  std::atomic<bool> done{false};
  std::thread t([&] {
    try {
      c->execute("sleep", {}, {});
    } catch (const backend_error& e) {
      kind = e.kind();
      what = e.what();
    }
    done = true;
  });
  cancel_and_join guard{t, c->canceller()};
  auto running = eventually([&] {
    return done || as_int(observer->execute("running", {pid}, {}).rows.at(0).at(0)) == 1;
  });
  auto start = steady_clock::now();
  c->canceller()();
  t.join();
  auto took = steady_clock::now() - start;
  REQUIRE(running);
  INFO(what);
  REQUIRE(kind.has_value());
  CHECK(*kind == backend_error_kind::cancelled);
  CHECK(took < milliseconds(2000)); // the sleep would take 10 s
  CHECK(as_int(observer->execute("running", {pid}, {}).rows.at(0).at(0)) == 0);
  CHECK(active_queries_like(*observer, marker) == 0);
  check_still_works(*c);
}

TEST_CASE("postgres reports a lock wait past lock_timeout as contention",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  auto holder = open_pg(ci);
  auto table = "bulwark_busy_test_" + std::to_string(backend_pid(*holder));
  holder->exec("DROP TABLE IF EXISTS " + table + "; CREATE TABLE " + table + " (x int)");
  holder->exec("BEGIN; LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE");
  c->exec("SET lock_timeout = '100ms'");
  CHECK(kind_of([&] { run(*c, "read", "SELECT count(*) FROM " + table); }) ==
        backend_error_kind::contention); // 55P03 lock_not_available
  holder->exec("ROLLBACK");
  CHECK(as_int(run(*c, "read2", "SELECT count(*) FROM " + table).rows.at(0).at(0)) == 0);
  holder->exec("DROP TABLE " + table);
}

TEST_CASE("postgres explains a query plan in at least one line",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  c->exec("CREATE TEMP TABLE t (id int PRIMARY KEY, name text)");
  auto plan = c->explain("SELECT name FROM t WHERE id = $1");
  REQUIRE_FALSE(plan.empty());
  std::string all;
  for (auto& line : plan)
    all += line + "\n";
  INFO(all);
  // The generic plan keeps the parameter instead of folding "id = NULL" to false.
  CHECK_THAT(all, Catch::Contains("$1"));
  CHECK_FALSE(c->explain("SELECT 1").empty());
  // Explaining leaves no prepared statement and no changed setting behind.
  auto left = run(*c, "left",
                  "SELECT (SELECT count(*) FROM pg_prepared_statements WHERE name LIKE "
                  "'bulwark_explain%'), current_setting('plan_cache_mode')");
  CHECK(as_int(left.rows.at(0).at(0)) == 0);
  CHECK(std::get<std::string>(left.rows.at(0).at(1)) == "auto");
}

TEST_CASE("postgres reports a backend terminated by the server as a connection error",
          "[backend][postgres][integration]") {
  PG_CONNINFO_OR_SKIP(ci);
  auto c = open_pg(ci);
  auto admin = open_pg(ci);
  auto pid = backend_pid(*c);
  c->prepare("q", "SELECT 1", 0);
  auto killed = run(*admin, "kill", "SELECT pg_terminate_backend($1::int)", {pid});
  CHECK(std::get<bool>(killed.rows.at(0).at(0)));
  admin->prepare("alive", "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", 1);
  REQUIRE(
      eventually([&] { return as_int(admin->execute("alive", {pid}, {}).rows.at(0).at(0)) == 0; }));
  CHECK(kind_of([&] { c->execute("q", {}, {}); }) == backend_error_kind::connection);
  // And it stays broken: every later call says so at once.
  CHECK(kind_of([&] { c->ping(); }) == backend_error_kind::connection);
  CHECK(kind_of([&] { c->prepare("r", "SELECT 2", 0); }) == backend_error_kind::connection);
}
