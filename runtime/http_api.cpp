#include "runtime/http_api.hpp"

#include "actors/clock.hpp"
#include "actors/detail/result_stream.hpp"
#include "actors/detail/text.hpp"
#include "actors/log.hpp"
#include "messages/fwd.hpp"
#include "runtime/json_render.hpp"
#include "runtime/outcome.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <optional>
#include <string_view>
#include <variant>

namespace bulwark {

http_api_metrics::http_api_metrics(prometheus::Registry& reg)
    : responses(&prometheus::BuildCounter()
                     .Name("bulwark_http_responses_total")
                     .Help("HTTP responses sent by the node's API, by status code")
                     .Register(reg)),
      by_code(responses, "code", [](size_t code) { return std::to_string(code); }) {}

namespace {

using json = nlohmann::json;

/// How long /v1/status waits for each component's answer.
constexpr auto status_timeout = std::chrono::seconds(2);

http_response json_response(unsigned status, const json& body) {
  http_response r;
  r.status = status;
  r.body = render_json(body);
  return r;
}

http_response error_response(unsigned status, const std::string& error, const std::string& detail) {
  return json_response(status, json{{"error", error}, {"detail", detail}});
}

/// One request being answered. Copies share the responder: the first answer wins, is counted by
/// status and, for a query, by its one outcome; later answers are dropped (http_responder). Every
/// piece of work for the request (the route on the server's thread, each job and response handler
/// in the bridge actor) runs inside guard(), so an exception answers 500 internal_error instead of
/// killing the bridge actor, which lives outside the supervision tree and serves every request.
struct exchange {
  engine* eng;
  http_api_metrics* metrics;
  http_responder respond;
  std::string id;   ///< "r<n>", in the 500 body and the log line
  std::string path; ///< for the log line and the fault seam
  /// POST /v1/query/..., /v1/transaction or /v1/batch/...: counts in bulwark_requests_total
  bool query = false;
  http_api_fault fault;
  /// The public listener: /v1/status leaves out what may hold secrets (last_error texts: a
  /// backend's connection errors name hosts and users); the admin listener shows them.
  bool redact = false;

  void answer(http_response r) const { deliver(std::move(r), nullptr); }

  /// A query's answer with its outcome (counted only if this is the answer that goes out).
  void answer(http_response r, query_outcome o) const { deliver(std::move(r), &o); }

  /// A query's answer from the front door, which counts its outcome through `count` (called
  /// only if this is the answer that goes out, before it can reach the client).
  void answer(http_response r, const std::function<void()>& count_outcome) const {
    auto status = r.status;
    respond(std::move(r), [&] {
      count_outcome();
      count(eng, metrics, status, nullptr);
    });
  }

  /// A streamed query answer's head (http_response::stream): counted by status now, by outcome
  /// when the stream ends (finish_stream). False when another answer won.
  bool answer_streamed(http_response r) const {
    auto status = r.status;
    return respond(std::move(r), [&] { count(eng, metrics, status, nullptr); });
  }

  /// Ends a streamed answer with the tail `end` renders and counts its one outcome through the
  /// front door's `count` (before the last bytes can reach the client, like any answer's). If
  /// rendering throws (out of memory), the client's document stays cut (no last chunk); the
  /// outcome is the front door's either way.
  template <class End>
  void finish_stream(detail::result_stream& s, const std::function<void()>& count_outcome,
                     End&& end) const noexcept {
    try {
      count_outcome();
      s.finish(end()); // false: the client went away; the outcome stands
    } catch (...) {
      s.cut("client");
    }
  }

  /// The fault seam (tests): called before an actor's answer is rendered (in the bridge actor, or
  /// on the front door for a query).
  void before_render() const {
    if (fault)
      fault(path);
  }

  template <class F>
  void guard(F&& f) const noexcept {
    try {
      f();
    } catch (const std::exception& e) {
      fail(e.what());
    } catch (...) {
      fail("unknown exception");
    }
  }

  /// Counts an answer that went out: by status and, for a query, by its outcome.
  static void count(engine* eng, http_api_metrics* metrics, unsigned status,
                    const query_outcome* o) {
    if (o != nullptr)
      eng->metrics().request_answered(*o);
    if (status < 600)
      metrics->by_code.at(status).Increment();
    else
      metrics->responses->Add({{"code", std::to_string(status)}}).Increment();
  }

  /// The server's own answer (handler timeout, or shutting down past the drain) as an outcome.
  static outcome_info server_outcome(server_answer why) {
    return why == server_answer::handler_timeout ? handler_timed_out() : shut_down_in_flight();
  }

  /// Tells the server how to count its own answer when it answers first (503 handler_timeout,
  /// or 503 shutting_down past the drain); then every answer of ours is dropped, uncounted.
  /// Either way each request counts once, as what the client got. Captures no responder (the
  /// server keeps the hook).
  void count_server_answer() const {
    // Two words captured, so the std::function holds the hook in place, not on the heap.
    if (query)
      respond.on_server_answer([eng = eng, metrics = metrics](server_answer why) {
        auto o = server_outcome(why);
        count(eng, metrics, o.http_status, &o.outcome);
      });
    else
      respond.on_server_answer([eng = eng, metrics = metrics](server_answer why) {
        count(eng, metrics, server_outcome(why).http_status, nullptr);
      });
  }

private:
  void deliver(http_response r, const query_outcome* o) const {
    // Counted only if it wins (else the server's handler timeout answered first), and before it
    // can reach the client.
    auto status = r.status;
    respond(std::move(r), [&] { count(eng, metrics, status, o); });
  }

