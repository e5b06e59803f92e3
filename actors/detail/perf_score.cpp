#include "actors/detail/perf_score.hpp"

#include <iterator>

namespace bulwark::detail {

namespace {

struct row {
  const char* name;
  double high;
  int high_penalty;
  double low;
  int low_penalty;
  const char* advice;
};

// The table of the header, in its order.
const row rows[] = {
    {"cpu", 0.80, 20, 0.60, 10,
     "The process is CPU-bound: give it more cores (scheduler.threads, http.threads follow them) "
     "or cache more reads (a statement's cache_ttl_ms); what it cannot serve is refused by the "
     "pool's queue and the memory account."},
    {"memory", 0.85, 20, 0.70, 10,
     "Memory is close to the limit: raise memory.budget_bytes or the cgroup limit, or lower "
     "database.max_bytes and the cache's budget; see bulwark_memory_reserved_bytes{consumer} for "
     "who holds it."},
    {"scheduler_lag", 0.80, 20, 0.60, 10,
     "Messages wait long for a scheduler thread: raise scheduler.threads (0: one per core) or "
     "look for work that holds a thread (a profile of the node, perf record)."},
    {"response_time", 1.0, 15, 0.5, 8,
     "Served requests are slow on average: compare backend_p99_s with request_p99_s; a slow "
     "backend wants its statements or indexes looked at, a slow node more capacity."},
    {"error_rate", 0.05, 15, 0.01, 5,
     "Requests fail (backend errors, timeouts, internal errors): see bulwark_requests_total by "
     "outcome, the breaker's state and the node's warn log, which names each failed request."},
};

const char* cache_advice =
    "Fewer than half the cache's lookups hit: give the cache more room (cache.max_bytes), a "
    "longer cache_ttl_ms for the statements read most, or leave statements that rarely repeat "
    "uncached.";

} // namespace

score_result score_performance(const perf_score_input& in) {
  score_result out;
  const std::optional<double> values[] = {in.cpu_ratio, in.memory_ratio, in.lag_ratio,
                                          in.mean_response_s, in.error_ratio};
  for (size_t i = 0; i < std::size(rows); ++i) {
    if (!values[i])
      continue;
    auto v = *values[i];
    auto& r = rows[i];
    if (v > r.high)
      out.findings.push_back({r.name, v, r.high, r.high_penalty, r.advice});
    else if (v > r.low)
      out.findings.push_back({r.name, v, r.low, r.low_penalty, r.advice});
  }
  for (auto& f : out.findings)
    out.score -= f.penalty;
  if (in.cache_hit_ratio && *in.cache_hit_ratio < 0.5)
    out.findings.push_back({"cache_hit_rate", *in.cache_hit_ratio, 0.5, 0, cache_advice});
  return out;
}

} // namespace bulwark::detail
