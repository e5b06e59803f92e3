// An application that embeds Bulwark from its installed package (find_package(bulwark)): it
// starts the engine from a config file with an actor of its own in the engine's supervision tree
// (engine_options::application), which follows the memory-pressure signal as the built-in
// components do; runs a named query through the facade; and the same query from another actor of
// its own, which asks the engine's front door like any caller.
//
//   embedder CONFIG STATEMENT ID     prints the level heard and both answers; exit 0 when both
//                                    are served

#include "actors/pressure_subscription.hpp"
#include "runtime/facade.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <future>
#include <iostream>

namespace {

/// Supervised with the engine's components: subscribes to the pressure signal when it starts
/// (every incarnation) and reports each level it hears.
caf::behavior pressure_watcher(caf::event_based_actor* self,
                               std::shared_ptr<bulwark::component_directory> dir,
                               std::shared_ptr<std::promise<std::string>> first_level) {
  bulwark::pressure_subscription::subscribe(self, *dir);
  return {
      [=](const bulwark::pressure_changed& p) {
        // An application would shrink its own caches at high and refuse optional work at
        // critical here; this one says what it heard, once.
        try {
          first_level->set_value(to_string(p.level));
        } catch (const std::future_error&) {
        }
      },
  };
}

/// The application's own actor: asks the front door and reports what came back.
caf::behavior asker(caf::event_based_actor* self, bulwark::front_door_actor door,
                    std::promise<std::string> done) {
  auto out = std::make_shared<std::promise<std::string>>(std::move(done));
  return {
      [=](const bulwark::gateway_request& r) {
        self->request(door, std::chrono::seconds(10), r)
            .then(
                [=](const bulwark::db_result& res) {
                  out->set_value(res.rows.empty() ? "no rows"
                                                  : "rows: " + std::to_string(res.rows.size()));
                  self->quit();
                },
                [=](const caf::error& e) {
                  out->set_value("error: " + self->system().render(e));
                  self->quit();
                });
      },
  };
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " CONFIG STATEMENT ID\n";
    return 2;
  }
  auto loaded = bulwark::load_config_file(argv[1]);
  if (!loaded.ok()) {
    std::cerr << bulwark::format_errors(loaded.errors);
    return 2;
  }
  auto first_level = std::make_shared<std::promise<std::string>>();
  auto level = first_level->get_future();
  bulwark::engine_options opts;
  opts.application = [first_level](std::shared_ptr<bulwark::component_directory> dir) {
    return std::vector<bulwark::child_spec>{
        {"pressure_watcher", [dir, first_level](caf::actor_system& sys) {
           return sys.spawn(pressure_watcher, dir, first_level);
         }}};
  };
  auto node = std::make_unique<bulwark::embedded>(std::move(loaded.config), std::move(opts));
  int64_t id = std::stoll(argv[3]);
  std::cout << "pressure: " << level.get() << "\n";

  auto r = node->query(argv[2], {id}).get();
  if (!r.ok()) {
    std::cerr << "facade: " << r.info.http_status << " " << r.info.error << "\n";
    return 1;
  }
  std::cout << "facade: " << r.result.rows.size() << " rows, columns";
  for (auto& c : r.result.columns)
    std::cout << " " << c;
  std::cout << "\n";

  // The same statement twice in one transaction: both on one connection, committed together.
  auto t = node->transaction({{argv[2], {id}}, {argv[2], {id}}}).get();
  if (!t.ok()) {
    std::cerr << "transaction: " << t.info.http_status << " " << t.info.error << "\n";
    return 1;
  }
  std::cout << "transaction: " << t.result.steps.size() << " steps committed\n";

  bulwark::gateway_request g;
  g.query.statement = argv[2];
  g.query.params.emplace_back(bulwark::db_value::of(id));
  std::promise<std::string> done;
  auto answer = done.get_future();
  auto a = node->engine().system().spawn(asker, node->engine().front_door(), std::move(done));
  caf::anon_send(a, g);
  auto what = answer.get();
  std::cout << "actor: " << what << "\n";
  node->engine().stop();
  return what.rfind("rows: ", 0) == 0 ? 0 : 1;
}
