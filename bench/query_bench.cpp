// The backend path's cost: the same point query on the same SQLite file, called directly through
// the backend interface (baseline) and through the engine (bridge -> database -> breaker -> pool
// -> connection actor -> back), one call at a time, so each number is the added latency.
//   query_point_sqlite
// And for a query that does ~1 ms of work (a recursive CTE, calibrated on this machine), the
// share the engine adds to one call, and throughput with two connections: two threads calling
// directly against the engine with eight requests in flight; beside both, the floor of any
// design that runs the call on another thread (plain threads handing it over, no actors), the
// latencies paired call by call.
//   query_1ms_sqlite
// And a two-step write transaction, direct and through the engine (at the end of this file).
//   transaction_sqlite

#include "bench/bench.hpp"
#include "bench/items.hpp"

#include "actors/detail/backend.hpp"
#include "actors/log.hpp"
#include "runtime/engine.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

using namespace bulwark;
using namespace std::chrono;

namespace {

constexpr int calls = 20000;
constexpr int warmup = 500;

const char* point = "SELECT id, name FROM items WHERE id = $1";

/// What this process has used so far, all threads: CPU time (user + system, and system alone)
/// in microseconds, and how often a thread went to sleep (voluntary context switches: each one
/// a wake-up later, which a hypervisor makes dear).
struct usage {
  double cpu_us = 0;
  double sys_us = 0;
  double sleeps = 0;
  static usage now() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto us = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec);
    };
    return {us(ru.ru_utime) + us(ru.ru_stime), us(ru.ru_stime), static_cast<double>(ru.ru_nvcsw)};
  }
  usage operator-(const usage& o) const {
    return {cpu_us - o.cpu_us, sys_us - o.sys_us, sleeps - o.sleeps};
  }
  usage& operator+=(const usage& o) {
    cpu_us += o.cpu_us;
    sys_us += o.sys_us;
    sleeps += o.sleeps;
    return *this;
  }
};

/// What a run of calls took: wall time and the process's usage.
struct run_cost {
  int calls = 0;
  double secs = 0;
  usage used;
  run_cost& operator+=(const run_cost& o) {
    calls += o.calls;
    secs += o.secs;
    used += o.used;
    return *this;
  }
};

/// `threads` threads share `n_calls` calls, each thread making its own caller with `make()` (a
/// callable that does one call and says whether it succeeded).
template <class Make>
run_cost timed_calls(int n_calls, int threads, Make make) {
  std::atomic<int> left{n_calls};
  auto t0 = steady_clock::now();
  auto used0 = usage::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      auto call = make();
      while (left.fetch_sub(1) > 0)
        if (!call())
          std::abort();
    });
  for (auto& t : ts)
    t.join();
  return {n_calls, bench::seconds_since(t0), usage::now() - used0};
}

/// A throughput row: calls/s, the CPU each call cost the whole process (the query's own ~1 ms
/// included: what a design adds to a call on cores the queries keep busy; and of it, in the
/// kernel) and how many times per call a thread went to sleep, and its share of `base`'s rate if
/// given.
void report_rate(const std::string& what, const run_cost& r, const run_cost* base = nullptr) {
  auto rate = r.calls / r.secs;
  std::printf("%-44s %d calls: %.0f calls/s, CPU %.0f us/call (sys %.0f), %.1f sleeps/call",
              what.c_str(), r.calls, rate, r.used.cpu_us / r.calls, r.used.sys_us / r.calls,
              r.used.sleeps / r.calls);
  if (base)
    std::printf(" (%.0f %% of direct)", 100.0 * rate / (base->calls / base->secs));
  std::printf("\n");
}

/// A caller maker for timed_calls: each call handed over with `submit(&done)` and waited for
/// (`done` gets the call's row count).
template <class Submit>
auto handing_over(Submit& submit) {
  return [&submit] {
    return [&submit] {
      std::promise<size_t> done;
      auto fut = done.get_future();
      submit(&done);
      return fut.get() == 1;
    };
  };
}

