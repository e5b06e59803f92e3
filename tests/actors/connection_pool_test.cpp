#include "actors/connection_pool.hpp"

#include "support/cleanup_service.hpp"
#include "support/test_system.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <deque>
#include <optional>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

/// What the fake backend does: a fault injector the real backends cannot be asked to be.
struct fake_backend {
  enum class mode { ok, park, fail, break_connection };
  mode calls = mode::ok;
  int connects = 0;
  int failing_connects = 0;    ///< the next N connects fail
  std::atomic<int> cancels{0}; // incremented by the pool's cancel runner (inline here)
  int executed = 0;
  int received = 0; ///< calls that reached a thread connection (run, waiting there, or refused)
  int revoked = 0;  ///< calls a thread connection refused because the pool took them back
  std::vector<std::pair<caf::actor_addr, caf::typed_response_promise<db_result>>> parked;
  std::vector<caf::actor> connections;
  /// The scheduler lane's fake: how many it opened and ran, and whether it gives calls back.
  int lane_connects = 0;
  int lane_executed = 0;
  bool lane_gives_back = false;
  bool lane_dies = false; ///< the lane's actor goes down in the middle of a call
  int pings_break = 0;    ///< the next N pings find their connection broken: it goes down
  /// The next N calls reach a connection that is "gone" before its down message: it answers
  /// them, and every later call, as CAF answers a call left in the mailbox of an actor that went
  /// down (request_receiver_down, never claimed), and quits only on ok_atom (release_on). On a
  /// real scheduler the connection's thread sends the down message after bouncing its mailbox,
  /// and the pool may act on the bounce first; the test scheduler always delivers the down
  /// message first, so this fake produces the other order on demand.
  int calls_bounce = 0;
  int lane_failing_connects = 0;
};

/// The fake also takes ok_atom: "answer your parked calls now" (promises are delivered from
/// inside their actor).
using fake_connection_actor = connection_actor::extend<caf::reacts_to<caf::ok_atom>>;

/// A fake connection runs one call at a time, as a real one does (its thread is blocked in the
/// backend): calls that come while one is parked wait in order and start when it ends. Each
/// call is claimed when it starts, so a call the pool sent ahead and took back never runs.
struct fake_connection_state {
  bool running = false;    ///< a parked call holds the connection
  bool bouncing = false;   ///< gone, as far as its calls can tell (fake_backend::calls_bounce)
  bool owner_gone = false; ///< the pool is gone: quit once the calls already here are done
  std::deque<std::pair<db_call, caf::typed_response_promise<db_result>>> waiting;
  std::vector<caf::typed_response_promise<db_result>> parked;
  /// Ends the parked call as cancelled, then runs what waited (set by the behavior). Kept here,
  /// not in the down handler's captures: the state goes when the actor ends, and with it the
  /// references to the handle and the fake backend (which holds the actor).
  std::function<void()> cancel_and_drain;
};

