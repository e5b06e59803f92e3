#include "actors/detail/pool_queue.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace bulwark::detail;
using ms = std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

waiter make(uint64_t id, std::chrono::nanoseconds deadline, int priority = 0) {
  return waiter{id, ms(0), deadline, priority};
}

// Rules 1-3 alone: rule 4 (the standing-queue delay target) has its own tests below.
wait_queue make_queue(size_t max_waiters) {
  wait_queue_config cfg;
  cfg.max_waiters = max_waiters;
  cfg.delay_target = ms(0);
  return wait_queue{cfg};
}

// Rule 4 with the shipped target and interval (pool.queue_delay_target_ms 100,
// pool.queue_delay_interval_ms 500).
wait_queue delay_queue() {
  wait_queue_config cfg;
  REQUIRE(cfg.delay_target == ms(100));
  REQUIRE(cfg.delay_interval == ms(500));
  return wait_queue{cfg};
}

waiter arriving(uint64_t id, ms at) {
  return waiter{id, at, at + seconds(10), 0};
}

// Fills at t = 0 with low pressure, good health and no measured rate: everyone gets in.
void fill(wait_queue& q, const std::vector<waiter>& ws) {
  for (const auto& w : ws)
    REQUIRE(q.admit(w, ms(0), 0.0, 1.0, 0.0).admitted);
}

std::vector<uint64_t> ids(const std::vector<rejection>& xs, rejection_reason why) {
  std::vector<uint64_t> out;
  for (const auto& x : xs)
    if (x.reason == why)
      out.push_back(x.id);
  return out;
}

std::vector<uint64_t> drain(wait_queue& q) {
  std::vector<uint64_t> out;
  while (auto w = q.pop(ms(0)))
    out.push_back(w->id);
  return out;
}

using id_list = std::vector<uint64_t>;

} // namespace

TEST_CASE("the queue limit tightens under pressure or poor health", "[pool]") {
  wait_queue q;
  CHECK(q.limit(0.5, 1.0) == 1000);
  CHECK(q.limit(0.8, 0.7) == 1000); // thresholds are strict
  CHECK(q.limit(0.81, 1.0) == 750);
  CHECK(q.limit(0.9, 1.0) == 750);
  CHECK(q.limit(0.91, 1.0) == 500);
  CHECK(q.limit(0.2, 0.69) == 750);
  CHECK(q.limit(0.2, 0.5) == 750);
  CHECK(q.limit(0.2, 0.49) == 500);
  CHECK(make_queue(1).limit(0.95, 0.1) == 1);
  CHECK(make_queue(0).limit(0.0, 1.0) == 0);
}

TEST_CASE("pool health averages utilisation, success rate and size", "[pool]") {
  CHECK(pool_health(7, 10, 20, 0, 0) == Approx(1.0));
  CHECK(pool_health(0, 0, 10, 0, 0) == Approx(2.3 / 3));
  CHECK(pool_health(10, 10, 10, 3, 1) == Approx((0.7 + 0.75 + 1.0) / 3));
  CHECK(pool_health(14, 20, 10, 1, 1) == Approx((1.0 + 0.5 + 0.5) / 3));
}

TEST_CASE("the rejection strategy follows pressure and health with strict thresholds", "[pool]") {
  CHECK(choose_strategy(0.8, 1.0) == rejection_strategy::conservative);
  CHECK(choose_strategy(0.81, 1.0) == rejection_strategy::moderate);
  CHECK(choose_strategy(0.9, 1.0) == rejection_strategy::moderate);
  CHECK(choose_strategy(0.91, 1.0) == rejection_strategy::aggressive);
  CHECK(choose_strategy(0.0, 0.6) == rejection_strategy::conservative);
  CHECK(choose_strategy(0.0, 0.59) == rejection_strategy::moderate);
  CHECK(choose_strategy(0.0, 0.3) == rejection_strategy::moderate);
  CHECK(choose_strategy(0.0, 0.29) == rejection_strategy::aggressive);
}

TEST_CASE("newcomers are admitted while the queue is below its limit", "[pool]") {
  auto q = make_queue(4);
  for (uint64_t id = 1; id <= 4; ++id) {
    auto a = q.admit(make(id, seconds(10)), ms(0), 0.0, 1.0, 100.0);
    CHECK(a.admitted);
    CHECK(a.rejected.empty());
    CHECK_FALSE(a.strategy);
    CHECK(a.retry_after == ms(0));
  }
  CHECK(q.size() == 4);
}