void report(const char* what, std::vector<double>& us, double secs) {
  std::printf("%-44s %d calls: p50 %.1f us, p95 %.1f us, p99 %.1f us, %.0f calls/s\n", what,
              static_cast<int>(us.size()), bench::percentile(us, 0.5), bench::percentile(us, 0.95),
              bench::percentile(us, 0.99), static_cast<double>(us.size()) / secs);
}

/// The schedulers both benchmarks compare: the shipped one (config/default.json's `scheduler`:
/// stealing without a moderate phase, so an idle worker goes from its back-to-back polls
/// straight to the condition variable a new message wakes), stealing with CAF's own moderate
/// phase (500 polls 50 us apart), and `sharing`; and the shipped one without the pool's scheduler
/// lane (pool.lane_slice_us 0: every call on a connection thread).
struct scheduler_variant {
  const char* label;
  scheduler_config cfg;
  bool lane = true;
};

std::vector<scheduler_variant> scheduler_variants() {
  scheduler_variant shipped{"stealing (shipped)", {}};
  scheduler_variant caf{"stealing, CAF's moderate 500x50us", {}};
  caf.cfg.stealing.moderate_poll_attempts = 500;
  caf.cfg.stealing.moderate_sleep_us = 50;
  scheduler_variant sharing{"sharing", {}};
  sharing.cfg.policy = "sharing";
  scheduler_variant no_lane{"stealing (shipped), no lane", {}, false};
  return {shipped, no_lane, caf, sharing};
}

/// The engine both benchmarks run: on `file`, `conns` connections, one statement, 2 threads.
engine_config bench_engine(const scheduler_config& sched, const std::filesystem::path& dir,
                           const std::string& file, size_t conns, const std::string& name,
                           const char* sql) {
  engine_config cfg;
  cfg.scheduler = sched;
  cfg.node.data_dir = dir.string();
  cfg.backend.sqlite_path = file;
  cfg.scheduler.threads = 2;
  cfg.pool.min_connections = conns;
  cfg.pool.max_connections = conns;
  cfg.database.statements[name] = {sql, {"int"}, true};
  return cfg;
}

/// One call from a non-actor thread into the engine at `entry` (the database, or an inner actor
/// of the path), built by `make` on the executor (an actor, for the clock), waited for.
template <class Handle, class Make>
bool entry_call(engine& eng, const Handle& entry, Make make) {
  std::promise<bool> done;
  auto fut = done.get_future();
  eng.post([&done, entry, make](caf::event_based_actor* self) {
    self->request(entry, std::chrono::seconds(10), make(self))
        .then([&done](db_result& r) { done.set_value(r.rows.size() == 1); },
              [&done](caf::error&) { done.set_value(false); });
  });
  return fut.get();
}

/// One query through the engine's database, waited for.
bool engine_call(engine& eng, const database_actor& db, db_query q) {
  return entry_call(eng, db, [q = std::move(q)](caf::event_based_actor*) { return q; });
}

} // namespace