/// `lane`: the fake of the scheduler lane (it answers as the real one does when it gives a call
/// back: slice_over, having kept nothing).
connection_spawner fake_spawner(std::shared_ptr<fake_backend> fb, bool lane = false) {
  return [fb, lane](caf::actor_system& sys, std::shared_ptr<connection_handle> control,
                    caf::actor owner) -> connection_actor {
    auto& connects = lane ? fb->lane_connects : fb->connects;
    auto& failing = lane ? fb->lane_failing_connects : fb->failing_connects;
    ++connects;
    bool fail_connect = failing > 0;
    if (fail_connect)
      --failing;
    control->set_canceller([fb] { ++fb->cancels; });
    using self_ptr = fake_connection_actor::stateful_pointer<fake_connection_state>;
    auto h = sys.spawn([fb, fail_connect, owner, control,
                        lane](self_ptr self) -> fake_connection_actor::behavior_type {
      self->monitor(owner);
      if (fail_connect)
        self->quit(make_error(errc::backend_unavailable, "connection refused"));
      // Starts `call`: its answer, or nothing when it parks (then `rp` is kept).
      auto run = [=](db_call& call,
                     caf::typed_response_promise<db_result> rp) -> std::optional<caf::error> {
        if (!control->claim(call.id)) {
          ++fb->revoked;
          return make_error(errc::call_revoked, std::string{"taken back"});
        }
        if (lane) {
          ++fb->lane_executed;
          if (fb->lane_dies) { // goes down with the call unanswered (its promise dropped)
            self->quit(make_error(errc::backend_unavailable, "lane gone"));
            return std::nullopt;
          }
          if (fb->lane_gives_back)
            return make_error(errc::slice_over, std::string{"ran past its slice"});
          db_result r;
          r.columns = {"lane"};
          r.rows = {{db_value::of(call.statement)}};
          rp.deliver(std::move(r));
          return std::nullopt;
        }
        ++fb->executed;
        switch (fb->calls) {
        case fake_backend::mode::ok: {
          db_result r;
          r.columns = {"statement"};
          r.rows = {{db_value::of(call.statement)}};
          rp.deliver(std::move(r));
          return std::nullopt;
        }
        case fake_backend::mode::park:
          if (self->state.owner_gone) // it would run to no one: ends as if cancelled at once
            return make_error(errc::deadline_exceeded, std::string{"cancelled"});
          control->begin(call.id); // running, so a cancel naming it reaches it
          self->state.running = true;
          self->state.parked.push_back(rp);
          fb->parked.emplace_back(self->address(), rp);
          return std::nullopt;
        case fake_backend::mode::fail:
          return make_error(errc::backend_error, "relation does not exist");
        case fake_backend::mode::break_connection:
          self->quit(make_error(errc::backend_unavailable, "server closed the connection"));
          return make_error(errc::backend_unavailable, "server closed the connection");
        }
        return make_error(errc::backend_error);
      };
      // Runs the calls that waited, in order, until one parks. A real connection's thread sees
      // its owner gone only after the calls that came before (blocked in one, it reads its
      // mailbox in order).
      auto drain = [=] {
        while (!self->state.running && !self->state.waiting.empty()) {
          auto [call, rp] = std::move(self->state.waiting.front());
          self->state.waiting.pop_front();
          if (auto err = run(call, rp))
            rp.deliver(std::move(*err));
        }
        if (self->state.owner_gone && !self->state.running)
          self->quit();
      };
      self->state.cancel_and_drain = [=] {
        // The pool cancels what runs when it stops: the parked call returns (to no one).
        if (self->state.running) {
          control->end();
          self->state.running = false;
          for (auto& rp : self->state.parked)
            rp.deliver(make_error(errc::deadline_exceeded, std::string{"cancelled"}));
          self->state.parked.clear();
        }
        drain();
      };
      self->set_down_handler([self](caf::down_msg&) {
        self->state.owner_gone = true;
        self->state.cancel_and_drain();
      });
      return {
          [=](db_call& call) -> caf::result<db_result> {
            if (!lane && fb->calls_bounce > 0) {
              --fb->calls_bounce;
              self->state.bouncing = true;
            }
            if (self->state.bouncing)
              return caf::make_error(caf::sec::request_receiver_down);
            if (!lane)
              ++fb->received;
            auto rp = self->make_response_promise<db_result>();
            if (self->state.running) {
              self->state.waiting.emplace_back(std::move(call), rp);
              return rp;
            }
            if (auto err = run(call, rp))
              rp.deliver(std::move(*err));
            return rp;
          },
          [=](caf::ping_atom) -> caf::result<caf::ok_atom> {
            if (fb->pings_break > 0 && !lane) {
              --fb->pings_break;
              self->quit(make_error(errc::backend_unavailable, "server closed the connection"));
              return make_error(errc::backend_unavailable, "server closed the connection");
            }
            return caf::ok_atom::value;
          },
          [=](caf::ok_atom) {
            if (self->state.bouncing)
              self->quit(make_error(errc::backend_unavailable, "server closed the connection"));
            if (!self->state.running)
              return;
            control->end();
            self->state.running = false;
            for (auto& rp : self->state.parked) {
              db_result r;
              r.columns = {"late"};
              rp.deliver(std::move(r));
            }
            self->state.parked.clear();
            drain();
          },
      };
    });
    if (!lane)
      fb->connections.push_back(caf::actor_cast<caf::actor>(h));
    return caf::actor_cast<connection_actor>(h);
  };
}

struct results {
  std::vector<caf::expected<db_result>> got;
};

struct fixture : test::test_system {
  prometheus::Registry registry;
  connection_pool_metrics metrics{registry};
  std::shared_ptr<component_directory> dir = std::make_shared<component_directory>();
  test::cleanup_service cleanup{*this, dir}; // runs the pool's maintenance task
  std::shared_ptr<fake_backend> fb = std::make_shared<fake_backend>();
  connection_pool_config cfg;
  connection_pool_actor pool;

  fixture() {
    sched.advance_time(std::chrono::hours(1));
    cfg.min_connections = 1;
    cfg.max_connections = 2;
    cfg.acquire_timeout = 1s;
    cfg.call_timeout = 5s;
    cfg.health_check_interval = 1s;
    cfg.idle_timeout = 10s;
    cfg.queue.max_waiters = 2;
  }

  /// `lane`: with a scheduler lane (the fake's).
  void start(bool lane = false) {
    // Cancels run inline: a detached helper would end on its own thread and touch the test
    // scheduler's clock, which is not thread-safe (the fake's cancel never blocks).
    pool = keep(spawn_connection_pool(
        sys, cfg, fake_spawner(fb), dir, &metrics, [](std::function<void()> job) { job(); },
        lane ? fake_spawner(fb, true) : connection_spawner{}));
    run();
  }

  /// A declared read, as the database sends one.
  db_call read(std::string name = "r") {
    auto c = call(std::move(name));
    c.read_only = true;
    return c;
  }

  db_call call(std::string name = "q", caf::timespan deadline_in = 0s) {
    db_call c;
    c.statement = std::move(name);
    c.sql = "SELECT 1";
    c.limit.max_rows = 10;
    c.limit.max_bytes = 1000;
    if (deadline_in.count() > 0)
      c.deadline = now() + deadline_in;
    return c;
  }

