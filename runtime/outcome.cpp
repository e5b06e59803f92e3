#include "runtime/outcome.hpp"

#include <algorithm>
#include <iterator>

#include <caf/sec.hpp>

namespace bulwark {

const char* to_string(query_outcome x) {
  switch (x) {
  case query_outcome::served:
    return "served";
  case query_outcome::served_truncated:
    return "served_truncated";
  case query_outcome::served_cached:
    return "served_cached";
  case query_outcome::rejected_rate_limited:
    return "rejected_rate_limited";
  case query_outcome::rejected_shed:
    return "rejected_shed";
  case query_outcome::rejected_queue_full:
    return "rejected_queue_full";
  case query_outcome::rejected_circuit_open:
    return "rejected_circuit_open";
  case query_outcome::rejected_unavailable:
    return "rejected_unavailable";
  case query_outcome::failed_backend:
    return "failed_backend";
  case query_outcome::timed_out:
    return "timed_out";
  case query_outcome::bad_request:
    return "bad_request";
  case query_outcome::unknown_statement:
    return "unknown_statement";
  case query_outcome::conflict:
    return "conflict";
  case query_outcome::invalid_data:
    return "invalid_data";
  case query_outcome::rejected_contention:
    return "rejected_contention";
  case query_outcome::internal_error:
    return "internal_error";
  case query_outcome::rejected_memory:
    return "rejected_memory";
  }
  return "unknown";
}

namespace {

constexpr query_outcome failures[] = {query_outcome::failed_backend, query_outcome::timed_out,
                                      query_outcome::internal_error};

} // namespace

bool is_failure(query_outcome x) {
  return std::find(std::begin(failures), std::end(failures), x) != std::end(failures);
}

bool is_failure(const std::string& label) {
  return std::any_of(std::begin(failures), std::end(failures),
                     [&](query_outcome o) { return label == to_string(o); });
}

outcome_info classify(const db_result& r) {
  outcome_info out;
  out.outcome = r.from_cache  ? query_outcome::served_cached
                : r.truncated ? query_outcome::served_truncated
                              : query_outcome::served;
  return out;
}

namespace {

/// Rejections carry their retry-after in ms as the first context element.
int64_t retry_after_of(const caf::error& e) {
  auto& ctx = e.context();
  if (ctx.size() > 0 && ctx.match_element<int64_t>(0))
    return ctx.get_as<int64_t>(0);
  return 1000;
}

/// The context's element `i` when it is a string, else `fallback`.
std::string text_at(const caf::error& e, size_t i, const std::string& fallback) {
  auto& ctx = e.context();
  if (ctx.size() > i && ctx.match_element<std::string>(i))
    return ctx.get_as<std::string>(i);
  return fallback;
}

outcome_info make(query_outcome o, unsigned status, const char* error, std::string detail,
                  int64_t retry = 0) {
  outcome_info out;
  out.outcome = o;
  out.http_status = status;
  out.error = error;
  out.detail = std::move(detail);
  out.retry_after_ms = retry;
  return out;
}

} // namespace

outcome_info internal_failure(std::string detail) {
  auto out = make(query_outcome::internal_error, 500, "internal_error", std::move(detail));
  out.private_detail = true;
  return out;
}

std::string public_detail(const outcome_info& o) {
  if (!o.private_detail)
    return o.detail;
  if (o.error == "bad_statement")
    return "the backend refused the statement; the node's log has its reason under request_id";
  if (o.error == "conflict")
    return "the change conflicts with a constraint of the data";
  if (o.error == "invalid_data")
    return "the backend cannot take a value of this request";
  if (o.error == "contention")
    return "the backend lost a race for a lock; retry after Retry-After";
  if (o.error == "internal_error")
    return "the node failed handling this request; its log has the reason under request_id";
  return "the backend failed; the node's log has its error under request_id";
}

outcome_info handler_timed_out() {
  return make(query_outcome::rejected_unavailable, 503, "handler_timeout",
              "no answer within http.request_timeout_ms");
}

outcome_info shut_down_in_flight() {
  return make(query_outcome::rejected_unavailable, 503, "shutting_down",
              "the node is stopping and its drain time (shutdown.drain_ms) is over", 1000);
}

namespace {

/// What the error's code and context say (classify adds the failed step).
outcome_info classify_error(const caf::error& e) {
  auto detail = describe(e);
  if (is(e, errc::unknown_statement))
    return make(query_outcome::unknown_statement, 404, "unknown_statement", detail);
  if (is(e, errc::bad_parameters))
    return make(query_outcome::bad_request, 400, "bad_parameters", text_at(e, 1, detail));
  if (is(e, errc::bad_statement)) {
    auto out = make(query_outcome::bad_request, 400, "bad_statement", detail);
    out.private_detail = true;
    return out;
  }
  if (is(e, errc::conflict)) {
    // Context: the constraint's name, the backend's message (which is what a person reads).
    auto out = make(query_outcome::conflict, 409, "conflict", text_at(e, 1, detail));
    out.constraint = text_at(e, 0, "");
    out.private_detail = true;
    return out;
  }
  if (is(e, errc::invalid_data)) {
    auto out = make(query_outcome::invalid_data, 422, "invalid_data", text_at(e, 1, detail));
    auto& ctx = e.context();
    if (ctx.size() > 0 && ctx.match_element<int32_t>(0))
      out.parameter = ctx.get_as<int32_t>(0);
    out.private_detail = true;
    return out;
  }
  if (is(e, errc::backend_busy)) {
    auto out = make(query_outcome::rejected_contention, 503, "contention", text_at(e, 1, detail),
                    retry_after_of(e));
    out.private_detail = true;
    return out;
  }
  if (is(e, errc::rate_limited))
    return make(query_outcome::rejected_rate_limited, 429, "rate_limited", detail,
                retry_after_of(e));
  if (is(e, errc::shed))
    return make(query_outcome::rejected_shed, 503, "shed", detail, retry_after_of(e));
  if (is(e, errc::insufficient_memory))
    return make(query_outcome::rejected_memory, 503, "insufficient_memory", detail,
                retry_after_of(e));
  if (is(e, errc::queue_full))
    return make(query_outcome::rejected_queue_full, 503, "queue_full", detail, retry_after_of(e));
  if (is(e, errc::circuit_open))
    return make(query_outcome::rejected_circuit_open, 503, "circuit_open", detail,
                retry_after_of(e));
  if (is(e, errc::component_unavailable) || is(e, errc::pool_closed) ||
      is(e, errc::shutting_down) || e == caf::sec::request_receiver_down)
    return make(query_outcome::rejected_unavailable, 503, "unavailable", detail, 1000);
  if (is(e, errc::deadline_exceeded) || is(e, errc::queue_timeout) || is(e, errc::backend_stuck) ||
      is(e, errc::call_cancelled) || e == caf::sec::request_timeout)
    return make(query_outcome::timed_out, 504, "deadline_exceeded", detail);
  auto out = make(query_outcome::failed_backend, 502, "backend_error", detail);
  out.private_detail = true;
  return out;
}

} // namespace

outcome_info classify(const caf::error& e) {
  auto out = classify_error(e);
  out.step = failed_step_of(e);
  out.item = failed_item_of(e);
  return out;
}

} // namespace bulwark