TEST_CASE("expired and hopeless waiters leave as deadline_exceeded and make room", "[pool]") {
  auto q = make_queue(3);
  fill(q, {make(1, seconds(2)), make(2, ms(50)), make(3, ms(250))});
  // At 100 ms with 10 served per second: 2's deadline has passed; 3, now second in line,
  // needs 200 ms more and would miss its deadline at 250 ms.
  auto a = q.admit(make(4, seconds(5)), ms(100), 0.0, 1.0, 10.0);
  CHECK(a.admitted);
  CHECK(a.rejected.size() == 2);
  CHECK(ids(a.rejected, rejection_reason::deadline_exceeded) == id_list{2, 3});
  CHECK(a.retry_after == ms(200)); // 2 waiting / 10 per second
  CHECK(drain(q) == id_list{1, 4});
}

TEST_CASE("a hopeless waiter leaving moves the waiters behind it forward", "[pool]") {
  auto q = make_queue(10);
  fill(q, {make(1, ms(50)), make(2, ms(150))});
  // First in line 1 needs 100 ms but has 50: gone. Then 2 is first and needs 100 ms of its 150.
  auto a = q.admit(make(3, seconds(5)), ms(0), 0.0, 1.0, 10.0);
  CHECK(a.admitted);
  CHECK(ids(a.rejected, rejection_reason::deadline_exceeded) == id_list{1});
  CHECK(drain(q) == id_list{2, 3});
}

TEST_CASE("waiters that cannot be served in time go before anyone is shed", "[pool]") {
  auto q = make_queue(4);
  fill(q, {make(1, seconds(10)), make(2, ms(10)), make(3, ms(150)), make(4, ms(200))});
  // Aggressive pressure halves the limit to 2. Removing the expired 2 and the hopeless 3 and 4
  // (each would wait 200 ms as second in line) leaves room, so the servable 1 is not shed.
  auto a = q.admit(make(5, seconds(10)), ms(20), 0.95, 1.0, 10.0);
  CHECK(a.admitted);
  CHECK(ids(a.rejected, rejection_reason::deadline_exceeded) == id_list{2, 3, 4});
  CHECK(ids(a.rejected, rejection_reason::shed).empty());
  CHECK(drain(q) == id_list{1, 5});
}

TEST_CASE("a newcomer that cannot be served in time is refused as deadline_exceeded", "[pool]") {
  auto q = make_queue(10);
  fill(q, {make(1, seconds(10))});
  // Second in line at 10 per second: 200 ms, but only 150 ms left.
  auto a = q.admit(make(2, ms(150)), ms(0), 0.0, 1.0, 10.0);
  CHECK_FALSE(a.admitted);
  CHECK(a.reason == rejection_reason::deadline_exceeded);
  // A deadline that has already passed is refused without any rate.
  auto b = q.admit(make(3, ms(5)), ms(5), 0.0, 1.0, 0.0);
  CHECK_FALSE(b.admitted);
  CHECK(b.reason == rejection_reason::deadline_exceeded);
  // A higher priority is judged at its better position.
  CHECK(q.admit(make(4, ms(150), 1), ms(0), 0.0, 1.0, 10.0).admitted);
  CHECK(q.size() == 2);
}

TEST_CASE("without a measured rate only passed deadlines count", "[pool]") {
  auto q = make_queue(10);
  fill(q, {make(1, ms(1)), make(2, ms(2)), make(3, ms(3))});
  auto a = q.admit(make(4, seconds(1)), ms(2), 0.0, 1.0, 0.0);
  CHECK(a.admitted);
  CHECK(ids(a.rejected, rejection_reason::deadline_exceeded) == id_list{1, 2});
  CHECK(drain(q) == id_list{3, 4});
}

