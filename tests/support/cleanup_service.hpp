#pragma once
/// The node's cleanup manager in a test's directory, so a component's periodic work (its cleanup
/// tasks) runs on the test clock as it does in the node: registered by the component, run by a
/// task timer. Declare it before the component under test, like the engine does.

#include "actors/cleanup_manager.hpp"
#include "support/test_system.hpp"

#include <memory>

namespace bulwark::test {

struct cleanup_service {
  prometheus::Registry registry;
  cleanup_manager_metrics metrics{registry};
  cleanup_manager_actor manager;

  cleanup_service(test_system& t, const std::shared_ptr<component_directory>& dir,
                  cleanup_manager_config cfg = {}) {
    manager = t.keep(spawn_cleanup_manager(t.sys, cfg, dir, &metrics,
                                           std::make_shared<cleanup_manager_memory>()));
    dir->declare("cleanup_manager", "");
    dir->set_running("cleanup_manager", caf::actor_cast<caf::actor>(manager));
  }

  /// The registered tasks, as /v1/status shows them.
  std::vector<cleanup_task_status> tasks(test_system& t) {
    auto s = t.ask<std::vector<cleanup_task_status>>(manager, caf::get_atom::value);
    return s ? *s : std::vector<cleanup_task_status>{};
  }
};

} // namespace bulwark::test
