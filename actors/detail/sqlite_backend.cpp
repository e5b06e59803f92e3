/// The SQLite backend: one sqlite3 handle, statements prepared once per name and kept
/// (SQLITE_PREPARE_PERSISTENT), rows stepped one at a time so a bound stops the work early.
///
/// Error kinds: detail/backend_errors.hpp (classify_sqlite).

#include "actors/detail/backend.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

namespace bulwark::detail {

namespace {

/// Byte accounting, kept identical in postgres_backend.cpp: a number counts 8 bytes, a string
/// its length, and every cell a small fixed overhead (so NULL-only rows still cost something).
constexpr size_t number_bytes = 8;
constexpr size_t cell_overhead = 8;

/// Resets a statement when the scope ends, whatever happened (an exception, a bound).
struct reset_guard {
  sqlite3_stmt* stmt;
  ~reset_guard() { sqlite3_reset(stmt); }
};

/// Owns a statement that is not kept (explain, exec).
struct stmt_ptr {
  sqlite3_stmt* stmt = nullptr;
  stmt_ptr() = default;
  stmt_ptr(const stmt_ptr&) = delete;
  stmt_ptr& operator=(const stmt_ptr&) = delete;
  ~stmt_ptr() { sqlite3_finalize(stmt); }
};

class sqlite_connection final : public connection {
public:
  explicit sqlite_connection(const sqlite_options& opts) : path_(opts.path) {
    auto rc =
        sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw backend_error(backend_error_kind::connection,
                          "sqlite: cannot open '" + path_ + "': " + msg);
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, opts.busy_timeout_ms);
    try {
      // The file is only read here (opening is lazy): a file that is no database fails now.
      // WAL lets readers on other connections work while one writes; an in-memory database
      // keeps its "memory" journal, which is fine.
      auto what = "cannot open '" + path_ + "'";
      // Switching to WAL needs a moment of exclusive access, and SQLite answers BUSY at once,
      // without its busy handler, while another connection is opening or writing (seen under
      // load: one of several connections opening together failed "database is locked"). The
      // mode persists in the file, so it is only set when it is not WAL yet, and a busy answer
      // is retried for up to busy_timeout (this runs on the connection's own thread).
      auto deadline = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(std::max(opts.busy_timeout_ms, 100));
      for (auto pause = std::chrono::milliseconds(1);;
           pause = std::min(pause * 2, std::chrono::milliseconds(50))) {
        try {
          auto mode = journal_mode();
          if (mode != "wal" && mode != "memory")
            exec_all("PRAGMA journal_mode=WAL", what);
          break;
        } catch (const backend_error& e) {
          if (e.kind() != backend_error_kind::contention ||
              std::chrono::steady_clock::now() >= deadline)
            throw;
          std::this_thread::sleep_for(pause);
        }
      }
      exec_all("PRAGMA foreign_keys=ON", what);
    } catch (const backend_error& e) {
      sqlite3_close_v2(db_);
      db_ = nullptr;
      // A database another connection holds locked is busy, not broken.
      if (e.kind() == backend_error_kind::contention)
        throw;
      throw backend_error(backend_error_kind::connection, e.what());
    }
  }

  ~sqlite_connection() override {
    for (auto& kv : stmts_)
      sqlite3_finalize(kv.second.stmt);
    sqlite3_close_v2(db_);
  }

  const char* kind() const override { return "sqlite"; }

