#include "runtime/http_api.hpp"

#include "actors/detail/text.hpp"
#include "messages/fwd.hpp"
#include "runtime/outcome.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <prometheus/text_serializer.h>

#include <chrono>

namespace bulwark {

http_api_metrics::http_api_metrics(prometheus::Registry& reg) {
  responses = &prometheus::BuildCounter()
                   .Name("bulwark_http_responses_total")
                   .Help("HTTP responses sent by the node's API, by status code")
                   .Register(reg);
}

namespace {

using json = nlohmann::json;

/// How long /v1/status waits for each component's answer.
constexpr auto status_timeout = std::chrono::seconds(2);

http_response json_response(unsigned status, const json& body) {
  http_response r;
  r.status = status;
  r.body = body.dump();
  return r;
}

http_response error_response(unsigned status, const std::string& error, const std::string& detail) {
  return json_response(status, json{{"error", error}, {"detail", detail}});
}

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
          {"policy_shape", s.shape}};
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
              {"backend_p99_s", s.latest.backend_p99_s}};
  return {{"sampling_ratio", s.sampling_ratio},
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
void ask_performance(engine& eng, http_responder respond, ToJson to_json, Ts... xs) {
  if (!eng.config().performance.enabled) {
    respond(
        error_response(404, "disabled", "the performance monitor is off (performance.enabled)"));
    return;
  }
  auto h = eng.directory().get<performance_monitor_actor>("performance_monitor");
  if (!h) {
    respond(error_response(503, "unavailable", "performance_monitor is restarting"));
    return;
  }
  eng.post([h, respond, to_json, xs...](caf::event_based_actor* self) {
    self->request(h, status_timeout, xs...)
        .then(
            [respond, to_json](Result& r) { respond(json_response(200, to_json(r))); },
            [respond](caf::error& e) { respond(error_response(503, "unavailable", describe(e))); });
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
  http_responder respond;

  void done() {
    if (--*pending == 0)
      respond(json_response(200, *body));
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
              (*me.body)[json::json_pointer(key)] = to_json(r);
              me.done();
            },
            [me, key](caf::error& e) mutable {
              (*me.body)[json::json_pointer(key)] = json{{"error", describe(e)}};
              me.done();
            });
  }
};

void status(engine& eng, http_responder respond) {
  eng.post([&eng, respond](caf::event_based_actor* self) {
    auto reasons = eng.not_ready_reasons();
    status_gather g{std::make_shared<json>(json{{"node", eng.config().node.name},
                                                {"ready", reasons.empty()},
                                                {"not_ready_reasons", reasons},
                                                {"components", components_json(eng.directory())}}),
                    std::make_shared<int>(1), respond};
    auto& dir = eng.directory();
    auto now = eng.clock_now();
    g.ask<pressure_status>(self, "/pressure",
                           dir.get<memory_pressure_monitor_actor>("memory_pressure_monitor"),
                           "memory_pressure_monitor",
                           [now](const pressure_status& s) { return pressure_json(s, now); });
    g.ask<std::vector<cleanup_task_status>>(self, "/tasks",
                                            dir.get<cleanup_manager_actor>("cleanup_manager"),
                                            "cleanup_manager", tasks_json);
    g.ask<pool_status>(self, "/pool", dir.get<connection_pool_actor>("connection_pool"),
                       "connection_pool", pool_json);
    g.ask<breaker_status>(self, "/breaker", dir.get<circuit_breaker_actor>("circuit_breaker"),
                          "circuit_breaker", breaker_json);
    g.ask<limiter_stats>(self, "/rate_limiter", dir.get<rate_limiter_actor>("rate_limiter"),
                         "rate_limiter", limiter_json);
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
  });
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
             "Requests the HTTP server answered itself with 400, 408, 413 or 431",
             MetricType::Counter, d(s.bad_requests)),
      family("bulwark_http_requests_in_flight", "Requests handed to the API and not yet answered",
             MetricType::Gauge, d(s.in_flight)),
      family("bulwark_http_connections_open", "Open HTTP connections", MetricType::Gauge,
             d(s.open_connections)),
  };
}

