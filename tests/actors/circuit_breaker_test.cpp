#include "actors/circuit_breaker.hpp"
#include "actors/clock.hpp"

#include "support/cleanup_service.hpp"
#include "support/test_system.hpp"

#include <catch2/catch.hpp>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

/// A pool that answers as the test says, and remembers the deadlines it was given.
struct fake_pool {
  enum class mode {
    ok,
    fail,
    queue_full,
    slow_ok,
    running_timeout,
    long_running_timeout,
    stuck,
    conflict,
    invalid,
    busy,
    hang, ///< never answers
    held  ///< answers when the test delivers the promise it keeps in `held`
  };
  mode next = mode::ok;
  std::vector<caf::typed_response_promise<db_result>> held;
  caf::timespan held_pool_wait{0}; ///< the pool_wait of the answers a timeout_atom delivers
  std::vector<caf::timespan> deadlines;
  int calls = 0;
  caf::timespan last_connected{0}; ///< what get_atom reports
  int status_asks = 0;
};

connection_pool_actor spawn_fake_pool(caf::actor_system& sys, std::shared_ptr<fake_pool> fp) {
  return sys.spawn(
      [fp](connection_pool_actor::pointer self) -> connection_pool_actor::behavior_type {
        return {
            [=](db_call& c) -> caf::result<db_result> {
              ++fp->calls;
              fp->deadlines.push_back(c.deadline - self->clock().now().time_since_epoch());
              switch (fp->next) {
              case fake_pool::mode::ok:
              case fake_pool::mode::slow_ok:
                return db_result{};
              case fake_pool::mode::fail:
                return make_error(errc::backend_error, "boom");
              case fake_pool::mode::running_timeout:
                return make_error(errc::call_cancelled, std::string{"cancelled at its deadline"},
                                  int64_t{0});
              case fake_pool::mode::long_running_timeout: // ran 1.5 s before its deadline
                return make_error(errc::call_cancelled, std::string{"cancelled at its deadline"},
                                  int64_t{1500});
              case fake_pool::mode::stuck:
                return make_error(errc::backend_stuck, std::string{"no connection within 50 ms"});
              case fake_pool::mode::hang:
                return self->make_response_promise<db_result>();
              case fake_pool::mode::held:
                fp->held.push_back(self->make_response_promise<db_result>());
                return fp->held.back();
              case fake_pool::mode::conflict:
                return make_error(errc::conflict, std::string{"events_pkey"},
                                  std::string{"duplicate key"});
              case fake_pool::mode::invalid:
                return make_error(errc::invalid_data, int32_t{1}, std::string{"not a number"});
              case fake_pool::mode::busy:
                return make_error(errc::backend_busy, int64_t{1000},
                                  std::string{"database is locked"});
              case fake_pool::mode::queue_full:
                return make_error(errc::queue_full, int64_t{50}, std::string{"conservative"},
                                  std::string{"queue_full"});
              }
              return db_result{};
            },
            [fp](caf::get_atom) {
              ++fp->status_asks;
              pool_status s;
              s.last_connected = fp->last_connected;
              return s;
            },
            [](pressure_changed&) {},
            [](caf::tick_atom) { return caf::ok_atom::value; },
            // The test's cue to answer the held calls (a promise is delivered by its actor).
            [fp](caf::timeout_atom, uint64_t) {
              for (auto& rp : fp->held) {
                db_result r;
                r.pool_wait = fp->held_pool_wait;
                rp.deliver(std::move(r));
              }
              fp->held.clear();
            },
        };
      });
}

struct fixture : test::test_system {
  prometheus::Registry registry;
  circuit_breaker_metrics metrics{registry, "backend"};
  std::shared_ptr<component_directory> dir = std::make_shared<component_directory>();
  test::cleanup_service cleanup{*this, dir}; // runs the breaker's watch task
  std::shared_ptr<fake_pool> fp = std::make_shared<fake_pool>();
  circuit_breaker_config cfg;
  circuit_breaker_actor breaker;
  connection_pool_actor pool;

  fixture() {
    sched.advance_time(std::chrono::hours(1));
    cfg.core.window_size = 10;
    cfg.core.minimum_calls = 4;
    cfg.core.failure_rate_threshold = 0.5;
    cfg.core.open_wait = 1s;
    cfg.core.open_wait_max = 1s;
    cfg.core.jitter = 0;
    cfg.core.half_open_probes = 2;
    cfg.call_timeout = 200ms;
    // Longer than the open wait: the breaker's own probes (tested apart) stay out of the tests
    // of callers' probes.
    cfg.watch_interval = 5s;
  }

