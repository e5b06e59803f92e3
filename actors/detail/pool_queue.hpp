#pragma once
/// The connection pool's wait queue: who waits for a connection, who is served next, and who is
/// refused when the pool cannot keep up. A plain data structure the pool actor drives (CAF-free);
/// waiters are `uint64_t` ids, the actor keeps the requests they stand for. Time is passed in as
/// monotonic readings, so every decision is exact in tests.
///
/// Serving order: highest priority first, FIFO within a priority.
///
/// Who is rejected, and why, on `admit` (in this order; every rejection is reported with its
/// reason, nothing leaves the queue silently):
///
/// 1. **deadline_exceeded: waiters that will time out anyway.** A waiter whose deadline has passed
///    (`deadline <= now`) is removed. So is a waiter whose deadline *can no longer be met*: at
///    position i (0 = next to be served) it expects to wait (i + 1) / service_rate, and if
///    `now + that > deadline` it would only hold a slot until its timer fires. Positions are
///    recomputed as hopeless waiters leave, so one removal can save the waiters behind it. The
///    newcomer is judged the same way at the position it would take (behind every waiter of its
///    own or higher priority) and refused with deadline_exceeded if hopeless. Without a measured
///    rate (`service_rate_per_s <= 0`) only passed deadlines count. These removals come first
///    because they cost nobody a chance of being served: the original instead shed the
///    *oldest* waiters, the ones closest to being served.
/// 2. **Below the limit** (`size() < limit(pressure, health)`): the newcomer is admitted.
/// 3. **At or over the limit**, `choose_strategy(pressure, health)` decides, cumulatively:
///    - conservative: nobody is trimmed.
///    - moderate: trim up to max(1, ⌊0.25 × size⌋) waiters (`moderate_shed_fraction`), reason
///      shed.
///    - aggressive: trim up to max(1, ⌊0.50 × size⌋) waiters (`aggressive_shed_fraction`), reason
///      shed.
///    A trim only takes waiters whose priority is at most the newcomer's (a waiter is never shed in
///    favour of less important work) and takes the lowest priority first; within a priority, the
///    waiter with the least slack first, slack = deadline − now − expected wait at its position,
///    i.e. the one least likely to be served in time (with no measured rate: the one that would be
///    served last). Then, under every strategy: if the queue is now below the limit the newcomer
///    is admitted; else if the newcomer's priority is higher than the lowest priority waiting,
///    it displaces the waiter that would be served last (lowest priority, newest), reason shed;
///    else the newcomer is refused with queue_full.
///
/// 4. **standing_delay: a standing queue is held to the target delay** (CoDel's idea, for
///    requests; `admit` applies it right after rule 1, before the limit). A queue that absorbs a
///    burst is good; one whose oldest waiter has waited at least the target without a break for
///    `delay_interval` is a standing queue: it only adds delay. The target is `delay_target`, or
///    the pool's mean service time if that is longer (busy connections / service rate, from
///    `set_service`): behind calls that each take a second, a waiter that waits a second is one
///    round of service, not a standing queue. From then on (until serving drains it, or nobody
///    has waited for `delay_interval`: a queue that shedding emptied still stands) a waiter that
///    has waited the target is shed (`shed_stale`, on the timer the actor arms at `next_check`),
///    and a newcomer whose expected wait at its position, (position + 1) / service_rate, passes
///    the target is refused at once rather than queued to time out. So under a sustained flood,
///    waits stay near the target, not near the acquire timeout, and most of the excess is
///    refused in microseconds with a retry-after; a burst that drains within the interval keeps
///    the deadline rule alone. Only time while the pool serves counts: with no call running, or
///    none completing (no measured rate), waiters wait for capacity (connections still opening, a
///    backend reconnecting, one slow or hung call) and are left to their deadlines and the pool's
///    backend checks. `delay_target` 0 turns this off.
///
/// The queue never grows past the limit (a displacement keeps the size), so memory is bounded by
/// `max_waiters`. When the limit drops below the current size, nothing is removed until the next
/// admission, and then only by the rules above: the surplus drains as waiters are served.
///
/// retry_after (for every refusal an admission reports): the time the queue needs to drain,
/// `size() / service_rate` after the decision, clamped to [10 ms, 5 s]
/// (`min_retry_after`, `max_retry_after`); without a measured rate, 5 s. Pressure and health act
/// through the limit and the strategy, so they are not counted a second time here.
///
/// Cost: admit, pop, remove and the first entry of expire/next_deadline are O(log n) (plus the
/// number of distinct priorities). The hopeless check walks the queue, O(n) with n ≤ limit, but
/// only when a bound kept from the last walk (least slack, when, at what rate) cannot rule out a
/// new hopeless waiter: with a steady rate and waiters joining at the back it is skipped. A trim
/// walks only the waiters it may shed and sheds at least one of them.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