  /// Sends a call from its own client actor; its answer lands in `out` whenever it comes.
  void send(std::shared_ptr<results> out, db_call c) {
    auto p = pool;
    sys.spawn([out, p, c](caf::event_based_actor* self) {
      self->request(p, caf::infinite, c)
          .then([out](db_result& r) { out->got.emplace_back(std::move(r)); },
                [out](caf::error& e) { out->got.emplace_back(std::move(e)); });
    });
    run();
  }

  void release_parked() {
    for (auto& c : fb->connections)
      caf::anon_send(caf::actor_cast<fake_connection_actor>(c), caf::ok_atom::value);
    run();
    fb->parked.clear();
  }

  /// Ends the calls parked now (and only those: the calls that then take their connections
  /// park in turn and stay parked).
  void release_running() {
    auto n = fb->parked.size();
    for (auto& c : fb->connections)
      caf::anon_send(caf::actor_cast<fake_connection_actor>(c), caf::ok_atom::value);
    run();
    fb->parked.erase(fb->parked.begin(), fb->parked.begin() + static_cast<std::ptrdiff_t>(n));
  }

  pool_status status() {
    auto s = ask<pool_status>(pool, caf::get_atom::value);
    REQUIRE(s);
    return *s;
  }
};

bool has_code(const caf::expected<db_result>& x, errc code) {
  return !x && is(x.error(), code);
}

} // namespace

TEST_CASE_METHOD(fixture, "the pool opens its minimum and serves calls on it", "[pool]") {
  start();
  CHECK(fb->connects == 1);
  auto out = std::make_shared<results>();
  send(out, call("a"));
  send(out, call("b"));
  REQUIRE(out->got.size() == 2);
  REQUIRE(out->got[0]);
  CHECK(out->got[0]->rows[0][0] == db_value::of(std::string{"a"}));
  CHECK(fb->connects == 1); // sequential calls reuse the one connection
  CHECK(status().served == 2);
}

TEST_CASE_METHOD(fixture, "waiting calls open connections up to the maximum and never beyond",
                 "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.queue.max_waiters = 10;
  start();
  auto out = std::make_shared<results>();
  for (int i = 0; i < 6; ++i)
    send(out, call());
  CHECK(fb->connects == 2);
  auto s = status();
  CHECK(s.connections == 2);
  CHECK(s.busy == 2);
  CHECK(s.queue_length == 4);
  release_parked(); // two finish; two queued calls take their connections
  CHECK(out->got.size() == 2);
  CHECK(fb->executed == 4);
  CHECK(fb->connects == 2);
}

TEST_CASE_METHOD(fixture, "a full queue refuses with queue_full and a retry-after", "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.max_connections = 1;
  start();
  auto out = std::make_shared<results>();
  for (int i = 0; i < 4; ++i)
    send(out, call()); // one runs, two wait, the fourth is refused
  REQUIRE(out->got.size() == 1);
  REQUIRE(has_code(out->got[0], errc::queue_full));
  auto ctx = out->got[0].error().context();
  REQUIRE(ctx.match_element<int64_t>(0));
  CHECK(ctx.get_as<int64_t>(0) >= 10);
  CHECK(metrics.rejections->Add({{"strategy", "conservative"}}).Value() == 1);
  CHECK(status().rejected == 1);
}

TEST_CASE_METHOD(fixture, "a call that waits past its deadline leaves the queue with queue_timeout",
                 "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.max_connections = 1;
  start();
  auto out = std::make_shared<results>();
  send(out, call("runs", 10s));
  send(out, call("waits", 200ms));
  advance(199ms);
  CHECK(out->got.empty());
  advance(1ms);
  REQUIRE(out->got.size() == 1);
  REQUIRE(has_code(out->got[0], errc::queue_timeout));
  CHECK(metrics.acquire_timeouts->Value() == 1);
  CHECK(status().queue_length == 0);
}

TEST_CASE_METHOD(
    fixture, "a call that runs past its deadline is cancelled on the backend and answered at once",
    "[pool]") {
  fb->calls = fake_backend::mode::park;
  start();
  auto out = std::make_shared<results>();
  send(out, call("slow", 300ms));
  advance(300ms);
  REQUIRE(out->got.size() == 1);
  REQUIRE(has_code(out->got[0], errc::call_cancelled));
  CHECK(fb->cancels.load() == 1); // the fixture's cancel runner runs it at once
  CHECK(metrics.call_timeouts->Value() == 1);
  CHECK(status().busy == 1); // until the cancelled statement returns
  release_parked();          // the late reply is dropped, the connection is reused
  CHECK(out->got.size() == 1);
  CHECK(status().idle == 1);
}

TEST_CASE_METHOD(fixture, "a broken connection fails its call and is replaced", "[pool]") {
  start();
  fb->calls = fake_backend::mode::break_connection;
  auto out = std::make_shared<results>();
  send(out, call());
  REQUIRE(out->got.size() == 1);
  CHECK(has_code(out->got[0], errc::backend_unavailable));
  CHECK(fb->connects == 2); // back to the minimum
  CHECK(metrics.replacements->Value() == 1);
  fb->calls = fake_backend::mode::ok;
  send(out, call());
  CHECK(out->got.back());
}

