#include "actors/connection.hpp"

#include "actors/detail/result_stream.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <filesystem>
#include <set>

namespace bulwark {

void connection_handle::cancel(uint64_t call_id) {
  std::function<void()> f;
  std::shared_ptr<detail::result_stream> stream;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (call_id == 0 || running_ != call_id || cancelling_ || !canceller_)
      return;
    cancelling_ = true;
    cancelled_ = true;
    f = canceller_;
    stream = stream_;
  }
  if (stream)
    stream->cut("deadline"); // a producer waiting for its reader stops now
  f();
  {
    std::lock_guard<std::mutex> guard{mtx_};
    cancelling_ = false;
  }
  idle_.notify_all();
}

void connection_handle::set_canceller(std::function<void()> f) {
  std::lock_guard<std::mutex> guard{mtx_};
  canceller_ = std::move(f);
}

void connection_handle::begin(uint64_t call_id, std::shared_ptr<detail::result_stream> stream) {
  std::lock_guard<std::mutex> guard{mtx_};
  running_ = call_id;
  stream_ = std::move(stream);
  cancelled_ = false;
}

bool connection_handle::cancelled() {
  std::lock_guard<std::mutex> guard{mtx_};
  return cancelled_;
}

void connection_handle::end() {
  std::unique_lock<std::mutex> guard{mtx_};
  idle_.wait(guard, [this] { return !cancelling_; });
  running_ = 0;
  stream_.reset();
}

std::chrono::nanoseconds connection_handle::reader_wait(uint64_t call_id) {
  std::shared_ptr<detail::result_stream> stream;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (call_id == 0 || running_ != call_id)
      return std::chrono::nanoseconds{0};
    stream = stream_;
  }
  return stream ? stream->reader_time() : std::chrono::nanoseconds{0};
}

void connection_handle::close() {
  std::unique_lock<std::mutex> guard{mtx_};
  idle_.wait(guard, [this] { return !cancelling_; });
  running_ = 0;
  stream_.reset();
  canceller_ = nullptr;
}

void connection_handle::offer(uint64_t call_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  offered_ = call_id;
}

bool connection_handle::revoke(uint64_t call_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (call_id == 0 || offered_ != call_id)
    return false;
  offered_ = 0;
  revoked_.push_back(call_id);
  return true;
}

bool connection_handle::claim(uint64_t call_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (offered_ == call_id) {
    offered_ = 0;
    claimed_ = call_id;
    return true;
  }
  auto i = std::find(revoked_.begin(), revoked_.end(), call_id);
  if (i == revoked_.end()) {
    claimed_ = call_id;
    return true;
  }
  revoked_.erase(i);
  return false;
}

bool connection_handle::took(uint64_t call_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  return call_id != 0 && claimed_ == call_id;
}

bool fits_lane(const db_call& call) {
  return call.read_only && call.steps.empty() && !call.explain;
}

detail::sql_value to_sql(const db_value& x) {
  switch (x.kind) {
  case db_value_kind::null:
    return std::monostate{};
  case db_value_kind::integer:
    return x.integer;
  case db_value_kind::real:
    return x.real;
  case db_value_kind::text:
    return x.text;
  case db_value_kind::boolean:
    return x.boolean;
  }
  return std::monostate{};
}

db_value from_sql(const detail::sql_value& x) {
  struct visitor {
    db_value operator()(std::monostate) const { return db_value::of_null(); }
    db_value operator()(int64_t v) const { return db_value::of(v); }
    db_value operator()(double v) const { return db_value::of(v); }
    db_value operator()(const std::string& v) const { return db_value::of(v); }
    db_value operator()(bool v) const { return db_value::of(v); }
  };
  return std::visit(visitor{}, x);
}

namespace {

/// Runs backend.init_sql on the first connection that opens, once per factory: later
/// connections wait for it and skip it. A failed init fails that connect (the pool backs off and
/// tries again), so a backend that comes up late still gets its schema.
struct init_once {
  std::mutex mtx;
  bool done = false;
  std::vector<std::string> statements;

