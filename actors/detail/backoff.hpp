#pragma once
/// Exponential backoff, one for the node: the n-th consecutive wait (n >= 1) is
///
///   min(max, initial x multiplier^(n-1)) x a factor in [jitter_low, jitter_high]
///
/// where the factor is drawn from an injected uniform source in [0, 1), so tests are exact (the
/// cap applies before the jitter). Its users: the supervisor's restarts (no jitter), the circuit
/// breaker's open waits (a factor in [1 - jitter, 1 + jitter]) and the pool's connect retries (a
/// factor in [0.5, 1]: never later than the cap, never all at once). CAF-free.

#include <chrono>
#include <cstdint>
#include <functional>

namespace bulwark::detail {

struct backoff {
  std::chrono::nanoseconds initial{0};
  std::chrono::nanoseconds max{0};
  double multiplier = 2;
  /// The jitter factor's range; equal bounds draw nothing.
  double jitter_low = 1;
  double jitter_high = 1;

  /// The wait before attempt `n` (0 counts as 1), with the jitter draw `u` in [0, 1] (clamped).
  std::chrono::nanoseconds wait(uint64_t n, double u) const;

  /// The same, drawing `u` from `source` only when there is a range to draw in (an empty source
  /// draws 0).
  std::chrono::nanoseconds wait(uint64_t n, const std::function<double()>& source) const;

  /// Without jitter.
  std::chrono::nanoseconds wait(uint64_t n) const { return wait(n, 0.0); }
};

/// A uniform source in [0, 1) drawn from a std::mt19937_64 seeded with `seed`.
std::function<double()> seeded_uniform(uint64_t seed);

/// A uniform source seeded from std::random_device, so nodes started together do not retry in
/// step.
std::function<double()> random_uniform();

} // namespace bulwark::detail
