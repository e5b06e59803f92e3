#include "actors/gateway.hpp"

#include "actors/remote_front.hpp"

#include "support/test_system.hpp"

#include <catch2/catch.hpp>

#include <limits>

#include <set>

using namespace bulwark;

namespace {

db_query query(std::vector<db_value> params) {
  db_query q;
  q.statement = "s";
  q.params = std::move(params);
  return q;
}

/// A database that records the pool priority of every query it is given, and serves it.
database_actor spawn_recording_database(caf::actor_system& sys,
                                        std::shared_ptr<std::vector<int32_t>> seen) {
  return sys.spawn([seen]() -> database_actor::behavior_type {
    return {
        [seen](db_query& q) {
          seen->push_back(q.priority);
          return db_result{};
        },
        [](health_atom) { return caf::ok_atom::value; },
        [](pressure_changed&) {},
        [](caf::tick_atom) {},
    };
  });
}

/// A gateway (no cache: the statement has no TTL) in front of a recording database.
struct gateway_fixture : test::test_system {
  prometheus::Registry registry;
  gateway_metrics metrics{registry};
  std::shared_ptr<component_directory> dir = std::make_shared<component_directory>();
  std::shared_ptr<std::vector<int32_t>> seen = std::make_shared<std::vector<int32_t>>();
  gateway_actor gw;

  gateway_fixture() {
    dir->declare("database", "");
    dir->set_running("database",
                     caf::actor_cast<caf::actor>(keep(spawn_recording_database(sys, seen))));
    std::map<std::string, statement_config> statements;
    statements["s"] = {"SELECT 1", {}, true};
    gw = keep(spawn_gateway(sys, gateway_config{}, 1, statements, std::chrono::seconds(5), dir,
                            &metrics));
    dir->declare("gateway", "");
    dir->set_running("gateway", caf::actor_cast<caf::actor>(gw));
    run();
  }
};

gateway_request request(request_priority p, int32_t query_priority = 0) {
  gateway_request r;
  r.priority = p;
  r.query = query({});
  r.query.priority = query_priority;
  return r;
}

} // namespace

TEST_CASE("the gateway hands each request's priority to the database as the pool's",
          "[gateway][actor]") {
  gateway_fixture f;
  REQUIRE(f.ask<db_result>(f.gw, request(request_priority::high)));
  REQUIRE(f.ask<db_result>(f.gw, request(request_priority::normal)));
  REQUIRE(f.ask<db_result>(f.gw, request(request_priority::low)));
  // A priority written into the query itself counts for nothing: the request's class decides.
  REQUIRE(f.ask<db_result>(f.gw, request(request_priority::low, 1'000'000)));
  CHECK(*f.seen == std::vector<int32_t>{1, 0, -1, -1});
  CHECK(pool_priority(request_priority::high) > pool_priority(request_priority::normal));
  CHECK(pool_priority(request_priority::normal) == db_query{}.priority);
}

TEST_CASE("a remote caller's out-of-range priority is clamped to high before it reaches the pool",
          "[gateway][remote][actor]") {
  gateway_fixture f;
  auto front = f.keep(spawn_remote_front(f.sys, f.dir, std::chrono::seconds(5),
                                         [](const db_result*, const caf::error*) {}));
  // Any byte can arrive over the network for the enum, and any int32 for the query's own.
  auto wild = request(static_cast<request_priority>(200), std::numeric_limits<int32_t>::max());
  REQUIRE(f.ask<db_result>(front, wild));
  auto negative = request(request_priority::normal, std::numeric_limits<int32_t>::min());
  REQUIRE(f.ask<db_result>(front, negative));
  CHECK(*f.seen == std::vector<int32_t>{1, 0});
  CHECK(clamp_priority(static_cast<request_priority>(3)) == request_priority::high);
  CHECK(clamp_priority(request_priority::low) == request_priority::low);
}

TEST_CASE("cache keys tell every parameter list apart", "[gateway][cache]") {
  auto text = [](const char* x) { return db_value::of(std::string{x}); };
  std::vector<std::vector<db_value>> lists = {
      {text("a\x1f"
            "3b"),
       text("c")},
      {text("a"), text("b\x1f"
                       "3c")},
      {text("a"), text("b"), text("c")},
      {text("1")},
      {db_value::of(int64_t{1})},
      {db_value::of(1.0)},
      {db_value::of(true)},
      {db_value::of_null()},
      {text("")},
      {},
      {text(""), text("")},
  };
  std::set<std::string> keys;
  for (auto& l : lists)
    keys.insert(cache_key(query(l)));
  CHECK(keys.size() == lists.size());
  // The same list always gives the same key, and the statement is part of it.
  CHECK(cache_key(query({text("x")})) == cache_key(query({text("x")})));
  auto other = query({text("x")});
  other.statement = "t";
  CHECK(cache_key(other) != cache_key(query({text("x")})));
}
