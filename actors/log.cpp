#include "actors/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <unistd.h>

namespace bulwark {

namespace {
std::atomic<int> level{static_cast<int>(log_level::info)};
const char* names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
} // namespace

void set_log_level(log_level x) {
  level = static_cast<int>(x);
}

log_level current_log_level() {
  return static_cast<log_level>(level.load());
}

void log(log_level lvl, const std::string& component, const std::string& text) {
  if (static_cast<int>(lvl) < level.load(std::memory_order_relaxed))
    return;
  // Wall-clock time is right here: log lines are for humans, not for logic.
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  std::string line;
  line.reserve(64 + component.size() + text.size());
  line += stamp;
  char frac[8];
  std::snprintf(frac, sizeof(frac), ".%03dZ ", static_cast<int>(ms.count()));
  line += frac;
  line += names[static_cast<int>(lvl)];
  line += ' ';
  line += component;
  line += ": ";
  line += text;
  line += '\n';
  // One write() per line keeps lines whole when threads log at once.
  auto rc = ::write(STDERR_FILENO, line.data(), line.size());
  (void)rc;
}

log_level parse_log_level(const std::string& x) {
  if (x == "debug")
    return log_level::debug;
  if (x == "warn")
    return log_level::warn;
  if (x == "error")
    return log_level::error;
  return log_level::info;
}

} // namespace bulwark
