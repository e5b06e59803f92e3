#pragma once
/// How a component subscribes to the memory pressure monitor and stays subscribed: it looks the
/// monitor up in the directory (never a stale handle), monitors it, and subscribes again after
/// the monitor went away (call `ensure` from a periodic handler and `on_down` from the down
/// handler). Subscribing twice is harmless: the monitor keeps one entry per subscriber.

#include "actors/directory.hpp"
#include "messages/fwd.hpp"

namespace bulwark {

class pressure_subscription {
public:
  /// Subscribes `self` unless already subscribed; false when the monitor is not running now.
  template <class Self>
  bool ensure(Self* self, const component_directory& dir) {
    if (monitor_)
      return true;
    auto mon = dir.get<memory_pressure_monitor_actor>("memory_pressure_monitor");
    if (!mon)
      return false;
    monitor_ = mon.address();
    self->monitor(mon);
    self->send(mon, caf::subscribe_atom::value, pressure_subscriber_actor{self});
    return true;
  }

  /// True when the down message was the monitor's (the next `ensure` subscribes again).
  bool on_down(const caf::actor_addr& source) {
    if (!monitor_ || source != monitor_)
      return false;
    monitor_ = nullptr;
    return true;
  }

  /// Reports what the component did about a change to the monitor (for its history).
  template <class Self>
  static void report(Self* self, const component_directory& dir, const std::string& component,
                     pressure_level level, std::string what) {
    if (auto mon = dir.get<memory_pressure_monitor_actor>("memory_pressure_monitor"))
      self->send(mon, pressure_action{component, level, std::move(what)});
  }

private:
  caf::actor_addr monitor_;
};

} // namespace bulwark
