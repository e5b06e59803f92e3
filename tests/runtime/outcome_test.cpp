#include "runtime/outcome.hpp"

#include <catch2/catch.hpp>

using namespace bulwark;

TEST_CASE("every deadline the request path reports is one outcome: 504 deadline_exceeded",
          "[outcome]") {
  // The pool says why a deadline passed (the breaker judges by it); the caller sees one thing.
  for (auto code :
       {errc::deadline_exceeded, errc::queue_timeout, errc::backend_stuck, errc::call_cancelled}) {
    INFO(static_cast<int>(code));
    auto o = classify(make_error(code, std::string{"what happened"}));
    CHECK(o.outcome == query_outcome::timed_out);
    CHECK(o.http_status == 504);
    CHECK(o.error == "deadline_exceeded");
  }
  auto cancelled = classify(make_error(errc::call_cancelled, std::string{"cancelled"}, int64_t{7}));
  CHECK(cancelled.outcome == query_outcome::timed_out);
}
