#include "actors/detail/backoff.hpp"

#include <catch2/catch.hpp>

using namespace bulwark::detail;
using namespace std::chrono_literals;

TEST_CASE("the n-th wait grows by the multiplier up to the cap", "[backoff]") {
  backoff b{10ms, 100ms, 2};
  CHECK(b.wait(0) == 10ms); // 0 counts as the first
  CHECK(b.wait(1) == 10ms);
  CHECK(b.wait(2) == 20ms);
  CHECK(b.wait(4) == 80ms);
  CHECK(b.wait(5) == 100ms);
  CHECK(b.wait(1000000) == 100ms); // the power overflows to infinity: still the cap
  backoff flat{10ms, 100ms, 1};
  CHECK(flat.wait(7) == 10ms);
}

TEST_CASE("the jitter factor spans its range, applied after the cap", "[backoff]") {
  backoff b{100ms, 400ms, 2, 0.5, 1.0};
  CHECK(b.wait(1, 0.0) == 50ms);
  CHECK(b.wait(1, 0.5) == 75ms);
  CHECK(b.wait(1, 1.0) == 100ms);
  CHECK(b.wait(10, 0.0) == 200ms); // the cap, then the factor
  CHECK(b.wait(1, 7.0) == 100ms);  // draws are clamped to [0, 1]
  backoff symmetric{1s, 60s, 2, 0.8, 1.2};
  CHECK(symmetric.wait(2, 0.0) == 1600ms);
  CHECK(symmetric.wait(2, 1.0) == 2400ms);
}

TEST_CASE("a source is drawn from only when the jitter has a range", "[backoff]") {
  int draws = 0;
  std::function<double()> source = [&draws] {
    ++draws;
    return 1.0;
  };
  backoff none{10ms, 1s, 2};
  CHECK(none.wait(3, source) == 40ms);
  CHECK(draws == 0);
  backoff some{10ms, 1s, 2, 0.5, 1.0};
  CHECK(some.wait(3, source) == 40ms);
  CHECK(draws == 1);
  CHECK(some.wait(3, std::function<double()>{}) == 20ms); // no source: the low end
}

TEST_CASE("seeded sources repeat; every draw is in [0, 1)", "[backoff]") {
  auto a = seeded_uniform(7);
  auto b = seeded_uniform(7);
  for (int i = 0; i < 1000; ++i) {
    auto x = a();
    CHECK(x == b());
    CHECK(x >= 0.0);
    CHECK(x < 1.0);
  }
}
