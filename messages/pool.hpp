#pragma once
/// The connection pool's status, for /v1/status and operators.

#include <caf/meta/type_name.hpp>
#include <caf/timestamp.hpp>

#include <cstdint>
#include <string>

namespace bulwark {

struct pool_status {
  uint64_t connections = 0; ///< open or opening
  uint64_t idle = 0;
  uint64_t busy = 0;
  uint64_t connecting = 0;
  uint64_t queue_length = 0;
  uint64_t queue_limit = 0;
  std::string strategy; ///< the rejection strategy the current load and pressure select
  double health = 1;
  double service_rate_per_s = 0;
  uint64_t served = 0;
  uint64_t rejected = 0;
  uint64_t connect_failures = 0;
  uint64_t replacements = 0;
  std::string last_error;
  caf::timespan last_connected{0}; ///< when a connection last opened (0: never)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pool_status& x) {
  return f(caf::meta::type_name("bulwark::pool_status"), x.connections, x.idle, x.busy,
           x.connecting, x.queue_length, x.queue_limit, x.strategy, x.health, x.service_rate_per_s,
           x.served, x.rejected, x.connect_failures, x.replacements, x.last_error,
           x.last_connected);
}

} // namespace bulwark
