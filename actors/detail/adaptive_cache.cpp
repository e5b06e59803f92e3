#include "actors/detail/adaptive_cache.hpp"

namespace bulwark::detail {

const char* to_string(eviction_reason r) {
  switch (r) {
  case eviction_reason::capacity:
    return "capacity";
  case eviction_reason::expired:
    return "expired";
  case eviction_reason::pressure:
    return "pressure";
  }
  return "unknown";
}

const char* to_string(put_status s) {
  switch (s) {
  case put_status::stored:
    return "stored";
  case put_status::refused_too_large:
    return "too_large";
  case put_status::refused_admission:
    return "admission";
  }
  return "unknown";
}

} // namespace bulwark::detail
