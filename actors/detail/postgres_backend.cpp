/// The PostgreSQL backend over libpq, blocking, one PGconn.
///
/// Streaming: execute() sends the prepared statement with PQsendQueryPrepared and switches to
/// single-row mode, so libpq hands over one row at a time and the result never holds more than
/// the bounds allow. When a bound is reached the rest is not wanted: for a read-only statement
/// outside a transaction block the server is told to stop (PQcancel), otherwise the remaining
/// rows are read and dropped, because a cancel would roll back a data change or abort the
/// caller's transaction. Either way every result is drained until PQgetResult() returns null,
/// so the connection is ready for the next call.
///
/// Error kinds come from the SQLSTATE (detail/backend_errors.hpp, classify_sqlstate), except that
/// a connection libpq reports broken (PQstatus() == CONNECTION_BAD) is `connection` whatever the
/// server said last.

#include "actors/detail/backend.hpp"

#include <libpq-fe.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <optional>
#include <unordered_map>

namespace bulwark::detail {

namespace {

/// Byte accounting, kept identical in sqlite_backend.cpp: a number counts 8 bytes, a string
/// its length, and every cell a small fixed overhead.
constexpr size_t number_bytes = 8;
constexpr size_t cell_overhead = 8;

// Built-in type OIDs (catalog/pg_type.dat; fixed across server versions).
constexpr Oid bool_oid = 16;
constexpr Oid int8_oid = 20;
constexpr Oid int2_oid = 21;
constexpr Oid int4_oid = 23;
constexpr Oid float4_oid = 700;
constexpr Oid float8_oid = 701;
constexpr Oid numeric_oid = 1700;

struct result_deleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

/// libpq's messages span lines (and tabs); errors end up in one log line.
std::string one_line(const char* s) {
  std::string out;
  for (; s != nullptr && *s != '\0'; ++s) {
    bool blank = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r';
    if (!blank)
      out += *s;
    else if (!out.empty() && out.back() != ' ')
      out += ' ';
  }
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.compare(0, std::strlen(prefix), prefix) == 0;
}

/// True when the statement's first keyword is SELECT, VALUES, TABLE or SHOW: cancelling it
/// after a bound loses nothing. WITH may hide a data change, so it is not on the list.
bool reads_only(const std::string& sql) {
  size_t i = 0;
  while (i < sql.size()) {
    auto ch = sql[i];
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '(') {
      ++i;
    } else if (sql.compare(i, 2, "--") == 0) {
      auto nl = sql.find('\n', i);
      i = nl == std::string::npos ? sql.size() : nl + 1;
    } else if (sql.compare(i, 2, "/*") == 0) {
      auto end = sql.find("*/", i + 2);
      i = end == std::string::npos ? sql.size() : end + 2;
    } else {
      break;
    }
  }
  std::string word;
  for (; i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i])); ++i)
    word += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i])));
  return word == "SELECT" || word == "VALUES" || word == "TABLE" || word == "SHOW";
}

std::string to_text(const sql_value& v) {
  if (auto* i = std::get_if<int64_t>(&v))
    return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v)) {
    if (std::isnan(*d))
      return "NaN";
    if (std::isinf(*d))
      return *d > 0 ? "Infinity" : "-Infinity";
    char buf[64];
    // Shortest text that reads back as the same double, independent of the C locale.
    auto r = std::to_chars(buf, buf + sizeof buf, *d);
    return std::string(buf, r.ptr);
  }
  if (auto* b = std::get_if<bool>(&v))
    return *b ? "true" : "false";
  return std::get<std::string>(v);
}

sql_value cell(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col))
    return std::monostate{};
  const char* v = PQgetvalue(r, row, col);
  auto len = static_cast<size_t>(PQgetlength(r, row, col));
  switch (PQftype(r, col)) {
  case int2_oid:
  case int4_oid:
  case int8_oid: {
    int64_t x = 0;
    if (std::from_chars(v, v + len, x).ec == std::errc{})
      return x;
    break;
  }
  case float4_oid:
  case float8_oid:
  case numeric_oid: {
    // from_chars reads "NaN", "Infinity" and "-Infinity" too, and ignores the C locale. A
    // numeric beyond double's range stays text rather than becoming a wrong number.
    double x = 0;
    if (std::from_chars(v, v + len, x).ec == std::errc{})
      return x;
    break;
  }
  case bool_oid:
    return v[0] == 't';
  default:
    break;
  }
  return std::string(v, len);
}

