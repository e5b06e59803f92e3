#include "actors/detail/backoff.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace bulwark::detail {

std::chrono::nanoseconds backoff::wait(uint64_t n, double u) const {
  auto base = static_cast<double>(initial.count());
  auto cap = static_cast<double>(max.count());
  // pow may overflow to +inf for long outages; min() then yields the cap.
  auto w =
      std::min(cap, base * std::pow(multiplier, static_cast<double>(std::max<uint64_t>(n, 1)) - 1));
  if (jitter_low != jitter_high || jitter_low != 1)
    w *= jitter_low + (jitter_high - jitter_low) * std::clamp(u, 0.0, 1.0);
  return std::chrono::nanoseconds{std::llround(w)};
}

std::chrono::nanoseconds backoff::wait(uint64_t n, const std::function<double()>& source) const {
  bool draws = jitter_low != jitter_high && source;
  return wait(n, draws ? source() : 0.0);
}

std::function<double()> seeded_uniform(uint64_t seed) {
  return [gen = std::mt19937_64{seed}]() mutable {
    // The top 53 bits as a fraction: exactly uniform on a 2^-53 grid, never 1.0 (unlike
    // std::generate_canonical, which may round up to 1 in libstdc++).
    return static_cast<double>(gen() >> 11) * 0x1.0p-53;
  };
}

std::function<double()> random_uniform() {
  return seeded_uniform(std::random_device{}());
}

} // namespace bulwark::detail
