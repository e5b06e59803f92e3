#include "actors/gateway.hpp"

#include "actors/cache.hpp"
#include "actors/front_door.hpp"
#include "actors/rate_limiter.hpp"

#include "support/test_system.hpp"

#include <catch2/catch.hpp>

#include <limits>
#include <map>

#include <set>

using namespace bulwark;
using namespace std::chrono_literals;

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
        [](caf::tick_atom) { return caf::ok_atom::value; },
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

  std::shared_ptr<detail::memory_account> account;

  explicit gateway_fixture(std::shared_ptr<detail::memory_account> acc = {},
                           gateway_config cfg = {})
      : account(std::move(acc)) {
    dir->declare("database", "");
    dir->set_running("database",
                     caf::actor_cast<caf::actor>(keep(spawn_recording_database(sys, seen))));
    std::map<std::string, statement_config> statements;
    statements["s"] = {"SELECT 1", {}, true};
    statements["cached"] = {"SELECT 1", {}, true, std::chrono::minutes(1)};
    gw = keep(spawn_gateway(sys, cfg, 1,
                            std::make_shared<const detail::statement_catalog>(statements),
                            std::chrono::seconds(5), dir, &metrics, account));
    dir->declare(gateway_shard_name(0), "");
    dir->set_running(gateway_shard_name(0), caf::actor_cast<caf::actor>(gw));
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

/// A cache shard that takes every lookup and never answers it.
cache_actor spawn_silent_cache(caf::actor_system& sys) {
  return sys.spawn([](cache_actor::pointer self) -> cache_actor::behavior_type {
    return {
        [self](cache_get&) -> caf::result<cache_lookup> {
          return self->make_response_promise<cache_lookup>();
        },
        [](cache_put&) { return std::string{"stored"}; },
        [](cache_erase&) { return false; },
        [](caf::get_atom) { return cache_stats{}; },
        [](pressure_changed&) {},
        [](caf::tick_atom) { return caf::ok_atom::value; },
    };
  });
}

/// A rate limiter that takes every check and never answers it.
rate_limiter_actor spawn_silent_limiter(caf::actor_system& sys) {
  return sys.spawn([](rate_limiter_actor::pointer self) -> rate_limiter_actor::behavior_type {
    return {
        [self](limit_check&) -> caf::result<limit_decision> {
          return self->make_response_promise<limit_decision>();
        },
        [](caf::get_atom) { return limiter_stats{}; },
        [](pressure_changed&) {},
        [](caf::tick_atom) { return caf::ok_atom::value; },
    };
  });
}

/// A rate limiter that allows everything and writes down the keys it was asked about.
rate_limiter_actor spawn_recording_limiter(caf::actor_system& sys,
                                           std::shared_ptr<std::vector<std::string>> keys) {
  return sys.spawn([keys](rate_limiter_actor::pointer) -> rate_limiter_actor::behavior_type {
    return {
        [keys](limit_check& c) {
          keys->push_back(c.key);
          limit_decision d;
          d.allowed = true;
          d.decision = "allowed";
          return d;
        },
        [](caf::get_atom) { return limiter_stats{}; },
        [](pressure_changed&) {},
        [](caf::tick_atom) { return caf::ok_atom::value; },
    };
  });
}

} // namespace

