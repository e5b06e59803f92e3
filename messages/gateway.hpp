#pragma once
/// Messages of the gateway, the request pipeline: `gateway_request` → `db_result`.

#include "messages/database.hpp"

#include <caf/meta/type_name.hpp>
#include <caf/timestamp.hpp>

#include <cstdint>
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

/// A query through the whole pipeline: rate limiter (by `client`), cache (read-only statements
/// with a cache TTL), database.
struct gateway_request {
  std::string client;
  request_priority priority = request_priority::normal;
  db_query query;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, gateway_request& x) {
  return f(caf::meta::type_name("bulwark::gateway_request"), x.client, x.priority, x.query);
}

} // namespace bulwark
