#include "actors/detail/breaker_core.hpp"

#include "actors/detail/text.hpp"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <limits>
#include <random>
#include <stdexcept>

namespace bulwark::detail {

namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;

constexpr std::size_t max_window_size = 1'000'000;
constexpr auto max_window_duration = std::chrono::hours(1);

std::string counts(uint64_t failures, uint64_t slow) {
  return format("(%llu failed, %llu slow)", static_cast<unsigned long long>(failures),
                static_cast<unsigned long long>(slow));
}

} // namespace

const char* to_string(breaker_state x) {
  switch (x) {
  case breaker_state::closed:
    return "closed";
  case breaker_state::open:
    return "open";
  case breaker_state::half_open:
    return "half_open";
  }
  return "invalid";
}

std::vector<std::string> validate(const breaker_config& x) {
  std::vector<std::string> out;
  auto bad = [&](const char* field, const std::string& what) {
    out.push_back(std::string(field) + ": " + what);
  };
  auto unit_rate = [&](const char* field, double v) {
    if (!(v > 0 && v <= 1))
      bad(field, format("must be in (0, 1], is %g", v));
  };
  if (x.window_kind == breaker_window_kind::count_based) {
    if (x.window_size < 1 || x.window_size > max_window_size)
      bad("window_size",
          format("must be in [1, %zu] calls, is %zu", max_window_size, x.window_size));
    else if (x.minimum_calls > x.window_size)
      bad("minimum_calls", format("must be <= window_size (%zu) or the breaker never opens, is %zu",
                                  x.window_size, x.minimum_calls));
  } else {
    if (x.window_duration < seconds(1) || x.window_duration > max_window_duration ||
        x.window_duration % seconds(1) != nanoseconds(0))
      bad("window_duration", format("must be a whole number of seconds in [1, 3600], is %g s",
                                    secs(x.window_duration)));
  }
  if (x.minimum_calls < 1)
    bad("minimum_calls", "must be >= 1, is 0");
  unit_rate("failure_rate_threshold", x.failure_rate_threshold);
  unit_rate("slow_call_rate_threshold", x.slow_call_rate_threshold);
  if (x.slow_call_duration <= nanoseconds(0))
    bad("slow_call_duration", format("must be > 0, is %g s", secs(x.slow_call_duration)));
  if (x.open_wait <= nanoseconds(0))
    bad("open_wait", format("must be > 0, is %g s", secs(x.open_wait)));
  if (x.open_wait_max < x.open_wait)
    bad("open_wait_max",
        format("must be >= open_wait (%g s), is %g s", secs(x.open_wait), secs(x.open_wait_max)));
  if (!(x.open_wait_multiplier >= 1 && std::isfinite(x.open_wait_multiplier)))
    bad("open_wait_multiplier", format("must be >= 1, is %g", x.open_wait_multiplier));
  if (!(x.jitter >= 0 && x.jitter < 1))
    bad("jitter", format("must be in [0, 1), is %g", x.jitter));
  if (x.half_open_probes < 1)
    bad("half_open_probes", "must be >= 1, is 0");
  return out;
}

// -- outcome_window -------------------------------------------------------------------------------

outcome_window::outcome_window(const breaker_config& cfg) : kind_(cfg.window_kind) {
  if (kind_ == breaker_window_kind::count_based)
    outcomes_.resize(cfg.window_size);
  else
    buckets_.resize(
        static_cast<std::size_t>(std::chrono::duration_cast<seconds>(cfg.window_duration).count()));
}

void outcome_window::drop(bucket& b) {
  totals_.calls -= b.calls;
  totals_.failures -= b.failures;
  totals_.slow -= b.slow;
  b = bucket{};
}

void outcome_window::advance(int64_t second) {
  if (!head_) {
    head_ = second;
    return;
  }
  // A reading older than the newest one (not expected from a monotonic clock) goes to the newest
  // bucket rather than resurrecting an expired one.
  if (second <= *head_)
    return;
  auto n = static_cast<int64_t>(buckets_.size());
  if (second - *head_ >= n) {
    std::fill(buckets_.begin(), buckets_.end(), bucket{});
    totals_ = window_stats{};
  } else {
    // At most one bucket per elapsed second: O(1) amortised per call.
    for (auto s = *head_ + 1; s <= second; ++s)
      drop(buckets_[static_cast<std::size_t>(s % n)]);
  }
  head_ = second;
}