/// Ends the call parked on thread connection `k` (the k-th opened), and only that one; a
/// connection that bounces its calls (fake_backend::calls_bounce) goes down instead.
void release_on(fixture& f, size_t k) {
  caf::anon_send(caf::actor_cast<fake_connection_actor>(f.fb->connections.at(k)),
                 caf::ok_atom::value);
  f.run();
}

/// One call, sent to a connection that went down before taking it: it ran once, on the
/// replacement, and came back as served (no error, no backend failure).
void served_by_replacement(fixture& f, const results& out, const std::string& text) {
  REQUIRE(out.got.size() == 1);
  INFO((out.got[0] ? std::string{"served"} : to_string(out.got[0].error())));
  REQUIRE(out.got[0]);
  CHECK(out.got[0]->rows[0][0] == db_value::of(text));
  CHECK(f.fb->executed == 1);
  CHECK(f.fb->connects == 2);
  CHECK(f.metrics.replacements->Value() == 1);
}

TEST_CASE_METHOD(fixture,
                 "a call that meets a connection a health check just found broken runs on another",
                 "[pool]") {
  // The maintenance tick pings the idle connection and, before the connection has read its
  // mailbox, a call comes and is sent to it (idle, as far as the pool knows). The connection
  // fails the ping and goes down with the call in its mailbox (here the pool reads its down
  // message first; the next test has the bounce first). The call never ran: it must run on the
  // replacement, not come back as an error nor count as a backend failure.
  start();
  REQUIRE(fb->connects == 1);
  fb->pings_break = 1;
  caf::anon_send(pool, caf::tick_atom::value); // runs with the call below, before the connection
  auto out = std::make_shared<results>();
  send(out, call("after the ping"));
  served_by_replacement(*this, *out, "after the ping");
}

TEST_CASE_METHOD(fixture,
                 "a call that bounces off a gone connection before its down message waits for "
                 "the replacement, and nothing more is sent to the gone one",
                 "[pool]") {
  // The connection went down with the call in its mailbox; the bounce reaches the pool first.
  // The pool must take the connection for gone then: left in the pool as busy, it was sent the
  // waiting call ahead, which bounced again and was placed a second time while it still held
  // its place in the queue (refused as a duplicate: the client got 503 queue_full).
  start();
  REQUIRE(fb->connects == 1);
  fb->calls_bounce = 1;
  auto out = std::make_shared<results>();
  send(out, call("bounced"));
  served_by_replacement(*this, *out, "bounced");
  CHECK(metrics.ahead_taken_back->Value() == 0); // never sent to the gone connection
  CHECK(status().queue_length == 0);
  // Its down message, when it comes, finds nothing left to do.
  release_on(*this, 0);
  CHECK(metrics.replacements->Value() == 1);
  CHECK(fb->connects == 2);
  CHECK(status().idle == 1);
}

TEST_CASE_METHOD(fixture, "backend errors are answered and the connection is reused", "[pool]") {
  start();
  fb->calls = fake_backend::mode::fail;
  auto out = std::make_shared<results>();
  send(out, call());
  send(out, call());
  CHECK(has_code(out->got[0], errc::backend_error));
  CHECK(fb->connects == 1);
  CHECK(status().idle == 1);
}

TEST_CASE_METHOD(fixture, "failed connects back off exponentially instead of hammering the backend",
                 "[pool]") {
  fb->failing_connects = 3;
  cfg.connect_backoff_initial = 100ms;
  cfg.connect_backoff_max = 10s;
  cfg.connect_jitter = [] { return 0.0; }; // the jitter factor's low end, 0.5: exact waits
  start();
  CHECK(fb->connects == 1);
  advance(49ms);
  CHECK(fb->connects == 1);
  advance(1ms); // 100 ms x 0.5 after the 1st failure
  CHECK(fb->connects == 2);
  advance(99ms);
  CHECK(fb->connects == 2);
  advance(1ms); // 200 ms x 0.5 after the 2nd
  CHECK(fb->connects == 3);
  advance(199ms);
  CHECK(fb->connects == 3);
  advance(1ms);             // 400 ms x 0.5 after the 3rd
  CHECK(fb->connects == 4); // the 4th succeeds, nothing more is opened
  advance(2s, 20);
  CHECK(fb->connects == 4);
  CHECK(status().idle == 1);
  CHECK(metrics.connect_failures->Value() == 3);
}

TEST_CASE_METHOD(fixture, "idle connections above the minimum close after the idle timeout",
                 "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.queue.max_waiters = 10;
  start();
  auto out = std::make_shared<results>();
  send(out, call());
  send(out, call());
  CHECK(status().connections == 2);
  release_parked();
  advance(11s, 11);
  CHECK(status().connections == 1);
  CHECK(metrics.replacements->Value() == 1);
}

TEST_CASE_METHOD(fixture, "stopping the pool answers every waiting and running call", "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.max_connections = 1;
  start();
  auto out = std::make_shared<results>();
  send(out, call());
  send(out, call());
  caf::anon_send_exit(pool, caf::exit_reason::user_shutdown);
  run();
  REQUIRE(out->got.size() == 2);
  CHECK(has_code(out->got[0], errc::pool_closed));
  CHECK(has_code(out->got[1], errc::pool_closed));
}

