#include "actors/detail/alert_rules.hpp"

#include "runtime/engine.hpp"

#include <catch2/catch.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

using namespace bulwark::detail;
using namespace std::chrono_literals;

namespace {

metric_expr parsed(const std::string& text) {
  metric_expr e;
  std::string err;
  INFO(text);
  REQUIRE(parse_metric_expr(text, e, err));
  CHECK(err.empty());
  return e;
}

std::string parse_error(const std::string& text) {
  metric_expr e;
  std::string err;
  CHECK_FALSE(parse_metric_expr(text, e, err));
  return err;
}

alert_rule rule(std::string metric, alert_op op, double threshold, caf::timespan for_d,
                double clear) {
  alert_rule r;
  r.name = "r";
  r.metric = std::move(metric);
  r.op = op;
  r.threshold = threshold;
  r.for_duration = for_d;
  r.clear_threshold = clear;
  return r;
}

} // namespace

TEST_CASE("metric expressions parse the PromQL subset", "[alerts]") {
  auto plain = parsed("bulwark_memory_pressure_ratio");
  CHECK(plain.func == metric_func::none);
  CHECK(plain.name == "bulwark_memory_pressure_ratio");
  CHECK(plain.labels.empty());

  auto labelled = parsed(R"( max( bulwark_breaker_state{breaker="backend", x="a\"b"} ) )");
  CHECK(labelled.func == metric_func::max);
  REQUIRE(labelled.labels.size() == 2);
  CHECK(labelled.labels[0] == std::pair<std::string, std::string>{"breaker", "backend"});
  CHECK(labelled.labels[1].second == "a\"b");

  auto rate = parsed("rate(bulwark_cache_evictions_total{reason=\"capacity\"}[5m])");
  CHECK(rate.func == metric_func::rate);
  CHECK(rate.window == 5min);
  CHECK(parsed("rate(x[1500ms])").window == 1500ms);
  CHECK(parsed("rate(x[2h])").window == 2h);
  CHECK(parsed("sum(x{})").func == metric_func::sum);
}

TEST_CASE("a malformed metric expression says what and where", "[alerts]") {
  CHECK_THAT(parse_error(""), Catch::Contains("expected a metric or label name"));
  CHECK_THAT(parse_error("avg(x)"), Catch::Contains("unknown function \"avg\""));
  CHECK_THAT(parse_error("rate(x)"), Catch::Contains("rate needs a window"));
  CHECK_THAT(parse_error("rate(x[5d])"), Catch::Contains("duration unit"));
  CHECK_THAT(parse_error("rate(x[0s])"), Catch::Contains("positive"));
  CHECK_THAT(parse_error("x{a=~\"b\"}"), Catch::Contains("quoted label value"));
  CHECK_THAT(parse_error("x{a!=\"b\"}"), Catch::Contains("only exact label matches"));
  CHECK_THAT(parse_error("x{a=\"b\""), Catch::Contains("expected ',' or '}'"));
  CHECK_THAT(parse_error("x > 3"), Catch::Contains("unexpected text at offset 2"));
  CHECK_THAT(parse_error("max(x"), Catch::Contains("expected ')'"));
}

TEST_CASE("rules are validated key by key", "[alerts]") {
  auto ok = rule("x", alert_op::gt, 0.9, 10s, 0.8);
  CHECK(validate(ok).empty());
  for (auto& r : default_alert_rules())
    CHECK(validate(r).empty());

  auto bad = ok;
  bad.name = "no spaces";
  bad.metric = "avg(x)";
  bad.clear_threshold = 0.95; // above the threshold of a ">" rule
  bad.severity = "page";
  auto problems = validate(bad);
  REQUIRE(problems.size() == 4);
  CHECK_THAT(problems[0], Catch::StartsWith("name: "));
  CHECK_THAT(problems[1], Catch::StartsWith("metric: unknown function"));
  CHECK_THAT(problems[2], Catch::StartsWith("clear_threshold: must be at or below"));
  CHECK_THAT(problems[3], Catch::StartsWith("severity: "));

  auto below = rule("x", alert_op::lt, 10, 0s, 5);
  CHECK_THAT(validate(below).at(0), Catch::StartsWith("clear_threshold: must be at or above"));
  auto eq = rule("x", alert_op::eq, 1, 0s, 2);
  CHECK_THAT(validate(eq).at(0), Catch::StartsWith("clear_threshold: must equal"));
}