BULWARK_BENCH(query_point_sqlite) {
  set_log_level(log_level::warn);
  auto [dir, file] = bench::items_dir("bulwark-query-bench");
  {
    // Baseline: the backend interface, no actors.
    auto c = detail::connect_sqlite({file, 1000});
    c->prepare("point", point, 1);
    std::vector<double> us;
    detail::fetch_limits lim;
    auto t0 = steady_clock::now();
    for (int i = 0; i < warmup + calls; ++i) {
      auto s = steady_clock::now();
      auto r = c->execute("point", {int64_t{1 + i % 10000}}, lim);
      if (r.rows.size() != 1)
        std::abort();
      if (i >= warmup)
        us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
      if (i == warmup - 1)
        t0 = steady_clock::now();
    }
    report("direct SQLite (baseline)", us, bench::seconds_since(t0));
  }
  for (auto& v : scheduler_variants()) {
    auto cfg = bench_engine(v.cfg, dir, file, 1, "point", point);
    if (!v.lane)
      cfg.pool.lane_slice = microseconds{0};
    engine eng{cfg};
    auto db = eng.directory().get<database_actor>("database");
    std::vector<double> us;
    auto t0 = steady_clock::now();
    for (int i = 0; i < warmup + calls; ++i) {
      auto s = steady_clock::now();
      db_query q;
      q.statement = "point";
      q.params = {db_value::of(int64_t{1 + i % 10000})};
      if (!engine_call(eng, db, q))
        std::abort();
      if (i >= warmup)
        us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
      if (i == warmup - 1)
        t0 = steady_clock::now();
    }
    auto label = std::string{"through the engine, "} + v.label;
    report(label.c_str(), us, bench::seconds_since(t0));
  }
  std::filesystem::remove_all(dir);
}

namespace {

/// The ~1 ms query with its N, after 100 calls of it into the engine (connections open, the
/// statement prepared, its cost learned).
db_query warmed_work(engine& eng, const database_actor& db, int64_t n) {
  db_query q;
  q.statement = "work";
  q.params = {db_value::of(n)};
  for (int i = 0; i < 100; ++i)
    engine_call(eng, db, q);
  return q;
}

/// A plain thread that runs the jobs handed to it in order and sleeps on a condition variable
/// when it has none: what a scheduler worker or a connection thread is to a call, without CAF.
/// The floor rows of query_1ms_sqlite pass a call between such threads as the engine does.
class relay {
public:
  relay() : thread_([this] { run(); }) {}
  ~relay() {
    post({});
    thread_.join();
  }
  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;
  /// Runs `job` on this thread after the ones before it (an empty job ends the thread).
  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      jobs_.push_back(std::move(job));
    }
    ready_.notify_one();
  }

private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> guard{mtx_};
        ready_.wait(guard, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      if (!job)
        return;
      job();
    }
  }
  std::mutex mtx_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  std::thread thread_;
};

const char* work = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1) "
                   "SELECT count(*) FROM c";

} // namespace