  void fail(const std::string& what) const noexcept {
    try {
      log_error("http_api", "request " + id + " (" + path + ") failed: " + what);
      auto o = internal_failure(what);
      auto r =
          json_response(o.http_status,
                        json{{"error", o.error}, {"detail", public_detail(o)}, {"request_id", id}});
      if (query)
        answer(std::move(r), o.outcome);
      else
        answer(std::move(r));
    } catch (...) {
      // Out of memory while answering: the server's handler timeout answers 503.
    }
  }
};

double seconds(caf::timespan x) {
  return std::chrono::duration<double>(x).count();
}

json history_json(const std::vector<pressure_history_entry>& h, caf::timespan now) {
  auto out = json::array();
  for (auto& e : h)
    out.push_back({{"age_seconds", seconds(now - e.at)},
                   {"component", e.component},
                   {"level", to_string(e.level)},
                   {"what", e.what}});
  return out;
}

json pressure_json(const pressure_status& s, caf::timespan now) {
  return {{"level", to_string(s.level)},
          {"level_value", static_cast<int>(s.level)},
          {"ratio", s.ratio},
          {"used_bytes", s.used_bytes},
          {"limit_bytes", s.limit_bytes},
          {"source", s.source},
          {"samples", s.samples},
          {"sample_errors", s.sample_errors},
          {"last_error", s.last_error},
          {"subscribers", s.subscribers},
          {"history", history_json(s.history, now)}};
}

json tasks_json(const std::vector<cleanup_task_status>& ts) {
  auto out = json::array();
  for (auto& t : ts)
    out.push_back({{"name", t.name},
                   {"target", t.target},
                   {"state", t.state},
                   {"interval_seconds", seconds(t.interval)},
                   {"effective_interval_seconds", seconds(t.effective_interval)},
                   {"deferrable", t.deferrable},
                   {"urgent", t.urgent},
                   {"runs", t.runs},
                   {"failures", t.failures},
                   {"hung", t.hung},
                   {"stale", t.stale},
                   {"restarts", t.restarts},
                   {"last_duration_seconds", seconds(t.last_duration)},
                   {"seconds_since_last_completion", seconds(t.since_last_completion)},
                   {"next_run_seconds", seconds(t.next_run_in)},
                   {"last_error", t.last_error}});
  return out;
}

json breaker_json(const breaker_status& s) {
  return {{"state", s.state},
          {"forced", s.forced},
          {"open_remaining_seconds", seconds(s.open_remaining)},
          {"window",
           {{"calls", s.window_calls}, {"failures", s.window_failures}, {"slow", s.window_slow}}},
          {"consecutive_opens", s.consecutive_opens},
          {"last_transition", s.last_transition},
          {"successes", s.successes},
          {"failures", s.failures},
          {"rejected", s.rejected},
          {"ignored", s.ignored},
          {"caller_errors", s.caller_errors},
          {"contention", s.contention}};
}

json pool_json(const pool_status& s) {
  return {{"connections", s.connections},
          {"idle", s.idle},
          {"busy", s.busy},
          {"connecting", s.connecting},
          {"queue_length", s.queue_length},
          {"queue_limit", s.queue_limit},
          {"strategy", s.strategy},
          {"health", s.health},
          {"service_rate_per_s", s.service_rate_per_s},
          {"served", s.served},
          {"rejected", s.rejected},
          {"connect_failures", s.connect_failures},
          {"replacements", s.replacements},
          {"last_error", s.last_error}};
}

json cache_json(const cache_stats& s) {
  return {{"shard", s.shard},         {"entries", s.entries},
          {"bytes", s.bytes},         {"budget_bytes", s.max_bytes},
          {"hits", s.hits},           {"misses", s.misses},
          {"evictions", s.evictions}, {"refused", s.refused},
          {"policy_shape", s.shape},  {"policy_bytes", s.policy_bytes}};
}

json limiter_json(const limiter_stats& s) {
  return {{"keys", s.keys},
          {"bytes", s.bytes},
          {"budget_bytes", s.max_bytes},
          {"allowed", s.allowed},
          {"limited", s.limited}};
}

json perf_json(const perf_status& s) {
  auto series = json::array();
  for (auto& x : s.series)
    series.push_back({{"name", x.name},
                      {"points", x.points},
                      {"bytes", x.bytes},
                      {"capacity_points", x.capacity},
                      {"trims", x.trims}});
  json latest = nullptr;
  if (s.has_sample)
    latest = {{"cpu_ratio", s.latest.cpu_ratio},
              {"rss_bytes", s.latest.rss_bytes},
              {"scheduler_lag_s", s.latest.scheduler_lag_s},
              {"request_rate", s.latest.request_rate},
              {"request_p99_s", s.latest.request_p99_s},
              {"backend_p99_s", s.latest.backend_p99_s},
              {"request_mean_s", s.latest.request_mean_s},
              {"answered", s.latest.answered},
              {"error_ratio", s.latest.error_ratio},
              {"cache_lookups", s.latest.cache_lookups},
              {"cache_hit_ratio",
               s.latest.cache_lookups > 0 ? json(s.latest.cache_hit_ratio) : json(nullptr)}};
  auto findings = json::array();
  for (auto& f : s.findings)
    findings.push_back({{"name", f.name},
                        {"value", f.value},
                        {"threshold", f.threshold},
                        {"penalty", f.penalty},
                        {"advice", f.advice}});
  return {{"score", s.score},
          {"findings", findings},
          {"sampling_ratio", s.sampling_ratio},
          {"load", s.load},
          {"collected", s.collected},
          {"skipped", s.skipped},
          {"self_cpu_seconds", s.self_cpu_seconds},
          {"latest", latest},
          {"series", series}};
}

json alerts_json(const std::vector<alert_info>& alerts) {
  auto list = json::array();
  size_t firing = 0;
  for (auto& a : alerts) {
    firing += a.state == "firing" ? 1 : 0;
    list.push_back({{"name", a.name},
                    {"severity", a.severity},
                    {"state", a.state},
                    {"metric", a.metric},
                    {"op", a.op},
                    {"threshold", a.threshold},
                    {"clear_threshold", a.clear_threshold},
                    {"for_seconds", detail::secs(a.for_duration)},
                    {"value", a.has_value ? json(a.value) : json(nullptr)},
                    {"in_state_seconds", detail::secs(a.in_state)},
                    {"fired", a.fired}});
  }
  return {{"enabled", true}, {"firing", firing}, {"alerts", list}};
}

/// GET /v1/alerts, /v1/perf and /v1/perf/history/{series}: one ask of the performance monitor.
template <class Result, class ToJson, class... Ts>
void ask_performance(engine& eng, const exchange& ex, ToJson to_json, Ts... xs) {
  if (!eng.config().performance.enabled) {
    ex.answer(
        error_response(404, "disabled", "the performance monitor is off (performance.enabled)"));
    return;
  }
  auto h = eng.directory().get<performance_monitor_actor>("performance_monitor");
  if (!h) {
    ex.answer(error_response(503, "unavailable", "performance_monitor is restarting"));
    return;
  }
  eng.post([h, ex, to_json, xs...](caf::event_based_actor* self) {
    ex.guard([&] {
      self->request(h, status_timeout, xs...)
          .then(
              [ex, to_json](Result& r) {
                ex.guard([&] {
                  ex.before_render();
                  ex.answer(json_response(200, to_json(r)));
                });
              },
              [ex](caf::error& e) {
                ex.guard([&] { ex.answer(error_response(503, "unavailable", describe(e))); });
              });
    });
  });
}

json components_json(const component_directory& dir) {
  auto out = json::array();
  for (auto& c : dir.snapshot())
    out.push_back({{"name", c.name},
                   {"supervisor", c.supervisor},
                   {"state", to_string(c.state)},
                   {"restarts", c.restarts},
                   {"last_exit_reason", c.last_exit_reason}});
  return out;
}

/// Collects the answers of several components into one JSON body and answers once all are in.
/// A component that is restarting or slow shows up as an error string rather than failing the
/// whole status. Keys are JSON pointers ("/pool", "/cache/0"). `pending` counts the asks still
/// out plus one for the caller, who calls done() once it has asked everyone.
struct status_gather {
  std::shared_ptr<json> body;
  std::shared_ptr<int> pending;
  exchange ex;

  void done() {
    if (--*pending == 0) {
      ex.before_render();
      if (ex.redact)
        redact(*body);
      ex.answer(json_response(200, *body));
    }
  }

  /// Drops every "last_error" (the admin listener's /v1/status has them).
  static void redact(json& j) {
    if (j.is_object()) {
      if (j.erase("last_error") > 0)
        j["last_error_on_admin_listener"] = true;
    }
    if (j.is_structured())
      for (auto& v : j) // an object's values, an array's elements
        redact(v);
  }

