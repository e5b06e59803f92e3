#include "actors/detail/rate_limit_table.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace bulwark::detail;
using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

rate_limit_config gcra_config(double rate_per_sec, uint32_t burst) {
  rate_limit_config cfg;
  cfg.rate_per_sec = rate_per_sec;
  cfg.burst = burst;
  return cfg;
}

rate_limit_config window_config(uint32_t limit, nanoseconds window) {
  rate_limit_config cfg;
  cfg.algorithm = rate_limit_algorithm::sliding_window;
  cfg.limit = limit;
  cfg.window = window;
  return cfg;
}

/// A budget that holds exactly `n` <= 16 keys of `key_length` bytes (the index stays at its
/// 16 buckets).
std::size_t budget_for(const rate_limit_config& cfg, std::size_t n, std::size_t key_length) {
  rate_limit_table probe{cfg};
  return 16 * 8 + n * probe.entry_bytes(key_length);
}

std::string key(const char* prefix, long i) {
  return prefix + std::to_string(i);
}

uint64_t total_evictions(const rate_limit_table& t) {
  return t.evictions(rate_limit_eviction::idle) + t.evictions(rate_limit_eviction::capacity) +
         t.evictions(rate_limit_eviction::pressure);
}

} // namespace

TEST_CASE("rate limit names are stable metric labels", "[rate_limiter]") {
  CHECK(std::string(to_string(rate_limit_algorithm::gcra)) == "gcra");
  CHECK(std::string(to_string(rate_limit_algorithm::sliding_window)) == "sliding_window");
  CHECK(std::string(to_string(rate_limit_overflow_policy::fail_closed)) == "fail_closed");
  CHECK(std::string(to_string(rate_limit_overflow_policy::fail_open)) == "fail_open");
  CHECK(std::string(to_string(rate_limit_outcome::allowed)) == "allowed");
  CHECK(std::string(to_string(rate_limit_outcome::limited)) == "limited");
  CHECK(std::string(to_string(rate_limit_outcome::overflow_allowed)) == "overflow_allowed");
  CHECK(std::string(to_string(rate_limit_outcome::overflow_limited)) == "overflow_limited");
  CHECK(std::string(to_string(rate_limit_outcome::open_allowed)) == "open_allowed");
  CHECK(std::string(to_string(rate_limit_eviction::idle)) == "idle");
  CHECK(std::string(to_string(rate_limit_eviction::capacity)) == "capacity");
  CHECK(std::string(to_string(rate_limit_eviction::pressure)) == "pressure");
}

TEST_CASE("an invalid rate limit config is refused with every problem named", "[rate_limiter]") {
  CHECK(validate(rate_limit_config{}).empty());
  CHECK(validate(window_config(100, 1s)).empty());
  rate_limit_config cfg;
  cfg.rate_per_sec = 0;
  cfg.burst = 0;
  cfg.overflow_rate_per_sec = 2e9;
  cfg.max_bytes = 100;
  cfg.idle_sweep_per_decision = 65;
  cfg.sketch_keys = std::size_t{1} << 31;
  auto problems = validate(cfg);
  REQUIRE(problems.size() == 6);
  CHECK(problems[0] == "rate_per_sec: must be in (0, 1e9], is 0");
  CHECK(problems[1] == "burst: must be >= 1, is 0");
  CHECK(problems[2] == "overflow_rate_per_sec: must be in (0, 1e9], is 2e+09");
  CHECK(problems[3] == "max_bytes: must be >= 256 (the smallest index and one entry with a 64-byte "
                       "key), is 100");
  CHECK(problems[4] == "idle_sweep_per_decision: must be in [0, 64], is 65");
  CHECK(problems[5] == "sketch_keys: must be <= 1073741824, is 2147483648");
  CHECK_THROWS_AS(rate_limit_table{cfg}, std::invalid_argument);

  auto slow = gcra_config(1e-6, 100); // a full burst refills in 1e8 s
  slow.overflow_burst = 0;
  problems = validate(slow);
  REQUIRE(problems.size() == 2);
  CHECK(problems[0] == "burst: burst / rate_per_sec (the time to refill a full burst) must be <= 1 "
                       "year (31536000 s), is 1e+08 s");
  CHECK(problems[1] == "overflow_burst: must be >= 1, is 0");

  auto window = window_config(0, 0s);
  window.rate_per_sec = -1;                                // not checked: gcra is not in use
  window.overflow = rate_limit_overflow_policy::fail_open; // the bucket is not in use either
  window.overflow_burst = 0;
  problems = validate(window);
  REQUIRE(problems.size() == 2);
  CHECK(problems[0] == "limit: must be in [1, 1000000], is 0");
  CHECK(problems[1] == "window: must be in (0, 31536000] s, is 0 s");
  window = window_config(100, 2s);
  window.max_bytes = 900; // one entry is 48 + 800 + 64 bytes
  problems = validate(window);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "max_bytes: must be >= 1056 (the smallest index and one entry with a "
                       "64-byte key), is 900");
}

