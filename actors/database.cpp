#include "actors/database.hpp"

#include "actors/cleanup_manager.hpp"
#include "actors/clock.hpp"
#include "actors/detail/text.hpp"
#include "actors/latency.hpp"
#include "actors/log.hpp"
#include "actors/metric_children.hpp"
#include "actors/owed_answers.hpp"
#include "actors/pressure_subscription.hpp"

#include <caf/all.hpp>

#include <cmath>

namespace bulwark {

database_metrics::database_metrics(prometheus::Registry& reg) {
  using namespace prometheus;
  queries = &BuildCounter()
                 .Name("bulwark_database_queries_total")
                 .Help("Queries accepted by the database actor, by statement")
                 .Register(reg);
  truncated = &BuildCounter()
                   .Name("bulwark_database_truncated_total")
                   .Help("Query results cut at the row or byte limit")
                   .Register(reg)
                   .Add({});
  batches = &BuildCounter()
                 .Name("bulwark_database_batches_total")
                 .Help("Batches accepted by the database actor, by statement (each item also "
                       "counts in bulwark_database_queries_total when it starts)")
                 .Register(reg);
  batch_items =
      &BuildCounter()
           .Name("bulwark_database_batch_items_total")
           .Help("Items of accepted batches by result: ok, failed (an item not started by the "
                 "deadline too), not_run (a fail-fast batch stopped before it started)")
           .Register(reg);
  transactions = &BuildCounter()
                      .Name("bulwark_database_transactions_total")
                      .Help("Transactions accepted by the database actor, by declared name (\"\" "
                            "ad hoc; each step also counts in bulwark_database_queries_total)")
                      .Register(reg);
  rejected_parameters = &BuildCounter()
                             .Name("bulwark_database_bad_parameters_total")
                             .Help("Queries refused because their parameters did not fit")
                             .Register(reg)
                             .Add({});
  duration = &BuildHistogram()
                  .Name("bulwark_database_query_duration_seconds")
                  .Help("Backend calls from the database actor to their answer (any answer)")
                  .Register(reg)
                  .Add({}, latency_buckets());
}

namespace {

const char* describe_kind(db_value_kind k) {
  switch (k) {
  case db_value_kind::null:
    return "null";
  case db_value_kind::integer:
    return "an integer";
  case db_value_kind::real:
    return "a number";
  case db_value_kind::text:
    return "a string";
  case db_value_kind::boolean:
    return "a boolean";
  }
  return "a value";
}

/// Whether a value of kind `v` fits a parameter declared `want` (null fits any).
bool fits(detail::param_kind want, db_value_kind v) {
  using detail::param_kind;
  switch (want) {
  case param_kind::integer:
    return v == db_value_kind::integer;
  case param_kind::real:
    return v == db_value_kind::real || v == db_value_kind::integer;
  case param_kind::text:
    return v == db_value_kind::text;
  case param_kind::boolean:
    return v == db_value_kind::boolean;
  }
  return false;
}

} // namespace

std::string check_parameters(const std::vector<detail::param_kind>& kinds,
                             const std::vector<db_value>& params) {
  if (kinds.size() != params.size())
    return "expected " + std::to_string(kinds.size()) + " parameter" +
           (kinds.size() == 1 ? "" : "s") + ", got " + std::to_string(params.size());
  for (size_t i = 0; i < kinds.size(); ++i) {
    auto k = params[i].kind;
    if (k != db_value_kind::null && !fits(kinds[i], k))
      return "parameter " + std::to_string(i + 1) + " (" + detail::to_string(kinds[i]) +
             "): expected " + detail::expectation(kinds[i]) + ", got " + describe_kind(k);
  }
  return {};
}

namespace {

constexpr const char* component = "database";

struct database_state {
  static constexpr const char* name = "database";
  labelled_children<prometheus::Counter> queries; ///< bulwark_database_queries_total's children

