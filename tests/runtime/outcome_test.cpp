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

TEST_CASE("failures are the node's own: backend failures, timeouts and internal errors",
          "[outcome]") {
  for (auto o :
       {query_outcome::failed_backend, query_outcome::timed_out, query_outcome::internal_error}) {
    CHECK(is_failure(o));
    CHECK(is_failure(std::string{to_string(o)})); // by its bulwark_requests_total label
  }
  for (auto o : {query_outcome::served, query_outcome::rejected_queue_full, query_outcome::conflict,
                 query_outcome::bad_request, query_outcome::rejected_memory}) {
    CHECK_FALSE(is_failure(o));
    CHECK_FALSE(is_failure(std::string{to_string(o)}));
  }
  CHECK_FALSE(is_failure(std::string{"nope"}));
}
