#include "runtime/engine.hpp"

#include "actors/detail/host_port.hpp"
#include "actors/front_door.hpp"
#include "actors/log.hpp"
#include "messages/fwd.hpp"
#include "runtime/openssl_error_queue.hpp"
#include "runtime/outcome.hpp"
#include "runtime/remote_client.hpp"
#include "runtime/tls_files.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/publish.hpp>

#include <stdexcept>
#include <thread>

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(bulwark::bridge_job)

namespace bulwark {

namespace {

/// Lives outside the tree for the engine's whole life, so it must not die of one job: a job
/// that throws is logged and dropped (callers guard their own response handlers, which run
/// later, outside this try; runtime/http_api.cpp answers those with 500).
caf::behavior bridge_executor(caf::event_based_actor* self) {
  return {
      [=](bridge_job& job) {
        try {
          job(self);
        } catch (const std::exception& e) {
          log_error("engine", std::string("bridge job failed: ") + e.what());
        } catch (...) {
          log_error("engine", "bridge job failed with an unknown exception");
        }
      },
  };
}

} // namespace

engine_metrics::engine_metrics(prometheus::Registry& reg)
    : supervisor(reg), monitor(reg), cleanup(reg), pool(reg), breaker(reg, "backend"),
      database(reg), cache(reg), rate_limiter(reg), gateway(reg), performance(reg), registry(&reg),
      requests(
          &prometheus::BuildCounter()
               .Name("bulwark_requests_total")
               .Help("Query requests by their one outcome: served, served_truncated, "
                     "served_cached, rejected_rate_limited, rejected_shed, "
                     "rejected_queue_full, rejected_circuit_open, rejected_unavailable, "
                     "rejected_contention, failed_backend, timed_out, bad_request, "
                     "unknown_statement, conflict, invalid_data, internal_error, rejected_memory")
               .Register(reg)),
      by_outcome(requests, "outcome",
                 [](size_t i) { return std::string{to_string(static_cast<query_outcome>(i))}; }),
      received(&prometheus::BuildCounter()
                    .Name("bulwark_requests_received_total")
                    .Help("Query requests received (HTTP, facade, remote); equals the sum of "
                          "bulwark_requests_total plus bulwark_requests_in_flight at every scrape")
                    .Register(reg)
                    .Add({})),
      in_flight(&prometheus::BuildGauge()
                     .Name("bulwark_requests_in_flight")
                     .Help("Query requests received and not yet answered")
                     .Register(reg)
                     .Add({})) {}

void engine_metrics::request_received() {
  std::lock_guard<std::mutex> guard{books};
  received->Increment();
  in_flight->Increment();
}

void engine_metrics::request_answered(query_outcome o) {
  auto& counter = by_outcome.at(static_cast<size_t>(o));
  std::lock_guard<std::mutex> guard{books};
  counter.Increment();
  in_flight->Decrement();
}

std::vector<child_spec>
root_children(const engine_config& cfg, detail::memory_source source,
              connection_spawner connections, std::shared_ptr<component_directory> dir,
              engine_metrics* metrics, std::shared_ptr<detail::memory_account> account,
              std::shared_ptr<const detail::statement_catalog> catalog, connection_spawner lane) {
  if (!catalog)
    catalog = std::make_shared<const detail::statement_catalog>(cfg.database.statements);
  // What each component keeps across its restarts lives here, owned by its child spec.
  auto monitor_memory = std::make_shared<memory_pressure_monitor_memory>();
  auto cleanup_memory = std::make_shared<cleanup_manager_memory>();
  std::vector<child_spec> out;
  out.push_back(
      child_spec{"memory_pressure_monitor",
                 [=](caf::actor_system& sys) {
                   return caf::actor_cast<caf::actor>(spawn_memory_pressure_monitor(
                       sys, cfg.memory, source, &metrics->monitor, monitor_memory, account, dir));
                 },
                 restart_policy::permanent});
  out.push_back(child_spec{"cleanup_manager",
                           [=](caf::actor_system& sys) {
                             return caf::actor_cast<caf::actor>(spawn_cleanup_manager(
                                 sys, cfg.cleanup, dir, &metrics->cleanup, cleanup_memory));
                           },
                           restart_policy::permanent});
  if (cfg.performance.enabled) {
    auto perf_memory = std::make_shared<performance_monitor_memory>(cfg.performance);
    performance_monitor_inputs in;
    in.cores = detail::available_cores();
    in.registry = metrics->registry;
    in.pressure_ratio = metrics->monitor.ratio;
    in.requests = metrics->gateway.served;
    in.other_requests = {metrics->gateway.rejected, metrics->gateway.failed};
    in.backend = metrics->database.duration;
    // The error rate reads the outcomes' own counter (one snapshot: failed <= answered).
    in.requests_tally = [metrics] {
      request_tally t;
      for (auto& family : metrics->requests->Collect())
        for (auto& m : family.metric) {
          auto n = static_cast<uint64_t>(m.counter.value);
          t.answered += n;
          for (auto& label : m.label)
            if (label.name == "outcome" && is_failure(label.value))
              t.failed += n;
        }
      return t;
    };
    in.cache_hits = metrics->cache.hits;
    in.cache_misses = metrics->cache.misses;
    out.push_back(child_spec{"performance_monitor",
                             [=](caf::actor_system& sys) {
                               return caf::actor_cast<caf::actor>(
                                   spawn_performance_monitor(sys, cfg.performance, in, dir,
                                                             &metrics->performance, perf_memory));
                             },
                             restart_policy::permanent});
  }
  // rest_for_one: a restarted pool restarts the breaker and the database after it, so nothing
  // keeps judging or querying a pool that is gone.
  std::vector<child_spec> backend;
  backend.push_back(child_spec{"connection_pool",
                               [=](caf::actor_system& sys) {
                                 return caf::actor_cast<caf::actor>(spawn_connection_pool(
                                     sys, cfg.pool, connections, dir, &metrics->pool, {}, lane));
                               },
                               restart_policy::permanent});
  auto breaker_memory = std::make_shared<circuit_breaker_memory>();
  backend.push_back(child_spec{"circuit_breaker",
                               [=](caf::actor_system& sys) {
                                 return caf::actor_cast<caf::actor>(spawn_circuit_breaker(
                                     sys, cfg.breaker, dir, &metrics->breaker, breaker_memory));
                               },
                               restart_policy::permanent});
  auto database_cfg = cfg.database;
  database_cfg.batch_width = static_cast<uint32_t>(cfg.pool.max_connections);
  backend.push_back(child_spec{"database",
                               [=](caf::actor_system& sys) {
                                 return caf::actor_cast<caf::actor>(
                                     spawn_database(sys, database_cfg, catalog, cfg.backend.kind,
                                                    dir, &metrics->database));
                               },
                               restart_policy::permanent});
  auto backend_cfg = cfg.supervisor;
  backend_cfg.strategy = supervision_strategy::rest_for_one;
  out.push_back(
      supervisor_child("backend", backend_cfg, std::move(backend), dir, &metrics->supervisor));
  // The pipeline in front of the backend: each part restarts alone (a cache shard restarts
  // empty, a limiter shard with fresh buckets; the gateway looks both up per request). One
  // limiter shard per gateway shard, each with its share of the key table and overflow bucket.
  auto gateways = std::max<uint32_t>(cfg.gateway.shards, 1);
  std::vector<child_spec> pipeline;
  auto limiter_cfg = shard_share(cfg.rate_limiter, gateways);
  for (uint32_t i = 0; i < gateways; ++i)
    pipeline.push_back(child_spec{rate_limiter_shard_name(i),
                                  [=](caf::actor_system& sys) {
                                    return caf::actor_cast<caf::actor>(spawn_rate_limiter(
                                        sys, limiter_cfg, i, dir, &metrics->rate_limiter, account));
                                  },
                                  restart_policy::permanent});
  for (uint32_t i = 0; i < cfg.cache.shards; ++i)
    pipeline.push_back(child_spec{cache_shard_name(i),
                                  [=](caf::actor_system& sys) {
                                    return caf::actor_cast<caf::actor>(spawn_cache_shard(
                                        sys, cfg.cache, i, dir, &metrics->cache, account));
                                  },
                                  restart_policy::permanent});
  // gateway.memory_wait_max bounds the node's waiting queries: each shard holds its share.
  auto shard_cfg = cfg.gateway;
  shard_cfg.memory_wait_max = (cfg.gateway.memory_wait_max + gateways - 1) / gateways;
  for (uint32_t i = 0; i < gateways; ++i)
    pipeline.push_back(child_spec{gateway_shard_name(i),
                                  [=](caf::actor_system& sys) {
                                    return caf::actor_cast<caf::actor>(
                                        spawn_gateway(sys, shard_cfg, cfg.cache.shards, catalog,
                                                      cfg.database.default_timeout, dir,
                                                      &metrics->gateway, account));
                                  },
                                  restart_policy::permanent});
  out.push_back(
      supervisor_child("pipeline", cfg.supervisor, std::move(pipeline), dir, &metrics->supervisor));
  return out;
}

std::shared_ptr<detail::memory_account>
make_memory_account(const memory_pressure_monitor_config& m) {
  detail::memory_account_options o;
  o.budget_bytes = m.budget_bytes;
  o.ceilings = {m.thresholds.medium, m.thresholds.high, 1.0};
  o.admission = m.admission;
  return std::make_shared<detail::memory_account>(o);
}

engine::engine(engine_config cfg, engine_options opts)
    : cfg_(std::move(cfg)), registry_(std::make_shared<prometheus::Registry>()),
      dir_(std::make_shared<component_directory>()) {
  detail::memory_source source;
  if (opts.memory_source) {
    source = std::move(*opts.memory_source);
  } else {
    std::string err;
    if (!detail::select_memory_source(cfg_.memory.source, cfg_.memory.file,
                                      cfg_.memory.budget_bytes, source, err))
      throw std::runtime_error("memory.source: " + err);
  }
  log_info("engine", "memory source: " + source.name + "; backend: " + cfg_.backend.kind);
  metrics_ = std::make_unique<engine_metrics>(*registry_);
  account_ = make_memory_account(cfg_.memory);
  try {
    catalog_ = std::make_shared<const detail::statement_catalog>(cfg_.database.statements);
  } catch (const std::invalid_argument& e) {
    // Embedders hand engine_config over without the config file's validation.
    throw std::runtime_error(e.what());
  }
  auto factory = make_connection_factory(cfg_.backend, cfg_.node.data_dir);
  auto connections = opts.connections ? std::move(*opts.connections) : backend_spawner(factory);
  // The scheduler lane: SQLite on a file only (an in-memory database is one per connection).
  connection_spawner lane;
  if (!opts.connections && cfg_.backend.kind == "sqlite" && cfg_.pool.lane_slice.count() > 0 &&
      cfg_.backend.sqlite_path != ":memory:")
    lane = lane_spawner(factory, cfg_.pool.lane_slice);
  system_cfg_ = std::make_unique<caf::actor_system_config>();
  register_types(*system_cfg_);
  auto threads = cfg_.scheduler.threads != 0
                     ? cfg_.scheduler.threads
                     : std::max<size_t>(1, std::thread::hardware_concurrency());
  system_cfg_->set("scheduler.max-threads", threads);
  if (cfg_.gateway.shards == 0)
    cfg_.gateway.shards = static_cast<uint32_t>(threads);
  system_cfg_->set("scheduler.policy", caf::atom_from_string(cfg_.scheduler.policy));
  auto& w = cfg_.scheduler.stealing;
  system_cfg_->set("work-stealing.aggressive-poll-attempts", w.aggressive_poll_attempts);
  system_cfg_->set("work-stealing.moderate-poll-attempts", w.moderate_poll_attempts);
  system_cfg_->set("work-stealing.moderate-sleep-duration",
                   caf::timespan{std::chrono::microseconds(w.moderate_sleep_us)});
  system_cfg_->set("work-stealing.relaxed-sleep-duration",
                   caf::timespan{std::chrono::milliseconds(w.relaxed_sleep_ms)});
  system_cfg_->set("logger.console", caf::atom("none"));
  if (!cfg_.remote.listen.empty()) {
    if (!cfg_.remote.plain) {
      check_remote_tls();
      if (!openssl_error_queue_fixed())
        throw std::runtime_error(
            "remote.tls: another SSL_read than Bulwark's is bound in this process; CAF's OpenSSL "
            "module would let one failed handshake cut every peer off "
            "(runtime/openssl_error_queue.hpp)");
    }
    configure_remote(*system_cfg_, cfg_.remote); // registers the types again: harmless
  }
  system_ = std::make_unique<caf::actor_system>(*system_cfg_);
  executor_ = system_->spawn(bridge_executor);
  // Outside the tree and never restarted: if it ever goes, readiness says so.
  executor_->attach_functor([this](const caf::error& reason) {
    std::lock_guard<std::mutex> guard{mtx_};
    executor_down_reason_ = describe(reason);
    executor_down_ = true;
  });
  auto children = root_children(cfg_, std::move(source), std::move(connections), dir_,
                                metrics_.get(), account_, catalog_, std::move(lane));
  if (opts.application) {
    auto app = opts.application(dir_);
    if (!app.empty())
      children.push_back(supervisor_child("application", cfg_.supervisor, std::move(app), dir_,
                                          &metrics_->supervisor));
  }
  root_ = spawn_supervisor(*system_, "root", cfg_.supervisor, std::move(children), dir_,
                           &metrics_->supervisor);
  root_->attach_functor([this](const caf::error& reason) { on_root_down(reason); });
  // The one entry for queries (HTTP, facade, remote), outside the tree: each ends in one
  // counted outcome.
  auto* m = metrics_.get();
  remote_gate_ = std::make_shared<remote_gate>(cfg_.remote.max_pending);
  // One per gateway shard, as the HTTP threads and the facade spread their calls over them.
  auto shards = std::max<uint32_t>(cfg_.gateway.shards, 1);
  for (uint32_t i = 0; i < shards; ++i) {
    front_doors_.push_back(
        spawn_front_door(*system_, dir_, cfg_.database.default_timeout,
                         front_door_accounting{[m] { m->request_received(); },
                                               [m](const db_result* r, const caf::error* e) {
                                                 m->request_answered(r ? classify(*r).outcome
                                                                       : classify(*e).outcome);
                                               }},
                         front_door_remote{remote_gate_, account_, cfg_.remote.trust_client},
                         front_door_route{i, shards}));
    front_doors_.back()->attach_functor([this](const caf::error& reason) {
      std::lock_guard<std::mutex> guard{mtx_};
      front_door_down_reason_ = describe(reason);
      front_door_down_ = true;
    });
  }
  if (!dir_->wait_all_running(std::chrono::seconds(10))) {
    std::string why;
    for (auto& r : dir_->not_ready_reasons())
      why += "; " + r;
    fail_start("the supervision tree did not come up within 10 s" + why);
  }
  log_info("engine", "supervision tree started");
  if (!cfg_.remote.listen.empty())
    publish_remote();
}

void engine::publish_remote() {
  // Embedders hand engine_config over without the config file's validation: check again.
  auto& listen = cfg_.remote.listen;
  std::string why;
  auto address = detail::parse_host_port(listen, &why);
  if (!address)
    fail_start("remote.listen: expected \"host:port\" with a port 0..65535, got \"" + listen +
               "\" (" + why + ")");
  auto host = address->host;
  auto port = address->port;
  if (cfg_.remote.plain && !detail::is_loopback_host(host))
    fail_start("remote.plain: plain BASP is only served on loopback; remote.listen is \"" + listen +
               "\" (use remote.tls)");
  auto published = cfg_.remote.plain
                       ? system_->middleman().publish(front_door(), port, host.c_str(), true)
                       : caf::openssl::publish(front_door(), port, host.c_str(), true);
  if (!published) {
    fail_start("remote.listen: cannot publish the gateway on " + listen + ": " +
               system_->render(published.error()));
  }
  remote_port_ = *published;
  log_info("engine", "gateway published to remote nodes on " + host + " port " +
                         std::to_string(remote_port_) +
                         (cfg_.remote.plain ? " (plain BASP, loopback only)" : " (mutual TLS)"));
}

void engine::begin_drain() {
  if (remote_gate_)
    remote_gate_->drain();
}

bool engine::wait_remote_drained(std::chrono::milliseconds timeout) {
  return !remote_gate_ || remote_gate_->wait_idle(timeout);
}

size_t engine::remote_pending() const {
  return remote_gate_ ? remote_gate_->pending() : 0;
}

void engine::check_remote_tls() {
  // Embedders hand engine_config over without the config file's validation: check again, before
  // anything starts (CAF would only fail each handshake).
  auto& t = cfg_.remote.tls;
  std::string why;
  for (auto& [key, problem] : check_tls_files(t.certificate, t.key, t.ca))
    why += (why.empty() ? "" : "; ") + key + ": " + problem;
  if (!why.empty())
    throw std::runtime_error(why);
}

void engine::fail_start(const std::string& why) {
  // No destructor runs for a constructor that throws, and the members go in reverse order: the
  // condition variable the root's exit functor signals would go before the actor system. So stop
  // the tree and wait for every actor here, then throw.
  shut_down();
  throw std::runtime_error(why);
}

namespace {
const front_door_actor no_front_door;
} // namespace

const front_door_actor& engine::front_door() const {
  return front_doors_.empty() ? no_front_door : front_doors_.front();
}

const front_door_actor& engine::front_door_for_call() const {
  if (front_doors_.empty())
    return no_front_door;
  return front_doors_[next_front_door_.fetch_add(1, std::memory_order_relaxed) %
                      front_doors_.size()];
}

engine::~engine() {
  shut_down();
}

void engine::shut_down() {
  stop();
  for (auto& f : front_doors_)
    if (f)
      caf::anon_send_exit(f, caf::exit_reason::kill);
  caf::anon_send_exit(executor_, caf::exit_reason::user_shutdown);
  for (auto& f : front_doors_)
    f = nullptr;
  executor_ = nullptr;
  root_ = nullptr;
  // Waits for every actor, the root's exit functor included; must run on the constructing
  // thread (CAF 0.17 hangs otherwise).
  system_.reset();
}

void engine::post(bridge_job job) {
  caf::anon_send(executor_, std::move(job));
}

std::vector<std::string> engine::not_ready_reasons() const {
  std::vector<std::string> out;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_)
      out.emplace_back("engine is shutting down");
    if (root_down_)
      out.push_back("root supervisor is down: " + root_down_reason_);
    if (executor_down_ && !stopping_)
      out.push_back("the HTTP bridge is down: " + executor_down_reason_);
    if (front_door_down_ && !stopping_)
      out.push_back("the front door is down: " + front_door_down_reason_);
  }
  auto more = dir_->not_ready_reasons();
  out.insert(out.end(), more.begin(), more.end());
  return out;
}