  template <class Result, class Handle, class ToJson>
  void ask(caf::event_based_actor* self, const std::string& key, const Handle& h,
           const std::string& name, ToJson to_json) {
    ++*pending;
    auto me = *this;
    if (!h) {
      (*body)[json::json_pointer(key)] = json{{"error", name + " is not running"}};
      me.done();
      return;
    }
    self->request(h, status_timeout, caf::get_atom::value)
        .then(
            [me, key, to_json](Result& r) mutable {
              me.ex.guard([&] {
                (*me.body)[json::json_pointer(key)] = to_json(r);
                me.done();
              });
            },
            [me, key](caf::error& e) mutable {
              me.ex.guard([&] {
                (*me.body)[json::json_pointer(key)] = json{{"error", describe(e)}};
                me.done();
              });
            });
  }
};

json account_json(const detail::memory_account_snapshot& s) {
  json reserved = json::object();
  json refusals = json::object();
  for (size_t i = 0; i < detail::memory_consumer_count; ++i) {
    auto name = detail::to_string(static_cast<detail::memory_consumer>(i));
    reserved[name] = s.reserved[i];
    refusals[name] = s.refused[i];
  }
  return {
      {"budget_bytes", s.budget_bytes},
      {"used_bytes", s.used_bytes},
      {"unaccounted_bytes", s.unaccounted_bytes},
      {"reserved_bytes", s.reserved_bytes},
      {"reserved", reserved},
      {"refusals", refusals},
      {"ceiling_bytes",
       {{"low", s.ceiling_bytes[0]}, {"normal", s.ceiling_bytes[1]}, {"high", s.ceiling_bytes[2]}}},
      {"critical", s.critical},
      {"admission", s.admission}};
}

/// In the bridge actor: asks every component and answers once all are in.
void ask_status(engine& eng, const exchange& ex, caf::event_based_actor* self) {
  auto reasons = eng.not_ready_reasons();
  status_gather g{
      std::make_shared<json>(json{{"node", eng.config().node.name},
                                  {"ready", reasons.empty()},
                                  {"not_ready_reasons", reasons},
                                  {"components", components_json(eng.directory())},
                                  {"memory_account", account_json(eng.memory_account().snapshot())},
                                  // Arrays from the start: shards answer in any order.
                                  {"rate_limiter", json::array()},
                                  {"cache", json::array()}}),
      std::make_shared<int>(1), ex};
  auto& dir = eng.directory();
  auto now = eng.clock_now();
  g.ask<pressure_status>(
      self, "/pressure", dir.get<memory_pressure_monitor_actor>("memory_pressure_monitor"),
      "memory_pressure_monitor", [now](const pressure_status& s) { return pressure_json(s, now); });
  g.ask<std::vector<cleanup_task_status>>(self, "/tasks",
                                          dir.get<cleanup_manager_actor>("cleanup_manager"),
                                          "cleanup_manager", tasks_json);
  g.ask<pool_status>(self, "/pool", dir.get<connection_pool_actor>("connection_pool"),
                     "connection_pool", pool_json);
  g.ask<breaker_status>(self, "/breaker", dir.get<circuit_breaker_actor>("circuit_breaker"),
                        "circuit_breaker", breaker_json);
  for (uint32_t i = 0; i < std::max<uint32_t>(eng.config().gateway.shards, 1); ++i) {
    auto name = rate_limiter_shard_name(i);
    g.ask<limiter_stats>(self, "/rate_limiter/" + std::to_string(i),
                         dir.get<rate_limiter_actor>(name), name, limiter_json);
  }
  if (eng.config().performance.enabled)
    g.ask<perf_status>(self, "/performance",
                       dir.get<performance_monitor_actor>("performance_monitor"),
                       "performance_monitor", perf_json);
  for (uint32_t i = 0; i < eng.config().cache.shards; ++i) {
    auto name = cache_shard_name(i);
    g.ask<cache_stats>(self, "/cache/" + std::to_string(i), dir.get<cache_actor>(name), name,
                       cache_json);
  }
  g.done();
}

/// How long /readyz waits for each part of the request path to answer (a kubelet's probe gives
/// up after 1 s by default).
constexpr auto readiness_timeout = std::chrono::milliseconds(500);

/// /readyz: ready when the tree is up (engine::not_ready_reasons) and every actor a request
/// passes through answers now (a part that is running but wedged cannot serve), and the memory
/// budget is not at critical (only high-priority work is admitted there). An unreachable backend
/// is not a reason: every replica shares it, and the breaker answers for it fast.
struct readiness_probe {
  std::shared_ptr<std::vector<std::string>> reasons;
  std::shared_ptr<int> pending;
  exchange ex;
  engine* eng;

  void done() {
    if (--*pending != 0)
      return;
    if (eng->memory_account().snapshot().critical)
      reasons->push_back("memory pressure is critical: only high-priority requests are admitted");
    std::sort(reasons->begin(), reasons->end());
    bool ready = reasons->empty();
    ex.answer(json_response(ready ? 200 : 503, json{{"ready", ready}, {"reasons", *reasons}}));
  }

  template <class Result, class Handle, class... Ts>
  void ask(caf::event_based_actor* self, const Handle& h, const std::string& name, Ts... xs) {
    ++*pending;
    auto me = *this;
    if (!h) {
      reasons->push_back(name + " is not running");
      me.done();
      return;
    }
    self->request(h, readiness_timeout, xs...)
        .then([me](Result&) mutable { me.ex.guard([&] { me.done(); }); },
              [me, name](caf::error& e) mutable {
                me.ex.guard([&] {
                  me.reasons->push_back(name + " did not answer: " + describe(e));
                  me.done();
                });
              });
  }
};

void readiness(engine& eng, const exchange& ex) {
  auto reasons = eng.not_ready_reasons();
  if (!reasons.empty()) {
    ex.answer(json_response(503, json{{"ready", false}, {"reasons", reasons}}));
    return;
  }
  eng.post([&eng, ex](caf::event_based_actor* self) {
    ex.guard([&] {
      readiness_probe p{std::make_shared<std::vector<std::string>>(), std::make_shared<int>(1), ex,
                        &eng};
      auto& dir = eng.directory();
      for (uint32_t i = 0; i < std::max<uint32_t>(eng.config().gateway.shards, 1); ++i) {
        auto name = gateway_shard_name(i);
        p.ask<caf::ok_atom>(self, dir.get<gateway_actor>(name), name, health_atom::value);
        auto limiter = rate_limiter_shard_name(i);
        p.ask<limiter_stats>(self, dir.get<rate_limiter_actor>(limiter), limiter,
                             caf::get_atom::value);
      }
      p.ask<caf::ok_atom>(self, dir.get<database_actor>("database"), "database",
                          health_atom::value);
      p.ask<breaker_status>(self, dir.get<circuit_breaker_actor>("circuit_breaker"),
                            "circuit_breaker", caf::get_atom::value);
      p.ask<pool_status>(self, dir.get<connection_pool_actor>("connection_pool"), "connection_pool",
                         caf::get_atom::value);
      for (uint32_t i = 0; i < eng.config().cache.shards; ++i) {
        auto name = cache_shard_name(i);
        p.ask<cache_stats>(self, dir.get<cache_actor>(name), name, caf::get_atom::value);
      }
      p.done();
    });
  });
}

void status(engine& eng, const exchange& ex) {
  eng.post(
      [&eng, ex](caf::event_based_actor* self) { ex.guard([&] { ask_status(eng, ex, self); }); });
}

prometheus::MetricFamily family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  return {name, help, type, {m}};
}

/// The server counts for itself (atomics on its I/O threads); they become metric families at
/// scrape time rather than being mirrored into the registry on every request.
std::vector<prometheus::MetricFamily> server_families(const http_server_stats& s) {
  using prometheus::MetricType;
  auto d = [](uint64_t x) { return static_cast<double>(x); };
  return {
      family("bulwark_http_connections_accepted_total", "Connections the HTTP server accepted",
             MetricType::Counter, d(s.connections_accepted)),
      family("bulwark_http_connections_rejected_total",
             "Connections refused with 503 because http.max_connections were open",
             MetricType::Counter, d(s.connections_rejected)),
      family("bulwark_http_requests_total", "Requests the HTTP server handed to the API",
             MetricType::Counter, d(s.requests)),
      family("bulwark_http_bad_requests_total",
             "Requests the HTTP server answered itself with 400, 408, 413, 431 or 501",
             MetricType::Counter, d(s.bad_requests)),
      family("bulwark_http_requests_in_flight", "Requests handed to the API and not yet answered",
             MetricType::Gauge, d(s.in_flight)),
      family("bulwark_http_connections_open", "Open HTTP connections", MetricType::Gauge,
             d(s.open_connections)),
  };
}

/// The memory account's state as metric families, read at scrape time like the server's.
std::vector<prometheus::MetricFamily> account_families(const detail::memory_account_snapshot& s) {
  using prometheus::MetricType;
  auto d = [](uint64_t x) { return static_cast<double>(x); };
  auto by_consumer = [&](const char* name, const char* help, MetricType type,
                         const std::array<uint64_t, detail::memory_consumer_count>& xs) {
    prometheus::MetricFamily f{name, help, type, {}};
    for (size_t i = 0; i < xs.size(); ++i) {
      prometheus::ClientMetric m;
      m.label.push_back({"consumer", detail::to_string(static_cast<detail::memory_consumer>(i))});
      if (type == MetricType::Counter)
        m.counter.value = d(xs[i]);
      else
        m.gauge.value = d(xs[i]);
      f.metric.push_back(std::move(m));
    }
    return f;
  };
  prometheus::MetricFamily ceilings{"bulwark_memory_account_ceiling_bytes",
                                    "How far each priority class may fill the budget "
                                    "(unaccounted plus reserved)",
                                    MetricType::Gauge,
                                    {}};
  const char* classes[] = {"low", "normal", "high"};
  for (size_t k = 0; k < 3; ++k) {
    prometheus::ClientMetric m;
    m.label.push_back({"class", classes[k]});
    m.gauge.value = d(s.ceiling_bytes[k]);
    ceilings.metric.push_back(std::move(m));
  }
  return {
      by_consumer("bulwark_memory_reserved_bytes",
                  "Bytes reserved from the node's memory budget, by consumer", MetricType::Gauge,
                  s.reserved),
      by_consumer("bulwark_memory_account_refusals_total",
                  "Reservations refused for want of room in the memory budget, by consumer",
                  MetricType::Counter, s.refused),
      by_consumer("bulwark_memory_account_overdraft_bytes_total",
                  "Bytes taken past a ceiling by work already admitted, by consumer",
                  MetricType::Counter, s.overdraft_bytes),
      family("bulwark_memory_account_unaccounted_bytes",
             "What the node used beyond its reservations at the last memory sample",
             MetricType::Gauge, d(s.unaccounted_bytes)),
      std::move(ceilings),
  };
}

http_response metrics_text(engine& eng, const http_stats_source& server_stats) {
  http_response r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  std::vector<prometheus::MetricFamily> families;
  {
    // The books of queries (received, outcomes, in flight) are read as one consistent moment.
    std::lock_guard<std::mutex> books{eng.metrics().books};
    families = eng.registry()->Collect();
  }
  for (auto& f : account_families(eng.memory_account().snapshot()))
    families.push_back(std::move(f));
  if (server_stats)
    for (auto& f : server_families(server_stats()))
      families.push_back(std::move(f));
  r.body = prometheus::TextSerializer{}.Serialize(families);
  return r;
}

http_response crash(engine& eng, const std::string& name) {
  if (!eng.config().admin.fault_injection)
    return error_response(404, "not_found", "fault injection is disabled (admin.fault_injection)");
  auto snapshot = eng.directory().snapshot();
  auto known = std::any_of(snapshot.begin(), snapshot.end(),
                           [&](const component_info& c) { return c.name == name; });
  if (!known)
    return error_response(404, "unknown_component", "no component named \"" + name + "\"");
  auto h = eng.directory().lookup(name);
  if (!h)
    return error_response(409, "component_unavailable", name + " is not running right now");
  // anon_send_exit only takes an exit_reason; an exit_msg carries any error, so the supervisor
  // logs and counts "fault_injected" as the reason.
  h->enqueue(nullptr, caf::make_message_id(),
             caf::make_message(caf::exit_msg{h.address(), make_error(errc::fault_injected, name)}),
             nullptr);
  return json_response(202, json{{"crashed", name}});
}

} // namespace

