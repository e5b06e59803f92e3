#pragma once
/// A query's share of the node's memory account (actors/detail/memory_account.hpp), carried along
/// the query's path: the gateway admits a query by reserving its expected result size, the
/// connection grows the reservation as rows arrive, and whoever holds the result last (the HTTP
/// answer until its last byte is written, the facade's caller, the remote front until the
/// answer is sent) releases it by dropping it. Copies share one reservation.
///
/// A reservation is local to its node: nothing of it crosses the network (it serializes as 0 and
/// arrives empty, and the remote side reserves its own).

#include "actors/detail/memory_account.hpp"

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <memory>

namespace bulwark {

struct memory_grant {
  std::shared_ptr<detail::memory_reservation> held;

  /// Bytes held now (0 when empty).
  uint64_t bytes() const { return held ? held->bytes() : 0; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, memory_grant&) {
  uint64_t local_only = 0;
  return f(caf::meta::type_name("bulwark::memory_grant"), local_only);
}

} // namespace bulwark
