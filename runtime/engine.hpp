#pragma once
/// The engine: one actor system, one metrics registry, one component directory and the
/// supervision tree of DESIGN.md. Embedded applications and bulwarkd both start one.
///
///   root (one_for_one)
///   ├── memory_pressure_monitor
///   ├── cleanup_manager ── task timers
///   ├── performance_monitor (unless performance.enabled is false)
///   ├── backend (rest_for_one)
///   │   ├── connection_pool ── connection actors (detached)
///   │   ├── circuit_breaker
///   │   └── database
///   └── pipeline (one_for_one)
///       ├── rate_limiter
///       ├── cache/0 .. cache/N-1
///       └── gateway
///
/// Construct and destroy the engine on the same thread (CAF 0.17 hangs otherwise).

#include "actors/circuit_breaker.hpp"
#include "actors/cleanup_manager.hpp"
#include "actors/connection_pool.hpp"
#include "actors/database.hpp"
#include "actors/directory.hpp"
#include "actors/front_door.hpp"
#include "actors/memory_pressure_monitor.hpp"
#include "actors/metric_children.hpp"
#include "actors/performance_monitor.hpp"
#include "actors/supervisor.hpp"
#include "runtime/config.hpp"
#include "runtime/outcome.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace bulwark {

/// A closure run inside an event-based executor actor: the bridge from non-actor threads (HTTP)
/// into actors. It may `request(...).then(...)` and answer its caller from the response handler;
/// event-based actors drop stale responses, so timeouts do not leak (CAF-0.17.md section 6).
using bridge_job = std::function<void(caf::event_based_actor*)>;

struct engine_options {
  /// Replaces the memory source chosen from the config (tests, embedders with their own reading).
  std::optional<detail::memory_source> memory_source;
  /// Replaces the backend connections (fault-injection tests).
  std::optional<connection_spawner> connections;
  /// The application's own actors, supervised with the engine's: started last under the root, as
  /// the children of a one_for_one supervisor named `application` (restart intensity and backoff
  /// from `supervisor.*`), and stopped first. Each is published in the directory under its name
  /// while it runs, so `/readyz` and `/v1/status` include it, and a restart gets a fresh handle
  /// there. Called once, with that directory, so a child can look components up and subscribe
  /// to the pressure signal (actors/pressure_subscription.hpp) the way the built-in ones do.
  std::function<std::vector<child_spec>(std::shared_ptr<component_directory>)> application;
};

/// Every component's metrics, built once per engine so they outlive restarts.
struct engine_metrics {
  explicit engine_metrics(prometheus::Registry& reg);
  supervisor_metrics supervisor;
  memory_pressure_monitor_metrics monitor;
  cleanup_manager_metrics cleanup;
  connection_pool_metrics pool;
  circuit_breaker_metrics breaker;
  database_metrics database;
  cache_metrics cache;
  rate_limiter_metrics rate_limiter;
  gateway_metrics gateway;
  performance_monitor_metrics performance;
  /// The registry all of the above live in (the performance monitor's alert rules read it).
  prometheus::Registry* registry;
  /// bulwark_requests_total{outcome}: every query, from HTTP, the C++ facade or a remote node,
  /// ends in exactly one outcome (runtime/outcome.hpp).
  prometheus::Family<prometheus::Counter>* requests;
  indexed_children<prometheus::Counter, query_outcome_count> by_outcome; ///< requests' children
  /// bulwark_requests_received_total and bulwark_requests_in_flight: the books of queries.
  /// received == sum of bulwark_requests_total + in flight holds at every scrape: both updates
  /// and the scrape (`books` held while collecting) take the one mutex.
  prometheus::Counter* received;
  prometheus::Gauge* in_flight;
  mutable std::mutex books;

  /// A query arrived at a front door (HTTP, facade, remote); its answer must follow.
  void request_received();
  /// The query's one answer went out with outcome `o`.
  void request_answered(query_outcome o);
};

