#pragma once
/// Bulwark's log: one line per event on stderr, `<utc time> <level> <component>: <text>`. A plain
/// function, safe from any thread (one write per line), usable from actors and from the runtime.

#include <string>

namespace bulwark {

enum class log_level { debug = 0, info = 1, warn = 2, error = 3 };

/// Lines below this level are dropped (set once at start from `log.level`).
void set_log_level(log_level x);
log_level current_log_level();
/// `log.level`'s spelling: "debug", "info", "warn", "error" (anything else: info; the config
/// admits only these).
log_level parse_log_level(const std::string& x);

void log(log_level lvl, const std::string& component, const std::string& text);

inline void log_info(const std::string& component, const std::string& text) {
  log(log_level::info, component, text);
}
inline void log_warn(const std::string& component, const std::string& text) {
  log(log_level::warn, component, text);
}
inline void log_error(const std::string& component, const std::string& text) {
  log(log_level::error, component, text);
}

} // namespace bulwark
