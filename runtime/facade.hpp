#pragma once
/// The embedded C++ facade: an application starts an engine from a config file or struct and
/// runs named queries, with no actor knowledge needed. Outcomes are the HTTP API's
/// (runtime/outcome.hpp) and count in the same `bulwark_requests_total`. Actor code can use the
/// typed handles instead: `node.engine().directory().get<database_actor>("database")`.
///
///   auto node = bulwark::embedded::from_file("config/default.json");
///   auto r = node->query("user_by_id", {42}).get();
///   if (r.ok()) for (auto& row : r.result.rows) ...;
///   else std::cerr << r.info.error << ": " << r.info.detail << "\n";

#include "runtime/engine.hpp"
#include "runtime/outcome.hpp"

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

namespace bulwark {

/// A query parameter: `{42, "text", 1.5, true, nullptr}` in a braced list.
class param {
public:
  param(std::nullptr_t) {}
  param(int x) : v_(db_value::of(static_cast<int64_t>(x))) {}
  param(int64_t x) : v_(db_value::of(x)) {}
  param(double x) : v_(db_value::of(x)) {}
  param(bool x) : v_(db_value::of(x)) {}
  param(const char* x) : v_(db_value::of(std::string{x})) {}
  param(std::string x) : v_(db_value::of(std::move(x))) {}
  const db_value& value() const { return v_; }

private:
  db_value v_;
};

/// Who asks and how urgently. `client` is the rate limiter's key: empty (the default) is the
/// application itself, trusted and never limited; an application that serves many users passes
/// theirs. `priority` low is shed first at critical pressure.
struct call_options {
  std::chrono::milliseconds timeout{}; ///< 0: database.default_timeout_ms
  std::string client;
  request_priority priority = request_priority::normal;
  /// call() only: how long the calling thread spins for the answer before it sleeps.
  std::chrono::microseconds spin{50};
};

/// One statement of a transaction: `{"insert_event", {7, "opened"}}`.
struct step {
  std::string statement;
  std::vector<param> params;
};

/// A transaction's call options: those of any call, and its isolation ("" for the backend's
/// default, "repeatable_read" or "serializable"; SQLite is always serializable).
struct transaction_options : call_options {
  std::string isolation;
};

/// A batch's call options: those of any call, and its failure mode (db_query::collect): false,
/// fail fast (the first failed item stops it); true, collect every item's answer or error.
struct batch_options : call_options {
  bool collect = false;
};

struct query_result {
  outcome_info info; ///< the outcome, its HTTP status, error name, detail and retry-after
  db_result result;  ///< when served
  bool ok() const {
    return info.outcome == query_outcome::served ||
           info.outcome == query_outcome::served_truncated ||
           info.outcome == query_outcome::served_cached;
  }
};

class embedded {
public:
  /// Throws std::runtime_error listing every config problem with its path.
  static std::unique_ptr<embedded> from_file(const std::string& path);

  explicit embedded(engine_config cfg, engine_options opts = {});

  /// A future that always completes, by the deadline (`timeout`, or database.default_timeout_ms
  /// when zero or longer) plus a small margin at the latest. After engine().stop(), or for a
  /// call the stopping engine drops, it is 503 shutting_down (rejected_unavailable), counted.
  std::future<query_result> query(const std::string& statement, std::vector<param> params = {},
                                  std::chrono::milliseconds timeout = {});

  /// The same with a callback, called exactly once from an actor thread (keep it short; what it
  /// throws is logged and dropped).
  void query(const std::string& statement, std::vector<param> params,
             std::function<void(query_result)> done, std::chrono::milliseconds timeout = {});

  /// Both of the above for a named client and priority (see call_options).
  std::future<query_result> query(const std::string& statement, std::vector<param> params,
                                  call_options opts);
  void query(const std::string& statement, std::vector<param> params,
             std::function<void(query_result)> done, call_options opts);

  /// query(...).get() on this thread, but the wait spins for up to `opts.spin` (50 us) before it
  /// sleeps: a short call's answer then costs no wake-up of the calling thread (a point query's
  /// added p50 29 -> 20 us, bench/RESULTS.md "The facade's own wait"). Same guarantees.
  query_result call(const std::string& statement, std::vector<param> params = {},
                    std::chrono::milliseconds timeout = {});
  query_result call(const std::string& statement, std::vector<param> params, call_options opts);

  /// The steps in order on one connection between BEGIN and COMMIT: all of them or none. On
  /// success `result.steps` holds each step's answer; a failure (any step's error, the deadline,
  /// a broken connection) rolled everything back, and `info.step` names the step that failed.
  /// Same guarantees as query(): one answer, by the deadline plus a small margin.
  std::future<query_result> transaction(std::vector<step> steps, transaction_options opts = {});
  void transaction(std::vector<step> steps, std::function<void(query_result)> done,
                   transaction_options opts = {});

  /// A transaction declared in the config (`transactions.<name>`): its steps with these
  /// parameters (one list per step; none when no step takes any), at its isolation (`opts`'
  /// isolation is not used). Unknown name: 404 unknown_statement.
  std::future<query_result> named_transaction(const std::string& name,
                                              std::vector<std::vector<param>> params = {},
                                              call_options opts = {});
  void named_transaction(const std::string& name, std::vector<std::vector<param>> params,
                         std::function<void(query_result)> done, call_options opts = {});

  /// `statement` once per parameter list (`items`), at most database.max_batch_items of them,
  /// each item its own statement (not one transaction), at most as many at once as the pool
  /// may give one caller under the current pressure. On success `result.items` holds every
  /// item's answer, or (collect) its error. Fail fast: the first failure stops the batch, and
  /// `info.item` names it and the items that ran. Same guarantees as query().
  std::future<query_result> batch(const std::string& statement,
                                  std::vector<std::vector<param>> items, batch_options opts = {});
  void batch(const std::string& statement, std::vector<std::vector<param>> items,
             std::function<void(query_result)> done, batch_options opts = {});

  bulwark::engine& engine() { return *engine_; }

private:
  std::unique_ptr<bulwark::engine> engine_;
};

} // namespace bulwark