BULWARK_BENCH(query_1ms_sqlite) {
  set_log_level(log_level::warn);
  auto [dir, file] = bench::fresh_dir("bulwark-query-1ms-bench");
  constexpr int n_calls = 2000;
  detail::fetch_limits lim;
  // Calibrate N so that one direct call takes about 1 ms.
  int64_t n = 1000;
  {
    auto c = detail::connect_sqlite({file, 1000});
    c->prepare("work", work, 1);
    for (int round = 0; round < 8; ++round) {
      std::vector<double> us;
      for (int i = 0; i < 50; ++i) {
        auto s = steady_clock::now();
        c->execute("work", {n}, lim);
        us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
      }
      n = std::max<int64_t>(
          1, static_cast<int64_t>(static_cast<double>(n) * 1000.0 / bench::percentile(us, 0.5)));
    }
    std::vector<double> us;
    auto t0 = steady_clock::now();
    for (int i = 0; i < n_calls; ++i) {
      auto s = steady_clock::now();
      c->execute("work", {n}, lim);
      us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
    }
    std::printf("N = %lld\n", static_cast<long long>(n));
    report("direct, one call at a time", us, bench::seconds_since(t0));
  }
  {
    // Direct throughput: two threads, a connection each.
    report_rate("direct, 2 threads x 1 connection", timed_calls(n_calls, 2, [&] {
                  std::shared_ptr<detail::connection> c = detail::connect_sqlite({file, 1000});
                  c->prepare("work", work, 1);
                  return [c, &n, &lim] { return c->execute("work", {n}, lim).rows.size() == 1; };
                }));
  }
  {
    // Paired, call by call: the direct call, the floor of any design that puts threads between
    // the caller and the connection (the same call passed between plain threads: condition
    // variables, no actors, no bookkeeping), and the shipped engine, in turn, each path's call
    // next to the others' so all see the same machine (this VM's speed moves by 2x within a
    // run). Two hand-offs: the caller to a connection thread and back. Four: the caller to a
    // dispatcher thread (the scheduler worker that runs the pool), to the connection thread,
    // back to the dispatcher, back to the caller, the shape of the engine's path.
    auto direct = detail::connect_sqlite({file, 1000});
    auto c = detail::connect_sqlite({file, 1000});
    direct->prepare("work", work, 1);
    c->prepare("work", work, 1);
    relay dispatcher, conn;
    auto floor_call = [&](bool via_dispatcher) {
      std::promise<size_t> done;
      auto execute = [&] {
        auto rows = c->execute("work", {n}, lim).rows.size();
        if (via_dispatcher)
          dispatcher.post([&done, rows] { done.set_value(rows); });
        else
          done.set_value(rows);
      };
      if (via_dispatcher)
        dispatcher.post([&] { conn.post(execute); });
      else
        conn.post(execute);
      return done.get_future().get() == 1;
    };
    engine eng{bench_engine(scheduler_variants().front().cfg, dir, file, 2, "work", work)};
    auto db = eng.directory().get<database_actor>("database");
    auto q = warmed_work(eng, db, n);
    std::function<bool()> paths[] = {
        [&] { return direct->execute("work", {n}, lim).rows.size() == 1; },
        [&] { return floor_call(false); }, [&] { return floor_call(true); },
        [&] { return engine_call(eng, db, q); }};
    const char* labels[] = {"paired: direct", "paired: threads, no actors, 2 hand-offs (floor)",
                            "paired: threads, no actors, 4 hand-offs (floor)",
                            "paired: engine (shipped)"};
    std::vector<double> us[4];
    for (int i = 0; i < n_calls; ++i)
      for (int k = 0; k < 4; ++k) {
        auto path = (i + k) % 4; // each path first in a quarter of the rounds
        auto t = steady_clock::now();
        if (!paths[path]())
          std::abort();
        us[path].push_back(duration<double, std::micro>(steady_clock::now() - t).count());
      }
    auto base = bench::percentile(us[0], 0.5);
    for (int k = 0; k < 4; ++k) {
      auto p50 = bench::percentile(us[k], 0.5);
      std::printf("%-48s p50 %.1f us (+%.1f us, +%.1f %%), p95 %.1f us, p99 %.1f us\n", labels[k],
                  p50, p50 - base, 100.0 * (p50 - base) / base, bench::percentile(us[k], 0.95),
                  bench::percentile(us[k], 0.99));
    }
  }
  {
    // Throughput, paired: 10 rounds, each running a tenth of the calls on every path in turn
    // (rotating which goes first), so all see the same machine. Direct: two threads, a
    // connection each. The floors, 8 callers on 2 connection threads: fed by a dispatcher
    // thread that gives each call to an idle connection and each finished connection the next
    // waiting call (the pool's round trip between two calls on a connection, without actors),
    // or by a shared queue the connection threads take from themselves. And the shipped engine,
    // 8 in flight on its pool's 2 connections.
    std::shared_ptr<detail::connection> direct[2] = {detail::connect_sqlite({file, 1000}),
                                                     detail::connect_sqlite({file, 1000})};
    std::unique_ptr<detail::connection> c[4];
    for (auto& x : c)
      x = detail::connect_sqlite({file, 1000});
    for (auto& x : direct)
      x->prepare("work", work, 1);
    for (auto& x : c)
      x->prepare("work", work, 1);
    // The dispatcher floor, on c[0] and c[1].
    relay dispatcher, conn0, conn1;
    relay* threads[2] = {&conn0, &conn1};
    bool idle[2] = {true, true};               // the dispatcher's own state
    std::deque<std::promise<size_t>*> waiting; // likewise
    std::function<void(int, std::promise<size_t>*)> start;
    start = [&](int k, std::promise<size_t>* p) {
      idle[k] = false;
      threads[k]->post([&, k, p] {
        auto rows = c[k]->execute("work", {n}, lim).rows.size();
        dispatcher.post([&, k, p, rows] {
          p->set_value(rows);
          idle[k] = true;
          if (!waiting.empty()) {
            auto next = waiting.front();
            waiting.pop_front();
            start(k, next);
          }
        });
      });
    };
    auto via_dispatcher = [&](std::promise<size_t>* p) {
      dispatcher.post([&, p] {
        for (int k = 0; k < 2; ++k)
          if (idle[k]) {
            start(k, p);
            return;
          }
        waiting.push_back(p);
      });
    };
    // The shared-queue floor, on c[2] and c[3].
    std::mutex mtx;
    std::condition_variable ready;
    std::deque<std::promise<size_t>*> queued;
    bool stop = false;
    auto serve = [&](detail::connection* conn) {
      for (;;) {
        std::promise<size_t>* p;
        {
          std::unique_lock<std::mutex> guard{mtx};
          ready.wait(guard, [&] { return stop || !queued.empty(); });
          if (queued.empty())
            return;
          p = queued.front();
          queued.pop_front();
        }
        p->set_value(conn->execute("work", {n}, lim).rows.size());
      }
    };
    std::thread s0{serve, c[2].get()}, s1{serve, c[3].get()};
    auto via_queue = [&](std::promise<size_t>* p) {
      {
        std::lock_guard<std::mutex> guard{mtx};
        queued.push_back(p);
      }
      ready.notify_one();
    };
    engine eng{bench_engine(scheduler_variants().front().cfg, dir, file, 2, "work", work)};
    auto db = eng.directory().get<database_actor>("database");
    auto q = warmed_work(eng, db, n);
    auto via_engine = [&](std::promise<size_t>* p) { p->set_value(engine_call(eng, db, q)); };
    // The same engine whose connections get each next call from the pool once they are free
    // (pool.call_ahead off): what sending the next call ahead is worth.
    auto no_ahead_cfg = bench_engine(scheduler_variants().front().cfg, dir, file, 2, "work", work);
    no_ahead_cfg.pool.call_ahead = false;
    engine no_ahead{no_ahead_cfg};
    auto db_no_ahead = no_ahead.directory().get<database_actor>("database");
    auto q_no_ahead = warmed_work(no_ahead, db_no_ahead, n);
    auto via_no_ahead = [&](std::promise<size_t>* p) {
      p->set_value(engine_call(no_ahead, db_no_ahead, q_no_ahead));
    };
    std::atomic<int> next_direct{0};
    std::function<run_cost(int)> paths[] = {
        [&](int calls) {
          next_direct = 0;
          return timed_calls(calls, 2, [&] {
            auto conn = direct[next_direct++];
            return [conn, &n, &lim] { return conn->execute("work", {n}, lim).rows.size() == 1; };
          });
        },
        [&](int calls) { return timed_calls(calls, 8, handing_over(via_dispatcher)); },
        [&](int calls) { return timed_calls(calls, 8, handing_over(via_queue)); },
        [&](int calls) { return timed_calls(calls, 8, handing_over(via_engine)); },
        [&](int calls) { return timed_calls(calls, 8, handing_over(via_no_ahead)); }};
    const char* labels[] = {
        "paired: direct, 2 threads x 1 connection", "paired: threads, no actors, dispatcher",
        "paired: threads, no actors, shared queue", "paired: engine (shipped), 8 in flight",
        "paired: engine, no call ahead, 8 in flight"};
    constexpr int n_paths = 5;
    run_cost total[n_paths];
    for (int round = 0; round < 10; ++round)
      for (int k = 0; k < n_paths; ++k) {
        auto path = (round + k) % n_paths;
        total[path] += paths[path](n_calls / 10);
      }
    for (int k = 0; k < n_paths; ++k)
      report_rate(labels[k], total[k], k == 0 ? nullptr : &total[0]);
    {
      std::lock_guard<std::mutex> guard{mtx};
      stop = true;
    }
    ready.notify_all();
    s0.join();
    s1.join();
  }
  for (auto& v : scheduler_variants()) {
    auto cfg = bench_engine(v.cfg, dir, file, 2, "work", work);
    if (!v.lane)
      cfg.pool.lane_slice = microseconds{0};
    engine eng{cfg};
    auto db = eng.directory().get<database_actor>("database");
    auto q = warmed_work(eng, db, n);
    std::vector<double> us;
    auto t0 = steady_clock::now();
    for (int i = 0; i < n_calls; ++i) {
      auto s = steady_clock::now();
      if (!engine_call(eng, db, q))
        std::abort();
      us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
    }
    auto label = std::string{"engine ("} + v.label + "), one at a time";
    report(label.c_str(), us, bench::seconds_since(t0));
    // Throughput: 8 requests in flight from 8 threads, the pool's 2 connections.
    auto via_engine = [&](std::promise<size_t>* p) { p->set_value(engine_call(eng, db, q)); };
    report_rate(std::string{"engine ("} + v.label + "), 8 in flight, 2 conns",
                timed_calls(n_calls, 8, handing_over(via_engine)));
  }
  std::filesystem::remove_all(dir);
}