namespace {

/// Reads a JSON array of parameters (`where` names it in what is wrong: "params").
std::string parse_params(const json& ps, const std::vector<detail::param_kind>* kinds,
                         std::vector<db_value>& out, const std::string& where) {
  if (!ps.is_array())
    return "\"" + where + "\" must be an array";
  constexpr double two_63 = 9223372036854775808.0; // 2^63, exact in a double
  for (size_t i = 0; i < ps.size(); ++i) {
    auto& p = ps[i];
    bool for_int =
        kinds != nullptr && i < kinds->size() && (*kinds)[i] == detail::param_kind::integer;
    auto out_of_range = [&] {
      return where + "[" + std::to_string(i) + "]: " + p.dump() +
             " is out of range for int (-9223372036854775808..9223372036854775807)";
    };
    if (p.is_null()) {
      out.push_back(db_value::of_null());
    } else if (p.is_boolean()) {
      out.push_back(db_value::of(p.get<bool>()));
    } else if (p.is_number_unsigned() && p.get<uint64_t>() > uint64_t{INT64_MAX}) {
      // Above int64: refused for an int, never wrapped. Otherwise the nearest double, the value
      // the same number has written with a decimal point (real params; other types refuse it).
      if (for_int)
        return out_of_range();
      out.push_back(db_value::of(static_cast<double>(p.get<uint64_t>())));
    } else if (p.is_number_integer()) {
      out.push_back(db_value::of(p.get<int64_t>()));
    } else if (p.is_number_float()) {
      // The parser reads an integer that fits int64 as one, so an integral float at or past
      // +-2^63 was written outside int64: for an int, say why it cannot be one.
      auto x = p.get<double>();
      if (for_int && std::floor(x) == x && (x <= -two_63 || x >= two_63))
        return out_of_range();
      out.push_back(db_value::of(x));
    } else if (p.is_string()) {
      out.push_back(db_value::of(p.get<std::string>()));
    } else {
      return (where == "params" ? "" : where + ": ") + "parameter " + std::to_string(i + 1) +
             " is an array or object; parameters are numbers, strings, booleans or null";
    }
  }
  return {};
}

/// Parses `body` into `doc`, a JSON object whose keys are all in `allowed` (`expected` says
/// which, in the message; `shape` shows the object). Returns what was wrong, or an empty string.
std::string read_object(const std::string& body, json& doc, const char* shape,
                        const std::vector<std::string>& allowed, const char* expected) {
  doc = json::parse(body, nullptr, false);
  if (doc.is_discarded())
    return "the body is not valid JSON";
  if (!doc.is_object())
    return std::string{"the body must be a JSON object "} + shape;
  for (auto& [key, value] : doc.items())
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      return "unknown key \"" + key + "\" (" + expected + ")";
  return {};
}

/// The shape nearly every query body has, read by hand with no allocation but the parameters':
/// {"params": [...]} alone, its elements integers of at most 18 digits, strings of printable
/// ASCII without escapes, true, false or null. Anything else (another key, a fraction or an
/// exponent, an escape, a byte outside printable ASCII, a malformed body) returns false and
/// leaves `out` as it was, for the tree reading (detail::parse_query_params_tree): this never
/// decides alone what a body means (a test and the request_parts fuzzer hold it to the tree).
/// The tree cost about a dozen allocations on the HTTP thread per request.
bool read_plain_params(std::string_view b, std::vector<db_value>& out) {
  size_t i = 0;
  auto base = out.size();
  auto ws = [&] {
    while (i < b.size() && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
      ++i;
  };
  auto lit = [&](std::string_view t) {
    if (b.substr(i, t.size()) != t)
      return false;
    i += t.size();
    return true;
  };
  auto scalar = [&] {
    if (lit("true")) {
      out.push_back(db_value::of(true));
    } else if (lit("false")) {
      out.push_back(db_value::of(false));
    } else if (lit("null")) {
      out.push_back(db_value::of_null());
    } else if (i < b.size() && b[i] == '"') {
      auto start = ++i;
      while (i < b.size() && b[i] != '"') {
        if (b[i] < 0x20 || b[i] > 0x7e || b[i] == '\\')
          return false;
        ++i;
      }
      if (i == b.size())
        return false;
      out.push_back(db_value::of(std::string{b.substr(start, i - start)}));
      ++i;
    } else {
      bool negative = lit("-");
      auto start = i;
      int64_t v = 0;
      while (i < b.size() && b[i] >= '0' && b[i] <= '9' && i - start < 18)
        v = v * 10 + (b[i++] - '0');
      auto digits = i - start;
      // Leading zeros, -0, more digits, a fraction or an exponent: the tree's.
      if (digits == 0 || (b[start] == '0' && (digits > 1 || negative)) ||
          (i < b.size() &&
           ((b[i] >= '0' && b[i] <= '9') || b[i] == '.' || b[i] == 'e' || b[i] == 'E')))
        return false;
      out.push_back(db_value::of(negative ? -v : v));
    }
    return true;
  };
  ws();
  bool ok = lit("{") && (ws(), lit("\"params\"")) && (ws(), lit(":")) && (ws(), lit("["));
  if (ok) {
    ws();
    if (!lit("]"))
      for (;;) {
        if (!scalar()) {
          ok = false;
          break;
        }
        ws();
        if (lit("]"))
          break;
        if (!lit(",")) {
          ok = false;
          break;
        }
        ws();
      }
  }
  ok = ok && (ws(), lit("}")) && (ws(), i == b.size());
  if (!ok)
    out.resize(base);
  return ok;
}

} // namespace

std::string parse_query_params(const std::string& body,
                               const std::vector<detail::param_kind>* kinds,
                               std::vector<db_value>& out) {
  if (body.empty() || read_plain_params(body, out))
    return {};
  return detail::parse_query_params_tree(body, kinds, out);
}

std::string detail::parse_query_params_tree(const std::string& body,
                                            const std::vector<detail::param_kind>* kinds,
                                            std::vector<db_value>& out) {
  if (body.empty())
    return {};
  json doc;
  auto problem =
      read_object(body, doc, R"({"params": [...]})", {"params"}, R"(expected only "params")");
  if (!problem.empty())
    return problem;
  if (!doc.contains("params"))
    return {};
  return parse_params(doc["params"], kinds, out, "params");
}

std::string parse_batch_body(const std::string& body, const std::string& statement,
                             const std::vector<detail::param_kind>* kinds, db_query& out) {
  json doc;
  auto problem = read_object(body, doc, R"({"params": [[...], ...], "mode": "fail_fast"})",
                             {"params", "mode"}, R"(expected "params" and optionally "mode")");
  if (!problem.empty())
    return problem;
  if (doc.contains("mode")) {
    auto& mode = doc["mode"];
    if (!mode.is_string() || (mode != "fail_fast" && mode != "collect"))
      return R"("mode" must be "fail_fast" (the default) or "collect")";
    out.collect = mode == "collect";
  }
  if (!doc.contains("params") || !doc["params"].is_array() || doc["params"].empty())
    return R"("params" must be a non-empty array of parameter arrays, one per item)";
  auto& ps = doc["params"];
  out.statement = statement;
  out.batch.assign(ps.size(), {});
  for (size_t i = 0; i < ps.size(); ++i) {
    problem = parse_params(ps[i], kinds, out.batch[i], "params[" + std::to_string(i) + "]");
    if (!problem.empty())
      return problem;
  }
  return {};
}

std::string parse_declared_transaction_body(const std::string& body, const std::string& name,
                                            const std::vector<std::string>& statements,
                                            const detail::statement_catalog& known, db_query& out) {
  out.statement = declared_transaction_label(name);
  out.steps.assign(statements.size(), db_step{});
  for (size_t i = 0; i < statements.size(); ++i)
    out.steps[i].statement = statements[i];
  if (body.empty())
    return {};
  json doc;
  auto problem = read_object(body, doc, R"({"params": [[...], ...]} (one array per step))",
                             {"params"}, R"(expected only "params")");
  if (!problem.empty())
    return problem;
  if (!doc.contains("params"))
    return {};
  auto& ps = doc["params"];
  if (!ps.is_array() || ps.size() != statements.size())
    return "\"params\" must be an array of " + std::to_string(statements.size()) +
           " arrays, one per step of " + name;
  for (size_t i = 0; i < statements.size(); ++i) {
    auto* stmt = known.find(statements[i]);
    problem = parse_params(ps[i], stmt ? &stmt->params : nullptr, out.steps[i].params,
                           "params[" + std::to_string(i) + "]");
    if (!problem.empty())
      return problem;
  }
  return {};
}

std::string parse_transaction_body(const std::string& body, const detail::statement_catalog& known,
                                   db_query& out) {
  json doc;
  auto problem =
      read_object(body, doc, R"({"steps": [{"statement": ..., "params": [...]}, ...]})",
                  {"steps", "isolation"}, R"(expected "steps" and optionally "isolation")");
  if (!problem.empty())
    return problem;
  if (doc.contains("isolation")) {
    auto& iso = doc["isolation"];
    if (!iso.is_string() || !is_isolation(iso.get<std::string>()))
      return "\"isolation\" must be \"repeatable_read\" or \"serializable\" (or left out for "
             "the backend's default)";
    out.isolation = iso.get<std::string>();
  }
  if (!doc.contains("steps") || !doc["steps"].is_array() || doc["steps"].empty())
    return "\"steps\" must be a non-empty array of {\"statement\": ..., \"params\": [...]}";
  auto& steps = doc["steps"];
  out.statement = transaction_label;
  out.steps.clear();
  out.steps.reserve(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    auto where = "steps[" + std::to_string(i) + "]";
    auto& s = steps[i];
    if (!s.is_object())
      return where + " must be an object {\"statement\": ..., \"params\": [...]}";
    for (auto& [key, value] : s.items())
      if (key != "statement" && key != "params")
        return where + ": unknown key \"" + key + "\" (expected \"statement\" and \"params\")";
    if (!s.contains("statement") || !s["statement"].is_string())
      return where + ".statement must be a string naming a configured statement";
    db_step step;
    step.statement = s["statement"].get<std::string>();
    auto* stmt = known.find(step.statement);
    if (s.contains("params")) {
      problem =
          parse_params(s["params"], stmt ? &stmt->params : nullptr, step.params, where + ".params");
      if (!problem.empty())
        return problem;
    }
    out.steps.push_back(std::move(step));
  }
  return {};
}

std::string client_key(const http_request& req, const address_ranges& trusted, std::string& key) {
  auto colon = req.peer.rfind(':');
  auto peer = colon == std::string::npos ? req.peer : req.peer.substr(0, colon);
  key = "ip:" + peer;
  if (!trusted.contains(peer))
    return {}; // its headers say whatever it likes: it is its address
  auto id = req.header("x-client-id");
  if (id.size() > max_client_id_bytes)
    return "X-Client-Id is " + std::to_string(id.size()) + " bytes, more than " +
           std::to_string(max_client_id_bytes);
  if (!id.empty()) {
    key = "id:" + id;
    return {};
  }
  auto forwarded = req.header("x-forwarded-for");
  if (forwarded.empty())
    return {};
  std::vector<std::string> hops;
  size_t at = 0;
  for (;;) {
    auto comma = forwarded.find(',', at);
    auto hop = forwarded.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    auto first = hop.find_first_not_of(" \t");
    auto last = hop.find_last_not_of(" \t");
    hop = first == std::string::npos ? std::string{} : hop.substr(first, last - first + 1);
    if (!parse_ip(hop))
      return "X-Forwarded-For holds \"" + hop.substr(0, 64) + "\", which is not an IP address";
    hops.push_back(std::move(hop));
    if (comma == std::string::npos)
      break;
    at = comma + 1;
  }
  // The rightmost hop that is not one of ours is the client; if all are ours, the first.
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    if (!trusted.contains(*it) || std::next(it) == hops.rend()) {
      key = "ip:" + *it;
      break;
    }
  }
  return {};
}