  database_config cfg;
  std::shared_ptr<const detail::statement_catalog> catalog;
  std::string backend_kind;
  std::shared_ptr<component_directory> dir;
  database_metrics* metrics = nullptr;
  pressure_level level = pressure_level::low;
  std::map<std::string, int> complexity; ///< per statement: planner-based once measured
  std::map<std::string, bool> measured;
  owed_answers<db_result> owed; ///< queries in flight, answered if it dies
  uint64_t next_id = 0;
};

using self_ptr = database_actor::stateful_pointer<database_state>;

/// JSON callers send 1 for a real parameter; the backend gets a real.
std::vector<db_value> coerce(const std::vector<detail::param_kind>& kinds,
                             std::vector<db_value> params) {
  for (size_t i = 0; i < kinds.size() && i < params.size(); ++i)
    if (kinds[i] == detail::param_kind::real && params[i].kind == db_value_kind::integer)
      params[i] = db_value::of(static_cast<double>(params[i].integer));
  return params;
}

/// The limit a call of `statement` gets now: the base scaled by the current pressure and the
/// statement's complexity (detail/query_limits.hpp).
detail::applied_limit limit_now(database_state& st, const std::string& statement) {
  return detail::compute_limit(st.cfg.limits, static_cast<int>(st.level), st.complexity[statement]);
}

db_limit as_db_limit(const detail::applied_limit& applied) {
  return db_limit{applied.max_rows, applied.max_bytes, applied.reason};
}

/// Asks the backend's planner about every statement (through the breaker and the pool, like all
/// backend work); until an answer arrives the lexical score stands.
void measure(self_ptr self) {
  auto& st = self->state;
  auto breaker = st.dir->get<circuit_breaker_actor>("circuit_breaker");
  if (!breaker)
    return;
  for (auto& [name, stmt] : st.catalog->all()) {
    if (st.measured[name])
      continue;
    db_call call;
    call.id = ++st.next_id;
    call.statement = name;
    call.sql = stmt.sql;
    call.explain = true;
    call.limit.max_rows = 1000;
    call.limit.max_bytes = 1 << 20;
    call.deadline = now_of(self) + st.cfg.default_timeout;
    auto n = name;
    auto sql = stmt.sql;
    self->request(breaker, st.cfg.default_timeout + path_grace, call)
        .then(
            [=](db_result& r) {
              std::vector<std::string> plan;
              for (auto& row : r.rows)
                if (!row.empty())
                  plan.push_back(row[0].text);
              auto& st = self->state;
              st.complexity[n] = detail::complexity(plan, st.backend_kind, sql);
              st.measured[n] = true;
            },
            [=](caf::error& e) {
              // An open breaker or a pool still connecting: try again on the next tick. A
              // statement the planner rejects keeps its lexical score for good.
              if (is(e, errc::bad_statement) || is(e, errc::backend_error)) {
                self->state.measured[n] = true;
                log_warn(component, "cannot measure " + n + " with the planner (" + describe(e) +
                                        "); using the lexical score");
              }
            });
  }
}

/// Sends `call` (its deadline set) to the breaker, which answers by the deadline (or its owed
/// answers do, if it dies: no timer here, detail/deadline_set.hpp says why), and times it
/// (bulwark_database_query_duration_seconds) whatever comes back, which goes to `ok` or `failed`.
template <class Ok, class Failed>
void call_breaker(self_ptr self, const circuit_breaker_actor& breaker, db_call call,
                  caf::timespan now, Ok ok, Failed failed) {
  auto observe = [self, now] {
    self->state.metrics->duration->Observe(detail::secs(now_of(self) - now));
  };
  self->request(breaker, caf::infinite, std::move(call))
      .then(
          [=](db_result& r) mutable {
            observe();
            ok(r);
          },
          [=](caf::error& e) mutable {
            observe();
            failed(e);
          });
}

/// Sends `call` (its deadline set) to the breaker, times it, lets `annotate` add to a result
/// (warnings), and answers the caller with whatever comes back.
template <class Annotate>
caf::result<db_result> ask_breaker(self_ptr self, const circuit_breaker_actor& breaker,
                                   db_call call, caf::timespan now, Annotate annotate) {
  auto rp = self->state.owed.make(self);
  call_breaker(
      self, breaker, std::move(call), now,
      [=](db_result& r) mutable {
        annotate(r);
        rp.deliver(std::move(r));
      },
      [=](caf::error& e) mutable { rp.deliver(std::move(e)); });
  return caf::delegated<db_result>{};
}

/// A transaction (db_query::steps): every step checked before any runs (an unknown statement
/// or parameters that do not fit fail the whole of it, naming the step), each with its own
/// limit by pressure and its statement's complexity, then one call down the path.
caf::result<db_result> on_transaction(self_ptr self, db_query& q) {
  auto& st = self->state;
  if (q.steps.size() > st.cfg.max_transaction_steps)
    return make_error(errc::bad_parameters, std::string{transaction_label},
                      std::to_string(q.steps.size()) + " steps; a transaction runs at most " +
                          std::to_string(st.cfg.max_transaction_steps) +
                          " (database.max_transaction_steps)");
  if (!q.isolation.empty() && !is_isolation(q.isolation))
    return make_error(errc::bad_parameters, std::string{transaction_label},
                      "isolation must be repeatable_read or serializable (or left out), not \"" +
                          q.isolation + "\"");
  std::string name; // declared: its name
  if (q.statement != transaction_label) {
    const std::string prefix = declared_transaction_label("");
    auto i = q.statement.rfind(prefix, 0) == 0
                 ? st.cfg.transactions.find(q.statement.substr(prefix.size()))
                 : st.cfg.transactions.end();
    if (i == st.cfg.transactions.end())
      return make_error(errc::unknown_statement, q.statement);
    name = i->first;
    auto& declared = i->second;
    bool same = declared.steps.size() == q.steps.size();
    for (size_t k = 0; same && k < q.steps.size(); ++k)
      same = q.steps[k].statement == declared.steps[k];
    if (!same)
      return make_error(errc::bad_parameters, q.statement,
                        "the steps are not those transactions." + name + " declares");
    q.isolation = declared.isolation;
  }
  auto breaker = st.dir->get<circuit_breaker_actor>("circuit_breaker");
  if (!breaker)
    return make_error(errc::component_unavailable, "circuit_breaker");
  db_call call;
  call.steps.reserve(q.steps.size());
  for (uint32_t i = 0; i < q.steps.size(); ++i) {
    auto& step = q.steps[i];
    auto* stmt = st.catalog->find(step.statement);
    if (stmt == nullptr)
      return with_failed_step(make_error(errc::unknown_statement, step.statement),
                              failed_step{i, step.statement});
    auto problem = check_parameters(stmt->params, step.params);
    if (!problem.empty()) {
      st.metrics->rejected_parameters->Increment();
      return with_failed_step(make_error(errc::bad_parameters, step.statement, problem),
                              failed_step{i, step.statement});
    }
    db_call_step out;
    out.statement = step.statement;
    out.sql = stmt->sql;
    out.params = coerce(stmt->params, std::move(step.params));
    out.limit = as_db_limit(limit_now(st, step.statement));
    out.read_only = stmt->read_only;
    call.steps.push_back(std::move(out));
  }
  st.metrics->transactions->Add({{"name", name}}).Increment();
  for (auto& step : call.steps)
    st.queries.at<1>({"statement"}, {step.statement.c_str()}).Increment();
  auto now = now_of(self);
  call.id = ++st.next_id;
  call.statement = std::move(q.statement);
  call.isolation = std::move(q.isolation);
  call.deadline = q.deadline.count() != 0 ? q.deadline : now + st.cfg.default_timeout;
  call.priority = q.priority;
  call.grant = std::move(q.grant);
  return ask_breaker(self, breaker, std::move(call), now, [self](db_result& r) {
    for (size_t i = 0; i < r.steps.size(); ++i) {
      auto& step = r.steps[i];
      if (!step.truncated)
        continue;
      self->state.metrics->truncated->Increment();
      r.warnings.push_back("step " + std::to_string(i) + " truncated at " +
                           std::to_string(step.rows.size()) + " rows by the " + step.truncated_by +
                           " limit");
    }
  });
}

/// One batch in flight (db_query::batch): its items and how far it got. Shared by the item
/// calls' handlers, all on the database actor's thread.
struct batch_run {
  enum class state : uint8_t { waiting, running, ok, failed };
  owed_answers<db_result>::promise rp;
  const detail::statement* stmt = nullptr; // the catalog outlives the actor's state
  std::string statement;
  std::vector<std::vector<db_value>> params;
  bool collect = false;
  clock_point deadline{0};
  int32_t priority = 0;
  memory_grant grant; ///< the batch's; each item's own reservation is folded into it when done
  std::vector<db_item_result> items;
  std::vector<state> states;
  uint32_t next = 0;    ///< the next item to start
  uint32_t running = 0; ///< items in flight
  /// Fail fast: the lowest item that failed; nothing more starts.
  std::optional<uint32_t> failed;

