// Trace replay: the cache policy (actors/detail/adaptive_cache.hpp) against an LRU baseline and a
// fixed W-TinyLFU (1 % window) measured in the same run, beside the reference hit ratios of
// ../shared/data/traces/README.md, plus Belady's OPT (with bypass) for the evaluation traces,
// which have no reference row. Object-count capacity, as in the reference table.
//   trace_replay

#include "bench/bench.hpp"
#include "bench/trace.hpp"

#include "actors/detail/adaptive_cache.hpp"

#include <set>
#include <unordered_map>

using namespace bulwark;
using namespace std::chrono;

namespace {

struct reference_row {
  const char* trace;
  size_t capacity;
  double lru, wtlfu, wtlfu_hc, arc, opt; // from the traces README
  bool evaluation;
};

// The README's table, verbatim; the evaluation traces (p3, orm_busy) have no reference numbers:
// their capacities are 1 % and 10 % of the distinct keys, chosen before running them.
constexpr reference_row rows[] = {
    {"oltp", 1000, 32.83, 35.62, 39.86, 38.95, 53.62, false},
    {"oltp", 1869, 41.64, 41.41, 44.67, 45.39, 59.77, false},
    {"oltp", 18688, 66.52, 64.09, 61.60, 67.27, 76.21, false},
    {"gli", 253, 0.91, 15.56, 15.31, 1.38, 17.91, false},
    {"gli", 1000, 11.21, 50.27, 50.27, 21.31, 53.15, false},
    {"scarab", 2584, 34.71, 41.07, 42.31, 40.82, 53.35, false},
    {"scarab", 25837, 60.60, 60.23, 60.00, 62.34, 75.03, false},
    {"scarab", 100000, 75.91, 72.27, 71.52, 76.08, 79.25, false},
    {"cdn_adaptsize", 402, 20.63, 21.28, 22.12, 21.93, 31.15, false},
    {"cdn_adaptsize", 4024, 29.67, 31.36, 30.26, 33.41, 39.93, false},
    {"p3", 7625, 0, 0, 0, 0, 0, true},
    {"p3", 76254, 0, 0, 0, 0, 0, true},
    {"orm_busy", 763, 0, 0, 0, 0, 0, true},
    {"orm_busy", 7635, 0, 0, 0, 0, 0, true},
};

/// Belady with bypass: on a miss with a full cache, keep whichever of the new key and the cached
/// key used farthest in the future is used sooner.
double opt_hit_ratio(const std::vector<bench::trace_request>& t, size_t capacity) {
  std::vector<size_t> next(t.size());
  std::unordered_map<uint64_t, size_t> seen;
  for (size_t i = t.size(); i-- > 0;) {
    auto it = seen.find(t[i].key);
    next[i] = it == seen.end() ? SIZE_MAX : it->second;
    seen[t[i].key] = i;
  }
  std::set<std::pair<size_t, uint64_t>> by_next; // (next use, key)
  std::unordered_map<uint64_t, size_t> cached;   // key -> next use
  size_t hits = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    auto k = t[i].key;
    if (auto c = cached.find(k); c != cached.end()) {
      ++hits;
      by_next.erase({c->second, k});
      c->second = next[i];
      by_next.insert({next[i], k});
      continue;
    }
    if (next[i] == SIZE_MAX)
      continue; // never used again: bypass
    if (cached.size() >= capacity) {
      auto far = std::prev(by_next.end());
      if (far->first <= next[i])
        continue; // bypass
      cached.erase(far->second);
      by_next.erase(far);
    }
    cached[k] = next[i];
    by_next.insert({next[i], k});
  }
  return 100.0 * static_cast<double>(hits) / static_cast<double>(t.size());
}

struct policy_run {
  double hit_ratio;
  double ops_per_s;
  uint64_t switches;
};

