#include "actors/detail/fifo_deadlines.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

using namespace bulwark;
using namespace bulwark::detail;
using std::chrono::milliseconds;

namespace {

constexpr caf::timespan ms(int64_t n) {
  return milliseconds(n);
}

/// The ids `expire` acts on, in the order it does.
std::vector<int> expire(fifo_deadlines<int>& d, int64_t now) {
  std::vector<int> due;
  d.expire(ms(now), [&](int& x) { due.push_back(x); });
  return due;
}

} // namespace

TEST_CASE("asks later than the armed timer need no new timer", "[fifo_deadlines]") {
  fifo_deadlines<int> d;
  auto [a, arm_a] = d.start(ms(100), 1);
  CHECK(arm_a == ms(100)); // nothing in flight: arm for 100
  auto [b, arm_b] = d.start(ms(110), 2);
  CHECK_FALSE(arm_b); // the timer at 100 comes first
  CHECK(a == 1);
  CHECK(b == 2);
  CHECK(d.size() == 2);
  CHECK(d.armed() == ms(100));
}

TEST_CASE("a fired timer acts on exactly the due asks, in order, and asks for the next one",
          "[fifo_deadlines]") {
  fifo_deadlines<int> d;
  auto one = d.start(ms(100), 1).first;
  auto two = d.start(ms(110), 2).first;
  d.start(ms(120), 3);
  d.start(ms(120), 4);
  CHECK(d.end(two));            // answered in time
  CHECK_FALSE(d.end(two));      // once
  CHECK(expire(d, 99).empty()); // a stale timer: nothing due, the one at 100 still in flight
  CHECK_FALSE(d.next());
  CHECK(expire(d, 100) == std::vector<int>{1});
  CHECK_FALSE(d.end(one));    // its time came first: the answer is late
  CHECK(d.next() == ms(120)); // 2 ended: the next timer is for 3
  CHECK_FALSE(d.next());      // asked twice: armed once
  CHECK(expire(d, 130) == (std::vector<int>{3, 4}));
  CHECK_FALSE(d.next()); // empty: no timer
  CHECK(d.size() == 0);
  CHECK_FALSE(d.end(99)); // never started
}

TEST_CASE("a deadline before the last one's is raised to it, so the order holds",
          "[fifo_deadlines]") {
  fifo_deadlines<int> d;
  d.start(ms(100), 1);
  auto [id, arm] = d.start(ms(50), 2); // a clock that went back
  CHECK_FALSE(arm);                    // due at 100 with the first, under its timer
  CHECK(expire(d, 60).empty());
  CHECK(expire(d, 100) == (std::vector<int>{1, 2}));
  CHECK_FALSE(d.end(id));
}

TEST_CASE("an action may start new asks, and contexts go when their ask ends", "[fifo_deadlines]") {
  fifo_deadlines<std::shared_ptr<int>> d;
  auto kept = std::make_shared<int>(7);
  auto id = d.start(ms(100), kept).first;
  CHECK(kept.use_count() == 2);
  d.end(id);
  CHECK(kept.use_count() == 1); // released at the answer, not at the deadline
  d.start(ms(200), kept);
  int acted = 0;
  std::optional<caf::timespan> arm;
  d.expire(ms(200), [&](std::shared_ptr<int>& x) {
    ++acted;
    CHECK(*x == 7);
    arm = d.start(ms(300), x).second; // e.g. a retry: fine while expiring
  });
  CHECK(acted == 1);
  CHECK(d.size() == 1);
  CHECK(arm == ms(300)); // the timer that fired is gone: the new ask arms its own
  CHECK_FALSE(d.next()); // and next() knows it is in flight
}

