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

/// A caller's requested timeout in milliseconds as a duration for gateway_request::timeout:
/// none (0) when it is <= 0 or too large to matter (past a day: any deadline is shorter).
inline caf::timespan requested_timeout(int64_t ms) {
  if (ms <= 0 || ms > 24 * 3600 * 1000)
    return caf::timespan{0};
  return std::chrono::milliseconds(ms);
}

/// How long past a request's deadline one hop waits for the next to answer. Every hop answers by
/// the deadline on its own (the pool cuts a call there; an actor that dies answers its callers at
/// once, actors/owed_answers.hpp), so this only covers a hop that is wedged; one value for the
/// whole path, so no hop hedges against the next.
inline constexpr caf::timespan path_grace = std::chrono::seconds(1);

} // namespace bulwark