size_t cell_bytes(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col))
    return cell_overhead;
  switch (PQftype(r, col)) {
  case int2_oid:
  case int4_oid:
  case int8_oid:
  case float4_oid:
  case float8_oid:
  case numeric_oid:
  case bool_oid:
    return number_bytes + cell_overhead;
  default:
    return static_cast<size_t>(PQgetlength(r, row, col)) + cell_overhead;
  }
}

/// What the server (or libpq) reported; the kind is decided once the results are drained,
/// when PQstatus() tells whether the connection survived.
struct pg_failure {
  pg_failure(std::string state, std::string msg)
      : sqlstate(std::move(state)), message(std::move(msg)) {}
  std::string sqlstate;
  std::string message;
  std::string constraint; ///< PG_DIAG_CONSTRAINT_NAME, or the column of a NOT NULL violation
  int parameter = 0;      ///< the parameter the error context names (a value it cannot bind)
};

class postgres_connection final : public connection {
public:
  explicit postgres_connection(const postgres_options& opts) {
    auto timeout = std::to_string(opts.connect_timeout_s);
    // `conninfo` goes in as an expanded dbname (key=value or URI). Array entries before it are
    // overridden by its fields, so a connect_timeout in the conninfo wins over ours.
    const char* keys[] = {"connect_timeout", "dbname", nullptr};
    const char* values[] = {timeout.c_str(), opts.conninfo.c_str(), nullptr};
    conn_ = PQconnectdbParams(keys, values, 1);
    if (conn_ == nullptr)
      throw backend_error(backend_error_kind::connection,
                          "postgres: cannot connect: out of memory");
    if (PQstatus(conn_) != CONNECTION_OK) {
      auto msg = one_line(PQerrorMessage(conn_));
      PQfinish(conn_);
      throw backend_error(backend_error_kind::connection, "postgres: cannot connect: " + msg);
    }
    // Notices (e.g. "table does not exist, skipping") are not errors; libpq would print them
    // on stderr by default.
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
    cancel_ = PQgetCancel(conn_);
    if (cancel_ == nullptr) {
      PQfinish(conn_);
      throw backend_error(backend_error_kind::connection,
                          "postgres: cannot connect: no cancel handle");
    }
  }

  ~postgres_connection() override {
    PQfreeCancel(cancel_);
    PQfinish(conn_);
  }

  const char* kind() const override { return "postgres"; }

