#pragma once
/// The node's HTTP routes, as an `http_handler` over an engine:
///   GET  /healthz                     200 while the process serves (never touches an actor)
///   GET  /readyz                      200, or 503 {"ready":false,"reasons":[...]}
///   GET  /metrics                     Prometheus text exposition of the engine's registry
///   GET  /v1/status                   (public port: every last_error left out) components,
///   restarts, pressure level and history, tasks,
///                                     pool, breaker, limiter, cache shards, performance
///   GET  /v1/alerts                   {"enabled", "firing", "alerts": [{name, severity, state
///                                     (inactive|pending|firing), metric, op, threshold,
///                                     clear_threshold, for_seconds, value, in_state_seconds,
///                                     fired}]}; 404 when performance.enabled is false
///   GET  /v1/perf                     sampling ratio, collected/skipped, latest sample, series
///   GET  /v1/perf/history/{series}    {"series", "points": [[seconds relative to now, value]]}
///   POST /admin/v1/crash/{component}  (admin listener) only with admin.fault_injection: that actor
///   exits with
///                                     errc::fault_injected, so its supervisor must act (202)
///   POST /v1/query/{statement}        {"params": [...]} -> 200 {"columns", "rows", "truncated",
///                                     "limit", "warnings"}; 400 bad JSON or parameters, 404
///                                     unknown statement, 503 + Retry-After (queue full, circuit
///                                     open, restarting), 502 backend error, 504 deadline.
///                                     X-Request-Timeout-Ms shortens the default deadline.
///   POST /admin/v1/breaker/backend/{force_open|force_closed|reset}   (admin listener) 200 with the
///                                     breaker status
/// Unknown paths 404, wrong methods 405; every error body is {"error": ..., "detail": ...}, a
/// failed query's also "request_id". A backend's own text never reaches a client (outcome.hpp's
/// public_detail): it is logged at warn under the request id.
/// Path segments taken as names (statement, series, component, breaker) are percent-decoded;
/// invalid percent-encoding or a name that is not UTF-8 is 400. Every body is rendered by
/// runtime/json_render.hpp, so it is valid UTF-8 whatever the backend or the URL held. An
/// exception while handling a request answers 500 {"error": "internal_error", "detail",
/// "request_id"} (logged; a query counts as outcome internal_error) and the API keeps serving.

#include "runtime/address_ranges.hpp"
#include "runtime/engine.hpp"
#include "runtime/http_server.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>

#include <string>
#include <string_view>
#include <vector>

namespace bulwark {

struct http_api_metrics {
  explicit http_api_metrics(prometheus::Registry& reg);
  prometheus::Family<prometheus::Counter>* responses; ///< by status code
  indexed_children<prometheus::Counter, 600> by_code; ///< responses' children, by status
};

/// Reads the HTTP server's own counters at scrape time (the server is built after the handler).
using http_stats_source = std::function<http_server_stats()>;

/// Test seam: called with the request's path in the bridge actor just before an answer that an
/// actor gave is rendered; whatever it throws takes the path of any exception in a request.
using http_api_fault = std::function<void(const std::string& path)>;

/// Which listener a handler serves. The public one (http.listen) serves the probes, /metrics,
/// the read-only status routes and queries, and answers 404 for every /admin/ path. The admin one
/// (admin.listen) serves the same probes and status routes and the /admin/ routes (whatever
/// changes the node's state), and no queries (404: they belong to http.listen).
struct http_api_listener {
  bool admin = false;
  /// Admin only: when not empty, every request must carry "Authorization: Bearer <token>"
  /// (401 otherwise; compared in constant time). From admin.token_file.
  std::string token;
};

/// `metrics` must outlive the handler. With `server_stats`, /metrics also exports the server's
/// connection and request counters (bulwark_http_*).
http_handler make_http_api(engine& eng, http_api_metrics& metrics,
                           http_stats_source server_stats = {}, http_api_fault fault = {},
                           http_api_listener listener = {});

/// Reads a query body {"params": [...]} (empty: none) into `out`. `kinds` are the statement's
/// declared parameter kinds (nullptr when it is unknown). Numbers are exact or refused: an
/// integer outside int64 is refused for an `int` ("params[0]: ... is out of range for int"); for
/// a `real` it becomes the nearest double, the value the same number has written with a decimal
/// point (as any other JSON number). Returns what was wrong, or an empty string.
std::string parse_query_params(const std::string& body,
                               const std::vector<detail::param_kind>* kinds,
                               std::vector<db_value>& out);

namespace detail {
/// parse_query_params by way of a whole JSON tree: what it does with any body that is not the
/// plain {"params": [integers, plain strings, true, false, null]} it reads by hand, and the
/// reference the tests and the request_parts fuzzer hold that hand reading to.
std::string parse_query_params_tree(const std::string& body, const std::vector<param_kind>* kinds,
                                    std::vector<db_value>& out);
} // namespace detail

/// Reads a transaction body {"steps": [{"statement": name, "params": [...]}, ...], "isolation":
/// "repeatable_read" | "serializable" (optional)} into `out` (statement transaction_label,
/// steps, isolation); `known` gives each step's parameter kinds (an unknown statement is left for
/// the database to refuse, naming the step). Returns what was wrong, or an empty string.
std::string parse_transaction_body(const std::string& body, const detail::statement_catalog& known,
                                   db_query& out);

/// Reads a batch body {"params": [[...], ...], "mode": "fail_fast" | "collect" (optional; fail
/// fast by default)} into `out` (statement, batch, collect); `kinds` as for a query. Returns what
/// was wrong, or an empty string.
std::string parse_batch_body(const std::string& body, const std::string& statement,
                             const std::vector<detail::param_kind>* kinds, db_query& out);

/// Reads a declared transaction's body {"params": [[...], ...]} (one array per step; left out
/// when no step takes any) into `out`: statement declared_transaction_label(name), the
/// declaration's `statements` as steps. Returns what was wrong, or an empty string.
std::string parse_declared_transaction_body(const std::string& body, const std::string& name,
                                            const std::vector<std::string>& statements,
                                            const detail::statement_catalog& known, db_query& out);

/// X-Client-Id longer than this is refused (400). The whole id is the rate limiter's key, so
/// clients whose ids share a prefix never share a bucket.
constexpr size_t max_client_id_bytes = 256;

/// The rate limiter's key. A peer outside `trusted` (http.trusted_proxies; empty by default, so
/// nobody) is its address: "ip:" + the peer's address without its port, whatever headers it
/// sends. A trusted proxy's request is keyed by its X-Client-Id ("id:" + the id) when given, else
/// by X-Forwarded-For: the rightmost address that is not itself a trusted proxy (nginx's
/// real_ip_recursive), else the peer. Returns what was wrong (an id over max_client_id_bytes, an
/// X-Forwarded-For entry that is not an address), or an empty string.
std::string client_key(const http_request& req, const address_ranges& trusted, std::string& key);

/// Percent-decodes one path segment (RFC 3986). False when a '%' is not followed by two hex
/// digits or the result is not valid UTF-8.
bool decode_path_segment(std::string_view in, std::string& out);

} // namespace bulwark
