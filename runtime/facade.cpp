#include "runtime/facade.hpp"

#include "actors/clock.hpp"
#include "actors/log.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <filesystem>
#include <stdexcept>

namespace bulwark {

std::unique_ptr<embedded> embedded::from_file(const std::string& path) {
  auto loaded = load_config_file(path);
  if (!loaded.ok())
    throw std::runtime_error("invalid configuration " + path + ":\n" +
                             format_errors(loaded.errors));
  return std::make_unique<embedded>(std::move(loaded.config));
}

embedded::embedded(engine_config cfg, engine_options opts) {
  std::filesystem::create_directories(cfg.node.data_dir);
  engine_ = std::make_unique<bulwark::engine>(std::move(cfg), std::move(opts));
}

void embedded::query(const std::string& statement, std::vector<param> params,
                     std::function<void(query_result)> done, std::chrono::milliseconds timeout) {
  call_options opts;
  opts.timeout = timeout;
  query(statement, std::move(params), std::move(done), std::move(opts));
}

std::future<query_result> embedded::query(const std::string& statement, std::vector<param> params,
                                          std::chrono::milliseconds timeout) {
  call_options opts;
  opts.timeout = timeout;
  return query(statement, std::move(params), std::move(opts));
}

std::future<query_result> embedded::query(const std::string& statement, std::vector<param> params,
                                          call_options opts) {
  auto p = std::make_shared<std::promise<query_result>>();
  auto fut = p->get_future();
  query(
      statement, std::move(params), [p](query_result r) { p->set_value(std::move(r)); },
      std::move(opts));
  return fut;
}

namespace {

/// One facade call's answer, given exactly once and counted: the path's, or, when the call is
/// dropped unanswered (the engine stopped: its bridge actor goes with its queued jobs and
/// pending response handlers, which hold every copy), shutting_down when the last copy goes.
class call_answer {
public:
  call_answer(engine& eng, std::function<void(query_result)> done)
      : st_(std::make_shared<state>(eng, std::move(done))) {}

  void operator()(query_result r) const { st_->give(std::move(r)); }

private:
  struct state {
    state(engine& e, std::function<void(query_result)> d) : eng(e), done(std::move(d)) {
      eng.metrics().request_received();
    }
    ~state() {
      give({classify(make_error(errc::shutting_down, std::string{"engine stopped"})), {}});
    }
    state(const state&) = delete;
    state& operator=(const state&) = delete;

    void give(query_result r) {
      if (answered.exchange(true))
        return;
      eng.metrics().request_answered(r.info.outcome);
      // `done` runs in the bridge actor, which serves every caller for the engine's life: what
      // the application's callback throws is logged, not allowed to take the bridge down.
      try {
        done(std::move(r));
      } catch (const std::exception& e) {
        log_error("facade", std::string("query callback threw: ") + e.what());
      } catch (...) {
        log_error("facade", "query callback threw an unknown exception");
      }
    }

    engine& eng;
    std::function<void(query_result)> done;
    std::atomic<bool> answered{false};
  };
  std::shared_ptr<state> st_;
};

} // namespace

void embedded::query(const std::string& statement, std::vector<param> params,
                     std::function<void(query_result)> done, call_options opts) {
  auto& eng = *engine_;
  call_answer finish{eng, std::move(done)};
  if (eng.stopping()) {
    finish({classify(make_error(errc::shutting_down, std::string{"engine stopped"})), {}});
    return;
  }
  gateway_request g;
  g.client = std::move(opts.client);
  g.priority = opts.priority;
  g.query.statement = statement;
  for (auto& p : params)
    g.query.params.push_back(p.value());
  auto limit = std::chrono::duration_cast<caf::timespan>(eng.config().database.default_timeout);
  limit = shortened(limit, opts.timeout.count());
  g.query.deadline = eng.clock_now() + limit;
  // Looked up in the bridge, and a missing gateway answered there too: the callback always runs
  // on the bridge actor, never inside this call, so a callback that calls again cannot recurse
  // (a restarting gateway once answered 160 re-issuing callers inline until the stack ran out).
  eng.post([&eng, g, limit, finish](caf::event_based_actor* self) {
    auto gw = eng.directory().get<gateway_actor>("gateway");
    if (!gw) {
      finish({classify(make_error(errc::component_unavailable, "gateway")), {}});
      return;
    }
    self->request(gw, limit + std::chrono::seconds(3), g)
        .then(
            [finish](db_result& r) {
              finish({classify(r), std::move(r)});
            },
            [finish](caf::error& e) {
              finish({classify(e), {}});
            });
  });
}

} // namespace bulwark
