#pragma once
/// connection_pool: owns the backend connections (one connection actor each, detached) and
/// queues work for them. All backend work reaches a connection through here.
///
/// | receives                 | replies     | errors                                          |
/// |--------------------------|-------------|-------------------------------------------------|
/// | db_call                  | db_result   | queue_full (retry-after ms, strategy),          |
/// |                          |             | queue_timeout, backend_stuck, call_cancelled,   |
/// |                          |             | backend_unavailable, backend_busy,              |
/// |                          |             | backend_error, bad_statement                    |
/// | get_atom                 | pool_status |                                                 |
/// | pressure_changed         | -           | queue limit and strategy follow the ratio       |
/// | tick_atom                | ok_atom     | its cleanup task `pool_maintenance`             |
/// | (timeout_atom, id)       | -           | its per-call deadline timers, the queue's check |
///
/// - Between `min_connections` and `max_connections` connections (opening ones count against the
///   maximum, so it can never exceed it). A connection is ready once it answered a ping.
/// - A call is served at once by an idle connection, else it waits in the queue of
///   detail/pool_queue.hpp (adaptive limit, three strategies; who is refused and why is
///   documented there). A refused caller gets queue_full with a retry-after computed from the
///   queue depth and the measured service rate; so does a newcomer whose deadline its place in
///   line cannot meet (it never waited: a refusal, not a timeout). A waiter that later becomes
///   hopeless, or waits past its deadline, gets queue_timeout. A *standing* queue (its oldest
///   waiter past `queue_delay_target` for `queue_delay_interval`) is held to the target until it
///   runs empty: waiters past the target and newcomers expected to wait past it get queue_full
///   (reason standing_delay) with a retry-after, so a flood is refused in microseconds instead of
///   waiting out the acquire timeout. Shed requests are not backend failures.
/// - **A call ahead.** Each busy thread connection is sent the queue's next waiter ahead of time
///   (`call_ahead`), so it starts that call the moment its own ends, with no round trip through
///   the pool between two calls (which costs a connection idle time per call, and throughput).
///   The call keeps its place in the queue, and the queue's rules (limit, shedding, standing
///   delay, deadline) apply to it as to any waiter, until it starts. The pool can take it back
///   until the connection claims it (connection_handle::offer/revoke/claim): when another
///   connection frees first (it runs the queue's next waiter, ahead or not), when its wait ends
///   or it is refused, when its connection breaks (it waits on for another) and when the pool
///   stops. A call taken back never runs: a write its caller was told timed out did not happen.
///   One whose connection claimed it first is running, and is answered from there.
/// - Every call has a deadline (the caller's, else `acquire_timeout` for the wait and
///   `call_timeout` for the run). Running past it: the statement is cancelled on the server
///   (sqlite3_interrupt / PQcancel, run off the scheduler; the cancel names the call, so a late
///   one never reaches the next caller's statement) and the caller gets call_cancelled at once,
///   with how long it ran (ms) as the second context element; the connection is reused when the
///   cancelled statement returns. Waiting past it: queue_timeout. A transaction (a call with
///   steps) is cancelled at its deadline too, but answered by its connection, which says whether
///   it rolled back (call_cancelled, naming the step) or had committed just before; only if that
///   answer takes longer than half of path_grace does the pool answer for it, saying the outcome
///   is unknown.
/// - A backend that does not return cancelled work is *stuck*: a cancel has been outstanding for
///   `stuck_after` with nothing back from the backend since (no answer, ping or new connection).
///   A live server honours a cancel in milliseconds, so whatever deadlines callers choose, this
///   tells a hung or unreachable backend from load. While stuck, calls that find no idle
///   connection get backend_unavailable at once, and timeouts are backend_stuck: the breaker
///   counts both as failures (a queue_timeout, or a short call_cancelled, it does not).
/// - Maintenance every `health_check_interval`: ping idle connections (a broken one ends and is
///   replaced), close idle connections beyond the minimum after `idle_timeout` and any idle
///   connection older than `max_lifetime`, top up to the minimum. A failed connect backs off
///   exponentially with jitter (`connect_backoff_initial` .. `connect_backoff_max`). While no
///   connection is open and the last connect failed, calls are answered backend_unavailable at
///   once (waiters too): a dead backend fails fast and its failures reach the breaker, instead
///   of becoming queue timeouts that look like load.
/// - The scheduler lane (`lane` spawner given, SQLite, `pool.lane_slice_us` > 0): one more
///   connection, on the scheduler (actors/connection.hpp), opened once a thread connection is
///   up and outside `min/max_connections`. A declared read (no steps, not EXPLAIN) that finds it
///   idle runs there, in a slice of `lane_slice`; one it answers `slice_over` runs on a
///   connection thread as if it had just come (no caller sees it), and its statement skips the
///   lane for its next `lane_skip` calls. The lane never takes a waiter from the queue.
/// - Sends unprompted: a `pressure_action` to the monitor when its queue limit changes.
/// Keeps nothing across a restart: connections and waiters belong to one incarnation. When it is
/// stopped or made to fail by an exit message, every waiting and running call is answered
/// pool_closed first; its connections close when they see it gone.