  /// bulwark_breaker_calls_total{outcome}.
  double calls(const char* outcome) {
    return metrics.calls->Add({{"breaker", "backend"}, {"outcome", outcome}}).Value();
  }

  double self_probes(const char* result) {
    return metrics.self_probes->Add({{"breaker", "backend"}, {"result", result}}).Value();
  }

  std::shared_ptr<circuit_breaker_memory> memory = std::make_shared<circuit_breaker_memory>();

  void start() {
    pool = keep(spawn_fake_pool(sys, fp));
    dir->declare("connection_pool", "");
    dir->set_running("connection_pool", caf::actor_cast<caf::actor>(pool));
    breaker = keep(spawn_circuit_breaker(sys, cfg, dir, &metrics, memory));
    run();
  }

  /// Kills the breaker and starts the next incarnation over the same memory, as its supervisor
  /// does.
  void restart() {
    caf::anon_send_exit(breaker, caf::exit_reason::kill);
    run();
    breaker = keep(spawn_circuit_breaker(sys, cfg, dir, &metrics, memory));
    run();
  }

  caf::expected<db_result> call() { return ask<db_result>(breaker, db_call{}); }

  /// Sends a call that may stay unanswered (run() returns); the errors it gets land in `out`.
  void send_call(std::shared_ptr<std::vector<caf::error>> out) {
    auto b = breaker;
    sys.spawn([b, out](caf::event_based_actor* self) {
      self->request(b, caf::infinite, db_call{})
          .then([](db_result&) {}, [out](caf::error& e) { out->push_back(e); });
    });
    run();
  }

  /// Opens the breaker: minimum_calls failures in a row (the pool keeps failing after).
  void trip() {
    fp->next = fake_pool::mode::fail;
    for (int i = 0; i < 4; ++i)
      call();
  }

  breaker_status status() {
    auto s = ask<breaker_status>(breaker, caf::get_atom::value);
    REQUIRE(s);
    return *s;
  }
};

} // namespace

TEST_CASE_METHOD(fixture,
                 "the breaker opens at the failure rate and rejects with the remaining wait",
                 "[breaker]") {
  start();
  fp->next = fake_pool::mode::fail;
  for (int i = 0; i < 3; ++i)
    CHECK(is(call().error(), errc::backend_error));
  CHECK(status().state == "closed"); // below minimum_calls
  CHECK(is(call().error(), errc::backend_error));
  CHECK(status().state == "open");
  CHECK(metrics.state->Value() == 1);
  advance(400ms);
  auto r = call();
  REQUIRE(is(r.error(), errc::circuit_open));
  CHECK(r.error().context().get_as<int64_t>(0) == 600); // ms of open wait left
  CHECK(fp->calls == 4);                                // rejected calls never reach the pool
  CHECK_THAT(status().last_transition, Catch::Contains("failure rate 1.00 >= 0.50"));
}

TEST_CASE_METHOD(fixture,
                 "a call slow only by its wait for a connection is not a slow call; one slow on "
                 "the backend is",
                 "[breaker]") {
  cfg.call_timeout = 5s;
  cfg.core.slow_call_duration = 1s;
  cfg.core.slow_call_rate_threshold = 0.5;
  start();
  fp->next = fake_pool::mode::held;
  // Four calls, each answered 1.5 s after it was made, `queued` of it in the pool's queue.
  auto slow_calls = [&](caf::timespan queued) {
    auto answered = std::make_shared<int>(0);
    for (int i = 0; i < 4; ++i) {
      sys.spawn([=](caf::event_based_actor* self) {
        self->request(breaker, caf::infinite, db_call{}).then([=](db_result&) { ++*answered; });
      });
      run();
      REQUIRE(fp->held.size() == 1);
      advance(1500ms);
      fp->held_pool_wait = queued;
      caf::anon_send(pool, caf::timeout_atom::value, uint64_t{0});
      run();
    }
    return *answered;
  };
  CHECK(slow_calls(1400ms) == 4); // 100 ms on the backend each: the node's queue, not the backend
  CHECK(status().state == "closed");
  CHECK(slow_calls(0ms) == 4); // 1.5 s on the backend each: slow calls, the rate reaches 0.5
  CHECK(status().state == "open");
  CHECK_THAT(status().last_transition, Catch::Contains("slow-call rate"));
}

