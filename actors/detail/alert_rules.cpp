#include "actors/detail/alert_rules.hpp"

#include <prometheus/check_names.h>
#include <prometheus/counter.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>

namespace bulwark::detail {

const char* to_string(alert_op op) {
  switch (op) {
  case alert_op::gt:
    return ">";
  case alert_op::ge:
    return ">=";
  case alert_op::lt:
    return "<";
  case alert_op::le:
    return "<=";
  case alert_op::eq:
    return "==";
  case alert_op::ne:
    return "!=";
  }
  return "?";
}

bool parse_alert_op(const std::string& text, alert_op& out) {
  for (auto op :
       {alert_op::gt, alert_op::ge, alert_op::lt, alert_op::le, alert_op::eq, alert_op::ne})
    if (text == to_string(op)) {
      out = op;
      return true;
    }
  return false;
}

const char* to_string(alert_state s) {
  switch (s) {
  case alert_state::inactive:
    return "inactive";
  case alert_state::pending:
    return "pending";
  case alert_state::firing:
    return "firing";
  }
  return "?";
}

namespace {

/// A cursor over the expression text; every error names the offset it stopped at.
struct expr_parser {
  const std::string& s;
  size_t i = 0;
  std::string err;

  void skip_ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])))
      ++i;
  }

  bool fail(const std::string& what) {
    if (err.empty())
      err = what + " at offset " + std::to_string(i) + " of \"" + s + "\"";
    return false;
  }

  bool eat(char c) {
    skip_ws();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }

  bool ident(std::string& out) {
    skip_ws();
    auto start = i;
    while (i < s.size() &&
           (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' || s[i] == ':'))
      ++i;
    if (i == start || std::isdigit(static_cast<unsigned char>(s[start])))
      return fail("expected a metric or label name");
    out = s.substr(start, i - start);
    return true;
  }

  bool quoted(std::string& out) {
    skip_ws();
    if (i >= s.size() || s[i] != '"')
      return fail("expected a quoted label value");
    ++i;
    out.clear();
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\' && i + 1 < s.size())
        ++i;
      out += s[i++];
    }
    if (i >= s.size())
      return fail("unterminated label value");
    ++i;
    return true;
  }

  bool duration(caf::timespan& out) {
    skip_ws();
    auto start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])))
      ++i;
    if (i == start)
      return fail("expected a duration like 30s, 5m or 1h");
    auto n = std::stoll(s.substr(start, i - start));
    if (i >= s.size())
      return fail("expected a duration unit (ms, s, m, h)");
    if (s.compare(i, 2, "ms") == 0) {
      out = std::chrono::milliseconds(n);
      i += 2;
    } else if (s[i] == 's') {
      out = std::chrono::seconds(n);
      ++i;
    } else if (s[i] == 'm') {
      out = std::chrono::minutes(n);
      ++i;
    } else if (s[i] == 'h') {
      out = std::chrono::hours(n);
      ++i;
    } else {
      return fail("expected a duration unit (ms, s, m, h)");
    }
    if (out <= caf::timespan{0})
      return fail("the window must be positive");
    return true;
  }

  bool selector(metric_expr& e) {
    if (!ident(e.name))
      return false;
    if (!eat('{'))
      return true;
    if (eat('}'))
      return true;
    for (;;) {
      std::string label, value;
      if (!ident(label))
        return false;
      if (!eat('='))
        return fail("expected '=' (only exact label matches are supported)");
      if (!quoted(value))
        return false;
      e.labels.emplace_back(label, value);
      if (eat('}'))
        return true;
      if (!eat(','))
        return fail("expected ',' or '}'");
    }
  }

  bool parse(metric_expr& e) {
    std::string first;
    auto mark = i;
    if (!ident(first))
      return false;
    static const std::pair<const char*, metric_func> funcs[] = {{"sum", metric_func::sum},
                                                                {"max", metric_func::max},
                                                                {"min", metric_func::min},
                                                                {"rate", metric_func::rate}};
    if (eat('(')) {
      auto f = std::find_if(std::begin(funcs), std::end(funcs),
                            [&](auto& p) { return first == p.first; });
      if (f == std::end(funcs))
        return fail("unknown function \"" + first + "\" (sum, max, min, rate)");
      e.func = f->second;
      if (!selector(e))
        return false;
      if (e.func == metric_func::rate) {
        if (!eat('['))
          return fail("rate needs a window, e.g. rate(name[5m])");
        if (!duration(e.window))
          return false;
        if (!eat(']'))
          return fail("expected ']'");
      }
      if (!eat(')'))
        return fail("expected ')'");
    } else {
      i = mark;
      if (!selector(e))
        return false;
    }
    skip_ws();
    if (i != s.size())
      return fail("unexpected text");
    return true;
  }
};