// Issue 17 item 5: what the circuit breaker costs as an actor of its own. The same point query,
// one call at a time and then with 8 in flight, entering the real engine's path at three
// places: the database (statement lookup, limits, then breaker -> pool), the breaker (-> pool)
// and the pool itself. Breaker minus pool is the breaker's hop: one more mailbox each way.
//   query_hops_sqlite

BULWARK_BENCH(query_hops_sqlite) {
  set_log_level(log_level::warn);
  auto [dir, file] = bench::items_dir("bulwark-query-hops-bench");
  engine eng{bench_engine({}, dir, file, 2, "point", point)};
  auto db = eng.directory().get<database_actor>("database");
  auto breaker = eng.directory().get<circuit_breaker_actor>("circuit_breaker");
  auto pool = eng.directory().get<connection_pool_actor>("connection_pool");
  std::atomic<uint64_t> ids{uint64_t{1} << 40}; // apart from the database's own call ids
  auto query = [](int i) {
    db_query q;
    q.statement = "point";
    q.params = {db_value::of(int64_t{1 + i % 10000})};
    return q;
  };
  auto call = [&ids](int i) {
    return [&ids, i](caf::event_based_actor* self) {
      db_call c;
      c.id = ids++;
      c.statement = "point";
      c.sql = point;
      c.params = {db_value::of(int64_t{1 + i % 10000})};
      c.limit.max_rows = 1000;
      c.limit.max_bytes = 1 << 20;
      c.deadline = self->clock().now().time_since_epoch() + std::chrono::seconds(5);
      return c;
    };
  };
  using fn = std::function<bool(int)>;
  std::vector<std::pair<const char*, fn>> entries{
      {"enter at the database (full path)", [&](int i) { return engine_call(eng, db, query(i)); }},
      {"enter at the breaker (breaker -> pool)",
       [&](int i) { return entry_call(eng, breaker, call(i)); }},
      {"enter at the pool (no breaker)", [&](int i) { return entry_call(eng, pool, call(i)); }},
  };
  for (auto& [label, f] : entries) {
    std::vector<double> us;
    auto t0 = steady_clock::now();
    for (int i = 0; i < warmup + calls; ++i) {
      auto s = steady_clock::now();
      if (!f(i))
        std::abort();
      if (i >= warmup)
        us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
      if (i == warmup - 1)
        t0 = steady_clock::now();
    }
    report(label, us, bench::seconds_since(t0));
  }
  // With 8 calls in flight (8 threads, 2 connections): does the breaker's mailbox limit the rate?
  for (auto& [label, f] : entries) {
    constexpr int threads = 8;
    constexpr int each = 4000;
    std::atomic<bool> ok{true};
    auto t0 = steady_clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t, f = f] {
        for (int i = 0; i < each; ++i)
          if (!f(t * each + i))
            ok = false;
      });
    for (auto& t : ts)
      t.join();
    if (!ok)
      std::abort();
    std::printf("%-44s 8 in flight: %.0f calls/s\n", label,
                threads * each / bench::seconds_since(t0));
  }
  std::filesystem::remove_all(dir);
}

