// Cache throughput: the shard actors with 1, 2 and 4 shards, driven by 4 client actors that keep
// 64 requests each in flight (get, and a put after each miss; Zipf-like keys, 90 % reads hit
// once warm), beside the store alone on one thread and CAF's raw request/response rate between
// two actors, all in the same run.
//   cache_shards

#include "bench/bench.hpp"

#include "actors/cache.hpp"
#include "actors/detail/adaptive_cache.hpp"
#include "actors/detail/frequency_sketch.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>

using namespace bulwark;
using namespace std::chrono;

namespace {

constexpr int clients = 4;
constexpr int in_flight = 64;
constexpr long ops_per_client = 200'000;
constexpr int key_space = 50'000;

/// Keys with a skewed popularity (a few hot keys, a long tail), reproducible.
std::vector<std::string> make_keys(size_t n, uint64_t seed) {
  std::mt19937_64 rng{seed};
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    double u = std::uniform_real_distribution<double>{0, 1}(rng);
    auto k = static_cast<int>(std::pow(u, 3.0) * key_space);
    out.push_back("key:" + std::to_string(k));
  }
  return out;
}

struct done_signal {
  std::mutex mtx;
  std::condition_variable cv;
  int finished = 0;
  void finish() {
    std::lock_guard<std::mutex> g{mtx};
    ++finished;
    cv.notify_all();
  }
  void wait(int n) {
    std::unique_lock<std::mutex> g{mtx};
    cv.wait(g, [&] { return finished >= n; });
  }
};

/// One client: keeps `in_flight` gets outstanding; a miss is followed by a put of 100 bytes.
void client(caf::event_based_actor* self, std::vector<cache_actor> shards,
            std::shared_ptr<std::vector<std::string>> keys, done_signal* done) {
  auto next = std::make_shared<size_t>(0);
  auto completed = std::make_shared<long>(0);
  auto value = std::string(100, 'v');
  std::shared_ptr<std::function<void()>> issue = std::make_shared<std::function<void()>>();
  *issue = [=] {
    if (*next >= keys->size())
      return;
    auto& key = (*keys)[(*next)++];
    auto& shard = shards[detail::hash_bytes(key) % shards.size()];
    self->request(shard, caf::infinite, cache_get{key}).then([=](cache_lookup& r) {
      if (!r.found)
        caf::anon_send(shard, cache_put{key, value, caf::timespan{0}, 1});
      if (++*completed == static_cast<long>(keys->size())) {
        done->finish();
        return;
      }
      (*issue)();
    });
  };
  for (int i = 0; i < in_flight; ++i)
    (*issue)();
}

double run_shards(uint32_t n, const char* policy) {
  // The metrics outlive the actor system, whose destructor waits for the shards (they may still
  // be handling the clients' last puts).
  prometheus::Registry reg;
  cache_metrics metrics{reg};
  caf::actor_system_config cfg;
  register_types(cfg);
  cfg.set("scheduler.policy", caf::atom_from_string(policy));
  cfg.set("logger.console", caf::atom("none"));
  caf::actor_system sys{cfg};
  auto dir = std::make_shared<component_directory>();
  cache_config cc;
  cc.shards = n;
  cc.max_entries = 20'000;
  cc.max_bytes = 64u << 20;
  std::vector<cache_actor> shards;
  for (uint32_t i = 0; i < n; ++i)
    shards.push_back(spawn_cache_shard(sys, cc, i, dir, &metrics));
  done_signal done;
  std::vector<std::shared_ptr<std::vector<std::string>>> keys;
  for (int c = 0; c < clients; ++c)
    keys.push_back(std::make_shared<std::vector<std::string>>(make_keys(ops_per_client, c + 1)));
  auto t0 = steady_clock::now();
  for (int c = 0; c < clients; ++c)
    sys.spawn(client, shards, keys[c], &done);
  done.wait(clients);
  auto secs = bench::seconds_since(t0);
  for (auto& s : shards)
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  return clients * ops_per_client / secs;
}

double run_store() {
  detail::adaptive_cache_config cfg;
  cfg.max_entries = 20'000;
  cfg.max_bytes = 64u << 20;
  detail::adaptive_cache<std::string, std::string> store{cfg};
  auto keys = make_keys(clients * ops_per_client, 99);
  auto value = std::string(100, 'v');
  auto t0 = steady_clock::now();
  for (auto& k : keys)
    store.access(k, value, k.size() + value.size(), nanoseconds{0});
  return static_cast<double>(keys.size()) / bench::seconds_since(t0);
}

double run_raw_caf() {
  caf::actor_system_config cfg;
  cfg.set("logger.console", caf::atom("none"));
  caf::actor_system sys{cfg};
  auto echo = sys.spawn([]() -> caf::behavior { return {[](int x) { return x; }}; });
  done_signal done;
  long total = ops_per_client;
  auto t0 = steady_clock::now();
  sys.spawn([&, echo](caf::event_based_actor* self) {
    auto completed = std::make_shared<long>(0);
    auto issued = std::make_shared<long>(0);
    auto issue = std::make_shared<std::function<void()>>();
    *issue = [=, &done] {
      if (*issued >= total)
        return;
      ++*issued;
      self->request(echo, caf::infinite, 1).then([=, &done](int) {
        if (++*completed == total) {
          done.finish();
          return;
        }
        (*issue)();
      });
    };
    for (int i = 0; i < in_flight; ++i)
      (*issue)();
  });
  done.wait(1);
  auto secs = bench::seconds_since(t0);
  caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
  return static_cast<double>(total) / secs;
}

} // namespace

BULWARK_BENCH(cache_shards) {
  std::printf("store alone, one thread (no actors):      %10.0f ops/s\n", run_store());
  std::printf("raw CAF request/response, 1 client x %d:  %10.0f req/s\n", in_flight, run_raw_caf());
  for (auto policy : {"stealing", "sharing"})
    for (uint32_t n : {1u, 2u, 4u})
      std::printf("cache actors (%s), %u shard(s), %d clients x %d in flight: %10.0f ops/s\n",
                  policy, n, clients, in_flight, run_shards(n, policy));
}
