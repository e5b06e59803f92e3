// Issue 12: what one point query costs through each entry of the node, side by side with the
// same query called directly in the same run. One call at a time (closed loop), so each number
// is the per-call cost, not queueing; 2 scheduler threads, one SQLite connection, the statement
// uncached (cache_ttl_ms 0) unless the row says cached; on a fresh node for each setting of the
// stealing scheduler's idle polls (scheduler.stealing.aggressive_poll_attempts: shipped 1 000,
// CAF's 100, 10 000) and the pool's scheduler lane (pool.lane_slice_us as shipped, or 0: off).
//   query_paths_sqlite
// Rows: the backend called directly (baseline); the embedded facade's future (application
// thread -> front door -> gateway -> database -> breaker -> pool -> connection and back, the
// thread asleep on the future until the answer wakes it); the facade's call() (the same, the
// thread spinning up to call_options::spin before it sleeps); an actor caller (an event-based
// actor in the node's own scheduler sending gateway_request to the front door, so no thread
// outside the scheduler waits; no timeout of its own, since the front door answers every
// request by its deadline); the facade on a cached statement, future and call() (a cache hit:
// front door -> gateway -> cache shard -> gateway -> front door).

#include "bench/bench.hpp"
#include "bench/items.hpp"

#include "actors/cache.hpp"
#include "actors/detail/backend.hpp"
#include "actors/log.hpp"
#include "runtime/facade.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <future>

using namespace bulwark;
using namespace std::chrono;

namespace {

constexpr int path_calls = 20000;
constexpr int path_warmup = 1000;

void path_report(const char* what, std::vector<double>& us, double secs) {
  std::printf("%-46s %d calls: p50 %6.1f us, p95 %6.1f us, p99 %6.1f us, %7.0f calls/s\n", what,
              static_cast<int>(us.size()), bench::percentile(us, 0.5), bench::percentile(us, 0.95),
              bench::percentile(us, 0.99), static_cast<double>(us.size()) / secs);
}

const char* point = "SELECT id, name FROM items WHERE id = $1";

/// An engine on `file`: `threads` scheduler threads, `conns` connections, the point query as
/// `point` (uncached) and `point_cached` (cached for 10 minutes).
engine_config paths_engine(const std::filesystem::path& dir, const std::string& file,
                           size_t threads, size_t conns) {
  engine_config cfg;
  cfg.node.data_dir = dir.string();
  cfg.backend.sqlite_path = file;
  cfg.scheduler.threads = threads;
  cfg.pool.min_connections = conns;
  cfg.pool.max_connections = conns;
  cfg.database.statements["point"] = {point, {"int"}, true};
  cfg.database.statements["point_cached"] = {point, {"int"}, true, minutes(10)};
  // Callers that name a client pass the rate limiter; limits high enough never to refuse.
  cfg.rate_limiter.table.rate_per_sec = 1e8;
  cfg.rate_limiter.table.burst = 100'000'000;
  return cfg;
}

/// Runs `call(i)` warm-up + measured times from this thread and reports the measured ones.
template <class Call>
void closed_loop(const char* label, Call call) {
  std::vector<double> us;
  us.reserve(path_calls);
  auto t0 = steady_clock::now();
  for (int i = 0; i < path_warmup + path_calls; ++i) {
    if (i == path_warmup)
      t0 = steady_clock::now();
    auto s = steady_clock::now();
    if (!call(i))
      std::abort();
    if (i >= path_warmup)
      us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
  }
  path_report(label, us, bench::seconds_since(t0));
}

struct actor_loop_state {
  std::vector<double> us;
  steady_clock::time_point t0;
  steady_clock::time_point sent;
  int i = 0;
};

/// One call after another from an actor in the node's scheduler; the calls' latencies.
void actor_next(caf::stateful_actor<actor_loop_state>* self, front_door_actor fd,
                std::shared_ptr<std::promise<std::pair<std::vector<double>, double>>> done) {
  auto& st = self->state;
  if (st.i == path_warmup + path_calls) {
    done->set_value({std::move(st.us), bench::seconds_since(st.t0)});
    self->quit();
    return;
  }
  if (st.i == path_warmup)
    st.t0 = steady_clock::now();
  gateway_request req;
  req.query.statement = "point";
  req.query.params = {db_value::of(int64_t{1 + st.i % 10000})};
  st.sent = steady_clock::now();
  self->request(fd, caf::infinite, std::move(req))
      .then(
          [=](db_result& r) {
            auto& st = self->state;
            if (r.rows.size() != 1)
              std::abort();
            if (st.i >= path_warmup)
              st.us.push_back(duration<double, std::micro>(steady_clock::now() - st.sent).count());
            ++st.i;
            actor_next(self, fd, done);
          },
          [](caf::error&) { std::abort(); });
}

} // namespace