void outcome_window::record(bool failed, bool slow, nanoseconds now) {
  if (kind_ == breaker_window_kind::count_based) {
    auto& slot = outcomes_[next_];
    if (filled_ == outcomes_.size()) {
      // Full: the oldest outcome is the one being overwritten.
      totals_.calls -= 1;
      totals_.failures -= (slot & failed_bit) ? 1 : 0;
      totals_.slow -= (slot & slow_bit) ? 1 : 0;
    } else {
      ++filled_;
    }
    slot = static_cast<uint8_t>((failed ? failed_bit : 0) | (slow ? slow_bit : 0));
    next_ = (next_ + 1) % outcomes_.size();
  } else {
    advance(std::chrono::floor<seconds>(now).count());
    auto& b = buckets_[static_cast<std::size_t>(*head_ % static_cast<int64_t>(buckets_.size()))];
    ++b.calls;
    b.failures += failed ? 1 : 0;
    b.slow += slow ? 1 : 0;
  }
  totals_.calls += 1;
  totals_.failures += failed ? 1 : 0;
  totals_.slow += slow ? 1 : 0;
}

window_stats outcome_window::stats(nanoseconds now) const {
  if (kind_ == breaker_window_kind::count_based || !head_)
    return totals_;
  auto second = std::chrono::floor<seconds>(now).count();
  if (second <= *head_)
    return totals_;
  auto n = static_cast<int64_t>(buckets_.size());
  if (second - *head_ >= n)
    return window_stats{};
  auto result = totals_;
  for (auto s = *head_ + 1; s <= second; ++s) {
    const auto& b = buckets_[static_cast<std::size_t>(s % n)];
    result.calls -= b.calls;
    result.failures -= b.failures;
    result.slow -= b.slow;
  }
  return result;
}

void outcome_window::clear() {
  totals_ = window_stats{};
  // Count-based: slots past filled_ are never read before being rewritten, so no fill is needed.
  filled_ = 0;
  next_ = 0;
  std::fill(buckets_.begin(), buckets_.end(), bucket{});
  head_.reset();
}

// -- breaker_core ---------------------------------------------------------------------------------

namespace {

breaker_config checked(breaker_config cfg) {
  auto problems = validate(cfg);
  if (!problems.empty()) {
    std::string what = "invalid breaker_config:";
    for (auto& p : problems)
      what += "\n  " + p;
    throw std::invalid_argument(what);
  }
  return cfg;
}

} // namespace

breaker_core::breaker_core(breaker_config cfg, std::function<double()> random)
    : cfg_(checked(cfg)), random_(random ? std::move(random) : random_uniform()), window_(cfg_) {}

admission breaker_core::try_acquire(duration now) {
  switch (state_) {
  case breaker_state::closed:
    return {true, false, duration{0}, epoch_};
  case breaker_state::open:
    if (forced_)
      return {false, false, cfg_.open_wait, epoch_};
    if (now < open_until_)
      return {false, false, open_until_ - now, epoch_};
    move_to(breaker_state::half_open, now,
            format("open wait elapsed; admitting %zu probes", cfg_.half_open_probes));
    probes_.admitted = 1;
    return {true, true, duration{0}, epoch_};
  case breaker_state::half_open:
    if (probes_.admitted < cfg_.half_open_probes) {
      ++probes_.admitted;
      return {true, true, duration{0}, epoch_};
    }
    // The admitted probes decide within about one call; a call slower than slow_call_duration
    // already counts against closing. Retrying after that meets either a closed breaker or an
    // open one with an exact retry_after, and never hammers the probes.
    return {false, false, cfg_.slow_call_duration, epoch_};
  }
  return {false, false, cfg_.open_wait, epoch_};
}

void breaker_core::on_result(uint64_t epoch, bool success, duration call_duration, duration now) {
  if (epoch != epoch_) {
    ++stale_reports_;
    return;
  }
  bool failed = !success;
  bool slow = call_duration >= cfg_.slow_call_duration;
  switch (state_) {
  case breaker_state::closed: {
    if (forced_)
      return;
    window_.record(failed, slow, now);
    auto w = window_.stats(now);
    if (w.calls < cfg_.minimum_calls)
      return;
    auto fr = w.failure_rate();
    auto sr = w.slow_rate();
    if (fr >= cfg_.failure_rate_threshold)
      open(now, format("failure rate %.2f >= %.2f over %llu calls ", fr,
                       cfg_.failure_rate_threshold, static_cast<unsigned long long>(w.calls)) +
                    counts(w.failures, w.slow));
    else if (sr >= cfg_.slow_call_rate_threshold)
      open(now, format("slow-call rate %.2f >= %.2f over %llu calls ", sr,
                       cfg_.slow_call_rate_threshold, static_cast<unsigned long long>(w.calls)) +
                    counts(w.failures, w.slow));
    return;
  }
  case breaker_state::half_open:
    on_probe_result(failed, slow, now);
    return;
  case breaker_state::open:
    // No permit is ever handed out with an open epoch.
    return;
  }
}