TEST_CASE_METHOD(fixture, "sheds by the pool never open the breaker", "[breaker]") {
  start();
  fp->next = fake_pool::mode::queue_full;
  for (int i = 0; i < 20; ++i)
    CHECK(is(call().error(), errc::queue_full));
  auto s = status();
  CHECK(s.state == "closed");
  CHECK(s.ignored == 20);
  CHECK(s.window_calls == 0);
}

TEST_CASE_METHOD(fixture, "a caller's constraint violations and bad data never open the breaker",
                 "[breaker]") {
  start();
  for (int i = 0; i < 500; ++i) {
    fp->next = i % 2 == 0 ? fake_pool::mode::conflict : fake_pool::mode::invalid;
    auto r = call();
    CHECK((is(r.error(), errc::conflict) || is(r.error(), errc::invalid_data)));
  }
  auto s = status();
  CHECK(s.state == "closed");
  CHECK(s.caller_errors == 500);
  CHECK(s.failures == 0);
  CHECK(s.window_calls == 0);
  fp->next = fake_pool::mode::ok;
  CHECK(call());
  CHECK(calls("caller_error") == 500);
}

TEST_CASE_METHOD(fixture,
                 "contention counts against the breaker only once it is all that came back for "
                 "the grace",
                 "[breaker]") {
  cfg.contention_grace = 1s;
  start();
  fp->next = fake_pool::mode::busy;
  // Inside the grace: retryable answers, nothing in the window.
  for (int i = 0; i < 10; ++i) {
    CHECK(is(call().error(), errc::backend_busy));
    advance(90ms);
  }
  CHECK(status().window_calls == 0);
  CHECK(status().contention == 10);
  // A success ends the run of contention: the grace starts again.
  fp->next = fake_pool::mode::ok;
  CHECK(call());
  fp->next = fake_pool::mode::busy;
  for (int i = 0; i < 10; ++i) {
    CHECK(is(call().error(), errc::backend_busy));
    advance(90ms);
  }
  CHECK(status().failures == 0);
  CHECK(status().state == "closed");
  // Nothing but contention for a whole grace: each further answer is a failure, and they open it.
  advance(200ms);
  for (int i = 0; i < 3; ++i) // with the one success: 3 failures in 4 calls
    CHECK(is(call().error(), errc::backend_busy));
  auto s = status();
  CHECK(s.failures == 3);
  CHECK(s.contention == 20);
  CHECK(s.state == "open");
}

TEST_CASE_METHOD(fixture, "contention after a long quiet gap starts a new grace", "[breaker]") {
  cfg.contention_grace = 1s;
  start();
  fp->next = fake_pool::mode::busy;
  CHECK(is(call().error(), errc::backend_busy));
  advance(10s); // no traffic at all: the next contention is not "persisting"
  for (int i = 0; i < 5; ++i)
    CHECK(is(call().error(), errc::backend_busy));
  CHECK(status().failures == 0);
  CHECK(status().contention == 6);
}

TEST_CASE_METHOD(fixture, "after the open wait probes that succeed close the breaker",
                 "[breaker]") {
  start();
  trip();
  REQUIRE(status().state == "open");
  advance(1s);
  fp->next = fake_pool::mode::ok;
  CHECK(call());
  CHECK(status().state == "half_open");
  CHECK(call());
  auto s = status();
  CHECK(s.state == "closed");
  CHECK(s.window_calls == 0); // counters reset on close
  CHECK(metrics.transitions->Add({{"breaker", "backend"}, {"to", "closed"}}).Value() == 1);
}

TEST_CASE_METHOD(fixture, "every call is bounded by the call timeout", "[breaker]") {
  start();
  call();
  db_call c;
  c.deadline = now() + 50ms; // a tighter deadline of the caller's is kept
  ask<db_result>(breaker, c);
  REQUIRE(fp->deadlines.size() == 2);
  CHECK(fp->deadlines[0] == 200ms);
  CHECK(fp->deadlines[1] == 50ms);
}

TEST_CASE_METHOD(fixture, "operators can force the breaker open or closed and reset it",
                 "[breaker]") {
  start();
  auto s = ask<breaker_status>(breaker, breaker_command::force_open);
  REQUIRE(s);
  CHECK(s->state == "open");
  CHECK(s->forced);
  CHECK(is(call().error(), errc::circuit_open));
  ask<breaker_status>(breaker, breaker_command::force_closed);
  fp->next = fake_pool::mode::fail;
  for (int i = 0; i < 10; ++i)
    call();
  CHECK(status().state == "closed"); // forced closed ignores outcomes
  s = ask<breaker_status>(breaker, breaker_command::reset);
  CHECK(s->state == "closed");
  CHECK_FALSE(s->forced);
}

