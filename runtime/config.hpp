#pragma once
/// Bulwark's configuration: JSON to typed structs. This file (with config.cpp) is the only place
/// that knows the JSON; the structs are the actors' own `<component>_config`. Validation reports
/// every problem at once, each with its JSON path (`memory.thresholds.high`,
/// `http.listen`) and what was wrong; unknown keys are errors, so a typo is never ignored.
/// config/default.json carries every key with its default, except the two that are empty by
/// default and hold the demo there (see `engine_config`).

#include "actors/cache.hpp"
#include "actors/circuit_breaker.hpp"
#include "actors/cleanup_manager.hpp"
#include "actors/connection.hpp"
#include "actors/connection_pool.hpp"
#include "actors/database.hpp"
#include "actors/gateway.hpp"
#include "actors/memory_pressure_monitor.hpp"
#include "actors/performance_monitor.hpp"
#include "actors/rate_limiter.hpp"
#include "actors/supervisor.hpp"
#include "runtime/http_server.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace bulwark {

struct node_config {
  /// node.name: shown in /v1/status and logs.
  std::string name = "bulwark";
  /// node.data_dir: where the node keeps its files (created at start when missing).
  std::string data_dir = "data";
};

struct admin_config {
  /// admin.listen: "host:port" of the admin listener (the /admin/ routes, which change the node's
  /// state, and the probes and status routes; runtime/http_api.hpp); "" serves no admin routes.
  /// Loopback by default: expose it deliberately, never on the public port.
  std::string listen = "127.0.0.1:8081";
  /// admin.token_file: a file holding a bearer token the admin listener then requires of every
  /// request ("Authorization: Bearer <token>"); "" (the default): none, loopback is the guard.
  std::string token_file;
  /// admin.fault_injection: enables POST /admin/v1/crash/{component}. Off in production.
  bool fault_injection = false;
};

struct shutdown_config {
  /// shutdown.drain_ms: how long in-flight requests may take to finish after SIGTERM.
  std::chrono::milliseconds drain{5000};
};

struct scheduler_config {
  /// scheduler.threads: CAF worker threads; 0 means one per core.
  size_t threads = 0;
  /// scheduler.policy: "stealing" (CAF's default) or "sharing" (lower latency from outside
  /// threads, see ../shared/CAF-0.17.md section 6).
  std::string policy = "stealing";
  /// scheduler.stealing.*: how an idle worker of the "stealing" policy waits for work (CAF's
  /// work-stealing.* settings; CAF-0.17.md section 6). It polls its queue
  /// `aggressive_poll_attempts` times back to back, then `moderate_poll_attempts` times with
  /// `moderate_sleep_us` between polls, then sleeps on a condition variable that a new message
  /// wakes (waking by itself every `relaxed_sleep_ms`). A message from outside the scheduler (an
  /// HTTP thread, the facade) that finds its worker in the moderate phase waits out a sleep
  /// (about 100 us with the sleep's timer slack), and the phase's wake-ups burn CPU while idle.
  /// Shipped: no moderate phase (CAF's default is 500): the point query's p50 through the engine
  /// 145 -> 75 us, a 1 ms query's overhead 24 -> 11 %, an idle node's CPU 5x lower, the HTTP
  /// capacity unchanged (bench/RESULTS.md, "Scheduler: the stealing policy's moderate phase").
  /// `aggressive_poll_attempts` ships at 1 000 (about 7 us of polling; CAF's 100 is under 1 us):
  /// a worker that has just answered a caller outside the scheduler is then still polling when
  /// that caller's next call comes, instead of asleep and woken (a futex, and on a VM an idle
  /// vCPU's exit). With the facade's call() the point query's p50 goes from ~35 to ~24 us; CPU per
  /// HTTP request under a light load and an idle node's CPU stay within noise (bench/RESULTS.md,
  /// "The facade's own wait"). 10 000 (~70 us) also spans a call's trip to a connection's own
  /// thread and back, at 25 % more CPU per request under a light load ("The cost of mediation").
  struct stealing {
    size_t aggressive_poll_attempts = 1000;
    size_t moderate_poll_attempts = 0;
    size_t moderate_sleep_us = 50;
    size_t relaxed_sleep_ms = 10;
  } stealing;
};

