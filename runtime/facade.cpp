#include "runtime/facade.hpp"

#include "actors/clock.hpp"
#include "actors/log.hpp"
#include "runtime/answer_slot.hpp"

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
  set_log_level(parse_log_level(cfg.log.level)); // process-wide, as in bulwarkd
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

query_result embedded::call(const std::string& statement, std::vector<param> params,
                            std::chrono::milliseconds timeout) {
  call_options opts;
  opts.timeout = timeout;
  return call(statement, std::move(params), std::move(opts));
}

query_result embedded::call(const std::string& statement, std::vector<param> params,
                            call_options opts) {
  auto slot = std::make_shared<answer_slot<query_result>>();
  auto spin = opts.spin;
  query(
      statement, std::move(params), [slot](query_result r) { slot->give(std::move(r)); },
      std::move(opts));
  return slot->take(spin);
}

namespace {

/// A callback-taking facade call as a future: `call(done)` with a `done` that fulfils it.
template <class Call>
std::future<query_result> as_future(Call call) {
  auto p = std::make_shared<std::promise<query_result>>();
  auto fut = p->get_future();
  call([p](query_result r) { p->set_value(std::move(r)); });
  return fut;
}

} // namespace

std::future<query_result> embedded::query(const std::string& statement, std::vector<param> params,
                                          call_options opts) {
  return as_future([&](std::function<void(query_result)> done) {
    query(statement, std::move(params), std::move(done), std::move(opts));
  });
}

namespace {

/// One facade call's answer, given exactly once: the front door's (which counts it through
/// `count`), or, when the call is dropped unanswered (its message never reached a live front
/// door, or the engine was stopping), shutting_down when the last copy goes, counted here.
class call_answer {
public:
  call_answer(engine& eng, std::function<void(query_result)> done)
      : st_(std::make_shared<state>(eng, std::move(done))) {}

  /// The front door's answer: `count` counts it before the application sees it.
  void operator()(query_result r, const std::function<void()>& count) const {
    st_->give(std::move(r), &count);
  }
  /// An answer of the facade's own, counted here.
  void operator()(query_result r) const { st_->give(std::move(r), nullptr); }

private:
  struct state {
    state(engine& e, std::function<void(query_result)> d) : eng(e), done(std::move(d)) {
      eng.metrics().request_received();
    }
    ~state() {
      give({classify(make_error(errc::shutting_down, std::string{"engine stopped"})), {}}, nullptr);
    }
    state(const state&) = delete;
    state& operator=(const state&) = delete;