bool matches(const prometheus::ClientMetric& m, const metric_expr& e) {
  for (auto& want : e.labels) {
    auto& name = want.first; // not a structured binding: C++17 lambdas cannot capture those
    auto& value = want.second;
    auto it = std::find_if(m.label.begin(), m.label.end(), [&](auto& l) { return l.name == name; });
    if (it == m.label.end() ? !value.empty() : it->value != value)
      return false;
  }
  return true;
}

/// The value of one series of `family` named `name` (the family name, or a histogram's
/// `_count`/`_sum`).
std::optional<double> series_value(const prometheus::MetricFamily& family,
                                   const prometheus::ClientMetric& m, const std::string& name) {
  using prometheus::MetricType;
  switch (family.type) {
  case MetricType::Counter:
    if (name == family.name)
      return m.counter.value;
    break;
  case MetricType::Gauge:
    if (name == family.name)
      return m.gauge.value;
    break;
  case MetricType::Untyped:
    if (name == family.name)
      return m.untyped.value;
    break;
  case MetricType::Histogram:
    if (name == family.name + "_count")
      return static_cast<double>(m.histogram.sample_count);
    if (name == family.name + "_sum")
      return m.histogram.sample_sum;
    break;
  case MetricType::Summary:
    if (name == family.name + "_count")
      return static_cast<double>(m.summary.sample_count);
    if (name == family.name + "_sum")
      return m.summary.sample_sum;
    break;
  default:
    break;
  }
  return std::nullopt;
}

bool holds(alert_op op, double v, double t) {
  switch (op) {
  case alert_op::gt:
    return v > t;
  case alert_op::ge:
    return v >= t;
  case alert_op::lt:
    return v < t;
  case alert_op::le:
    return v <= t;
  case alert_op::eq:
    return v == t;
  case alert_op::ne:
    return v != t;
  }
  return false;
}

bool valid_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

} // namespace

bool parse_metric_expr(const std::string& text, metric_expr& out, std::string& err) {
  expr_parser p{text, 0, {}};
  metric_expr e;
  if (!p.parse(e)) {
    err = p.err;
    return false;
  }
  out = std::move(e);
  return true;
}

std::vector<std::string> validate(const alert_rule& r) {
  std::vector<std::string> out;
  if (!valid_name(r.name))
    out.push_back("name: expected [A-Za-z0-9_]+, got \"" + r.name + "\"");
  metric_expr e;
  std::string err;
  if (!parse_metric_expr(r.metric, e, err))
    out.push_back("metric: " + err);
  if (!std::isfinite(r.threshold))
    out.push_back("threshold: expected a finite number");
  if (!std::isfinite(r.clear_threshold))
    out.push_back("clear_threshold: expected a finite number");
  if (r.for_duration < caf::timespan{0})
    out.push_back("for_seconds: expected a number >= 0");
  bool upward = r.op == alert_op::gt || r.op == alert_op::ge;
  bool downward = r.op == alert_op::lt || r.op == alert_op::le;
  if (upward && r.clear_threshold > r.threshold)
    out.push_back("clear_threshold: must be at or below threshold for op " +
                  std::string{to_string(r.op)} + " (it is where a firing alert resolves)");
  if (downward && r.clear_threshold < r.threshold)
    out.push_back("clear_threshold: must be at or above threshold for op " +
                  std::string{to_string(r.op)} + " (it is where a firing alert resolves)");
  if (!upward && !downward && r.clear_threshold != r.threshold)
    out.push_back("clear_threshold: must equal threshold for op " + std::string{to_string(r.op)});
  if (r.severity != "info" && r.severity != "warning" && r.severity != "critical")
    out.push_back("severity: expected \"info\", \"warning\" or \"critical\", got \"" + r.severity +
                  "\"");
  return out;
}

