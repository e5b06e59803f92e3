#include "actors/detail/backend.hpp"

namespace bulwark::detail {

const char* to_string(backend_error_kind x) {
  switch (x) {
  case backend_error_kind::connection:
    return "connection";
  case backend_error_kind::busy:
    return "busy";
  case backend_error_kind::cancelled:
    return "cancelled";
  case backend_error_kind::statement:
    return "statement";
  case backend_error_kind::query:
    return "query";
  }
  return "unknown";
}

} // namespace bulwark::detail
