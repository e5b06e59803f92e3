#include "actors/detail/breaker_core.hpp"

#include <catch2/catch.hpp>

#include <stdexcept>

using namespace bulwark::detail;
using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

/// Reports one permitted call made at `now`.
void call(breaker_core& b, bool success, nanoseconds now, nanoseconds took = 10ms) {
  auto a = b.try_acquire(now);
  REQUIRE(a.permitted);
  b.on_result(a.epoch, success, took, now);
}

/// Opens a default-configured breaker at `now`: 20 failures (the minimum number of calls).
void trip(breaker_core& b, nanoseconds now) {
  for (int i = 0; i < 20; ++i)
    call(b, false, now);
  REQUIRE(b.state() == breaker_state::open);
}

/// Waits out an open breaker, then fails probes until it reopens. Returns the new wait.
nanoseconds fail_probes(breaker_core& b) {
  auto now = b.open_until();
  while (b.state() != breaker_state::open || now >= b.open_until()) {
    auto a = b.try_acquire(now);
    REQUIRE(a.probe);
    b.on_result(a.epoch, false, 10ms, now);
  }
  return b.open_until() - now;
}

} // namespace

TEST_CASE("breaker states have stable names and metric values", "[breaker]") {
  CHECK(std::string(to_string(breaker_state::closed)) == "closed");
  CHECK(std::string(to_string(breaker_state::open)) == "open");
  CHECK(std::string(to_string(breaker_state::half_open)) == "half_open");
  CHECK(static_cast<int>(breaker_state::closed) == 0);
  CHECK(static_cast<int>(breaker_state::open) == 1);
  CHECK(static_cast<int>(breaker_state::half_open) == 2);
}

TEST_CASE("a breaker stays closed below the minimum number of calls even when all fail",
          "[breaker]") {
  double u = 0.5;
  breaker_core b{{}, [&] { return u; }};
  for (int i = 0; i < 19; ++i)
    call(b, false, 1s);
  CHECK(b.state() == breaker_state::closed);
  auto w = b.window(1s);
  CHECK(w.calls == 19);
  CHECK(w.failures == 19);
  CHECK_FALSE(b.last_transition());
}

TEST_CASE("a breaker opens when the failure rate reaches its threshold and says why", "[breaker]") {
  double u = 0.5; // jitter factor exactly 1
  breaker_core b{{}, [&] { return u; }};
  auto t = 100ms;
  for (int i = 0; i < 6; ++i)
    call(b, true, t);
  for (int i = 0; i < 3; ++i)
    call(b, true, t, 1s); // slow successes: slow, but not failed
  for (int i = 0; i < 10; ++i)
    call(b, false, t);
  REQUIRE(b.state() == breaker_state::closed); // 10 of 19 calls failed: below minimum_calls
  call(b, false, t);
  CHECK(b.state() == breaker_state::open);
  CHECK(b.open_until() == t + 5s);
  CHECK(b.consecutive_opens() == 1);
  CHECK(b.transitions_to(breaker_state::open) == 1);
  REQUIRE(b.last_transition());
  auto& x = *b.last_transition();
  CHECK(x.from == breaker_state::closed);
  CHECK(x.to == breaker_state::open);
  CHECK(x.at == t);
  CHECK(x.reason == "failure rate 0.55 >= 0.50 over 20 calls (11 failed, 3 slow); open for 5.000 s "
                    "(consecutive open 1)");
}

