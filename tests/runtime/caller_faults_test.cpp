// Whose fault a backend error is, end to end on a real bulwarkd against real SQLite and
// PostgreSQL, on the shipped config/default.json (its demo schema and statements; a drill adds
// only the statement it needs): a client's bad writes get 409 and never open the breaker,
// contention is a retryable 503 that does not open it either, and a backend that really fails
// still counts (actors/detail/backend_errors.hpp is the classification).

#include "actors/detail/backend.hpp"

#include "support/node_process.hpp"

#include <catch2/catch.hpp>

#include <future>
#include <map>
#include <set>

using namespace bulwark;
using json = nlohmann::json;

namespace {

/// 1 000 writes of an event id the demo already holds, then a read of another client's data.
void duplicate_writes_leave_the_breaker_closed(const json& cfg, const std::string& constraint) {
  test::node_process n{cfg};
  std::map<int, int> codes;
  json last;
  for (int i = 0; i < 1000; ++i) {
    auto r = n.query("add_event", json{1, 1, "buy", 1.5});
    ++codes[r.status];
    if (i == 999)
      last = json::parse(r.body);
  }
  CHECK(codes[409] == 1000);
  CHECK(last["error"] == "conflict");
  CHECK(last["constraint"] == constraint);
  auto read = n.query("events_by_user", json{2});
  CHECK(read.status == 200);
  CHECK(json::parse(read.body)["rows"].size() > 0);
  auto b = n.status()["breaker"];
  CHECK(b["state"] == "closed");
  CHECK(b["failures"] == 0);
  CHECK(b["caller_errors"] == 1000);
  CHECK(test::metric(n.port, "bulwark_requests_total{outcome=\"conflict\"}") == 1000);
  CHECK(test::metric(n.port,
                     "bulwark_breaker_calls_total{breaker=\"backend\",outcome=\"failure\"}") == 0);
}

} // namespace

TEST_CASE("one client's duplicate-key writes get 409 and never open the breaker (SQLite)",
          "[caller_faults][sqlite][integration]") {
  duplicate_writes_leave_the_breaker_closed(test::shipped_demo(), "events.id");
}

TEST_CASE("one client's duplicate-key writes get 409 and never open the breaker (PostgreSQL)",
          "[caller_faults][postgres][integration]") {
  duplicate_writes_leave_the_breaker_closed(test::shipped_demo(test::suite_postgres()),
                                            "events_pkey");
}

TEST_CASE("a value the backend cannot take is 422 naming the parameter, not a backend failure",
          "[caller_faults][postgres][integration]") {
  auto cfg = test::shipped_demo(test::suite_postgres());
  // The statement's parameter is declared text, so the value reaches the server, whose cast
  // refuses it while binding.
  cfg["statements"]["as_number"] = {{"sql", "SELECT $1::int + 1 AS n"},
                                    {"params", {"text"}},
                                    {"read_only", true},
                                    {"cache_ttl_ms", 0}};
  test::node_process n{cfg};
  auto r = n.query("as_number", json{"forty-two"});
  CHECK(r.status == 422);
  auto j = json::parse(r.body);
  CHECK(j["error"] == "invalid_data");
  CHECK(j["parameter"] == 1);
  // The backend's words (which could hold other rows' data) go to the log under the request id;
  // the client gets its error kind, the parameter and that id.
  auto id = j["request_id"].get<std::string>();
  REQUIRE_FALSE(id.empty());
  CHECK_THAT(j["detail"].get<std::string>(), !Catch::Contains("forty-two"));
  CHECK_THAT(n.proc->output(), Catch::Contains("request " + id +
                                               " (/v1/query/as_number) "
                                               "invalid_data: ") &&
                                   Catch::Contains("forty-two"));
  CHECK(n.query("as_number", json{"41"}).status == 200);
  CHECK(test::metric(n.port, "bulwark_requests_total{outcome=\"invalid_data\"}") == 1);
  CHECK(n.status()["breaker"]["failures"] == 0);
}