// A two-step write transaction (update a row, read it back) on the same SQLite file: BEGIN
// IMMEDIATE, the two statements and COMMIT through the backend interface (baseline), and the same
// through the engine as one transaction (database -> breaker -> pool -> one connection), one at a
// time, so the difference is what the engine adds to a transaction. Each COMMIT syncs the WAL, so
// the two alternate in rounds: the disk's noise falls on both alike.
//   transaction_sqlite
BULWARK_BENCH(transaction_sqlite) {
  set_log_level(log_level::warn);
  auto [dir, file] = bench::items_dir("bulwark-transaction-bench");
  const char* rename = "UPDATE items SET name = $2 WHERE id = $1";
  constexpr int rounds = 8;
  constexpr int per_round = 1250;
  auto name_of = [](int i) { return std::string{"item "} + std::to_string(i); };
  auto c = detail::connect_sqlite({file, 1000});
  c->prepare("rename", rename, 2);
  c->prepare("point", point, 1);
  detail::fetch_limits lim;
  auto direct = [&](int i) {
    int64_t id = 1 + i % 10000;
    c->exec("BEGIN IMMEDIATE");
    c->execute("rename", {id, name_of(i)}, lim);
    auto r = c->execute("point", {id}, lim);
    c->exec("COMMIT");
    return r.rows.size() == 1;
  };
  auto cfg = bench_engine({}, dir, file, 1, "point", point);
  cfg.database.statements["rename"] = {rename, {"int", "text"}, false};
  engine eng{cfg};
  auto db = eng.directory().get<database_actor>("database");
  auto through = [&](int i) {
    int64_t id = 1 + i % 10000;
    db_query q;
    q.statement = transaction_label;
    q.steps = {{"rename", {db_value::of(id), db_value::of(name_of(i))}},
               {"point", {db_value::of(id)}}};
    std::promise<bool> done;
    auto fut = done.get_future();
    eng.post([&done, db, q = std::move(q)](caf::event_based_actor* self) {
      self->request(db, std::chrono::seconds(10), q)
          .then(
              [&done](db_result& r) {
                done.set_value(r.steps.size() == 2 && r.steps[1].rows.size() == 1);
              },
              [&done](caf::error&) { done.set_value(false); });
    });
    return fut.get();
  };
  for (int i = 0; i < warmup; ++i)
    if (!direct(i) || !through(i))
      std::abort();
  std::vector<double> us_direct, us_engine;
  double secs_direct = 0, secs_engine = 0;
  auto run = [](auto& call, int from, std::vector<double>& us) {
    auto t0 = steady_clock::now();
    for (int i = from; i < from + per_round; ++i) {
      auto s = steady_clock::now();
      if (!call(i))
        std::abort();
      us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
    }
    return bench::seconds_since(t0);
  };
  for (int r = 0; r < rounds; ++r) {
    secs_direct += run(direct, r * per_round, us_direct);
    secs_engine += run(through, r * per_round, us_engine);
  }
  report("direct SQLite transaction (baseline)", us_direct, secs_direct);
  report("through the engine, one transaction", us_engine, secs_engine);
  std::filesystem::remove_all(dir);
}