TEST_CASE("selectors read counters, gauges and histogram series from a registry snapshot",
          "[alerts]") {
  prometheus::Registry reg;
  auto& evictions = prometheus::BuildCounter().Name("c_total").Help("h").Register(reg);
  evictions.Add({{"shard", "0"}, {"reason", "capacity"}}).Increment(3);
  evictions.Add({{"shard", "1"}, {"reason", "capacity"}}).Increment(4);
  evictions.Add({{"shard", "1"}, {"reason", "expired"}}).Increment(10);
  auto& g = prometheus::BuildGauge().Name("g").Help("h").Register(reg);
  g.Add({{"k", "a"}}).Set(2);
  g.Add({{"k", "b"}}).Set(-1);
  auto& h = prometheus::BuildHistogram().Name("lat_seconds").Help("h").Register(reg);
  auto& hist = h.Add({}, prometheus::Histogram::BucketBoundaries{0.1, 1});
  hist.Observe(0.5);
  hist.Observe(2);
  auto snap = reg.Collect();

  CHECK(evaluate_selector(parsed("c_total"), snap) == 17);
  CHECK(evaluate_selector(parsed("c_total{reason=\"capacity\"}"), snap) == 7);
  CHECK(evaluate_selector(parsed("c_total{shard=\"1\",reason=\"expired\"}"), snap) == 10);
  CHECK(evaluate_selector(parsed("max(g)"), snap) == 2);
  CHECK(evaluate_selector(parsed("min(g)"), snap) == -1);
  CHECK(evaluate_selector(parsed("sum(g)"), snap) == 1);
  CHECK(evaluate_selector(parsed("lat_seconds_count"), snap) == 2);
  CHECK(evaluate_selector(parsed("lat_seconds_sum"), snap) == 2.5);
  // No match: no value (a rule over it stays inactive), not zero.
  CHECK_FALSE(evaluate_selector(parsed("c_total{shard=\"9\"}"), snap));
  CHECK_FALSE(evaluate_selector(parsed("lat_seconds"), snap));
  CHECK_FALSE(evaluate_selector(parsed("c"), snap)); // a prefix of a family is not the family
}

TEST_CASE("a family registered without series is known to the rule check; an unknown name is not",
          "[alerts]") {
  prometheus::Registry reg;
  prometheus::BuildCounter().Name("quiet_total").Help("h").Register(reg); // no series yet
  prometheus::BuildHistogram().Name("wait_seconds").Help("h").Register(reg);
  prometheus::BuildGauge().Name("level").Help("h").Register(reg);
  REQUIRE(reg.Collect().empty()); // what a snapshot-based check saw: nothing
  CHECK(metric_registered(reg, "quiet_total"));
  CHECK(metric_registered(reg, "wait_seconds_count"));
  CHECK(metric_registered(reg, "wait_seconds_sum"));
  CHECK(metric_registered(reg, "level"));
  CHECK_FALSE(metric_registered(reg, "no_such_metric_total"));
  CHECK_FALSE(metric_registered(reg, "quiet")); // a prefix of a family is not the family
  CHECK_FALSE(metric_registered(reg, "not a name"));
  // The check leaves the registry as it was: the unknown name is still free for any type.
  CHECK(reg.Collect().empty());
  CHECK_NOTHROW(prometheus::BuildGauge().Name("no_such_metric_total").Help("h").Register(reg));
}

TEST_CASE("every default alert rule names a family the engine registers", "[alerts]") {
  prometheus::Registry reg;
  bulwark::engine_metrics metrics{reg}; // every family, most without series yet
  for (auto& rule : default_alert_rules()) {
    INFO(rule.name << ": " << rule.metric);
    auto e = parsed(rule.metric);
    CHECK(metric_registered(reg, e.name));
  }
}

