#include "actors/detail/backend_errors.hpp"

#include <sqlite3.h>

#include <cctype>

namespace bulwark::detail {

const char* to_string(backend_error_kind x) {
  switch (x) {
  case backend_error_kind::connection:
    return "connection";
  case backend_error_kind::server:
    return "server";
  case backend_error_kind::contention:
    return "contention";
  case backend_error_kind::cancelled:
    return "cancelled";
  case backend_error_kind::statement:
    return "statement";
  case backend_error_kind::constraint:
    return "constraint";
  case backend_error_kind::data:
    return "data";
  }
  return "unknown";
}

backend_fault fault_of(backend_error_kind x) {
  switch (x) {
  case backend_error_kind::statement:
  case backend_error_kind::constraint:
  case backend_error_kind::data:
    return backend_fault::caller;
  case backend_error_kind::contention:
    return backend_fault::contention;
  case backend_error_kind::connection:
  case backend_error_kind::server:
  case backend_error_kind::cancelled:
    return backend_fault::backend;
  }
  return backend_fault::backend;
}

backend_error_kind classify_sqlstate(std::string_view state) {
  using k = backend_error_kind;
  if (state.size() != 5)
    return k::server; // libpq's own errors carry no SQLSTATE
  auto cls = state.substr(0, 2);
  // Exact codes first: they refine their class.
  if (state == "57014")
    return k::cancelled;
  if (state == "40001" || state == "40P01" || state == "55P03" || state == "55006")
    return k::contention;
  if (state == "40002")
    return k::constraint;
  if (state == "57P01" || state == "57P02" || state == "57P03" || state == "57P04" ||
      state == "57P05")
    return k::connection;
  if (cls == "08" || cls == "28")
    return k::connection;
  if (cls == "23")
    return k::constraint;
  if (cls == "21" || cls == "22" || cls == "27" || cls == "44" || cls == "P0")
    return k::data;
  if (cls == "0A" || cls == "24" || cls == "25" || cls == "26" || cls == "2B" || cls == "2D" ||
      cls == "2F" || cls == "34" || cls == "3B" || cls == "3D" || cls == "3F" || cls == "42" ||
      cls == "54" || cls == "55")
    return k::statement;
  // 53 (insufficient resources), 58 (system error), XX (internal), 57000, 40003, F0, HV, the
  // rest: the backend's own trouble.
  return k::server;
}

backend_error_kind classify_sqlite(int rc, bool preparing) {
  using k = backend_error_kind;
  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
  case SQLITE_ABORT:  // a statement aborted by a rollback elsewhere
  case SQLITE_SCHEMA: // the schema changed under the statement
    return k::contention;
  case SQLITE_INTERRUPT:
    return k::cancelled;
  case SQLITE_CANTOPEN:
  case SQLITE_NOTADB:
  case SQLITE_IOERR:
  case SQLITE_CORRUPT:
    return k::connection;
  case SQLITE_CONSTRAINT:
    return k::constraint;
  case SQLITE_MISMATCH:
  case SQLITE_RANGE:
  case SQLITE_TOOBIG:
    return k::data;
  case SQLITE_AUTH:
  case SQLITE_PERM:
  case SQLITE_READONLY:
    return k::statement;
  case SQLITE_ERROR:
    // While preparing: syntax, an unknown table or column. While running, SQLite's generic
    // error is what a function says of its argument ("malformed JSON", "integer overflow").
    return preparing ? k::statement : k::data;
  default:
    return k::server;
  }
}

std::string sqlite_constraint(std::string_view message) {
  constexpr std::string_view marker = " constraint failed";
  auto at = message.find(marker);
  if (at == std::string_view::npos)
    return {};
  auto rest = message.substr(at + marker.size());
  if (rest.size() > 2 && rest[0] == ':' && rest[1] == ' ')
    return std::string{rest.substr(2)};
  // No name after the marker: the constraint's kind is all SQLite says ("FOREIGN KEY").
  auto start = message.rfind(": ", at);
  start = start == std::string_view::npos ? 0 : start + 2;
  return std::string{message.substr(start, at - start)};
}

int postgres_parameter(std::string_view context) {
  constexpr std::string_view marker = "parameter $";
  auto at = context.find(marker);
  if (at == std::string_view::npos)
    return 0;
  int n = 0;
  for (auto i = at + marker.size(); i < context.size() && std::isdigit(context[i]) != 0; ++i) {
    n = n * 10 + (context[i] - '0');
    if (n > 65535) // PostgreSQL allows at most 65535 parameters
      return 0;
  }
  return n;
}

} // namespace bulwark::detail
