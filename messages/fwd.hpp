#pragma once
/// The typed handles of every Bulwark actor: what another actor needs to talk to one. Each
/// actor's header documents its protocol table; these aliases are the compile-checked form.

#include "messages/type_ids.hpp"

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <string>
#include <vector>

namespace bulwark {

/// Anything that wants pressure events. Component handles with a larger interface convert to it.
using pressure_subscriber_actor = caf::typed_actor<caf::reacts_to<pressure_changed>>;

using memory_pressure_monitor_actor = caf::typed_actor<
    // Subscribe; the subscriber gets the current level at once and every change after.
    caf::reacts_to<caf::subscribe_atom, pressure_subscriber_actor>,
    caf::reacts_to<caf::unsubscribe_atom, pressure_subscriber_actor>,
    // A subscriber reports what it did about a change.
    caf::reacts_to<pressure_action>, caf::replies_to<caf::get_atom>::with<pressure_status>,
    // Sample now.
    caf::reacts_to<sample_atom>,
    // The private sampling timer (re-arms itself).
    caf::reacts_to<caf::tick_atom>,
    // Give freed heap back to the OS (malloc_trim); a cleanup task, urgent on a rise.
    caf::replies_to<trim_atom>::with<caf::ok_atom>>;

using cleanup_manager_actor =
    caf::typed_actor<caf::replies_to<cleanup_task>::with<caf::ok_atom>,
                     caf::replies_to<caf::delete_atom, std::string>::with<bool>,
                     caf::replies_to<caf::get_atom>::with<std::vector<cleanup_task_status>>,
                     caf::replies_to<run_atom, std::string>::with<caf::ok_atom>,
                     caf::reacts_to<task_run_report>, caf::reacts_to<pressure_changed>,
                     // The private health-check timer: stale and hung detection.
                     caf::reacts_to<health_atom>>;

/// One per cleanup task, spawned and supervised by the cleanup manager.
using task_timer_actor = caf::typed_actor<
    // The private timer: a tick carries the schedule generation it was armed for.
    caf::reacts_to<caf::tick_atom, uint64_t>,
    // Run now (an urgent task on a pressure rise, or an operator's request).
    caf::reacts_to<run_atom>,
    // Multiply the configured interval by this factor from now on (1.0 restores it).
    caf::reacts_to<stretch_atom, double>>;

/// One backend connection, owned by the pool; detached (blocking I/O on its own thread).
using connection_actor = caf::typed_actor<
    // Run a statement (prepared on first use on this connection).
    caf::replies_to<db_call>::with<db_result>,
    // Prove the connection works (health checks of idle connections).
    caf::replies_to<caf::ping_atom>::with<caf::ok_atom>>;

using connection_pool_actor = caf::typed_actor<
    // Acquire a connection (or wait for one), run the call on it, release it. Errors: queue_full
    // (with retry-after), deadline_exceeded ("queued" or "running"), backend_unavailable,
    // backend_busy, backend_error, bad_statement, pool_closed.
    caf::replies_to<db_call>::with<db_result>, caf::replies_to<caf::get_atom>::with<pool_status>,
    caf::reacts_to<pressure_changed>,
    // Its cleanup task `pool_maintenance`: health checks, idle and lifetime limits, top-up.
    caf::replies_to<caf::tick_atom>::with<caf::ok_atom>,
    // Private: the deadline of call `id` (queued: leaves the queue; running: cancelled).
    caf::reacts_to<caf::timeout_atom, uint64_t>>;

using circuit_breaker_actor = caf::typed_actor<
    // Run the call through the pool unless open; errors: circuit_open and the pool's.
    caf::replies_to<db_call>::with<db_result>, caf::replies_to<caf::get_atom>::with<breaker_status>,
    caf::replies_to<breaker_command>::with<breaker_status>,
    // Its cleanup task `breaker_watch`: while open, ask the pool whether the backend is back.
    caf::replies_to<caf::tick_atom>::with<caf::ok_atom>,
    // Private: the end of the open wait.
    caf::reacts_to<caf::timeout_atom>>;

using database_actor = caf::typed_actor<
    // Run a named statement; errors: unknown_statement, bad_parameters and the path's.
    caf::replies_to<db_query>::with<db_result>, caf::reacts_to<pressure_changed>,
    // Readiness: answers ok while its mailbox is served.
    caf::replies_to<health_atom>::with<caf::ok_atom>,
    // Its cleanup task `database_plans`: measure statement complexity through the pool.
    caf::replies_to<caf::tick_atom>::with<caf::ok_atom>>;

/// One shard of the cache (the gateway picks the shard by key hash). The tick is its cleanup task
/// `cache_sweep/<shard>` (expiry sweep, gradual restore of the byte budget).
using cache_actor = caf::typed_actor<
    caf::replies_to<cache_get>::with<cache_lookup>,
    // "stored", "too_large" or "admission".
    caf::replies_to<cache_put>::with<std::string>, caf::replies_to<cache_erase>::with<bool>,
    caf::replies_to<caf::get_atom>::with<cache_stats>, caf::reacts_to<pressure_changed>,
    caf::replies_to<caf::tick_atom>::with<caf::ok_atom>>;

using rate_limiter_actor = caf::typed_actor<caf::replies_to<limit_check>::with<limit_decision>,
                                            caf::replies_to<caf::get_atom>::with<limiter_stats>,
                                            caf::reacts_to<pressure_changed>,
                                            // Its cleanup task `limiter_expiry`: idle-key expiry.
                                            caf::replies_to<caf::tick_atom>::with<caf::ok_atom>>;

/// The request pipeline: rate limiter, cache, database. Errors: rate_limited, shed, and the
/// database's.
using gateway_actor = caf::typed_actor<caf::replies_to<gateway_request>::with<db_result>,
                                       // Readiness: answers ok while its mailbox is served.
                                       caf::replies_to<health_atom>::with<caf::ok_atom>,
                                       caf::reacts_to<pressure_changed>,
                                       // Private: retry the requests waiting for memory.
                                       caf::reacts_to<run_atom>>;

/// The one entry for queries (actors/front_door.hpp): in-process callers send to it with a
/// sink, and it is what a node publishes over CAF's network layer (`remote.listen`).
using front_door_actor = caf::typed_actor<caf::replies_to<gateway_request>::with<db_result>>;

/// The handle a remote node obtains with remote_actor<remote_gateway_actor>(host, port).
using remote_gateway_actor = front_door_actor;

/// The performance monitor: process CPU and memory, scheduler lag, request and backend latency
/// on an adaptive sampling ratio, their bounded history, and the alert rules.
using performance_monitor_actor =
    caf::typed_actor<caf::replies_to<caf::get_atom>::with<perf_status>,
                     // The history of one series by name (empty for an unknown name).
                     caf::replies_to<caf::get_atom, std::string>::with<std::vector<perf_point>>,
                     caf::replies_to<caf::get_atom, alerts_atom>::with<std::vector<alert_info>>,
                     caf::reacts_to<pressure_changed>,
                     // Private: the timer; it carries the time it was due (its lateness is the
                     // scheduler lag).
                     caf::reacts_to<caf::tick_atom, clock_point>>;

} // namespace bulwark