policy_run run_policy(const std::vector<bench::trace_request>& t, size_t capacity, bool adaptive) {
  detail::adaptive_cache_config cfg;
  cfg.max_entries = capacity;
  cfg.max_bytes = SIZE_MAX / 2;
  cfg.max_entry_bytes = SIZE_MAX / 4;
  cfg.adaptive = adaptive;
  detail::adaptive_cache<uint64_t, uint32_t> cache{cfg};
  size_t hits = 0;
  auto t0 = steady_clock::now();
  for (auto& r : t)
    hits += cache.access(r.key, 0, 0, nanoseconds{0}) ? 1 : 0;
  auto secs = bench::seconds_since(t0);
  return {100.0 * static_cast<double>(hits) / static_cast<double>(t.size()),
          static_cast<double>(t.size()) / secs, cache.selector().switches()};
}

} // namespace

BULWARK_BENCH(trace_replay) {
  auto dir = bench::trace_dir(BULWARK_SOURCE_DIR);
  std::printf("hit ratio %% (object-count capacity). ours = adaptive W-TinyLFU "
              "(actors/detail/adaptive_cache.hpp); LRU* and W-TLFU 1%%* measured in this run; "
              "ref = the traces README; gap = share of LRU's gap to OPT closed\n");
  std::printf("%-14s %8s | %6s %6s | %6s %6s %6s %6s %6s | %7s %6s %-18s %9s\n", "trace",
              "capacity", "LRU*", "WTLFU*", "LRU", "WTLFU", "WT+HC", "ARC", "OPT", "ours", "gap",
              "vs best classic", "Mops/s");
  std::string loaded;
  std::vector<bench::trace_request> t;
  double gap_sum = 0;
  int gap_rows = 0, met = 0, reference_rows = 0;
  for (auto& row : rows) {
    if (loaded != row.trace) {
      t = bench::read_trace(dir, row.trace);
      loaded = row.trace;
    }
    auto lru = 100.0 * bench::lru_hit_ratio(t, row.capacity);
    auto fixed = run_policy(t, row.capacity, false);
    auto ours = run_policy(t, row.capacity, true);
    auto opt = row.evaluation ? opt_hit_ratio(t, row.capacity) : row.opt;
    auto gap = (ours.hit_ratio - lru) / (opt - lru) * 100.0;
    char verdict[64];
    if (row.evaluation) {
      std::snprintf(verdict, sizeof verdict, "evaluation");
      std::printf("%-14s %8zu | %6.2f %6.2f | %6s %6s %6s %6s %6.2f | %7.2f %5.1f%% %-18s %9.2f\n",
                  row.trace, row.capacity, lru, fixed.hit_ratio, "-", "-", "-", "-", opt,
                  ours.hit_ratio, gap, verdict, ours.ops_per_s / 1e6);
      continue;
    }
    auto best = std::max({row.lru, row.wtlfu, row.wtlfu_hc, row.arc});
    ++reference_rows;
    if (ours.hit_ratio >= best) {
      ++met;
      std::snprintf(verdict, sizeof verdict, "meets (+%.2f)", ours.hit_ratio - best);
    } else {
      std::snprintf(verdict, sizeof verdict, "misses (%.2f)", ours.hit_ratio - best);
    }
    gap = (ours.hit_ratio - row.lru) / (row.opt - row.lru) * 100.0;
    gap_sum += gap;
    ++gap_rows;
    std::printf("%-14s %8zu | %6.2f %6.2f | %6.2f %6.2f %6.2f %6.2f %6.2f | %7.2f %5.1f%% %-18s "
                "%9.2f\n",
                row.trace, row.capacity, lru, fixed.hit_ratio, row.lru, row.wtlfu, row.wtlfu_hc,
                row.arc, row.opt, ours.hit_ratio, gap, verdict, ours.ops_per_s / 1e6);
  }
  std::printf("reference rows met: %d of %d; mean share of LRU's gap to OPT closed: %.1f %% "
              "(target >= 30 %%)\n",
              met, reference_rows, gap_sum / gap_rows);
}
