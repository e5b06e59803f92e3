#pragma once
/// Time inside actors comes only from the actor's clock: the steady clock in production, CAF's
/// test coordinator clock in tests. This is the one way actors read it.

#include <caf/timestamp.hpp>

#include <chrono>
#include <cstdint>

namespace bulwark {

/// Now on the actor clock, as the duration since its epoch (the `clock_point` of messages).
template <class Self>
caf::timespan now_of(Self* self) {
  return self->clock().now().time_since_epoch();
}

/// Whole milliseconds of `x` (truncated), for logs, retry-afters and error contexts.
inline int64_t to_ms(caf::timespan x) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(x).count();
}

/// A caller's timeout can only shorten `limit`: the shorter of the two. Compared in
/// milliseconds, so a huge request (past ~9.2e12 ms a nanosecond count overflows) is just
/// `limit`; a request <= 0 is none.
inline caf::timespan shortened(caf::timespan limit, int64_t requested_ms) {
  auto limit_ms = std::chrono::duration_cast<std::chrono::milliseconds>(limit).count();
  if (requested_ms <= 0 || requested_ms >= limit_ms)
    return limit;
  return std::chrono::milliseconds(requested_ms);
}

} // namespace bulwark
