#pragma once
/// Messages of the gateway, the request pipeline: `gateway_request` → `db_result`.

#include "messages/database.hpp"

#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/timestamp.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace bulwark {

/// The priority classes of a request (header X-Priority): low work is shed first.
enum class request_priority : uint8_t { low = 0, normal = 1, high = 2 };

/// "low", "normal" or "high".
const char* to_string(request_priority x);

/// A priority from outside the process (a remote node sends any byte) within low..high: above
/// high is high.
request_priority clamp_priority(request_priority x);

/// The pool's priority for a request's backend work (`db_query::priority`; higher is served
/// first): low -1, normal 0, high 1, so a db_query that names none is normal. Clamped as above.
int32_t pool_priority(request_priority x);

/// How an in-process caller gets the front door's answer (actors/front_door.hpp): called once,
/// on the front door's thread, with the answer; `count` counts the request's outcome. Call it
/// when this answer is the one the caller gets, before it can reach the caller; skip it when the
/// caller already got (and counted) another answer, such as the HTTP server's own timeout.
using front_answer_fn =
    std::function<void(caf::expected<db_result>& answer, const std::function<void()>& count)>;

/// A front_answer_fn carried in a request. Local to its node, like memory_grant: it serializes as
/// nothing and arrives empty, so a remote caller is answered with a response message instead.
struct front_sink {
  std::shared_ptr<front_answer_fn> fn;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, front_sink&) {
  uint64_t local_only = 0;
  return f(caf::meta::type_name("bulwark::front_sink"), local_only);
}

/// A query through the whole pipeline: rate limiter (by `client`), cache (read-only statements
/// with a cache TTL), database.
struct gateway_request {
  std::string client;
  request_priority priority = request_priority::normal;
  db_query query;
  /// At the front door: the caller's budget (0: the node's database.default_timeout_ms; a
  /// larger one keeps the default). A duration, so it means the same on every machine; the
  /// front door turns it into query.deadline, the one deadline of the whole path.
  caf::timespan timeout{0};
  /// At the front door: where an in-process caller wants the answer (empty: reply).
  front_sink sink;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, gateway_request& x) {
  return f(caf::meta::type_name("bulwark::gateway_request"), x.client, x.priority, x.query,
           x.timeout, x.sink);
}

} // namespace bulwark