TEST_CASE("a rule fires only after holding for its duration, and resolves with hysteresis",
          "[alerts]") {
  prometheus::Registry reg;
  auto& g = prometheus::BuildGauge().Name("ratio").Help("h").Register(reg).Add({});
  alert_evaluator ev{{rule("ratio", alert_op::gt, 0.9, 10s, 0.8)}};
  auto at = [&](caf::timespan t, double v) {
    g.Set(v);
    return ev.evaluate(t, reg.Collect());
  };
  auto state = [&] { return ev.views().at(0).state; };

  CHECK(at(0s, 0.5).empty());
  CHECK(state() == alert_state::inactive);
  CHECK(at(1s, 0.95).empty());
  CHECK(state() == alert_state::pending);
  // A dip below the threshold while pending starts the count again.
  CHECK(at(5s, 0.85).empty());
  CHECK(state() == alert_state::inactive);
  CHECK(at(6s, 0.95).empty());
  CHECK(at(15s, 0.95).empty()); // 9 s pending: not yet
  CHECK(state() == alert_state::pending);
  auto fired = at(16s, 0.95);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0].to == alert_state::firing);
  CHECK(fired[0].value == 0.95);
  CHECK(ev.firing() == 1);
  // Between the clear threshold and the threshold it keeps firing (no flapping).
  CHECK(at(17s, 0.85).empty());
  CHECK(state() == alert_state::firing);
  auto resolved = at(18s, 0.8);
  REQUIRE(resolved.size() == 1);
  CHECK(resolved[0].to == alert_state::inactive);
  CHECK(ev.firing() == 0);
  auto v = ev.views().at(0);
  CHECK(v.fired == 1);
  CHECK(v.last_fired == 16s);
  CHECK(v.last_resolved == 18s);
  // And it can fire again (the original's resolved alerts never could).
  at(19s, 0.99);
  CHECK(at(29s, 0.99).size() == 1);
  CHECK(ev.views().at(0).fired == 2);
}

TEST_CASE("a rule with no duration fires on the first evaluation that holds", "[alerts]") {
  prometheus::Registry reg;
  auto& g = prometheus::BuildGauge().Name("state").Help("h").Register(reg);
  alert_evaluator ev{{rule("state{breaker=\"backend\"}", alert_op::eq, 1, 0s, 1)}};
  CHECK(ev.evaluate(0s, reg.Collect()).empty()); // no series yet: no value, inactive
  CHECK_FALSE(ev.views().at(0).value);
  g.Add({{"breaker", "backend"}}).Set(1);
  CHECK(ev.evaluate(1s, reg.Collect()).size() == 1);
  g.Add({{"breaker", "backend"}}).Set(2);
  CHECK(ev.evaluate(2s, reg.Collect()).size() == 1);
  CHECK(ev.firing() == 0);
}

TEST_CASE("rate rules use the increase over their window", "[alerts]") {
  prometheus::Registry reg;
  auto& c = prometheus::BuildCounter().Name("ev_total").Help("h").Register(reg);
  auto& a = c.Add({{"shard", "0"}});
  auto& b = c.Add({{"shard", "1"}});
  alert_evaluator ev{{rule("rate(ev_total[60s])", alert_op::gt, 10, 30s, 10)}};
  auto value = [&] { return ev.views().at(0).value; };
  ev.evaluate(0s, reg.Collect());
  CHECK_FALSE(value()); // one point: no rate yet
  // 6 per second on each shard: 12/s in all.
  for (int t = 10; t <= 60; t += 10) {
    a.Increment(60);
    b.Increment(60);
    ev.evaluate(std::chrono::seconds(t), reg.Collect());
    CHECK(*value() == Approx(12));
  }
  CHECK(ev.views().at(0).state == alert_state::firing); // pending at 10 s, firing at 40 s
  // It slows to 2/s; after a full window the old points have left and the rule resolves.
  std::vector<alert_transition> seen;
  for (int t = 70; t <= 130; t += 10) {
    a.Increment(20);
    auto tr = ev.evaluate(std::chrono::seconds(t), reg.Collect());
    seen.insert(seen.end(), tr.begin(), tr.end());
  }
  CHECK(*value() == Approx(2));
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].to == alert_state::inactive);
}
