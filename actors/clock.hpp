#pragma once
/// Time inside actors comes only from the actor's clock: the steady clock in production, CAF's
/// test coordinator clock in tests. This is the one way actors read it.

#include <caf/timestamp.hpp>

namespace bulwark {

/// Now on the actor clock, as the duration since its epoch (the `clock_point` of messages).
template <class Self>
caf::timespan now_of(Self* self) {
  return self->clock().now().time_since_epoch();
}

} // namespace bulwark
