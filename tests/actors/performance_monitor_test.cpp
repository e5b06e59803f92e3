#include "actors/performance_monitor.hpp"

#include "actors/latency.hpp"
#include "support/test_system.hpp"

#include <catch2/catch.hpp>
#include <prometheus/gauge.h>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

/// A process that burns `cpu_per_read` seconds of CPU between reads; counts the reads, so a
/// skipped sample is visibly one that did not read.
struct scripted_process {
  double cpu_per_read = 0.01;
  double cpu = 0;
  uint64_t reads = 0;
  detail::process_reader reader() {
    return [this] {
      ++reads;
      cpu += cpu_per_read;
      detail::process_reading r;
      r.ok = true;
      r.cpu_seconds = cpu;
      r.rss_bytes = 50'000'000;
      return r;
    };
  }
};

struct fixture : test::test_system {
  prometheus::Registry registry;
  performance_monitor_metrics metrics{registry};
  prometheus::Gauge& hot =
      prometheus::BuildGauge().Name("test_ratio").Help("h").Register(registry).Add({});
  prometheus::Histogram& requests = prometheus::BuildHistogram()
                                        .Name("test_request_seconds")
                                        .Help("h")
                                        .Register(registry)
                                        .Add({}, latency_buckets());
  prometheus::Family<prometheus::Counter>& cache_hits =
      prometheus::BuildCounter().Name("test_cache_hits_total").Help("h").Register(registry);
  prometheus::Family<prometheus::Counter>& cache_misses =
      prometheus::BuildCounter().Name("test_cache_misses_total").Help("h").Register(registry);
  request_tally tally; // what the engine counts by outcome
  scripted_process proc;
  std::shared_ptr<component_directory> dir = std::make_shared<component_directory>();
  performance_monitor_config cfg;
  std::shared_ptr<performance_monitor_memory> kept;

  fixture() {
    cfg.interval = 100ms;
    cfg.adjust_interval = 1s;
    detail::alert_rule hot_rule;
    hot_rule.name = "Hot";
    hot_rule.metric = "test_ratio";
    hot_rule.op = detail::alert_op::gt;
    hot_rule.threshold = 0.9;
    hot_rule.for_duration = 1s;
    hot_rule.clear_threshold = 0.5;
    hot_rule.severity = "critical";
    cfg.alerts = {hot_rule};
  }

  performance_monitor_actor start() {
    if (!kept)
      kept = std::make_shared<performance_monitor_memory>(cfg);
    performance_monitor_inputs in;
    in.process = proc.reader();
    in.cores = 1;
    in.registry = &registry;
    in.requests = &requests;
    in.requests_tally = [this] { return tally; };
    in.cache_hits = &cache_hits;
    in.cache_misses = &cache_misses;
    auto m = keep(spawn_performance_monitor(sys, cfg, in, dir, &metrics, kept));
    run();
    return m;
  }

  perf_status status(const performance_monitor_actor& m) {
    auto s = ask<perf_status>(m, caf::get_atom::value);
    REQUIRE(s);
    return *s;
  }

  alert_info alert(const performance_monitor_actor& m) {
    auto a = ask<std::vector<alert_info>>(m, caf::get_atom::value, alerts_atom::value);
    REQUIRE(a);
    REQUIRE(a->size() == 1);
    return a->front();
  }

  double firing_gauge() { return metrics.firing->Add({{"alert", "Hot"}}).Value(); }

