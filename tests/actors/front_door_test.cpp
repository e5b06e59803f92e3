#include "actors/front_door.hpp"

#include "actors/clock.hpp"
#include "actors/gateway.hpp"

#include "support/test_system.hpp"

#include <catch2/catch.hpp>

#include <optional>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

/// What the fake gateway saw of each request.
struct seen_request {
  caf::timespan deadline{0};
  request_priority priority = request_priority::normal;
  bool had_sink = false;
};

/// A gateway that records what it is given and answers at once (`answer`) or never.
gateway_actor spawn_fake_gateway(caf::actor_system& sys,
                                 std::shared_ptr<std::vector<seen_request>> seen, bool answer) {
  return sys.spawn([seen, answer](gateway_actor::pointer self) -> gateway_actor::behavior_type {
    return {
        [=](gateway_request& req) -> caf::result<db_result> {
          seen->push_back({req.query.deadline, req.priority, req.sink.fn != nullptr});
          if (answer) {
            db_result r;
            r.rows_affected = 7;
            return r;
          }
          return self->make_response_promise<db_result>(); // never delivered
        },
        [](health_atom) { return caf::ok_atom::value; },
        [](pressure_changed&) {},
        [](run_atom) {},
    };
  });
}

struct front_fixture : test::test_system {
  std::shared_ptr<component_directory> dir = std::make_shared<component_directory>();
  std::shared_ptr<std::vector<seen_request>> seen = std::make_shared<std::vector<seen_request>>();
  int received = 0;
  std::vector<std::string> answered; ///< "ok" or the error's code, in order
  front_door_actor front;
  gateway_actor gw;

  explicit front_fixture(bool gateway_answers = true, std::shared_ptr<remote_gate> gate = nullptr,
                         std::shared_ptr<detail::memory_account> memory = nullptr) {
    gw = spawn_fake_gateway(sys, seen, gateway_answers);
    dir->declare(gateway_shard_name(0), "");
    dir->set_running(gateway_shard_name(0), caf::actor_cast<caf::actor>(gw));
    front = keep(
        spawn_front_door(sys, dir, 5s,
                         front_door_accounting{[this] { ++received; },
                                               [this](const db_result* r, const caf::error* e) {
                                                 answered.push_back(r ? "ok" : "error");
                                                 (void)e;
                                               }},
                         front_door_remote{std::move(gate), std::move(memory)}));
    run();
  }

  ~front_fixture() {
    caf::anon_send_exit(gw, caf::exit_reason::kill);
    run();
  }

  /// Sends `req` as a remote caller does (a request, no sink); its answer, once it comes, lands in
  /// the result.
  std::shared_ptr<std::optional<caf::expected<db_result>>> send_remote(gateway_request req) {
    auto out = std::make_shared<std::optional<caf::expected<db_result>>>();
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(front, caf::infinite, req)
          .then([=](db_result& r) { *out = std::move(r); },
                [=](caf::error& e) { *out = std::move(e); });
    });
    run();
    return out;
  }

  /// Sends `req` with a sink; the sink's answers (and whether it counted) land in `got`.
  struct sink_result {
    std::vector<caf::expected<db_result>> got;
  };
  std::shared_ptr<sink_result> send_with_sink(gateway_request req, bool count = true) {
    auto out = std::make_shared<sink_result>();
    req.sink.fn = std::make_shared<front_answer_fn>(
        [out, count](caf::expected<db_result>& a, const std::function<void()>& count_it) {
          if (count)
            count_it();
          out->got.push_back(a);
        });
    caf::anon_send(front, std::move(req));
    run();
    return out;
  }
};

gateway_request request(caf::timespan timeout = 0s) {
  gateway_request r;
  r.query.statement = "s";
  r.timeout = timeout;
  r.query.deadline = 123h; // a caller's clock means nothing here: ignored
  return r;
}

} // namespace

TEST_CASE("the front door sets the one deadline from the node's default and the caller's timeout",
          "[front_door]") {
  front_fixture f;
  auto t0 = f.now();
  f.send_with_sink(request());
  f.send_with_sink(request(200ms));
  f.send_with_sink(request(1h)); // longer than the default: the default stays
  REQUIRE(f.seen->size() == 3);
  CHECK((*f.seen)[0].deadline == t0 + 5s);
  CHECK((*f.seen)[1].deadline == t0 + 200ms);
  CHECK((*f.seen)[2].deadline == t0 + 5s);
  CHECK_FALSE((*f.seen)[0].had_sink); // the sink stays at the front door
  CHECK(requested_timeout(0) == 0s);
  CHECK(requested_timeout(-5) == 0s);
  CHECK(requested_timeout(std::numeric_limits<int64_t>::max()) == 0s);
  CHECK(requested_timeout(250) == 250ms);
}