  void prepare(const std::string& name, const std::string& sql, size_t param_count) override {
    if (auto i = stmts_.find(name); i != stmts_.end()) {
      if (i->second.sql == sql && i->second.params == param_count)
        return;
      deallocate(name);
      stmts_.erase(i);
    }
    check_alive();
    auto what = "cannot prepare '" + name + "'";
    // No parameter types: the server infers them from the statement (casts in the SQL decide).
    result_ptr r{PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr)};
    expect(r.get(), PGRES_COMMAND_OK, what);
    result_ptr d{PQdescribePrepared(conn_, name.c_str())};
    expect(d.get(), PGRES_COMMAND_OK, what);
    auto n = static_cast<size_t>(PQnparams(d.get()));
    if (n != param_count) {
      deallocate(name);
      throw backend_error(backend_error_kind::statement,
                          "postgres: " + what + ": it has " + std::to_string(n) + " parameters, " +
                              std::to_string(param_count) + " declared");
    }
    stmts_.emplace(name, prepared{sql, param_count, reads_only(sql)});
  }

  result_set execute(const std::string& name, const std::vector<sql_value>& params,
                     const fetch_limits& limits) override {
    auto i = stmts_.find(name);
    if (i == stmts_.end())
      throw backend_error(backend_error_kind::statement,
                          "postgres: no prepared statement named '" + name + "'");
    if (params.size() != i->second.params)
      throw backend_error(backend_error_kind::statement,
                          "postgres: '" + name + "' takes " + std::to_string(i->second.params) +
                              " parameters, got " + std::to_string(params.size()));
    check_alive();
    std::vector<std::string> texts(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    for (size_t k = 0; k < params.size(); ++k) {
      if (std::holds_alternative<std::monostate>(params[k]))
        continue;
      texts[k] = to_text(params[k]);
      values[k] = texts[k].c_str();
    }
    // Outside a transaction block a cancel only ends this statement; inside one it would abort
    // the caller's transaction.
    bool may_cancel = i->second.reads_only && PQtransactionStatus(conn_) == PQTRANS_IDLE;
    if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(params.size()), values.data(),
                            nullptr, nullptr, 0) == 0) {
      pg_failure f{"", one_line(PQerrorMessage(conn_))};
      drain();
      throw error_of(f, "'" + name + "' failed");
    }
    // Fails only if called at the wrong moment; then rows simply arrive in one result.
    PQsetSingleRowMode(conn_);
    result_set res;
    bool stopped = false;
    bool cancel_sent = false;
    std::optional<pg_failure> failure;
    auto stop = [&](const char* by) {
      res.truncated = true;
      res.truncated_by = by;
      stopped = true;
      if (may_cancel) {
        char errbuf[256];
        cancel_sent = PQcancel(cancel_, errbuf, sizeof errbuf) == 1;
      }
    };
    for (result_ptr r{PQgetResult(conn_)}; r != nullptr; r.reset(PQgetResult(conn_))) {
      auto* pr = r.get();
      switch (PQresultStatus(pr)) {
      case PGRES_SINGLE_TUPLE:
      case PGRES_TUPLES_OK: {
        if (res.columns.empty())
          for (int c = 0; c < PQnfields(pr); ++c)
            res.columns.emplace_back(PQfname(pr, c));
        auto ncols = PQnfields(pr);
        for (int row = 0; row < PQntuples(pr) && !stopped; ++row) {
          // The bound is checked against a row that exists, so "truncated" is never a guess.
          if (res.row_count >= limits.max_rows) {
            stop("rows");
            break;
          }
          size_t row_bytes = 0;
          for (int c = 0; c < ncols; ++c)
            row_bytes += cell_bytes(pr, row, c);
          if (res.bytes + row_bytes > limits.max_bytes) {
            stop("bytes");
            break;
          }
          if (limits.admit && !limits.admit(res.bytes + row_bytes, res.row_count + 1,
                                            (res.row_count + 1) * static_cast<size_t>(ncols))) {
            stop("memory");
            break;
          }
          res.bytes += row_bytes;
          auto& out = res.rows.emplace_back();
          out.reserve(static_cast<size_t>(ncols));
          for (int c = 0; c < ncols; ++c)
            out.push_back(cell(pr, row, c));
          ++res.row_count;
          if (limits.sink) {
            if (auto why = limits.sink(res)) {
              stop(why);
              break;
            }
          }
        }
        if (PQresultStatus(pr) == PGRES_TUPLES_OK)
          res.rows_affected = affected(pr);
        break;
      }
      case PGRES_COMMAND_OK:
        res.rows_affected = affected(pr);
        break;
      case PGRES_EMPTY_QUERY:
        break;
      case PGRES_COPY_IN:
      case PGRES_COPY_OUT:
      case PGRES_COPY_BOTH:
        end_copy();
        if (!failure)
          failure = pg_failure{"", "COPY is not supported here"};
        break;
      default: {
        auto f = failure_of(pr);
        // The server's answer to our own cancel after a bound: the rows we kept are complete.
        if (cancel_sent && f.sqlstate == "57014")
          break;
        if (!failure)
          failure = std::move(f);
      }
      }
    }
    if (failure)
      throw error_of(*failure, "'" + name + "' failed");
    return res;
  }

  void exec(const std::string& sql) override {
    check_alive();
    if (PQsendQuery(conn_, sql.c_str()) == 0) {
      pg_failure f{"", one_line(PQerrorMessage(conn_))};
      drain();
      throw error_of(f, "SQL failed");
    }
    std::optional<pg_failure> failure;
    for (result_ptr r{PQgetResult(conn_)}; r != nullptr; r.reset(PQgetResult(conn_))) {
      auto st = PQresultStatus(r.get());
      if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        end_copy();
        if (!failure)
          failure = pg_failure{"", "COPY is not supported here"};
      } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY &&
                 !failure) {
        failure = failure_of(r.get());
      }
    }
    if (failure)
      throw error_of(*failure, "SQL failed");
  }

  /// Prepares `sql` under a fresh name, then runs `EXPLAIN EXECUTE name(NULL, ...)` with
  /// plan_cache_mode = force_generic_plan (restored afterwards). The generic plan keeps $1 as
  /// a parameter: a custom plan for NULL arguments would fold `col = $1` to a constant false
  /// and show nothing useful, while the generic plan is what a prepared statement mostly runs.
  /// (PostgreSQL 16 has EXPLAIN (GENERIC_PLAN) for this; 15 does not.)
  std::vector<std::string> explain(const std::string& sql) override {
    check_alive();
    auto name = "bulwark_explain_" + std::to_string(++explain_seq_);
    result_ptr p{PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr)};
    expect(p.get(), PGRES_COMMAND_OK, "cannot explain");
    struct cleanup {
      postgres_connection* self;
      std::string name;
      std::string old_mode;
      ~cleanup() {
        // Best effort: in an aborted transaction both fail, and the transaction's end undoes
        // the SET; a leftover statement has a name nothing else uses.
        try {
          if (!old_mode.empty()) {
            const char* v[] = {old_mode.c_str()};
            result_ptr{PQexecParams(self->conn_, "SELECT set_config('plan_cache_mode', $1, false)",
                                    1, nullptr, v, nullptr, nullptr, 0)};
          }
          self->deallocate(name);
        } catch (...) {
        }
      }
    } guard{this, name, {}};
    result_ptr d{PQdescribePrepared(conn_, name.c_str())};
    expect(d.get(), PGRES_COMMAND_OK, "cannot explain");
    auto call = "EXPLAIN EXECUTE " + identifier(name);
    for (int k = 0; k < PQnparams(d.get()); ++k)
      call += k == 0 ? "(NULL" : ", NULL";
    if (PQnparams(d.get()) > 0)
      call += ")";
    result_ptr mode{PQexec(conn_, "SELECT current_setting('plan_cache_mode')")};
    expect(mode.get(), PGRES_TUPLES_OK, "cannot explain");
    auto old_mode = std::string(PQgetvalue(mode.get(), 0, 0));
    result_ptr set{PQexec(conn_, "SET plan_cache_mode = force_generic_plan")};
    expect(set.get(), PGRES_COMMAND_OK, "cannot explain");
    guard.old_mode = old_mode;
    result_ptr r{PQexec(conn_, call.c_str())};
    expect(r.get(), PGRES_TUPLES_OK, "cannot explain");
    std::vector<std::string> out;
    for (int row = 0; row < PQntuples(r.get()); ++row)
      out.emplace_back(PQgetvalue(r.get(), row, 0));
    return out;
  }

  void ping() override {
    check_alive();
    result_ptr r{PQexec(conn_, "SELECT 1")};
    expect(r.get(), PGRES_TUPLES_OK, "ping failed");
  }

  bool in_transaction() const override {
    auto t = PQtransactionStatus(conn_);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
  }

  std::function<void()> canceller() override {
    // PQcancel only reads the PGcancel object (made once, freed with the connection) and
    // opens its own socket: libpq documents it as safe from another thread.
    auto* cancel = cancel_;
    return [cancel] {
      char errbuf[256];
      PQcancel(cancel, errbuf, sizeof errbuf);
    };
  }

