#include "actors/detail/memory_account.hpp"

#include <catch2/catch.hpp>

#include <stdexcept>
#include <thread>
#include <vector>

using namespace bulwark::detail;

namespace {

constexpr uint64_t budget = 1000;

std::shared_ptr<memory_account> make(bool admission = true) {
  memory_account_options o;
  o.budget_bytes = budget;
  o.ceilings = {0.70, 0.85, 1.0};
  o.admission = admission;
  return std::make_shared<memory_account>(o);
}

uint64_t reserved(const memory_account& a, memory_consumer c) {
  return a.snapshot().reserved[static_cast<size_t>(c)];
}

} // namespace

TEST_CASE("a reservation holds its bytes until it is destroyed", "[memory_account]") {
  auto a = make();
  {
    auto r = a->try_reserve(memory_consumer::results, 300, memory_class::normal);
    REQUIRE(r);
    CHECK(r.bytes() == 300);
    CHECK(a->snapshot().reserved_bytes == 300);
    CHECK(reserved(*a, memory_consumer::results) == 300);
    CHECK(reserved(*a, memory_consumer::cache) == 0);
  }
  CHECK(a->snapshot().reserved_bytes == 0);
  CHECK(reserved(*a, memory_consumer::results) == 0);
}

TEST_CASE("each priority class fills the budget up to its own ceiling", "[memory_account]") {
  auto a = make();
  auto first = a->try_reserve(memory_consumer::results, 650, memory_class::normal);
  REQUIRE(first);
  // 650 + 100 > 700: over low's ceiling, within normal's (850) and high's (1000).
  CHECK_FALSE(a->try_reserve(memory_consumer::results, 100, memory_class::low));
  auto normal = a->try_reserve(memory_consumer::results, 200, memory_class::normal);
  CHECK(normal);
  CHECK_FALSE(a->try_reserve(memory_consumer::results, 1, memory_class::normal));
  auto high = a->try_reserve(memory_consumer::results, 150, memory_class::high);
  CHECK(high);
  CHECK_FALSE(a->try_reserve(memory_consumer::results, 1, memory_class::high));
  CHECK(a->snapshot().refused[static_cast<size_t>(memory_consumer::results)] == 3);
  CHECK(a->room(memory_class::high) == 0);
}

TEST_CASE("what the node uses beyond its reservations leaves less room", "[memory_account]") {
  auto a = make();
  auto r = a->try_reserve(memory_consumer::results, 100, memory_class::normal);
  REQUIRE(r);
  // The monitor saw 600 used in all: 100 reserved, so 500 are the node's own.
  a->observe(600, budget, false);
  auto s = a->snapshot();
  CHECK(s.used_bytes == 600);
  CHECK(s.unaccounted_bytes == 500);
  CHECK(a->room(memory_class::normal) == 850 - 600);
  CHECK_FALSE(a->try_reserve(memory_consumer::results, 251, memory_class::normal));
  CHECK(a->try_reserve(memory_consumer::results, 250, memory_class::normal));
  // 100 reserved for results, and the node now uses 50 in all: the reservation is not
  // allocated yet (a query's rows are reserved before they are fetched). The node's own part
  // cannot be told from that; it stays what it was within what the reservation may hide: never
  // negative, never above what is used.
  a->observe(50, budget, false);
  CHECK(a->snapshot().unaccounted_bytes == 50);
}

TEST_CASE("rows reserved before they exist do not hand the node's own memory back as room",
          "[memory_account]") {
  auto a = make();
  a->observe(400, budget, false); // the node's own: 400
  CHECK(a->snapshot().unaccounted_bytes == 400);
  // A query reserves its rows' three copies (300) before fetching them; a sample taken now sees
  // only the first copy (100) beside the node's 400.
  auto r = a->try_reserve(memory_consumer::results, 300, memory_class::normal);
  REQUIRE(r);
  a->observe(500, budget, false);
  // used - reserved would say 200: room for 200 bytes that are about to be allocated.
  CHECK(a->snapshot().unaccounted_bytes == 400);
  CHECK(a->room(memory_class::normal) == 850 - 400 - 300);
  // All three copies exist: the estimate is exact again.
  a->observe(700, budget, false);
  CHECK(a->snapshot().unaccounted_bytes == 400);
  // The answer is gone and the allocator gave the memory back: with nothing in flight the
  // estimate follows what is seen at once, down as well as up.
  r.release();
  a->observe(150, budget, false);
  CHECK(a->snapshot().unaccounted_bytes == 150);
  a->observe(600, budget, false);
  CHECK(a->snapshot().unaccounted_bytes == 600);
  // Memory that is not the node's reservations (the cache's entries exist when booked) does not
  // hold the estimate up either.
  auto c = a->try_reserve(memory_consumer::cache, 100, memory_class::low);
  REQUIRE(c);
  a->observe(300, budget, false);
  CHECK(a->snapshot().unaccounted_bytes == 200);
}

TEST_CASE("the monitor's limit becomes the budget", "[memory_account]") {
  auto a = make();
  a->observe(0, 2000, false);
  CHECK(a->snapshot().budget_bytes == 2000);
  CHECK(a->room(memory_class::normal) == 1700);
  a->observe(0, 0, false); // a source without a limit keeps the last one
  CHECK(a->snapshot().budget_bytes == 2000);
}

TEST_CASE("at critical pressure only high-priority work is admitted", "[memory_account]") {
  auto a = make();
  a->observe(0, budget, true);
  CHECK_FALSE(a->try_reserve(memory_consumer::results, 1, memory_class::low));
  CHECK_FALSE(a->try_reserve(memory_consumer::results, 1, memory_class::normal));
  CHECK(a->room(memory_class::normal) == 0);
  CHECK(a->try_reserve(memory_consumer::results, 1, memory_class::high));
  a->set_critical(false);
  CHECK(a->try_reserve(memory_consumer::results, 1, memory_class::normal));
}

