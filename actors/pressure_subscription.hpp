#pragma once
/// How a component subscribes to the memory pressure monitor: once, when it starts. The
/// subscription reaches the monitor now when it runs, else as soon as it starts
/// (component_directory::when_running), and the monitor keeps its subscribers across its own
/// restarts (memory_pressure_monitor_memory): nobody re-subscribes, on a tick or otherwise.
/// A subscriber that dies is dropped by the monitor; its next incarnation subscribes again.

#include "actors/directory.hpp"
#include "messages/fwd.hpp"

#include <caf/send.hpp>

namespace bulwark {

struct pressure_subscription {
  /// Subscribes `self` (held weakly until then: a subscriber that is gone is not subscribed).
  template <class Self>
  static void subscribe(Self* self, component_directory& dir) {
    dir.when_running("memory_pressure_monitor", [who = self->address()](const caf::actor& mon) {
      if (auto me = caf::actor_cast<pressure_subscriber_actor>(who))
        caf::anon_send(caf::actor_cast<memory_pressure_monitor_actor>(mon),
                       caf::subscribe_atom::value, std::move(me));
    });
  }

  /// Reports what the component did about a change to the monitor (for its history).
  template <class Self>
  static void report(Self* self, const component_directory& dir, const std::string& component,
                     pressure_level level, std::string what) {
    if (auto mon = dir.get<memory_pressure_monitor_actor>("memory_pressure_monitor"))
      self->send(mon, pressure_action{component, level, std::move(what)});
  }
};

} // namespace bulwark
