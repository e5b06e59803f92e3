#include "messages/pressure.hpp"

namespace bulwark {

const char* to_string(pressure_level x) {
  switch (x) {
  case pressure_level::low:
    return "low";
  case pressure_level::medium:
    return "medium";
  case pressure_level::high:
    return "high";
  case pressure_level::critical:
    return "critical";
  }
  return "unknown";
}

} // namespace bulwark