TEST_CASE("each client is limited by one limiter shard, whichever gateway it reaches",
          "[gateway][rate_limiter][actor]") {
  // Three gateway shards and three limiter shards: a client's key must live in one limiter
  // shard for its limit to be exact, even if its requests reached different gateways.
  gateway_config cfg;
  cfg.shards = 3;
  gateway_fixture f{{}, cfg};
  std::vector<std::shared_ptr<std::vector<std::string>>> keys;
  for (uint32_t i = 0; i < 3; ++i) {
    keys.push_back(std::make_shared<std::vector<std::string>>());
    f.dir->declare(rate_limiter_shard_name(i), "");
    f.dir->set_running(rate_limiter_shard_name(i), caf::actor_cast<caf::actor>(f.keep(
                                                       spawn_recording_limiter(f.sys, keys[i]))));
  }
  std::map<std::string, statement_config> statements;
  statements["s"] = {"SELECT 1", {}, true};
  auto other = f.keep(spawn_gateway(f.sys, cfg, 1,
                                    std::make_shared<const detail::statement_catalog>(statements),
                                    std::chrono::seconds(5), f.dir, &f.metrics));
  for (auto gw : {f.gw, other})
    for (int c = 0; c < 30; ++c) {
      auto req = request(request_priority::normal);
      req.client = "client-" + std::to_string(c);
      REQUIRE(f.ask<db_result>(gw, req));
    }
  std::map<std::string, std::set<uint32_t>> shards_of;
  size_t checks = 0;
  for (uint32_t i = 0; i < 3; ++i) {
    INFO("shard " << i);
    CHECK_FALSE(keys[i]->empty()); // 30 clients spread over all three
    for (auto& k : *keys[i]) {
      shards_of[k].insert(i);
      ++checks;
    }
  }
  CHECK(checks == 60);
  REQUIRE(shards_of.size() == 30);
  for (auto& [client, shards] : shards_of) {
    INFO(client);
    CHECK(shards == std::set<uint32_t>{client_shard(client, 3)});
  }
}

TEST_CASE("a cache shard slower than component_timeout is a miss and a silent limiter fails the "
          "request closed, at that timeout, with one timer for all the asks",
          "[gateway][actor]") {
  gateway_config cfg;
  cfg.component_timeout = 100ms;
  gateway_fixture f{{}, cfg};
  f.dir->declare(cache_shard_name(0), "");
  f.dir->set_running(cache_shard_name(0),
                     caf::actor_cast<caf::actor>(f.keep(spawn_silent_cache(f.sys))));
  f.dir->declare(rate_limiter_shard_name(0), "");
  f.dir->set_running(rate_limiter_shard_name(0),
                     caf::actor_cast<caf::actor>(f.keep(spawn_silent_limiter(f.sys))));
  auto before = f.sched.clock().schedule().size();
  using answer = std::optional<caf::expected<db_result>>;
  auto send = [&](gateway_request req) {
    auto out = std::make_shared<answer>();
    auto gw = f.gw;
    f.sys.spawn([=](caf::event_based_actor* self) {
      self->request(gw, caf::infinite, req)
          .then([=](db_result& r) { *out = std::move(r); },
                [=](caf::error& e) { *out = std::move(e); });
    });
    f.run();
    return out;
  };
  std::vector<std::shared_ptr<answer>> reads, limited;
  for (int i = 0; i < 10; ++i) {
    auto read = request(request_priority::normal); // in-process: no limiter, the cache
    read.query.statement = "cached";
    reads.push_back(send(read));
    auto client = request(request_priority::normal); // a client's: the limiter first
    client.client = "c" + std::to_string(i);
    limited.push_back(send(client));
    f.advance(1ms);
  }
  CHECK(f.sched.clock().schedule().size() == before + 1); // 20 asks, one timer
  f.advance(100ms - 10ms);                                // the first asks' timeout: just them
  REQUIRE(*reads[0]);
  CHECK(**reads[0]); // a miss: served by the database
  REQUIRE(*limited[0]);
  CHECK(is((*limited[0])->error(), errc::component_unavailable));
  CHECK_FALSE(*reads[1]);
  CHECK_FALSE(*limited[1]);
  f.advance(9ms);
  for (size_t i = 0; i < reads.size(); ++i) {
    REQUIRE(*reads[i]);
    CHECK(**reads[i]);
    REQUIRE(*limited[i]);
    CHECK(is((*limited[i])->error(), errc::component_unavailable));
  }
  CHECK(f.seen->size() == 10); // the reads reached the database, the limited requests did not
  CHECK(f.metrics.stages->Add({{"stage", "cache"}, {"result", "unavailable"}}).Value() == 10);
  CHECK(f.sched.clock().schedule().size() == before);
}

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
  auto front = f.keep(
      spawn_front_door(f.sys, f.dir, std::chrono::seconds(5),
                       front_door_accounting{[] {}, [](const db_result*, const caf::error*) {}}));
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