bool decode_path_segment(std::string_view in, std::string& out) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    int hi = i + 1 < in.size() ? hex(in[i + 1]) : -1;
    int lo = i + 2 < in.size() ? hex(in[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return is_valid_utf8(out);
}

namespace {

/// What a failed query's client is told: the outcome with public_detail(), and `request_id`
/// names it in the node's log, where a private detail (the backend's own text) goes.
outcome_info told(const outcome_info& o, const std::string& request_id, const std::string& path) {
  if (!o.private_detail)
    return o;
  log_warn("http_api", "request " + request_id + " (" + path + ") " + o.error + ": " + o.detail);
  auto out = o;
  out.detail = public_detail(o);
  return out;
}

/// The HTTP answer of a failed query (runtime/outcome.hpp decides which outcome it is), `o` as
/// told() gives it.
/// What an error answer says of `o` (as told() gives it), without the request id.
json error_fields(const outcome_info& o) {
  json body{{"error", o.error}, {"detail", o.detail}};
  if (!o.constraint.empty())
    body["constraint"] = o.constraint;
  if (o.parameter > 0)
    body["parameter"] = o.parameter;
  if (o.step)
    body["failed_step"] = json{{"index", o.step->index}, {"statement", o.step->statement}};
  if (o.item) {
    body["failed_item"] = json{{"index", o.item->index}, {"statement", o.item->statement}};
    body["succeeded"] = o.item->succeeded;
  }
  return body;
}

http_response error_answer(const outcome_info& o, const std::string& request_id) {
  auto body = error_fields(o);
  body["request_id"] = request_id;
  auto r = json_response(o.http_status, body);
  if (o.retry_after_ms > 0)
    r.headers.emplace_back("Retry-After",
                           std::to_string(std::max<int64_t>(1, (o.retry_after_ms + 999) / 1000)));
  return r;
}

void append_real(std::string& out, double x) {
  out += render_json(json(x)); // nlohmann's shortest round trip; NaN and inf are null
}

void append_value(std::string& out, const db_value& v) {
  switch (v.kind) {
  case db_value_kind::null:
    out += "null";
    return;
  case db_value_kind::integer:
    out += std::to_string(v.integer);
    return;
  case db_value_kind::real:
    append_real(out, v.real);
    return;
  case db_value_kind::text:
    append_json_string(out, v.text);
    return;
  case db_value_kind::boolean:
    out += v.boolean ? "true" : "false";
    return;
  }
  out += "null";
}

/// A backend's cell (a streamed row), rendered as append_value renders the same db_value.
void append_value(std::string& out, const detail::sql_value& v) {
  struct visitor {
    std::string& out;
    void operator()(std::monostate) const { out += "null"; }
    void operator()(int64_t x) const { out += std::to_string(x); }
    void operator()(double x) const { append_real(out, x); }
    void operator()(const std::string& x) const { append_json_string(out, x); }
    void operator()(bool x) const { out += x ? "true" : "false"; }
  };
  std::visit(visitor{out}, v);
}

/// Each of `items` rendered by `f`, comma-separated.
template <class Items, class F>
void append_joined(std::string& out, const Items& items, F&& f) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0)
      out += ',';
    f(items[i]);
  }
}