  void run(detail::connection& c) {
    std::lock_guard<std::mutex> guard{mtx};
    if (done)
      return;
    for (size_t i = 0; i < statements.size(); ++i) {
      try {
        c.exec(statements[i]);
      } catch (const detail::backend_error& e) {
        throw detail::backend_error(detail::backend_error_kind::connection,
                                    "backend.init_sql[" + std::to_string(i) +
                                        "] failed: " + e.what());
      }
    }
    done = true;
  }
};

} // namespace

connection_factory make_connection_factory(const backend_config& cfg, const std::string& data_dir) {
  auto init = std::make_shared<init_once>();
  init->statements = cfg.init_sql;
  std::function<std::unique_ptr<detail::connection>()> open;
  if (cfg.kind == "postgres") {
    detail::postgres_options opts;
    opts.conninfo = cfg.postgres_conninfo;
    opts.connect_timeout_s = cfg.postgres_connect_timeout_s;
    open = [opts] { return detail::connect_postgres(opts); };
  } else {
    detail::sqlite_options opts;
    std::filesystem::path p = cfg.sqlite_path.empty() ? "bulwark.sqlite3" : cfg.sqlite_path;
    opts.path = p.is_absolute() ? p.string() : (std::filesystem::path{data_dir} / p).string();
    opts.busy_timeout_ms = static_cast<int>(cfg.sqlite_busy_timeout.count());
    open = [opts] { return detail::connect_sqlite(opts); };
  }
  return [open, init] {
    auto c = open();
    init->run(*c);
    return c;
  };
}

namespace {

struct connection_state {
  static constexpr const char* name = "connection";
  std::shared_ptr<connection_handle> handle;
  std::unique_ptr<detail::connection> conn;
  std::set<std::string> prepared;
  /// Non-zero: the scheduler lane, each call in a slice this long (the header says).
  caf::timespan slice{0};

