#pragma once
/// The circuit breaker's state machine, CAF-free (resilience4j-like). The `circuit_breaker` actor
/// owns time and the call timeouts; this class only decides. Every method takes `now` (a monotonic
/// clock reading) and the jitter comes from an injected source, so tests are exact.
///
/// | state     | try_acquire(now)                   | leaves when                                 |
/// |-----------|------------------------------------|---------------------------------------------|
/// | closed    | permits; results fill the window   | window holds >= minimum_calls and failure   |
/// |           |                                    | or slow-call rate >= its threshold → open   |
/// | open      | rejects, retry_after =             | first try_acquire at/after open_until →     |
/// |           | open_until − now                   | half_open, that call being the first probe  |
/// | half_open | admits exactly half_open_probes    | probe failure or slow rate can no longer    |
/// |           | probes (on_ignored frees a slot),  | end below its threshold → open (longer      |
/// |           | rejects the rest with retry_after  | wait); all probes completed with both rates |
/// |           | = slow_call_duration               | below → closed (window and backoff reset)   |
///
/// open → half_open is lazy: state() reports open until a call asks (see open_until()).
/// Manual: force_open (rejects until reset/force_closed), force_closed (permits everything,
/// records nothing, until reset/force_open), reset (closed, window cleared, backoff restarted).
///
/// Every state change (manual ones included) starts a new *epoch*. try_acquire hands out the
/// current epoch and on_result/on_ignored take it back, so a result that belongs to an older state
/// (a call admitted while closed that completes after the breaker opened) never touches the
/// counters. The wrapper must report every permitted call exactly once, through on_result or
/// on_ignored, or half-open waits for the missing probe forever (the actor's per-call timeout
/// guarantees a report).
///
/// Open waits back off: the n-th consecutive open (no successful close in between) waits
/// min(open_wait_max, open_wait × open_wait_multiplier^(n−1)) × a factor drawn uniformly from
/// [1 − jitter, 1 + jitter] (the source's [0, 1) maps to [1 − jitter, 1 + jitter), but rounding to
/// whole nanoseconds may reach the upper bound). The cap applies before the jitter, so
/// de-synchronised breakers stay de-synchronised at the cap too.
///
/// Cost: O(1) per call (the time-based window clears at most one bucket per elapsed second);
/// memory is one byte per call of a count-based window, or one bucket per second of a time-based
/// one, both bounded by validate().

#include "actors/detail/backoff.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace bulwark::detail {

enum class breaker_state : uint8_t { closed = 0, open = 1, half_open = 2 };

/// "closed", "open" or "half_open".
const char* to_string(breaker_state x);

enum class breaker_window_kind : uint8_t {
  count_based, ///< the last `window_size` calls
  time_based,  ///< the calls of the last `window_duration`, aggregated per second
};

struct breaker_config {
  breaker_window_kind window_kind = breaker_window_kind::count_based;
  /// Calls in a count-based window (one byte each; at most 1'000'000).
  std::size_t window_size = 100;
  /// Length of a time-based window: a whole number of seconds, at most 1 h. It is kept as one
  /// bucket per clock second, so a call counts for between window_duration − 1 s and
  /// window_duration (resilience4j does the same); a call older than window_duration never counts.
  std::chrono::nanoseconds window_duration = std::chrono::seconds(10);
  /// No decision to open below this many calls in the window (for count-based: <= window_size).
  std::size_t minimum_calls = 20;
  /// Opens at failed / calls >= this, in (0, 1].
  double failure_rate_threshold = 0.5;
  /// Opens at slow / calls >= this, in (0, 1]. A slow success still counts as a success.
  double slow_call_rate_threshold = 0.8;
  /// A call is slow when its duration is >= this.
  std::chrono::nanoseconds slow_call_duration = std::chrono::seconds(1);
  /// Wait of the first open, before jitter.
  std::chrono::nanoseconds open_wait = std::chrono::seconds(5);
  /// Cap of the backed-off wait, before jitter (>= open_wait).
  std::chrono::nanoseconds open_wait_max = std::chrono::seconds(60);
  /// Growth of the wait per consecutive open (>= 1; 1 disables backoff).
  double open_wait_multiplier = 2;
  /// The wait is multiplied by a factor uniform in [1 − jitter, 1 + jitter]; in [0, 1).
  double jitter = 0.2;
  /// Probes admitted in half-open (in total, not only concurrently; >= 1).
  std::size_t half_open_probes = 3;
};

/// Every problem with `x`, each naming its field ("failure_rate_threshold: must be in (0, 1], is
/// 1.5"); empty when valid.
std::vector<std::string> validate(const breaker_config& x);

/// What try_acquire decided.
struct admission {
  bool permitted = false;
  bool probe = false; ///< a half-open probe (informational: the epoch already says so)
  std::chrono::nanoseconds retry_after{0}; ///< when rejected: a hint for the caller
  uint64_t epoch = 0;                      ///< pass back to on_result / on_ignored
};

struct window_stats {
  uint64_t calls = 0;
  uint64_t failures = 0;
  uint64_t slow = 0;
  double failure_rate() const { return calls == 0 ? 0 : double(failures) / double(calls); }
  double slow_rate() const { return calls == 0 ? 0 : double(slow) / double(calls); }
};

/// The half-open tally. `admitted` counts the slots in use (an ignored probe gives its slot back).
struct probe_stats {
  uint64_t admitted = 0;
  uint64_t completed = 0;
  uint64_t failures = 0;
  uint64_t slow = 0;
};