TEST_CASE("gcra allows a burst at once, then one request per emission interval", "[rate_limiter]") {
  rate_limit_table t{gcra_config(10, 3)};
  CHECK(t.emission_interval() == 100ms);
  for (uint64_t left : {2, 1, 0}) {
    auto d = t.decide("a", 0s);
    CHECK(d.allowed);
    CHECK(d.outcome == rate_limit_outcome::allowed);
    CHECK(d.remaining == left);
    CHECK(d.retry_after == 0s);
  }
  auto d = t.decide("a", 0s);
  CHECK_FALSE(d.allowed);
  CHECK(d.outcome == rate_limit_outcome::limited);
  CHECK(d.retry_after == 100ms);
  CHECK(d.remaining == 0);
  d = t.decide("a", 100ms);
  CHECK(d.allowed);
  CHECK(d.remaining == 0);
  d = t.decide("a", 150ms);
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after == 50ms);
  d = t.decide("a", 250ms); // one interval has refilled since the last allowed request
  CHECK(d.allowed);
  CHECK(d.remaining == 0);
  CHECK(t.decide("b", 250ms).remaining == 2); // keys are independent
  d = t.decide("a", 10s);                     // long idle: a full burst again
  CHECK(d.allowed);
  CHECK(d.remaining == 2);
  CHECK(t.decisions(rate_limit_outcome::allowed) == 7);
  CHECK(t.decisions(rate_limit_outcome::limited) == 2);
}

TEST_CASE("a sliding window allows limit requests in any window and says when the next one fits",
          "[rate_limiter]") {
  rate_limit_table t{window_config(3, 1s)};
  CHECK(t.decide("a", 0ms).remaining == 2);
  CHECK(t.decide("a", 100ms).remaining == 1);
  CHECK(t.decide("a", 200ms).remaining == 0);
  auto d = t.decide("a", 500ms);
  CHECK_FALSE(d.allowed);
  CHECK(d.outcome == rate_limit_outcome::limited);
  CHECK(d.retry_after == 500ms);
  d = t.decide("a", 1s - 1ns);
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after == 1ns);
  d = t.decide("a", 1s); // the request at 0 has left (1 s − 1 s, 1 s]
  CHECK(d.allowed);
  CHECK(d.remaining == 0);
  d = t.decide("a", 1150ms); // 100 ms has left as well
  CHECK(d.allowed);
  CHECK(d.remaining == 0);
  d = t.decide("a", 1150ms);
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after == 50ms); // the oldest in the window is 200 ms
  d = t.decide("a", 3s);
  CHECK(d.allowed);
  CHECK(d.remaining == 2);
}

