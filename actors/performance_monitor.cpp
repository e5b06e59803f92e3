#include "actors/performance_monitor.hpp"

#include "actors/clock.hpp"
#include "actors/detail/perf_score.hpp"
#include "actors/detail/text.hpp"
#include "actors/latency.hpp"
#include "actors/log.hpp"
#include "actors/pressure_subscription.hpp"

#include <caf/all.hpp>

#include <time.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace bulwark {

const std::vector<std::string>& perf_series_names() {
  static const std::vector<std::string> names{"cpu_ratio",    "rss_bytes",     "scheduler_lag_s",
                                              "request_rate", "request_p99_s", "backend_p99_s",
                                              "error_ratio"};
  return names;
}

performance_monitor_metrics::performance_monitor_metrics(prometheus::Registry& reg) {
  using namespace prometheus;
  sampling_ratio = &BuildGauge()
                        .Name("bulwark_perf_sampling_ratio")
                        .Help("Share of performance-monitor ticks that collect (falls under load)")
                        .Register(reg)
                        .Add({});
  auto& samples = BuildCounter()
                      .Name("bulwark_perf_samples_total")
                      .Help("Performance-monitor ticks by result (collected, skipped)")
                      .Register(reg);
  collected = &samples.Add({{"result", "collected"}});
  skipped = &samples.Add({{"result", "skipped"}});
  cpu = &BuildGauge()
             .Name("bulwark_perf_cpu_usage_ratio")
             .Help("Process CPU time per wall second over all cores at the last sample (0..1)")
             .Register(reg)
             .Add({});
  rss = &BuildGauge()
             .Name("bulwark_perf_resident_memory_bytes")
             .Help("Process resident set size at the last sample")
             .Register(reg)
             .Add({});
  lag = &BuildHistogram()
             .Name("bulwark_perf_scheduler_lag_seconds")
             .Help("How late the performance monitor's timer message ran (scheduler queueing)")
             .Register(reg)
             .Add({}, latency_buckets());
  last_lag = &BuildGauge()
                  .Name("bulwark_perf_last_scheduler_lag_seconds")
                  .Help("How late the performance monitor's timer message ran at the last sample")
                  .Register(reg)
                  .Add({});
  error_ratio = &BuildGauge()
                     .Name("bulwark_perf_error_ratio")
                     .Help("Failed share of the queries answered between the last two samples "
                           "(failed_backend, timed_out, internal_error)")
                     .Register(reg)
                     .Add({});
  self_cpu = &BuildCounter()
                  .Name("bulwark_perf_self_cpu_seconds_total")
                  .Help("CPU time the performance monitor's own ticks used (its overhead)")
                  .Register(reg)
                  .Add({});
  history_points = &BuildGauge()
                        .Name("bulwark_perf_history_points")
                        .Help("Points held in the performance history (all series)")
                        .Register(reg)
                        .Add({});
  history_bytes = &BuildGauge()
                       .Name("bulwark_perf_history_bytes")
                       .Help("Bytes held by the performance history (all series)")
                       .Register(reg)
                       .Add({});
  firing = &BuildGauge()
                .Name("bulwark_alerts_firing")
                .Help("1 while the alert rule fires, else 0")
                .Register(reg);
  transitions = &BuildCounter()
                     .Name("bulwark_alerts_transitions_total")
                     .Help("Alert transitions by rule and state entered (firing, resolved)")
                     .Register(reg);
}

performance_monitor_memory::performance_monitor_memory(const performance_monitor_config& cfg)
    : sampler(cfg.sampling), alerts(cfg.alerts) {
  detail::history_bounds b;
  b.max_age = cfg.history_max_age;
  b.max_bytes = cfg.history_max_bytes / perf_series_names().size();
  b.outlier_sigma = cfg.outlier_sigma;
  for (auto& name : perf_series_names())
    history.emplace(name, detail::series_history{b});
}

