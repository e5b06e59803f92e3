#include "actors/detail/pressure_levels.hpp"

#include <catch2/catch.hpp>

using namespace bulwark;
using bulwark::detail::pressure_classifier;
using ms = std::chrono::milliseconds;

namespace {

pressure_classifier make() {
  return pressure_classifier{{0.70, 0.85, 0.95}, 0.05, ms(1000)};
}

} // namespace

TEST_CASE("a rising ratio enters the highest level it reaches at once", "[pressure]") {
  auto c = make();
  CHECK_FALSE(c.update(0.50, ms(0)));
  auto x = c.update(0.96, ms(1));
  REQUIRE(x);
  CHECK(*x == pressure_level::critical);
  CHECK(c.level() == pressure_level::critical);
}

TEST_CASE("each threshold is inclusive", "[pressure]") {
  auto c = make();
  CHECK(c.update(0.70, ms(0)) == pressure_level::medium);
  CHECK(c.update(0.85, ms(0)) == pressure_level::high);
  CHECK(c.update(0.95, ms(0)) == pressure_level::critical);
}

TEST_CASE("a level is left only a hysteresis margin below its threshold", "[pressure]") {
  auto c = make();
  c.update(0.86, ms(0));
  REQUIRE(c.level() == pressure_level::high);
  // Below 0.85 but within the 0.05 margin: stays high even long after the dwell.
  CHECK_FALSE(c.update(0.81, ms(5000)));
  CHECK(c.level() == pressure_level::high);
  // A full margin below: falls to the band the ratio is in.
  CHECK(c.update(0.79, ms(5001)) == pressure_level::medium);
}

TEST_CASE("a fall waits for the minimum dwell time", "[pressure]") {
  auto c = make();
  c.update(0.90, ms(0));
  CHECK_FALSE(c.update(0.10, ms(999)));
  CHECK(c.level() == pressure_level::high);
  CHECK(c.update(0.10, ms(1000)) == pressure_level::low);
}

TEST_CASE("a multi-level fall keeps the margin at every level it passes", "[pressure]") {
  auto c = make();
  c.update(0.99, ms(0));
  // 0.68 is below medium's threshold but inside its margin (0.65): lands on medium, not low.
  CHECK(c.update(0.68, ms(2000)) == pressure_level::medium);
}

TEST_CASE("a ratio hovering at a threshold never flaps", "[pressure]") {
  auto c = make();
  int changes = 0;
  for (int i = 0; i < 1000; ++i) {
    double r = (i % 2 == 0) ? 0.851 : 0.849; // noise around the high threshold
    if (c.update(r, ms(i * 100)))
      ++changes;
  }
  CHECK(changes == 1); // the first rise to high, then nothing
  CHECK(c.level() == pressure_level::high);
}

TEST_CASE("a resumed classifier starts at its kept level", "[pressure]") {
  auto c = make();
  c.resume(pressure_level::high, ms(0));
  CHECK_FALSE(c.update(0.84, ms(10)));
  CHECK(c.update(0.10, ms(1000)) == pressure_level::low);
}