TEST_CASE("a refused growth changes nothing; forcing is counted as an overdraft",
          "[memory_account]") {
  auto a = make();
  auto r = a->try_reserve(memory_consumer::results, 800, memory_class::normal);
  REQUIRE(r);
  CHECK(r.grow(50));
  CHECK_FALSE(r.grow(1));
  CHECK(r.bytes() == 850);
  r.force(100);
  CHECK(r.bytes() == 950);
  auto s = a->snapshot();
  CHECK(s.reserved_bytes == 950);
  CHECK(s.overdraft_bytes[static_cast<size_t>(memory_consumer::results)] == 100);
  r.resize(200); // what the result turned out to need: the rest goes back
  CHECK(a->snapshot().reserved_bytes == 200);
  r.resize(300);
  CHECK(a->snapshot().reserved_bytes == 300);
  r.release();
  CHECK_FALSE(r);
  CHECK(a->snapshot().reserved_bytes == 0);
  r.release(); // twice is harmless
  CHECK(a->snapshot().reserved_bytes == 0);
}

TEST_CASE("moving a reservation moves its bytes; an exception releases them", "[memory_account]") {
  auto a = make();
  memory_reservation outer;
  {
    auto r = a->try_reserve(memory_consumer::http_bodies, 400, memory_class::normal);
    outer = std::move(r);
    CHECK_FALSE(r); // NOLINT(bugprone-use-after-move): moved-from holds nothing
  }
  CHECK(outer.bytes() == 400);
  CHECK(a->snapshot().reserved_bytes == 400);
  try {
    auto inner = a->try_reserve(memory_consumer::results, 100, memory_class::normal);
    REQUIRE(inner);
    throw std::runtime_error("fails while holding it");
  } catch (const std::runtime_error&) {
  }
  CHECK(a->snapshot().reserved_bytes == 400);
  outer = memory_reservation{};
  CHECK(a->snapshot().reserved_bytes == 0);
}

TEST_CASE("a sibling grows on its own under the same ceiling; absorbing it keeps the total",
          "[memory_account]") {
  auto a = make();
  auto whole = a->try_reserve(memory_consumer::results, 100, memory_class::normal);
  REQUIRE(whole);
  auto part = whole.sibling();
  REQUIRE(part);
  CHECK(part.bytes() == 0);
  CHECK(part.grow(600));
  CHECK_FALSE(part.grow(200)); // 100 + 600 + 200 > 850, the normal class's ceiling
  CHECK(a->snapshot().reserved_bytes == 700);
  whole.absorb(part);
  CHECK(whole.bytes() == 700);
  CHECK(part.bytes() == 0);
  CHECK_FALSE(part); // empty now: destroying it gives nothing back twice
  CHECK(a->snapshot().reserved_bytes == 700);
  CHECK(a->snapshot().overdraft_bytes[static_cast<size_t>(memory_consumer::results)] == 0);
  // From another account: forced here, given back there.
  auto b = make();
  auto other = b->try_reserve(memory_consumer::results, 50, memory_class::normal);
  whole.absorb(other);
  CHECK(whole.bytes() == 750);
  CHECK(b->snapshot().reserved_bytes == 0);
  whole.release();
  CHECK(a->snapshot().reserved_bytes == 0);
  CHECK_FALSE(memory_reservation{}.sibling()); // an empty one has empty siblings
}

TEST_CASE("an empty reservation accounts nothing and grants anything", "[memory_account]") {
  memory_reservation none;
  CHECK(none.grow(1ull << 40));
  none.force(5);
  none.resize(7);
  CHECK(none.bytes() == 0);
}

TEST_CASE("with admission off nothing is refused but everything is counted", "[memory_account]") {
  auto a = make(false);
  a->observe(990, budget, true);
  auto r = a->try_reserve(memory_consumer::results, 5000, memory_class::low);
  CHECK(r);
  CHECK(r.grow(5000));
  auto s = a->snapshot();
  CHECK(s.reserved_bytes == 10000);
  CHECK_FALSE(s.admission);
  CHECK(s.refused[0] == 0);
}

TEST_CASE("concurrent reservations never pass the ceiling together", "[memory_account]") {
  memory_account_options o;
  o.budget_bytes = 1'000'000;
  o.ceilings = {0.5, 0.5, 0.5};
  auto a = std::make_shared<memory_account>(o);
  std::atomic<uint64_t> peak{0};
  std::atomic<uint64_t> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) {
        auto r = a->try_reserve(static_cast<memory_consumer>(t % 2), 1000 + (i % 7) * 1000,
                                memory_class::normal);
        if (!r)
          continue;
        granted.fetch_add(1);
        auto now = a->snapshot().reserved_bytes;
        auto seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        if (i % 3 == 0)
          r.grow(500);
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(granted.load() > 0);
  CHECK(peak.load() <= 500'000);
  auto s = a->snapshot();
  CHECK(s.reserved_bytes == 0);
  CHECK(s.reserved[0] == 0);
  CHECK(s.reserved[1] == 0);
}

TEST_CASE("a result's cost covers its copies and their bookkeeping", "[memory_account]") {
  // 10 000 rows of one 1 KiB text (the backend counts 1024 + 8 per cell).
  auto cost = result_cost(10000 * 1032, 10000, 10000);
  CHECK(cost >= 3 * 10000 * 1024);
  CHECK(cost < 4 * 10000 * 1032);
  CHECK(result_cost(0, 0, 0) == 4096);
}