/// One connection: call `a` runs there (parked) and `b` was sent ahead to it.
std::shared_ptr<results> one_running_one_ahead(fixture& f, db_call a, db_call b) {
  f.fb->calls = fake_backend::mode::park;
  f.cfg.max_connections = 1;
  f.start();
  auto out = std::make_shared<results>();
  f.send(out, std::move(a));
  f.send(out, std::move(b));
  REQUIRE(f.fb->received == 2);
  return out;
}

TEST_CASE_METHOD(fixture,
                 "a busy connection holds the next waiter ahead and starts it the moment its call "
                 "ends; the waiter keeps its place in the queue until then",
                 "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.max_connections = 1;
  bool ahead = GENERATE(true, false);
  cfg.call_ahead = ahead;
  start();
  auto out = std::make_shared<results>();
  send(out, call("a"));
  send(out, call("b"));
  send(out, call("c"));
  // a runs; b went to a's connection ahead (with the option), c waits in the pool.
  CHECK(fb->received == (ahead ? 2 : 1));
  CHECK(status().queue_length == 2); // b still counts as waiting, and under the queue's limit
  send(out, call("d"));              // max_waiters 2: refused either way
  REQUIRE(out->got.size() == 1);
  CHECK(has_code(out->got[0], errc::queue_full));
  release_running(); // a ends; b starts, and c goes ahead of it
  REQUIRE(out->got.size() == 2);
  CHECK(out->got[1]->columns == std::vector<std::string>{"late"});
  CHECK(fb->executed == 2);
  CHECK(fb->received == (ahead ? 3 : 2));
  CHECK(status().queue_length == 1);
  release_running();
  release_running();
  CHECK(out->got.size() == 4);
  CHECK(fb->executed == 3);
  CHECK(fb->revoked == 0);
  CHECK(status().queue_length == 0);
  CHECK(status().busy == 0);
  CHECK(status().served == 3);
  CHECK(metrics.ahead_started->Value() == (ahead ? 2 : 0)); // b and c
  CHECK(metrics.ahead_taken_back->Value() == 0);
}

TEST_CASE_METHOD(fixture,
                 "a connection that frees first takes the call sent ahead to a busy one, which "
                 "then never runs it",
                 "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.min_connections = 2;
  start();
  REQUIRE(status().idle == 2);
  auto out = std::make_shared<results>();
  send(out, call("a1"));
  send(out, call("a2"));
  send(out, call("b")); // ahead on the first busy connection: a1's, the first opened
  REQUIRE(fb->received == 3);
  REQUIRE(fb->parked.size() == 2);
  REQUIRE(fb->parked[0].first == fb->connections.at(0).address());
  size_t freed = 1;
  release_on(*this, freed); // a2's connection ends its call: it takes b from a1's
  REQUIRE(out->got.size() == 1);
  CHECK(fb->executed == 3);
  CHECK(fb->parked.back().first == fb->connections.at(freed).address());
  release_on(*this, 1 - freed); // the other ends its call and refuses b, taken back
  CHECK(fb->revoked == 1);
  CHECK(metrics.ahead_taken_back->Value() == 1);
  CHECK(metrics.ahead_started->Value() == 0);
  CHECK(fb->executed == 3);
  REQUIRE(out->got.size() == 2);
  CHECK(status().idle == 1);
  CHECK(status().busy == 1);
  release_on(*this, freed);
  REQUIRE(out->got.size() == 3);
  for (auto& x : out->got)
    CHECK(x);
  CHECK(status().idle == 2);
  CHECK(status().served == 3);
}

TEST_CASE_METHOD(fixture,
                 "a call sent ahead whose wait ends is taken back and answered queue_timeout; "
                 "its connection never runs it",
                 "[pool]") {
  auto out = one_running_one_ahead(*this, call("runs", 10s), call("write", 200ms));
  advance(200ms);
  REQUIRE(out->got.size() == 1);
  CHECK(has_code(out->got[0], errc::queue_timeout));
  CHECK(status().queue_length == 0);
  release_running();
  CHECK(fb->revoked == 1);
  CHECK(fb->executed == 1); // the write never ran after its caller was told it timed out
  CHECK(metrics.ahead_taken_back->Value() == 1);
  REQUIRE(out->got.size() == 2);
  CHECK(out->got[1]);
  CHECK(status().busy == 0);
}

TEST_CASE_METHOD(fixture,
                 "a call sent ahead to a connection that breaks waits on and runs on the "
                 "replacement",
                 "[pool]") {
  auto out = one_running_one_ahead(*this, call("a"), call("b"));
  caf::anon_send_exit(fb->connections.at(0), caf::exit_reason::kill);
  run();
  REQUIRE(out->got.size() == 1);
  CHECK(has_code(out->got[0], errc::backend_unavailable)); // a ran there
  CHECK(fb->connects == 2);
  CHECK(fb->executed == 2); // b, on the new connection
  CHECK(metrics.ahead_taken_back->Value() == 1);
  CHECK(status().busy == 1);
  CHECK(status().queue_length == 0);
  release_running();
  REQUIRE(out->got.size() == 2);
  CHECK(out->got[1]);
}