class engine {
public:
  /// Validates what the config alone cannot (the memory source), builds the actor system and
  /// boots the tree. Throws std::runtime_error with a clear message on failure.
  explicit engine(engine_config cfg, engine_options opts = {});
  ~engine(); ///< stop()s

  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  const engine_config& config() const { return cfg_; }
  caf::actor_system& system() { return *system_; }
  component_directory& directory() { return *dir_; }
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }
  engine_metrics& metrics() { return *metrics_; }
  /// The node's one memory budget (actors/detail/memory_account.hpp): the gateway admits
  /// queries from it, the HTTP server request bodies, and the monitor feeds it every sample.
  detail::memory_account& memory_account() { return *account_; }
  const std::shared_ptr<detail::memory_account>& memory_account_ptr() const { return account_; }
  /// The statements, built from the config once: what the HTTP API, the gateway and the
  /// database read (actors/detail/statement_catalog.hpp).
  const detail::statement_catalog& statements() const { return *catalog_; }

  /// Runs `job` in the bridge executor actor.
  void post(bridge_job job);

  /// Empty when ready: the tree is up, every component runs and nothing escalated.
  std::vector<std::string> not_ready_reasons() const;

  /// Set once the root supervisor is gone (escalation or stop); the engine cannot recover.
  bool root_down() const;
  std::string root_down_reason() const;

  /// Blocks until the root supervisor is gone or `timeout` passed; true when it is gone.
  bool wait_root_down(std::chrono::milliseconds timeout);

  /// Stops the tree in reverse start order and waits for it. Idempotent.
  void stop();

  /// Set by stop() (and the destructor): new work is answered shutting_down.
  bool stopping() const;

  /// Actor-clock time now, as carried in messages (`clock_point`).
  caf::timespan clock_now() const;

  /// The entry for queries (actors/front_door.hpp): the first of gateway.shards front doors, the
  /// one published to other nodes. Valid until the engine is destroyed.
  const front_door_actor& front_door() const;
  /// A front door for one call, taken in turn: the HTTP threads and the facade spread their
  /// calls over all of them (and so over the gateway shards) instead of passing one actor.
  const front_door_actor& front_door_for_call() const;

  /// The port the front door is published on (`remote.listen`); 0 when nothing is published.
  uint16_t remote_port() const { return remote_port_; }

  /// SIGTERM's first step for remote callers: from now on new remote requests are refused
  /// shutting_down, and those pending go on (wait_remote_drained waits for them), as the HTTP
  /// server drains its own.
  void begin_drain();
  /// Waits up to `timeout` until no remote request is pending; true when none is.
  bool wait_remote_drained(std::chrono::milliseconds timeout);
  /// Remote requests pending at the front door now.
  size_t remote_pending() const;

private:
  void on_root_down(const caf::error& reason);
  void publish_remote();
  /// remote.tls: the files are there, readable and belong together; throws naming the key.
  void check_remote_tls();
  /// Stops the tree and the actors outside it, then waits for every actor (destructor, and
  /// constructor failures before they throw).
  void shut_down();
  /// shut_down(), then throws `why` (constructor failures).
  [[noreturn]] void fail_start(const std::string& why);

  engine_config cfg_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<component_directory> dir_;
  std::unique_ptr<engine_metrics> metrics_;
  std::shared_ptr<detail::memory_account> account_;
  std::shared_ptr<const detail::statement_catalog> catalog_;
  std::unique_ptr<caf::actor_system_config> system_cfg_;
  std::unique_ptr<caf::actor_system> system_;
  caf::actor root_;
  caf::actor executor_;
  std::vector<front_door_actor> front_doors_;
  mutable std::atomic<size_t> next_front_door_{0};
  std::shared_ptr<remote_gate> remote_gate_;
  uint16_t remote_port_ = 0;
  mutable std::mutex mtx_;
  std::condition_variable root_cv_;
  bool root_down_ = false;
  bool stopping_ = false;
  std::string root_down_reason_;
  bool executor_down_ = false;
  std::string executor_down_reason_;
  bool front_door_down_ = false;
  std::string front_door_down_reason_;
};

/// The supervision tree's child specs, in start order (exposed for tests and embedders).
std::vector<child_spec>
root_children(const engine_config& cfg, detail::memory_source source,
              connection_spawner connections, std::shared_ptr<component_directory> dir,
              engine_metrics* metrics, std::shared_ptr<detail::memory_account> account = nullptr,
              std::shared_ptr<const detail::statement_catalog> catalog = nullptr,
              connection_spawner lane = {});

/// The node's memory account for `memory`: its budget and admission; low-priority work may fill
/// the budget up to the `medium` threshold, normal work up to `high`, high-priority work all of
/// it (and at critical pressure only high-priority work is admitted).
std::shared_ptr<detail::memory_account>
make_memory_account(const memory_pressure_monitor_config& m);

} // namespace bulwark