TEST_CASE("a waiter that becomes hopeless as time passes or the rate falls is caught", "[pool]") {
  SECTION("time passes") {
    auto q = make_queue(10);
    REQUIRE(q.admit(make(1, seconds(1)), ms(0), 0.0, 1.0, 10.0).admitted);
    REQUIRE(q.admit(make(2, ms(500)), ms(0), 0.0, 1.0, 10.0).admitted);
    // At 300 ms: 2 still makes it (300 + 200 = 500).
    REQUIRE(q.admit(make(3, seconds(10)), ms(300), 0.0, 1.0, 10.0).rejected.empty());
    auto a = q.admit(make(4, seconds(10)), ms(301), 0.0, 1.0, 10.0);
    CHECK(ids(a.rejected, rejection_reason::deadline_exceeded) == id_list{2});
  }
  SECTION("the rate falls") {
    auto q = make_queue(10);
    REQUIRE(q.admit(make(1, seconds(1)), ms(0), 0.0, 1.0, 10.0).admitted);
    REQUIRE(q.admit(make(2, ms(500)), ms(0), 0.0, 1.0, 10.0).admitted);
    // At 4 per second the second waits exactly 500 ms; at 3 per second it is late.
    REQUIRE(q.admit(make(3, seconds(10)), ms(0), 0.0, 1.0, 4.0).rejected.empty());
    auto a = q.admit(make(4, seconds(10)), ms(0), 0.0, 1.0, 3.0);
    CHECK(ids(a.rejected, rejection_reason::deadline_exceeded) == id_list{2});
  }
  SECTION("more important waiters join ahead") {
    auto q = make_queue(10);
    REQUIRE(q.admit(make(1, ms(250)), ms(0), 0.0, 1.0, 10.0).admitted);
    REQUIRE(q.admit(make(2, seconds(10), 1), ms(0), 0.0, 1.0, 10.0).rejected.empty());
    REQUIRE(q.admit(make(3, seconds(10), 1), ms(0), 0.0, 1.0, 10.0).rejected.empty());
    // 1 is now third in line: 300 ms > 250 ms.
    auto a = q.admit(make(4, seconds(10)), ms(0), 0.0, 1.0, 10.0);
    CHECK(ids(a.rejected, rejection_reason::deadline_exceeded) == id_list{1});
  }
}

TEST_CASE("a conservative queue at its limit refuses the newcomer with a retry-after from depth "
          "and service rate",
          "[pool]") {
  auto q = make_queue(4);
  fill(q, {make(1, seconds(100)), make(2, seconds(100)), make(3, seconds(100)),
           make(4, seconds(100))});
  auto a = q.admit(make(5, seconds(100)), ms(0), 0.5, 1.0, 20.0);
  CHECK_FALSE(a.admitted);
  CHECK(a.reason == rejection_reason::queue_full);
  CHECK(a.strategy == rejection_strategy::conservative);
  CHECK(a.rejected.empty());
  CHECK(a.retry_after == ms(200)); // 4 waiting / 20 per second
  CHECK(q.size() == 4);
  // Clamped to [10 ms, 5 s]; 5 s without a measured rate.
  CHECK(q.admit(make(5, seconds(100)), ms(0), 0.5, 1.0, 10000.0).retry_after == ms(10));
  CHECK(q.admit(make(5, seconds(100)), ms(0), 0.5, 1.0, 0.1).retry_after == seconds(5));
  CHECK(q.admit(make(5, seconds(100)), ms(0), 0.5, 1.0, 0.0).retry_after == seconds(5));
  CHECK(q.size() == 4);
}

TEST_CASE("a more important newcomer displaces the waiter that would be served last", "[pool]") {
  auto q = make_queue(4);
  fill(q, {make(1, seconds(10), 2), make(2, seconds(10)), make(3, seconds(10)),
           make(4, seconds(10), 1)});
  // Same priority as the lowest waiting: refused.
  CHECK(q.admit(make(5, seconds(10)), ms(0), 0.0, 1.0, 100.0).reason ==
        rejection_reason::queue_full);
  // Higher: the newest of the lowest priority (3) makes room.
  auto a = q.admit(make(6, seconds(10), 1), ms(0), 0.0, 1.0, 100.0);
  CHECK(a.admitted);
  CHECK(a.strategy == rejection_strategy::conservative);
  CHECK(ids(a.rejected, rejection_reason::shed) == id_list{3});
  CHECK(a.retry_after == ms(40));
  CHECK(drain(q) == id_list{1, 4, 6, 2});
}

