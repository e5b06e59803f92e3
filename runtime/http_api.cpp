#include "runtime/http_api.hpp"

#include "messages/fwd.hpp"

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

/// Asks the monitor, then the cleanup manager, from inside the bridge executor; a component that
/// is restarting or slow shows up as an error string rather than failing the whole status.
void status(engine& eng, http_responder respond) {
  eng.post([&eng, respond](caf::event_based_actor* self) {
    auto body = std::make_shared<json>(
        json{{"node", eng.config().node.name}, {"components", components_json(eng.directory())}});
    auto reasons = eng.not_ready_reasons();
    (*body)["ready"] = reasons.empty();
    (*body)["not_ready_reasons"] = reasons;
    auto finish = [body, respond] { respond(json_response(200, *body)); };
    auto ask_tasks = [&eng, self, body, finish] {
      auto mgr = eng.directory().get<cleanup_manager_actor>("cleanup_manager");
      if (!mgr) {
        (*body)["tasks"] = json{{"error", "cleanup_manager is not running"}};
        finish();
        return;
      }
      self->request(mgr, status_timeout, caf::get_atom::value)
          .then(
              [body, finish](std::vector<cleanup_task_status>& ts) {
                (*body)["tasks"] = tasks_json(ts);
                finish();
              },
              [body, finish](caf::error& e) {
                (*body)["tasks"] = json{{"error", describe(e)}};
                finish();
              });
    };
    auto mon = eng.directory().get<memory_pressure_monitor_actor>("memory_pressure_monitor");
    if (!mon) {
      (*body)["pressure"] = json{{"error", "memory_pressure_monitor is not running"}};
      ask_tasks();
      return;
    }
    self->request(mon, status_timeout, caf::get_atom::value)
        .then(
            [&eng, body, ask_tasks](pressure_status& s) {
              (*body)["pressure"] = pressure_json(s, eng.clock_now());
              ask_tasks();
            },
            [body, ask_tasks](caf::error& e) {
              (*body)["pressure"] = json{{"error", describe(e)}};
              ask_tasks();
            });
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
