// What the performance monitor costs. (1) Request throughput of the embedded engine with the
// monitor off, on at its default 1 s tick, and on at a 10 ms tick (100x the default work), in the
// same run, rounds interleaved so drift hits all three alike. (2) The monitor's own CPU (its
// ticks' thread CPU time, bulwark_perf_self_cpu_seconds_total) and its history bytes under an
// open-loop load of R and 10R requests/s: telemetry must not grow with load.
//
// The requests are cached reads through the gateway (rate limiter skipped for the trusted
// in-process caller, cache hit): the cheapest path, where a fixed overhead shows most.

#include "actors/latency.hpp"
#include "bench/bench.hpp"
#include "bench/items.hpp"
#include "runtime/facade.hpp"

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

constexpr int keys = 1000;

engine_config perf_engine(const std::filesystem::path& dir, bool monitor,
                          std::chrono::milliseconds interval) {
  auto cfg = bench::cached_items_engine(dir, keys);
  cfg.cache.shards = 2;
  cfg.performance.enabled = monitor;
  cfg.performance.interval = interval;
  return cfg;
}

/// Closed loop: `in_flight` requests always outstanding for `secs`; answers per second.
double closed_loop(embedded& node, int in_flight, double secs) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<int> outstanding{0};
  std::function<void(int)> issue = [&](int i) {
    if (stop.load()) {
      --outstanding;
      return;
    }
    node.query("item", {1 + i % keys}, [&, i](query_result r) {
      (r.ok() ? done : failed)++;
      issue(i + in_flight);
    });
  };
  // Warm the cache, then measure.
  for (int i = 0; i < keys; ++i)
    node.query("item", {1 + i}).get();
  outstanding = in_flight;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < in_flight; ++i)
    issue(i);
  std::this_thread::sleep_for(std::chrono::duration<double>(secs));
  auto n = done.load();
  auto elapsed = bench::seconds_since(t0);
  stop = true;
  while (outstanding.load() > 0)
    std::this_thread::sleep_for(1ms);
  if (failed.load() != 0)
    std::printf("  (%llu requests failed)\n", static_cast<unsigned long long>(failed.load()));
  return static_cast<double>(n) / elapsed;
}

/// Open loop: request i is sent at i/rate from one pacing thread; returns the answers that came.
uint64_t open_loop(embedded& node, double rate, double secs) {
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> sent{0};
  auto t0 = std::chrono::steady_clock::now();
  auto total = static_cast<uint64_t>(rate * secs);
  for (uint64_t i = 0; i < total; ++i) {
    auto due = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(static_cast<double>(i) / rate));
    std::this_thread::sleep_until(due);
    ++sent;
    node.query("item", {1 + static_cast<int>(i % keys)}, [&](query_result r) {
      if (r.ok())
        ++done;
    });
  }
  auto until = std::chrono::steady_clock::now() + 5s;
  while (done.load() < sent.load() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  return done.load();
}

} // namespace