TEST_CASE("a moderate queue sheds the waiter least likely to be served in time", "[pool]") {
  auto q = make_queue(8);
  // Serving order 5, 1, 2, 3, 4, 6; at 10 per second the slack of the priority-0 waiters is
  // 2: 9.7 s, 3: 0.6 s, 4: 9.5 s, 6: 4.4 s.
  fill(q, {make(1, seconds(10), 1), make(2, seconds(10)), make(3, seconds(1)), make(4, seconds(10)),
           make(5, seconds(1), 2), make(6, seconds(5))});
  // Pressure 0.85: limit 6, moderate; budget max(1, 6 / 4) = 1.
  auto a = q.admit(make(7, seconds(10)), ms(0), 0.85, 1.0, 10.0);
  CHECK(a.strategy == rejection_strategy::moderate);
  CHECK(a.admitted);
  CHECK(ids(a.rejected, rejection_reason::shed) == id_list{3}); // not the oldest (2)
  CHECK(a.retry_after == ms(600));
  CHECK(drain(q) == id_list{5, 1, 2, 4, 6, 7});
}

TEST_CASE("a moderate trim prefers lower priority and never sheds more important work", "[pool]") {
  auto q = make_queue(8);
  // At 10 per second, 1 (priority 1, fourth in line) has 100 ms of slack, 2 and 3 (priority 0)
  // over 9 s.
  fill(q, {make(1, ms(500), 1), make(2, seconds(10)), make(3, seconds(10)), make(4, seconds(10), 2),
           make(5, seconds(10), 2), make(6, seconds(10), 2)});
  SECTION("a newcomer of priority 1 trims priority 0 first") {
    auto a = q.admit(make(7, seconds(10), 1), ms(0), 0.85, 1.0, 10.0);
    CHECK(a.admitted);
    CHECK(ids(a.rejected, rejection_reason::shed) == id_list{3}); // least slack of priority 0
  }
  SECTION("a newcomer of priority 0 cannot shed priorities 1 and 2") {
    auto q2 = make_queue(8);
    fill(q2, {make(1, seconds(10), 1), make(2, seconds(10), 2), make(3, seconds(10), 2),
              make(4, seconds(10), 2), make(5, seconds(10), 2), make(6, seconds(10), 2)});
    auto a = q2.admit(make(7, seconds(10)), ms(0), 0.85, 1.0, 10.0);
    CHECK_FALSE(a.admitted);
    CHECK(a.reason == rejection_reason::queue_full);
    CHECK(a.rejected.empty());
    CHECK(q2.size() == 6);
  }
}

TEST_CASE("the strategies shed none, a quarter and a half of the same full queue", "[pool]") {
  auto full = [] {
    auto q = make_queue(8);
    for (uint64_t id = 1; id <= 8; ++id)
      REQUIRE(q.admit(make(id, seconds(100)), ms(0), 0.0, 1.0, 0.0).admitted);
    return q;
  };
  // Without a measured rate the trim takes whoever would be served last.
  SECTION("conservative") {
    auto q = full();
    auto a = q.admit(make(9, seconds(100)), ms(0), 0.5, 1.0, 0.0);
    CHECK(a.strategy == rejection_strategy::conservative);
    CHECK_FALSE(a.admitted);
    CHECK(a.rejected.empty());
  }
  SECTION("moderate: limit 6, sheds 2, still full") {
    auto q = full();
    auto a = q.admit(make(9, seconds(100)), ms(0), 0.85, 1.0, 0.0);
    CHECK(a.strategy == rejection_strategy::moderate);
    CHECK_FALSE(a.admitted);
    CHECK(a.reason == rejection_reason::queue_full);
    CHECK(ids(a.rejected, rejection_reason::shed) == id_list{8, 7});
    CHECK(q.size() == 6);
  }
  SECTION("aggressive: limit 4, sheds 4, still full") {
    auto q = full();
    auto a = q.admit(make(9, seconds(100)), ms(0), 0.95, 1.0, 0.0);
    CHECK(a.strategy == rejection_strategy::aggressive);
    CHECK_FALSE(a.admitted);
    CHECK(ids(a.rejected, rejection_reason::shed) == id_list{8, 7, 6, 5});
    CHECK(q.size() == 4);
  }
  SECTION("aggressive with a more important newcomer: sheds 4, then displaces one") {
    auto q = full();
    auto a = q.admit(make(9, seconds(100), 1), ms(0), 0.95, 1.0, 0.0);
    CHECK(a.admitted);
    CHECK(ids(a.rejected, rejection_reason::shed) == id_list{8, 7, 6, 5, 4});
    CHECK(drain(q) == id_list{9, 1, 2, 3});
  }
}

