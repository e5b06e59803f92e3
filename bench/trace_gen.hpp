#pragma once
/// A generator of synthetic cache traces, for judging the cache policy on loads nobody tuned it
/// on. A trace mixes, request by request:
///   - a **Zipf core** of `core_keys` keys (exponent `zipf`), whose popularity can **drift** (per
///     request, with probability `drift`, a key drawn by popularity swaps rank with a key drawn
///     uniformly: hot keys cool and cold ones heat up) or change at once every `phase` requests
///     (the ranks are reshuffled: a workload change);
///   - **one-hit wonders**: a share `one_hit` of requests for keys never asked for again;
///   - **scans**: a share `scan_share` of requests in runs of `scan_length` fresh keys, one after
///     another (a batch job reading a table once);
///   - **loops**: a share `loop_share` of requests walking `loop_keys` keys round and round;
///   - **recency**: a share `recency` of requests re-asking a key asked for recently, at a
///     distance (in requests) drawn from an exponential with mean `recency_distance`.
/// Everything is drawn from one SplitMix64 stream seeded by `seed`, with no library distribution,
/// so a (spec, seed) pair gives the same trace on every machine. Keys of different kinds never
/// collide. With `sized`, each key has a fixed size (log-normal-like, 100 B to ~1 MB, median
/// ~4 KiB) derived from its hash.

#include "bench/trace.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace bulwark::bench {

struct trace_spec {
  std::string name;
  size_t requests = 1'000'000;
  size_t core_keys = 100'000;
  double zipf = 0.9;
  double drift = 0;
  size_t phase = 0;
  double one_hit = 0;
  double scan_share = 0;
  size_t scan_length = 0;
  double loop_share = 0;
  size_t loop_keys = 0;
  double recency = 0;
  double recency_distance = 0;
  bool sized = false;
};

/// One line describing the spec's parameters (for the record beside the results).
inline std::string describe(const trace_spec& s) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "%s: %zu requests; Zipf core %zu keys s=%.2f drift=%g phase=%zu; one-hit %.0f%%; "
                "scans %.0f%% (runs of %zu); loop %.0f%% (%zu keys); recency %.0f%% (mean "
                "distance %.0f)%s",
                s.name.c_str(), s.requests, s.core_keys, s.zipf, s.drift, s.phase, 100 * s.one_hit,
                100 * s.scan_share, s.scan_length, 100 * s.loop_share, s.loop_keys, 100 * s.recency,
                s.recency_distance, s.sized ? "; sized" : "");
  return buf;
}