namespace {

constexpr const char* component = "performance_monitor";

/// A histogram's cumulative state at one sample.
struct histogram_mark {
  uint64_t count = 0;
  double sum = 0;
  std::vector<prometheus::ClientMetric::Bucket> buckets;
};

histogram_mark mark_of(prometheus::Histogram* h) {
  if (!h)
    return {};
  auto m = h->Collect();
  return {m.histogram.sample_count, m.histogram.sample_sum, std::move(m.histogram.bucket)};
}

double value_of(prometheus::Family<prometheus::Counter>* f) {
  double sum = 0;
  if (f)
    for (auto& family : f->Collect())
      for (auto& m : family.metric)
        sum += m.counter.value;
  return sum;
}

/// The q-quantile of what was observed between two marks, interpolated inside its bucket as
/// Prometheus' histogram_quantile does; 0 when nothing was observed.
double quantile_between(double q, const histogram_mark& before, const histogram_mark& now) {
  auto total = now.count - before.count;
  if (total == 0 || now.buckets.empty())
    return 0;
  auto rank = q * static_cast<double>(total);
  double lower = 0;
  uint64_t below = 0;
  for (size_t i = 0; i < now.buckets.size(); ++i) {
    auto cum = now.buckets[i].cumulative_count -
               (i < before.buckets.size() ? before.buckets[i].cumulative_count : 0);
    auto upper = now.buckets[i].upper_bound;
    if (static_cast<double>(cum) >= rank) {
      if (std::isinf(upper))
        return lower; // beyond the last finite bound: report that bound
      auto in_bucket = static_cast<double>(cum - below);
      if (in_bucket <= 0)
        return upper;
      return lower + (upper - lower) * (rank - static_cast<double>(below)) / in_bucket;
    }
    below = cum;
    lower = upper;
  }
  return lower;
}

struct performance_monitor_state {
  static constexpr const char* name = "performance_monitor";