std::vector<alert_rule> default_alert_rules() {
  using std::chrono::seconds;
  std::vector<alert_rule> out;
  out.push_back({"HighMemoryPressure", "bulwark_memory_pressure_ratio", alert_op::gt, 0.85,
                 seconds(120), 0.85, "warning"});
  out.push_back({"CriticalMemoryPressure", "bulwark_memory_pressure_ratio", alert_op::gt, 0.95,
                 seconds(60), 0.95, "critical"});
  out.push_back({"HighCacheEvictions", "rate(bulwark_cache_evictions_total[5m])", alert_op::gt, 10,
                 seconds(180), 10, "warning"});
  // Not closed (open 1 or half-open 2) for a minute: a breaker cycling open -> half-open -> open
  // is still cut off from a failing backend; `== 1` would restart the count at every probe.
  out.push_back({"CircuitBreakerOpen", "bulwark_breaker_state{breaker=\"backend\"}", alert_op::ge,
                 1, seconds(60), 1, "critical"});
  // The original's CPU, event-loop lag and error-rate rules (its memory rule is
  // HighMemoryPressure), with its thresholds and durations, on what the performance monitor
  // measures: the scheduler lag stands for the event loop's.
  out.push_back({"HighCpuUsage", "bulwark_perf_cpu_usage_ratio", alert_op::gt, 0.8, seconds(30),
                 0.8, "warning"});
  out.push_back({"HighSchedulerLag", "bulwark_perf_last_scheduler_lag_seconds", alert_op::gt, 0.1,
                 seconds(10), 0.1, "warning"});
  out.push_back({"HighErrorRate", "bulwark_perf_error_ratio", alert_op::gt, 0.05, seconds(60), 0.05,
                 "critical"});
  // A component's periodic work that no timer runs any more (the cleanup manager gave the task
  // up past its restart budget): its sweeps, expiry or watch stop until the component restarts.
  out.push_back({"CleanupTaskGivenUp", "bulwark_cleanup_tasks_given_up", alert_op::gt, 0,
                 seconds(60), 0, "warning"});
  return out;
}

std::optional<double> evaluate_selector(const metric_expr& e,
                                        const std::vector<prometheus::MetricFamily>& snapshot) {
  std::optional<double> acc;
  for (auto& family : snapshot) {
    if (e.name.compare(0, family.name.size(), family.name) != 0)
      continue; // the name is the family's, or the family's plus a suffix
    for (auto& m : family.metric) {
      if (!matches(m, e))
        continue;
      auto v = series_value(family, m, e.name);
      if (!v)
        continue;
      if (!acc)
        acc = *v;
      else if (e.func == metric_func::max)
        acc = std::max(*acc, *v);
      else if (e.func == metric_func::min)
        acc = std::min(*acc, *v);
      else
        *acc += *v;
    }
  }
  return acc;
}