void append_strings(std::string& out, const std::vector<std::string>& xs) {
  append_joined(out, xs, [&](const std::string& x) { append_json_string(out, x); });
}

template <class Row>
void append_row(std::string& out, const Row& row) {
  out += '[';
  append_joined(out, row, [&](const auto& v) { append_value(out, v); });
  out += ']';
}

// A query's answer is one JSON document in three parts, so that a streamed answer
// (detail::result_stream) and a whole one are the same text: the head (columns, the opening of
// the rows array), the rows, and the tail (what is known only once the rows are done).

void render_result_head(std::string& out, const std::vector<std::string>& columns) {
  out += "{\"columns\":[";
  append_strings(out, columns);
  out += "],\"rows\":[";
}

/// Appends a query answer's end to `out` piece by piece (each number fits std::string's own
/// buffer: no temporary allocated, unlike a chain of `+`).
void append_result_tail(std::string& out, const db_result& r) {
  out += "],\"limit\":{\"max_bytes\":";
  out += std::to_string(r.limit.max_bytes);
  out += ",\"max_rows\":";
  out += std::to_string(r.limit.max_rows);
  out += ",\"reason\":";
  append_json_string(out, r.limit.reason);
  out += ",\"truncated_by\":";
  append_json_string(out, r.truncated_by);
  out += "},\"rows_affected\":";
  out += std::to_string(r.rows_affected);
  out += r.truncated ? ",\"truncated\":true" : ",\"truncated\":false";
  out += ",\"warnings\":[";
  append_strings(out, r.warnings);
  out += "]}";
}

std::string render_result_tail(const db_result& r) {
  std::string out;
  append_result_tail(out, r);
  return out;
}

/// The end of a streamed answer whose query failed after its first rows went out: the error
/// as a failed query's answer has it, and `"truncated":true`.
std::string render_error_tail(const outcome_info& o, const std::string& request_id) {
  std::string out = "],\"detail\":";
  append_json_string(out, o.detail);
  out += ",\"error\":";
  append_json_string(out, o.error);
  out += ",\"request_id\":";
  append_json_string(out, request_id);
  out += ",\"truncated\":true}";
  return out;
}

/// A query's whole answer as JSON text, written straight from the rows (no JSON tree: that would
/// hold a second, several times larger copy of the rows while rendering) into one buffer sized
/// up front (no doubling on the way).
std::string render_result(const db_result& r) {
  std::string out;
  size_t cells = 0;
  for (auto& row : r.rows)
    cells += row.size();
  out.reserve(r.bytes + 16 * cells + 4 * r.rows.size() + 512);
  render_result_head(out, r.columns);
  append_joined(out, r.rows, [&](const db_row& row) { append_row(out, row); });
  append_result_tail(out, r);
  return out;
}

/// The path segment after `prefix`, percent-decoded; false (and a 400 sent) when it is not
/// valid percent-encoding of UTF-8.
bool segment_after(const exchange& ex, const std::string& path, const std::string& prefix,
                   std::string& out, std::optional<query_outcome> o = std::nullopt) {
  if (decode_path_segment(std::string_view(path).substr(prefix.size()), out))
    return true;
  auto r =
      error_response(400, "bad_request",
                     "the path segment after " + prefix + " is not valid percent-encoded UTF-8");
  if (o)
    ex.answer(std::move(r), *o);
  else
    ex.answer(std::move(r));
  return false;
}

/// The front door's whole (not streamed) answer to a query or transaction: the error's, or what
/// `render` makes of the result; `count` counts the outcome if this answer goes out.
template <class Render>
void answer_whole(const exchange& ex, caf::expected<db_result>& a,
                  const std::function<void()>& count, Render render) {
  ex.guard([&] {
    ex.before_render();
    if (!a) {
      ex.answer(error_answer(told(classify(a.error()), ex.id, ex.path), ex.id), count);
      return;
    }
    ex.answer(render(*a), count);
  });
}

/// A query's or transaction's headers into `g`: X-Request-Timeout-Ms (the front door sets the
/// deadline from it), the client's key (client_key), X-Priority. Returns what was wrong.
std::string request_options(const http_request& req, const address_ranges& trusted,
                            gateway_request& g) {
  auto header = req.header("x-request-timeout-ms");
  if (!header.empty()) {
    char* end = nullptr;
    // A value past int64 reads as LLONG_MAX (ERANGE): huge, so the default deadline stays.
    auto ms = std::strtoll(header.c_str(), &end, 10);
    if (end == header.c_str() || *end != '\0' || ms <= 0)
      return "X-Request-Timeout-Ms must be a positive integer";
    g.timeout = requested_timeout(ms);
  }
  auto problem = client_key(req, trusted, g.client);
  if (!problem.empty())
    return problem;
  auto priority = req.header("x-priority");
  if (priority.empty() || priority == "normal")
    g.priority = request_priority::normal;
  else if (priority == "low")
    g.priority = request_priority::low;
  else if (priority == "high")
    g.priority = request_priority::high;
  else
    return "X-Priority must be low, normal or high";
  return {};
}

void query(engine& eng, const http_request& req, const std::string& statement, const exchange& ex,
           const address_ranges& trusted) {
  auto outcome = [&ex](http_response r, query_outcome o) { ex.answer(std::move(r), o); };
  db_query q;
  q.statement = statement;
  auto* known = eng.statements().find(statement);
  auto problem = parse_query_params(req.body, known ? &known->params : nullptr, q.params);
  if (!problem.empty()) {
    outcome(error_response(400, "bad_request", problem), query_outcome::bad_request);
    return;
  }
  gateway_request g;
  problem = request_options(req, trusted, g);
  if (!problem.empty()) {
    outcome(error_response(400, "bad_request", problem), query_outcome::bad_request);
    return;
  }
  // A large answer goes out as its rows come (detail/result_stream.hpp): when the stream opens,
  // its head is this request's answer; the gateway's answer then ends the document.
  auto& http_cfg = eng.config().http;
  // One copy of the exchange for the callbacks that outlive this call (the stream's and the
  // sink's), shared: a copy each was a copy of its strings and handles each (bench/RESULTS.md,
  // "Allocations per request").
  auto shared = std::make_shared<const exchange>(ex);
  std::shared_ptr<std::atomic<bool>> opened;
  std::shared_ptr<detail::result_stream> stream;
  // No stream where none can open: a statement the cache keeps (the gateway would drop it) or
  // one the database will refuse as unknown; the stream and its callback cost allocations on
  // this thread for every request.
  if (http_cfg.stream_after_bytes > 0 && known != nullptr && known->may_stream()) {
    opened = std::make_shared<std::atomic<bool>>(false);
    stream = std::make_shared<detail::result_stream>(
        detail::result_stream::options{http_cfg.stream_after_bytes, http_cfg.stream_window_bytes},
        render_result_head, append_row<detail::result_stream::row>,
        [shared, opened](const std::shared_ptr<detail::result_stream>& s) noexcept {
          try {
            http_response res;
            res.stream = s;
            res.headers.emplace_back("X-Cache", "miss");
            if (shared->answer_streamed(std::move(res))) {
              opened->store(true);
              return;
            }
          } catch (...) {
            // out of memory for the head: the answer stays the gateway's (or the server's)
          }
          s->cut("client");
        });
  }
  q.stream.to = stream;
  g.query = std::move(q);
  // The front door answers on its own thread, through this sink, exactly once; `count` counts
  // the outcome, called only by the answer that wins (the server's own timeout may have won).
  g.sink.fn = std::make_shared<front_answer_fn>(
      [shared, opened, stream](caf::expected<db_result>& a, const std::function<void()>& count) {
        auto& ex = *shared;
        if (opened && opened->load()) {
          ex.finish_stream(*stream, count, [&] {
            return a ? render_result_tail(*a)
                     : render_error_tail(told(classify(a.error()), ex.id, ex.path), ex.id);
          });
          return;
        }
        answer_whole(ex, a, count, [](db_result& r) {
          http_response res;
          res.body = render_result(r);
          res.headers.emplace_back("X-Cache", r.from_cache ? "hit" : "miss");
          // The rows' reservation stays until the last byte is written.
          res.hold = std::move(r.grant.held);
          // The rows go now (the rendered copy is what remains); the flags stay, since counting
          // the outcome (`count`) classifies this answer.
          std::vector<db_row>{}.swap(r.rows);
          std::vector<std::string>{}.swap(r.columns);
          return res;
        });
      });
  caf::anon_send(eng.front_door_for_call(), std::move(g));
}

