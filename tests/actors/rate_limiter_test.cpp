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
  rate_limiter_actor limiter = keep(spawn_rate_limiter(sys, cfg, 0, dir, &metrics));

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

TEST_CASE("limiter shards split the key table and the overflow bucket, not a client's limit",
          "[rate_limiter]") {
  rate_limiter_config cfg;
  cfg.table.max_bytes = 16u << 20;
  cfg.table.rate_per_sec = 1000;
  cfg.table.burst = 2000;
  cfg.table.overflow_rate_per_sec = 10000;
  cfg.table.overflow_burst = 20000;
  auto one = shard_share(cfg, 1);
  CHECK(one.table.max_bytes == cfg.table.max_bytes);
  CHECK(one.table.overflow_burst == 20000);
  auto s = shard_share(cfg, 3);
  CHECK(s.table.max_bytes == (16u << 20) / 3 + 1); // rounded up: the shards hold at least all
  CHECK(s.table.rate_per_sec == 1000);             // a key lives in one shard: its limit whole
  CHECK(s.table.burst == 2000);
  CHECK(s.table.overflow_rate_per_sec == Approx(10000.0 / 3));
  CHECK(s.table.overflow_burst == 6666);
  CHECK(detail::validate(s.table).empty());
  // A burst of one stays one.
  cfg.table.overflow_burst = 1;
  CHECK(shard_share(cfg, 4).table.overflow_burst == 1);
}

TEST_CASE("each limiter shard reports its own table in the metrics", "[rate_limiter][actor]") {
  fixture f;
  auto second = f.keep(spawn_rate_limiter(f.sys, f.cfg, 1, f.dir, &f.metrics));
  f.check("alice");
  f.check("bob");
  REQUIRE(f.ask<limit_decision>(second, limit_check{"carol"}));
  CHECK(f.metrics.keys->Add({{"shard", "0"}}).Value() == 2);
  CHECK(f.metrics.keys->Add({{"shard", "1"}}).Value() == 1);
  CHECK(f.metrics.budget->Add({{"shard", "1"}}).Value() == 64 * 1024);
}
