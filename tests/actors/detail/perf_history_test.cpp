#include "actors/detail/adaptive_sampler.hpp"
#include "actors/detail/perf_history.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

using namespace bulwark::detail;
using namespace std::chrono_literals;

namespace {

history_bounds bounds(size_t points, caf::timespan max_age = 24h) {
  history_bounds b;
  b.max_bytes = points * sizeof(history_point);
  b.max_age = max_age;
  b.outlier_sigma = 3;
  return b;
}

/// A smooth, bounded signal: 100 +- 1.
double normal_value(int i) {
  return 100 + std::sin(i * 0.7);
}

bool holds(const series_history& h, caf::timespan at) {
  return std::any_of(h.points().begin(), h.points().end(),
                     [&](const history_point& p) { return p.at == at; });
}

} // namespace

TEST_CASE("the history is bounded by bytes and keeps its newest points", "[perf]") {
  series_history h{bounds(400)};
  CHECK(h.capacity() == 400);
  for (int i = 0; i < 10'000; ++i) {
    h.push(std::chrono::seconds(i), normal_value(i));
    REQUIRE(h.points().size() <= 400);
    REQUIRE(h.bytes() <= 400 * sizeof(history_point));
  }
  CHECK(h.trims() > 0);
  // The newest half of the capacity is whole.
  for (int i = 10'000 - 200; i < 10'000; ++i)
    CHECK(holds(h, std::chrono::seconds(i)));
  // Time order is kept, and the past is still covered (not only the recent block).
  CHECK(std::is_sorted(h.points().begin(), h.points().end(),
                       [](auto& a, auto& b) { return a.at < b.at; }));
  CHECK(h.points().front().at == 0s);
}

TEST_CASE("outliers survive trimming, where the oldest points used to win", "[perf]") {
  series_history h{bounds(400)};
  std::vector<int> spikes{50, 1234, 4321, 7000};
  for (int i = 0; i < 10'000; ++i) {
    bool spike = std::find(spikes.begin(), spikes.end(), i) != spikes.end();
    h.push(std::chrono::seconds(i), spike ? 500.0 : normal_value(i));
  }
  for (int i : spikes) {
    INFO("spike at " << i);
    CHECK(holds(h, std::chrono::seconds(i)));
  }
}

TEST_CASE("when outliers outnumber the room, the most extreme stay", "[perf]") {
  // With k = 3 at most a ninth of a block can be outliers (Chebyshev), always less than the
  // room; a small k is where they can outnumber it.
  auto b = bounds(64);
  b.outlier_sigma = 0.5;
  series_history h{b};
  for (int i = 0; i <= 64; ++i)
    h.push(std::chrono::seconds(i), i <= 32 ? i * i : 0.0); // older block 0..32: 0, 1, 4 .. 1024
  REQUIRE(h.trims() == 1);
  CHECK(h.points().size() == 48); // 3/4 of the capacity
  CHECK(holds(h, 32s));           // 1024: the farthest from the block's mean (~347)
  CHECK(holds(h, 0s));            // 0: the farthest below it
  CHECK_FALSE(holds(h, 19s));     // 361: the nearest to it
  for (int i = 33; i <= 64; ++i)
    CHECK(holds(h, std::chrono::seconds(i))); // the recent half is whole
}

TEST_CASE("points older than the age bound are dropped", "[perf]") {
  series_history h{bounds(1000, 60s)};
  for (int i = 0; i <= 100; ++i)
    h.push(std::chrono::seconds(i), 1);
  CHECK(h.points().front().at == 40s);
  CHECK(h.points().size() == 61);
}

TEST_CASE("the sampler skips exactly the share the ratio says", "[perf]") {
  adaptive_sampler s;
  int taken = 0;
  for (int i = 0; i < 100; ++i)
    taken += s.take();
  CHECK(taken == 100);
  // High load three times: 1.0 -> 0.8 -> 0.64 -> 0.512.
  s.adjust(0.9);
  s.adjust(0.9);
  CHECK(s.adjust(0.9) == Approx(0.512));
  taken = 0;
  for (int i = 0; i < 1000; ++i)
    taken += s.take();
  CHECK(taken == 512);
}

TEST_CASE("the ratio falls under load to its floor and recovers when the load falls", "[perf]") {
  adaptive_sampler s;
  for (int i = 0; i < 20; ++i)
    s.adjust(0.95);
  CHECK(s.ratio() == 0.3); // the floor
  int taken = 0;
  for (int i = 0; i < 100; ++i)
    taken += s.take();
  CHECK(taken == 30);
  CHECK(s.adjust(0.5) == 0.3); // between the thresholds: holds
  CHECK(s.adjust(0.1) == Approx(0.36));
  for (int i = 0; i < 20; ++i)
    s.adjust(0.1);
  CHECK(s.ratio() == 1.0); // the ceiling
}