TEST_CASE_METHOD(fixture, "stopping the pool takes back a call sent ahead: it never runs",
                 "[pool]") {
  auto out = one_running_one_ahead(*this, call("a"), call("b"));
  caf::anon_send_exit(pool, caf::exit_reason::user_shutdown);
  run();
  REQUIRE(out->got.size() == 2);
  CHECK(has_code(out->got[0], errc::pool_closed));
  CHECK(has_code(out->got[1], errc::pool_closed));
  CHECK(fb->cancels == 1); // a's statement, cancelled on the server
  release_parked();
  CHECK(fb->executed == 1);
}

TEST_CASE_METHOD(fixture, "one timer stands behind every call's deadline, not one each", "[pool]") {
  // CAF 0.17's clock wakes its thread for every timer set (detail/deadline_set.hpp): 40 calls
  // arriving over 40 ms, one running and 39 waiting, add at most the deadlines' one timer and
  // the wait queue's own check to the clock.
  fb->calls = fake_backend::mode::park;
  cfg.max_connections = 1;
  cfg.queue.max_waiters = 100;
  start();
  auto before = sched.clock().schedule().size();
  auto out = std::make_shared<results>();
  for (int i = 0; i < 40; ++i) {
    send(out, call("q", 10s));
    advance(1ms);
  }
  CHECK(sched.clock().schedule().size() <= before + 2);
  // Every waiter is still answered by its own wait deadline (acquire_timeout, 1 s after it
  // came): the last one 1 s after the loop's last call.
  advance(1s - 40ms);
  auto early = out->got.size();
  CHECK(early < 39);
  advance(40ms);
  CHECK(out->got.size() == 39);
}

TEST_CASE_METHOD(fixture,
                 "a call queued behind connections a hung backend never returned is 'stuck'",
                 "[pool]") {
  fb->calls = fake_backend::mode::park; // the backend never answers, not even when cancelled
  cfg.max_connections = 1;
  start();
  auto out = std::make_shared<results>();
  send(out, call("hangs", 100ms));
  advance(100ms); // answered at its deadline, the connection stays busy
  send(out, call("waits", 10s));
  advance(1s); // acquire_timeout
  REQUIRE(out->got.size() == 2);
  CHECK(has_code(out->got[0], errc::call_cancelled));
  REQUIRE(has_code(out->got[1], errc::backend_stuck));
}

TEST_CASE_METHOD(fixture,
                 "a cancel unanswered for less than stuck_after is load, not a hung backend",
                 "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.max_connections = 1;
  cfg.acquire_timeout = 300ms;
  cfg.stuck_after = 1s;
  start();
  auto out = std::make_shared<results>();
  send(out, call("hangs", 100ms));
  advance(100ms); // cancelled now
  send(out, call("waits", 10s));
  advance(300ms); // the cancel has been out 300 ms
  REQUIRE(out->got.size() == 2);
  REQUIRE(has_code(out->got[1], errc::queue_timeout));
  send(out, call("waits too", 10s));
  advance(300ms, 3); // 600 ms: still under a second
  advance(100ms);
  send(out, call("and waits", 10s));
  advance(300ms, 3); // this one times out at 1.0 s of unanswered cancel: now it is stuck
  REQUIRE(out->got.size() == 4);
  CHECK(has_code(out->got[2], errc::queue_timeout));
  CHECK(has_code(out->got[3], errc::backend_stuck));
  // And a new call is not queued behind it: it fails at once, for the breaker to count.
  send(out, call("after", 10s));
  REQUIRE(out->got.size() == 5);
  CHECK(has_code(out->got[4], errc::backend_unavailable));
}

TEST_CASE_METHOD(fixture, "a cancel the backend honours, however late the caller, is never stuck",
                 "[pool]") {
  // Many callers in a hurry against a live backend: each call is cancelled at its deadline and
  // the connection comes back; load, not a hung backend.
  fb->calls = fake_backend::mode::park;
  cfg.max_connections = 1;
  cfg.stuck_after = 1s;
  start();
  auto out = std::make_shared<results>();
  for (int i = 0; i < 20; ++i) {
    send(out, call("hurried", 100ms));
    advance(100ms);
    release_parked(); // the backend answers the cancelled statement promptly
    advance(100ms);
  }
  REQUIRE(out->got.size() == 20);
  for (auto& r : out->got) {
    REQUIRE(has_code(r, errc::call_cancelled));
  }
  send(out, call("next", 10s));
  CHECK(out->got.size() == 20); // served by the connection, not failed fast
  release_parked();
  REQUIRE(out->got.size() == 21);
  CHECK(out->got[20]);
}

TEST_CASE_METHOD(fixture,
                 "a backend that cannot be reached fails calls at once instead of timing them out",
                 "[pool]") {
  fb->failing_connects = 1000;
  start(); // the first connect has failed
  auto out = std::make_shared<results>();
  send(out, call());
  REQUIRE(out->got.size() == 1);
  CHECK(has_code(out->got[0], errc::backend_unavailable));
  CHECK(metrics.acquire_timeouts->Value() == 0);
  fb->failing_connects = 0;
  advance(1s, 10); // the backoff ends, the connect succeeds
  send(out, call());
  REQUIRE(out->got.size() == 2);
  CHECK(out->got[1]);
}

