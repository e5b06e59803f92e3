#pragma once
/// Messages of the rate limiter: `limit_check` → `limit_decision`, and its stats.

#include <caf/meta/type_name.hpp>
#include <caf/timestamp.hpp>

#include <cstdint>
#include <string>

namespace bulwark {

/// Ask the rate limiter whether `key` may make one request now (and count it if so). A request
/// that stands for several (a batch of `cost` items) is decided as that many at once, all or
/// none (actors/detail/rate_limit_table.hpp, Cost); 0 counts as 1.
struct limit_check {
  std::string key;
  uint32_t cost = 1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, limit_check& x) {
  return f(caf::meta::type_name("bulwark::limit_check"), x.key, x.cost);
}

/// The limiter's answer: a value, not an error (DESIGN: a decision is `{allowed, retry_after}`).
struct limit_decision {
  bool allowed = true;
  caf::timespan retry_after{0}; ///< when limited: wait this long
  uint64_t remaining = 0;       ///< requests still allowed at once
  std::string decision;         ///< the metric label: "allowed", "limited", "overflow_limited"...
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, limit_decision& x) {
  return f(caf::meta::type_name("bulwark::limit_decision"), x.allowed, x.retry_after, x.remaining,
           x.decision);
}

/// The limiter's state (`get_atom`).
struct limiter_stats {
  uint64_t keys = 0;
  uint64_t bytes = 0;
  uint64_t max_bytes = 0;
  uint64_t allowed = 0;
  uint64_t limited = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, limiter_stats& x) {
  return f(caf::meta::type_name("bulwark::limiter_stats"), x.keys, x.bytes, x.max_bytes, x.allowed,
           x.limited);
}

} // namespace bulwark