private:
  struct prepared {
    std::string sql;
    size_t params;
    bool reads_only;
  };

  void check_alive() {
    if (PQstatus(conn_) == CONNECTION_BAD)
      throw backend_error(backend_error_kind::connection,
                          "postgres: the connection is broken: " + one_line(PQerrorMessage(conn_)));
  }

  pg_failure failure_of(const PGresult* r) const {
    auto field = [r](int code) -> const char* {
      return r != nullptr ? PQresultErrorField(r, code) : nullptr;
    };
    const char* state = field(PG_DIAG_SQLSTATE);
    // The server's primary message (and detail) without the "ERROR:" prefix and the source
    // excerpt; libpq's own errors (no fields) come whole.
    std::string msg;
    if (const char* primary = field(PG_DIAG_MESSAGE_PRIMARY)) {
      msg = one_line(primary);
      if (const char* pos = field(PG_DIAG_STATEMENT_POSITION))
        msg += std::string(" at character ") + pos;
      if (const char* detail = field(PG_DIAG_MESSAGE_DETAIL))
        msg += "; " + one_line(detail);
    } else {
      msg = one_line(r != nullptr ? PQresultErrorMessage(r) : nullptr);
    }
    if (msg.empty())
      msg = one_line(PQerrorMessage(conn_));
    pg_failure f{state != nullptr ? state : "", msg};
    if (const char* c = field(PG_DIAG_CONSTRAINT_NAME))
      f.constraint = c;
    else if (const char* col = field(PG_DIAG_COLUMN_NAME))
      f.constraint = col;
    if (const char* ctx = field(PG_DIAG_CONTEXT))
      f.parameter = postgres_parameter(ctx);
    return f;
  }

  backend_error_kind kind_of(const std::string& state) const {
    if (PQstatus(conn_) == CONNECTION_BAD)
      return backend_error_kind::connection;
    return classify_sqlstate(state);
  }

  backend_error error_of(const pg_failure& f, const std::string& what) const {
    auto msg = "postgres: " + what + ": " + f.message;
    if (!f.sqlstate.empty())
      msg += " (SQLSTATE " + f.sqlstate + ")";
    auto kind = kind_of(f.sqlstate);
    return backend_error(kind, msg, kind == backend_error_kind::constraint ? f.constraint : "",
                         kind == backend_error_kind::data ? f.parameter : 0);
  }

  /// Throws unless `r` has status `want`. Results of PQexec-style calls are complete, so the
  /// connection needs no draining here.
  void expect(const PGresult* r, ExecStatusType want, const std::string& what) const {
    if (r != nullptr && PQresultStatus(r) == want)
      return;
    throw error_of(failure_of(r), what);
  }

  /// Reads and drops whatever is still coming, so the connection can take the next command.
  void drain() {
    for (result_ptr r{PQgetResult(conn_)}; r != nullptr; r.reset(PQgetResult(conn_))) {
      auto st = PQresultStatus(r.get());
      if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
        end_copy();
    }
  }

  /// Leaves COPY state (PQgetResult would return the COPY result forever).
  void end_copy() {
    PQputCopyEnd(conn_, "COPY is not supported");
    char* buf = nullptr;
    while (PQgetCopyData(conn_, &buf, 0) > 0) {
      PQfreemem(buf);
      buf = nullptr;
    }
  }

  static int64_t affected(const PGresult* r) {
    // A SELECT's tag counts rows returned, not changed.
    if (starts_with(PQcmdStatus(const_cast<PGresult*>(r)), "SELECT"))
      return 0;
    const char* n = PQcmdTuples(const_cast<PGresult*>(r));
    int64_t x = 0;
    if (n != nullptr && *n != '\0')
      std::from_chars(n, n + std::strlen(n), x);
    return x;
  }

  std::string identifier(const std::string& name) const {
    char* q = PQescapeIdentifier(conn_, name.c_str(), name.size());
    if (q == nullptr)
      throw backend_error(backend_error_kind::statement,
                          "postgres: bad statement name '" + name + "'");
    std::string out = q;
    PQfreemem(q);
    return out;
  }

  void deallocate(const std::string& name) {
    if (PQstatus(conn_) == CONNECTION_BAD)
      return;
    auto sql = "DEALLOCATE " + identifier(name);
    result_ptr{PQexec(conn_, sql.c_str())};
  }

  PGconn* conn_ = nullptr;
  PGcancel* cancel_ = nullptr;
  std::unordered_map<std::string, prepared> stmts_;
  uint64_t explain_seq_ = 0;
};

} // namespace

std::unique_ptr<connection> connect_postgres(const postgres_options& opts) {
  return std::make_unique<postgres_connection>(opts);
}

} // namespace bulwark::detail