http_response metrics_text(engine& eng, const http_stats_source& server_stats) {
  http_response r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  auto families = eng.registry()->Collect();
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

json value_json(const db_value& v) {
  switch (v.kind) {
  case db_value_kind::null:
    return nullptr;
  case db_value_kind::integer:
    return v.integer;
  case db_value_kind::real:
    return v.real;
  case db_value_kind::text:
    return v.text;
  case db_value_kind::boolean:
    return v.boolean;
  }
  return nullptr;
}

/// Parses {"params": [...]}; an empty body means no parameters. Empty string when fine.
std::string parse_params(const std::string& body, std::vector<db_value>& out) {
  if (body.empty())
    return {};
  auto doc = json::parse(body, nullptr, false);
  if (doc.is_discarded())
    return "the body is not valid JSON";
  if (!doc.is_object())
    return "the body must be a JSON object {\"params\": [...]}";
  for (auto& [key, value] : doc.items())
    if (key != "params")
      return "unknown key \"" + key + "\" (expected only \"params\")";
  if (!doc.contains("params"))
    return {};
  auto& ps = doc["params"];
  if (!ps.is_array())
    return "\"params\" must be an array";
  for (size_t i = 0; i < ps.size(); ++i) {
    auto& p = ps[i];
    if (p.is_null())
      out.push_back(db_value::of_null());
    else if (p.is_boolean())
      out.push_back(db_value::of(p.get<bool>()));
    else if (p.is_number_integer())
      out.push_back(db_value::of(p.get<int64_t>()));
    else if (p.is_number_float())
      out.push_back(db_value::of(p.get<double>()));
    else if (p.is_string())
      out.push_back(db_value::of(p.get<std::string>()));
    else
      return "parameter " + std::to_string(i + 1) + " is an array or object; parameters are " +
             "numbers, strings, booleans or null";
  }
  return {};
}

/// The HTTP answer of a failed query (runtime/outcome.hpp decides which outcome it is).
http_response error_answer(const outcome_info& o) {
  json body{{"error", o.error}, {"detail", o.detail}};
  if (!o.constraint.empty())
    body["constraint"] = o.constraint;
  if (o.parameter > 0)
    body["parameter"] = o.parameter;
  auto r = json_response(o.http_status, body);
  if (o.retry_after_ms > 0)
    r.headers.emplace_back("Retry-After",
                           std::to_string(std::max<int64_t>(1, (o.retry_after_ms + 999) / 1000)));
  return r;
}

json result_json(const db_result& r) {
  auto rows = json::array();
  for (auto& row : r.rows) {
    auto cells = json::array();
    for (auto& v : row)
      cells.push_back(value_json(v));
    rows.push_back(std::move(cells));
  }
  return {{"columns", r.columns},
          {"rows", std::move(rows)},
          {"truncated", r.truncated},
          {"limit",
           {{"max_rows", r.limit.max_rows},
            {"max_bytes", r.limit.max_bytes},
            {"reason", r.limit.reason},
            {"truncated_by", r.truncated_by}}},
          {"warnings", r.warnings},
          {"rows_affected", r.rows_affected}};
}

/// The rate limiter's key: X-Client-Id when given and trusted (gateway.trust_client_id), else
/// the peer's address without its port.
std::string client_of(const http_request& req, bool trust_client_id) {
  auto id = trust_client_id ? req.header("x-client-id") : std::string{};
  if (!id.empty())
    return "id:" + id.substr(0, 128);
  auto colon = req.peer.rfind(':');
  return "ip:" + (colon == std::string::npos ? req.peer : req.peer.substr(0, colon));
}

void query(engine& eng, const http_request& req, const std::string& statement,
           http_responder respond) {
  auto outcome = [&eng, respond](http_response r, query_outcome o) {
    eng.metrics().requests->Add({{"outcome", to_string(o)}}).Increment();
    respond(std::move(r));
  };
  db_query q;
  q.statement = statement;
  auto problem = parse_params(req.body, q.params);
  if (!problem.empty()) {
    outcome(error_response(400, "bad_request", problem), query_outcome::bad_request);
    return;
  }
  auto timeout = std::chrono::duration_cast<caf::timespan>(eng.config().database.default_timeout);
  auto header = req.header("x-request-timeout-ms");
  if (!header.empty()) {
    char* end = nullptr;
    auto ms = std::strtoll(header.c_str(), &end, 10);
    if (end == header.c_str() || *end != '\0' || ms <= 0) {
      outcome(error_response(400, "bad_request", "X-Request-Timeout-Ms must be a positive integer"),
              query_outcome::bad_request);
      return;
    }
    timeout = std::min(timeout, caf::timespan{std::chrono::milliseconds(ms)});
  }
  q.deadline = eng.clock_now() + timeout;
  gateway_request g;
  g.client = client_of(req, eng.config().gateway.trust_client_id);
  auto priority = req.header("x-priority");
  if (priority.empty() || priority == "normal") {
    g.priority = request_priority::normal;
  } else if (priority == "low") {
    g.priority = request_priority::low;
  } else if (priority == "high") {
    g.priority = request_priority::high;
  } else {
    outcome(error_response(400, "bad_request", "X-Priority must be low, normal or high"),
            query_outcome::bad_request);
    return;
  }
  g.query = std::move(q);
  auto gw = eng.directory().get<gateway_actor>("gateway");
  if (!gw) {
    auto o = classify(make_error(errc::component_unavailable, "gateway"));
    outcome(error_answer(o), o.outcome);
    return;
  }
  eng.post([gw, g, timeout, outcome](caf::event_based_actor* self) {
    // The path answers by the deadline; the margin only covers an actor that died.
    self->request(gw, timeout + std::chrono::seconds(3), g)
        .then(
            [outcome](db_result& r) {
              auto res = json_response(200, result_json(r));
              res.headers.emplace_back("X-Cache", r.from_cache ? "hit" : "miss");
              outcome(std::move(res), classify(r).outcome);
            },
            [outcome](caf::error& e) {
              auto o = classify(e);
              outcome(error_answer(o), o.outcome);
            });
  });
}

void breaker_command_route(engine& eng, const std::string& rest, http_responder respond) {
  // rest = "backend/force_open"
  auto slash = rest.find('/');
  auto name = rest.substr(0, slash);
  auto cmd = slash == std::string::npos ? std::string{} : rest.substr(slash + 1);
  if (name != "backend") {
    respond(error_response(404, "unknown_breaker", "no breaker named \"" + name + "\""));
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
    respond(error_response(404, "unknown_command", "use force_open, force_closed or reset"));
    return;
  }
  auto b = eng.directory().get<circuit_breaker_actor>("circuit_breaker");
  if (!b) {
    respond(error_response(503, "unavailable", "circuit_breaker is restarting"));
    return;
  }
  eng.post([b, c, respond](caf::event_based_actor* self) {
    self->request(b, status_timeout, c)
        .then(
            [respond](breaker_status& s) { respond(json_response(200, breaker_json(s))); },
            [respond](caf::error& e) { respond(error_response(503, "unavailable", describe(e))); });
  });
}

} // namespace

