#pragma once
/// Alert rules over the engine's own metrics, evaluated in-process (no CAF here; the performance
/// monitor owns one `alert_evaluator` and calls it on its tick with a registry snapshot).
///
/// A rule is `{name, metric, op, threshold, for, clear_threshold, severity}`. `metric` is a small
/// PromQL subset, so a rule reads as its Prometheus twin (deploy/prometheus/alerts.yml):
///
///   name{label="v",...}          the sum of every matching series (one series: its value)
///   sum(name{...}), max(...), min(...)
///   rate(name{...}[5m])          per-second increase of the sum over the window
///
/// Counters, gauges and histogram `_count`/`_sum` series (named with the suffix) can be read.
/// A rule with no matching series has no value and is not active (as in Prometheus).
///
/// States: inactive -> pending (the condition holds) -> firing (it held for `for`) -> inactive.
/// Hysteresis: a firing rule resolves only when the condition fails against `clear_threshold`
/// (for `>` a value at or below it); a pending rule drops back as soon as the condition fails
/// against `threshold`. `clear_threshold` equal to `threshold` means no hysteresis.
///
/// Rate windows keep one (time, value) point per evaluation inside the window: bounded by
/// window / evaluation interval, whatever the load.

#include <caf/timestamp.hpp>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bulwark::detail {

enum class alert_op { gt, ge, lt, le, eq, ne };

const char* to_string(alert_op op);
bool parse_alert_op(const std::string& text, alert_op& out);

enum class metric_func { none, sum, max, min, rate };

struct metric_expr {
  metric_func func = metric_func::none;
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels; ///< exact matches
  caf::timespan window{0};                                 ///< rate only
};

/// Parses the subset above; on failure `err` says what and where.
bool parse_metric_expr(const std::string& text, metric_expr& out, std::string& err);

struct alert_rule {
  std::string name; ///< [A-Za-z0-9_]+, unique
  std::string metric;
  alert_op op = alert_op::gt;
  double threshold = 0;
  caf::timespan for_duration{0};
  double clear_threshold = 0;
  std::string severity = "warning"; ///< "info" | "warning" | "critical"
};

/// Problems of one rule, each prefixed by the key it is about ("metric: ...").
std::vector<std::string> validate(const alert_rule& r);

/// The shipped rules (config/default.json's `alerts`; their Prometheus twins are
/// deploy/prometheus/alerts.yml): memory pressure high and critical, cache evictions, the
/// breaker not closed, and the original's CPU, event-loop lag (here: scheduler lag) and error-rate
/// rules with its thresholds and durations (seed-behaviour.md 6.5; its memory rule is
/// HighMemoryPressure, held 2 minutes rather than 30 s so a flood's short peak does not page).
std::vector<alert_rule> default_alert_rules();

enum class alert_state { inactive, pending, firing };
const char* to_string(alert_state s);

struct alert_transition {
  std::string rule;
  alert_state to = alert_state::inactive; ///< firing or inactive (resolved)
  double value = 0;
};

struct alert_view {
  alert_rule rule;
  alert_state state = alert_state::inactive;
  std::optional<double> value; ///< the last evaluated value (none: no series matched)
  caf::timespan since{0};      ///< when the current state was entered (actor clock)
  uint64_t fired = 0;          ///< times it went to firing
  caf::timespan last_fired{0}; ///< 0: never
  caf::timespan last_resolved{0};
};

/// Evaluates a metric expression on one snapshot; no value when no series matched. `rate` needs
/// history and is evaluated by `alert_evaluator` (here it yields the plain sum).
std::optional<double> evaluate_selector(const metric_expr& e,
                                        const std::vector<prometheus::MetricFamily>& snapshot);

/// Whether a rule's metric names a family registered in `reg` (a histogram's `_count` and `_sum`
/// name its family), series or not: a label-keyed family has none until its first event (no
/// cache eviction yet), and prometheus-cpp collects no family without series, so a snapshot
/// cannot tell "registered" from "unknown". Leaves `reg` as it was.
bool metric_registered(prometheus::Registry& reg, const std::string& metric_name);

class alert_evaluator {
public:
  /// The rules must have passed `validate`.
  explicit alert_evaluator(std::vector<alert_rule> rules);

  /// One evaluation at `now`; returns the firing and resolved transitions it made.
  std::vector<alert_transition> evaluate(caf::timespan now,
                                         const std::vector<prometheus::MetricFamily>& snapshot);

  std::vector<alert_view> views() const;
  size_t firing() const;

private:
  struct entry {
    alert_rule rule;
    metric_expr expr;
    alert_view view;
    std::deque<std::pair<caf::timespan, double>> window; ///< rate: (time, sum) points
    bool seen = false;                                   ///< evaluated at least once
  };
  std::optional<double> value_of(entry& e, caf::timespan now,
                                 const std::vector<prometheus::MetricFamily>& snapshot);
  std::vector<entry> entries_;
};

} // namespace bulwark::detail
