// The breaker core's cost per call: try_acquire + on_result around a trivial call, against the
// trivial call alone, in the same run (closed state, count-based window of 100).
//   breaker_core_overhead

#include "bench/bench.hpp"

#include "actors/detail/breaker_core.hpp"

using namespace bulwark;
using namespace std::chrono;

namespace {

constexpr long iterations = 20'000'000;

/// The "work": kept out of line so both loops make the same real call.
__attribute__((noinline)) long work(long x) {
  return x * 3 + 1;
}

} // namespace

BULWARK_BENCH(breaker_core_overhead) {
  long sink = 0;
  auto t0 = steady_clock::now();
  for (long i = 0; i < iterations; ++i)
    sink += work(i);
  auto direct = duration<double, std::nano>(steady_clock::now() - t0).count() / iterations;

  detail::breaker_core core{detail::breaker_config{}, detail::seeded_uniform(1)};
  t0 = steady_clock::now();
  for (long i = 0; i < iterations; ++i) {
    auto now = nanoseconds{i * 1000};
    auto adm = core.try_acquire(now);
    if (adm.permitted) {
      sink += work(i);
      core.on_result(adm.epoch, true, nanoseconds{500}, now + nanoseconds{500});
    }
  }
  auto guarded = duration<double, std::nano>(steady_clock::now() - t0).count() / iterations;
  std::printf("direct call %.2f ns, through the breaker core %.2f ns: %.2f ns per call added "
              "(%ld calls, sink %ld)\n",
              direct, guarded, guarded - direct, iterations, sink % 10);
}