#include "actors/connection.hpp"
#include "actors/detail/pool_queue.hpp"
#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <functional>
#include <memory>

namespace bulwark {

struct connection_pool_config {
  /// pool.min_connections / pool.max_connections.
  size_t min_connections = 1;
  size_t max_connections = 8;
  /// pool.acquire_timeout_ms: the longest a call waits for a connection.
  std::chrono::milliseconds acquire_timeout{3000};
  /// pool.call_timeout_ms: the deadline of a call that brings none.
  std::chrono::milliseconds call_timeout{10000};
  /// pool.idle_timeout_ms / pool.max_lifetime_ms.
  std::chrono::milliseconds idle_timeout{15000};
  std::chrono::milliseconds max_lifetime{30 * 60 * 1000};
  /// pool.health_check_interval_ms.
  std::chrono::milliseconds health_check_interval{5000};
  /// pool.connect_backoff_initial_ms / pool.connect_backoff_max_ms: the n-th failed connect in a
  /// row waits min(max, initial x 2^(n-1)) x a factor in [0.5, 1] (detail/backoff.hpp).
  std::chrono::milliseconds connect_backoff_initial{100};
  std::chrono::milliseconds connect_backoff_max{10000};
  /// The backoff's uniform draws in [0, 1) (tests inject a fixed source); empty: random.
  std::function<double()> connect_jitter;
  /// pool.stuck_after_ms: how long a cancel may go unanswered, with nothing else back from the
  /// backend either, before the backend counts as stuck (a hung server, not a busy one).
  std::chrono::milliseconds stuck_after{1000};
  /// pool.max_waiters, the strategies' shed fractions and the standing-queue delay target.
  detail::wait_queue_config queue;
  /// pool.lane_slice_us: the scheduler lane's time slice per call (0: no lane).
  std::chrono::microseconds lane_slice{200};
  /// How many calls of a statement that did not fit its slice skip the lane before it is
  /// tried there again.
  uint32_t lane_skip = 64;
  /// Each busy connection holds the queue's next waiter ahead, to start it the moment its call
  /// ends (no round trip through the pool between two calls); off: a connection gets its next
  /// call from the pool once it is free (benchmarks compare both).
  bool call_ahead = true;
};

struct connection_pool_metrics {
  explicit connection_pool_metrics(prometheus::Registry& reg);
  prometheus::Gauge* idle;
  prometheus::Gauge* busy;
  prometheus::Gauge* connecting;
  prometheus::Gauge* queue_length;
  prometheus::Gauge* queue_limit;
  prometheus::Histogram* wait_seconds;
  prometheus::Family<prometheus::Counter>* rejections; ///< by strategy
  prometheus::Counter* acquire_timeouts;
  prometheus::Counter* call_timeouts;
  prometheus::Counter* replacements;
  prometheus::Counter* connect_failures;
  prometheus::Counter* lane_served;      ///< calls the scheduler lane answered
  prometheus::Counter* lane_handed_back; ///< calls it gave back to a connection thread
  prometheus::Counter* ahead_started;    ///< calls sent ahead that started where they were sent
  prometheus::Counter* ahead_taken_back; ///< calls sent ahead that the pool took back
};

/// Starts one connection actor; injectable so tests can put a fault-injecting fake in place of
/// a real backend.
using connection_spawner = std::function<connection_actor(
    caf::actor_system&, std::shared_ptr<connection_handle>, caf::actor owner)>;

/// The spawner for a real backend: each connection actor opens `connect()` on its own thread.
connection_spawner backend_spawner(connection_factory connect);

/// The scheduler lane's spawner: a connection actor on the scheduler, each call in `slice`.
connection_spawner lane_spawner(connection_factory connect, caf::timespan slice);

/// Runs a cancel off the scheduler's threads (it may block: PQcancel connects to the server).
/// The default (empty) runs each in a detached actor of its own. Tests on CAF's deterministic
/// scheduler run it inline: a detached actor ends on its own thread and touches that scheduler's
/// clock, which is not thread-safe (ThreadSanitizer reports it).
using cancel_runner = std::function<void(std::function<void()>)>;

connection_pool_actor spawn_connection_pool(caf::actor_system& sys, connection_pool_config cfg,
                                            connection_spawner spawner,
                                            std::shared_ptr<component_directory> dir,
                                            connection_pool_metrics* metrics,
                                            cancel_runner run_cancel = {},
                                            connection_spawner lane = {});

} // namespace bulwark
