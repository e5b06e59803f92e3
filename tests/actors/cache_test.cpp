#include "actors/cache.hpp"

#include "support/cleanup_service.hpp"
#include "support/test_system.hpp"

#include <catch2/catch.hpp>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

struct fixture : test::test_system {
  prometheus::Registry registry;
  cache_metrics metrics{registry};
  std::shared_ptr<component_directory> dir = std::make_shared<component_directory>();
  test::cleanup_service cleanup{*this, dir}; // runs the shard's sweep task
  cache_config cfg = [] {
    cache_config c;
    c.shards = 1;
    c.max_entries = 10'000;
    c.max_bytes = 1'000'000;
    c.tick = 1s;
    c.restore_step = 0.1;
    return c;
  }();
  cache_actor shard = keep(spawn_cache_shard(sys, cfg, 0, dir, &metrics));

  std::string put(const std::string& key, size_t bytes, caf::timespan ttl = caf::timespan{0}) {
    return *ask<std::string>(shard, cache_put{key, std::string(bytes, 'v'), ttl, 1});
  }
  cache_stats stats() { return *ask<cache_stats>(shard, caf::get_atom::value); }
  void pressure(pressure_level level, pressure_level previous) {
    caf::anon_send(shard, pressure_changed{level, previous, 0.9, 0, 0, now()});
    run();
  }
};

} // namespace

TEST_CASE("a shard stores, finds, expires and erases", "[cache][actor]") {
  fixture f;
  CHECK(f.put("a", 10) == "stored");
  auto hit = f.ask<cache_lookup>(f.shard, cache_get{"a"});
  REQUIRE(hit);
  CHECK(hit->found);
  CHECK(hit->value == std::string(10, 'v'));
  CHECK_FALSE(f.ask<cache_lookup>(f.shard, cache_get{"b"})->found);
  CHECK(f.put("short", 10, 5s) == "stored");
  f.advance(5s);
  CHECK_FALSE(f.ask<cache_lookup>(f.shard, cache_get{"short"})->found);
  CHECK(*f.ask<bool>(f.shard, cache_erase{"a"}));
  CHECK(f.put("huge", 2u << 20) == "too_large");
  auto s = f.stats();
  CHECK(s.entries == 0);
  CHECK(s.hits == 1);
  CHECK(s.refused == 1);
}

TEST_CASE("a pressure rise shrinks the budget at once; a fall restores it gradually",
          "[cache][actor]") {
  fixture f;
  for (int i = 0; i < 300; ++i)
    REQUIRE(f.put("k" + std::to_string(i), 2000) == "stored");
  auto full = f.stats();
  CHECK(full.max_bytes == 1'000'000);
  CHECK(full.bytes > 500'000);

  f.pressure(pressure_level::critical, pressure_level::low);
  auto shrunk = f.stats();
  CHECK(shrunk.max_bytes == 500'000); // 50 % below at critical
  CHECK(shrunk.bytes <= 500'000);
  CHECK(shrunk.evictions > 0);

  f.pressure(pressure_level::medium, pressure_level::critical);
  // Nothing grows until the tick, then 10 % of the configured budget per tick up to 85 %.
  CHECK(f.stats().max_bytes == 500'000);
  f.advance(1s);
  CHECK(f.stats().max_bytes == 600'000);
  f.advance(3s, 3);
  CHECK(f.stats().max_bytes == 850'000);
  f.advance(5s, 5);
  CHECK(f.stats().max_bytes == 850'000);
  f.pressure(pressure_level::low, pressure_level::medium);
  f.advance(2s, 2);
  CHECK(f.stats().max_bytes == 1'000'000);
}

TEST_CASE("a shard books its bytes in the memory account and stores nothing it has no room for",
          "[cache][actor][memory_account]") {
  fixture f;
  auto stats = [&](const cache_actor& shard) {
    return *f.ask<cache_stats>(shard, caf::get_atom::value);
  };
  // The policy's own state (sketch, ghost caches) is booked from the start, with the entries.
  auto probe_account = std::make_shared<detail::memory_account>(detail::memory_account_options{});
  auto probe = f.keep(spawn_cache_shard(f.sys, f.cfg, 1, f.dir, &f.metrics, probe_account));
  auto policy = stats(probe).policy_bytes;
  REQUIRE(policy > 0);
  CHECK(probe_account->snapshot().reserved[static_cast<size_t>(detail::memory_consumer::cache)] ==
        policy);
  detail::memory_account_options o;
  // The cache fills what low-priority work may (half the budget): the policy's bytes and 50 000.
  o.budget_bytes = 2 * (policy + 50'000);
  o.ceilings = {0.5, 0.85, 1.0};
  auto account = std::make_shared<detail::memory_account>(o);
  auto shard = f.keep(spawn_cache_shard(f.sys, f.cfg, 0, f.dir, &f.metrics, account));
  auto put = [&](const std::string& key, size_t bytes) {
    return *f.ask<std::string>(shard, cache_put{key, std::string(bytes, 'v'), {}, 1});
  };
  auto cache_bytes = [&] {
    return account->snapshot().reserved[static_cast<size_t>(detail::memory_consumer::cache)];
  };
  auto held = [&] {
    auto s = stats(shard);
    return s.bytes + s.policy_bytes;
  };
  CHECK(put("a", 20'000) == "stored");
  auto stored = stats(shard).bytes;
  CHECK(stored >= 20'000);
  CHECK(cache_bytes() == held()); // exactly what the shard holds, overhead and policy included
  CHECK(put("b", 40'000) == "refused_memory");
  CHECK(cache_bytes() == held());
  // Someone else's reservation leaves even less room.
  auto other =
      account->try_reserve(detail::memory_consumer::results, 25'000, detail::memory_class::normal);
  REQUIRE(other);
  CHECK(put("c", 10'000) == "refused_memory");
  other.release();
  CHECK(put("c", 10'000) == "stored");
  CHECK(stats(shard).refused == 2);
  CHECK(*f.ask<bool>(shard, cache_erase{"a"}));
  CHECK(cache_bytes() == held());
}