TEST_CASE("an aggressive trim sheds only waiters no more important than the newcomer", "[pool]") {
  auto q = make_queue(8);
  fill(q, {make(1, seconds(10), 1), make(2, seconds(10), 1), make(3, seconds(10), 1),
           make(4, seconds(10), 1), make(5, seconds(10)), make(6, seconds(10)),
           make(7, seconds(10)), make(8, seconds(10))});
  auto a = q.admit(make(9, seconds(10)), ms(0), 0.95, 1.0, 0.0);
  CHECK_FALSE(a.admitted);
  CHECK(ids(a.rejected, rejection_reason::shed) == id_list{8, 7, 6, 5});
  CHECK(drain(q) == id_list{1, 2, 3, 4});
}

TEST_CASE("waiters are served by priority, then first come first served", "[pool]") {
  auto q = make_queue(10);
  fill(q, {make(1, seconds(10)), make(2, seconds(10), 1), make(3, seconds(10)),
           make(4, seconds(10), 2), make(5, seconds(10), 1)});
  auto first = q.pop(ms(0));
  REQUIRE(first);
  CHECK(first->id == 4);
  CHECK(first->priority == 2);
  CHECK(drain(q) == id_list{2, 5, 1, 3});
  CHECK_FALSE(q.pop(ms(0)));
}

TEST_CASE("waiters can be removed, expired by deadline and timed by the earliest deadline",
          "[pool]") {
  auto q = make_queue(10);
  CHECK_FALSE(q.next_deadline());
  fill(q, {make(1, ms(300)), make(2, ms(100)), make(3, ms(200)), make(4, ms(100))});
  CHECK(q.next_deadline() == ms(100));
  CHECK(q.remove(2, ms(0)));
  CHECK_FALSE(q.remove(2, ms(0)));
  CHECK_FALSE(q.contains(2));
  CHECK(q.next_deadline() == ms(100));
  CHECK(q.expire(ms(99)).empty());
  CHECK(q.expire(ms(200)) == id_list{4, 3});
  CHECK(q.next_deadline() == ms(300));
  CHECK(q.size() == 1);
  CHECK(drain(q) == id_list{1});
}

TEST_CASE("a newcomer whose id is already waiting is refused without changes", "[pool]") {
  auto q = make_queue(10);
  fill(q, {make(1, seconds(1))});
  auto a = q.admit(make(1, seconds(5), 3), ms(0), 0.0, 1.0, 10.0);
  CHECK_FALSE(a.admitted);
  CHECK(a.reason == rejection_reason::duplicate_id);
  CHECK(q.size() == 1);
  CHECK(q.next_deadline() == seconds(1));
}

TEST_CASE("the queue never holds more than its configured maximum", "[pool]") {
  auto q = make_queue(16);
  for (uint64_t id = 1; id <= 200; ++id) {
    auto pressure = (id % 3 == 0) ? 0.95 : (id % 3 == 1 ? 0.85 : 0.1);
    q.admit(make(id, seconds(100), static_cast<int>(id % 4)), ms(static_cast<int>(id)), pressure,
            1.0, 50.0);
    CHECK(q.size() <= 16);
  }
}

TEST_CASE("the service rate estimator reads a steady stream's rate", "[pool]") {
  service_rate r{seconds(1), ms(100)};
  CHECK(r.per_second(ms(0)) == 0);
  r.on_served(ms(0));
  CHECK(r.per_second(ms(500)) == 0); // one event only starts the clock
  for (int t = 10; t <= 100; t += 10)
    r.on_served(ms(t));
  CHECK(r.per_second(ms(100)) == Approx(100).epsilon(0.01));
  for (int t = 110; t <= 3000; t += 10)
    r.on_served(ms(t));
  CHECK(r.per_second(ms(3000)) == Approx(100).epsilon(0.01));
}

TEST_CASE("the service rate estimator is unknown during warm-up and decays while idle", "[pool]") {
  service_rate r{seconds(1), ms(100)};
  r.on_served(ms(0));
  r.on_served(ms(10));
  CHECK(r.per_second(ms(50)) == 0);
  for (int t = 20; t <= 10000; t += 20)
    r.on_served(ms(t));
  auto steady = r.per_second(ms(10000));
  CHECK(steady == Approx(50).epsilon(0.02));
  // One time constant of silence: 1/e of the rate.
  CHECK(r.per_second(ms(11000)) == Approx(steady * 0.36787944).epsilon(0.001));
  CHECK(r.per_second(ms(30000)) < 0.01);
}