struct remote_config {
  /// remote.listen: "host:port" where the node publishes its gateway to other nodes over CAF's
  /// network layer (port 0 picks one, logged); empty (the default) publishes nothing.
  std::string listen;
  /// remote.tls.*: mutual TLS (CAF's OpenSSL module): this node's certificate chain and private
  /// key (PEM) and the CA (PEM) a peer's certificate must be signed by. Required when `listen` is
  /// set, unless `plain`.
  struct tls_config {
    std::string certificate;
    std::string key;
    std::string ca;
  } tls;
  /// remote.plain: plain BASP (no authentication, no encryption) instead of TLS; only with a
  /// loopback `listen` address.
  bool plain = false;
  /// remote.heartbeat_interval_ms / remote.peer_timeout_ms: CAF's middleman heartbeat, and how
  /// long a peer may send nothing before it is declared gone (its connection closed, its
  /// proxies down).
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds peer_timeout{5000};
  /// remote.max_pending: remote requests the front door holds at once (then queue_full).
  uint32_t max_pending = 1024;
  /// remote.trust_client: take the `client` a remote caller names as its rate-limiter key
  /// (actors/front_door.hpp, front_door_remote); false: limited as its node.
  bool trust_client = false;
};

struct log_config {
  /// log.level: "debug" | "info" | "warn" | "error".
  std::string level = "info";
};

struct engine_config {
  node_config node;
  http_config http;
  memory_pressure_monitor_config memory;
  cleanup_manager_config cleanup;
  /// supervisor.*: intensity and backoff of every supervisor in the tree.
  supervisor_config supervisor;
  admin_config admin;
  shutdown_config shutdown;
  scheduler_config scheduler;
  log_config log;
  remote_config remote;
  /// backend.*: kind, sqlite.{path, busy_timeout_ms}, postgres.{conninfo, connect_timeout_s},
  /// init_sql. `init_sql` is empty by default; config/default.json ships a demo (the users and
  /// events tables with their rows, idempotent, valid on SQLite and PostgreSQL).
  backend_config backend;
  /// pool.*: connections, timeouts, connect backoff, and the wait queue's max_waiters and shed
  /// fractions (its retry-after bounds are fixed defaults).
  connection_pool_config pool;
  /// breaker.*: the core's rules (checked by detail::validate; durations as *_ms keys) and
  /// call_timeout_ms.
  circuit_breaker_config breaker;
  /// database.{max_rows, max_bytes, floor_rows, floor_bytes, default_timeout_ms}; the pressure and
  /// complexity factors of the limit are fixed defaults. `database.statements` is the top-level
  /// `statements` key: name ([A-Za-z0-9_]+) -> {sql, params, read_only, cache_ttl_ms}, where params
  /// must match the highest $N placeholder of the SQL. Empty by default; config/default.json ships
  /// a demo (user_by_id, events_by_user, event_totals, add_event) that runs on both backends.
  database_config database;
  /// cache.*: shards, max_entries, max_bytes, max_entry_bytes, default_ttl_ms, tick_ms,
  /// restore_step (totals over all shards).
  cache_config cache;
  /// rate_limiter.*: the key table's rules (checked by detail::validate; window as window_ms)
  /// and expire_interval_ms.
  rate_limiter_config rate_limiter;
  /// gateway.*: shed_retry_after_ms, component_timeout_ms, memory_wait_max.
  gateway_config gateway;
  /// performance.*: enabled, interval_ms, adjust_interval_ms, min_sampling_ratio, high_load,
  /// low_load, lag_reference_ms, history_max_age_ms, history_max_bytes, outlier_sigma. Its
  /// `alerts` are the top-level `alerts` key: a list of {name, metric, op, threshold,
  /// for_seconds, clear_threshold (default: threshold), severity}; default_alert_rules() by default
  /// (eight).
  performance_monitor_config performance;
};

struct config_error {
  std::string path;    ///< JSON path of the offending key, "" for the document itself
  std::string message; ///< what was wrong, e.g. "expected a number between 0 and 1, got \"x\""
};

struct config_result {
  engine_config config;
  std::vector<config_error> errors;
  bool ok() const { return errors.empty(); }
};

/// Parses and validates a JSON document. Missing keys keep their defaults.
config_result parse_config(const std::string& json_text);

/// Reads and parses a file; an unreadable file is one error with an empty path.
config_result load_config_file(const std::string& path);

/// One line per error: "<path>: <message>".
std::string format_errors(const std::vector<config_error>& errors);

/// The default configuration as JSON text (what config/default.json holds).
std::string default_config_json();

/// The reference of every key as Markdown tables (type and range, default, meaning), from the
/// same description that reads and writes the JSON: docs/configuration.md holds it between its
/// "generated" markers (`bulwarkd --print-config-reference`; a test fails when it is stale).
std::string config_reference_markdown();

} // namespace bulwark
