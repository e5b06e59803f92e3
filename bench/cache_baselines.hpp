#pragma once
/// The policies the cache is judged against, by the textbook and kept simple (lists and maps, no
/// tuning): LRU and ARC with an object-count capacity, Belady's OPT with bypass (the limit), and
/// for byte-bounded caches LRU and GDSF with a byte capacity. Each replays a trace in the usual
/// trace-driven model (every request is a read; a miss inserts the object) and returns what it
/// hit. Used by the trace benchmarks and the policy's tests.

#include "bench/trace.hpp"

#include <algorithm>
#include <cstdint>
#include <list>
#include <map>
#include <set>
#include <unordered_map>
#include <vector>

namespace bulwark::bench {

/// What a replay hit: requests and bytes (bytes only count for traces with sizes).
struct replay_result {
  uint64_t requests = 0;
  uint64_t hits = 0;
  uint64_t bytes = 0;
  uint64_t hit_bytes = 0;
  double hit_ratio() const { return requests ? 100.0 * double(hits) / double(requests) : 0; }
  double byte_hit_ratio() const { return bytes ? 100.0 * double(hit_bytes) / double(bytes) : 0; }
  void count(const trace_request& r, bool hit) {
    ++requests;
    bytes += r.size;
    if (hit) {
      ++hits;
      hit_bytes += r.size;
    }
  }
};

/// ARC (Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST 2003), the
/// paper's Figure 4 step by step: T1/T2 hold cached keys seen once / more than once, B1/B2 the
/// ghosts of keys evicted from each, and the target size p of T1 moves toward whichever ghost
/// list is hit. Returns the hit ratio in percent.
inline double arc_hit_ratio(const std::vector<trace_request>& t, size_t c) {
  enum where : uint8_t { t1, t2, b1, b2 };
  std::list<uint64_t> lists[4]; // front = MRU
  struct entry {
    where w;
    std::list<uint64_t>::iterator it;
  };
  std::unordered_map<uint64_t, entry> index;
  index.reserve(2 * c + 1);
  double p = 0;
  auto move = [&](uint64_t key, where to) {
    auto& e = index[key];
    lists[to].splice(lists[to].begin(), lists[e.w], e.it);
    e.w = to;
  };
  auto drop_lru = [&](where w) {
    index.erase(lists[w].back());
    lists[w].pop_back();
  };
  auto replace = [&](bool in_b2) {
    auto n1 = static_cast<double>(lists[t1].size());
    if (!lists[t1].empty() && ((in_b2 && n1 == p) || n1 > p))
      move(lists[t1].back(), b1);
    else if (!lists[t2].empty())
      move(lists[t2].back(), b2);
    else
      move(lists[t1].back(), b1);
  };
  size_t hits = 0;
  for (auto& r : t) {
    auto x = r.key;
    auto it = index.find(x);
    if (it != index.end() && (it->second.w == t1 || it->second.w == t2)) {
      ++hits; // case I
      move(x, t2);
      continue;
    }
    if (it != index.end() && it->second.w == b1) { // case II
      auto d = std::max(1.0, double(lists[b2].size()) / double(lists[b1].size()));
      p = std::min(double(c), p + d);
      replace(false);
      move(x, t2);
      continue;
    }
    if (it != index.end()) { // case III: in B2
      auto d = std::max(1.0, double(lists[b1].size()) / double(lists[b2].size()));
      p = std::max(0.0, p - d);
      replace(true);
      move(x, t2);
      continue;
    }
    // case IV: a new key
    auto l1 = lists[t1].size() + lists[b1].size();
    auto total = l1 + lists[t2].size() + lists[b2].size();
    if (l1 == c) {
      if (lists[t1].size() < c) {
        drop_lru(b1);
        replace(false);
      } else {
        drop_lru(t1);
      }
    } else if (total >= c) {
      if (total == 2 * c)
        drop_lru(b2);
      replace(false);
    }
    lists[t1].push_front(x);
    index[x] = entry{t1, lists[t1].begin()};
  }
  return t.empty() ? 0 : 100.0 * double(hits) / double(t.size());
}

/// Belady with bypass: on a miss with a full cache, keep whichever of the new key and the cached
/// key used farthest in the future is used sooner. Returns the hit ratio in percent.
inline double opt_hit_ratio(const std::vector<trace_request>& t, size_t capacity) {
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
  return t.empty() ? 0 : 100.0 * static_cast<double>(hits) / static_cast<double>(t.size());
}

/// LRU bounded in bytes: a miss inserts the object (unless it alone exceeds the capacity) and
/// evicts from the LRU end until the bytes fit.
inline replay_result lru_bytes(const std::vector<trace_request>& t, uint64_t capacity) {
  std::list<std::pair<uint64_t, uint64_t>> order; // (key, size), front = MRU
  std::unordered_map<uint64_t, std::list<std::pair<uint64_t, uint64_t>>::iterator> where;
  uint64_t used = 0;
  replay_result out;
  for (auto& r : t) {
    auto i = where.find(r.key);
    out.count(r, i != where.end());
    if (i != where.end()) {
      order.splice(order.begin(), order, i->second);
      continue;
    }
    if (r.size > capacity)
      continue;
    order.emplace_front(r.key, r.size);
    where[r.key] = order.begin();
    used += r.size;
    while (used > capacity) {
      used -= order.back().second;
      where.erase(order.back().first);
      order.pop_back();
    }
  }
  return out;
}

/// GDSF (Cherkasova, "Improving WWW Proxies Performance with Greedy-Dual-Size-Frequency Caching
/// Policy", HP Labs 1998): an object's priority is L + frequency × cost / size, the lowest is
/// evicted and L rises to its priority (aging). cost = 1 favours small objects (object hit ratio);
/// cost = size makes it frequency with aging (byte hit ratio). Frequencies are kept while cached.
inline replay_result gdsf_bytes(const std::vector<trace_request>& t, uint64_t capacity,
                                bool cost_is_size) {
  struct entry {
    uint64_t size;
    uint64_t freq;
    std::multimap<double, uint64_t>::iterator pos;
  };
  std::multimap<double, uint64_t> by_priority;
  std::unordered_map<uint64_t, entry> cached;
  double aging = 0;
  uint64_t used = 0;
  replay_result out;
  auto priority = [&](const entry& e) {
    double cost = cost_is_size ? double(e.size) : 1.0;
    return aging + double(e.freq) * cost / double(std::max<uint64_t>(e.size, 1));
  };
  for (auto& r : t) {
    auto i = cached.find(r.key);
    out.count(r, i != cached.end());
    if (i != cached.end()) {
      ++i->second.freq;
      by_priority.erase(i->second.pos);
      i->second.pos = by_priority.emplace(priority(i->second), r.key);
      continue;
    }
    if (r.size > capacity)
      continue;
    entry e{r.size, 1, {}};
    while (used + r.size > capacity) {
      auto v = by_priority.begin();
      aging = v->first;
      used -= cached[v->second].size;
      cached.erase(v->second);
      by_priority.erase(v);
    }
    e.pos = by_priority.emplace(priority(e), r.key);
    cached.emplace(r.key, e);
    used += r.size;
  }
  return out;
}

} // namespace bulwark::bench
