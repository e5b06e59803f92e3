#pragma once
/// Reads the cache traces of ../shared/data/traces (gzip text, `key` or `key size` per line; see
/// its README) through `gzip -dc`, so nothing but the system's gzip is needed, and the LRU
/// baseline. Used by the trace replay benchmark and the policy's hit-ratio tests.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace bulwark::bench {

struct trace_request {
  uint64_t key;
  uint64_t size; ///< 0 when the trace has no sizes
};

/// The folder holding the traces: $BULWARK_TRACE_DIR, else ../shared/data/traces beside the
/// source tree.
inline std::string trace_dir(const std::string& source_dir) {
  if (const char* d = std::getenv("BULWARK_TRACE_DIR"))
    return d;
  return source_dir + "/../shared/data/traces";
}

/// Reads at most `limit` requests (0: all) of `<dir>/<name>.trace.gz`; throws if unreadable.
inline std::vector<trace_request> read_trace(const std::string& dir, const std::string& name,
                                             size_t limit = 0) {
  auto path = dir + "/" + name + ".trace.gz";
  if (FILE* f = std::fopen(path.c_str(), "rb"))
    std::fclose(f);
  else
    throw std::runtime_error("cannot read trace " + path);
  auto cmd = "gzip -dc '" + path + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p)
    throw std::runtime_error("cannot run: " + cmd);
  std::vector<trace_request> out;
  char line[128];
  while ((limit == 0 || out.size() < limit) && std::fgets(line, sizeof line, p)) {
    char* end = nullptr;
    trace_request r{std::strtoull(line, &end, 10), 0};
    if (end == line)
      continue;
    r.size = std::strtoull(end, nullptr, 10);
    out.push_back(r);
  }
  auto rc = pclose(p);
  if (limit == 0 && rc != 0)
    throw std::runtime_error("gzip failed on " + path);
  return out;
}

/// The baseline every policy is judged against: plain LRU with an object-count capacity, by the
/// textbook (a list and a map). Returns the hit ratio, 0..1.
inline double lru_hit_ratio(const std::vector<trace_request>& t, size_t capacity) {
  std::list<uint64_t> order;
  std::unordered_map<uint64_t, std::list<uint64_t>::iterator> where;
  size_t hits = 0;
  for (auto& r : t) {
    if (auto i = where.find(r.key); i != where.end()) {
      ++hits;
      order.splice(order.begin(), order, i->second);
      continue;
    }
    order.push_front(r.key);
    where[r.key] = order.begin();
    if (order.size() > capacity) {
      where.erase(order.back());
      order.pop_back();
    }
  }
  return t.empty() ? 0 : static_cast<double>(hits) / static_cast<double>(t.size());
}

} // namespace bulwark::bench
