#pragma once
/// Waiting for a state a test can observe (a lock wait on the server, a pool's status), with a
/// deadline, instead of sleeping for a guessed time.

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <thread>

namespace bulwark::test {

/// Polls `pred` every 5 ms for up to 10 s; fails the test naming `what` when it never holds.
inline void wait_until(const std::function<bool()>& pred, const char* what) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until)
      FAIL("not within 10 s: " << what);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

} // namespace bulwark::test
