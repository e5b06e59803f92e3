// The pressure loop's fan-out: one level change to 100 subscribers.
//   raw_fanout_baseline  CAF alone: one actor sends one prebuilt message to 100 subscribers
//   pressure_fanout      the same traffic through the monitor (sample, classify, history,
//                        metrics, broadcast)
//   raw_latency_baseline CAF alone: publish -> last of 100 subscribers received, p50/p95/p99
//   pressure_latency     time from a level change (taken inside the monitor when it samples)
//                        to the last of 100 subscribers having received it; closed loop, one
//                        change at a time, p50/p95/p99

#include "bench/bench.hpp"

#include "actors/log.hpp"
#include "actors/memory_pressure_monitor.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

using namespace bulwark;
using namespace std::chrono;

namespace {

constexpr int subscribers = 100;
constexpr int events = 20000;
constexpr int latency_events = 5000;
constexpr int warmup_events = 100; // not measured: first runs of each actor, cold caches

struct completion {
  std::atomic<long> received{0};
  long target = 0;
  std::mutex mtx;
  std::condition_variable cv;
  bool done = false;
  steady_clock::time_point last_at;

  void hit() {
    if (received.fetch_add(1, std::memory_order_acq_rel) + 1 == target) {
      std::lock_guard<std::mutex> g{mtx};
      last_at = steady_clock::now();
      done = true;
      cv.notify_all();
    }
  }
  void expect(long n) {
    std::lock_guard<std::mutex> g{mtx};
    target = n;
    done = false;
  }
  void wait() {
    std::unique_lock<std::mutex> g{mtx};
    cv.wait(g, [this] { return done; });
  }
};

caf::actor_system_config& bench_config(caf::actor_system_config& cfg) {
  register_types(cfg);
  cfg.set("scheduler.max-threads", 2);
  cfg.set("logger.console", caf::atom("none"));
  return cfg;
}

void print_rate(const char* what, double secs) {
  double deliveries = static_cast<double>(events) * subscribers;
  std::printf("%-22s %8d events x %d subscribers in %.3f s = %.2f M deliveries/s, "
              "%.0f events/s (max RSS %ld KiB)\n",
              what, events, subscribers, secs, deliveries / secs / 1e6,
              static_cast<double>(events) / secs, bench::max_rss_kib());
}

pressure_subscriber_actor counting_subscriber(caf::actor_system& sys, completion* c) {
  return sys.spawn([c]() -> pressure_subscriber_actor::behavior_type {
    return {[c](pressure_changed&) { c->hit(); }};
  });
}

/// A memory source that changes level on every sample (0.99, 0.0, 0.99, ...), so every sample is
/// a level change and a broadcast. It stamps the time of the sample for the latency benchmark.
struct flipping_source {
  std::atomic<bool> high{false};
  std::atomic<long long> sampled_at_ns{0};
  detail::memory_source source() {
    return {"bench", [this] {
              sampled_at_ns =
                  duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count();
              detail::memory_read r;
              r.ok = true;
              bool h = !high.load();
              high = h;
              r.sample = detail::make_sample(h ? 990 : 0, 1000);
              return r;
            }};
  }
};

memory_pressure_monitor_config bench_monitor_config() {
  memory_pressure_monitor_config cfg;
  cfg.sample_interval = hours(1); // only the benchmark's explicit samples
  cfg.min_dwell = milliseconds(0);
  cfg.hysteresis = 0;
  return cfg;
}

std::vector<caf::actor> spawn_subscribers(caf::actor_system& sys, completion* c) {
  std::vector<caf::actor> subs;
  for (int i = 0; i < subscribers; ++i)
    subs.push_back(caf::actor_cast<caf::actor>(counting_subscriber(sys, c)));
  return subs;
}

void stop_all(const std::vector<caf::actor>& actors) {
  for (auto& a : actors)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

/// A monitor fed by a flipping source with 100 counting subscribers, each of which has already
/// received the current level it is sent on subscribing (so only broadcasts are counted after).
struct monitor_rig {
  prometheus::Registry reg;
  memory_pressure_monitor_metrics metrics{reg};
  flipping_source src;
  completion c;
  memory_pressure_monitor_actor mon;
  std::vector<caf::actor> subs;

  explicit monitor_rig(caf::actor_system& sys) {
    set_log_level(log_level::warn);
    mon = spawn_memory_pressure_monitor(sys, bench_monitor_config(), src.source(), &metrics,
                                        std::make_shared<memory_pressure_monitor_memory>());
    subs = spawn_subscribers(sys, &c);
    for (auto& s : subs)
      caf::anon_send(mon, caf::subscribe_atom::value,
                     caf::actor_cast<pressure_subscriber_actor>(s));
    while (c.received.load() < subscribers)
      std::this_thread::yield();
    c.received = 0;
  }

  ~monitor_rig() {
    caf::anon_send_exit(mon, caf::exit_reason::user_shutdown);
    stop_all(subs);
  }
};

/// One publisher that sends one prebuilt message to every subscriber per request, stamping
/// when it starts: CAF's fan-out without any of Bulwark.
caf::actor spawn_publisher(caf::actor_system& sys, std::vector<caf::actor> subs,
                           std::shared_ptr<std::atomic<long long>> started_ns) {
  return sys.spawn([subs, started_ns](caf::event_based_actor*) -> caf::behavior {
    return {[subs, started_ns](int n) {
      started_ns->store(duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count());
      auto msg = caf::make_message(pressure_changed{});
      for (int i = 0; i < n; ++i)
        for (auto& s : subs)
          caf::anon_send(s, msg);
    }};
  });
}

void print_latency(const char* what, std::vector<double>& us) {
  std::printf("%s -> all %d subscribers received: p50 %.1f us, p95 %.1f us, p99 %.1f us, "
              "max %.1f us over %d events\n",
              what, subscribers, bench::percentile(us, 0.50), bench::percentile(us, 0.95),
              bench::percentile(us, 0.99), bench::percentile(us, 1.0), latency_events);
}

} // namespace

BULWARK_BENCH(raw_fanout_baseline) {
  caf::actor_system_config cfg;
  caf::actor_system sys{bench_config(cfg)};
  completion c;
  auto subs = spawn_subscribers(sys, &c);
  auto publisher = spawn_publisher(sys, subs, std::make_shared<std::atomic<long long>>());
  c.expect(static_cast<long>(events) * subscribers);
  auto t0 = steady_clock::now();
  caf::anon_send(publisher, events);
  c.wait();
  print_rate("raw CAF fan-out", bench::seconds_since(t0));
  stop_all(subs);
  caf::anon_send_exit(publisher, caf::exit_reason::user_shutdown);
}

BULWARK_BENCH(pressure_fanout) {
  caf::actor_system_config cfg;
  caf::actor_system sys{bench_config(cfg)};
  monitor_rig rig{sys};
  rig.c.expect(static_cast<long>(events) * subscribers);
  auto t0 = steady_clock::now();
  for (int i = 0; i < events; ++i)
    caf::anon_send(rig.mon, sample_atom::value);
  rig.c.wait();
  print_rate("through the monitor", bench::seconds_since(t0));
}

BULWARK_BENCH(raw_latency_baseline) {
  caf::actor_system_config cfg;
  caf::actor_system sys{bench_config(cfg)};
  completion c;
  auto subs = spawn_subscribers(sys, &c);
  auto started_ns = std::make_shared<std::atomic<long long>>(0);
  auto publisher = spawn_publisher(sys, subs, started_ns);
  std::vector<double> us;
  for (int i = 0; i < warmup_events + latency_events; ++i) {
    c.received = 0;
    c.expect(subscribers);
    caf::anon_send(publisher, 1);
    c.wait();
    auto started = steady_clock::time_point{nanoseconds{started_ns->load()}};
    if (i >= warmup_events)
      us.push_back(duration<double, std::micro>(c.last_at - started).count());
  }
  print_latency("raw CAF: publish", us);
  stop_all(subs);
  caf::anon_send_exit(publisher, caf::exit_reason::user_shutdown);
}

BULWARK_BENCH(pressure_latency) {
  caf::actor_system_config cfg;
  caf::actor_system sys{bench_config(cfg)};
  monitor_rig rig{sys};
  std::vector<double> us;
  for (int i = 0; i < warmup_events + latency_events; ++i) {
    rig.c.received = 0;
    rig.c.expect(subscribers);
    caf::anon_send(rig.mon, sample_atom::value);
    rig.c.wait();
    auto sampled = steady_clock::time_point{nanoseconds{rig.src.sampled_at_ns.load()}};
    if (i >= warmup_events)
      us.push_back(duration<double, std::micro>(rig.c.last_at - sampled).count());
  }
  print_latency("pressure change", us);
}