  void fail(uint32_t i, caf::error e) {
    items[i].error = std::move(e);
    states[i] = state::failed;
    if (!collect && (!failed || i < *failed))
      failed = i;
  }
};

/// How many items of a batch may be in flight now: the pool's width scaled by the pressure
/// factor of the result limits (database.max_rows' ×0.7 / ×0.5 / ×0.3), at least one.
uint32_t batch_width(const database_state& st) {
  auto f = detail::compute_limit(st.cfg.limits, static_cast<int>(st.level), 1).pressure_factor;
  auto w = std::floor(static_cast<double>(st.cfg.batch_width) * f + 1e-9);
  return std::max<uint32_t>(1, static_cast<uint32_t>(w));
}

void finish_batch(self_ptr self, const std::shared_ptr<batch_run>& run) {
  auto& st = self->state;
  uint64_t ok = 0;
  uint64_t failed = 0;
  std::vector<uint32_t> succeeded;
  for (uint32_t i = 0; i < run->states.size(); ++i) {
    if (run->states[i] == batch_run::state::ok) {
      ++ok;
      succeeded.push_back(i);
    } else if (run->states[i] == batch_run::state::failed) {
      ++failed;
    }
  }
  auto not_run = run->states.size() - ok - failed;
  st.metrics->batch_items->Add({{"result", "ok"}}).Increment(static_cast<double>(ok));
  st.metrics->batch_items->Add({{"result", "failed"}}).Increment(static_cast<double>(failed));
  st.metrics->batch_items->Add({{"result", "not_run"}}).Increment(static_cast<double>(not_run));
  if (run->failed) {
    auto i = *run->failed;
    run->rp.deliver(with_failed_item(run->items[i].error,
                                     failed_item{i, run->statement, std::move(succeeded)}));
    return;
  }
  db_result r;
  for (uint32_t i = 0; i < run->items.size(); ++i) {
    auto& item = run->items[i].result;
    r.rows_affected += item.rows_affected;
    r.bytes += item.bytes;
    if (!item.truncated)
      continue;
    r.truncated = true;
    st.metrics->truncated->Increment();
    r.warnings.push_back("item " + std::to_string(i) + " truncated at " +
                         std::to_string(item.rows.size()) + " rows by the " + item.truncated_by +
                         " limit");
  }
  r.items = std::move(run->items);
  r.grant = std::move(run->grant);
  run->rp.deliver(std::move(r));
}

/// Starts the batch's next items while it may have more in flight; answers it when it is done.
void run_batch(self_ptr self, const std::shared_ptr<batch_run>& run) {
  auto& st = self->state;
  auto breaker = st.dir->get<circuit_breaker_actor>("circuit_breaker");
  auto now = now_of(self);
  while (run->next < run->params.size() && !run->failed && run->running < batch_width(st)) {
    auto i = run->next++;
    if (now >= run->deadline) {
      run->fail(i, make_error(errc::deadline_exceeded, "item " + std::to_string(i) +
                                                           " did not start: the batch's deadline "
                                                           "passed"));
      continue;
    }
    if (!breaker) {
      run->fail(i, make_error(errc::component_unavailable, std::string{"circuit_breaker"}));
      continue;
    }
    st.queries.at<1>({"statement"}, {run->statement.c_str()}).Increment();
    db_call call;
    call.id = ++st.next_id;
    call.statement = run->statement;
    call.sql = run->stmt->sql;
    call.read_only = run->stmt->read_only;
    call.params = coerce(run->stmt->params, std::move(run->params[i]));
    call.deadline = run->deadline;
    call.priority = run->priority;
    if (run->grant.held)
      call.grant.held = std::make_shared<detail::memory_reservation>(run->grant.held->sibling());
    call.limit = as_db_limit(limit_now(st, run->statement));
    run->states[i] = batch_run::state::running;
    ++run->running;
    call_breaker(
        self, breaker, std::move(call), now,
        [=](db_result& r) {
          --run->running;
          auto& out = run->items[i].result;
          out.columns = std::move(r.columns);
          out.rows = std::move(r.rows);
          out.truncated = r.truncated;
          out.truncated_by = std::move(r.truncated_by);
          out.limit = std::move(r.limit);
          out.rows_affected = r.rows_affected;
          out.bytes = r.bytes;
          if (run->grant.held && r.grant.held)
            run->grant.held->absorb(*r.grant.held);
          run->states[i] = batch_run::state::ok;
          run_batch(self, run);
        },
        [=](caf::error& e) {
          --run->running;
          run->fail(i, std::move(e));
          run_batch(self, run);
        });
  }
  if (run->running == 0 && (run->next == run->params.size() || run->failed))
    finish_batch(self, run);
}

/// A batch (db_query::batch): every item checked before any runs, then at most batch_width()
/// items at a time down the path.
caf::result<db_result> on_batch(self_ptr self, db_query& q) {
  auto& st = self->state;
  if (!q.steps.empty())
    return make_error(errc::bad_parameters, q.statement,
                      std::string{"a query is a transaction or a batch, not both"});
  if (q.batch.size() > st.cfg.max_batch_items)
    return make_error(errc::bad_parameters, q.statement,
                      std::to_string(q.batch.size()) + " items; a batch runs at most " +
                          std::to_string(st.cfg.max_batch_items) + " (database.max_batch_items)");
  auto* stmt = st.catalog->find(q.statement);
  if (stmt == nullptr)
    return make_error(errc::unknown_statement, q.statement);
  for (uint32_t i = 0; i < q.batch.size(); ++i) {
    auto problem = check_parameters(stmt->params, q.batch[i]);
    if (!problem.empty()) {
      st.metrics->rejected_parameters->Increment();
      return with_failed_item(make_error(errc::bad_parameters, q.statement, problem),
                              failed_item{i, q.statement, {}});
    }
  }
  st.metrics->batches->Add({{"statement", q.statement}}).Increment();
  auto run = std::make_shared<batch_run>();
  run->rp = st.owed.make(self);
  run->stmt = stmt;
  run->statement = std::move(q.statement);
  run->params = std::move(q.batch);
  run->collect = q.collect;
  run->deadline = q.deadline.count() != 0 ? q.deadline : now_of(self) + st.cfg.default_timeout;
  run->priority = q.priority;
  run->grant = std::move(q.grant);
  run->items.resize(run->params.size());
  run->states.assign(run->params.size(), batch_run::state::waiting);
  run_batch(self, run);
  return caf::delegated<db_result>{};
}

caf::result<db_result> on_query(self_ptr self, db_query& q) {
  auto& st = self->state;
  if (!q.batch.empty())
    return on_batch(self, q);
  if (!q.steps.empty())
    return on_transaction(self, q);
  auto* stmt = st.catalog->find(q.statement);
  if (stmt == nullptr)
    return make_error(errc::unknown_statement, q.statement);
  auto problem = check_parameters(stmt->params, q.params);
  if (!problem.empty()) {
    st.metrics->rejected_parameters->Increment();
    return make_error(errc::bad_parameters, q.statement, problem);
  }
  auto breaker = st.dir->get<circuit_breaker_actor>("circuit_breaker");
  if (!breaker)
    return make_error(errc::component_unavailable, "circuit_breaker");
  st.queries.at<1>({"statement"}, {q.statement.c_str()}).Increment();
  auto now = now_of(self);
  db_call call;
  call.id = ++st.next_id;
  call.statement = q.statement;
  call.sql = stmt->sql;
  call.read_only = stmt->read_only;
  call.params = coerce(stmt->params, std::move(q.params));
  call.deadline = q.deadline.count() != 0 ? q.deadline : now + st.cfg.default_timeout;
  call.priority = q.priority;
  call.grant = std::move(q.grant);
  call.stream = std::move(q.stream);
  auto applied = limit_now(st, q.statement);
  call.limit = as_db_limit(applied);
  return ask_breaker(self, breaker, std::move(call), now, [self, applied](db_result& r) {
    if (!r.truncated)
      return;
    self->state.metrics->truncated->Increment();
    if (r.truncated_by == "memory")
      r.warnings.push_back("truncated at " + std::to_string(r.row_count()) +
                           " rows: the node's memory budget had no room for more "
                           "(ask for fewer rows, or retry when the load is lower)");
    else if (r.truncated_by == "client" || r.truncated_by == "deadline")
      r.warnings.push_back(
          "truncated at " + std::to_string(r.row_count()) + " rows: the " + r.truncated_by +
          (r.truncated_by == "client" ? " stopped reading" : " passed while the client read"));
    else
      r.warnings.push_back("truncated at " + std::to_string(r.row_count()) + " rows by the " +
                           r.truncated_by + " limit; " +
                           detail::truncation_recommendation(applied));
  });
}

database_actor::behavior_type database(self_ptr self, database_config cfg,
                                       std::shared_ptr<const detail::statement_catalog> catalog,
                                       std::string backend_kind,
                                       std::shared_ptr<component_directory> dir,
                                       database_metrics* metrics) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.catalog = std::move(catalog);
  st.backend_kind = std::move(backend_kind);
  st.dir = std::move(dir);
  st.metrics = metrics;
  st.queries = labelled_children<prometheus::Counter>{metrics->queries};
  st.owed.attach(self, component);
  for (auto& [name, stmt] : st.catalog->all())
    st.complexity[name] = stmt.lexical_complexity;
  pressure_subscription::subscribe(self, *st.dir);
  measure(self);
  // EXPLAIN through the pool is optional work that loads the backend (a statement keeps its
  // lexical score meanwhile): deferred at high pressure. Once all are measured a run is a no-op.
  auto plans = periodic_task("database_plans", component, std::chrono::seconds(1),
                             caf::make_message(caf::tick_atom::value));
  plans.deferrable = true;
  register_cleanup_tasks(self, st.dir, {std::move(plans)});
  return {
      [=](db_query& q) { return on_query(self, q); },
      [](health_atom) { return caf::ok_atom::value; },
      [=](pressure_changed& ev) {
        auto& st = self->state;
        if (ev.level == st.level)
          return;
        st.level = ev.level;
        auto base = detail::compute_limit(st.cfg.limits, static_cast<int>(ev.level), 1);
        pressure_subscription::report(self, *st.dir, component, ev.level,
                                      "result limit " + std::to_string(base.max_rows) + " rows, " +
                                          std::to_string(base.max_bytes) + " bytes");
      },
      [=](caf::tick_atom) {
        measure(self); // what is not measured yet
        return caf::ok_atom::value;
      },
  };
}

} // namespace

database_actor spawn_database(caf::actor_system& sys, database_config cfg,
                              std::shared_ptr<const detail::statement_catalog> catalog,
                              std::string backend_kind, std::shared_ptr<component_directory> dir,
                              database_metrics* metrics) {
  return sys.spawn(database, std::move(cfg), std::move(catalog), std::move(backend_kind),
                   std::move(dir), metrics);
}

} // namespace bulwark