void breaker_core::on_probe_result(bool failed, bool slow, duration now) {
  if (probes_.completed >= probes_.admitted)
    return; // more reports than permits: a wrapper bug, never let it skew the tally
  ++probes_.completed;
  probes_.failures += failed ? 1 : 0;
  probes_.slow += slow ? 1 : 0;
  // Rates over all probes: the denominator is final, because an ignored probe's slot is handed out
  // again. So once a rate reaches its threshold, no later probe can bring it back below.
  auto n = static_cast<double>(cfg_.half_open_probes);
  auto fr = static_cast<double>(probes_.failures) / n;
  auto sr = static_cast<double>(probes_.slow) / n;
  auto progress =
      format(" with %llu of %zu probes completed ",
             static_cast<unsigned long long>(probes_.completed), cfg_.half_open_probes) +
      counts(probes_.failures, probes_.slow);
  if (fr >= cfg_.failure_rate_threshold) {
    open(now,
         format("probe failure rate %.2f >= %.2f", fr, cfg_.failure_rate_threshold) + progress);
  } else if (sr >= cfg_.slow_call_rate_threshold) {
    open(now,
         format("probe slow-call rate %.2f >= %.2f", sr, cfg_.slow_call_rate_threshold) + progress);
  } else if (probes_.completed == cfg_.half_open_probes) {
    auto reason = format("all %zu probes completed: failure rate %.2f < %.2f, slow-call rate "
                         "%.2f < %.2f",
                         cfg_.half_open_probes, fr, cfg_.failure_rate_threshold, sr,
                         cfg_.slow_call_rate_threshold);
    consecutive_opens_ = 0;
    move_to(breaker_state::closed, now, std::move(reason));
  }
}

void breaker_core::on_ignored(uint64_t epoch) {
  if (epoch != epoch_) {
    ++stale_reports_;
    return;
  }
  if (state_ == breaker_state::half_open && probes_.admitted > probes_.completed)
    --probes_.admitted;
}

void breaker_core::force_open(duration now) {
  forced_ = true;
  open_until_ = duration::max();
  move_to(breaker_state::open, now, "forced open");
}

void breaker_core::force_closed(duration now) {
  forced_ = true;
  move_to(breaker_state::closed, now, "forced closed");
}

bool breaker_core::backend_alive(duration now) {
  if (state_ != breaker_state::open || forced_ || open_until_ <= now)
    return false;
  open_until_ = now;
  return true;
}

void breaker_core::resume(duration now) {
  if (state_ != breaker_state::half_open)
    return; // an older epoch's reports are dropped anyway, and none can come from a dead actor
  open_until_ = now;
  move_to(breaker_state::open, now,
          "restarted while half-open: its probes are gone; probing afresh");
}

void breaker_core::reset(duration now) {
  forced_ = false;
  consecutive_opens_ = 0;
  move_to(breaker_state::closed, now, "reset");
}

void breaker_core::open(duration now, std::string why) {
  ++consecutive_opens_;
  auto wait = next_wait();
  open_until_ = now + wait;
  move_to(breaker_state::open, now,
          std::move(why) +
              format("; open for %.3f s (consecutive open %u)", secs(wait), consecutive_opens_));
}

breaker_core::duration breaker_core::next_wait() {
  backoff b{cfg_.open_wait, cfg_.open_wait_max, cfg_.open_wait_multiplier, 1 - cfg_.jitter,
            1 + cfg_.jitter};
  return b.wait(consecutive_opens_, random_);
}

void breaker_core::move_to(breaker_state to, duration now, std::string reason) {
  // Every state gets a fresh epoch and fresh counters: results of older states never leak in, and
  // a close really starts from an empty window (the original kept its failure count across a
  // close, so one failure right after recovering reopened it).
  if (to == breaker_state::closed)
    window_.clear();
  probes_ = probe_stats{};
  ++epoch_;
  ++transitions_[static_cast<int>(to)];
  last_ = transition{state_, to, now, std::move(reason)};
  state_ = to;
}

} // namespace bulwark::detail