BULWARK_BENCH(query_paths_sqlite) {
  set_log_level(log_level::warn);
  auto [dir, file] = bench::items_dir("bulwark-query-paths-bench");
  {
    auto c = detail::connect_sqlite({file, 1000});
    c->prepare("point", point, 1);
    detail::fetch_limits lim;
    closed_loop("direct SQLite (baseline)", [&](int i) {
      return c->execute("point", {int64_t{1 + i % 10000}}, lim).rows.size() == 1;
    });
  }
  // The shipped scheduler with the scheduler lane and without it (every call handed to the
  // connection's thread and back), then shorter and longer idle polls, in the same run.
  struct variant {
    size_t polls;
    bool lane;
  };
  for (auto v :
       {variant{1000, true}, variant{1000, false}, variant{100, true}, variant{10000, true}}) {
    auto cfg = paths_engine(dir, file, 2, 1);
    if (!v.lane)
      cfg.pool.lane_slice = microseconds{0};
    std::printf("-- scheduler.stealing.aggressive_poll_attempts %zu%s, pool.lane_slice_us %lld%s\n",
                v.polls,
                v.polls == scheduler_config{}.stealing.aggressive_poll_attempts ? " (shipped)" : "",
                static_cast<long long>(cfg.pool.lane_slice.count()), v.lane ? " (shipped)" : "");
    cfg.scheduler.stealing.aggressive_poll_attempts = v.polls;
    embedded node{cfg};
    closed_loop("facade, future", [&](int i) {
      return node.query("point", {int64_t{1 + i % 10000}}).get().result.rows.size() == 1;
    });
    closed_loop("facade, call()", [&](int i) {
      return node.call("point", {int64_t{1 + i % 10000}}).result.rows.size() == 1;
    });
    {
      auto done = std::make_shared<std::promise<std::pair<std::vector<double>, double>>>();
      auto fut = done->get_future();
      auto fd = node.engine().front_door();
      node.engine().system().spawn(
          [fd, done](caf::stateful_actor<actor_loop_state>* self) { actor_next(self, fd, done); });
      auto [us, secs] = fut.get();
      path_report("actor caller (in the node's scheduler)", us, secs);
    }
    // 100 keys, each read once in the warm-up: every measured call is a hit.
    closed_loop("facade, future, cached statement (hits)", [&](int i) {
      auto r = node.query("point_cached", {int64_t{1 + i % 100}}).get();
      return r.result.rows.size() == 1 && (i < 100 || r.result.from_cache);
    });
    closed_loop("facade, call(), cached statement (hits)", [&](int i) {
      auto r = node.call("point_cached", {int64_t{1 + i % 100}});
      return r.result.rows.size() == 1 && r.result.from_cache;
    });
  }
  std::filesystem::remove_all(dir);
}

// Issue 12, item 3's 2-core proxy: the node's own capacity at 1 and 2 scheduler threads (and so
// 1 and 2 gateway shards, gateway.shards 0), with the load made inside the scheduler (64 actor
// callers, one call in flight each, sending gateway_request to the front doors in turn), so no
// outside thread competes for the cores. Cache hits
// stay inside the scheduler (front door -> gateway -> cache shard and back): if one actor on
// every request's path (the front door, the gateway) saturated before the cores did, 2 threads
// would not beat 1. Uncached reads add the pool's two connection threads.
//   query_paths_scaling