namespace {

/// prometheus-cpp cannot list its families. But registering a name that is taken throws (a
/// family of another type, or of other constant labels: registry.h documents both), while a free
/// name is added: a probe with a constant label none of ours has tells them apart, and goes at
/// once (a family without series is never collected, so no scrape sees it meanwhile).
bool family_registered(prometheus::Registry& reg, const std::string& name) {
  if (!prometheus::CheckMetricName(name))
    return false; // would throw for its own reason
  try {
    auto& probe = prometheus::BuildCounter()
                      .Name(name)
                      .Help("existence probe")
                      .Labels({{"bulwark_existence_probe", "1"}})
                      .Register(reg);
    reg.Remove(probe);
    return false;
  } catch (const std::invalid_argument&) {
    return true;
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

} // namespace

bool metric_registered(prometheus::Registry& reg, const std::string& metric_name) {
  if (family_registered(reg, metric_name))
    return true;
  for (const std::string suffix : {"_count", "_sum"})
    if (ends_with(metric_name, suffix) &&
        family_registered(reg, metric_name.substr(0, metric_name.size() - suffix.size())))
      return true;
  return false;
}

alert_evaluator::alert_evaluator(std::vector<alert_rule> rules) {
  for (auto& r : rules) {
    entry e;
    std::string err;
    parse_metric_expr(r.metric, e.expr, err);
    e.view.rule = r;
    e.rule = std::move(r);
    entries_.push_back(std::move(e));
  }
}

std::optional<double>
alert_evaluator::value_of(entry& e, caf::timespan now,
                          const std::vector<prometheus::MetricFamily>& snapshot) {
  auto v = evaluate_selector(e.expr, snapshot);
  if (e.expr.func != metric_func::rate)
    return v;
  if (!v) {
    e.window.clear();
    return std::nullopt;
  }
  // A counter that went down was reset (a registry rebuilt): restart the window from here.
  if (!e.window.empty() && *v < e.window.back().second)
    e.window.clear();
  e.window.emplace_back(now, *v);
  while (e.window.size() > 1 && now - e.window.front().first > e.expr.window)
    e.window.pop_front();
  if (e.window.size() < 2)
    return std::nullopt; // Prometheus, too, needs two points for a rate
  auto dt = std::chrono::duration<double>(now - e.window.front().first).count();
  if (dt <= 0)
    return std::nullopt;
  return (*v - e.window.front().second) / dt;
}

std::vector<alert_transition>
alert_evaluator::evaluate(caf::timespan now,
                          const std::vector<prometheus::MetricFamily>& snapshot) {
  std::vector<alert_transition> out;
  for (auto& e : entries_) {
    auto v = value_of(e, now, snapshot);
    auto& view = e.view;
    if (!e.seen) {
      e.seen = true;
      view.since = now; // inactive since the first evaluation, not since the clock's epoch
    }
    view.value = v;
    auto& r = e.rule;
    switch (view.state) {
    case alert_state::inactive:
      if (v && holds(r.op, *v, r.threshold)) {
        view.state = alert_state::pending;
        view.since = now;
      }
      break;
    case alert_state::pending:
      if (!v || !holds(r.op, *v, r.threshold)) {
        view.state = alert_state::inactive;
        view.since = now;
      }
      break;
    case alert_state::firing:
      if (!v || !holds(r.op, *v, r.clear_threshold)) {
        view.state = alert_state::inactive;
        view.since = now;
        view.last_resolved = now;
        out.push_back({r.name, alert_state::inactive, v.value_or(0)});
      }
      break;
    }
    if (view.state == alert_state::pending && now - view.since >= r.for_duration) {
      view.state = alert_state::firing;
      view.since = now;
      view.last_fired = now;
      ++view.fired;
      out.push_back({r.name, alert_state::firing, *v});
    }
  }
  return out;
}

std::vector<alert_view> alert_evaluator::views() const {
  std::vector<alert_view> out;
  out.reserve(entries_.size());
  for (auto& e : entries_)
    out.push_back(e.view);
  return out;
}

size_t alert_evaluator::firing() const {
  return static_cast<size_t>(std::count_if(entries_.begin(), entries_.end(), [](auto& e) {
    return e.view.state == alert_state::firing;
  }));
}

} // namespace bulwark::detail