TEST_CASE("an in-process request is answered once through its sink and counted when the sink "
          "says so; a remote one is counted on arrival and answered by reply",
          "[front_door]") {
  front_fixture f;
  auto counted = f.send_with_sink(request());
  REQUIRE(counted->got.size() == 1);
  REQUIRE(counted->got[0]);
  CHECK(counted->got[0]->rows_affected == 7);
  CHECK(f.received == 0); // the in-process caller counted its own arrival
  CHECK(f.answered == std::vector<std::string>{"ok"});
  // A sink whose caller already got another answer does not count this one.
  auto superseded = f.send_with_sink(request(), false);
  REQUIRE(superseded->got.size() == 1);
  CHECK(f.answered.size() == 1);
  // Remote: counted when it arrives and when it is answered.
  auto r = f.ask<db_result>(f.front, request());
  REQUIRE(r);
  CHECK(f.received == 1);
  CHECK(f.answered.size() == 2);
}

TEST_CASE("a gateway that dies under a request answers it at once; a missing one too",
          "[front_door]") {
  front_fixture f{false};
  auto pending = f.send_with_sink(request());
  CHECK(pending->got.empty());
  caf::anon_send_exit(f.gw, caf::exit_reason::kill);
  f.run();
  REQUIRE(pending->got.size() == 1);
  CHECK(is(pending->got[0].error(), errc::component_unavailable));
  f.dir->set_exited(gateway_shard_name(0), component_state::restarting, "killed");
  auto missing = f.send_with_sink(request());
  REQUIRE(missing->got.size() == 1);
  CHECK(is(missing->got[0].error(), errc::component_unavailable));
  CHECK(f.answered.size() == 2);
}

TEST_CASE("a gateway that never answers: the front door answers at the deadline plus the grace",
          "[front_door]") {
  front_fixture f{false};
  auto pending = f.send_with_sink(request(300ms));
  f.advance(300ms + path_grace - 1ms);
  CHECK(pending->got.empty());
  f.advance(1ms);
  REQUIRE(pending->got.size() == 1);
  CHECK(pending->got[0].error() == caf::sec::request_timeout);
}

TEST_CASE("a client's requests always reach the same gateway shard; an in-process caller's the "
          "shard of its front door",
          "[front_door]") {
  test::test_system t;
  auto dir = std::make_shared<component_directory>();
  std::vector<std::shared_ptr<std::vector<seen_request>>> seen;
  for (uint32_t i = 0; i < 4; ++i) {
    seen.push_back(std::make_shared<std::vector<seen_request>>());
    dir->declare(gateway_shard_name(i), "");
    dir->set_running(gateway_shard_name(i),
                     caf::actor_cast<caf::actor>(t.keep(spawn_fake_gateway(t.sys, seen[i], true))));
  }
  std::vector<front_door_actor> fronts;
  for (uint32_t i = 0; i < 4; ++i)
    fronts.push_back(t.keep(spawn_front_door(
        t.sys, dir, 5s, front_door_accounting{[] {}, [](const db_result*, const caf::error*) {}},
        {}, front_door_route{i, 4})));
  auto count = [&](uint32_t shard) { return seen[shard]->size(); };
  // 20 clients, each sending through every front door: each client's 4 requests in one shard.
  for (int c = 0; c < 20; ++c) {
    std::vector<size_t> before;
    for (uint32_t s = 0; s < 4; ++s)
      before.push_back(count(s));
    for (auto& f : fronts) {
      auto req = request();
      req.client = "client " + std::to_string(c);
      REQUIRE(t.ask<db_result>(f, req));
    }
    int shards_used = 0;
    for (uint32_t s = 0; s < 4; ++s)
      if (count(s) != before[s]) {
        ++shards_used;
        CHECK(count(s) - before[s] == 4);
      }
    CHECK(shards_used == 1);
  }
  size_t total = 0;
  for (uint32_t s = 0; s < 4; ++s) {
    CHECK(count(s) > 0); // 20 clients spread over all 4
    total += count(s);
  }
  CHECK(total == 80);
  // No client (the facade, actor code): front door i's gateway i.
  for (uint32_t i = 0; i < 4; ++i) {
    auto before = count(i);
    REQUIRE(t.ask<db_result>(fronts[i], request()));
    CHECK(count(i) == before + 1);
  }
}

