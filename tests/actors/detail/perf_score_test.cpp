#include "actors/detail/perf_score.hpp"

#include <catch2/catch.hpp>

using namespace bulwark::detail;

namespace {

std::vector<std::string> names(const score_result& r) {
  std::vector<std::string> out;
  for (auto& f : r.findings)
    out.push_back(f.name);
  return out;
}

} // namespace

TEST_CASE("a node with nothing above a threshold scores 100 with no findings", "[perf]") {
  perf_score_input in;
  in.cpu_ratio = 0.6; // thresholds are strict: exactly at one takes nothing
  in.memory_ratio = 0.7;
  in.lag_ratio = 0.6;
  in.mean_response_s = 0.5;
  in.error_ratio = 0.01;
  in.cache_hit_ratio = 0.5;
  auto r = score_performance(in);
  CHECK(r.score == 100);
  CHECK(r.findings.empty());
  CHECK(score_performance({}).score == 100); // nothing measured yet
}

TEST_CASE("each row takes its larger penalty, with the value and the threshold it passed",
          "[perf]") {
  perf_score_input in;
  in.cpu_ratio = 0.85;       // > 0.80: -20
  in.memory_ratio = 0.75;    // > 0.70: -10
  in.lag_ratio = 0.61;       // > 0.60: -10
  in.mean_response_s = 0.6;  // > 0.5 s: -8
  in.error_ratio = 0.2;      // > 0.05: -15
  in.cache_hit_ratio = 0.25; // < 0.5: a finding, no penalty
  auto r = score_performance(in);
  CHECK(r.score == 100 - 20 - 10 - 10 - 8 - 15);
  REQUIRE(names(r) == std::vector<std::string>{"cpu", "memory", "scheduler_lag", "response_time",
                                               "error_rate", "cache_hit_rate"});
  CHECK(r.findings[0].value == 0.85);
  CHECK(r.findings[0].threshold == 0.80);
  CHECK(r.findings[0].penalty == 20);
  CHECK(r.findings[1].threshold == 0.70);
  CHECK(r.findings[1].penalty == 10);
  CHECK(r.findings[3].threshold == 0.5);
  CHECK(r.findings[3].penalty == 8);
  CHECK(r.findings[4].penalty == 15);
  CHECK(r.findings[5].penalty == 0);
  CHECK(r.findings[5].value == 0.25);
  for (auto& f : r.findings)
    CHECK_FALSE(f.advice.empty());
}

TEST_CASE("every row at its worst leaves 10; an unmeasured row yields nothing", "[perf]") {
  // The original's floor of 0 cannot be reached with its own table (the penalties sum to 90).
  perf_score_input in;
  in.cpu_ratio = 1;
  in.memory_ratio = 1;
  in.lag_ratio = 5;
  in.mean_response_s = 3;
  in.error_ratio = 1;
  CHECK(score_performance(in).score == 10);
  in.error_ratio.reset();
  in.mean_response_s.reset();
  auto r = score_performance(in);
  CHECK(r.score == 40);
  CHECK(names(r) == std::vector<std::string>{"cpu", "memory", "scheduler_lag"});
}