TEST_CASE("the failure rate threshold is inclusive", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  for (int i = 0; i < 10; ++i)
    call(b, true, 0s);
  for (int i = 0; i < 9; ++i)
    call(b, false, 0s);
  REQUIRE(b.state() == breaker_state::closed);
  call(b, false, 0s); // 10 of 20 = 0.50
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("a breaker opens on the slow-call rate even when every call succeeds", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  for (int i = 0; i < 4; ++i)
    call(b, true, 0s, 999ms); // just under slow_call_duration: not slow
  for (int i = 0; i < 15; ++i)
    call(b, true, 0s, 1s); // exactly slow_call_duration: slow
  REQUIRE(b.state() == breaker_state::closed);
  call(b, true, 0s, 30s);
  CHECK(b.state() == breaker_state::open);
  CHECK(b.last_transition()->reason ==
        "slow-call rate 0.80 >= 0.80 over 20 calls (0 failed, 16 slow); open for 5.000 s "
        "(consecutive open 1)");
}

TEST_CASE("an open breaker rejects calls with the remaining wait as retry_after", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  trip(b, 100ms);
  auto a = b.try_acquire(2s);
  CHECK_FALSE(a.permitted);
  CHECK_FALSE(a.probe);
  CHECK(a.retry_after == 3100ms);
  a = b.try_acquire(5100ms - 1ns);
  CHECK_FALSE(a.permitted);
  CHECK(a.retry_after == 1ns);
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("half-open admits exactly the configured number of probes and rejects more",
          "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  trip(b, 0s);
  auto first = b.try_acquire(5s); // the wait is over: this call moves to half-open
  CHECK(first.permitted);
  CHECK(first.probe);
  CHECK(b.state() == breaker_state::half_open);
  CHECK(b.last_transition()->reason == "open wait elapsed; admitting 3 probes");
  CHECK(b.transitions_to(breaker_state::half_open) == 1);
  for (int i = 0; i < 2; ++i) {
    auto a = b.try_acquire(5s);
    CHECK(a.permitted);
    CHECK(a.probe);
    CHECK(a.epoch == first.epoch);
  }
  auto extra = b.try_acquire(5s);
  CHECK_FALSE(extra.permitted);
  CHECK_FALSE(extra.probe);
  CHECK(extra.retry_after == 1s); // slow_call_duration: the probes decide within about that
  // Completed probes keep their slots: still no room before the verdict.
  b.on_result(first.epoch, true, 10ms, 5s);
  CHECK_FALSE(b.try_acquire(5s).permitted);
  CHECK(b.probes().admitted == 3);
  CHECK(b.probes().completed == 1);
}

TEST_CASE("all probes succeeding close the breaker with an empty window, so one failure right "
          "after does not reopen it",
          "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  // Opens on exactly 10 of 20 failures: a window kept across the close would reopen on the next
  // failure (11 of 21), which is what the original did.
  for (int i = 0; i < 10; ++i)
    call(b, true, 0s);
  for (int i = 0; i < 10; ++i)
    call(b, false, 0s);
  REQUIRE(b.state() == breaker_state::open);
  std::vector<admission> probes;
  for (int i = 0; i < 3; ++i)
    probes.push_back(b.try_acquire(5s));
  b.on_result(probes[0].epoch, true, 10ms, 5s);
  b.on_result(probes[1].epoch, true, 2s, 5s); // a slow success: 1 of 3 slow is below 0.80
  CHECK(b.state() == breaker_state::half_open);
  b.on_result(probes[2].epoch, true, 10ms, 5s);
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.last_transition()->reason ==
        "all 3 probes completed: failure rate 0.00 < 0.50, slow-call rate 0.33 < 0.80");
  CHECK(b.consecutive_opens() == 0);
  CHECK(b.window(5s).calls == 0);
  call(b, false, 6s);
  CHECK(b.state() == breaker_state::closed);
  auto w = b.window(6s);
  CHECK(w.calls == 1);
  CHECK(w.failures == 1);
}

TEST_CASE("failed probes reopen the breaker as soon as the probe failure rate cannot end below "
          "its threshold",
          "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  trip(b, 0s);
  auto p1 = b.try_acquire(5s);
  auto p2 = b.try_acquire(5s);
  auto p3 = b.try_acquire(5s);
  b.on_result(p1.epoch, false, 10ms, 5s); // 1 of 3: can still close
  CHECK(b.state() == breaker_state::half_open);
  b.on_result(p2.epoch, false, 10ms, 6s); // 2 of 3 >= 0.50 whatever the third does
  CHECK(b.state() == breaker_state::open);
  CHECK(b.consecutive_opens() == 2);
  CHECK(b.open_until() == 16s); // twice the first wait
  CHECK(b.last_transition()->from == breaker_state::half_open);
  CHECK(b.last_transition()->reason ==
        "probe failure rate 0.67 >= 0.50 with 2 of 3 probes completed (2 failed, 0 slow); open "
        "for 10.000 s (consecutive open 2)");
  // The third probe's late result belongs to the old half-open epoch.
  b.on_result(p3.epoch, true, 10ms, 7s);
  CHECK(b.state() == breaker_state::open);
  CHECK(b.stale_reports() == 1);
}

TEST_CASE("slow probes keep the breaker from closing", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  trip(b, 0s);
  std::vector<admission> probes;
  for (int i = 0; i < 3; ++i)
    probes.push_back(b.try_acquire(5s));
  for (auto& p : probes)
    b.on_result(p.epoch, true, 1s, 6s);
  CHECK(b.state() == breaker_state::open);
  CHECK(b.last_transition()->reason ==
        "probe slow-call rate 1.00 >= 0.80 with 3 of 3 probes completed (0 failed, 3 slow); open "
        "for 10.000 s (consecutive open 2)");
}

TEST_CASE("open waits grow exponentially with consecutive opens up to the cap", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  trip(b, 0s);
  CHECK(b.open_until() == 5s);
  CHECK(fail_probes(b) == 10s);
  CHECK(fail_probes(b) == 20s);
  CHECK(fail_probes(b) == 40s);
  CHECK(fail_probes(b) == 60s);
  CHECK(fail_probes(b) == 60s);
  CHECK(b.consecutive_opens() == 6);
  CHECK(b.transitions_to(breaker_state::open) == 6);
  CHECK(b.transitions_to(breaker_state::half_open) == 5);
}

TEST_CASE("jitter scales each wait by a factor within one jitter fraction of 1", "[breaker]") {
  double u = 0;
  breaker_core b{{}, [&] { return u; }};
  trip(b, 0s);
  CHECK(b.open_until() == 4s); // 5 s x 0.8
  u = 0.75;
  CHECK(fail_probes(b) == 11s); // 10 s x 1.1
  u = 1 - 0x1.0p-53;            // the largest value the source may return
  auto w = fail_probes(b);
  CHECK(w <= 24s); // 20 s x 1.2 (rounding to whole nanoseconds may reach it)
  CHECK(w > 23999ms);
  u = 0.5;
  CHECK(fail_probes(b) == 40s);
  u = 0.75;
  CHECK(fail_probes(b) == 66s); // the cap applies before the jitter: 60 s x 1.1
}

TEST_CASE("the default jitter source is uniform in [0, 1) and reproducible per seed", "[breaker]") {
  auto r1 = seeded_uniform(42);
  auto r2 = seeded_uniform(42);
  double lo = 1, hi = 0;
  for (int i = 0; i < 10000; ++i) {
    auto x = r1();
    REQUIRE(x == r2());
    REQUIRE(x >= 0);
    REQUIRE(x < 1);
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  CHECK(lo < 0.01);
  CHECK(hi > 0.99);
  // Without an injected source the breaker seeds its own and still respects the bounds.
  breaker_core b{breaker_config{}};
  trip(b, 0s);
  CHECK(b.open_until() >= 4s);
  CHECK(b.open_until() < 6s);
}

TEST_CASE("a time-based window forgets calls older than the window duration", "[breaker]") {
  breaker_config cfg;
  cfg.window_kind = breaker_window_kind::time_based;
  cfg.window_duration = 10s;
  cfg.minimum_calls = 5;
  breaker_core b{cfg, [] { return 0.5; }};
  for (int i = 0; i < 4; ++i)
    call(b, false, 500ms);
  CHECK(b.window(9999ms).calls == 4);
  CHECK(b.window(10s).calls == 0); // 500 ms's second has left the 10 one-second buckets
  call(b, false, 10s);
  CHECK(b.state() == breaker_state::closed); // 1 call, not 5
  auto w = b.window(10s);
  CHECK(w.calls == 1);
  CHECK(w.failures == 1);
  // Within the window the same calls do open it.
  for (int i = 0; i < 4; ++i)
    call(b, false, 19s);
  CHECK(b.state() == breaker_state::open);
  CHECK(b.last_transition()->reason ==
        "failure rate 1.00 >= 0.50 over 5 calls (5 failed, 0 slow); open for 5.000 s (consecutive "
        "open 1)");
}

TEST_CASE("a time-based window drops each second as it ages out", "[breaker]") {
  breaker_config cfg;
  cfg.window_kind = breaker_window_kind::time_based;
  cfg.window_duration = 3s;
  breaker_core b{cfg, [] { return 0.5; }};
  call(b, false, 0s);
  call(b, true, 1s, 2s);
  call(b, true, 2s);
  CHECK(b.window(2s).calls == 3);
  auto w = b.window(3s);
  CHECK(w.calls == 2);
  CHECK(w.failures == 0);
  CHECK(w.slow == 1);
  CHECK(b.window(4s).calls == 1);
  CHECK(b.window(5s).calls == 0);
  // Reading does not change the window; recording later moves it.
  call(b, true, 4s);
  w = b.window(4s);
  CHECK(w.calls == 2);
  CHECK(w.slow == 0);
  call(b, true, 1h);
  CHECK(b.window(1h).calls == 1);
}

TEST_CASE("a count-based window slides by dropping its oldest call", "[breaker]") {
  breaker_config cfg;
  cfg.window_size = 4;
  cfg.minimum_calls = 4;
  breaker_core b{cfg, [] { return 0.5; }};
  call(b, false, 0s);
  for (int i = 0; i < 3; ++i)
    call(b, true, 0s, 2s);
  auto w = b.window(0s);
  CHECK(w.calls == 4);
  CHECK(w.failures == 1);
  CHECK(w.slow == 3);
  CHECK(b.state() == breaker_state::closed); // 0.25 failed, 0.75 slow
  call(b, true, 0s);                         // drops the failure
  w = b.window(0s);
  CHECK(w.calls == 4);
  CHECK(w.failures == 0);
  CHECK(w.slow == 3);
  call(b, false, 0s); // drops a slow success
  CHECK(b.state() == breaker_state::closed);
  call(b, false, 0s); // window: slow, ok, failed, failed
  CHECK(b.state() == breaker_state::open);
  CHECK(b.last_transition()->reason ==
        "failure rate 0.50 >= 0.50 over 4 calls (2 failed, 1 slow); open for 5.000 s (consecutive "
        "open 1)");
}

TEST_CASE("results from an older epoch are ignored", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  auto early = b.try_acquire(0s); // admitted while closed
  trip(b, 0s);
  b.on_result(early.epoch, false, 10ms, 1s); // completes after the breaker opened
  CHECK(b.stale_reports() == 1);
  auto p = b.try_acquire(5s);
  CHECK(p.epoch != early.epoch);
  b.on_result(early.epoch, false, 10ms, 5s); // must not count as a failed probe
  CHECK(b.probes().completed == 0);
  CHECK(b.state() == breaker_state::half_open);
  b.on_result(p.epoch, true, 10ms, 5s);
  for (int i = 0; i < 2; ++i)
    call(b, true, 5s);
  REQUIRE(b.state() == breaker_state::closed);
  // A closed epoch from before the opening is still not the current closed epoch.
  b.on_result(early.epoch, false, 10ms, 6s);
  CHECK(b.window(6s).calls == 0);
  CHECK(b.stale_reports() == 3);
}

TEST_CASE("on_ignored frees a probe slot without counting the probe", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  auto stale = b.try_acquire(0s);
  trip(b, 0s);
  auto p1 = b.try_acquire(5s);
  b.try_acquire(5s);
  b.try_acquire(5s);
  REQUIRE_FALSE(b.try_acquire(5s).permitted);
  b.on_ignored(stale.epoch); // from the closed epoch: frees nothing
  CHECK(b.probes().admitted == 3);
  CHECK_FALSE(b.try_acquire(5s).permitted);
  b.on_ignored(p1.epoch); // e.g. the pool shed it: not a backend failure
  CHECK(b.probes().admitted == 2);
  CHECK(b.probes().completed == 0);
  CHECK(b.probes().failures == 0);
  auto again = b.try_acquire(5s);
  CHECK(again.permitted);
  CHECK(again.probe);
  CHECK_FALSE(b.try_acquire(5s).permitted);
}

TEST_CASE("calls released through on_ignored while closed are never counted as failures",
          "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  for (int i = 0; i < 100; ++i)
    b.on_ignored(b.try_acquire(0s).epoch);
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.window(0s).calls == 0);
  CHECK(b.stale_reports() == 0);
}

TEST_CASE("more reports than permits in half-open never skew the probe tally", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  trip(b, 0s);
  auto p = b.try_acquire(5s);
  b.on_result(p.epoch, false, 10ms, 5s);
  b.on_result(p.epoch, false, 10ms, 5s); // a duplicate report of the same call
  b.on_ignored(p.epoch);
  CHECK(b.state() == breaker_state::half_open);
  CHECK(b.probes().admitted == 1);
  CHECK(b.probes().completed == 1);
  CHECK(b.probes().failures == 1);
}

TEST_CASE("force_open rejects every call until reset", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  auto before = b.try_acquire(0s);
  b.force_open(1s);
  CHECK(b.state() == breaker_state::open);
  CHECK(b.forced());
  CHECK(b.last_transition()->reason == "forced open");
  CHECK(b.transitions_to(breaker_state::open) == 1);
  CHECK(b.consecutive_opens() == 0);
  auto a = b.try_acquire(24h);
  CHECK_FALSE(a.permitted);
  CHECK(a.retry_after == 5s); // the base open_wait as a polling hint
  b.on_result(before.epoch, false, 10ms, 2s);
  CHECK(b.stale_reports() == 1);
  b.reset(25h);
  CHECK(b.state() == breaker_state::closed);
  CHECK_FALSE(b.forced());
  CHECK(b.try_acquire(25h).permitted);
}

TEST_CASE("force_closed permits every call and records nothing", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  trip(b, 0s);
  b.force_closed(1s);
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.forced());
  CHECK(b.last_transition()->from == breaker_state::open);
  CHECK(b.last_transition()->reason == "forced closed");
  for (int i = 0; i < 100; ++i)
    call(b, false, 2s, 10s);
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.window(2s).calls == 0);
  b.force_open(3s); // one override replaces the other
  CHECK(b.state() == breaker_state::open);
  CHECK_FALSE(b.try_acquire(4s).permitted);
}

