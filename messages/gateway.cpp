#include "messages/gateway.hpp"

namespace bulwark {

const char* to_string(request_priority x) {
  switch (x) {
  case request_priority::low:
    return "low";
  case request_priority::normal:
    return "normal";
  case request_priority::high:
    return "high";
  }
  return "unknown";
}

} // namespace bulwark