TEST_CASE("a real deadlock on PostgreSQL is a retryable 503 that does not open the breaker",
          "[caller_faults][postgres][integration]") {
  auto cfg = test::shipped_demo(test::suite_postgres());
  // Each call locks one row, waits, then locks the other: two calls in opposite orders deadlock,
  // and the server's detector (deadlock_timeout, 1 s) aborts one of them with 40P01.
  for (auto sql :
       {"CREATE TABLE IF NOT EXISTS bulwark_deadlock (id int PRIMARY KEY, v int NOT NULL)",
        "INSERT INTO bulwark_deadlock VALUES (1, 0), (2, 0) ON CONFLICT (id) DO NOTHING",
        "CREATE OR REPLACE FUNCTION bulwark_bump_pair(a int, b int) RETURNS int LANGUAGE plpgsql "
        "AS $$ BEGIN UPDATE bulwark_deadlock SET v = v + 1 WHERE id = a; PERFORM pg_sleep(1); "
        "UPDATE bulwark_deadlock SET v = v + 1 WHERE id = b; RETURN 1; END $$"})
    cfg["backend"]["init_sql"].push_back(sql);
  cfg["statements"]["bump_pair"] = {{"sql", "SELECT bulwark_bump_pair($1::int, $2::int)"},
                                    {"params", {"int", "int"}},
                                    {"read_only", false},
                                    {"cache_ttl_ms", 0}};
  test::node_process n{cfg};
  auto one = std::async(std::launch::async, [&] { return n.query("bump_pair", json{1, 2}); });
  auto two = std::async(std::launch::async, [&] { return n.query("bump_pair", json{2, 1}); });
  auto a = one.get();
  auto b = two.get();
  INFO(a.body << "\n" << b.body);
  std::multiset<int> statuses{a.status, b.status};
  CHECK(statuses == std::multiset<int>{200, 503});
  auto& lost = a.status == 503 ? a : b;
  CHECK(json::parse(lost.body)["error"] == "contention");
  CHECK_THAT(json::parse(lost.body)["detail"].get<std::string>(), !Catch::Contains("40P01"));
  CHECK_THAT(n.proc->output(),
             Catch::Contains("request " + json::parse(lost.body)["request_id"].get<std::string>() +
                             " (/v1/query/bump_pair) contention: ") &&
                 Catch::Contains("40P01"));
  CHECK(lost.headers["retry-after"] == "1");
  // Retryable: the same call succeeds once the other is done.
  CHECK(n.query("bump_pair", a.status == 503 ? json{1, 2} : json{2, 1}).status == 200);
  auto br = n.status()["breaker"];
  CHECK(br["state"] == "closed");
  CHECK(br["failures"] == 0);
  CHECK(br["contention"] == 1);
  CHECK(test::metric(n.port, "bulwark_requests_total{outcome=\"rejected_contention\"}") == 1);
}

TEST_CASE("PostgreSQL terminating every connection counts against the breaker",
          "[caller_faults][postgres][integration]") {
  auto conninfo = test::suite_postgres();
  auto cfg = test::shipped_demo(conninfo);
  cfg["statements"]["user_by_id"]["cache_ttl_ms"] = 0;
  test::node_process n{cfg};
  REQUIRE(n.query("user_by_id", json{1}).status == 200);
  auto [rc, out] = test::run_command(
      "psql '" + conninfo +
      "' -Atc \"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
      "current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()\"");
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE(std::stoi(out) >= 1);
  // Each pooled connection learns it was terminated on its next use (57P01, or the socket
  // gone), fails that call and is replaced; then the query is served again.
  int failed = 0;
  int status = 0;
  for (int i = 0; i < 10 && status != 200; ++i) {
    auto r = n.query("user_by_id", json{1});
    INFO(r.body);
    status = r.status;
    if (status != 200) {
      CHECK(status == 502);
      CHECK(json::parse(r.body)["error"] == "backend_error");
      ++failed;
    }
  }
  CHECK(status == 200);
  CHECK(failed >= 1);
  CHECK(n.status()["breaker"]["failures"] == failed);
  CHECK(test::metric(n.port,
                     "bulwark_breaker_calls_total{breaker=\"backend\",outcome=\"failure\"}") ==
        failed);
}

TEST_CASE("SQLite locked by another writer: writes are a retryable 503, reads are served and the "
          "breaker stays closed",
          "[caller_faults][sqlite][integration]") {
  test::node_process n{test::shipped_demo()};
  REQUIRE(n.query("events_by_user", json{1}).status == 200); // the database exists
  // Another process's writer takes the write lock and keeps it.
  auto other = detail::connect_sqlite({(n.tmp.path / "data" / "bulwark.sqlite3").string(), 1000});
  other->exec("BEGIN IMMEDIATE");
  for (int i = 0; i < 3; ++i) {
    // Each write waits backend.sqlite.busy_timeout_ms (1 s), then gives up.
    auto w = n.query("add_event", json{900001 + i, 1, "buy", 1.0});
    INFO(w.body);
    CHECK(w.status == 503);
    CHECK(json::parse(w.body)["error"] == "contention");
    CHECK(w.headers["retry-after"] == "1");
    // WAL: readers are not blocked by the writer.
    CHECK(n.query("user_by_id", json{2 + i % 2}).status == 200);
  }
  auto b = n.status()["breaker"];
  CHECK(b["state"] == "closed");
  CHECK(b["failures"] == 0);
  CHECK(b["contention"] == 3);
  other->exec("ROLLBACK");
  CHECK(n.query("add_event", json{900001, 1, "buy", 1.0}).status == 200);
  CHECK(test::metric(n.port, "bulwark_requests_total{outcome=\"rejected_contention\"}") == 3);
}