/// One step's or item's answer, as a query's: {"columns", "rows", "limit", "rows_affected",
/// "truncated"; `extra` (",\"ok\":true" or nothing) just before the closing brace}.
void append_step(std::string& out, const db_step_result& step, const char* extra = "") {
  render_result_head(out, step.columns);
  append_joined(out, step.rows, [&](const db_row& row) { append_row(out, row); });
  out += "],\"limit\":{\"max_bytes\":" + std::to_string(step.limit.max_bytes) +
         ",\"max_rows\":" + std::to_string(step.limit.max_rows) + ",\"reason\":";
  append_json_string(out, step.limit.reason);
  out += ",\"truncated_by\":";
  append_json_string(out, step.truncated_by);
  out += "},\"rows_affected\":" + std::to_string(step.rows_affected) +
         ",\"truncated\":" + (step.truncated ? "true" : "false") + extra + "}";
}

/// How many parts (steps, items) a transaction or batch has and may have.
struct part_count {
  size_t parts;
  size_t most;
  const char* noun;  ///< "steps"
  const char* whole; ///< "a transaction"
  const char* key;   ///< "database.max_transaction_steps"
};

/// The rest of a transaction's or batch's way once its body is read: 413 `too_many_<noun>` past
/// its most, its headers, then the front door, whose whole answer `render` makes the body of
/// (the rows' memory held until the last byte is written).
template <class Render>
void send_whole(engine& eng, const http_request& req, const exchange& ex,
                const address_ranges& trusted, db_query q, part_count n, Render render) {
  if (n.parts > n.most) {
    ex.answer(error_response(413, std::string{"too_many_"} + n.noun,
                             std::to_string(n.parts) + " " + n.noun + "; " + n.whole +
                                 " runs at most " + std::to_string(n.most) + " (" + n.key + ")"),
              query_outcome::bad_request);
    return;
  }
  gateway_request g;
  auto problem = request_options(req, trusted, g);
  if (!problem.empty()) {
    ex.answer(error_response(400, "bad_request", problem), query_outcome::bad_request);
    return;
  }
  g.query = std::move(q);
  g.sink.fn = std::make_shared<front_answer_fn>(
      [ex, render](caf::expected<db_result>& a, const std::function<void()>& count) {
        answer_whole(ex, a, count, [&](db_result& r) {
          http_response res;
          res.body = render(r, ex);
          res.hold = std::move(r.grant.held);
          std::vector<db_step_result>{}.swap(r.steps);
          std::vector<db_item_result>{}.swap(r.items);
          return res;
        });
      });
  caf::anon_send(eng.front_door_for_call(), std::move(g));
}

/// A committed transaction's answer: {"committed": true, "rows_affected": sum, "steps": [each
/// step as a query's answer has it: columns, rows, limit, rows_affected, truncated], "warnings"}.
std::string render_transaction(const db_result& r) {
  std::string out;
  size_t cells = 0;
  for (auto& step : r.steps)
    for (auto& row : step.rows)
      cells += row.size();
  out.reserve(r.bytes + 16 * cells + 256 * r.steps.size() + 512);
  out +=
      "{\"committed\":true,\"rows_affected\":" + std::to_string(r.rows_affected) + ",\"steps\":[";
  append_joined(out, r.steps, [&](const db_step_result& step) { append_step(out, step); });
  out += "],\"truncated\":";
  out += r.truncated ? "true" : "false";
  out += ",\"warnings\":[";
  append_strings(out, r.warnings);
  out += "]}";
  return out;
}

/// POST /v1/transaction (`name` empty: the steps come in the body) or /v1/transaction/{name}.
void transaction(engine& eng, const http_request& req, const std::string& name, const exchange& ex,
                 const address_ranges& trusted) {
  auto outcome = [ex](http_response r, query_outcome o) { ex.answer(std::move(r), o); };
  db_query q;
  std::string problem;
  if (name.empty()) {
    problem = parse_transaction_body(req.body, eng.statements(), q);
  } else {
    auto& declared = eng.config().database.transactions;
    auto i = declared.find(name);
    if (i == declared.end()) {
      outcome(error_response(404, "unknown_transaction",
                             "no transaction named " + name + " is configured (transactions.*)"),
              query_outcome::unknown_statement);
      return;
    }
    problem = parse_declared_transaction_body(req.body, name, i->second.steps, eng.statements(), q);
  }
  if (!problem.empty()) {
    outcome(error_response(400, "bad_request", problem), query_outcome::bad_request);
    return;
  }
  part_count steps{q.steps.size(), eng.config().database.max_transaction_steps, "steps",
                   "a transaction", "database.max_transaction_steps"};
  send_whole(eng, req, ex, trusted, std::move(q), steps,
             [](const db_result& r, const exchange&) { return render_transaction(r); });
}

/// A batch's answer: {"items": [each item: a query's answer with "ok": true, or {"ok": false,
/// "status", "error", "detail", ...} as an error answer has it], "succeeded", "failed",
/// "rows_affected" (the sum), "truncated", "warnings"}. An item's private detail (the backend's
/// text) goes to the log under the request's id, as a query's does.
std::string render_batch(const db_result& r, const exchange& ex) {
  std::string out;
  size_t cells = 0;
  for (auto& item : r.items)
    for (auto& row : item.result.rows)
      cells += row.size();
  out.reserve(r.bytes + 16 * cells + 256 * r.items.size() + 512);
  uint64_t failed = 0;
  out += "{\"items\":[";
  append_joined(out, r.items, [&](const db_item_result& item) {
    if (!item.error) {
      append_step(out, item.result, ",\"ok\":true");
      return;
    }
    ++failed;
    auto o = told(classify(item.error), ex.id, ex.path);
    auto fields = error_fields(o);
    fields["ok"] = false;
    fields["status"] = o.http_status;
    if (o.retry_after_ms > 0)
      fields["retry_after_ms"] = o.retry_after_ms;
    out += render_json(fields);
  });
  out += "],\"succeeded\":" + std::to_string(r.items.size() - failed) +
         ",\"failed\":" + std::to_string(failed) +
         ",\"rows_affected\":" + std::to_string(r.rows_affected) + ",\"truncated\":";
  out += r.truncated ? "true" : "false";
  out += ",\"warnings\":[";
  append_strings(out, r.warnings);
  out += "]}";
  return out;
}

/// POST /v1/batch/{statement}.
void batch(engine& eng, const http_request& req, const std::string& statement, const exchange& ex,
           const address_ranges& trusted) {
  auto outcome = [ex](http_response r, query_outcome o) { ex.answer(std::move(r), o); };
  db_query q;
  auto* known = eng.statements().find(statement);
  auto problem = parse_batch_body(req.body, statement, known ? &known->params : nullptr, q);
  if (!problem.empty()) {
    outcome(error_response(400, "bad_request", problem), query_outcome::bad_request);
    return;
  }
  part_count items{q.batch.size(), eng.config().database.max_batch_items, "items", "a batch",
                   "database.max_batch_items"};
  send_whole(eng, req, ex, trusted, std::move(q), items, render_batch);
}