TEST_CASE_METHOD(fixture, "an open breaker probes as soon as the pool has connected again",
                 "[breaker]") {
  cfg.core.open_wait = 30s;
  cfg.core.open_wait_max = 30s;
  cfg.watch_interval = 250ms;
  start();
  trip();
  REQUIRE(status().state == "open");
  // No news from the pool: the wait stands.
  advance(1s, 4);
  CHECK(fp->status_asks == 4);
  CHECK(is(call().error(), errc::circuit_open));
  // The pool opens a connection: within one watch interval the next call is a probe.
  fp->last_connected = now();
  fp->next = fake_pool::mode::ok;
  advance(250ms);
  CHECK(call());
  CHECK(call());
  CHECK(status().state == "closed");
  // Closed: the watch stops.
  auto asks = fp->status_asks;
  advance(2s, 8);
  CHECK(fp->status_asks == asks);
}

TEST_CASE_METHOD(fixture, "a forced-open breaker does not watch the pool", "[breaker]") {
  start();
  fp->last_connected = now() + 1h;
  ask<breaker_status>(breaker, breaker_command::force_open);
  advance(2s, 8);
  CHECK(fp->status_asks == 0);
  CHECK(is(call().error(), errc::circuit_open));
}

TEST_CASE_METHOD(fixture,
                 "a call that ran out of the caller's shorter budget does not count against the "
                 "backend",
                 "[breaker]") {
  start();
  fp->next = fake_pool::mode::running_timeout;
  // The caller allows 50 ms, less than the breaker's 200 ms call timeout: its budget ran out.
  for (int i = 0; i < 10; ++i) {
    db_call c;
    c.deadline = now() + 50ms;
    ask<db_result>(breaker, c);
  }
  CHECK(status().state == "closed");
  CHECK(status().ignored == 10);
  // Under the breaker's own timeout the same answers are failures.
  for (int i = 0; i < 4; ++i)
    call();
  CHECK(status().state == "open");
}

TEST_CASE_METHOD(fixture,
                 "no caller's deadline hides a slow or hung backend: long runs and stuck "
                 "timeouts count",
                 "[breaker]") {
  cfg.call_timeout = 5s;
  start();
  // Each caller allows 2 s, less than the call timeout; the call ran 1.5 s on the backend,
  // past the slow-call duration (1 s): a slow backend, whoever's deadline cut it.
  fp->next = fake_pool::mode::long_running_timeout;
  for (int i = 0; i < 2; ++i) {
    db_call c;
    c.deadline = now() + 2s;
    CHECK(is(ask<db_result>(breaker, c).error(), errc::call_cancelled));
  }
  CHECK(status().failures == 2);
  // A pool whose backend does not return cancelled work: timeouts of 50 ms callers count too.
  fp->next = fake_pool::mode::stuck;
  for (int i = 0; i < 2; ++i) {
    db_call c;
    c.deadline = now() + 50ms;
    CHECK(is(ask<db_result>(breaker, c).error(), errc::backend_stuck));
  }
  CHECK(status().failures == 4);
  CHECK(status().state == "open");
}

TEST_CASE_METHOD(fixture, "a breaker restarted during an outage stays open", "[breaker]") {
  start();
  trip();
  REQUIRE(status().state == "open");
  restart();
  CHECK(status().state == "open");
  CHECK(status().failures == 4);
  for (int i = 0; i < 10; ++i)
    CHECK(is(call().error(), errc::circuit_open));
  CHECK(fp->calls == 4); // nothing reached the dead backend
  // Its open wait runs on: after it the probes decide, as before the restart.
  advance(1s);
  fp->next = fake_pool::mode::ok;
  CHECK(call());
  CHECK(call());
  CHECK(status().state == "closed");
}

TEST_CASE_METHOD(fixture, "a breaker restarted while half-open probes afresh", "[breaker]") {
  start();
  trip();
  advance(1s);
  fp->next = fake_pool::mode::hang;
  auto out = std::make_shared<std::vector<caf::error>>();
  send_call(out);
  REQUIRE(status().state == "half_open"); // one probe in flight, never to report
  restart();
  CHECK(status().state == "open");
  fp->next = fake_pool::mode::ok;
  CHECK(call()); // the wait is over: probes again, with every slot free
  CHECK(call());
  CHECK(status().state == "closed");
}

