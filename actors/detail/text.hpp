#pragma once
/// Small text helpers shared by the CAF-free cores for their human-readable messages (config
/// problems, transition reasons).

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <string>

namespace bulwark::detail {

/// printf into a std::string (at most 255 characters: these are one-line messages).
inline std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

inline std::string format(const char* fmt, ...) {
  char buf[256];
  va_list args;
  va_start(args, fmt);
  auto n = std::vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  return std::string(buf, static_cast<std::size_t>(std::clamp(n, 0, int(sizeof(buf)) - 1)));
}

/// A duration in seconds, for messages.
inline double secs(std::chrono::nanoseconds x) {
  return std::chrono::duration<double>(x).count();
}

} // namespace bulwark::detail
