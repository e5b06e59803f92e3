#include "actors/front_door.hpp"

#include "actors/clock.hpp"

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

  explicit front_fixture(bool gateway_answers = true) {
    gw = spawn_fake_gateway(sys, seen, gateway_answers);
    dir->declare("gateway", "");
    dir->set_running("gateway", caf::actor_cast<caf::actor>(gw));
    front = keep(
        spawn_front_door(sys, dir, 5s,
                         front_door_accounting{[this] { ++received; },
                                               [this](const db_result* r, const caf::error* e) {
                                                 answered.push_back(r ? "ok" : "error");
                                                 (void)e;
                                               }}));
    run();
  }

  ~front_fixture() {
    caf::anon_send_exit(gw, caf::exit_reason::kill);
    run();
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
  f.dir->set_exited("gateway", component_state::restarting, "killed");
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