TEST_CASE("retry_after is exact: allowed at now + retry_after, refused one nanosecond earlier",
          "[rate_limiter]") {
  auto check_exact = [](rate_limit_table& t, const std::string& k, rate_limit_outcome refused) {
    std::mt19937_64 gen{7};
    nanoseconds now = 0s;
    int waits = 0;
    for (int i = 0; i < 2000; ++i) {
      now += nanoseconds{static_cast<int64_t>(gen() % 50'000'000)};
      auto d = t.decide(k, now);
      if (d.allowed)
        continue;
      REQUIRE(d.outcome == refused);
      REQUIRE(d.retry_after > 0ns);
      auto at = now + d.retry_after;
      auto early = t.decide(k, at - 1ns);
      REQUIRE_FALSE(early.allowed);
      REQUIRE(early.retry_after == 1ns);
      REQUIRE(t.decide(k, at).allowed);
      now = at;
      ++waits;
    }
    CHECK(waits > 100);
  };
  SECTION("gcra with a rate that does not divide a second") {
    rate_limit_table t{gcra_config(3, 4)};
    CHECK(t.emission_interval() == 333'333'334ns); // rounded up: never faster than 3/s
    check_exact(t, "a", rate_limit_outcome::limited);
  }
  SECTION("sliding window") {
    rate_limit_table t{window_config(5, 700ms)};
    check_exact(t, "a", rate_limit_outcome::limited);
  }
  SECTION("the overflow bucket") {
    auto cfg = gcra_config(1e-4, 1); // the held key stays busy for 10000 s
    cfg.overflow_rate_per_sec = 7;
    cfg.overflow_burst = 2;
    const std::string held(64, 'h');
    cfg.max_bytes = budget_for(cfg, 1, held.size());
    cfg.sketch_keys = 1 << 16; // halves only after 655360 requests: held stays as frequent as any
                               // newcomer
    rate_limit_table t{cfg};
    REQUIRE(t.decide(held, 0s).allowed); // fills the table
    // Every newcomer is a one-off, so it never beats the held key: the overflow bucket decides.
    std::mt19937_64 gen{11};
    nanoseconds now = 0s;
    int waits = 0;
    for (int i = 0; i < 2000; ++i) {
      now += nanoseconds{static_cast<int64_t>(gen() % 100'000)};
      auto d = t.decide(key("n", 3 * i), now);
      if (d.allowed) {
        REQUIRE(d.outcome == rate_limit_outcome::overflow_allowed);
        continue;
      }
      REQUIRE(d.outcome == rate_limit_outcome::overflow_limited);
      auto at = now + d.retry_after;
      REQUIRE_FALSE(t.decide(key("n", 3 * i + 1), at - 1ns).allowed);
      REQUIRE(t.decide(key("n", 3 * i + 2), at).allowed);
      now = at;
      ++waits;
    }
    CHECK(waits > 100);
    CHECK(t.keys() == 1);
  }
}

TEST_CASE("refused requests do not consume capacity", "[rate_limiter]") {
  SECTION("gcra: hammering every millisecond for 10 s gets exactly rate × 10 s + burst") {
    rate_limit_table t{gcra_config(10, 5)};
    int allowed = 0;
    for (int ms = 0; ms <= 10'000; ++ms)
      allowed += t.decide("hammer", std::chrono::milliseconds(ms)).allowed ? 1 : 0;
    CHECK(allowed == 105); // burst 5 at once, then one at every 100 ms up to 10 s
    CHECK(t.decisions(rate_limit_outcome::limited) == 10'001 - 105);
  }
  SECTION("sliding window: the same hammering gets limit per window") {
    rate_limit_table t{window_config(5, 1s)};
    int allowed = 0;
    for (int ms = 0; ms <= 10'000; ++ms)
      allowed += t.decide("hammer", std::chrono::milliseconds(ms)).allowed ? 1 : 0;
    CHECK(allowed == 51); // 5 at the start of each of 10 windows, and the first at 10 s
  }
}

TEST_CASE("gcra never allows more than rate * t + burst in any interval (random arrivals)",
          "[rate_limiter]") {
  // Rates are a / 4 per second so that the bound can be checked in exact integer arithmetic; the
  // reference is a token bucket in nanosecond credits, which GCRA must match decision for decision.
  std::mt19937_64 gen{20240601};
  auto uniform = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(gen() % static_cast<uint64_t>(hi - lo + 1));
  };
  int patterns = 0;
  long checked_windows = 0;
  long total_allowed = 0;
  long total_limited = 0;
  for (; patterns < 300; ++patterns) {
    const int64_t a = uniform(1, 8000);
    const auto burst = static_cast<uint32_t>(uniform(1, 20));
    rate_limit_table t{gcra_config(static_cast<double>(a) / 4, burst)};
    const int64_t interval = (4'000'000'000 + a - 1) / a; // ⌈1e9 / (a / 4)⌉
    REQUIRE(t.emission_interval().count() == interval);
    const int64_t span = interval * burst;
    struct reference {
      int64_t level;
      int64_t last;
      std::vector<int64_t> allowed;
    };
    std::map<int, reference> keys;
    int64_t now = uniform(0, 1'000'000'000);
    for (int i = 0; i < 600; ++i) {
      // Gaps: 15 % none, 55 % tiny, 25 % up to one interval, 5 % up to two full refills.
      const auto roll = uniform(0, 19);
      if (roll >= 19)
        now += uniform(0, 2 * span);
      else if (roll >= 14)
        now += uniform(0, interval);
      else if (roll >= 3)
        now += uniform(0, interval / 8 + 1);
      const int k = static_cast<int>(uniform(0, 2));
      auto [it, fresh] = keys.try_emplace(k, reference{span, now, {}});
      auto& ref = it->second;
      ref.level = std::min(span, ref.level + (now - ref.last));
      ref.last = now;
      const bool ref_allowed = ref.level >= interval;
      auto d = t.decide(key("key-", k), nanoseconds{now});
      REQUIRE(d.allowed == ref_allowed);
      if (ref_allowed) {
        ref.level -= interval;
        REQUIRE(d.remaining == static_cast<uint64_t>(ref.level / interval));
        ref.allowed.push_back(now);
        ++total_allowed;
      } else {
        REQUIRE(d.retry_after.count() == interval - ref.level);
        ++total_limited;
      }
      (void)fresh;
    }
    REQUIRE(now < 100'000'000'000'000);
    // Every window between two allowed timestamps of one key: n allowed in [ts_i, ts_j] must be
    // <= rate × (ts_j − ts_i) + burst, i.e. 4e9 × (n − burst) <= a × (ts_j − ts_i).
    for (auto& [k, ref] : keys) {
      const auto& ts = ref.allowed;
      for (std::size_t i = 0; i < ts.size(); ++i)
        for (std::size_t j = i; j < ts.size(); ++j) {
          // Both sides fit in int64_t: n <= 600, a <= 8000 and the pattern spans < 1e14 ns.
          const auto n = static_cast<int64_t>(j - i + 1);
          const int64_t lhs = (n - burst) * 4'000'000'000;
          const int64_t rhs = a * (ts[j] - ts[i]);
          if (lhs > rhs)
            FAIL("key " << k << ": " << n << " allowed within " << ts[j] - ts[i] << " ns at rate "
                        << a / 4.0 << "/s, burst " << burst);
          ++checked_windows;
        }
    }
  }
  CHECK(patterns == 300);
  CHECK(checked_windows > 1'000'000);
  CHECK(total_allowed > 20'000); // both outcomes are common, so the test can fail either way
  CHECK(total_limited > 20'000);
}

TEST_CASE("a sliding window never allows more than limit in any window (random arrivals)",
          "[rate_limiter]") {
  std::mt19937_64 gen{424242};
  auto uniform = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(gen() % static_cast<uint64_t>(hi - lo + 1));
  };
  long checked_windows = 0;
  long total_allowed = 0;
  long total_limited = 0;
  for (int pattern = 0; pattern < 300; ++pattern) {
    const auto limit = static_cast<uint32_t>(uniform(1, 20));
    const int64_t window = uniform(1'000'000, 2'000'000'000);
    rate_limit_table t{window_config(limit, nanoseconds{window})};
    std::map<int, std::vector<int64_t>> allowed; // the reference: every allowed timestamp
    const int64_t step = window / limit;
    int64_t now = uniform(0, 1'000'000'000);
    for (int i = 0; i < 600; ++i) {
      const auto roll = uniform(0, 19); // as for gcra, with step = window / limit
      if (roll >= 19)
        now += uniform(0, 2 * window);
      else if (roll >= 14)
        now += uniform(0, step);
      else if (roll >= 3)
        now += uniform(0, step / 8 + 1);
      const int k = static_cast<int>(uniform(0, 2));
      auto& ts = allowed[k];
      // In (now − window, now]:
      auto in_window =
          static_cast<uint32_t>(ts.end() - std::upper_bound(ts.begin(), ts.end(), now - window));
      const bool ref_allowed = in_window < limit;
      auto d = t.decide(key("key-", k), nanoseconds{now});
      REQUIRE(d.allowed == ref_allowed);
      if (ref_allowed) {
        ts.push_back(now);
        REQUIRE(d.remaining == limit - in_window - 1);
        ++total_allowed;
      } else {
        // The oldest of the last `limit` allowed leaves the window at oldest + window.
        REQUIRE(d.retry_after.count() == ts[ts.size() - limit] + window - now);
        ++total_limited;
      }
    }
    // Every window [ts_i, ts_j] shorter than `window` holds at most `limit` allowed requests.
    for (auto& [k, ts] : allowed)
      for (std::size_t i = 0; i < ts.size(); ++i)
        for (std::size_t j = i; j < ts.size() && ts[j] - ts[i] < window; ++j) {
          if (j - i + 1 > limit)
            FAIL("key " << k << ": " << j - i + 1 << " allowed within " << ts[j] - ts[i]
                        << " ns, window " << window << " ns, limit " << limit);
          ++checked_windows;
        }
  }
  CHECK(checked_windows > 100'000);
  CHECK(total_allowed > 20'000);
  CHECK(total_limited > 20'000);
}

TEST_CASE("idle keys expire from the least recently used end, losing nothing", "[rate_limiter]") {
  SECTION("expire drops a gcra key exactly when its TAT is reached") {
    rate_limit_table t{gcra_config(10, 5)}; // T = 100 ms, horizon 500 ms
    t.decide("a", 0ms);                     // TAT 100 ms
    for (int i = 0; i < 5; ++i)
      t.decide("b", 50ms); // TAT 550 ms
    REQUIRE(t.keys() == 2);
    REQUIRE(t.next_expiry() == nanoseconds{100ms});
    CHECK(t.expire(100ms - 1ns) == 0);
    CHECK(t.expire(100ms) == 1);
    CHECK_FALSE(t.contains("a"));
    CHECK(t.contains("b"));
    CHECK(t.next_expiry() == nanoseconds{550ms});
    CHECK(t.expire(550ms - 1ns) == 0);
    CHECK(t.expire(550ms) == 1);
    CHECK(t.keys() == 0);
    CHECK(t.bytes() == t.index_bytes()); // entries gone; the index stays until set_max_bytes
    CHECK_FALSE(t.next_expiry());
    CHECK(t.evictions(rate_limit_eviction::idle) == 2);
    CHECK(t.decide("b", 550ms).remaining == 4); // exactly a new key
  }
  SECTION("a sliding-window key is idle once its newest request has left the window") {
    rate_limit_table t{window_config(3, 1s)};
    t.decide("a", 0ms);
    t.decide("a", 300ms);
    CHECK(t.next_expiry() == nanoseconds{1300ms});
    CHECK(t.expire(1300ms - 1ns) == 0);
    CHECK(t.expire(1300ms) == 1);
    CHECK(t.keys() == 0);
  }
  SECTION("each decision drops at most idle_sweep_per_decision idle keys") {
    auto cfg = gcra_config(10, 1);
    cfg.idle_sweep_per_decision = 2;
    rate_limit_table t{cfg};
    for (int i = 0; i < 10; ++i)
      t.decide(key("k", i), 0ms);
    REQUIRE(t.keys() == 10);
    t.decide("z", 1s); // sweeps two, inserts z
    CHECK(t.keys() == 9);
    CHECK_FALSE(t.contains("k0"));
    CHECK_FALSE(t.contains("k1"));
    CHECK(t.contains("k2"));
    t.decide("z", 1s); // a known key: sweeps two more
    CHECK(t.keys() == 7);
    CHECK(t.expire(1s, 3) == 3);
    CHECK(t.keys() == 4);
    CHECK(t.expire(1s) == 3); // z (TAT 1.1 s) stops the sweep
    CHECK(t.keys() == 1);
    CHECK(t.contains("z"));
    CHECK(t.evictions(rate_limit_eviction::idle) == 10);
  }
  SECTION("a busier LRU key holds idle ones back for at most its horizon") {
    rate_limit_table t{gcra_config(10, 5)}; // horizon 500 ms
    for (int i = 0; i < 5; ++i)
      t.decide("busy", 0ms); // TAT 500 ms
    t.decide("quiet", 1ms);  // TAT 101 ms, but behind busy in LRU order
    CHECK(t.expire(200ms) == 0);
    CHECK(t.keys() == 2);
    CHECK(t.expire(500ms) == 2); // both are gone within the horizon of their last request
  }
}

TEST_CASE("a flood of one-off keys does not evict established active keys", "[rate_limiter]") {
  // Established keys make 5 requests each first (their burst: rate 1/s, so nothing refills during
  // the run), then keep asking, interleaved with a flood of one-off keys. Nobody turns idle during
  // the run (horizon 5 s, the runs last < 1 s), so only frequency decides who gets a place. An
  // established key whose state were lost would be allowed again: each must end with exactly 5.
  auto run = [](rate_limit_table& t, int established, int flood_per_request, long requests) {
    std::vector<int> allowed(static_cast<std::size_t>(established), 0);
    nanoseconds now = 0s;
    for (int r = 0; r < 5; ++r)
      for (int k = 0; k < established; ++k) {
        now += 1us;
        REQUIRE(t.decide(key("established-", k), now).allowed);
        ++allowed[static_cast<std::size_t>(k)];
      }
    long one_off = 0;
    for (long i = 0; i < requests; ++i) {
      now += 1us;
      auto k = static_cast<int>(i % established);
      auto d = t.decide(key("established-", k), now);
      if (d.outcome != rate_limit_outcome::allowed && d.outcome != rate_limit_outcome::limited)
        FAIL("established key " << k << " lost its place before request " << i);
      allowed[static_cast<std::size_t>(k)] += d.allowed ? 1 : 0;
      for (int f = 0; f < flood_per_request; ++f) {
        now += 1us;
        t.decide(key("flood-", one_off++), now);
      }
    }
    for (int k = 0; k < established; ++k) {
      CHECK(t.contains(key("established-", k)));
      CHECK(allowed[static_cast<std::size_t>(k)] == 5);
    }
    CHECK(t.bytes() <= t.max_bytes());
    CHECK(t.evictions(rate_limit_eviction::idle) == 0);
    return one_off;
  };
  SECTION("a table full of established keys: every newcomer meets one at the LRU end") {
    auto cfg = gcra_config(1, 5);
    cfg.max_bytes = budget_for(cfg, 8, 14); // exactly the 8 established keys
    rate_limit_table t{cfg};
    auto flood = run(t, 8, 1, 100'000);
    CHECK(t.keys() == 8);
    CHECK(t.evictions(rate_limit_eviction::capacity) == 0);
    CHECK(t.decisions(rate_limit_outcome::overflow_allowed) +
              t.decisions(rate_limit_outcome::overflow_limited) ==
          static_cast<uint64_t>(flood));
  }
  SECTION("a larger table: the flood churns through the rest of it") {
    auto cfg = gcra_config(1, 5);
    cfg.max_bytes = 90'000; // 1022 keys of 80 bytes and 1024 buckets
    rate_limit_table t{cfg};
    auto flood = run(t, 100, 10, 50'000);
    CHECK(t.keys() == 1022);
    // The rest of the table turned over many times (plain LRU would have let all 500'000 in and
    // pushed the established keys out every 1100 requests), yet the established keys stayed.
    CHECK(t.evictions(rate_limit_eviction::capacity) > 20 * 1022);
    CHECK(t.inserted() < static_cast<uint64_t>(flood) / 4);
  }
}

TEST_CASE("a newcomer more frequent than the least recently used key takes its place",
          "[rate_limiter]") {
  auto cfg = gcra_config(1, 3); // horizon 3 s: nobody turns idle
  cfg.max_bytes = budget_for(cfg, 8, 4);
  rate_limit_table t{cfg};
  for (int i = 0; i < 8; ++i)
    REQUIRE(t.decide(key("k00", i), 0ms).outcome == rate_limit_outcome::allowed);
  REQUIRE(t.keys() == 8);
  REQUIRE(t.bytes() == t.max_bytes());
  // Seen once, like the LRU key: no place.
  auto d = t.decide("newc", 1ms);
  CHECK(d.outcome == rate_limit_outcome::overflow_allowed);
  CHECK_FALSE(t.contains("newc"));
  CHECK(t.contains("k000"));
  // Seen twice, more than the LRU key: it takes k000's place with a fresh state.
  d = t.decide("newc", 2ms);
  CHECK(d.outcome == rate_limit_outcome::allowed);
  CHECK(d.remaining == 2);
  CHECK(t.contains("newc"));
  CHECK_FALSE(t.contains("k000"));
  CHECK(t.evictions(rate_limit_eviction::capacity) == 1);
  CHECK(t.keys() == 8);
  CHECK(t.bytes() <= t.max_bytes());
}

TEST_CASE("keys without a place share the overflow bucket (fail_closed) or pass (fail_open)",
          "[rate_limiter]") {
  auto cfg = gcra_config(1, 3);
  cfg.overflow_rate_per_sec = 10;
  cfg.overflow_burst = 3;
  cfg.max_bytes = budget_for(cfg, 8, 4);
  SECTION("fail_closed") {
    rate_limit_table t{cfg};
    for (int i = 0; i < 8; ++i)
      t.decide(key("k00", i), 0ms);
    std::vector<uint64_t> remaining;
    for (int i = 0; i < 3; ++i) {
      auto d = t.decide(key("new-", i), 1ms);
      CHECK(d.allowed);
      CHECK(d.outcome == rate_limit_outcome::overflow_allowed);
      remaining.push_back(d.remaining);
    }
    CHECK(remaining == std::vector<uint64_t>{2, 1, 0});
    auto d = t.decide("new-3", 1ms);
    CHECK_FALSE(d.allowed);
    CHECK(d.outcome == rate_limit_outcome::overflow_limited);
    CHECK(d.retry_after == 100ms);
    CHECK(t.decide("new-4", 101ms).outcome == rate_limit_outcome::overflow_allowed);
    CHECK(t.keys() == 8);
    CHECK_FALSE(t.contains("new-0"));
    CHECK(t.decisions(rate_limit_outcome::overflow_allowed) == 4);
    CHECK(t.decisions(rate_limit_outcome::overflow_limited) == 1);
  }
  SECTION("fail_open") {
    cfg.overflow = rate_limit_overflow_policy::fail_open;
    rate_limit_table t{cfg};
    for (int i = 0; i < 8; ++i)
      t.decide(key("k00", i), 0ms);
    for (int i = 0; i < 20; ++i) {
      auto d = t.decide(key("new-", i), 1ms);
      CHECK(d.allowed);
      CHECK(d.outcome == rate_limit_outcome::open_allowed);
      CHECK(d.retry_after == 0s);
      CHECK(d.remaining == 2); // as a new key would see it
    }
    CHECK(t.keys() == 8);
    CHECK(t.decisions(rate_limit_outcome::open_allowed) == 20);
    CHECK(t.decisions(rate_limit_outcome::overflow_allowed) == 0);
  }
}

TEST_CASE("the key table stays within max_bytes through a million distinct keys",
          "[rate_limiter]") {
  auto cfg = gcra_config(1, 1); // horizon 1 s
  cfg.max_bytes = 256 * 1024;
  rate_limit_table t{cfg};
  const std::string long_tail(200, 'x');
  auto name = [&](long i) { return i % 1000 == 0 ? long_tail + std::to_string(i) : key("k", i); };
  constexpr long n = 1'000'000;
  nanoseconds now = 0s;
  std::size_t max_keys = 0;
  for (long i = 0; i < n; ++i) {
    // The first half within 0.5 s (nobody idles: capacity and overflow), then 100 µs apart (keys
    // turn idle after a second, before the flood churns them out: idle drops).
    now += i < n / 2 ? 1us : 100us;
    t.decide(name(i), now);
    if (t.bytes() > t.max_bytes())
      FAIL("step " << i << ": " << t.bytes() << " bytes > " << t.max_bytes());
    if (t.keys() != t.inserted() - total_evictions(t))
      FAIL("step " << i << ": " << t.keys() << " keys, " << t.inserted() << " inserted, "
                   << total_evictions(t) << " evicted");
    max_keys = std::max(max_keys, t.keys());
  }
  // Every key still in the table is charged, and nothing else is.
  std::size_t found = 0;
  std::size_t charged = t.index_bytes();
  for (long i = 0; i < n; ++i) {
    auto k = name(i);
    if (t.contains(k)) {
      ++found;
      charged += t.entry_bytes(k.size());
    }
  }
  CHECK(found == t.keys());
  CHECK(charged == t.bytes());
  CHECK(max_keys > 2500); // ~80 bytes per key + the index
  CHECK(t.bytes() > t.max_bytes() * 3 / 4);
  CHECK(t.evictions(rate_limit_eviction::idle) > 100'000);
  CHECK(t.evictions(rate_limit_eviction::capacity) > 0);
  CHECK(t.decisions(rate_limit_outcome::overflow_allowed) +
            t.decisions(rate_limit_outcome::overflow_limited) >
        0);
}

TEST_CASE("set_max_bytes shrinks the table idle keys first and a larger budget restores it",
          "[rate_limiter]") {
  auto cfg = gcra_config(1, 20); // T = 1 s
  cfg.idle_sweep_per_decision = 0;
  cfg.max_bytes = 128 * 1024; // about 1790 keys of 5 bytes (64 bytes each) and the index
  rate_limit_table t{cfg};
  auto name = [](char prefix, int i) { // 5 bytes: prefix and 4 digits
    auto digits = std::to_string(10000 + i);
    return prefix + digits.substr(digits.size() - 4);
  };
  // LRU order: "stick" (busy until 20 s), k0000..k0199 (idle from 1 s), k0200..k1498 (at 10 s).
  for (int i = 0; i < 20; ++i)
    t.decide("stick", 0s);
  for (int i = 0; i < 200; ++i)
    t.decide(name('k', i), 0s);
  for (int i = 200; i < 1499; ++i)
    REQUIRE(t.decide(name('k', i), 10s).outcome == rate_limit_outcome::allowed);
  REQUIRE(t.keys() == 1500);
  REQUIRE(t.index_bytes() == 2048 * 8);
  const auto full_bytes = t.bytes();
  REQUIRE(full_bytes == 1500 * 64 + 2048 * 8);

  // Ten keys less: the ten least recently used idle keys go, not the busy "stick" before them.
  t.set_max_bytes(full_bytes - 10 * 64, 10s);
  CHECK(t.keys() == 1490);
  CHECK(t.contains("stick"));
  CHECK_FALSE(t.contains("k0009"));
  CHECK(t.contains("k0010"));
  CHECK(t.evictions(rate_limit_eviction::idle) == 10);
  CHECK(t.evictions(rate_limit_eviction::pressure) == 0);

  // Half: 750 keys (48000 bytes) and an index of 1024 buckets (8192 bytes) fit in 56192.
  t.set_max_bytes(full_bytes / 2, 10s);
  CHECK(t.max_bytes() == full_bytes / 2);
  CHECK(t.bytes() == full_bytes / 2);
  CHECK(t.keys() == 750);
  CHECK(t.index_bytes() == 1024 * 8);                       // the index shrank with the keys
  CHECK(t.evictions(rate_limit_eviction::idle) == 200);     // every idle key went first...
  CHECK(t.evictions(rate_limit_eviction::pressure) == 550); // ...then the least recently used
  CHECK_FALSE(t.contains("k0000"));
  CHECK_FALSE(t.contains("stick"));
  CHECK_FALSE(t.contains("k0748"));
  CHECK(t.contains("k0749"));
  CHECK(t.contains("k1498"));
  CHECK(t.keys() == t.inserted() - total_evictions(t));

  // Under the smaller budget a new one-off key finds no place.
  CHECK(t.decide("x0000", 10s).outcome == rate_limit_outcome::overflow_allowed);

  // The full budget again: 750 more keys find a place, nobody is evicted.
  t.set_max_bytes(cfg.max_bytes, 10s);
  for (int i = 0; i < 750; ++i)
    REQUIRE(t.decide(name('r', i), 10s).outcome == rate_limit_outcome::allowed);
  CHECK(t.keys() == 1500);
  CHECK(t.bytes() == full_bytes);
  CHECK(total_evictions(t) == 750);

  t.set_max_bytes(0, 12s); // everything out: every request overflows
  CHECK(t.keys() == 0);
  CHECK(t.bytes() == 0);
  CHECK(t.evictions(rate_limit_eviction::pressure) == 550); // at 12 s all of them were idle
  CHECK(t.evictions(rate_limit_eviction::idle) == 200 + 1500);
  CHECK(t.decide("k9999", 12s).outcome == rate_limit_outcome::overflow_allowed);
}

TEST_CASE("a request costing n units is decided as n requests at once, all or none",
          "[rate_limiter]") {
  SECTION("gcra") {
    rate_limit_table t{gcra_config(10, 10)}; // T = 100 ms, τ = 900 ms
    auto d = t.decide("a", 0ms, 4);
    CHECK(d.allowed);
    CHECK(d.remaining == 6);
    d = t.decide("a", 0ms, 7); // 6 left: refused, and nothing is taken
    CHECK_FALSE(d.allowed);
    CHECK(d.retry_after == 100ms);
    CHECK(t.decide("a", 100ms - 1ns, 7).retry_after == 1ns);
    d = t.decide("a", 100ms, 7);
    CHECK(d.allowed);
    CHECK(d.remaining == 0);
    // More than the burst could never pass: it costs the burst (a full bucket admits it).
    d = t.decide("b", 0ms, 25);
    CHECK(d.allowed);
    CHECK(d.remaining == 0);
    CHECK(t.decide("c", 0ms, 0).remaining == 9); // a cost of 0 counts as 1
  }
  SECTION("sliding window") {
    rate_limit_table t{window_config(5, 1s)};
    auto d = t.decide("a", 0ms, 3);
    CHECK(d.allowed);
    CHECK(d.remaining == 2);
    d = t.decide("a", 100ms, 3); // two places left; the third frees when 0 leaves the window
    CHECK_FALSE(d.allowed);
    CHECK(d.retry_after == 900ms);
    d = t.decide("a", 100ms, 2);
    CHECK(d.allowed);
    CHECK(d.remaining == 0);
    d = t.decide("a", 1s, 3); // the three at 0 have left (0, 1 s]
    CHECK(d.allowed);
    CHECK(d.remaining == 0);
    CHECK(t.decide("b", 0ms, 9).allowed); // above the limit: costs the limit
    CHECK_FALSE(t.decide("b", 1ms, 1).allowed);
  }
  SECTION("the overflow bucket") {
    auto cfg = gcra_config(1e-4, 1);
    cfg.overflow_rate_per_sec = 10;
    cfg.overflow_burst = 4;
    const std::string held(64, 'h');
    cfg.max_bytes = budget_for(cfg, 1, held.size());
    cfg.sketch_keys = 1 << 16;
    rate_limit_table t{cfg};
    REQUIRE(t.decide(held, 0s).allowed);
    auto d = t.decide("newcomer", 0s, 3);
    CHECK(d.outcome == rate_limit_outcome::overflow_allowed);
    CHECK(d.remaining == 1);
    d = t.decide("another", 0s, 2);
    CHECK(d.outcome == rate_limit_outcome::overflow_limited);
    CHECK(d.retry_after == 100ms);
  }
}

TEST_CASE("weighted requests keep the limits exact (random arrivals and costs)", "[rate_limiter]") {
  std::mt19937_64 gen{8080};
  auto uniform = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(gen() % static_cast<uint64_t>(hi - lo + 1));
  };
  for (bool window : {false, true}) {
    for (int pattern = 0; pattern < 40; ++pattern) {
      const auto capacity = static_cast<uint32_t>(uniform(1, 30));
      const int64_t span = uniform(10'000'000, 1'000'000'000);
      auto cfg = window ? window_config(capacity, nanoseconds{span})
                        : gcra_config(1e9 * capacity / static_cast<double>(span), capacity);
      rate_limit_table t{cfg};
      const int64_t interval = t.emission_interval().count();
      std::vector<std::pair<int64_t, uint32_t>> allowed; // (time, units)
      int64_t now = 0;
      int exact = 0;
      for (int i = 0; i < 400; ++i) {
        now += uniform(0, 2 * span / capacity);
        const auto cost = static_cast<uint32_t>(uniform(1, capacity));
        auto d = t.decide("k", nanoseconds{now}, cost);
        if (!d.allowed) {
          // Exact: refused 1 ns before now + retry_after, allowed at it (with the same cost).
          auto at = now + d.retry_after.count();
          REQUIRE(d.retry_after.count() > 0);
          REQUIRE_FALSE(t.decide("k", nanoseconds{at - 1}, cost).allowed);
          REQUIRE(t.decide("k", nanoseconds{at}, cost).allowed);
          now = at;
          ++exact;
        }
        allowed.emplace_back(now, cost);
      }
      CHECK(exact > 20);
      // The bound, counting units: any window holds at most `limit` (sliding window); any
      // interval [a, b] at most (b − a) / T + burst (gcra).
      for (std::size_t i = 0; i < allowed.size(); ++i) {
        uint64_t units = 0;
        for (std::size_t j = i; j < allowed.size(); ++j) {
          auto dt = allowed[j].first - allowed[i].first;
          if (window && dt >= span)
            break;
          units += allowed[j].second;
          uint64_t most = window ? capacity : static_cast<uint64_t>(dt / interval) + capacity;
          if (units > most)
            FAIL((window ? "window" : "gcra")
                 << ": " << units << " units within " << dt << " ns, at most " << most);
        }
      }
    }
  }
}
