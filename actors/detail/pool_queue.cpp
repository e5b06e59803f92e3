#include "actors/detail/pool_queue.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

namespace bulwark::detail {

namespace {

constexpr double ns_per_s = 1e9;

bool known(double rate) {
  return rate > 0 && std::isfinite(rate);
}

// Slack of a waiter at `position` (0 = next): deadline − now − expected wait, in ns.
double slack(std::chrono::nanoseconds deadline, std::chrono::nanoseconds now, size_t position,
             double rate) {
  return static_cast<double>((deadline - now).count()) -
         static_cast<double>(position + 1) * ns_per_s / rate;
}

} // namespace

const char* to_string(rejection_strategy x) {
  switch (x) {
  case rejection_strategy::conservative:
    return "conservative";
  case rejection_strategy::moderate:
    return "moderate";
  case rejection_strategy::aggressive:
    return "aggressive";
  }
  return "?";
}

const char* to_string(rejection_reason x) {
  switch (x) {
  case rejection_reason::queue_full:
    return "queue_full";
  case rejection_reason::shed:
    return "shed";
  case rejection_reason::deadline_exceeded:
    return "deadline_exceeded";
  case rejection_reason::duplicate_id:
    return "duplicate_id";
  case rejection_reason::standing_delay:
    return "standing_delay";
  }
  return "?";
}

double pool_health(size_t active, size_t total, size_t max, uint64_t ok_acquires,
                   uint64_t failed_acquires) {
  auto utilisation = static_cast<double>(active) / static_cast<double>(std::max<size_t>(1, total));
  auto u = 1.0 - std::abs(0.7 - utilisation);
  auto attempts = ok_acquires + failed_acquires;
  auto s = attempts == 0 ? 1.0 : static_cast<double>(ok_acquires) / static_cast<double>(attempts);
  auto z = total <= max ? 1.0 : 0.5;
  return (u + s + z) / 3.0;
}

rejection_strategy choose_strategy(double pressure, double health) {
  if (pressure > 0.9 || health < 0.3)
    return rejection_strategy::aggressive;
  if (pressure > 0.8 || health < 0.6)
    return rejection_strategy::moderate;
  return rejection_strategy::conservative;
}

// -- wait_queue ---------------------------------------------------------------

wait_queue::wait_queue(wait_queue_config cfg) : cfg_(cfg) {
  // Bounded: the queue never holds more than max_waiters.
  entries_.reserve(std::min<size_t>(cfg_.max_waiters, 4096));
}

size_t wait_queue::limit(double pressure_ratio, double health) const {
  if (cfg_.max_waiters == 0)
    return 0;
  double factor = 1.0;
  if (pressure_ratio > 0.9 || health < 0.5)
    factor = 0.5;
  else if (pressure_ratio > 0.8 || health < 0.7)
    factor = 0.75;
  auto n = static_cast<size_t>(std::floor(static_cast<double>(cfg_.max_waiters) * factor));
  return std::max<size_t>(1, n);
}

queue_admission wait_queue::admit(const waiter& w, duration now, double pressure, double health,
                                  double service_rate_per_s) {
  queue_admission out;
  if (contains(w.id)) {
    out.reason = rejection_reason::duplicate_id;
    return out;
  }
  const auto rate = known(service_rate_per_s) ? service_rate_per_s : 0.0;
  auto refuse = [&](rejection_reason why) {
    out.admitted = false;
    out.reason = why;
    out.retry_after = retry_after(size(), rate);
    return out;
  };
  // 1. Waiters that will time out anyway leave first, then (4.) those a standing queue holds
  // past the target.
  observe(now);
  drop_expired(now, out.rejected);
  if (rate > 0)
    drop_hopeless(now, rate, out.rejected);
  for (auto& r : shed_stale(now))
    out.rejected.push_back(r);
  observe(now);
  auto position = position_for(w.priority);
  if (w.deadline <= now || (rate > 0 && slack(w.deadline, now, position, rate) < 0))
    return refuse(rejection_reason::deadline_exceeded);
  if (standing_ && rate > 0 &&
      static_cast<double>(position + 1) * ns_per_s / rate > static_cast<double>(target().count()))
    return refuse(rejection_reason::standing_delay);
  // 2./3. Room below the limit, or make room by the strategy.
  auto cap = limit(pressure, health);
  if (size() >= cap) {
    auto strategy = choose_strategy(pressure, health);
    out.strategy = strategy;
    auto fraction = strategy == rejection_strategy::aggressive ? cfg_.aggressive_shed_fraction
                    : strategy == rejection_strategy::moderate ? cfg_.moderate_shed_fraction
                                                               : 0.0;
    if (fraction > 0) {
      auto budget = std::max<size_t>(
          1, static_cast<size_t>(std::floor(static_cast<double>(size()) * fraction)));
      trim(budget, w.priority, now, rate, out.rejected);
    }
    if (size() >= cap) {
      if (cap == 0 || serve_.empty() || std::prev(serve_.end())->priority >= w.priority)
        return refuse(rejection_reason::queue_full);
      auto last = std::prev(serve_.end())->id;
      erase(last);
      out.rejected.push_back({last, rejection_reason::shed});
    }
  }
  insert(w);
  observe(now);
  out.admitted = true;
  if (!out.rejected.empty())
    out.retry_after = retry_after(size(), rate);
  return out;
}

std::optional<waiter> wait_queue::pop(duration now) {
  if (serve_.empty())
    return std::nullopt;
  observe(now);
  auto id = serve_.begin()->id;
  auto w = entries_.at(id).w;
  erase(id);
  if (arrivals_.empty())
    standing_ = false; // served down to nobody waiting: the queue drained
  observe(now);
  return w;
}

bool wait_queue::remove(uint64_t id, duration now) {
  if (!contains(id))
    return false;
  observe(now);
  erase(id);
  observe(now);
  return true;
}

std::vector<uint64_t> wait_queue::expire(duration now) {
  std::vector<uint64_t> ids;
  observe(now);
  while (!deadlines_.empty() && deadlines_.begin()->at <= now) {
    auto id = deadlines_.begin()->id;
    erase(id);
    ids.push_back(id);
  }
  observe(now);
  return ids;
}

std::vector<rejection> wait_queue::shed_stale(duration now) {
  std::vector<rejection> out;
  observe(now);
  while (standing_ && !arrivals_.empty() && now - arrivals_.begin()->at >= target()) {
    auto id = arrivals_.begin()->id;
    erase(id);
    out.push_back({id, rejection_reason::standing_delay});
  }
  observe(now);
  return out;
}

void wait_queue::set_service(size_t busy, double service_rate_per_s, duration now) {
  auto serving = busy > 0 && known(service_rate_per_s);
  observe(now);
  service_time_ = serving ? duration{static_cast<duration::rep>(std::llround(
                                static_cast<double>(busy) * ns_per_s / service_rate_per_s))}
                          : duration{0};
  if (serving == serving_)
    return;
  serving_ = serving;
  if (serving) {
    serving_since_ = now;
  } else {
    above_since_.reset();
    standing_ = false;
  }
}

wait_queue::duration wait_queue::target() const {
  return std::max(cfg_.delay_target, service_time_);
}

std::optional<wait_queue::duration> wait_queue::next_check() const {
  if (cfg_.delay_target.count() <= 0 || arrivals_.empty() || !serving_)
    return std::nullopt;
  auto oldest_due = std::max(arrivals_.begin()->at + target(), serving_since_);
  if (standing_ || !above_since_)
    return oldest_due; // it sheds there, or the oldest passes the target there
  return std::max(oldest_due, *above_since_ + cfg_.delay_interval); // it turns standing there
}

void wait_queue::observe(duration now) {
  if (cfg_.delay_target.count() <= 0 || !serving_)
    return;
  if (arrivals_.empty()) {
    // Emptied by shedding, a standing queue still stands: it ends when serving drains it (pop),
    // or when nobody has waited for an interval.
    above_since_.reset();
    if (!empty_since_)
      empty_since_ = now;
    if (now - *empty_since_ >= cfg_.delay_interval)
      standing_ = false;
    return;
  }
  empty_since_.reset();
  // The oldest waiter has not changed since the last call (every change calls this before and
  // after), so if it is past the target now, it has been since it reached it.
  auto crossed = std::max(arrivals_.begin()->at + target(), serving_since_);
  if (now < crossed) {
    above_since_.reset(); // standing_ stays: it ends by draining (pop), emptiness or no service
    return;
  }
  if (!above_since_)
    above_since_ = crossed;
  if (now - *above_since_ >= cfg_.delay_interval)
    standing_ = true;
}

std::optional<wait_queue::duration> wait_queue::next_deadline() const {
  if (deadlines_.empty())
    return std::nullopt;
  return deadlines_.begin()->at;
}

wait_queue::duration wait_queue::retry_after(size_t queue_len, double service_rate_per_s) const {
  auto lo = static_cast<double>(cfg_.min_retry_after.count());
  auto hi = std::max(lo, static_cast<double>(cfg_.max_retry_after.count()));
  if (!known(service_rate_per_s))
    return duration{static_cast<duration::rep>(hi)};
  auto ns = static_cast<double>(queue_len) * ns_per_s / service_rate_per_s;
  return duration{static_cast<duration::rep>(std::llround(std::min(hi, std::max(lo, ns))))};
}

void wait_queue::insert(const waiter& w) {
  auto seq = next_seq_++;
  entries_.emplace(w.id, entry{w, seq});
  auto pos = serve_.insert({w.priority, seq, w.id}).first;
  deadlines_.insert({w.deadline, seq, w.id});
  arrivals_.insert({w.enqueued_at, seq, w.id});
  ++per_priority_[w.priority];
  // A waiter joining at the back moves nobody: fold its own slack into the bound (against the
  // bound's reference time and rate). Joining ahead of anyone pushes them back: drop the bound.
  if (proof_valid_) {
    if (std::next(pos) == serve_.end())
      proof_min_slack_ =
          std::min(proof_min_slack_, slack(w.deadline, proof_at_, serve_.size() - 1, proof_rate_));
    else
      proof_valid_ = false;
  }
}

void wait_queue::erase(uint64_t id) {
  auto i = entries_.find(id);
  if (i == entries_.end())
    return;
  const auto& e = i->second;
  serve_.erase({e.w.priority, e.seq, id});
  deadlines_.erase({e.w.deadline, e.seq, id});
  arrivals_.erase({e.w.enqueued_at, e.seq, id});
  auto p = per_priority_.find(e.w.priority);
  if (p != per_priority_.end() && --p->second == 0)
    per_priority_.erase(p);
  entries_.erase(i);
}

size_t wait_queue::position_for(int priority) const {
  size_t n = 0;
  for (auto [p, count] : per_priority_) {
    if (p < priority)
      break;
    n += count;
  }
  return n;
}

void wait_queue::drop_expired(duration now, std::vector<rejection>& out) {
  for (auto id : expire(now))
    out.push_back({id, rejection_reason::deadline_exceeded});
}

bool wait_queue::none_hopeless(duration now, double rate) const {
  if (!proof_valid_ || now < proof_at_)
    return false;
  // Each waiter's slack is at least its recorded one, less the time since, less the extra wait a
  // lower rate adds at its position (at most size()).
  auto elapsed = static_cast<double>((now - proof_at_).count());
  auto drift = rate < proof_rate_
                   ? static_cast<double>(size()) * (ns_per_s / rate - ns_per_s / proof_rate_)
                   : 0.0;
  return proof_min_slack_ - elapsed - drift >= 0;
}

void wait_queue::drop_hopeless(duration now, double rate, std::vector<rejection>& out) {
  if (none_hopeless(now, rate))
    return;
  size_t position = 0;
  auto least = std::numeric_limits<double>::infinity();
  for (auto i = serve_.begin(); i != serve_.end();) {
    auto id = i->id;
    auto s = slack(entries_.at(id).w.deadline, now, position, rate);
    ++i;
    if (s < 0) {
      erase(id); // the waiters behind move up: `position` stays
      out.push_back({id, rejection_reason::deadline_exceeded});
    } else {
      least = std::min(least, s);
      ++position;
    }
  }
  proof_valid_ = true;
  proof_at_ = now;
  proof_rate_ = rate;
  proof_min_slack_ = least;
}

void wait_queue::trim(size_t budget, int max_priority, duration now, double rate,
                      std::vector<rejection>& out) {
  // Candidates (priority <= max_priority) are the back of the serving order.
  auto first = serve_.lower_bound({max_priority, 0, 0});
  if (first == serve_.end() || budget == 0)
    return;
  struct candidate {
    int priority;
    double key; // slack, or −position without a rate: smaller goes first
    uint64_t seq;
    uint64_t id;
  };
  std::vector<candidate> xs;
  size_t position = 0; // waiters of higher priority are served before every candidate
  for (auto [p, count] : per_priority_) {
    if (p <= max_priority)
      break;
    position += count;
  }
  for (auto i = first; i != serve_.end(); ++i, ++position) {
    auto key = rate > 0 ? slack(entries_.at(i->id).w.deadline, now, position, rate)
                        : -static_cast<double>(position);
    xs.push_back({i->priority, key, i->seq, i->id});
  }
  auto worse = [](const candidate& x, const candidate& y) {
    if (x.priority != y.priority)
      return x.priority < y.priority;
    if (x.key != y.key)
      return x.key < y.key;
    return x.seq > y.seq;
  };
  auto n = std::min(budget, xs.size());
  auto mid = xs.begin() + static_cast<std::ptrdiff_t>(n);
  std::nth_element(xs.begin(), mid - 1, xs.end(), worse);
  std::sort(xs.begin(), mid, worse);
  for (auto i = xs.begin(); i != mid; ++i) {
    erase(i->id);
    out.push_back({i->id, rejection_reason::shed});
  }
}

// -- service_rate -------------------------------------------------------------

service_rate::service_rate(duration time_constant, duration warm_up)
    : tau_(std::max(1e-9, static_cast<double>(time_constant.count()) / ns_per_s)),
      warm_up_(static_cast<double>(warm_up.count()) / ns_per_s) {}

void service_rate::on_served(duration now) {
  if (!started_) {
    started_ = true;
    start_ = now;
    last_ = now;
    weight_ = 0;
    return;
  }
  auto dt = std::max(0.0, static_cast<double>((now - last_).count()) / ns_per_s);
  weight_ = weight_ * std::exp(-dt / tau_) + 1.0;
  last_ = std::max(last_, now);
}

void service_rate::set_demand(bool demand, duration now) {
  if (demand == demand_)
    return;
  demand_ = demand;
  if (!demand) {
    idle_since_ = now;
    return;
  }
  // Shift the observation window past the idle gap, as if it had not happened.
  auto gap = std::max(duration{0}, now - idle_since_);
  if (started_) {
    start_ += gap;
    last_ += gap;
  }
}

double service_rate::per_second(duration now) const {
  if (!started_)
    return 0;
  if (!demand_)
    now = std::min(now, idle_since_);
  auto observed = static_cast<double>((now - start_).count()) / ns_per_s;
  if (observed <= 0 || observed < warm_up_)
    return 0;
  auto since_last = std::max(0.0, static_cast<double>((now - last_).count()) / ns_per_s);
  auto weight = weight_ * std::exp(-since_last / tau_);
  // ∫ e^(−t/τ) dt over the observed span: τ(1 − e^(−observed/τ)), τ once the span is long.
  return weight / (tau_ * -std::expm1(-observed / tau_));
}

} // namespace bulwark::detail
