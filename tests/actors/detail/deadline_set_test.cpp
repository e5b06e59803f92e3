#include "actors/detail/deadline_set.hpp"

#include <catch2/catch.hpp>

#include <limits>
#include <map>
#include <random>
#include <set>

using namespace bulwark;
using namespace bulwark::detail;
using std::chrono::milliseconds;

namespace {

constexpr caf::timespan ms(int64_t n) {
  return milliseconds(n);
}

} // namespace

TEST_CASE("deadlines later than the armed timer need no new timer", "[deadline_set]") {
  deadline_set d;
  CHECK(d.set(1, ms(100)) == ms(100)); // nothing in flight: arm for 100
  CHECK_FALSE(d.set(2, ms(110)));      // fires after 100: the timer at 100 covers it
  CHECK_FALSE(d.set(3, ms(100)));      // the same time: covered
  CHECK(d.set(4, ms(50)) == ms(50));   // earlier: a new timer
  CHECK(d.armed() == ms(50));
  CHECK(d.size() == 4);
}

TEST_CASE("a fired timer takes exactly the due deadlines and asks for the next one",
          "[deadline_set]") {
  deadline_set d;
  d.set(1, ms(100));
  d.set(2, ms(110));
  d.set(3, ms(120));
  d.erase(2);                      // ended in time
  CHECK(d.expire(ms(99)).empty()); // a stale timer: nothing due, the one at 100 still in flight
  CHECK_FALSE(d.next());
  CHECK(d.expire(ms(100)) == std::vector<uint64_t>{1});
  CHECK(d.next() == ms(120)); // 2 is gone: the next timer is for 3
  CHECK_FALSE(d.next());      // asked twice: armed once
  CHECK(d.expire(ms(130)) == std::vector<uint64_t>{3});
  CHECK_FALSE(d.next()); // empty: no timer
  CHECK(d.size() == 0);
}

TEST_CASE("moving a deadline replaces it", "[deadline_set]") {
  deadline_set d;
  d.set(1, ms(100));
  CHECK_FALSE(d.set(1, ms(300))); // later: the timer at 100 fires first and re-arms
  CHECK(d.size() == 1);
  CHECK(d.expire(ms(100)).empty());
  CHECK(d.next() == ms(300));
  CHECK(d.expire(ms(300)) == std::vector<uint64_t>{1});
  d.erase(7); // unknown: ignored
  CHECK_FALSE(d.contains(1));
}

TEST_CASE("with timers fired as armed, every deadline is taken at its time and no earlier",
          "[deadline_set]") {
  // A model of the actor: timers in flight (a multiset of times); at each step either a new
  // deadline is set, one ends early, or the earliest timer fires. Every deadline that did not end
  // must be expired by the first timer at or after it, never before it.
  std::mt19937_64 rng{12};
  for (int round = 0; round < 200; ++round) {
    deadline_set d;
    std::multiset<int64_t> timers;
    std::map<uint64_t, int64_t> live; // id -> deadline
    int64_t now = 0;
    uint64_t next_id = 1;
    size_t armed = 0, set = 0;
    for (int step = 0; step < 300; ++step) {
      auto pick = rng() % 10;
      if (pick < 5) {
        auto at = now + static_cast<int64_t>(rng() % 50);
        auto id = next_id++;
        live[id] = at;
        ++set;
        if (auto t = d.set(id, ms(at))) {
          timers.insert(t->count() / 1'000'000);
          ++armed;
        }
      } else if (pick < 7 && !live.empty()) {
        auto i = live.begin();
        std::advance(i, static_cast<long>(rng() % live.size()));
        d.erase(i->first);
        live.erase(i);
      } else if (!timers.empty()) {
        now = std::max(now, *timers.begin());
        timers.erase(timers.begin());
        for (auto id : d.expire(ms(now))) {
          REQUIRE(live.count(id) == 1);
          CHECK(live[id] <= now);
          live.erase(id);
        }
        if (auto t = d.next()) {
          timers.insert(t->count() / 1'000'000);
          ++armed;
        }
      }
      // Whatever is still pending and due by the earliest timer in flight gets expired then: a
      // pending deadline always has a timer in flight at or before it.
      if (!live.empty()) {
        int64_t earliest = std::numeric_limits<int64_t>::max();
        for (auto& [id, at] : live)
          earliest = std::min(earliest, at);
        REQUIRE_FALSE(timers.empty());
        CHECK(*timers.begin() <= earliest);
      }
    }
    CHECK(armed <= set); // never more timers than deadlines
  }
}