struct transition {
  breaker_state from = breaker_state::closed;
  breaker_state to = breaker_state::closed;
  std::chrono::nanoseconds at{0};
  /// For humans and logs, e.g. "failure rate 0.55 >= 0.50 over 20 calls (11 failed, 3 slow);
  /// open for 5.000 s (consecutive open 1)".
  std::string reason;
};

/// A sliding window of call outcomes, count-based (ring of outcomes) or time-based (ring of
/// per-second buckets), with running totals. Used by breaker_core; exposed for its tests.
class outcome_window {
public:
  explicit outcome_window(const breaker_config& cfg);

  void record(bool failed, bool slow, std::chrono::nanoseconds now);

  /// The totals as seen at `now` (a time-based window drops what `now` has aged out).
  window_stats stats(std::chrono::nanoseconds now) const;

  void clear();

private:
  struct bucket {
    uint64_t calls = 0;
    uint64_t failures = 0;
    uint64_t slow = 0;
  };

  static constexpr uint8_t failed_bit = 1;
  static constexpr uint8_t slow_bit = 2;

  void advance(int64_t second);
  void drop(bucket& b);

  breaker_window_kind kind_;
  window_stats totals_;
  // count-based
  std::vector<uint8_t> outcomes_;
  std::size_t filled_ = 0;
  std::size_t next_ = 0;
  // time-based: bucket of clock second s is buckets_[s % size]; head_ is the newest second seen.
  std::vector<bucket> buckets_;
  std::optional<int64_t> head_;
};

class breaker_core {
public:
  using duration = std::chrono::nanoseconds;

  /// Throws std::invalid_argument listing every problem validate() finds (a start-up error).
  /// An empty `random` draws from random_uniform() (detail/backoff.hpp), so breakers in
  /// different processes do not back off in lockstep.
  explicit breaker_core(breaker_config cfg, std::function<double()> random = {});

  /// Asks to make one call at `now`. Moves open → half_open once the wait is over.
  admission try_acquire(duration now);

  /// Reports a permitted call. Counts as failed when !success, as slow when
  /// `call_duration` >= slow_call_duration. Ignored when `epoch` is not the current one.
  void on_result(uint64_t epoch, bool success, duration call_duration, duration now);

  /// Gives back a permission without recording anything (the call never reached the backend,
  /// e.g. the pool shed it with queue_full: not a backend failure). In half-open this frees the
  /// probe's slot for another call; a stale epoch frees nothing.
  void on_ignored(uint64_t epoch);

  /// Open until reset() or force_closed(); try_acquire rejects with retry_after = open_wait
  /// (nobody knows when an operator lets go; the base wait is a sensible polling interval).
  /// Leaves consecutive_opens() alone.
  void force_open(duration now);

  /// Closed until reset() or force_open(): permits every call and records nothing.
  void force_closed(duration now);

  /// Closed, window cleared, consecutive opens 0, any forcing lifted.
  void reset(duration now);

  /// Evidence that the backend is back (the pool opened a new connection after the breaker
  /// opened): an open, unforced breaker ends its wait now, so the next call becomes the first
  /// half-open probe. The probes still decide, so a false hope costs at most `half_open_probes`
  /// calls and a longer wait. Returns whether the wait was cut short. The growing open wait is
  /// for a backend nobody knows about; once the pool has proof of life, waiting it out only
  /// keeps a recovered service down (the recovery benchmark: 6.6 s of 503s after PostgreSQL was
  /// back, in the second consecutive open's 9.5 s wait).
  bool backend_alive(duration now);

  /// A new incarnation of the breaker's actor took this core over (its state survives a crash):
  /// calls the last one admitted can no longer report. Closed and open carry on as they are; a
  /// half-open breaker, whose probes died with the actor, goes back to open with its wait over,
  /// so the next call is a fresh first probe (no probe slot is ever lost).
  void resume(duration now);

  breaker_state state() const { return state_; }
  /// Whether the state is held by force_open / force_closed.
  bool forced() const { return forced_; }
  /// When open: the time from which try_acquire moves to half-open (duration::max() when forced).
  /// Meaningless in other states.
  duration open_until() const { return open_until_; }
  uint64_t epoch() const { return epoch_; }
  uint32_t consecutive_opens() const { return consecutive_opens_; }
  window_stats window(duration now) const { return window_.stats(now); }
  const probe_stats& probes() const { return probes_; }
  const std::optional<transition>& last_transition() const { return last_; }
  /// Transitions into `x` so far, manual ones included (a reset counts as one into closed).
  uint64_t transitions_to(breaker_state x) const { return transitions_[static_cast<int>(x)]; }
  /// Results and ignores that arrived with an older epoch and were dropped.
  uint64_t stale_reports() const { return stale_reports_; }
  const breaker_config& config() const { return cfg_; }

private:
  void move_to(breaker_state to, duration now, std::string reason);
  void open(duration now, std::string why);
  duration next_wait();
  void on_probe_result(bool failed, bool slow, duration now);

  breaker_config cfg_;
  std::function<double()> random_;
  outcome_window window_;
  breaker_state state_ = breaker_state::closed;
  bool forced_ = false;
  duration open_until_{0};
  uint64_t epoch_ = 0;
  uint32_t consecutive_opens_ = 0;
  probe_stats probes_;
  std::optional<transition> last_;
  std::array<uint64_t, 3> transitions_{};
  uint64_t stale_reports_ = 0;
};

} // namespace bulwark::detail
