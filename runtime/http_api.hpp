#pragma once
/// The node's HTTP routes, as an `http_handler` over an engine:
///   GET  /healthz                     200 while the process serves (never touches an actor)
///   GET  /readyz                      200, or 503 {"ready":false,"reasons":[...]}
///   GET  /metrics                     Prometheus text exposition of the engine's registry
///   GET  /v1/status                   components, restarts, pressure level and history, tasks,
///                                     pool, breaker, limiter, cache shards, performance
///   GET  /v1/alerts                   {"enabled", "firing", "alerts": [{name, severity, state
///                                     (inactive|pending|firing), metric, op, threshold,
///                                     clear_threshold, for_seconds, value, in_state_seconds,
///                                     fired}]}; 404 when performance.enabled is false
///   GET  /v1/perf                     sampling ratio, collected/skipped, latest sample, series
///   GET  /v1/perf/history/{series}    {"series", "points": [[seconds relative to now, value]]}
///   POST /admin/v1/crash/{component}  only with admin.fault_injection: that actor exits with
///                                     errc::fault_injected, so its supervisor must act (202)
///   POST /v1/query/{statement}        {"params": [...]} -> 200 {"columns", "rows", "truncated",
///                                     "limit", "warnings"}; 400 bad JSON or parameters, 404
///                                     unknown statement, 503 + Retry-After (queue full, circuit
///                                     open, restarting), 502 backend error, 504 deadline.
///                                     X-Request-Timeout-Ms shortens the default deadline.
///   POST /admin/v1/breaker/backend/{force_open|force_closed|reset}   200 with the breaker status
/// Unknown paths 404, wrong methods 405; every error body is {"error": ..., "detail": ...}.

#include "runtime/engine.hpp"
#include "runtime/http_server.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>

namespace bulwark {

struct http_api_metrics {
  explicit http_api_metrics(prometheus::Registry& reg);
  prometheus::Family<prometheus::Counter>* responses; ///< by status code
};

/// Reads the HTTP server's own counters at scrape time (the server is built after the handler).
using http_stats_source = std::function<http_server_stats()>;

/// `metrics` must outlive the handler. With `server_stats`, /metrics also exports the server's
/// connection and request counters (bulwark_http_*).
http_handler make_http_api(engine& eng, http_api_metrics& metrics,
                           http_stats_source server_stats = {});

} // namespace bulwark
