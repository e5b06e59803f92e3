// Remote nodes: cached reads sent to a node's published gateway from another CAF actor system
// over BASP on loopback, against the same reads through the embedded facade in the same run.
// Sequential round trips give the latency (p50/p95/p99); 64 in flight give the throughput.

#include "bench/bench.hpp"
#include "bench/items.hpp"
#include "runtime/facade.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include <filesystem>
#include <future>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

constexpr int keys = 1000;

gateway_request item(int i) {
  gateway_request r;
  r.query.statement = "item";
  r.query.params = {db_value::of(int64_t{1 + i % keys})};
  return r;
}

void report(const char* what, std::vector<double>& us, double secs) {
  std::printf("  %-40s %6d calls: p50 %6.1f us, p95 %6.1f us, p99 %6.1f us, %8.0f calls/s\n", what,
              static_cast<int>(us.size()), bench::percentile(us, 0.5), bench::percentile(us, 0.95),
              bench::percentile(us, 0.99), static_cast<double>(us.size()) / secs);
}

/// `n` calls with `in_flight` outstanding from one event-based actor; calls per second.
double remote_in_flight(caf::actor_system& sys, const remote_gateway_actor& gw, int n,
                        int in_flight) {
  std::promise<double> done;
  auto fut = done.get_future();
  sys.spawn([&, gw](caf::event_based_actor* self) {
    auto t0 =
        std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
    auto sent = std::make_shared<int>(0);
    auto answered = std::make_shared<int>(0);
    auto next = std::make_shared<std::function<void()>>();
    *next = [=, &done] {
      auto i = (*sent)++;
      self->request(gw, 10s, item(i)).then([=, &done](db_result&) {
        if (++*answered == n) {
          done.set_value(n / bench::seconds_since(*t0));
          return;
        }
        if (*sent < n)
          (*next)();
      });
    };
    for (int i = 0; i < in_flight; ++i)
      (*next)();
  });
  return fut.get();
}

} // namespace

BULWARK_BENCH(remote_gateway) {
  auto dir = std::filesystem::temp_directory_path() / "bulwark-remote-bench";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto cfg = bench::cached_items_engine(dir, keys);
  cfg.remote.listen = "127.0.0.1:0";
  cfg.remote.plain = true; // the baseline is plain BASP too
  {
    embedded node{cfg};
    for (int i = 0; i < keys; ++i)
      node.query("item", {1 + i}).get(); // every key cached
    caf::actor_system_config ccfg;
    register_types(ccfg);
    ccfg.load<caf::io::middleman>();
    ccfg.set("scheduler.max-threads", 1);
    ccfg.set("logger.console", caf::atom("none"));
    caf::actor_system client{ccfg};
    auto gw = client.middleman().remote_actor<remote_gateway_actor>("127.0.0.1",
                                                                    node.engine().remote_port());
    if (!gw) {
      std::printf("remote_actor failed: %s\n", client.render(gw.error()).c_str());
      return;
    }
    std::printf("remote_gateway: cached reads, one node (2 scheduler threads) and one client "
                "system (1 thread) in one process, BASP over loopback\n");
    constexpr int n = 20000;
    {
      std::vector<double> us;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i) {
        auto t = std::chrono::steady_clock::now();
        node.query("item", {1 + i % keys}).get();
        us.push_back(1e6 * bench::seconds_since(t));
      }
      report("facade, one at a time (baseline)", us, bench::seconds_since(t0));
    }
    {
      caf::scoped_actor self{client};
      std::vector<double> us;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i) {
        auto t = std::chrono::steady_clock::now();
        self->request(*gw, 10s, item(i)).receive([](db_result&) {}, [](caf::error&) {});
        us.push_back(1e6 * bench::seconds_since(t));
      }
      report("remote node, one at a time", us, bench::seconds_since(t0));
    }
    std::printf("  %-40s %6d calls: %8.0f calls/s\n", "remote node, 64 in flight", 100000,
                remote_in_flight(client, *gw, 100000, 64));
  }
  std::filesystem::remove_all(dir);
}