TEST_CASE_METHOD(fixture, "calls in flight when the breaker dies are answered at once",
                 "[breaker]") {
  start();
  fp->next = fake_pool::mode::hang;
  auto out = std::make_shared<std::vector<caf::error>>();
  for (int i = 0; i < 3; ++i)
    send_call(out);
  REQUIRE(out->empty());
  caf::anon_send_exit(breaker, caf::exit_reason::kill);
  run(); // no time passes: the answers come from the dying breaker itself
  REQUIRE(out->size() == 3);
  for (auto& e : *out) {
    CHECK(is(e, errc::component_unavailable));
    CHECK_THAT(describe(e), Catch::Contains("circuit_breaker"));
  }
}

TEST_CASE_METHOD(fixture,
                 "a call the pool never answers is a failure on the first watch tick a grace "
                 "after its deadline, and its caller is answered then",
                 "[breaker]") {
  cfg.watch_interval = 250ms;
  start();
  fp->next = fake_pool::mode::hang;
  auto out = std::make_shared<std::vector<caf::error>>();
  send_call(out);
  // The call timeout is 200 ms; the path's grace comes on top. No timer per call: the ticks
  // before that moment leave it alone, the first one after settles it.
  auto ticks_before = (200ms + path_grace) / 250ms;
  advance(250ms * ticks_before, static_cast<int>(ticks_before));
  CHECK(out->empty());
  CHECK(calls("failure") == 0);
  advance(250ms);
  REQUIRE(out->size() == 1);
  CHECK((*out)[0] == caf::sec::request_timeout);
  CHECK(calls("failure") == 1);
  CHECK(status().window_failures == 1);
}

TEST_CASE_METHOD(fixture,
                 "an idle open breaker probes by itself when its wait ends and closes once the "
                 "backend is back",
                 "[breaker]") {
  cfg.watch_interval = 250ms;
  start();
  trip();
  REQUIRE(status().state == "open");
  fp->next = fake_pool::mode::ok;
  advance(750ms, 3); // within the wait: nothing is sent
  CHECK(fp->calls == 4);
  CHECK(metrics.state->Value() == 1);
  advance(250ms); // the wait ends with nobody calling: two probes of its own, and closed
  CHECK(fp->calls == 6);
  CHECK(self_probes("success") == 2);
  CHECK(status().state == "closed");
  CHECK(metrics.state->Value() == 0);   // what CircuitBreakerOpen watches: it resolves
  CHECK(fp->deadlines.back() == 200ms); // under the call timeout
  advance(5s, 20);                      // closed: no more probes
  CHECK(fp->calls == 6);
}

TEST_CASE_METHOD(fixture,
                 "a self-probe that fails opens the breaker again for the next, longer wait",
                 "[breaker]") {
  cfg.watch_interval = 250ms;
  cfg.core.open_wait_max = 10s;
  cfg.core.open_wait_multiplier = 2;
  start();
  trip();
  advance(1s, 4);
  CHECK(fp->calls == 5); // one probe, failed
  CHECK(self_probes("failure") == 1);
  auto s = status();
  CHECK(s.state == "open");
  CHECK(s.consecutive_opens == 2);
  CHECK(s.open_remaining == 2s);
  advance(1750ms, 7); // the second wait is 2 s: no probe within it
  CHECK(fp->calls == 5);
  fp->next = fake_pool::mode::ok;
  advance(250ms);
  CHECK(fp->calls == 7);
  CHECK(status().state == "closed");
}

TEST_CASE_METHOD(fixture, "a hung self-probe is a failure at the call timeout", "[breaker]") {
  cfg.watch_interval = 250ms;
  start();
  trip();
  fp->next = fake_pool::mode::hang;
  advance(1s, 4);
  REQUIRE(status().state == "half_open");
  advance(1200ms, 6); // call timeout + the pool's grace: no answer is a broken path
  CHECK(self_probes("failure") == 1);
  CHECK(status().state == "open");
}

TEST_CASE_METHOD(fixture, "with traffic, callers' requests are the probes", "[breaker]") {
  cfg.watch_interval = 250ms;
  start();
  trip();
  fp->next = fake_pool::mode::ok;
  for (int i = 0; i < 10; ++i) { // a call every 100 ms, rejected while the wait runs
    CHECK(is(call().error(), errc::circuit_open));
    advance(100ms);
  }
  CHECK(call()); // the first call after the wait probes
  CHECK(call());
  CHECK(status().state == "closed");
  CHECK(self_probes("success") == 0);
  CHECK(fp->calls == 6);
}
