// An application that embeds Bulwark from its installed package (find_package(bulwark)): it
// starts the engine from a config file, runs a named query through the facade, and the same query
// from an actor of its own, which asks the engine's front door like any caller.
//
//   embedder CONFIG STATEMENT ID     prints both answers' first rows; exit 0 when both are served

#include "runtime/facade.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <future>
#include <iostream>

namespace {

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
  auto node = bulwark::embedded::from_file(argv[1]);
  int64_t id = std::stoll(argv[3]);

  auto r = node->query(argv[2], {id}).get();
  if (!r.ok()) {
    std::cerr << "facade: " << r.info.http_status << " " << r.info.error << "\n";
    return 1;
  }
  std::cout << "facade: " << r.result.rows.size() << " rows, columns";
  for (auto& c : r.result.columns)
    std::cout << " " << c;
  std::cout << "\n";

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