TEST_CASE("one timer stands behind every pending request, not one each", "[front_door]") {
  // CAF 0.17's clock wakes its thread for every timer set or cancelled (detail/deadline_set.hpp):
  // 100 requests with the same budget, arriving over 99 ms, leave one timer on the clock.
  front_fixture f{false};
  auto before = f.sched.clock().schedule().size();
  std::vector<std::shared_ptr<front_fixture::sink_result>> pending;
  for (int i = 0; i < 100; ++i) {
    pending.push_back(f.send_with_sink(request(300ms)));
    f.advance(1ms);
  }
  CHECK(f.sched.clock().schedule().size() == before + 1);
  // Each still gets its answer at its own deadline plus the grace: the first at 300 ms + grace
  // after it came, the last 99 ms later.
  f.advance(300ms + path_grace - 100ms);
  CHECK(pending.front()->got.size() == 1);
  CHECK(pending[1]->got.empty());
  f.advance(98ms);
  CHECK(pending[98]->got.size() == 1);
  CHECK(pending.back()->got.empty());
  f.advance(1ms);
  for (auto& p : pending) {
    REQUIRE(p->got.size() == 1);
    CHECK(p->got[0].error() == caf::sec::request_timeout);
  }
  CHECK(f.sched.clock().schedule().size() == before); // nothing pending: no timer
}

TEST_CASE("when the engine stops, pending requests are answered and later ones refused at once",
          "[front_door]") {
  front_fixture f{false};
  auto pending = f.send_with_sink(request());
  caf::anon_send_exit(f.front, caf::exit_reason::user_shutdown);
  f.run();
  REQUIRE(pending->got.size() == 1);
  CHECK(is(pending->got[0].error(), errc::shutting_down));
  auto later = f.send_with_sink(request());
  REQUIRE(later->got.size() == 1); // still there to say so: nothing is dropped unanswered
  CHECK(is(later->got[0].error(), errc::shutting_down));
  auto remote = f.ask<db_result>(f.front, request());
  REQUIRE_FALSE(remote);
  CHECK(is(remote.error(), errc::shutting_down));
}

TEST_CASE("remote requests are bounded, charged to the memory budget, and drained",
          "[front_door][remote]") {
  auto gate = std::make_shared<remote_gate>(2);
  detail::memory_account_options o;
  o.budget_bytes = 1 << 20;
  auto memory = std::make_shared<detail::memory_account>(o);
  auto remote_bytes = [&] {
    return memory->snapshot().reserved[static_cast<size_t>(detail::memory_consumer::remote)];
  };
  front_fixture f{false, gate, memory};
  auto a = f.send_remote(request());
  auto b = f.send_remote(request());
  CHECK_FALSE(*a); // pending: the gateway does not answer
  CHECK(gate->pending() == 2);
  CHECK(remote_bytes() == 2 * remote_request_cost(request()));
  CHECK(remote_request_cost(request()) > sizeof(gateway_request));
  // The third is refused at once, whatever its budget; in-process callers are not counted.
  auto c = f.send_remote(request());
  REQUIRE(*c);
  CHECK(is(c->value().error(), errc::queue_full));
  f.send_with_sink(request());
  CHECK(f.seen->size() == 3);
  // Draining: new remote requests are refused, those pending go on.
  gate->drain();
  auto d = f.send_remote(request());
  REQUIRE(*d);
  CHECK(is(d->value().error(), errc::shutting_down));
  CHECK_FALSE(*a);
  CHECK_FALSE(gate->wait_idle(0ms));
  // Once answered (here: their gateway died), their places and bytes are given back.
  caf::anon_send_exit(f.gw, caf::exit_reason::kill);
  f.run();
  REQUIRE(*a);
  CHECK(is(a->value().error(), errc::component_unavailable));
  CHECK(gate->pending() == 0);
  CHECK(gate->wait_idle(0ms));
  CHECK(remote_bytes() == 0);
  CHECK(f.received == 4); // every remote request counted, and answered once
  CHECK(f.answered.size() == 5);
}

TEST_CASE("a remote request the memory budget has no room for is refused and gives its place back",
          "[front_door][remote]") {
  auto gate = std::make_shared<remote_gate>(8);
  detail::memory_account_options o;
  o.budget_bytes = 100; // less than one request's entry
  auto memory = std::make_shared<detail::memory_account>(o);
  front_fixture f{false, gate, memory};
  auto a = f.send_remote(request());
  REQUIRE(*a);
  CHECK(is(a->value().error(), errc::insufficient_memory));
  CHECK(gate->pending() == 0);
  CHECK(f.seen->empty()); // nothing reached the gateway
}
