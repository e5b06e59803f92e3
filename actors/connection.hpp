#pragma once
/// connection: one backend connection, owned by the connection pool. Spawned detached, so its
/// blocking I/O (connect, execute, ping) never runs on the scheduler's threads; except the
/// pool's *scheduler lane* (spawned with a `slice`, SQLite only): it runs on the scheduler and
/// takes only single reads, each in a time slice (detail::connection::set_slice), so a point
/// query costs no hand-off to a thread and back, and no call blocks a worker for longer than the
/// slice. A call it cannot finish in its slice (one with steps, an EXPLAIN, one that writes,
/// runs past the slice, would wait for a lock, or grows into a streamed answer) it answers
/// `slice_over` having kept nothing, and the pool runs it on a connection thread.
///
/// | receives      | replies   | errors                                                       |
/// |---------------|-----------|--------------------------------------------------------------|
/// | db_call       | db_result | backend_unavailable (the connection broke: it then quits),   |
/// |               |           | backend_busy, bad_statement, backend_error, deadline_exceeded|
/// |               |           | (the call was cancelled), call_revoked (the pool took back a |
/// |               |           | call it had sent ahead before this connection started it)    |
/// | ping_atom     | ok_atom   | backend_unavailable (and quits)                              |
///
/// It connects when it starts; a failed connect ends it with `backend_unavailable`, which its
/// owner sees as a down message. Once connected it publishes a canceller (sqlite3_interrupt,
/// PQcancel) in the shared `connection_handle`, so the pool can interrupt the running statement
/// from outside; it runs each call under the call's id there (db_call::id, which the pool sets),
/// and withdraws the canceller before the connection closes. Statements are prepared on first use
/// per connection. Keeps nothing across a restart: the pool opens a new connection instead. It ends
/// when its owner (the pool) ends.
///
/// A call with steps is a transaction: BEGIN (IMMEDIATE on SQLite unless every step reads only;
/// the call's isolation on PostgreSQL), each step in order with its own limit (the call's memory
/// reservation grows with all of them), COMMIT. Any failure, or a cancel (between steps too),
/// rolls back and answers the step's error with a `failed_step` last in its context; a
/// connection that cannot roll back closes (the server then rolls back).

#include "actors/detail/backend.hpp"
#include "messages/fwd.hpp"

#include <caf/actor_system.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace bulwark {

/// Opens one connection (blocking); the pool passes the backend's factory.
using connection_factory = std::function<std::unique_ptr<detail::connection>()>;

struct backend_config {
  /// backend.kind: "sqlite" | "postgres".
  std::string kind = "sqlite";
  /// backend.sqlite.path: the database file; empty means "<node.data_dir>/bulwark.sqlite3".
  std::string sqlite_path;
  /// backend.sqlite.busy_timeout_ms: how long a statement waits for a lock held by another writer.
  std::chrono::milliseconds sqlite_busy_timeout{1000};
  /// backend.postgres.conninfo: a libpq connection string.
  std::string postgres_conninfo = "host=127.0.0.1 port=5432 dbname=bulwark";
  /// backend.postgres.connect_timeout_s.
  int postgres_connect_timeout_s = 5;
  /// backend.init_sql: idempotent statements run once at start (the demo schema and data).
  std::vector<std::string> init_sql;
};

/// The factory for `cfg` (relative SQLite paths are taken under `data_dir`).
connection_factory make_connection_factory(const backend_config& cfg, const std::string& data_dir);

/// What the pool can do to a connection from outside its thread: cancel one call. A cancel names
/// the call it is for and does nothing unless that call is the one running, so a cancel that
/// arrives late (the call ended, the connection went back to the pool and runs the next caller's
/// statement, or the connection closed) can neither interrupt someone else's statement nor touch a
/// closed connection.
class connection_handle {
public:
  /// Interrupts call `call_id` if it is running now. Safe from any thread; may block (PQcancel
  /// connects to the server), so callers run it off the scheduler.
  void cancel(uint64_t call_id);

  /// The connection actor, once connected: how to interrupt the statement running now.
  void set_canceller(std::function<void()> f);

  /// The connection actor, around each call. end() waits for a cancel of this call that is
  /// still in progress, so it cannot reach the next call. `stream`: where the call streams its
  /// answer (may be null); a cancel cuts it ("deadline"), so a producer waiting for a slow
  /// reader stops at once.
  void begin(uint64_t call_id, std::shared_ptr<detail::result_stream> stream = nullptr);
  void end();

  /// The connection actor, between a transaction's steps: whether the running call was
  /// cancelled (a cancel that came while no statement ran interrupts nothing on the server).
  bool cancelled();

  /// How long call `call_id`, if it is running now, has spent on its stream's reader, waiting
  /// and rendering (result_stream::reader_time; the
  /// pool tells a slow reader from a slow backend by it).
  std::chrono::nanoseconds reader_wait(uint64_t call_id);

  /// The connection actor, before it closes its connection: no cancel runs after this returns.
  void close();

  /// The pool, before it sends call `call_id` to this connection while another call runs there
  /// (a call *ahead*, so the connection starts it the moment the running one ends, without a
  /// round trip to the pool): until the connection claims it, the pool may revoke it.
  void offer(uint64_t call_id);

  /// The pool: takes back call `call_id`, offered and not yet claimed. True: it will never run
  /// here (the connection answers it `call_revoked`); false: it was claimed (it runs, or ran).
  bool revoke(uint64_t call_id);

  /// The connection actor, before it runs call `call_id`: false if the pool revoked it (the
  /// connection must not run it). A call that was never offered is always its to run.
  bool claim(uint64_t call_id);

  /// The pool: whether the connection took call `call_id` to run (claimed it last). False for a
  /// call that never reached it: one that bounced because the connection went down first (a
  /// health check found it broken an instant before the call came) never ran, and can run
  /// elsewhere.
  bool took(uint64_t call_id);

private:
  std::mutex mtx_;
  std::condition_variable idle_; ///< signalled when a cancel in progress returns
  std::function<void()> canceller_;
  uint64_t running_ = 0;                          ///< the call running now, 0 for none
  std::shared_ptr<detail::result_stream> stream_; ///< the running call's, if it streams
  bool cancelling_ = false;
  bool cancelled_ = false; ///< the running call was cancelled
  uint64_t offered_ = 0;   ///< the call ahead, until claimed or revoked (0: none)
  uint64_t claimed_ = 0;   ///< the call claimed last (0: none yet)
  /// Revoked calls still on their way to the connection (each is refused when it arrives; at
  /// most one per call ahead the pool took back, so a few).
  std::vector<uint64_t> revoked_;
};

/// Converts between the wire type and the backend's value type.
detail::sql_value to_sql(const db_value& x);
db_value from_sql(const detail::sql_value& x);

/// Whether `call` is one the scheduler lane takes: a single statement declared read-only, not an
/// EXPLAIN (the pool routes by it; the lane gives back anything else).
bool fits_lane(const db_call& call);

/// `owner` (the pool) is monitored: the connection closes when its owner is gone. `slice` zero:
/// a connection on a thread of its own; else the scheduler lane with that time slice per call.
connection_actor spawn_connection(caf::actor_system& sys, connection_factory connect,
                                  std::shared_ptr<connection_handle> handle, caf::actor owner,
                                  caf::timespan slice = caf::timespan{0});

} // namespace bulwark