    void give(query_result r, const std::function<void()>* count) {
      if (answered.exchange(true))
        return;
      if (count)
        (*count)();
      else
        eng.metrics().request_answered(r.info.outcome);
      // `done` runs on the front door, which serves every caller for the engine's life: what
      // the application's callback throws is logged, not allowed to take it down.
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

/// Sends `g` through the front door with `opts`, answered through `done` exactly once.
void ask(engine& eng, gateway_request g, std::function<void(query_result)> done,
         call_options opts) {
  call_answer finish{eng, std::move(done)};
  if (eng.stopping()) {
    finish({classify(make_error(errc::shutting_down, std::string{"engine stopped"})), {}});
    return;
  }
  g.client = std::move(opts.client);
  g.priority = opts.priority;
  g.timeout = requested_timeout(opts.timeout.count());
  // The front door answers on its own thread, never inside this call, so a callback that calls
  // again cannot recurse (a restarting gateway once answered 160 re-issuing callers inline until
  // the stack ran out).
  g.sink.fn = std::make_shared<front_answer_fn>(
      [finish](caf::expected<db_result>& a, const std::function<void()>& count) {
        if (a)
          finish({classify(*a), std::move(*a)}, count);
        else
          finish({classify(a.error()), {}}, count);
      });
  caf::anon_send(eng.front_door_for_call(), std::move(g));
}

} // namespace

void embedded::query(const std::string& statement, std::vector<param> params,
                     std::function<void(query_result)> done, call_options opts) {
  gateway_request g;
  g.query.statement = statement;
  for (auto& p : params)
    g.query.params.push_back(p.value());
  ask(*engine_, std::move(g), std::move(done), std::move(opts));
}

void embedded::transaction(std::vector<step> steps, std::function<void(query_result)> done,
                           transaction_options opts) {
  gateway_request g;
  g.query.statement = transaction_label;
  g.query.isolation = std::move(opts.isolation);
  for (auto& s : steps) {
    db_step out;
    out.statement = std::move(s.statement);
    for (auto& p : s.params)
      out.params.push_back(p.value());
    g.query.steps.push_back(std::move(out));
  }
  if (g.query.steps.empty()) {
    call_answer{*engine_, std::move(done)}(
        {classify(make_error(errc::bad_parameters, std::string{transaction_label},
                             std::string{"a transaction needs at least one step"})),
         {}});
    return;
  }
  ask(*engine_, std::move(g), std::move(done), std::move(opts));
}

void embedded::named_transaction(const std::string& name, std::vector<std::vector<param>> params,
                                 std::function<void(query_result)> done, call_options opts) {
  gateway_request g;
  g.query.statement = declared_transaction_label(name);
  auto& declared = engine_->config().database.transactions;
  auto i = declared.find(name);
  std::string problem;
  if (i == declared.end())
    problem = "no transaction named " + name + " is configured (transactions.*)";
  else if (!params.empty() && params.size() != i->second.steps.size())
    problem = name + " has " + std::to_string(i->second.steps.size()) + " steps, got " +
              std::to_string(params.size()) + " parameter lists";
  if (!problem.empty()) {
    auto e = i == declared.end() ? make_error(errc::unknown_statement, g.query.statement, problem)
                                 : make_error(errc::bad_parameters, g.query.statement, problem);
    call_answer{*engine_, std::move(done)}({classify(e), {}});
    return;
  }
  for (size_t k = 0; k < i->second.steps.size(); ++k) {
    db_step out;
    out.statement = i->second.steps[k];
    if (!params.empty())
      for (auto& p : params[k])
        out.params.push_back(p.value());
    g.query.steps.push_back(std::move(out));
  }
  ask(*engine_, std::move(g), std::move(done), std::move(opts));
}

void embedded::batch(const std::string& statement, std::vector<std::vector<param>> items,
                     std::function<void(query_result)> done, batch_options opts) {
  gateway_request g;
  g.query.statement = statement;
  g.query.collect = opts.collect;
  g.query.batch.reserve(items.size());
  for (auto& item : items) {
    std::vector<db_value> params;
    for (auto& p : item)
      params.push_back(p.value());
    g.query.batch.push_back(std::move(params));
  }
  if (g.query.batch.empty()) {
    call_answer{*engine_, std::move(done)}(
        {classify(make_error(errc::bad_parameters, statement,
                             std::string{"a batch needs at least one item"})),
         {}});
    return;
  }
  ask(*engine_, std::move(g), std::move(done), std::move(opts));
}

std::future<query_result> embedded::batch(const std::string& statement,
                                          std::vector<std::vector<param>> items,
                                          batch_options opts) {
  return as_future([&](std::function<void(query_result)> done) {
    batch(statement, std::move(items), std::move(done), std::move(opts));
  });
}

std::future<query_result> embedded::named_transaction(const std::string& name,
                                                      std::vector<std::vector<param>> params,
                                                      call_options opts) {
  return as_future([&](std::function<void(query_result)> done) {
    named_transaction(name, std::move(params), std::move(done), std::move(opts));
  });
}

std::future<query_result> embedded::transaction(std::vector<step> steps, transaction_options opts) {
  return as_future([&](std::function<void(query_result)> done) {
    transaction(std::move(steps), std::move(done), std::move(opts));
  });
}

} // namespace bulwark
