#include "runtime/answer_slot.hpp"

#include "support/wait.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

using namespace bulwark;
using namespace std::chrono_literals;

TEST_CASE("an answer given before the wait is taken without sleeping", "[answer_slot]") {
  answer_slot<std::string> slot;
  slot.give("forty-two");
  CHECK(slot.take(0s) == "forty-two");
  CHECK_FALSE(slot.parked());
}

TEST_CASE("an answer given while the waiter spins is taken without sleeping", "[answer_slot]") {
  answer_slot<std::string> slot;
  // A spin of a minute: the waiter can only go to sleep if the answer takes longer than that.
  std::thread giver{[&] { slot.give("forty-two"); }};
  CHECK(slot.take(60s) == "forty-two");
  giver.join();
  CHECK_FALSE(slot.parked());
}

TEST_CASE("a waiter whose spin ends sleeps until the answer wakes it", "[answer_slot]") {
  answer_slot<std::string> slot;
  std::string got;
  std::thread waiter{[&] { got = slot.take(1us); }};
  test::wait_until([&] { return slot.parked(); }, "the waiter sleeps");
  slot.give("forty-two");
  waiter.join();
  CHECK(got == "forty-two");
}

TEST_CASE("no answer is lost between the spin and the sleep", "[answer_slot]") {
  // Gives race the waiter's move from spinning to sleeping at every offset these spins allow; a
  // lost wake-up would hang the test (and its CTest timeout fails it).
  for (int round = 0; round < 3000; ++round) {
    answer_slot<std::vector<int>> slot;
    auto spin = std::chrono::microseconds{round % 3 == 0 ? 0 : round % 50};
    std::thread giver{[&] { slot.give({round, round + 1}); }};
    auto v = slot.take(spin);
    giver.join();
    REQUIRE(v == std::vector<int>{round, round + 1});
  }
}