  performance_monitor_config cfg;
  performance_monitor_inputs in;
  std::shared_ptr<component_directory> dir;
  performance_monitor_metrics* metrics = nullptr;
  std::shared_ptr<performance_monitor_memory> mem;
  double pressure_ratio = 0; ///< from events, when there is no gauge to read
  caf::timespan last_adjust{0};
  bool reader_failing = false;
  // The previous collection, for deltas (lost on restart: the first sample after one only sets
  // the baseline). The CPU baseline is its own: a failing /proc read loses CPU, nothing else.
  bool have_baseline = false;
  caf::timespan last_at{0};
  std::optional<double> last_cpu_seconds;
  histogram_mark last_requests;
  uint64_t last_other_requests = 0;
  histogram_mark last_backend;
  request_tally last_tally;
  double last_cache_hits = 0;
  double last_cache_misses = 0;
};

using self_ptr = performance_monitor_actor::stateful_pointer<performance_monitor_state>;

void publish_history(self_ptr self) {
  auto& st = self->state;
  size_t points = 0;
  size_t bytes = 0;
  for (auto& [name, h] : st.mem->history) {
    points += h.points().size();
    bytes += h.bytes();
  }
  st.metrics->history_points->Set(static_cast<double>(points));
  st.metrics->history_bytes->Set(static_cast<double>(bytes));
}

void collect(self_ptr self, caf::timespan now, caf::timespan lag) {
  auto& st = self->state;
  auto& mem = *st.mem;
  ++mem.collected;
  st.metrics->collected->Increment();
  perf_sample s;
  s.at = now;
  s.scheduler_lag_s = std::chrono::duration<double>(lag).count();
  st.metrics->lag->Observe(s.scheduler_lag_s);
  auto proc = st.in.process ? st.in.process() : detail::process_reading{};
  if (!proc.ok && !st.reader_failing)
    log_warn(component, "cannot read the process's CPU and memory: " + proc.error);
  else if (proc.ok && st.reader_failing)
    log_info(component, "reading the process's CPU and memory again");
  st.reader_failing = !proc.ok;
  auto requests = mark_of(st.in.requests);
  uint64_t other_requests = 0;
  for (auto* h : st.in.other_requests)
    other_requests += mark_of(h).count;
  auto backend = mark_of(st.in.backend);
  auto tally = st.in.requests_tally ? st.in.requests_tally() : request_tally{};
  auto cache_hits = value_of(st.in.cache_hits);
  auto cache_misses = value_of(st.in.cache_misses);
  st.metrics->last_lag->Set(s.scheduler_lag_s);
  if (proc.ok) {
    s.rss_bytes = proc.rss_bytes;
    st.metrics->rss->Set(static_cast<double>(proc.rss_bytes));
  }
  if (st.have_baseline && now > st.last_at) {
    auto wall = std::chrono::duration<double>(now - st.last_at).count();
    if (proc.ok && st.last_cpu_seconds)
      s.cpu_ratio = std::clamp(
          (proc.cpu_seconds - *st.last_cpu_seconds) / wall / std::max(0.01, st.in.cores), 0.0, 1.0);
    s.request_rate = static_cast<double>(requests.count - st.last_requests.count + other_requests -
                                         st.last_other_requests) /
                     wall;
    s.request_p99_s = quantile_between(0.99, st.last_requests, requests);
    s.backend_p99_s = quantile_between(0.99, st.last_backend, backend);
    if (auto served = requests.count - st.last_requests.count; served > 0)
      s.request_mean_s = (requests.sum - st.last_requests.sum) / static_cast<double>(served);
    s.answered = tally.answered - std::min(tally.answered, st.last_tally.answered);
    auto failed = tally.failed - std::min(tally.failed, st.last_tally.failed);
    s.error_ratio =
        s.answered == 0
            ? 0.0
            : std::min(1.0, static_cast<double>(failed) / static_cast<double>(s.answered));
    auto hits = std::max(0.0, cache_hits - st.last_cache_hits);
    auto lookups = hits + std::max(0.0, cache_misses - st.last_cache_misses);
    s.cache_lookups = static_cast<uint64_t>(lookups);
    s.cache_hit_ratio = lookups > 0 ? hits / lookups : 0.0;
    st.metrics->cpu->Set(s.cpu_ratio);
    st.metrics->error_ratio->Set(s.error_ratio);
    auto& h = mem.history;
    h.at("cpu_ratio").push(now, s.cpu_ratio);
    h.at("rss_bytes").push(now, static_cast<double>(s.rss_bytes));
    h.at("scheduler_lag_s").push(now, s.scheduler_lag_s);
    h.at("request_rate").push(now, s.request_rate);
    h.at("request_p99_s").push(now, s.request_p99_s);
    h.at("backend_p99_s").push(now, s.backend_p99_s);
    h.at("error_ratio").push(now, s.error_ratio);
    mem.latest = s;
    publish_history(self);
  }
  st.have_baseline = true;
  st.last_at = now;
  st.last_cpu_seconds = proc.ok ? std::optional<double>{proc.cpu_seconds} : std::nullopt;
  st.last_requests = std::move(requests);
  st.last_other_requests = other_requests;
  st.last_backend = std::move(backend);
  st.last_tally = tally;
  st.last_cache_hits = cache_hits;
  st.last_cache_misses = cache_misses;
}

/// The load the sampling ratio follows: the busiest of memory, CPU and the scheduler.
double current_load(self_ptr self) {
  auto& st = self->state;
  double load = st.in.pressure_ratio ? st.in.pressure_ratio->Value() : st.pressure_ratio;
  if (st.mem->latest) {
    auto lag_ref = std::chrono::duration<double>(st.cfg.lag_reference).count();
    load = std::max({load, st.mem->latest->cpu_ratio,
                     std::min(1.0, st.mem->latest->scheduler_lag_s / lag_ref)});
  }
  return load;
}

void adjust(self_ptr self, caf::timespan now) {
  auto& st = self->state;
  st.last_adjust = now;
  st.mem->load = current_load(self);
  st.metrics->sampling_ratio->Set(st.mem->sampler.adjust(st.mem->load));
}

void evaluate_alerts(self_ptr self, caf::timespan now) {
  auto& st = self->state;
  if (!st.in.registry)
    return;
  auto snapshot = st.in.registry->Collect();
  for (auto& t : st.mem->alerts.evaluate(now, snapshot)) {
    bool firing = t.to == detail::alert_state::firing;
    st.metrics->firing->Add({{"alert", t.rule}}).Set(firing ? 1 : 0);
    st.metrics->transitions->Add({{"alert", t.rule}, {"to", firing ? "firing" : "resolved"}})
        .Increment();
    if (firing)
      log_warn(component, detail::format("alert %s firing (value %g)", t.rule.c_str(), t.value));
    else
      log_info(component, detail::format("alert %s resolved (value %g)", t.rule.c_str(), t.value));
  }
}

/// A rule over a metric the registry does not hold never fires: say so once, at start. A family
/// registered without series yet (no eviction so far) is known: it fires once they exist.
/// (bulwark_http_* come from the HTTP server at scrape time and are not in the registry.)
void warn_unknown_metrics(self_ptr self) {
  auto& st = self->state;
  if (!st.in.registry)
    return;
  for (auto& v : st.mem->alerts.views()) {
    detail::metric_expr e;
    std::string err;
    if (!detail::parse_metric_expr(v.rule.metric, e, err))
      continue;
    if (!detail::metric_registered(*st.in.registry, e.name))
      log_warn(component, "alert " + v.rule.name + ": no metric \"" + e.name +
                              "\" in the engine's registry; the rule will never fire");
  }
}

/// CPU time of the calling thread (the tick runs on one worker from start to end).
double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void on_tick(self_ptr self, clock_point due) {
  auto& st = self->state;
  auto cpu_start = thread_cpu_seconds();
  auto now = now_of(self);
  if (st.mem->sampler.take()) {
    collect(self, now, std::max(caf::timespan{0}, now - due));
  } else {
    ++st.mem->skipped;
    st.metrics->skipped->Increment();
  }
  if (now - st.last_adjust >= st.cfg.adjust_interval)
    adjust(self, now);
  evaluate_alerts(self, now);
  auto used = std::max(0.0, thread_cpu_seconds() - cpu_start);
  st.mem->self_cpu_seconds += used;
  st.metrics->self_cpu->Increment(used);
  // Due from now, after this tick's own work, so that work never counts as scheduler lag.
  self->delayed_send(self, st.cfg.interval, caf::tick_atom::value, now_of(self) + st.cfg.interval);
}

/// The score of the latest sample (detail/perf_score.hpp); memory is the monitor's ratio now.
detail::score_result score_of(self_ptr self) {
  auto& st = self->state;
  if (!st.mem->latest)
    return {};
  auto& x = *st.mem->latest;
  detail::perf_score_input in;
  in.cpu_ratio = x.cpu_ratio;
  in.memory_ratio = st.in.pressure_ratio ? st.in.pressure_ratio->Value() : st.pressure_ratio;
  in.lag_ratio = x.scheduler_lag_s / std::chrono::duration<double>(st.cfg.lag_reference).count();
  if (x.request_mean_s > 0)
    in.mean_response_s = x.request_mean_s;
  if (x.answered > 0)
    in.error_ratio = x.error_ratio;
  if (x.cache_lookups > 0)
    in.cache_hit_ratio = x.cache_hit_ratio;
  return detail::score_performance(in);
}

perf_status status_of(self_ptr self) {
  auto& mem = *self->state.mem;
  perf_status s;
  s.sampling_ratio = mem.sampler.ratio();
  s.load = mem.load;
  s.collected = mem.collected;
  s.skipped = mem.skipped;
  s.self_cpu_seconds = mem.self_cpu_seconds;
  s.has_sample = mem.latest.has_value();
  if (mem.latest)
    s.latest = *mem.latest;
  for (auto& name : perf_series_names()) {
    auto& h = mem.history.at(name);
    s.series.push_back({name, h.points().size(), h.bytes(), h.capacity(), h.trims()});
  }
  auto score = score_of(self);
  s.score = score.score;
  for (auto& f : score.findings)
    s.findings.push_back({f.name, f.value, f.threshold, f.penalty, f.advice});
  return s;
}

std::vector<alert_info> alerts_of(self_ptr self) {
  auto now = now_of(self);
  std::vector<alert_info> out;
  for (auto& v : self->state.mem->alerts.views()) {
    alert_info a;
    a.name = v.rule.name;
    a.metric = v.rule.metric;
    a.op = detail::to_string(v.rule.op);
    a.threshold = v.rule.threshold;
    a.clear_threshold = v.rule.clear_threshold;
    a.for_duration = v.rule.for_duration;
    a.severity = v.rule.severity;
    a.state = detail::to_string(v.state);
    a.has_value = v.value.has_value();
    a.value = v.value.value_or(0);
    a.in_state = now - v.since;
    a.fired = v.fired;
    out.push_back(std::move(a));
  }
  return out;
}

performance_monitor_actor::behavior_type
performance_monitor(self_ptr self, performance_monitor_config cfg, performance_monitor_inputs in,
                    std::shared_ptr<component_directory> dir, performance_monitor_metrics* metrics,
                    std::shared_ptr<performance_monitor_memory> memory) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.in = std::move(in);
  st.dir = std::move(dir);
  st.metrics = metrics;
  st.mem = std::move(memory);
  st.last_adjust = now_of(self);
  metrics->sampling_ratio->Set(st.mem->sampler.ratio());
  for (auto& v : st.mem->alerts.views())
    metrics->firing->Add({{"alert", v.rule.name}})
        .Set(v.state == detail::alert_state::firing ? 1 : 0);
  publish_history(self);
  warn_unknown_metrics(self);
  pressure_subscription::subscribe(self, *st.dir);
  // The first tick collects the baseline at once.
  auto now = now_of(self);
  self->send(self, caf::tick_atom::value, now);
  return {
      [=](caf::get_atom) { return status_of(self); },
      [=](caf::get_atom, const std::string& series) {
        std::vector<perf_point> out;
        auto it = self->state.mem->history.find(series);
        if (it != self->state.mem->history.end())
          for (auto& p : it->second.points())
            out.push_back({p.at, p.value});
        return out;
      },
      [=](caf::get_atom, alerts_atom) { return alerts_of(self); },
      [=](pressure_changed& ev) {
        auto& st = self->state;
        auto rose = ev.level > st.mem->level;
        st.mem->level = ev.level;
        st.pressure_ratio = ev.ratio;
        if (rose && ev.level >= pressure_level::high) {
          auto before = st.mem->sampler.ratio();
          adjust(self, now_of(self));
          pressure_subscription::report(
              self, *st.dir, component, ev.level,
              detail::format("sampling ratio %.2f -> %.2f", before, st.mem->sampler.ratio()));
        }
      },
      [=](caf::tick_atom, clock_point due) { on_tick(self, due); },
  };
}

} // namespace

performance_monitor_actor
spawn_performance_monitor(caf::actor_system& sys, performance_monitor_config cfg,
                          performance_monitor_inputs in, std::shared_ptr<component_directory> dir,
                          performance_monitor_metrics* metrics,
                          std::shared_ptr<performance_monitor_memory> memory) {
  return sys.spawn(performance_monitor, std::move(cfg), std::move(in), std::move(dir), metrics,
                   std::move(memory));
}

} // namespace bulwark
