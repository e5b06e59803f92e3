#pragma once
/// The deadlines of many pending things (calls, requests) served by one timer in flight at a
/// time, instead of one timer per thing.
///
/// Why: CAF 0.17's clock is one thread behind a mutex; every timer set or cancelled, whether a
/// delayed_send or a request's timeout, takes that mutex and wakes the clock thread with a
/// condition variable. Per request that was the largest single source of thread wake-ups on the
/// point-query path (bench/RESULTS.md, "The cost of mediation"). Deadlines on the request path
/// are mostly later than every one already pending (now + the same timeout), so a timer armed
/// for the earliest deadline stays valid while requests come and go: under steady load about
/// one timer per timeout period, whatever the rate.
///
///   if (auto at = deadlines.set(id, deadline)) arm a timer for *at;  // when a thing starts
///   deadlines.erase(id);                                             // when it ends in time
///   on the timer: for (auto id : deadlines.expire(now)) ...;         // those whose time came
///                 if (auto at = deadlines.next()) arm a timer for *at;
///
/// A timer that fires early or late (a stale one, after an earlier one was armed) is harmless:
/// expire() takes only what is due. Pure and single-threaded, like the actor that owns it.

#include <caf/timestamp.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bulwark::detail {

class deadline_set {
public:
  using time = caf::timespan;

  /// Sets (or moves) `id`'s deadline to `at`. Returns when a new timer must fire: `at`, when no
  /// timer is in flight or the one in flight fires later than `at`.
  std::optional<time> set(uint64_t id, time at) {
    erase(id);
    by_time_.emplace(at, id);
    at_.emplace(id, at);
    if (armed_ && *armed_ <= at)
      return std::nullopt;
    armed_ = at;
    return at;
  }

  /// Forgets `id` (ended before its deadline); unknown ids are ignored.
  void erase(uint64_t id) {
    auto i = at_.find(id);
    if (i == at_.end())
      return;
    by_time_.erase({i->second, id});
    at_.erase(i);
  }

  /// A timer fired at `now`: the ids whose deadline is at or before `now`, earliest first,
  /// removed. Call next() afterwards (and after acting on them: acting may set new deadlines).
  std::vector<uint64_t> expire(time now) {
    if (armed_ && *armed_ <= now)
      armed_.reset(); // the earliest timer in flight has fired (this one or an earlier one)
    std::vector<uint64_t> due;
    while (!by_time_.empty() && by_time_.begin()->first <= now) {
      auto id = by_time_.begin()->second;
      by_time_.erase(by_time_.begin());
      at_.erase(id);
      due.push_back(id);
    }
    return due;
  }

  /// When a new timer must fire, if one must: the earliest deadline, when no timer in flight
  /// fires at or before it.
  std::optional<time> next() {
    if (by_time_.empty())
      return std::nullopt;
    auto earliest = by_time_.begin()->first;
    if (armed_ && *armed_ <= earliest)
      return std::nullopt;
    armed_ = earliest;
    return earliest;
  }

  bool contains(uint64_t id) const { return at_.count(id) != 0; }
  size_t size() const { return at_.size(); }
  /// The earliest timer in flight, as far as this set knows.
  std::optional<time> armed() const { return armed_; }

private:
  std::set<std::pair<time, uint64_t>> by_time_;
  std::unordered_map<uint64_t, time> at_;
  std::optional<time> armed_;
};

} // namespace bulwark::detail