class splitmix64 {
public:
  explicit splitmix64(uint64_t seed) : x_(seed) {}
  uint64_t next() {
    uint64_t z = (x_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [0, n).
  size_t below(size_t n) { return static_cast<size_t>(uniform() * static_cast<double>(n)); }

private:
  uint64_t x_;
};

inline std::vector<trace_request> generate_trace(const trace_spec& s, uint64_t seed) {
  splitmix64 rng{seed * 0x2545f4914f6cdd1dULL + 1};
  // Zipf by inverse CDF over ranks 1..core_keys.
  std::vector<double> cdf(s.core_keys);
  double sum = 0;
  for (size_t r = 0; r < s.core_keys; ++r)
    cdf[r] = (sum += 1.0 / std::pow(static_cast<double>(r + 1), s.zipf));
  for (auto& c : cdf)
    c /= sum;
  auto zipf_rank = [&] {
    auto r = std::upper_bound(cdf.begin(), cdf.end(), rng.uniform()) - cdf.begin();
    return std::min<size_t>(static_cast<size_t>(r), s.core_keys - 1);
  };
  std::vector<uint64_t> perm(s.core_keys); // rank -> key
  for (size_t i = 0; i < perm.size(); ++i)
    perm[i] = i;
  auto shuffle = [&] {
    for (size_t i = perm.size(); i > 1; --i)
      std::swap(perm[i - 1], perm[rng.below(i)]);
  };
  shuffle();
  constexpr uint64_t one_hit_base = 1ULL << 60, scan_base = 2ULL << 60, loop_base = 3ULL << 60;
  uint64_t one_hits = 0, scanned = 0, loop_pos = 0;
  size_t scan_left = 0;
  // A scan starts with probability q per request outside scans, so that scans take scan_share.
  double scan_start = s.scan_length == 0 || s.scan_share <= 0
                          ? 0
                          : s.scan_share / ((1 - s.scan_share) * double(s.scan_length));
  // Shares of the requests outside scans.
  double rest = 1 - s.scan_share;
  double p_one_hit = s.one_hit / rest, p_loop = s.loop_share / rest, p_recent = s.recency / rest;
  std::vector<trace_request> out;
  out.reserve(s.requests);
  auto size_of = [&](uint64_t key) -> uint64_t {
    if (!s.sized)
      return 0;
    splitmix64 h{key ^ 0x5bd1e995ULL};
    // Sum of uniforms ~ normal; exp of it: log-normal, clamped to [100 B, 1 MiB].
    double z = 0;
    for (int i = 0; i < 4; ++i)
      z += h.uniform() - 0.5;
    double bytes = 4096.0 * std::exp(z * 2.0 * std::sqrt(3.0));
    return static_cast<uint64_t>(std::clamp(bytes, 100.0, double(1 << 20)));
  };
  while (out.size() < s.requests) {
    if (s.phase > 0 && !out.empty() && out.size() % s.phase == 0)
      shuffle();
    if (s.drift > 0 && rng.uniform() < s.drift)
      std::swap(perm[zipf_rank()], perm[rng.below(s.core_keys)]);
    uint64_t key;
    if (scan_left == 0 && scan_start > 0 && rng.uniform() < scan_start)
      scan_left = s.scan_length;
    if (scan_left > 0) {
      --scan_left;
      key = scan_base + scanned++;
    } else {
      double u = rng.uniform();
      if (u < p_one_hit) {
        key = one_hit_base + one_hits++;
      } else if (u < p_one_hit + p_loop && s.loop_keys > 0) {
        key = loop_base + loop_pos++ % s.loop_keys;
      } else if (u < p_one_hit + p_loop + p_recent && !out.empty()) {
        auto d = static_cast<size_t>(-std::log(1 - rng.uniform()) * s.recency_distance) + 1;
        key = out[out.size() - std::min(d, out.size())].key;
      } else {
        key = perm[zipf_rank()];
      }
    }
    out.push_back({key, size_of(key)});
  }
  return out;
}

/// The generated families the policy is judged on (never tuned on): parameters fixed when they
/// were first run, before any policy change was measured on them.
inline std::vector<trace_spec> generated_families() {
  std::vector<trace_spec> f;
  {
    trace_spec s{"drift_onehit"};
    s.core_keys = 200'000, s.zipf = 0.8, s.drift = 0.002, s.one_hit = 0.25;
    f.push_back(s);
  }
  {
    trace_spec s{"scan_zipf"};
    s.core_keys = 100'000, s.zipf = 0.9, s.scan_share = 0.3, s.scan_length = 20'000;
    f.push_back(s);
  }
  {
    trace_spec s{"loop_zipf"};
    s.core_keys = 100'000, s.zipf = 0.7, s.loop_share = 0.4, s.loop_keys = 30'000;
    f.push_back(s);
  }
  {
    trace_spec s{"recency"};
    s.core_keys = 500'000, s.zipf = 0.5, s.recency = 0.6, s.recency_distance = 2'000;
    f.push_back(s);
  }
  {
    trace_spec s{"phases"};
    s.core_keys = 100'000, s.zipf = 1.0, s.phase = 250'000, s.one_hit = 0.1;
    f.push_back(s);
  }
  {
    trace_spec s{"mix"};
    s.core_keys = 200'000, s.zipf = 0.9, s.drift = 0.0005, s.one_hit = 0.1, s.scan_share = 0.1,
    s.scan_length = 5'000, s.loop_share = 0.1, s.loop_keys = 20'000, s.recency = 0.2,
    s.recency_distance = 1'000;
    f.push_back(s);
  }
  return f;
}

} // namespace bulwark::bench