  void pressure(const performance_monitor_actor& m, pressure_level level, double ratio) {
    pressure_changed ev;
    ev.level = level;
    ev.ratio = ratio;
    caf::anon_send(m, ev);
    run();
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "sampling falls with pressure, really skips, and recovers",
                 "[perf][performance_monitor]") {
  auto m = start();
  advance(1s, 10);
  auto s = status(m);
  CHECK(s.sampling_ratio == 1.0);
  CHECK(s.skipped == 0);
  CHECK(s.collected == 11); // the first tick at start, then one per 100 ms
  CHECK(proc.reads == s.collected);

  // A rise to high pressure adjusts at once: 1.0 -> 0.8.
  pressure(m, pressure_level::high, 0.9);
  CHECK(status(m).sampling_ratio == Approx(0.8));
  CHECK(metrics.sampling_ratio->Value() == Approx(0.8));
  auto before = status(m);
  advance(1s, 10); // 10 ticks at 0.8: exactly 8 collect; the last one adjusts to 0.64
  s = status(m);
  CHECK(s.collected - before.collected == 8);
  CHECK(s.skipped - before.skipped == 2);
  CHECK(proc.reads == s.collected); // a skipped tick did not read /proc
  CHECK(s.sampling_ratio == Approx(0.64));
  CHECK(s.load == Approx(0.9));
  advance(2s, 20);
  CHECK(status(m).sampling_ratio == Approx(0.64 * 0.8 * 0.8));
  advance(10s, 100);
  CHECK(status(m).sampling_ratio == 0.3); // the floor
  CHECK(metrics.skipped->Value() == status(m).skipped);

  // Pressure gone and the process idle (CPU 0.1 of a core): x1.2 per adjustment, back to 1.
  pressure(m, pressure_level::low, 0.1);
  advance(1s, 10);
  CHECK(status(m).sampling_ratio == Approx(0.36));
  advance(8s, 80);
  CHECK(status(m).sampling_ratio == 1.0);
}

TEST_CASE_METHOD(fixture, "a busy CPU lowers the ratio without any memory pressure",
                 "[perf][performance_monitor]") {
  proc.cpu_per_read = 0.095; // 95 % of the one core between 100 ms samples
  auto m = start();
  advance(1s, 10);
  auto s = status(m);
  CHECK(s.latest.cpu_ratio == Approx(0.95));
  CHECK(s.load == Approx(0.95));
  CHECK(s.sampling_ratio == Approx(0.8));
}

TEST_CASE_METHOD(fixture,
                 "an alert fires after its duration and resolves below its clear threshold",
                 "[perf][performance_monitor][alerts]") {
  auto m = start();
  CHECK(alert(m).state == "inactive");
  CHECK(firing_gauge() == 0);
  hot.Set(0.95);
  advance(500ms, 5);
  CHECK(alert(m).state == "pending");
  CHECK(firing_gauge() == 0);
  advance(600ms, 6);
  auto a = alert(m);
  CHECK(a.state == "firing");
  CHECK(a.value == 0.95);
  CHECK(a.fired == 1);
  CHECK(a.severity == "critical");
  CHECK(firing_gauge() == 1);
  CHECK(metrics.transitions->Add({{"alert", "Hot"}, {"to", "firing"}}).Value() == 1);
  // Under high load the ratio falls, but the alerts are evaluated on every tick regardless.
  hot.Set(0.7); // between clear (0.5) and threshold (0.9): still firing
  advance(1s, 10);
  CHECK(alert(m).state == "firing");
  hot.Set(0.4);
  advance(100ms);
  a = alert(m);
  CHECK(a.state == "inactive");
  CHECK(a.value == 0.4);
  CHECK(firing_gauge() == 0);
  CHECK(metrics.transitions->Add({{"alert", "Hot"}, {"to", "resolved"}}).Value() == 1);
}

TEST_CASE_METHOD(fixture, "a restarted monitor keeps its alerts, sampler and history",
                 "[perf][performance_monitor][alerts]") {
  auto m = start();
  hot.Set(0.95);
  advance(2s, 20);
  REQUIRE(alert(m).state == "firing");
  pressure(m, pressure_level::critical, 0.97);
  auto before = status(m);
  caf::anon_send_exit(m, caf::exit_reason::kill);
  run();
  auto again = start();
  auto a = alert(again);
  CHECK(a.state == "firing");
  CHECK(a.fired == 1);
  CHECK(firing_gauge() == 1);
  auto s = status(again);
  CHECK(s.sampling_ratio == before.sampling_ratio);
  CHECK(s.series.at(0).points == before.series.at(0).points); // kept, and nothing new yet
  // The memory monitor re-sends its level to a new subscriber: that is no rise.
  pressure(again, pressure_level::critical, 0.97);
  CHECK(status(again).sampling_ratio == before.sampling_ratio);
}

TEST_CASE_METHOD(fixture, "samples read request latency and rate from the gateway's histogram",
                 "[perf][performance_monitor]") {
  auto m = start();
  advance(100ms);
  for (int i = 0; i < 99; ++i)
    requests.Observe(0.0003); // the (0.25 ms, 0.5 ms] bucket
  requests.Observe(3.0);      // one slow request: (2.5 s, 5 s]
  advance(100ms);
  auto s = status(m);
  REQUIRE(s.has_sample);
  CHECK(s.latest.request_rate == Approx(1000)); // 100 requests in 100 ms
  // The 99th of 100 observations is the last fast one: inside the fast bucket.
  CHECK(s.latest.request_p99_s > 0.00025);
  CHECK(s.latest.request_p99_s <= 0.0005);
  CHECK(s.latest.rss_bytes == 50'000'000);
  CHECK(s.latest.scheduler_lag_s == 0); // the test clock runs every timer exactly when due
  CHECK(metrics.rss->Value() == 50'000'000);
  // The next interval saw nothing: no rate, no p99.
  advance(100ms);
  s = status(m);
  CHECK(s.latest.request_rate == 0);
  CHECK(s.latest.request_p99_s == 0);
  auto points = ask<std::vector<perf_point>>(m, caf::get_atom::value, std::string{"request_rate"});
  REQUIRE(points);
  REQUIRE(points->size() == 3);
  CHECK((*points)[1].value == Approx(1000));
  auto none = ask<std::vector<perf_point>>(m, caf::get_atom::value, std::string{"nope"});
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE_METHOD(fixture, "telemetry memory stays within its byte bound",
                 "[perf][performance_monitor]") {
  cfg.history_max_bytes =
      perf_series_names().size() * 64 * sizeof(detail::history_point); // 64 points per series
  cfg.alerts.clear();
  auto m = start();
  advance(60s, 600);
  auto s = status(m);
  for (auto& x : s.series) {
    CHECK(x.capacity == 64);
    CHECK(x.points <= 64);
    CHECK(x.trims > 0);
  }
  CHECK(metrics.history_bytes->Value() <= cfg.history_max_bytes);
}

TEST_CASE_METHOD(fixture, "alerts are evaluated on every tick, also the ticks sampling skips",
                 "[perf][performance_monitor][alerts]") {
  auto m = start();
  pressure(m, pressure_level::critical, 0.99);
  advance(30s, 300);
  REQUIRE(status(m).sampling_ratio == 0.3); // 7 of 10 ticks skip collection
  for (int i = 0; i < 10; ++i) {
    double v = i % 2 == 0 ? 0.2 : 0.3;
    hot.Set(v);
    advance(100ms);
    CHECK(alert(m).value == v); // evaluated on this very tick
  }
  CHECK(status(m).skipped > 0);
}

TEST_CASE_METHOD(fixture, "a late timer is scheduler lag; slow requests land in the last bucket",
                 "[perf][performance_monitor]") {
  auto m = start();
  advance(100ms);
  requests.Observe(20.0);    // beyond the last finite bound (10 s)
  sched.advance_time(250ms); // the tick due at 200 ms runs at 350 ms
  run();
  auto s = status(m);
  CHECK(s.latest.scheduler_lag_s == Approx(0.15));
  CHECK(s.latest.request_p99_s == 10); // reported as the last finite bound, as Prometheus does
  CHECK(metrics.lag->Collect().histogram.sample_sum == Approx(0.15));
}

TEST_CASE_METHOD(fixture, "CPU counts against the cores the process may use",
                 "[perf][performance_monitor]") {
  proc.cpu_per_read = 0.19; // 1.9 cores busy between 100 ms samples
  kept = std::make_shared<performance_monitor_memory>(cfg);
  performance_monitor_inputs in;
  in.process = proc.reader();
  in.cores = 2;
  in.registry = &registry;
  auto m = keep(spawn_performance_monitor(sys, cfg, in, dir, &metrics, kept));
  run();
  advance(300ms, 3);
  CHECK(status(m).latest.cpu_ratio == Approx(0.95));
}

TEST_CASE_METHOD(fixture, "a process that cannot be read loses CPU and RSS, not the other series",
                 "[perf][performance_monitor]") {
  kept = std::make_shared<performance_monitor_memory>(cfg);
  performance_monitor_inputs in;
  in.process = [] {
    detail::process_reading r;
    r.error = "cannot read /proc/self/stat: gone";
    return r;
  };
  in.registry = &registry;
  in.requests = &requests;
  auto m = keep(spawn_performance_monitor(sys, cfg, in, dir, &metrics, kept));
  run();
  requests.Observe(0.001);
  advance(300ms, 3);
  auto s = status(m);
  REQUIRE(s.has_sample);
  CHECK(s.latest.cpu_ratio == 0);
  CHECK(s.latest.rss_bytes == 0);
  for (auto& x : s.series)
    CHECK(x.points == 3);
}

TEST_CASE_METHOD(fixture,
                 "samples measure the error rate, the mean response and the cache's hit rate, "
                 "and score them",
                 "[perf][performance_monitor]") {
  auto m = start();
  advance(100ms);
  CHECK(status(m).score == 100);
  tally.answered += 40;
  tally.failed += 10; // failed_backend, timed_out or internal_error
  for (int i = 0; i < 4; ++i)
    requests.Observe(0.6);
  cache_hits.Add({{"shard", "0"}}).Increment(30);
  cache_hits.Add({{"shard", "1"}}).Increment(10);
  cache_misses.Add({{"shard", "0"}}).Increment(50);
  advance(100ms);
  auto s = status(m);
  REQUIRE(s.has_sample);
  CHECK(s.latest.answered == 40);
  CHECK(s.latest.error_ratio == 0.25);
  CHECK(metrics.error_ratio->Value() == 0.25);
  CHECK(s.latest.request_mean_s == Approx(0.6));
  CHECK(s.latest.cache_lookups == 90);
  CHECK(s.latest.cache_hit_ratio == Approx(40.0 / 90));
  // CPU 0.1 (10 ms per 100 ms), no pressure, no lag: the mean (> 0.5 s: -8) and the errors
  // (> 5 %: -15) cost points; the cache's hit rate is a finding without a penalty.
  CHECK(s.score == 100 - 8 - 15);
  REQUIRE(s.findings.size() == 3);
  CHECK(s.findings[0].name == "response_time");
  CHECK(s.findings[1].name == "error_rate");
  CHECK(s.findings[1].value == 0.25);
  CHECK(s.findings[1].threshold == 0.05);
  CHECK(s.findings[1].penalty == 15);
  CHECK(s.findings[2].name == "cache_hit_rate");
  // The next interval answered nothing: no error rate, no mean, no lookups, nothing to find.
  advance(100ms);
  s = status(m);
  CHECK(s.latest.answered == 0);
  CHECK(s.latest.error_ratio == 0);
  CHECK(s.score == 100);
  CHECK(s.findings.empty());
  auto points = ask<std::vector<perf_point>>(m, caf::get_atom::value, std::string{"error_ratio"});
  REQUIRE(points);
  REQUIRE(points->size() == 3);
  CHECK((*points)[1].value == 0.25);
}