  void prepare(const std::string& name, const std::string& sql, size_t param_count) override {
    if (auto i = stmts_.find(name); i != stmts_.end()) {
      if (i->second.sql == sql && i->second.params == param_count)
        return;
      sqlite3_finalize(i->second.stmt);
      stmts_.erase(i);
    }
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    auto rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size() + 1),
                                 SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK)
      fail(rc, true, "cannot prepare '" + name + "'");
    if (stmt == nullptr)
      throw backend_error(backend_error_kind::statement,
                          "sqlite: cannot prepare '" + name + "': no statement in the text");
    if (!only_comments(tail)) {
      sqlite3_finalize(stmt);
      throw backend_error(backend_error_kind::statement,
                          "sqlite: cannot prepare '" + name + "': more than one statement");
    }
    auto n = static_cast<size_t>(sqlite3_bind_parameter_count(stmt));
    if (n != param_count) {
      sqlite3_finalize(stmt);
      throw backend_error(backend_error_kind::statement,
                          "sqlite: cannot prepare '" + name + "': it has " + std::to_string(n) +
                              " parameters, " + std::to_string(param_count) + " declared");
    }
    // "$N" is a named parameter to SQLite, numbered in order of first appearance: in
    // "SET name = $2 WHERE id = $1", $2 is index 1. Bind parameter N where "$N" is ("?"
    // placeholders have no name: position N).
    std::vector<int> index(param_count);
    for (size_t k = 0; k < param_count; ++k) {
      auto at = sqlite3_bind_parameter_index(stmt, ("$" + std::to_string(k + 1)).c_str());
      index[k] = at > 0 ? at : static_cast<int>(k + 1);
    }
    stmts_.emplace(name, prepared{stmt, sql, param_count, std::move(index)});
  }

  result_set execute(const std::string& name, const std::vector<sql_value>& params,
                     const fetch_limits& limits) override {
    auto i = stmts_.find(name);
    if (i == stmts_.end())
      throw backend_error(backend_error_kind::statement,
                          "sqlite: no prepared statement named '" + name + "'");
    auto& p = i->second;
    if (params.size() != p.params)
      throw backend_error(backend_error_kind::statement,
                          "sqlite: '" + name + "' takes " + std::to_string(p.params) +
                              " parameters, got " + std::to_string(params.size()));
    auto* stmt = p.stmt;
    if (slice_end_ && !sqlite3_stmt_readonly(stmt))
      throw slice_over("'" + name + "' writes");
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    reset_guard guard{stmt};
    for (size_t k = 0; k < params.size(); ++k)
      bind(stmt, p.index[k], static_cast<int>(k + 1), params[k], name);
    result_set res;
    auto ncols = sqlite3_column_count(stmt);
    res.columns.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c)
      res.columns.emplace_back(sqlite3_column_name(stmt, c));
    auto changes_before = sqlite3_total_changes64(db_);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      // The bound is checked against a row that exists, so "truncated" is never a guess.
      if (res.row_count >= limits.max_rows) {
        res.truncated = true;
        res.truncated_by = "rows";
        break;
      }
      size_t row_bytes = 0;
      for (int c = 0; c < ncols; ++c) {
        switch (sqlite3_column_type(stmt, c)) {
        case SQLITE_INTEGER:
        case SQLITE_FLOAT:
          row_bytes += number_bytes + cell_overhead;
          break;
        case SQLITE_TEXT:
        case SQLITE_BLOB:
          row_bytes += static_cast<size_t>(sqlite3_column_bytes(stmt, c)) + cell_overhead;
          break;
        default:
          row_bytes += cell_overhead;
        }
      }
      if (res.bytes + row_bytes > limits.max_bytes) {
        res.truncated = true;
        res.truncated_by = "bytes";
        break;
      }
      if (limits.admit && !limits.admit(res.bytes + row_bytes, res.row_count + 1,
                                        (res.row_count + 1) * static_cast<size_t>(ncols))) {
        res.truncated = true;
        res.truncated_by = "memory";
        break;
      }
      res.bytes += row_bytes;
      auto& row = res.rows.emplace_back();
      row.reserve(static_cast<size_t>(ncols));
      for (int c = 0; c < ncols; ++c)
        row.push_back(cell(stmt, c));
      ++res.row_count;
      if (limits.sink) {
        if (auto why = limits.sink(res)) {
          res.truncated = true;
          res.truncated_by = why;
          break;
        }
      }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      if (slice_end_ && slice_spent_)
        throw slice_over("'" + name + "' ran past its slice");
      if (slice_end_ && ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED))
        throw slice_over("'" + name + "' would wait for a lock");
      fail(rc, false, "'" + name + "' failed");
    }
    // sqlite3_changes() keeps the count of the last INSERT/UPDATE/DELETE, so a DDL statement
    // would report a stale number: count only when this statement changed something.
    if (!sqlite3_stmt_readonly(stmt) && sqlite3_total_changes64(db_) != changes_before)
      res.rows_affected = sqlite3_changes64(db_);
    return res;
  }

  /// Prepares and steps each statement of `sql` in turn (what sqlite3_exec does), so that
  /// errors while preparing map to `statement` and errors while running to their own kind.
  void exec(const std::string& sql) override { exec_all(sql); }

  std::vector<std::string> explain(const std::string& sql) override {
    // Parameters left unbound are NULL, which is all EXPLAIN QUERY PLAN needs.
    stmt_ptr s;
    auto text = "EXPLAIN QUERY PLAN " + sql;
    auto rc =
        sqlite3_prepare_v2(db_, text.c_str(), static_cast<int>(text.size() + 1), &s.stmt, nullptr);
    if (rc != SQLITE_OK)
      fail(rc, true, "cannot explain");
    std::vector<std::string> out;
    if (s.stmt == nullptr)
      return out;
    int detail = 3; // id, parent, notused, detail
    for (int c = 0; c < sqlite3_column_count(s.stmt); ++c)
      if (std::strcmp(sqlite3_column_name(s.stmt, c), "detail") == 0)
        detail = c;
    while ((rc = sqlite3_step(s.stmt)) == SQLITE_ROW) {
      auto* t = sqlite3_column_text(s.stmt, detail);
      out.emplace_back(t != nullptr ? reinterpret_cast<const char*>(t) : "");
    }
    if (rc != SQLITE_DONE)
      fail(rc, false, "cannot explain");
    return out;
  }

  void ping() override { exec_all("SELECT 1"); }

  bool in_transaction() const override { return sqlite3_get_autocommit(db_) == 0; }

  std::function<void()> canceller() override {
    // sqlite3_interrupt is documented as safe to call from another thread while the handle
    // is open; a call while nothing runs is a no-op.
    auto* db = db_;
    return [db] { sqlite3_interrupt(db); };
  }

  bool set_slice(std::optional<std::chrono::steady_clock::time_point> end) override {
    if (end && !sliced_) {
      // Once: the handler stays (it does nothing outside a slice) and lock waits end at once.
      sqlite3_progress_handler(db_, slice_check_ops, &on_progress, this);
      sqlite3_busy_timeout(db_, 0);
      sliced_ = true;
    }
    slice_end_ = end;
    slice_spent_ = false;
    return true;
  }