TEST_CASE_METHOD(fixture, "an answer says how long its call waited for a connection", "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.max_connections = 1;
  start();
  auto out = std::make_shared<results>();
  send(out, call("first"));
  send(out, call("second")); // waits for the one connection
  advance(300ms);
  fb->calls = fake_backend::mode::ok; // the second runs at once when it gets the connection
  release_parked(); // the first ends; the second takes the connection, 300 ms after it came
  REQUIRE(out->got.size() == 2);
  REQUIRE(out->got[0]);
  REQUIRE(out->got[1]);
  CHECK(out->got[0]->pool_wait == caf::timespan{0});
  CHECK(out->got[1]->pool_wait == caf::timespan{300ms});
}

TEST_CASE_METHOD(fixture,
                 "a newcomer the queue cannot serve before its deadline is refused at once, "
                 "queue_full with a retry-after, not timed out",
                 "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.max_connections = 1;
  cfg.queue.max_waiters = 50;
  cfg.acquire_timeout = 10s;
  cfg.queue.delay_target = 0ms; // the deadline rule alone (a standing queue would shed these)
  start();
  auto out = std::make_shared<results>();
  for (int i = 0; i < 20; ++i)
    send(out, call("w", 30s)); // one runs, 19 wait
  for (int i = 0; i < 10; ++i) {
    advance(100ms);
    release_running(); // one served every 100 ms: a measured rate of about 10 calls/s
  }
  REQUIRE(out->got.size() == 10);
  REQUIRE(status().queue_length == 9);
  send(out, call("hopeless", 200ms)); // tenth in line: about 1 s away
  REQUIRE(out->got.size() == 11);
  REQUIRE(has_code(out->got[10], errc::queue_full));
  auto ctx = out->got[10].error().context();
  REQUIRE(ctx.match_element<int64_t>(0));
  CHECK(ctx.get_as<int64_t>(0) >= 10);
  CHECK(metrics.acquire_timeouts->Value() == 0); // it never waited
  CHECK(status().queue_length == 9);             // nobody else lost a place
}

TEST_CASE_METHOD(fixture,
                 "a standing queue sheds its waiters at the delay target, queue_full with a "
                 "retry-after, instead of letting them wait out the acquire timeout",
                 "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.max_connections = 1;
  cfg.queue.max_waiters = 50;
  cfg.acquire_timeout = 10s;
  REQUIRE(cfg.queue.delay_target == 100ms); // the shipped pool.queue_delay_target_ms
  REQUIRE(cfg.queue.delay_interval == 500ms);
  start();
  auto out = std::make_shared<results>();
  for (int i = 0; i < 20; ++i)
    send(out, call("w", 30s)); // one runs, 19 wait
  // One call served every 50 ms: 20 calls/s on one connection, 50 ms each, below the target.
  // The rate is known from 150 ms (its warm-up), so the pool serves from then on.
  for (int i = 0; i < 12; ++i) {
    advance(50ms);
    release_running();
  }
  // 600 ms: the oldest waiter has been past the target since 150 ms, not yet for the interval.
  REQUIRE(out->got.size() == 12);
  for (auto& x : out->got)
    REQUIRE(x);
  CHECK(status().queue_length == 7);
  advance(50ms); // 650 ms: a standing queue. Everyone left has waited 650 ms: shed.
  REQUIRE(out->got.size() == 19);
  for (size_t i = 12; i < out->got.size(); ++i) {
    auto& x = out->got[i];
    REQUIRE(has_code(x, errc::queue_full));
    auto ctx = x.error().context();
    REQUIRE(ctx.match_elements<int64_t, std::string, std::string>());
    CHECK(ctx.get_as<int64_t>(0) >= 10);
    CHECK(ctx.get_as<std::string>(2) == "standing_delay");
  }
  CHECK(metrics.acquire_timeouts->Value() == 0); // a refusal under load, not a timeout
  CHECK(status().rejected == 7);
  CHECK(status().queue_length == 0);
  // Emptied by shedding, the queue still stands: the next caller waits at most the target.
  send(out, call("next", 30s));
  CHECK(out->got.size() == 19);
  advance(100ms);
  REQUIRE(out->got.size() == 20);
  CHECK(has_code(out->got[19], errc::queue_full));
}

TEST_CASE_METHOD(fixture,
                 "a declared read runs in the scheduler lane, opened once a thread connection is "
                 "up; writes, transactions and EXPLAIN run on threads",
                 "[pool]") {
  start(true);
  CHECK(fb->connects == 1);
  CHECK(fb->lane_connects == 1); // after the first thread connection answered its ping
  auto out = std::make_shared<results>();
  send(out, read("r"));
  REQUIRE(out->got.size() == 1);
  REQUIRE(out->got[0]);
  CHECK(out->got[0]->columns == std::vector<std::string>{"lane"});
  CHECK(fb->lane_executed == 1);
  CHECK(fb->executed == 0);
  send(out, call("w")); // not declared read-only
  auto tx = read("tx");
  tx.steps.push_back(db_call_step{"s", "SELECT 1", {}, {}, true});
  send(out, tx);
  auto ex = read("ex");
  ex.explain = true;
  send(out, ex);
  REQUIRE(out->got.size() == 4);
  for (auto& x : out->got)
    REQUIRE(x);
  CHECK(fb->lane_executed == 1);
  CHECK(fb->executed == 3);
  CHECK(metrics.lane_served->Value() == 1);
  CHECK(metrics.lane_handed_back->Value() == 0);
  CHECK(status().served == 4);
}