/// 100 point reads as one operation: in a loop on one SQLite connection (the baseline), through
/// the engine's database as 100 queries one after another, as 100 queries at once, and as one
/// batch of 100 (`db_query::batch`: the items run as separate calls, at most the pool's width at
/// a time). Alternating rounds, so the variants see the same machine.
BULWARK_BENCH(batch_sqlite) {
  set_log_level(log_level::warn);
  auto [dir, file] = bench::items_dir("bulwark-batch-bench");
  static constexpr int items = 100; // static: the lambdas below use it without capturing
  constexpr int rounds = 8;
  constexpr int per_round = 25;
  auto c = detail::connect_sqlite({file, 1000});
  c->prepare("point", point, 1);
  detail::fetch_limits lim;
  auto direct = [&](int op) {
    size_t found = 0;
    for (int i = 0; i < items; ++i)
      found += c->execute("point", {int64_t{1 + (op * items + i) % 10000}}, lim).rows.size();
    return found == items;
  };
  engine eng{bench_engine({}, dir, file, 2, "point", point)};
  auto db = eng.directory().get<database_actor>("database");
  auto query_of = [](int op, int i) {
    db_query q;
    q.statement = "point";
    q.params = {db_value::of(int64_t{1 + (op * items + i) % 10000})};
    return q;
  };
  auto one_by_one = [&](int op) {
    for (int i = 0; i < items; ++i)
      if (!engine_call(eng, db, query_of(op, i)))
        return false;
    return true;
  };
  auto all_at_once = [&](int op) {
    std::promise<bool> done;
    auto fut = done.get_future();
    eng.post([&done, db, op, &query_of](caf::event_based_actor* self) {
      auto left = std::make_shared<int>(items);
      auto ok = std::make_shared<bool>(true);
      for (int i = 0; i < items; ++i)
        self->request(db, std::chrono::seconds(10), query_of(op, i))
            .then(
                [=, &done](db_result& r) {
                  *ok = *ok && r.rows.size() == 1;
                  if (--*left == 0)
                    done.set_value(*ok);
                },
                [=, &done](caf::error&) {
                  *ok = false;
                  if (--*left == 0)
                    done.set_value(false);
                });
    });
    return fut.get();
  };
  auto batch = [&](int op) {
    db_query q;
    q.statement = "point";
    for (int i = 0; i < items; ++i)
      q.batch.push_back(query_of(op, i).params);
    std::promise<bool> done;
    auto fut = done.get_future();
    eng.post([&done, db, q = std::move(q)](caf::event_based_actor* self) {
      self->request(db, std::chrono::seconds(10), q)
          .then(
              [&done](db_result& r) {
                bool ok = r.items.size() == items;
                for (auto& item : r.items)
                  ok = ok && !item.error && item.result.rows.size() == 1;
                done.set_value(ok);
              },
              [&done](caf::error&) { done.set_value(false); });
    });
    return fut.get();
  };
  for (int op = 0; op < 20; ++op)
    if (!direct(op) || !one_by_one(op) || !all_at_once(op) || !batch(op))
      std::abort();
  std::vector<double> us[4];
  double secs[4] = {0, 0, 0, 0};
  auto run = [&](auto& call, int from, int k) {
    auto t0 = steady_clock::now();
    for (int op = from; op < from + per_round; ++op) {
      auto s = steady_clock::now();
      if (!call(op))
        std::abort();
      us[k].push_back(duration<double, std::micro>(steady_clock::now() - s).count());
    }
    secs[k] += bench::seconds_since(t0);
  };
  for (int r = 0; r < rounds; ++r) {
    run(direct, r * per_round, 0);
    run(one_by_one, r * per_round, 1);
    run(all_at_once, r * per_round, 2);
    run(batch, r * per_round, 3);
  }
  report("100 reads, direct SQLite loop (baseline)", us[0], secs[0]);
  report("100 reads, engine, one after another", us[1], secs[1]);
  report("100 reads, engine, all at once", us[2], secs[2]);
  report("100 reads, engine, one batch", us[3], secs[3]);
  std::filesystem::remove_all(dir);
}