private:
  /// How many virtual machine steps run between two looks at the clock in a slice: a few
  /// microseconds of work, so a slice ends within that of its end, and a point query (a few
  /// hundred steps) never looks.
  static constexpr int slice_check_ops = 1000;

  static int on_progress(void* p) {
    auto* self = static_cast<sqlite_connection*>(p);
    if (!self->slice_end_ || std::chrono::steady_clock::now() < *self->slice_end_)
      return 0;
    self->slice_spent_ = true;
    return 1; // SQLITE_INTERRUPT
  }

  struct prepared {
    sqlite3_stmt* stmt;
    std::string sql;
    size_t params;
    std::vector<int> index; ///< SQLite's index of parameter $1, $2, ...
  };

  /// `parameter`: the 1-based parameter being bound when it failed, else 0.
  [[noreturn]] void fail(int rc, bool preparing, const std::string& what, int parameter = 0) const {
    auto code = sqlite3_extended_errcode(db_);
    std::string msg = (rc & 0xff) == (code & 0xff) ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    auto kind = classify_sqlite(rc, preparing);
    throw backend_error(kind, "sqlite: " + what + ": " + msg,
                        kind == backend_error_kind::constraint ? sqlite_constraint(msg) : "",
                        parameter);
  }

  /// Binds `v` at SQLite's index `idx` as the statement's parameter `position` (1-based, what
  /// an error names).
  void bind(sqlite3_stmt* stmt, int idx, int position, const sql_value& v,
            const std::string& name) {
    int rc = SQLITE_OK;
    if (std::holds_alternative<std::monostate>(v))
      rc = sqlite3_bind_null(stmt, idx);
    else if (auto* i = std::get_if<int64_t>(&v))
      rc = sqlite3_bind_int64(stmt, idx, *i);
    else if (auto* d = std::get_if<double>(&v))
      rc = sqlite3_bind_double(stmt, idx, *d);
    else if (auto* s = std::get_if<std::string>(&v))
      rc = sqlite3_bind_text64(stmt, idx, s->data(), s->size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    else if (auto* b = std::get_if<bool>(&v))
      rc = sqlite3_bind_int64(stmt, idx, *b ? 1 : 0);
    if (rc != SQLITE_OK)
      fail(rc, true, "cannot bind parameter " + std::to_string(position) + " of '" + name + "'",
           position);
  }

  static sql_value cell(sqlite3_stmt* stmt, int c) {
    switch (sqlite3_column_type(stmt, c)) {
    case SQLITE_INTEGER:
      return static_cast<int64_t>(sqlite3_column_int64(stmt, c));
    case SQLITE_FLOAT:
      return sqlite3_column_double(stmt, c);
    case SQLITE_TEXT: {
      auto* t = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
      return std::string(t != nullptr ? t : "", static_cast<size_t>(sqlite3_column_bytes(stmt, c)));
    }
    case SQLITE_BLOB: {
      auto* b = static_cast<const char*>(sqlite3_column_blob(stmt, c));
      auto n = static_cast<size_t>(sqlite3_column_bytes(stmt, c));
      return b != nullptr ? std::string(b, n) : std::string();
    }
    default:
      return std::monostate{};
    }
  }

  /// True if `tail` (what follows the first statement) holds no further statement.
  bool only_comments(const char* tail) const {
    if (tail == nullptr || *tail == '\0')
      return true;
    stmt_ptr s;
    return sqlite3_prepare_v2(db_, tail, -1, &s.stmt, nullptr) == SQLITE_OK && s.stmt == nullptr;
  }

  /// The file's journal mode, lower case ("wal", "delete", "memory", ...).
  std::string journal_mode() {
    stmt_ptr st;
    auto rc = sqlite3_prepare_v2(db_, "PRAGMA journal_mode", -1, &st.stmt, nullptr);
    if (rc != SQLITE_OK)
      fail(rc, true, "cannot read the journal mode of '" + path_ + "'");
    rc = sqlite3_step(st.stmt);
    if (rc != SQLITE_ROW)
      fail(rc, false, "cannot read the journal mode of '" + path_ + "'");
    auto text = reinterpret_cast<const char*>(sqlite3_column_text(st.stmt, 0));
    return text != nullptr ? std::string{text} : std::string{};
  }

  void exec_all(const std::string& sql, const std::string& what = "SQL failed") {
    const char* p = sql.c_str();
    const char* end = p + sql.size();
    while (p < end) {
      stmt_ptr s;
      const char* tail = nullptr;
      auto rc = sqlite3_prepare_v2(db_, p, static_cast<int>(end - p), &s.stmt, &tail);
      if (rc != SQLITE_OK)
        fail(rc, true, what);
      if (s.stmt == nullptr) // only whitespace or comments left
        break;
      while ((rc = sqlite3_step(s.stmt)) == SQLITE_ROW) {
      }
      if (rc != SQLITE_DONE)
        fail(rc, false, what);
      p = tail;
    }
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  bool sliced_ = false; ///< set_slice was called: the progress handler is installed
  std::optional<std::chrono::steady_clock::time_point> slice_end_;
  bool slice_spent_ = false; ///< the progress handler stopped the statement at slice_end_
  std::unordered_map<std::string, prepared> stmts_;
};

} // namespace

std::unique_ptr<connection> connect_sqlite(const sqlite_options& opts) {
  // SQLite's memory statistics take one process-wide mutex on every allocation, which makes
  // connections on different threads queue behind each other (two threads ran a CPU-bound query
  // slower than one). Nothing here reads those statistics. sqlite3_config only works before
  // SQLite initialises; if the embedding application got there first, its setting stands.
  static std::once_flag once;
  std::call_once(once, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  return std::make_unique<sqlite_connection>(opts);
}

} // namespace bulwark::detail