bool engine::stopping() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return stopping_;
}

bool engine::root_down() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return root_down_;
}

std::string engine::root_down_reason() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return root_down_reason_;
}

bool engine::wait_root_down(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard{mtx_};
  return root_cv_.wait_for(guard, timeout, [this] { return root_down_; });
}

void engine::on_root_down(const caf::error& reason) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    root_down_ = true;
    root_down_reason_ = describe(reason);
    if (!stopping_)
      log_error("engine", "root supervisor went down: " + root_down_reason_);
    // Under the lock: a waiter cannot return (and, say, destroy the engine) mid-notify.
    root_cv_.notify_all();
  }
}

void engine::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_)
      return;
    stopping_ = true;
  }
  // Requests still pending at the front door are answered (shutting_down) before the tree goes,
  // and later ones are refused there at once.
  for (auto& f : front_doors_)
    if (f)
      caf::anon_send_exit(f, caf::exit_reason::user_shutdown);
  log_info("engine", "stopping the supervision tree");
  caf::anon_send_exit(root_, caf::exit_reason::user_shutdown);
  if (!wait_root_down(std::chrono::seconds(10)))
    log_error("engine", "supervision tree did not stop within 10 s");
}

caf::timespan engine::clock_now() const {
  return system_->clock().now().time_since_epoch();
}

} // namespace bulwark