TEST_CASE("steady load with one timeout arms about one timer per timeout period",
          "[deadline_set]") {
  // 10 000 calls, one every 100 us, each with the same 5 s timeout, each ending after 1 ms: the
  // timer armed for the first deadline covers every later one until it fires.
  deadline_set d;
  std::multiset<int64_t> timers; // in microseconds
  size_t armed = 0;
  auto us = [](int64_t n) { return caf::timespan{std::chrono::microseconds(n)}; };
  for (int64_t i = 0; i < 10000; ++i) {
    auto now = i * 100;
    while (!timers.empty() && *timers.begin() <= now) {
      timers.erase(timers.begin());
      CHECK(d.expire(us(now)).empty()); // every call ended long before its deadline
      if (auto t = d.next()) {
        timers.insert(std::chrono::duration_cast<std::chrono::microseconds>(*t).count());
        ++armed;
      }
    }
    if (auto t = d.set(static_cast<uint64_t>(i), us(now + 5'000'000))) {
      timers.insert(std::chrono::duration_cast<std::chrono::microseconds>(*t).count());
      ++armed;
    }
    if (i >= 10)
      d.erase(static_cast<uint64_t>(i - 10)); // the call from 1 ms ago ended
  }
  CHECK(armed == 1); // 1 s of calls, all inside the first timer's 5 s
}

TEST_CASE("expiring, moving and erasing give exactly what a sorted set of (deadline, id) gives",
          "[deadline_set]") {
  // The heap and its index against the obvious reference, over random operations: new
  // deadlines, moves of pending ones (earlier or later), erases (known and unknown ids), and
  // expiries at random times; ties in deadline go by id, as in the reference.
  std::mt19937_64 rng{7};
  for (int round = 0; round < 100; ++round) {
    deadline_set d;
    std::set<std::pair<int64_t, uint64_t>> ref;
    std::map<uint64_t, int64_t> at;
    uint64_t next_id = 1;
    int64_t now = 0;
    for (int step = 0; step < 2000; ++step) {
      auto pick = rng() % 10;
      if (pick < 4 || at.empty()) {
        auto t = now + static_cast<int64_t>(rng() % 20);
        auto id = next_id++;
        d.set(id, ms(t));
        ref.emplace(t, id);
        at[id] = t;
      } else if (pick < 6) {
        auto i = at.begin();
        std::advance(i, static_cast<long>(rng() % at.size()));
        auto t = now + static_cast<int64_t>(rng() % 20);
        ref.erase({i->second, i->first});
        ref.emplace(t, i->first);
        i->second = t;
        d.set(i->first, ms(t));
      } else if (pick < 8) {
        auto id = 1 + rng() % (next_id + 5); // some never set, some gone
        if (auto i = at.find(id); i != at.end()) {
          ref.erase({i->second, id});
          at.erase(i);
        }
        d.erase(id);
      } else {
        now += static_cast<int64_t>(rng() % 5);
        std::vector<uint64_t> want;
        while (!ref.empty() && ref.begin()->first <= now) {
          want.push_back(ref.begin()->second);
          at.erase(ref.begin()->second);
          ref.erase(ref.begin());
        }
        REQUIRE(d.expire(ms(now)) == want);
      }
      REQUIRE(d.size() == ref.size());
    }
    for (auto& [id, t] : at)
      CHECK(d.contains(id));
  }
}

TEST_CASE("steady load allocates nothing once the storage has grown to what is pending",
          "[deadline_set]") {
  // 100 000 deadlines set and erased with at most 50 pending: the storage stops growing.
  deadline_set d;
  for (uint64_t id = 1; id <= 100; ++id)
    d.set(id, ms(static_cast<int64_t>(id)));
  for (uint64_t id = 1; id <= 100; ++id)
    d.erase(id);
  auto room = d.capacity();
  CHECK(room >= 50);
  for (uint64_t id = 101; id <= 100'100; ++id) {
    d.set(id, ms(static_cast<int64_t>(id % 977)));
    if (id >= 150)
      d.erase(id - 49);
  }
  CHECK(d.size() == 49);
  CHECK(d.capacity() == room);
}