BULWARK_BENCH(monitor_overhead) {
  auto dir = std::filesystem::temp_directory_path() / "bulwark-perf-bench";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  struct variant {
    const char* name;
    bool on;
    std::chrono::milliseconds interval;
    std::vector<double> rates;
  };
  std::vector<variant> variants{{"monitor off", false, 1000ms, {}},
                                {"monitor on, 1 s tick (default)", true, 1000ms, {}},
                                {"monitor on, 10 ms tick (100x)", true, 10ms, {}}};
  constexpr int rounds = 6;
  constexpr double secs = 2;
  std::printf("monitor_overhead: cached reads through the gateway, 64 in flight, %d rounds of %.0f "
              "s per variant, interleaved\n",
              rounds, secs);
  for (int r = 0; r < rounds; ++r)
    for (auto& v : variants) {
      embedded node{perf_engine(dir / ("r" + std::to_string(r)), v.on, v.interval)};
      v.rates.push_back(closed_loop(node, 64, secs));
    }
  auto median = [](std::vector<double> xs) { return bench::percentile(std::move(xs), 0.5); };
  auto base = median(variants[0].rates);
  for (auto& v : variants) {
    // Paired within a round (adjacent runs), so machine drift between rounds cancels.
    std::vector<double> paired;
    for (int r = 0; r < rounds; ++r)
      paired.push_back(
          100.0 *
          (v.rates[static_cast<size_t>(r)] / variants[0].rates[static_cast<size_t>(r)] - 1));
    auto [lo, hi] = std::minmax_element(v.rates.begin(), v.rates.end());
    std::printf("  %-32s median %8.0f req/s (rounds %.0f..%.0f), vs off in the same round: median "
                "%+.1f %% (%+.1f..%+.1f)\n",
                v.name, median(v.rates), *lo, *hi, median(paired),
                *std::min_element(paired.begin(), paired.end()),
                *std::max_element(paired.begin(), paired.end()));
  }

  // The per-request part of telemetry: one latency observation (the gateway's, and the
  // database's on a miss).
  {
    prometheus::Registry reg;
    auto& h = prometheus::BuildHistogram()
                  .Name("x_seconds")
                  .Help("h")
                  .Register(reg)
                  .Add({}, latency_buckets());
    constexpr int n = 5'000'000;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i)
      h.Observe(0.0001 * (i % 1000));
    std::printf("  one latency observation (Histogram::Observe, 16 buckets): %.1f ns\n",
                1e9 * bench::seconds_since(t0) / n);
  }

  // Telemetry at R and 10R: the monitor's own CPU and bytes.
  auto rate = std::max(200.0, base / 40); // 10x stays under the open-loop sender's capacity
  std::printf("telemetry at 1x and 10x load (open loop, 10 s each, 1 s tick):\n");
  for (double load : {rate, rate * 10}) {
    embedded node{
        perf_engine(dir / ("load" + std::to_string(static_cast<int>(load))), true, 1000ms)};
    for (int i = 0; i < keys; ++i)
      node.query("item", {1 + i}).get();
    auto& m = node.engine().metrics().performance;
    if (load == rate) {
      // What one alert evaluation starts with: a snapshot of the whole registry.
      auto t0 = std::chrono::steady_clock::now();
      size_t families = 0;
      for (int i = 0; i < 200; ++i)
        families = node.engine().registry()->Collect().size();
      std::printf("  registry snapshot (%zu families): %.0f us\n", families,
                  1e6 * bench::seconds_since(t0) / 200);
    }
    auto cpu0 = m.self_cpu->Value();
    auto collected0 = m.collected->Value();
    auto skipped0 = m.skipped->Value();
    auto t0 = std::chrono::steady_clock::now();
    rusage ru0{};
    getrusage(RUSAGE_SELF, &ru0);
    auto answered = open_loop(node, load, 10);
    rusage ru1{};
    getrusage(RUSAGE_SELF, &ru1);
    auto wall = bench::seconds_since(t0);
    auto proc_cpu = [](const rusage& ru) {
      return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
             static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
    };
    auto self_cpu = m.self_cpu->Value() - cpu0;
    auto ticks = (m.collected->Value() - collected0) + (m.skipped->Value() - skipped0);
    std::printf("  %8.0f req/s offered, %8.0f answered/s: monitor CPU %.3f ms/s (%.1f us per "
                "tick, %.0f ticks, ratio %.2f), process CPU %.0f ms/s, history %.0f bytes, "
                "history points %.0f\n",
                load, static_cast<double>(answered) / wall, 1000 * self_cpu / wall,
                1e6 * self_cpu / std::max(1.0, ticks), ticks, m.sampling_ratio->Value(),
                1000 * (proc_cpu(ru1) - proc_cpu(ru0)) / wall, m.history_bytes->Value(),
                m.history_points->Value());
  }
  std::filesystem::remove_all(dir);
}