namespace {

/// Sends `req` from a throwaway actor; the answer lands in the returned slot when it comes.
std::shared_ptr<std::optional<caf::expected<db_result>>> send(gateway_fixture& f,
                                                              gateway_request req) {
  auto out = std::make_shared<std::optional<caf::expected<db_result>>>();
  auto gw = f.gw;
  f.sys.spawn([=](caf::event_based_actor* self) {
    self->request(gw, caf::infinite, req)
        .then([out](db_result& r) { *out = std::move(r); },
              [out](caf::error& e) { *out = caf::expected<db_result>{std::move(e)}; });
  });
  f.run();
  return out;
}

/// A 100 000-byte budget: normal work may fill it to 85 000.
std::shared_ptr<detail::memory_account> small_account() {
  detail::memory_account_options o;
  o.budget_bytes = 100'000;
  return std::make_shared<detail::memory_account>(o);
}

/// Someone else (the cache) holds all that normal work may use but 1 000 bytes: a query's
/// 4 KiB does not fit.
detail::memory_reservation fill_normal_ceiling(detail::memory_account& account) {
  auto held =
      account.try_reserve(detail::memory_consumer::cache, 84'000, detail::memory_class::high);
  REQUIRE(held);
  return held;
}

double stage(gateway_fixture& f, const char* result) {
  return f.metrics.stages->Add({{"stage", "memory"}, {"result", result}}).Value();
}

} // namespace

TEST_CASE("a request with no room in the memory budget waits for some, in arrival order",
          "[gateway][memory][actor]") {
  auto account = small_account();
  gateway_fixture f{account};
  REQUIRE(f.ask<db_result>(f.gw, request(request_priority::normal))); // the cost is known
  auto held = fill_normal_ceiling(*account);
  auto first = send(f, request(request_priority::normal));  // needs 4 096: waits
  auto second = send(f, request(request_priority::normal)); // behind it
  CHECK_FALSE(first->has_value());
  CHECK_FALSE(second->has_value());
  CHECK(stage(f, "queued") == 2);
  f.advance(50ms, 10); // nothing comes free: they wait
  CHECK_FALSE(first->has_value());
  held = {}; // the cache lets go: both fit, served in order within one retry
  f.advance(5ms);
  REQUIRE(first->has_value());
  REQUIRE(second->has_value());
  CHECK(first->value());
  CHECK(second->value());
  CHECK(stage(f, "admitted") == 3); // with the one that taught the cost
  CHECK(stage(f, "refused") == 0);
}

TEST_CASE("a request waits for memory for at most half of its deadline, then is refused",
          "[gateway][memory][actor]") {
  auto account = small_account();
  gateway_fixture f{account};
  REQUIRE(f.ask<db_result>(f.gw, request(request_priority::normal))); // the cost is known
  auto held = fill_normal_ceiling(*account);
  auto req = request(request_priority::normal);
  req.query.deadline = f.now() + 1s;
  auto out = send(f, req);
  f.advance(495ms, 99);
  CHECK_FALSE(out->has_value());
  f.advance(10ms, 2);
  REQUIRE(out->has_value());
  REQUIRE_FALSE(out->value());
  CHECK(is(out->value().error(), errc::insufficient_memory));
  CHECK_THAT(describe(out->value().error()), Catch::Contains("after waiting"));
  CHECK(stage(f, "refused") == 1);
  // High priority has room above normal's ceiling: admitted at once, no wait.
  auto high = send(f, request(request_priority::high));
  REQUIRE(high->has_value());
  CHECK(high->value());
}

TEST_CASE("with the wait queue full, or none allowed, a request without room is refused at once",
          "[gateway][memory][actor]") {
  auto account = small_account();
  gateway_config cfg;
  cfg.memory_wait_max = 1;
  gateway_fixture f{account, cfg};
  REQUIRE(f.ask<db_result>(f.gw, request(request_priority::normal))); // the cost is known
  auto held = fill_normal_ceiling(*account);
  auto waits = send(f, request(request_priority::normal));
  auto refused = send(f, request(request_priority::normal));
  CHECK_FALSE(waits->has_value());
  REQUIRE(refused->has_value());
  CHECK(is(refused->value().error(), errc::insufficient_memory));
  // At critical pressure normal work is not admitted at all: no waiting for it.
  held = {};
  f.advance(5ms);
  REQUIRE(waits->has_value());
  account->set_critical(true);
  auto at_critical = send(f, request(request_priority::normal));
  REQUIRE(at_critical->has_value());
  CHECK(is(at_critical->value().error(), errc::insufficient_memory));
}

TEST_CASE("on a cold node a statement's first query teaches its cost before the rest are admitted",
          "[gateway][memory][actor]") {
  auto account = std::make_shared<detail::memory_account>();
  // A database that answers only when the test says (a tick, in its own context), each answer
  // with the query's grant grown to 50 000 bytes.
  auto pending = std::make_shared<std::vector<std::pair<caf::response_promise, db_query>>>();
  auto answered = std::make_shared<size_t>(0);
  gateway_fixture f{account};
  auto db = f.keep(f.sys.spawn(
      [pending, answered](database_actor::pointer self) -> database_actor::behavior_type {
        return {
            [=](db_query& q) -> caf::result<db_result> {
              auto rp = self->make_response_promise();
              pending->emplace_back(rp, std::move(q));
              return caf::delegated<db_result>{};
            },
            [](health_atom) { return caf::ok_atom::value; },
            [](pressure_changed&) {},
            [=](caf::tick_atom) {
              auto& [rp, q] = (*pending)[(*answered)++];
              db_result r;
              r.grant = std::move(q.grant);
              r.grant.held->resize(50'000);
              rp.deliver(std::move(r));
              return caf::ok_atom::value;
            },
        };
      }));
  f.dir->set_running("database", caf::actor_cast<caf::actor>(db));
  auto answer = [&] {
    caf::anon_send(db, caf::tick_atom::value);
    f.run();
  };
  auto first = send(f, request(request_priority::normal));
  auto second = send(f, request(request_priority::normal));
  REQUIRE(pending->size() == 1); // the second waits for the first's answer, not at a guess
  CHECK(stage(f, "queued") == 1);
  f.advance(50ms, 10);
  CHECK(pending->size() == 1);
  answer();
  REQUIRE(first->has_value());
  f.advance(5ms);
  REQUIRE(pending->size() == 2); // admitted with what the first cost
  first->reset();                // (the first answer's holder lets go of its bytes)
  CHECK(account->snapshot().reserved[static_cast<size_t>(detail::memory_consumer::results)] ==
        50'000);
  answer();
  CHECK(second->has_value());
  // Known now: the next is admitted at once.
  auto third = send(f, request(request_priority::normal));
  CHECK(pending->size() == 3);
  CHECK(stage(f, "queued") == 1);
}

TEST_CASE("a statement whose first query fails is not sent one at a time after it",
          "[gateway][memory][actor]") {
  auto account = std::make_shared<detail::memory_account>();
  gateway_fixture f{account};
  f.dir->set_running("database", caf::actor{}); // gone: every query fails at once
  auto a = send(f, request(request_priority::normal));
  REQUIRE(a->has_value());
  CHECK(is(a->value().error(), errc::component_unavailable));
  auto b = send(f, request(request_priority::normal));
  auto c = send(f, request(request_priority::normal));
  CHECK(b->has_value()); // answered at once: nothing waits for a cost nobody will learn
  CHECK(c->has_value());
  CHECK(stage(f, "queued") == 0);
}

TEST_CASE("once the oldest waiter has waited 100 ms the queue is standing: newcomers are refused "
          "at once",
          "[gateway][memory][actor]") {
  auto account = small_account();
  gateway_fixture f{account};
  REQUIRE(f.ask<db_result>(f.gw, request(request_priority::normal))); // the cost is known
  auto held = fill_normal_ceiling(*account);
  auto oldest = send(f, request(request_priority::normal));
  f.advance(50ms, 10);
  auto burst = send(f, request(request_priority::normal)); // the queue is young: waits
  CHECK_FALSE(burst->has_value());
  f.advance(50ms, 10);
  auto late = send(f, request(request_priority::normal)); // 100 ms old: standing
  REQUIRE(late->has_value());
  CHECK(is(late->value().error(), errc::insufficient_memory));
  CHECK_FALSE(oldest->has_value());
  held = {};
  f.advance(5ms);
  CHECK(oldest->has_value());
  CHECK(burst->has_value());
}
