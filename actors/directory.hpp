#pragma once
/// The component directory: the one place that knows which actor currently serves each component
/// name. Supervisors write it on every (re)start and exit; everyone else reads it. Callers that
/// look a component up per call (HTTP, the front door) therefore never hold a stale handle across
/// a restart; a one-time hand-over (a pressure subscription, cleanup tasks) waits here for its
/// component to run (`when_running`). Thread-safe: HTTP threads and actors read it at once.

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace bulwark {

enum class component_state {
  starting,   ///< the factory is running
  running,    ///< serving
  restarting, ///< exited abnormally; waiting out the restart backoff
  stopped,    ///< exited normally (or a temporary child that is not restarted)
  failed,     ///< its supervisor gave up (restart intensity exceeded)
};

const char* to_string(component_state x);

struct component_info {
  std::string name;
  std::string supervisor; ///< empty for the root
  component_state state = component_state::starting;
  uint64_t restarts = 0;
  std::string last_exit_reason; ///< empty while it never exited
  caf::actor handle;            ///< invalid unless running
};

class component_directory {
public:
  /// Declares a component (in start order); its state is `starting`.
  void declare(const std::string& name, const std::string& supervisor);

  /// The component runs as `handle`; calls what waited for it (`when_running`), after unlocking.
  void set_running(const std::string& name, caf::actor handle);

  /// Calls `fn` once with the handle that serves `name`: now, on this thread, when it runs
  /// already; else from the `set_running` that starts it (on that caller's thread). For a
  /// one-time hand-over that must not be lost while a component (re)starts.
  void when_running(const std::string& name, std::function<void(const caf::actor&)> fn);

  /// The component exited; it has no handle until it runs again.
  void set_exited(const std::string& name, component_state state, const std::string& reason);

  void count_restart(const std::string& name);

  /// Removes a component (a supervisor that stops for good).
  void erase(const std::string& name);

  /// The handle that serves `name` right now, or an invalid handle.
  caf::actor lookup(const std::string& name) const;

  template <class Handle>
  Handle get(const std::string& name) const {
    return caf::actor_cast<Handle>(lookup(name));
  }

  /// All components in declaration order.
  std::vector<component_info> snapshot() const;

  /// Why the engine is not ready: one line per component that is not running. Empty when every
  /// declared component runs.
  std::vector<std::string> not_ready_reasons() const;

  /// Blocks until every declared component runs or `timeout` passed; true when all run.
  /// For boot and tests, from non-actor threads only.
  bool wait_all_running(std::chrono::milliseconds timeout) const;

private:
  bool all_running_locked() const;

  mutable std::mutex mtx_;
  mutable std::condition_variable changed_;
  std::vector<std::string> order_;
  std::unordered_map<std::string, component_info> entries_;
  std::unordered_map<std::string, std::vector<std::function<void(const caf::actor&)>>> waiting_;
};

} // namespace bulwark