TEST_CASE_METHOD(fixture,
                 "the lane is outside min and max connections and takes nobody ahead of a waiter",
                 "[pool]") {
  fb->calls = fake_backend::mode::park;
  cfg.queue.max_waiters = 10;
  start(true);
  auto out = std::make_shared<results>();
  for (int i = 0; i < 3; ++i)
    send(out, call("w")); // two run on the two thread connections, one waits
  CHECK(fb->connects == 2);
  auto s = status();
  CHECK(s.busy == 2);
  CHECK(s.queue_length == 1);
  send(out, read("r")); // the lane is idle, but a write waits: the read queues behind it
  CHECK(fb->lane_executed == 0);
  CHECK(status().queue_length == 2);
  fb->calls = fake_backend::mode::ok;
  release_parked();
  REQUIRE(out->got.size() == 4);
  for (auto& x : out->got)
    REQUIRE(x);
  CHECK(fb->lane_executed == 0);
  CHECK(fb->connects == 2);
  send(out, read("r")); // nobody waits now
  CHECK(fb->lane_executed == 1);
}

TEST_CASE_METHOD(fixture,
                 "a read the lane gives back runs once on a thread, answered once, and its "
                 "statement skips the lane for lane_skip calls",
                 "[pool]") {
  cfg.lane_skip = 3;
  start(true);
  fb->lane_gives_back = true;
  auto out = std::make_shared<results>();
  send(out, read("slow"));
  REQUIRE(out->got.size() == 1);
  REQUIRE(out->got[0]);
  CHECK(out->got[0]->columns == std::vector<std::string>{"statement"}); // a thread's answer
  CHECK(fb->lane_executed == 1);
  CHECK(fb->executed == 1);
  CHECK(metrics.lane_handed_back->Value() == 1);
  CHECK(metrics.wait_seconds->Collect().histogram.sample_count == 1); // its wait counted once
  fb->lane_gives_back = false;
  for (int i = 0; i < 3; ++i)
    send(out, read("slow")); // skip the lane
  send(out, read("other"));  // another statement does not
  CHECK(fb->lane_executed == 2);
  CHECK(fb->executed == 4);
  send(out, read("slow")); // tried in the lane again
  CHECK(fb->lane_executed == 3);
  REQUIRE(out->got.size() == 6);
  for (auto& x : out->got)
    REQUIRE(x);
  CHECK(status().served == 6);
  CHECK(metrics.lane_served->Value() == 2);
}

TEST_CASE_METHOD(fixture,
                 "a lane that cannot connect is no backend failure: calls use threads and it is "
                 "tried again after the longest connect backoff",
                 "[pool]") {
  fb->lane_failing_connects = 1;
  cfg.connect_backoff_max = 2s;
  start(true);
  CHECK(fb->lane_connects == 1);
  CHECK(metrics.connect_failures->Value() == 0);
  auto out = std::make_shared<results>();
  send(out, read("r"));
  REQUIRE(out->got.size() == 1);
  REQUIRE(out->got[0]);
  CHECK(fb->executed == 1);
  advance(1s); // a maintenance tick, before the retry is due
  CHECK(fb->lane_connects == 1);
  advance(1s);
  CHECK(fb->lane_connects == 2);
  send(out, read("r"));
  CHECK(fb->lane_executed == 1);
}

TEST_CASE_METHOD(fixture,
                 "the lane is not in the pool's health: its calls neither count as over the "
                 "maximum nor swing the utilisation the queue limit follows",
                 "[pool]") {
  cfg.max_connections = 1;
  start(true);
  REQUIRE(fb->lane_connects == 1);
  // One idle thread connection of one allowed, nothing asked yet: what a pool without a lane
  // reports.
  CHECK(status().health == Approx(detail::pool_health(0, 1, 1, 0, 0)));
  auto limit = metrics.queue_limit->Value();
  auto out = std::make_shared<results>();
  for (int i = 0; i < 3; ++i)
    send(out, read("r"));
  CHECK(fb->lane_executed == 3);
  CHECK(status().health == Approx(detail::pool_health(0, 1, 1, 3, 0)));
  CHECK(metrics.queue_limit->Value() == limit);
}

TEST_CASE_METHOD(fixture,
                 "a call whose lane goes down under it runs on a thread, answered once, and a new "
                 "lane opens",
                 "[pool]") {
  start(true);
  fb->lane_dies = true;
  auto out = std::make_shared<results>();
  send(out, read("r"));
  REQUIRE(out->got.size() == 1);
  REQUIRE(out->got[0]);
  CHECK(out->got[0]->columns == std::vector<std::string>{"statement"}); // a thread's answer
  CHECK(fb->executed == 1);
  CHECK(fb->lane_connects == 2); // replaced at once: the backend is up
  fb->lane_dies = false;
  send(out, read("other"));
  CHECK(fb->lane_executed == 2);
  CHECK(out->got.size() == 2);
  CHECK(status().served == 2);
}