TEST_CASE("the service rate estimator does not decay while there is no demand", "[pool]") {
  service_rate r{seconds(1), ms(100)};
  for (int t = 0; t <= 10000; t += 10)
    r.on_served(ms(t));
  auto steady = r.per_second(ms(10000));
  CHECK(steady == Approx(100).epsilon(0.02));
  // A quiet minute: no calls at all. The pool did not get slower.
  r.set_demand(false, ms(10000));
  CHECK(r.per_second(ms(70000)) == Approx(steady));
  r.set_demand(true, ms(70000));
  CHECK(r.per_second(ms(70000)) == Approx(steady));
  // Demand without service (a hung backend) decays as before: one time constant, 1/e.
  CHECK(r.per_second(ms(71000)) == Approx(steady * 0.36787944).epsilon(0.001));
  // And a resumed stream reads its rate again.
  for (int t = 70010; t <= 75000; t += 10)
    r.on_served(ms(t));
  CHECK(r.per_second(ms(75000)) == Approx(100).epsilon(0.02));
}

TEST_CASE("a queue that drains is not standing however long one waiter waited", "[pool]") {
  auto q = delay_queue();
  REQUIRE(q.admit(arriving(1, ms(0)), ms(0), 0, 1, 0).admitted);
  CHECK(q.next_check() == ms(100)); // where the oldest passes the target
  CHECK(q.shed_stale(ms(100)).empty());
  CHECK(q.next_check() == ms(600)); // where it would have stood past the target for 500 ms
  REQUIRE(q.admit(arriving(2, ms(500)), ms(500), 0, 1, 0).admitted);
  // Waiter 1 is served at 550 ms, after 550 ms: the oldest is now 2, 50 ms in, so the run of
  // "past the target" ends before it lasted the interval.
  REQUIRE(q.pop(ms(550))->id == 1);
  CHECK_FALSE(q.standing());
  CHECK(q.next_check() == ms(600));
  CHECK(q.shed_stale(ms(600)).empty());
  CHECK_FALSE(q.standing());
  // Nobody served from 600 ms on: at 1100 ms waiter 2 has stood past the target for 500 ms.
  CHECK(q.next_check() == ms(1100));
  CHECK(q.shed_stale(ms(1099)).empty());
  auto shed = q.shed_stale(ms(1100));
  CHECK(ids(shed, rejection_reason::standing_delay) == id_list{2});
  CHECK(q.empty());
  CHECK_FALSE(q.next_check());
  // Emptied by shedding, it still stands; nobody waiting for an interval ends that.
  CHECK(q.standing());
  CHECK(q.shed_stale(ms(1599)).empty());
  CHECK(q.standing());
  CHECK(q.shed_stale(ms(1600)).empty());
  CHECK_FALSE(q.standing());
}

TEST_CASE("a standing queue sheds who waited past the target and refuses newcomers expected "
          "past it, until it runs empty",
          "[pool]") {
  auto q = delay_queue();
  REQUIRE(q.admit(arriving(1, ms(0)), ms(0), 0, 1, 0).admitted);
  REQUIRE(q.admit(arriving(2, ms(550)), ms(550), 0, 1, 0).admitted);
  REQUIRE(q.admit(arriving(3, ms(560)), ms(560), 0, 1, 0).admitted);
  // At 600 ms waiter 1 has been past the target since 100 ms: the queue stands, and sheds it;
  // 2 and 3 are within the target and stay.
  auto shed = q.shed_stale(ms(600));
  CHECK(ids(shed, rejection_reason::standing_delay) == id_list{1});
  CHECK(q.standing());
  CHECK(q.size() == 2);
  CHECK(q.next_check() == ms(650)); // waiter 2 reaches the target
  // At 10 calls/s a newcomer third in line expects 300 ms: refused at once, with the time the
  // queue needs to drain as its retry-after. Nobody else loses a place.
  auto a = q.admit(arriving(4, ms(600)), ms(600), 0, 1, 10.0);
  CHECK_FALSE(a.admitted);
  CHECK(a.reason == rejection_reason::standing_delay);
  CHECK(a.rejected.empty());
  CHECK(a.retry_after == ms(200));
  CHECK(q.size() == 2);
  // At 40 calls/s it expects 75 ms, within the target: admitted.
  CHECK(q.admit(arriving(5, ms(600)), ms(600), 0, 1, 40.0).admitted);
  // A newcomer that finds waiters past the target sheds them first (the timer may be late).
  auto b = q.admit(arriving(6, ms(655)), ms(655), 0, 1, 40.0);
  CHECK(ids(b.rejected, rejection_reason::standing_delay) == id_list{2});
  CHECK(b.admitted);
  // The queue runs empty: it stands no more, and a newcomer is judged by its deadline again.
  for (uint64_t id : {3, 5, 6}) {
    CHECK(q.standing());
    CHECK(q.pop(ms(700))->id == id);
  }
  CHECK_FALSE(q.standing());
  CHECK(q.admit(arriving(7, ms(700)), ms(700), 0, 1, 1.0).admitted); // 1 s away, deadline 10 s
}