  /// The canceller captures the connection's raw handle: withdraw it before `conn` goes.
  ~connection_state() {
    if (handle)
      handle->close();
  }
};

/// Marks the call running in the handle for as long as it runs, whatever way it ends.
struct running_call {
  connection_handle& handle;
  running_call(connection_handle& h, uint64_t id, std::shared_ptr<detail::result_stream> s)
      : handle(h) {
    handle.begin(id, std::move(s));
  }
  ~running_call() { handle.end(); }
  running_call(const running_call&) = delete;
  running_call& operator=(const running_call&) = delete;
};

using self_ptr = connection_actor::stateful_pointer<connection_state>;

/// A query's memory reservation grows by at least this much at a time while rows arrive.
constexpr uint64_t grow_step = 256 * 1024;

/// How long a caller that lost a race for a lock should wait before it tries again.
constexpr int64_t contention_retry_ms = 1000;

caf::error to_error(const detail::backend_error& e) {
  using kind = detail::backend_error_kind;
  std::string what = e.what();
  switch (e.kind()) {
  case kind::connection:
    return make_error(errc::backend_unavailable, std::move(what));
  case kind::server:
    return make_error(errc::backend_error, std::move(what));
  case kind::contention:
    return make_error(errc::backend_busy, contention_retry_ms, std::move(what));
  case kind::cancelled:
    return make_error(errc::deadline_exceeded, "the backend call was cancelled", std::move(what));
  case kind::statement:
    return make_error(errc::bad_statement, std::move(what));
  case kind::constraint:
    return make_error(errc::conflict, e.constraint(), std::move(what));
  case kind::data:
    return make_error(errc::invalid_data, static_cast<int32_t>(e.parameter()), std::move(what));
  }
  return make_error(errc::backend_error, std::move(what));
}

/// A broken connection answers the caller, then ends this actor so the pool replaces it.
caf::error fail(self_ptr self, const detail::backend_error& e) {
  auto err = to_error(e);
  if (e.kind() == detail::backend_error_kind::connection)
    self->quit(err);
  return err;
}

/// What a streamed answer holds from the account once it streams: the window in the stream's
/// buffer, the window the socket is writing, and the row being rendered (one result_cost of a
/// window's bytes covers them).
uint64_t stream_cost(const detail::result_stream& s) {
  return detail::result_cost(s.window_bytes(), 0, 0);
}

/// A stream's sink for the backend's fetch loop: rows stay until they hold the stream's switch
/// size (a small answer is answered whole), then the document opens with them and every later
/// row goes out through the stream's window. When it opens, the query's reservation shrinks to
/// what a stream holds and the stream keeps it until its last byte is written.
std::function<const char*(detail::result_set&)> stream_sink(db_call& call) {
  auto stream = call.stream.to;
  auto grant = call.grant.held;
  return [stream, grant](detail::result_set& rs) -> const char* {
    if (stream->opened())
      return stream->put(rs.rows);
    if (rs.bytes < stream->switch_bytes())
      return nullptr;
    if (grant) {
      grant->resize(stream_cost(*stream));
      stream->hold(grant);
    }
    return stream->open(rs.columns, rs.rows);
  };
}

/// Prepares `statement` on this connection on its first use; `params` as the backend's values.
std::vector<detail::sql_value> prepared(connection_state& st, const std::string& statement,
                                        const std::string& sql,
                                        const std::vector<db_value>& params) {
  if (st.prepared.count(statement) == 0) {
    st.conn->prepare(statement, sql, params.size());
    st.prepared.insert(statement);
  }
  std::vector<detail::sql_value> out;
  out.reserve(params.size());
  for (auto& p : params)
    out.push_back(to_sql(p));
  return out;
}

/// What the rows kept in `rs` cost in memory (detail::result_cost).
uint64_t rows_cost(const detail::result_set& rs) {
  uint64_t cells = 0;
  for (auto& row : rs.rows)
    cells += row.size();
  return detail::result_cost(rs.bytes, rs.rows.size(), cells);
}

/// The backend's rows as the wire's.
std::vector<db_row> to_rows(const std::vector<std::vector<detail::sql_value>>& rows) {
  std::vector<db_row> out;
  out.reserve(rows.size());
  for (auto& row : rows) {
    db_row r;
    r.reserve(row.size());
    for (auto& cell : row)
      r.push_back(from_sql(cell));
    out.push_back(std::move(r));
  }
  return out;
}

/// Ends the slice a lane call runs in, however the call ends.
struct slice_guard {
  detail::connection* conn = nullptr;
  ~slice_guard() {
    if (conn)
      conn->set_slice(std::nullopt);
  }
};

caf::result<db_result> run(self_ptr self, db_call& call) {
  auto& st = self->state;
  auto* stream = call.explain ? nullptr : call.stream.to.get();
  bool lane = st.slice.count() > 0;
  running_call guard{*st.handle, call.id, stream ? call.stream.to : nullptr};
  slice_guard sliced;
  try {
    if (lane) {
      auto end = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(st.slice);
      if (!st.conn->set_slice(end))
        return make_error(errc::slice_over, std::string{"this backend has no time slices"});
      sliced.conn = st.conn.get();
    }
    if (call.explain) {
      db_result out;
      out.columns = {"plan"};
      for (auto& line : st.conn->explain(call.sql))
        out.rows.push_back({db_value::of(line)});
      return out;
    }
    auto params = prepared(st, call.statement, call.sql, call.params);
    detail::fetch_limits limits;
    limits.max_rows = call.limit.max_rows;
    limits.max_bytes = call.limit.max_bytes;
    if (auto* grant = call.grant.held.get())
      limits.admit = [grant, stream](size_t bytes, size_t rows, size_t cells) {
        if (stream && stream->opened())
          return true; // a streamed answer holds its window, whatever its size
        auto need = detail::result_cost(bytes, rows, cells);
        auto have = grant->bytes();
        if (need <= have)
          return true;
        // In steps, not per row: one atomic operation per 256 KiB of rows, not per row.
        return grant->grow(std::max<uint64_t>(need - have, grow_step)) || grant->grow(need - have);
      };
    if (stream && lane)
      // A streamed answer waits for its reader: not on a scheduler's thread.
      limits.sink = [stream](detail::result_set& rs) -> const char* {
        if (rs.bytes >= stream->switch_bytes())
          throw detail::slice_over("the answer grows into a stream");
        return nullptr;
      };
    else if (stream)
      limits.sink = stream_sink(call);
    auto rs = st.conn->execute(call.statement, params, limits);
    db_result out;
    if (stream && stream->opened()) {
      out.streamed = true;
      out.streamed_rows = rs.row_count;
      out.reader_wait = std::chrono::duration_cast<caf::timespan>(stream->reader_time());
    } else {
      // What these rows cost from here on; a smaller expectation than the admission's gives the
      // rest back now.
      if (auto* grant = call.grant.held.get())
        grant->resize(rows_cost(rs));
    }
    out.grant = std::move(call.grant);
    out.columns = std::move(rs.columns);
    out.rows = to_rows(rs.rows);
    out.truncated = rs.truncated;
    out.truncated_by = std::move(rs.truncated_by);
    out.limit = call.limit;
    out.rows_affected = rs.rows_affected;
    out.bytes = rs.bytes;
    return out;
  } catch (const detail::slice_over& e) {
    return make_error(errc::slice_over, std::string{e.what()});
  } catch (const detail::backend_error& e) {
    if (lane && e.kind() == detail::backend_error_kind::contention)
      return make_error(errc::slice_over, std::string{e.what()}); // it would wait: not here
    return fail(self, e);
  }
}

/// BEGIN as the transaction asks: SQLite takes the write lock up front unless every step only
/// reads (a deferred BEGIN that later writes can fail SQLITE_BUSY without waiting, where another
/// writer upgraded first); PostgreSQL runs it at the asked isolation, READ ONLY when it only reads.
std::string begin_sql(const detail::connection& conn, const db_call& call) {
  bool reads_only = std::all_of(call.steps.begin(), call.steps.end(),
                                [](const db_call_step& s) { return s.read_only; });
  if (std::string{conn.kind()} == "sqlite")
    return reads_only ? "BEGIN" : "BEGIN IMMEDIATE";
  std::string sql = "BEGIN";
  if (call.isolation == "repeatable_read")
    sql += " ISOLATION LEVEL REPEATABLE READ";
  else if (call.isolation == "serializable")
    sql += " ISOLATION LEVEL SERIALIZABLE";
  if (reads_only)
    sql += " READ ONLY";
  return sql;
}

/// A transaction (db_call::steps) on this connection, as the header says.
caf::result<db_result> run_transaction(self_ptr self, db_call& call) {
  auto& st = self->state;
  auto& conn = *st.conn;
  running_call guard{*st.handle, call.id, nullptr};
  auto* grant = call.grant.held.get();
  constexpr uint32_t not_begun = UINT32_MAX;
  uint32_t at = not_begun; // the step running; steps.size() while committing
  auto cancelled = [] {
    return detail::backend_error(detail::backend_error_kind::cancelled,
                                 "the transaction was cancelled between statements");
  };
  try {
    conn.exec(begin_sql(conn, call));
    db_result out;
    uint64_t held = 0; // what the steps done so far cost
    for (at = 0; at < call.steps.size(); ++at) {
      if (st.handle->cancelled())
        throw cancelled();
      auto& step = call.steps[at];
      auto params = prepared(st, step.statement, step.sql, step.params);
      detail::fetch_limits limits;
      limits.max_rows = step.limit.max_rows;
      limits.max_bytes = step.limit.max_bytes;
      if (grant)
        limits.admit = [grant, held](size_t bytes, size_t rows, size_t cells) {
          auto need = held + detail::result_cost(bytes, rows, cells);
          auto have = grant->bytes();
          if (need <= have)
            return true;
          return grant->grow(std::max<uint64_t>(need - have, grow_step)) ||
                 grant->grow(need - have);
        };
      auto rs = conn.execute(step.statement, params, limits);
      held += rows_cost(rs);
      db_step_result r;
      r.columns = std::move(rs.columns);
      r.rows = to_rows(rs.rows);
      r.truncated = rs.truncated;
      r.truncated_by = std::move(rs.truncated_by);
      r.limit = step.limit;
      r.rows_affected = rs.rows_affected;
      r.bytes = rs.bytes;
      out.truncated = out.truncated || r.truncated;
      out.rows_affected += r.rows_affected;
      out.bytes += r.bytes;
      out.steps.push_back(std::move(r));
    }
    if (st.handle->cancelled())
      throw cancelled();
    conn.exec("COMMIT");
    if (grant)
      grant->resize(held);
    out.grant = std::move(call.grant);
    return out;
  } catch (const detail::backend_error& e) {
    auto err = to_error(e);
    if (e.kind() == detail::backend_error_kind::connection) {
      self->quit(err); // the server rolls back what the broken connection left open
    } else {
      try {
        if (conn.in_transaction())
          conn.exec("ROLLBACK");
      } catch (const detail::backend_error& r) {
        // Nothing may run on a connection whose transaction state is unknown: close it.
        self->quit(
            make_error(errc::backend_unavailable, std::string{"ROLLBACK failed: "} + r.what()));
      }
    }
    if (at == not_begun)
      return err; // BEGIN failed: nothing ran
    auto name = at < call.steps.size() ? call.steps[at].statement : std::string{"COMMIT"};
    return with_failed_step(err, failed_step{at, std::move(name)});
  }
}

connection_actor::behavior_type connection(self_ptr self, connection_factory connect,
                                           std::shared_ptr<connection_handle> handle,
                                           caf::actor owner, caf::timespan slice) {
  self->state.slice = slice;
  self->monitor(owner);
  self->set_down_handler([self](caf::down_msg&) { self->quit(); });
  self->state.handle = handle;
  try {
    self->state.conn = connect();
    handle->set_canceller(self->state.conn->canceller());
  } catch (const detail::backend_error& e) {
    self->quit(make_error(errc::backend_unavailable, std::string{e.what()}));
    return {
        [](db_call&) -> caf::result<db_result> { return make_error(errc::backend_unavailable); },
        [](caf::ping_atom) -> caf::result<caf::ok_atom> {
          return make_error(errc::backend_unavailable);
        },
    };
  }
  return {
      [=](db_call& call) -> caf::result<db_result> {
        if (!self->state.handle->claim(call.id))
          return make_error(errc::call_revoked, std::string{"the pool took the call back"});
        if (self->state.slice.count() > 0 && !fits_lane(call))
          return make_error(errc::slice_over, std::string{"not a single declared read"});
        return call.steps.empty() ? run(self, call) : run_transaction(self, call);
      },
      [=](caf::ping_atom) -> caf::result<caf::ok_atom> {
        try {
          self->state.conn->ping();
          return caf::ok_atom::value;
        } catch (const detail::backend_error& e) {
          return fail(self, e);
        }
      },
  };
}

} // namespace

connection_actor spawn_connection(caf::actor_system& sys, connection_factory connect,
                                  std::shared_ptr<connection_handle> handle, caf::actor owner,
                                  caf::timespan slice) {
  if (slice.count() > 0)
    return sys.spawn(connection, std::move(connect), std::move(handle), std::move(owner), slice);
  return sys.spawn<caf::detached>(connection, std::move(connect), std::move(handle),
                                  std::move(owner), slice);
}

} // namespace bulwark