void breaker_command_route(engine& eng, const std::string& rest, const exchange& ex) {
  // rest = "backend/force_open"
  auto slash = rest.find('/');
  std::string name;
  std::string cmd;
  if (!decode_path_segment(rest.substr(0, slash), name) ||
      !decode_path_segment(slash == std::string::npos ? std::string{} : rest.substr(slash + 1),
                           cmd)) {
    ex.answer(error_response(400, "bad_request", "the path is not valid percent-encoded UTF-8"));
    return;
  }
  if (name != "backend") {
    ex.answer(error_response(404, "unknown_breaker", "no breaker named \"" + name + "\""));
    return;
  }
  breaker_command c;
  if (cmd == "force_open")
    c = breaker_command::force_open;
  else if (cmd == "force_closed")
    c = breaker_command::force_closed;
  else if (cmd == "reset")
    c = breaker_command::reset;
  else {
    ex.answer(error_response(404, "unknown_command", "use force_open, force_closed or reset"));
    return;
  }
  auto b = eng.directory().get<circuit_breaker_actor>("circuit_breaker");
  if (!b) {
    ex.answer(error_response(503, "unavailable", "circuit_breaker is restarting"));
    return;
  }
  eng.post([b, c, ex](caf::event_based_actor* self) {
    ex.guard([&] {
      self->request(b, status_timeout, c)
          .then(
              [ex](breaker_status& s) {
                ex.guard([&] { ex.answer(json_response(200, breaker_json(s))); });
              },
              [ex](caf::error& e) {
                ex.guard([&] { ex.answer(error_response(503, "unavailable", describe(e))); });
              });
    });
  });
}

/// What a handler knows besides the engine: its server's counters, its listener, the trusted
/// proxies (parsed once).
struct api_settings {
  http_stats_source server_stats;
  http_api_listener listener;
  address_ranges trusted;
};

/// Whether `given` equals `want`, in time that depends only on their lengths.
bool same_secret(const std::string& given, const std::string& want) {
  unsigned diff = given.size() == want.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i)
    diff |= static_cast<unsigned char>(given[i]) ^
            static_cast<unsigned char>(want.empty() ? 0 : want[i % want.size()]);
  return diff == 0;
}

/// Routes one request (on the server's I/O thread); every answer goes through `ex`.
void route(engine& eng, const http_request& req, const exchange& ex, const api_settings& settings) {
  auto& path = req.path;
  auto& server_stats = settings.server_stats;
  bool admin_path = path.rfind("/admin/", 0) == 0;
  if (settings.listener.admin) {
    auto& token = settings.listener.token;
    if (!token.empty() && !same_secret(req.header("authorization"), "Bearer " + token)) {
      auto r = error_response(401, "unauthorized",
                              "the admin listener needs \"Authorization: Bearer <token>\" "
                              "(admin.token_file)");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      ex.answer(std::move(r));
      return;
    }
    if (path.rfind("/v1/query/", 0) == 0 || path.rfind("/v1/transaction", 0) == 0 ||
        path.rfind("/v1/batch/", 0) == 0) {
      ex.answer(error_response(404, "not_found", "queries are served on http.listen"));
      return;
    }
  } else if (admin_path) {
    ex.answer(error_response(404, "not_found", "no route for " + path));
    return;
  }
  bool get = req.method == "GET" || req.method == "HEAD";
  auto only = [&](bool ok, const char* allowed) {
    if (ok)
      return true;
    auto r = error_response(405, "method_not_allowed", std::string{"use "} + allowed);
    r.headers.emplace_back("Allow", allowed);
    ex.answer(std::move(r));
    return false;
  };
  // Made once: four of them are too long for a string's own buffer, four allocations a request.
  static const std::string history = "/v1/perf/history/";
  static const std::string query_prefix = "/v1/query/";
  static const std::string transaction_prefix = "/v1/transaction/";
  static const std::string batch_prefix = "/v1/batch/";
  static const std::string breaker_prefix = "/admin/v1/breaker/";
  static const std::string crash_prefix = "/admin/v1/crash/";
  if (path == "/healthz") {
    if (only(get, "GET"))
      ex.answer(json_response(200, json{{"status", "ok"}}));
  } else if (path == "/readyz") {
    if (only(get, "GET"))
      readiness(eng, ex);
  } else if (path == "/metrics") {
    if (only(get, "GET"))
      ex.answer(metrics_text(eng, server_stats));
  } else if (path == "/v1/status") {
    if (only(get, "GET"))
      status(eng, ex);
  } else if (path == "/v1/alerts") {
    if (only(get, "GET"))
      ask_performance<std::vector<alert_info>>(eng, ex, alerts_json, caf::get_atom::value,
                                               alerts_atom::value);
  } else if (path == "/v1/perf") {
    if (only(get, "GET"))
      ask_performance<perf_status>(eng, ex, perf_json, caf::get_atom::value);
  } else if (path.rfind(history, 0) == 0) {
    std::string series;
    if (!segment_after(ex, path, history, series))
      return;
    auto& names = perf_series_names();
    if (std::find(names.begin(), names.end(), series) == names.end()) {
      std::string known;
      for (auto& n : names)
        known += (known.empty() ? "" : ", ") + n;
      ex.answer(error_response(404, "unknown_series", "known series: " + known));
    } else if (only(get, "GET")) {
      auto now = eng.clock_now();
      ask_performance<std::vector<perf_point>>(
          eng, ex,
          [series, now](const std::vector<perf_point>& points) {
            auto list = json::array();
            for (auto& p : points)
              list.push_back({detail::secs(p.at - now), p.value});
            return json{{"series", series}, {"points", list}};
          },
          caf::get_atom::value, series);
    }
  } else if (path.rfind(query_prefix, 0) == 0) {
    std::string statement;
    if (only(req.method == "POST", "POST") &&
        segment_after(ex, path, query_prefix, statement, query_outcome::bad_request))
      query(eng, req, statement, ex, settings.trusted);
  } else if (path == "/v1/transaction") {
    if (only(req.method == "POST", "POST"))
      transaction(eng, req, {}, ex, settings.trusted);
  } else if (path.rfind(transaction_prefix, 0) == 0) {
    std::string name;
    if (only(req.method == "POST", "POST") &&
        segment_after(ex, path, transaction_prefix, name, query_outcome::bad_request))
      transaction(eng, req, name, ex, settings.trusted);
  } else if (path.rfind(batch_prefix, 0) == 0) {
    std::string statement;
    if (only(req.method == "POST", "POST") &&
        segment_after(ex, path, batch_prefix, statement, query_outcome::bad_request))
      batch(eng, req, statement, ex, settings.trusted);
  } else if (path.rfind(breaker_prefix, 0) == 0) {
    if (only(req.method == "POST", "POST"))
      breaker_command_route(eng, path.substr(breaker_prefix.size()), ex);
  } else if (path.rfind(crash_prefix, 0) == 0) {
    if (!eng.config().admin.fault_injection) {
      ex.answer(error_response(404, "not_found", "no route for " + path));
      return;
    }
    std::string component;
    if (only(req.method == "POST", "POST") && segment_after(ex, path, crash_prefix, component))
      ex.answer(crash(eng, component));
  } else {
    ex.answer(error_response(404, "not_found", "no route for " + path));
  }
}

} // namespace

http_handler make_http_api(engine& eng, http_api_metrics& metrics, http_stats_source server_stats,
                           http_api_fault fault, http_api_listener listener) {
  auto next_id = std::make_shared<std::atomic<uint64_t>>(0);
  auto settings = std::make_shared<api_settings>();
  settings->server_stats = std::move(server_stats);
  settings->listener = std::move(listener);
  for (auto& cidr : eng.config().http.trusted_proxies) {
    auto problem = settings->trusted.add(cidr);
    if (!problem.empty()) // the config loader checked; an engine built in code may not have been
      throw std::invalid_argument("http.trusted_proxies: " + problem);
  }
  bool queries = !settings->listener.admin;
  return [&eng, &metrics, settings, fault, next_id, queries](http_request&& req,
                                                             http_responder respond) {
    exchange ex{&eng,
                &metrics,
                std::move(respond),
                "r" + std::to_string(++*next_id),
                req.path,
                queries && req.method == "POST" &&
                    (req.path.rfind("/v1/query/", 0) == 0 || req.path == "/v1/transaction" ||
                     req.path.rfind("/v1/transaction/", 0) == 0 ||
                     req.path.rfind("/v1/batch/", 0) == 0),
                fault};
    ex.redact = queries; // the public listener
    if (ex.query)
      eng.metrics().request_received();
    ex.count_server_answer();
    ex.guard([&] { route(eng, req, ex, *settings); });
  };
}

} // namespace bulwark