TEST_CASE("a delay target of 0 leaves waits to the deadlines alone", "[pool]") {
  wait_queue_config cfg;
  cfg.delay_target = ms(0);
  wait_queue q{cfg};
  REQUIRE(q.admit(arriving(1, ms(0)), ms(0), 0, 1, 0).admitted);
  REQUIRE(q.admit(arriving(2, ms(5000)), ms(5000), 0, 1, 0).admitted);
  CHECK_FALSE(q.next_check());
  CHECK(q.shed_stale(ms(9000)).empty());
  CHECK_FALSE(q.standing());
  CHECK(q.admit(arriving(3, ms(9000)), ms(9000), 0, 1, 1.0).admitted);
}

TEST_CASE("waiting while the pool serves nothing is waiting for capacity, not a standing queue",
          "[pool]") {
  auto q = delay_queue();
  q.set_service(0, 0, ms(0)); // e.g. the connections are still opening
  REQUIRE(q.admit(arriving(1, ms(0)), ms(0), 0, 1, 0).admitted);
  CHECK_FALSE(q.next_check());
  CHECK(q.shed_stale(ms(2000)).empty()); // long past the target and the interval
  CHECK_FALSE(q.standing());
  // Serving from 2 s on: the wait counts from there, so the queue stands at 2.6 s, not at once.
  q.set_service(1, 1000.0, ms(2000)); // a call running, 1 ms each
  CHECK(q.next_check() == ms(2000));
  CHECK(q.shed_stale(ms(2000)).empty());
  CHECK(q.next_check() == ms(2500));
  CHECK(q.shed_stale(ms(2499)).empty());
  CHECK(ids(q.shed_stale(ms(2500)), rejection_reason::standing_delay) == id_list{1});
  // A queue that stands stops standing when the pool stops serving.
  CHECK(q.standing());
  REQUIRE(q.admit(arriving(2, ms(2550)), ms(2550), 0, 1, 0).admitted);
  q.set_service(0, 1000.0, ms(2600)); // nothing running
  CHECK_FALSE(q.standing());
  CHECK(q.shed_stale(ms(5000)).empty());
  CHECK(q.size() == 1);
}

TEST_CASE("behind slow calls the target is their mean service time, and a queue of hung calls "
          "never stands",
          "[pool]") {
  auto q = delay_queue();
  q.set_service(2, 2.0, ms(0)); // two connections, a call a second each: 1 s per call
  CHECK(q.target() == seconds(1));
  REQUIRE(q.admit(arriving(1, ms(0)), ms(0), 0, 1, 2.0).admitted);
  CHECK(q.next_check() == seconds(1));
  CHECK(q.shed_stale(ms(1400)).empty()); // one round of service: not standing
  CHECK_FALSE(q.standing());
  CHECK(q.shed_stale(ms(1499)).empty());
  CHECK(ids(q.shed_stale(ms(1500)), rejection_reason::standing_delay) == id_list{1});
  // Fast calls: the configured target again.
  q.set_service(2, 2000.0, ms(1500));
  CHECK(q.target() == ms(100));
  // Calls running but none completing (no measured rate): waiting for capacity, never standing.
  q.set_service(2, 0, ms(2000));
  REQUIRE(q.admit(arriving(2, ms(2000)), ms(2000), 0, 1, 0).admitted);
  CHECK_FALSE(q.next_check());
  CHECK(q.shed_stale(ms(9000)).empty());
  CHECK(q.size() == 1);
}
