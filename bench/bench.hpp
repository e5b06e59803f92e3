#pragma once
/// The tiny benchmark harness: each *_bench.cpp registers named benchmarks; bulwark_bench runs the
/// ones named on its command line (all without arguments) and prints one table per benchmark.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <sys/resource.h>
#include <vector>

namespace bulwark::bench {

using bench_fn = std::function<void()>;

inline std::map<std::string, bench_fn>& registry() {
  static std::map<std::string, bench_fn> r;
  return r;
}

struct registrar {
  registrar(const char* name, bench_fn f) { registry().emplace(name, std::move(f)); }
};

inline double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto idx = static_cast<size_t>(p * static_cast<double>(xs.size() - 1) + 0.5);
  return xs[std::min(idx, xs.size() - 1)];
}

inline long max_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace bulwark::bench

#define BULWARK_BENCH(name)                                                                        \
  static void bench_##name();                                                                      \
  static ::bulwark::bench::registrar bench_registrar_##name{#name, bench_##name};                  \
  static void bench_##name()