namespace {

struct caller_state {
  int left = 0;
};

/// `callers` actors, each making `each` calls one after another (`for_caller(c)` makes caller
/// c's `call(self, c, left, next)`, which sends one request and runs `next` on its answer); the
/// wall time of them all.
using call_fn =
    std::function<void(caf::event_based_actor*, int, int, const std::function<void()>&)>;

double run_callers(embedded& node, int callers, int each,
                   const std::function<call_fn(int)>& for_caller) {
  auto done = std::make_shared<std::atomic<int>>(callers);
  auto all = std::make_shared<std::promise<void>>();
  auto fut = all->get_future();
  auto t0 = steady_clock::now();
  for (int c = 0; c < callers; ++c) {
    auto call = for_caller(c);
    node.engine().system().spawn([=](caf::stateful_actor<caller_state>* self) {
      self->state.left = each;
      auto next = std::make_shared<std::function<void()>>();
      *next = [=] {
        if (self->state.left-- == 0) {
          if (--*done == 0)
            all->set_value();
          self->quit();
          return;
        }
        call(self, c, self->state.left, *next);
      };
      (*next)();
    });
  }
  fut.get();
  return bench::seconds_since(t0);
}

/// Reads of `statement` through the front doors, each caller on one of its own, taken in turn
/// as HTTP threads and the facade take them (engine::front_door_for_call). With `as_clients`,
/// caller c is client "caller-c" (as an HTTP client is its address): its requests go to its
/// client's gateway and pass that gateway's rate limiter shard.
double callers_run(embedded& node, const std::string& statement, int callers, int each,
                   bool as_clients = false) {
  return run_callers(node, callers, each, [&node, statement, as_clients](int) -> call_fn {
    auto fd = node.engine().front_door_for_call();
    return [fd, statement, as_clients](caf::event_based_actor* self, int c, int left,
                                       const std::function<void()>& next) {
      gateway_request req;
      if (as_clients)
        req.client = "caller-" + std::to_string(c);
      req.query.statement = statement;
      req.query.params = {db_value::of(int64_t{1 + (c * 7 + left) % 100})};
      self->request(fd, caf::infinite, std::move(req))
          .then(
              [next](db_result& r) {
                if (r.rows.size() != 1)
                  std::abort();
                next();
              },
              [](caf::error&) { std::abort(); });
    };
  });
}

/// The same, each caller asking one cache shard directly (no front door, no gateway): whether
/// the cores scale an actor path with no single actor on it.
double shards_run(embedded& node, int callers, int each) {
  return run_callers(node, callers, each, [&node](int c) -> call_fn {
    auto shard = node.engine().directory().get<cache_actor>(cache_shard_name(c % 2));
    return [shard](caf::event_based_actor* self, int c, int, const std::function<void()>& next) {
      self->request(shard, caf::infinite, cache_get{"key " + std::to_string(c)})
          .then([next](cache_lookup&) { next(); }, [](caf::error&) { std::abort(); });
    };
  });
}

} // namespace

BULWARK_BENCH(query_paths_scaling) {
  set_log_level(log_level::warn);
  auto [dir, file] = bench::items_dir("bulwark-query-scaling-bench");
  constexpr int callers = 64;
  struct variant {
    const char* label;
    const char* statement;
    int each;
    bool as_clients;
  };
  for (auto v : {variant{"point_cached", "point_cached", 2000, false},
                 variant{"cached+limiter", "point_cached", 2000, true},
                 variant{"point", "point", 500, false}}) {
    double rate[2] = {0, 0};
    for (size_t threads : {size_t{1}, size_t{2}}) {
      embedded node{paths_engine(dir, file, threads, 2)};
      callers_run(node, v.statement, callers, 50, v.as_clients); // warm-up, every key read once
      auto secs = callers_run(node, v.statement, callers, v.each, v.as_clients);
      rate[threads - 1] = callers * v.each / secs;
      std::printf("%-14s %zu scheduler thread%s, %d callers: %8.0f calls/s\n", v.label, threads,
                  threads == 1 ? " " : "s", callers, rate[threads - 1]);
    }
    std::printf("%-14s 2 threads / 1 thread: %.2f\n", v.label, rate[1] / rate[0]);
  }
  double rate[2] = {0, 0};
  for (size_t threads : {size_t{1}, size_t{2}}) {
    embedded node{paths_engine(dir, file, threads, 2)};
    shards_run(node, callers, 50);
    auto secs = shards_run(node, callers, 2000);
    rate[threads - 1] = callers * 2000 / secs;
    std::printf("%-14s %zu scheduler thread%s, %d callers: %8.0f calls/s\n", "shards direct",
                threads, threads == 1 ? " " : "s", callers, rate[threads - 1]);
  }
  std::printf("%-14s 2 threads / 1 thread: %.2f\n", "shards direct", rate[1] / rate[0]);
  std::filesystem::remove_all(dir);
}