TEST_CASE("with timers fired as armed, every ask still open is acted on at its time and no "
          "earlier, whatever order asks end in",
          "[fifo_deadlines]") {
  // A model of the gateway: timers in flight (a multiset of times); at each step an ask starts
  // (all with the same timeout, so deadlines are in start order), one ends early (any of them,
  // out of order), or the earliest timer fires. Many asks in flight at once grow the ring.
  std::mt19937_64 rng{21};
  constexpr int64_t timeout = 40;
  for (int round = 0; round < 200; ++round) {
    fifo_deadlines<int> d;
    std::multiset<int64_t> timers;
    std::map<uint64_t, int64_t> live; // id -> deadline
    std::map<int, uint64_t> id_of;    // context -> id
    int64_t now = 0;
    int next_ctx = 0;
    size_t armed = 0, started = 0;
    for (int step = 0; step < 400; ++step) {
      auto pick = rng() % 10;
      if (pick < 5) {
        now += static_cast<int64_t>(rng() % 3); // time passes between asks
        auto ctx = next_ctx++;
        auto [id, arm] = d.start(ms(now + timeout), ctx);
        live[id] = now + timeout;
        id_of[ctx] = id;
        ++started;
        if (arm) {
          timers.insert(arm->count() / 1'000'000);
          ++armed;
        }
      } else if (pick < 8 && !live.empty()) {
        auto i = live.begin();
        std::advance(i, static_cast<long>(rng() % live.size()));
        CHECK(d.end(i->first));
        live.erase(i);
      } else if (!timers.empty()) {
        now = std::max(now, *timers.begin());
        timers.erase(timers.begin());
        d.expire(ms(now), [&](int& ctx) {
          auto id = id_of.at(ctx);
          REQUIRE(live.count(id) == 1);
          CHECK(live[id] <= now);
          live.erase(id);
        });
        if (auto t = d.next()) {
          timers.insert(t->count() / 1'000'000);
          ++armed;
        }
      }
      CHECK(d.size() == live.size());
      // A pending ask always has a timer in flight at or before its deadline.
      if (!live.empty()) {
        int64_t earliest = std::numeric_limits<int64_t>::max();
        for (auto& [id, at] : live)
          earliest = std::min(earliest, at);
        REQUIRE_FALSE(timers.empty());
        CHECK(*timers.begin() <= earliest);
      }
    }
    CHECK(armed <= started);
  }
}

TEST_CASE("steady load: one timer per timeout period and a ring the size of what is in flight",
          "[fifo_deadlines]") {
  // 10 000 asks, one every 100 us, each with a 5 s timeout, each answered 1 ms later.
  fifo_deadlines<int> d;
  std::multiset<int64_t> timers; // in microseconds
  size_t armed = 0;
  auto us = [](int64_t n) { return caf::timespan{std::chrono::microseconds(n)}; };
  std::vector<uint64_t> ids;
  for (int64_t i = 0; i < 10000; ++i) {
    auto now = i * 100;
    while (!timers.empty() && *timers.begin() <= now) {
      timers.erase(timers.begin());
      d.expire(us(now), [](int&) { FAIL("every ask ended long before its deadline"); });
      if (auto t = d.next()) {
        timers.insert(std::chrono::duration_cast<std::chrono::microseconds>(*t).count());
        ++armed;
      }
    }
    auto [id, arm] = d.start(us(now + 5'000'000), static_cast<int>(i));
    ids.push_back(id);
    if (arm) {
      timers.insert(std::chrono::duration_cast<std::chrono::microseconds>(*arm).count());
      ++armed;
    }
    if (i >= 10)
      CHECK(d.end(ids[static_cast<size_t>(i - 10)])); // the ask from 1 ms ago was answered
  }
  CHECK(armed == 1);         // 1 s of asks, all inside the first timer's 5 s
  CHECK(d.size() == 10);     // the last 10 are still open
  CHECK(d.capacity() == 16); // the ring never grew past what was in flight
}

TEST_CASE("asks ended behind a stuck one wait for it in the ring, which is given back once empty",
          "[fifo_deadlines]") {
  // A limiter that stops answering one ask: the 5 000 asks after it are answered at once, but
  // stay in the ring behind it until its timeout; then the ring empties and shrinks.
  fifo_deadlines<int> d;
  d.start(ms(1000), 0); // stuck
  for (int i = 1; i <= 5000; ++i) {
    auto id = d.start(ms(1000 + i / 10), i).first;
    CHECK(d.end(id));
  }
  CHECK(d.size() == 1);
  CHECK(d.capacity() >= 5001);
  CHECK(expire(d, 1000) == std::vector<int>{0});
  CHECK(d.size() == 0);
  CHECK(d.capacity() == 16);            // given back
  auto id = d.start(ms(2000), 7).first; // and it still works
  CHECK(d.end(id));
}