http_handler make_http_api(engine& eng, http_api_metrics& metrics, http_stats_source server_stats) {
  return [&eng, &metrics, server_stats](http_request&& req, http_responder respond) {
    // Count every response by code, whoever answers and from whatever thread.
    auto counted = [&metrics, respond](http_response r) {
      metrics.responses->Add({{"code", std::to_string(r.status)}}).Increment();
      respond(std::move(r));
    };
    auto& path = req.path;
    bool get = req.method == "GET" || req.method == "HEAD";
    auto only = [&](bool ok, const char* allowed) {
      if (ok)
        return true;
      auto r = error_response(405, "method_not_allowed", std::string{"use "} + allowed);
      r.headers.emplace_back("Allow", allowed);
      counted(std::move(r));
      return false;
    };
    if (path == "/healthz") {
      if (only(get, "GET"))
        counted(json_response(200, json{{"status", "ok"}}));
    } else if (path == "/readyz") {
      if (!only(get, "GET"))
        return;
      auto reasons = eng.not_ready_reasons();
      counted(json_response(reasons.empty() ? 200 : 503,
                            json{{"ready", reasons.empty()}, {"reasons", reasons}}));
    } else if (path == "/metrics") {
      if (only(get, "GET"))
        counted(metrics_text(eng, server_stats));
    } else if (path == "/v1/status") {
      if (only(get, "GET"))
        status(eng, counted);
    } else if (path == "/v1/alerts") {
      if (only(get, "GET"))
        ask_performance<std::vector<alert_info>>(eng, counted, alerts_json, caf::get_atom::value,
                                                 alerts_atom::value);
    } else if (path == "/v1/perf") {
      if (only(get, "GET"))
        ask_performance<perf_status>(eng, counted, perf_json, caf::get_atom::value);
    } else if (path.rfind("/v1/perf/history/", 0) == 0) {
      auto series = path.substr(std::string{"/v1/perf/history/"}.size());
      auto& names = perf_series_names();
      if (std::find(names.begin(), names.end(), series) == names.end()) {
        std::string known;
        for (auto& n : names)
          known += (known.empty() ? "" : ", ") + n;
        counted(error_response(404, "unknown_series", "known series: " + known));
      } else if (only(get, "GET")) {
        auto now = eng.clock_now();
        ask_performance<std::vector<perf_point>>(
            eng, counted,
            [series, now](const std::vector<perf_point>& points) {
              auto list = json::array();
              for (auto& p : points)
                list.push_back({detail::secs(p.at - now), p.value});
              return json{{"series", series}, {"points", list}};
            },
            caf::get_atom::value, series);
      }
    } else if (path.rfind("/v1/query/", 0) == 0) {
      if (only(req.method == "POST", "POST"))
        query(eng, req, path.substr(std::string{"/v1/query/"}.size()), counted);
    } else if (path.rfind("/admin/v1/breaker/", 0) == 0) {
      if (only(req.method == "POST", "POST"))
        breaker_command_route(eng, path.substr(std::string{"/admin/v1/breaker/"}.size()), counted);
    } else if (path.rfind("/admin/v1/crash/", 0) == 0) {
      if (!eng.config().admin.fault_injection) {
        counted(error_response(404, "not_found", "no route for " + path));
        return;
      }
      if (only(req.method == "POST", "POST"))
        counted(crash(eng, path.substr(std::string{"/admin/v1/crash/"}.size())));
    } else {
      counted(error_response(404, "not_found", "no route for " + path));
    }
  };
}

} // namespace bulwark