TEST_CASE("reset closes the breaker, clears the window and restarts the backoff", "[breaker]") {
  breaker_core b{{}, [] { return 0.5; }};
  trip(b, 0s);
  fail_probes(b);
  REQUIRE(b.consecutive_opens() == 2);
  b.reset(1min);
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.consecutive_opens() == 0);
  CHECK(b.window(1min).calls == 0);
  CHECK(b.last_transition()->from == breaker_state::open);
  CHECK(b.last_transition()->reason == "reset");
  CHECK(b.transitions_to(breaker_state::closed) == 1);
  trip(b, 2min);
  CHECK(b.open_until() == 2min + 5s);
}

TEST_CASE("an invalid config is refused with every problem named", "[breaker]") {
  CHECK(validate(breaker_config{}).empty());
  breaker_config cfg;
  cfg.window_size = 10; // minimum_calls stays 20
  cfg.failure_rate_threshold = 1.5;
  cfg.open_wait_max = 1s;
  cfg.jitter = 1;
  cfg.half_open_probes = 0;
  auto problems = validate(cfg);
  REQUIRE(problems.size() == 5);
  CHECK(problems[0] ==
        "minimum_calls: must be <= window_size (10) or the breaker never opens, is 20");
  CHECK(problems[1] == "failure_rate_threshold: must be in (0, 1], is 1.5");
  CHECK(problems[2] == "open_wait_max: must be >= open_wait (5 s), is 1 s");
  CHECK(problems[3] == "jitter: must be in [0, 1), is 1");
  CHECK(problems[4] == "half_open_probes: must be >= 1, is 0");
  CHECK_THROWS_AS(breaker_core{cfg}, std::invalid_argument);
  breaker_config timed;
  timed.window_kind = breaker_window_kind::time_based;
  timed.window_duration = 1500ms;
  problems = validate(timed);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "window_duration: must be a whole number of seconds in [1, 3600], is 1.5 s");
}

TEST_CASE("proof of life ends an open wait early; probes still decide", "[breaker]") {
  breaker_config cfg;
  cfg.open_wait = 30s;
  cfg.open_wait_max = 60s;
  cfg.jitter = 0;
  cfg.half_open_probes = 1;
  breaker_core b{cfg, seeded_uniform(1)};
  CHECK_FALSE(b.backend_alive(0s)); // closed: nothing to cut short
  trip(b, 1s);
  CHECK(b.open_until() == 31s);
  CHECK(b.backend_alive(2s));
  CHECK(b.open_until() == 2s);
  CHECK_FALSE(b.backend_alive(3s)); // already due
  // The next call is a probe; a failing probe opens again with the longer wait.
  auto a = b.try_acquire(3s);
  REQUIRE(a.probe);
  b.on_result(a.epoch, false, 10ms, 3s);
  CHECK(b.state() == breaker_state::open);
  CHECK(b.open_until() == 3s + 60s);
  // Forced open ignores it.
  b.force_open(4s);
  CHECK_FALSE(b.backend_alive(5s));
  CHECK(b.state() == breaker_state::open);
}