namespace bulwark::detail {

enum class rejection_strategy { conservative, moderate, aggressive };

const char* to_string(rejection_strategy x);

enum class rejection_reason {
  queue_full,        ///< the newcomer: the queue is at its limit
  shed,              ///< a waiter removed to make room or to shrink the queue under load
  deadline_exceeded, ///< deadline passed, or cannot be met at the waiter's position
  duplicate_id,      ///< the newcomer's id is already waiting (a caller bug; nothing changed)
  standing_delay,    ///< a standing queue: waited, or would wait, past the delay target
};

const char* to_string(rejection_reason x);

/// The original's pool health score in [0, 1]: (U + S + Z) / 3 with
/// U = 1 − |0.7 − active / max(1, total)| (70 % utilisation is ideal),
/// S = ok / (ok + failed), or 1 with no acquisitions yet,
/// Z = 1 if total ≤ max, else 0.5.
double pool_health(size_t active, size_t total, size_t max, uint64_t ok_acquires,
                   uint64_t failed_acquires);

/// aggressive when pressure > 0.9 or health < 0.3; moderate when pressure > 0.8 or
/// health < 0.6; else conservative.
rejection_strategy choose_strategy(double pressure, double health);

struct waiter {
  uint64_t id = 0;
  std::chrono::nanoseconds enqueued_at{0};
  std::chrono::nanoseconds deadline{0}; ///< absolute, same clock as `now`
  int priority = 0;                     ///< higher is more important
};

struct rejection {
  uint64_t id;
  rejection_reason reason;
};

struct queue_admission {
  bool admitted = false;
  /// Why the newcomer was refused (meaningful only when `admitted` is false).
  rejection_reason reason = rejection_reason::queue_full;
  /// Waiters this call removed from the queue, each to be answered now with its reason
  /// (deadline_exceeded or shed), in the order they were removed.
  std::vector<rejection> rejected;
  /// The strategy applied, when the queue was at or over its limit.
  std::optional<rejection_strategy> strategy;
  /// Set whenever anyone was refused (newcomer or waiter), except for duplicate_id; else zero.
  std::chrono::nanoseconds retry_after{0};
};

struct wait_queue_config {
  /// The limit at low pressure and good health; ×0.75 and ×0.5 under load (see `limit`).
  size_t max_waiters = 1000;
  double moderate_shed_fraction = 0.25;
  double aggressive_shed_fraction = 0.5;
  std::chrono::nanoseconds min_retry_after = std::chrono::milliseconds(10);
  std::chrono::nanoseconds max_retry_after = std::chrono::seconds(5);
  /// pool.queue_delay_target_ms / pool.queue_delay_interval_ms: rule 4 (0 target: off).
  std::chrono::nanoseconds delay_target = std::chrono::milliseconds(100);
  std::chrono::nanoseconds delay_interval = std::chrono::milliseconds(500);
};

class wait_queue {
public:
  using duration = std::chrono::nanoseconds;

  explicit wait_queue(wait_queue_config cfg = {});

  /// max_waiters × 0.5 when pressure > 0.9 or health < 0.5; × 0.75 when pressure > 0.8 or
  /// health < 0.7; else max_waiters. Never below 1 unless max_waiters is 0.
  size_t limit(double pressure_ratio, double health) const;

  /// Decides on a newcomer; see the header comment for who is rejected and why.
  /// `service_rate_per_s` is the measured rate of served acquisitions (0 when unknown).
  queue_admission admit(const waiter& w, duration now, double pressure, double health,
                        double service_rate_per_s);

  /// Removes and returns the next waiter to serve: highest priority, then oldest.
  std::optional<waiter> pop(duration now);

  /// The next waiter to serve that `skip(id)` does not exclude, left in the queue (the pool sends
  /// it ahead to a busy connection; it keeps its place, and the rules above, until it starts).
  /// O(number skipped).
  template <class Skip>
  std::optional<waiter> first_not(Skip&& skip) const {
    for (auto& k : serve_)
      if (!skip(k.id))
        return entries_.at(k.id).w;
    return std::nullopt;
  }

  /// Removes a waiter (cancelled by its caller). False when it was not waiting.
  bool remove(uint64_t id, duration now);

  /// Rule 4: while the queue is standing, removes the waiters that have waited `delay_target`
  /// or longer (oldest first), each to be answered with standing_delay. The actor calls this from
  /// the timer armed at `next_check`.
  std::vector<rejection> shed_stale(duration now);

  /// When `shed_stale` may next have something to do (the queue turns standing, or its oldest
  /// waiter reaches the target while it stands); nothing when empty or rule 4 is off.
  std::optional<duration> next_check() const;

  /// How the pool serves from `now` on: `busy` connections running calls, completing
  /// `service_rate_per_s` of them a second (0: unknown). Initially: serving, at no measured
  /// service time. The pool serves when both are above 0; while it does not, the queue cannot
  /// stand (rule 4), and a wait past the target counts only from when serving resumed. Their
  /// ratio is the mean service time that rule 4's target never goes below.
  void set_service(size_t busy, double service_rate_per_s, duration now);

