#include "support/threads.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;

TEST_CASE("a thread group joins its threads when a failed check unwinds the scope, telling "
          "looping ones to stop first",
          "[test_support]") {
  std::atomic<bool> stop{false};
  std::atomic<int> finished{0};
  try {
    bulwark::test::thread_group loopers{[&] { stop = true; }};
    for (int i = 0; i < 3; ++i)
      loopers.spawn([&] {
        while (!stop)
          std::this_thread::sleep_for(1ms);
        ++finished;
      });
    throw std::runtime_error("a REQUIRE that failed");
  } catch (const std::runtime_error&) {
  }
  // Without the group this is std::terminate; with it, every thread ran to its end.
  CHECK(stop);
  CHECK(finished == 3);
}

TEST_CASE("a thread group's join waits for every thread and may be called again",
          "[test_support]") {
  std::atomic<int> finished{0};
  bulwark::test::thread_group group;
  for (int i = 0; i < 4; ++i)
    group.spawn([&] { ++finished; });
  group.join();
  CHECK(finished == 4);
  group.join();
  CHECK(finished == 4);
}
