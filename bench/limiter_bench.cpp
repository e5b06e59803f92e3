// The rate limiter's key table, one thread: decisions per second on a hot key set (1000 keys, gcra
// and sliding window) and on a table of ten million keys (inserting them, then deciding on random
// ones), and the bytes per key at ten million keys, both as charged (bytes() / keys()) and as
// measured resident-set growth (/proc/self/statm) while the table was filled.
//   limiter_decisions

#include "bench/bench.hpp"

#include "actors/detail/rate_limit_table.hpp"

#include <charconv>
#include <cstdio>
#include <random>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

using namespace bulwark;
using namespace std::chrono;

namespace {

constexpr long hot_keys = 1000;
constexpr long hot_decisions = 10'000'000;
constexpr long big_keys = 10'000'000;
constexpr long big_decisions = 5'000'000;

/// Resident set size now, in bytes.
long rss_bytes() {
  long pages = 0;
  long resident = 0;
  if (auto* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2)
      resident = 0;
    std::fclose(f);
  }
  return resident * sysconf(_SC_PAGESIZE);
}

/// "user:<i>" in `buf` (13 to 17 bytes for the keys used here), without allocating.
std::string_view user_key(char (&buf)[32], long i) {
  static constexpr char prefix[] = "user:";
  std::copy(prefix, prefix + 5, buf);
  auto [end, ec] = std::to_chars(buf + 5, buf + sizeof(buf), 10'000'000 + i);
  (void)ec;
  return {buf, static_cast<std::size_t>(end - buf)};
}

struct tally {
  long allowed = 0;
  long refused = 0;
};

void note(tally& t, const detail::rate_limit_decision& d) {
  (d.allowed ? t.allowed : t.refused) += 1;
}

void hot(const char* label, detail::rate_limit_config cfg) {
  detail::rate_limit_table table{cfg};
  std::vector<std::string> keys;
  for (long i = 0; i < hot_keys; ++i) {
    char buf[32];
    keys.emplace_back(user_key(buf, i));
  }
  std::mt19937_64 gen{1};
  std::vector<uint32_t> order(1 << 20);
  for (auto& x : order)
    x = static_cast<uint32_t>(gen() % hot_keys);
  tally t;
  auto t0 = steady_clock::now();
  for (long i = 0; i < hot_decisions; ++i)
    note(t, table.decide(keys[order[static_cast<std::size_t>(i) & (order.size() - 1)]],
                         nanoseconds{i * 100}));
  auto s = bench::seconds_since(t0);
  std::printf("hot %-15s %ld keys: %.2f M decisions/s (%.0f ns each; %ld allowed, %ld refused)\n",
              label, hot_keys, hot_decisions / s / 1e6, s * 1e9 / hot_decisions, t.allowed,
              t.refused);
}

} // namespace

BULWARK_BENCH(limiter_decisions) {
  detail::rate_limit_config gcra;
  gcra.rate_per_sec = 5000; // 1000 keys at 10 M decisions/s of simulated time: about half refused
  gcra.burst = 100;
  hot("gcra", gcra);
  detail::rate_limit_config window = gcra;
  window.algorithm = detail::rate_limit_algorithm::sliding_window;
  window.limit = 500; // the same 5000/s
  window.window = milliseconds(100);
  hot("sliding_window", window);

  // Ten million keys, all kept: rate 1/s with burst 10 keeps every key busy for 10 s of
  // simulated time, longer than the run.
  detail::rate_limit_config big;
  big.rate_per_sec = 1;
  big.burst = 10;
  big.max_bytes = std::size_t{4} << 30;
  big.sketch_keys = static_cast<std::size_t>(big_keys);
  detail::rate_limit_table table{big};
  char buf[32];
  long sink = 0;
  auto t0 = steady_clock::now();
  for (long i = 0; i < big_keys; ++i)
    sink += static_cast<long>(user_key(buf, i).size());
  const double format_ns = bench::seconds_since(t0) * 1e9 / big_keys;

  const long rss0 = rss_bytes();
  tally inserts;
  t0 = steady_clock::now();
  for (long i = 0; i < big_keys; ++i)
    note(inserts, table.decide(user_key(buf, i), nanoseconds{i * 10}));
  const double insert_s = bench::seconds_since(t0);
  const long rss1 = rss_bytes();
  const auto keys = static_cast<double>(table.keys());
  std::printf("10M table: inserted %zu keys at %.2f M decisions/s (%.0f ns each, %.0f ns of it "
              "formatting the key); %ld allowed\n",
              table.keys(), big_keys / insert_s / 1e6, insert_s * 1e9 / big_keys, format_ns,
              inserts.allowed);

  std::mt19937_64 gen{2};
  tally random;
  const long start = big_keys * 10;
  t0 = steady_clock::now();
  for (long i = 0; i < big_decisions; ++i) {
    auto k = static_cast<long>(gen() % static_cast<uint64_t>(big_keys));
    note(random, table.decide(user_key(buf, k), nanoseconds{start + i * 10}));
  }
  const double random_s = bench::seconds_since(t0);
  std::printf("10M table: random existing keys %.2f M decisions/s (%.0f ns each; %ld allowed, "
              "%ld refused, %llu overflowed)\n",
              big_decisions / random_s / 1e6, random_s * 1e9 / big_decisions, random.allowed,
              random.refused,
              static_cast<unsigned long long>(
                  table.decisions(detail::rate_limit_outcome::overflow_allowed) +
                  table.decisions(detail::rate_limit_outcome::overflow_limited)));
  std::printf("10M table: %.1f bytes/key charged (entries %.1f + index %.1f); RSS grew %.1f "
              "bytes/key while filling; sketch %.1f MiB fixed; max RSS %.0f MiB (sink %ld)\n",
              static_cast<double>(table.bytes()) / keys,
              static_cast<double>(table.bytes() - table.index_bytes()) / keys,
              static_cast<double>(table.index_bytes()) / keys,
              static_cast<double>(rss1 - rss0) / keys,
              static_cast<double>(table.sketch_bytes()) / (1 << 20),
              static_cast<double>(bench::max_rss_kib()) / 1024, sink % 10);
}
