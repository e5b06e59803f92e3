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

request_priority clamp_priority(request_priority x) {
  return static_cast<uint8_t>(x) > static_cast<uint8_t>(request_priority::high)
             ? request_priority::high
             : x;
}

int32_t pool_priority(request_priority x) {
  return static_cast<int32_t>(clamp_priority(x)) - static_cast<int32_t>(request_priority::normal);
}

} // namespace bulwark
