#include "actors/rate_limiter.hpp"

#include "support/cleanup_service.hpp"
#include "support/test_system.hpp"

#include <catch2/catch.hpp>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

struct fixture : test::test_system {
  prometheus::Registry registry;
  rate_limiter_metrics metrics{registry};
  std::shared_ptr<component_directory> dir = std::make_shared<component_directory>();
  test::cleanup_service cleanup{*this, dir}; // runs the limiter's expiry task
  rate_limiter_config cfg = [] {
    rate_limiter_config c;
    c.table.rate_per_sec = 10; // one request per 100 ms after the burst
    c.table.burst = 3;
    c.table.max_bytes = 64 * 1024;
    c.expire_interval = 1s;
    return c;
  }();
  rate_limiter_actor limiter = keep(spawn_rate_limiter(sys, cfg, dir, &metrics));

  limit_decision check(const std::string& key) {
    return *ask<limit_decision>(limiter, limit_check{key});
  }
  limiter_stats stats() { return *ask<limiter_stats>(limiter, caf::get_atom::value); }
};

} // namespace

TEST_CASE("the limiter actor allows the burst, then limits with an exact retry-after",
          "[rate_limiter][actor]") {
  fixture f;
  for (int i = 0; i < 3; ++i)
    CHECK(f.check("alice").allowed);
  auto d = f.check("alice");
  CHECK_FALSE(d.allowed);
  CHECK(d.decision == "limited");
  CHECK(d.retry_after == 100ms);
  CHECK(f.check("bob").allowed); // another client is not affected
  CHECK(f.stats().keys == 2);
  f.advance(100ms);
  CHECK(f.check("alice").allowed);
  CHECK_FALSE(f.check("alice").allowed);
  auto s = f.stats();
  CHECK(s.keys == 1); // bob's bucket had refilled: an idle key is dropped at no loss
  CHECK(s.allowed == 5);
  CHECK(s.limited == 2);
}

TEST_CASE("the limiter's key table shrinks with pressure and idle keys expire",
          "[rate_limiter][actor]") {
  fixture f;
  for (int i = 0; i < 500; ++i)
    REQUIRE(f.check("client-" + std::to_string(i)).allowed);
  auto before = f.stats();
  CHECK(before.keys == 500);
  CHECK(before.bytes > 32 * 1024);
  caf::anon_send(f.limiter, pressure_changed{pressure_level::critical, pressure_level::low, 0.99, 0,
                                             0, f.now()});
  f.run();
  auto shrunk = f.stats();
  CHECK(shrunk.max_bytes == 32 * 1024);
  CHECK(shrunk.bytes <= 32 * 1024);
  CHECK(shrunk.keys < 500);
  caf::anon_send(f.limiter, pressure_changed{pressure_level::low, pressure_level::critical, 0.2, 0,
                                             0, f.now()});
  f.run();
  CHECK(f.stats().max_bytes == 64 * 1024); // restored at once: keys only grow back with traffic
  // Every key is idle once its burst has refilled (0.3 s); the expiry tick drops them all.
  f.advance(1s);
  CHECK(f.stats().keys == 0);
}