  /// Rule 4's target now: `delay_target`, or the mean service time if longer.
  duration target() const;

  /// Whether the queue is standing (rule 4) as of the last call that was given the time.
  bool standing() const { return standing_; }

  /// Removes and returns the waiters whose deadline has passed (`deadline <= now`), earliest
  /// deadline first: the actor calls this from the timer armed at `next_deadline()`.
  std::vector<uint64_t> expire(duration now);

  /// The earliest deadline of any waiter, for arming one timer.
  std::optional<duration> next_deadline() const;

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  bool contains(uint64_t id) const { return entries_.count(id) > 0; }

  /// queue_len / service_rate clamped to [min_retry_after, max_retry_after]; max_retry_after
  /// when the rate is unknown (<= 0).
  duration retry_after(size_t queue_len, double service_rate_per_s) const;

  const wait_queue_config& config() const { return cfg_; }

private:
  struct serve_key {
    int priority;
    uint64_t seq;
    uint64_t id;
  };
  struct serve_order {
    bool operator()(const serve_key& x, const serve_key& y) const {
      return x.priority != y.priority ? x.priority > y.priority : x.seq < y.seq;
    }
  };
  /// A waiter by one of its times (its deadline, its arrival), then by arrival order.
  struct timed_key {
    duration at;
    uint64_t seq;
    uint64_t id;
  };
  struct timed_order {
    bool operator()(const timed_key& x, const timed_key& y) const {
      return x.at != y.at ? x.at < y.at : x.seq < y.seq;
    }
  };
  struct entry {
    waiter w;
    uint64_t seq;
  };

  void insert(const waiter& w);
  void erase(uint64_t id);
  /// Rule 4's bookkeeping; called with the time before and after every change of who waits.
  void observe(duration now);
  /// How many waiters would be served before a newcomer of this priority.
  size_t position_for(int priority) const;
  void drop_expired(duration now, std::vector<rejection>& out);
  void drop_hopeless(duration now, double rate, std::vector<rejection>& out);
  bool none_hopeless(duration now, double rate) const;
  void trim(size_t budget, int max_priority, duration now, double rate,
            std::vector<rejection>& out);

  wait_queue_config cfg_;
  std::unordered_map<uint64_t, entry> entries_;
  std::set<serve_key, serve_order> serve_;
  std::set<timed_key, timed_order> deadlines_;
  std::set<timed_key, timed_order> arrivals_;
  std::map<int, size_t, std::greater<int>> per_priority_;
  uint64_t next_seq_ = 0;

  // The bound that lets admit skip the hopeless walk: at `proof_at_`, with rate `proof_rate_`,
  // every waiter had at least `proof_min_slack_` ns of slack. Serving or removing waiters only
  // moves others forward, so the bound stays valid until time, a lower rate, or a waiter joining
  // ahead of someone uses it up.
  bool proof_valid_ = false;
  duration proof_at_{0};
  double proof_rate_ = 0;
  double proof_min_slack_ = 0;

  // Rule 4: since when the oldest waiter has been past the target without a break (none: it is
  // not), and whether the queue stands (set after `delay_interval` of that; cleared when served
  // empty, when empty for an interval, or when the pool stops serving).
  std::optional<duration> above_since_;
  bool standing_ = false;
  bool serving_ = true;
  duration serving_since_{0};
  duration service_time_{0};            ///< busy / rate at the last set_service
  std::optional<duration> empty_since_; ///< since when nobody waits (none: someone does)
};

/// Served acquisitions per second, exponentially weighted with time constant `time_constant`
/// (events older than that weigh 1/e as much), so the rate also falls while nothing is served
/// *although work is waiting or running* (a hung backend). The first event only starts the
/// clock; until `warm_up` has passed since it, the rate is unknown and `per_second` returns 0.
/// Early on, the weights are normalised by the time observed so far rather than by the full
/// time constant, so a steady stream reads its true rate from the start instead of climbing
/// towards it.
///
/// Time without demand does not count: `set_demand(false)` stops the clock and
/// `set_demand(true)` restarts it where it stopped. A pool that sat idle has not become slow;
/// before this, the first burst after a quiet minute met a rate decayed to nearly zero, and the
/// wait queue refused its first waiters as unable to meet their deadlines.
class service_rate {
public:
  using duration = std::chrono::nanoseconds;

  explicit service_rate(duration time_constant = std::chrono::seconds(1),
                        duration warm_up = std::chrono::milliseconds(100));

  void on_served(duration now);

  /// Whether any work is waiting or running (initially true).
  void set_demand(bool demand, duration now);

  double per_second(duration now) const;

private:
  bool demand_ = true;
  duration idle_since_{0};
  double tau_;     // seconds
  double warm_up_; // seconds
  bool started_ = false;
  duration start_{0};
  duration last_{0};
  double weight_ = 0; // decayed event count as of last_
};

} // namespace bulwark::detail
