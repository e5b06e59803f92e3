#include "actors/detail/query_limits.hpp"

#include "actors/detail/sql_lexer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <locale>
#include <sstream>

namespace bulwark::detail {

namespace {

// -- text helpers -------------------------------------------------------------

char upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

std::string to_upper(std::string s) {
  for (auto& c : s)
    c = upper(c);
  return s;
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.compare(0, std::char_traits<char>::length(prefix), prefix) == 0;
}

bool ends_with(const std::string& s, const char* suffix) {
  auto n = std::char_traits<char>::length(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

bool contains(const std::string& s, const char* what) {
  return s.find(what) != std::string::npos;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_aggregate(const std::string& w) {
  static const char* const names[] = {"COUNT", "SUM",          "AVG",        "MIN",
                                      "MAX",   "GROUP_CONCAT", "STRING_AGG", "ARRAY_AGG"};
  return std::any_of(std::begin(names), std::end(names), [&](const char* x) { return w == x; });
}

// -- plans --------------------------------------------------------------------

enum class plan_dialect { none, sqlite, postgres };

plan_dialect dialect_of(const std::string& kind) {
  auto k = to_upper(kind);
  if (k == "SQLITE")
    return plan_dialect::sqlite;
  if (k == "POSTGRES" || k == "POSTGRESQL" || k == "PG")
    return plan_dialect::postgres;
  return plan_dialect::none;
}

std::string trim_left(const std::string& s, const char* chars) {
  auto pos = s.find_first_not_of(chars);
  return pos == std::string::npos ? std::string{} : s.substr(pos);
}

std::string trim_right(std::string s) {
  while (!s.empty() && is_space(s.back()))
    s.pop_back();
  return s;
}

// The first word of `s` (up to a blank).
std::string first_word(const std::string& s) {
  return s.substr(0, s.find(' '));
}

int sqlite_plan_score(const std::vector<std::string>& lines) {
  std::vector<std::string> details;
  details.reserve(lines.size());
  // Names of subqueries whose output is read by a later "SCAN name".
  std::vector<std::string> subquery_names;
  for (const auto& line : lines) {
    auto d = trim_right(to_upper(trim_left(line, " \t|`-")));
    if (starts_with(d, "CO-ROUTINE ") || starts_with(d, "MATERIALIZE "))
      subquery_names.push_back(first_word(d.substr(d.find(' ') + 1)));
    details.push_back(std::move(d));
  }
  int subqueries = 0;
  int accesses = 0;
  int full_scans = 0;
  int sorts = 0;
  for (const auto& d : details) {
    if (starts_with(d, "CO-ROUTINE ") || starts_with(d, "MATERIALIZE ") ||
        starts_with(d, "CORRELATED ") || starts_with(d, "SCALAR SUBQUERY") ||
        starts_with(d, "LIST SUBQUERY"))
      ++subqueries;
    bool scan = starts_with(d, "SCAN ");
    if (scan || starts_with(d, "SEARCH ")) {
      auto rest = d.substr(d.find(' ') + 1);
      auto table = first_word(rest);
      if (table == "TABLE") // before SQLite 3.36: "SCAN TABLE t"
        table = first_word(rest.substr(std::min(rest.size(), table.size() + 1)));
      bool reads_subquery =
          table == "SUBQUERY" ||
          std::find(subquery_names.begin(), subquery_names.end(), table) != subquery_names.end();
      if (!(scan && starts_with(rest, "CONSTANT ROW")) && !reads_subquery) {
        ++accesses;
        if ((scan && !contains(d, "INDEX")) || (!scan && contains(d, "USING AUTOMATIC")))
          ++full_scans;
      }
    }
    if (contains(d, "TEMP B-TREE"))
      ++sorts;
  }
  int joins = std::max(0, accesses - 1 - subqueries);
  return 1 + 5 * joins + 10 * subqueries + 2 * full_scans + sorts;
}

// A property line ("Hash Cond: ...", "Rows Removed by Filter: 3") has only letters and blanks
// before its first colon.
bool is_pg_property(const std::string& s) {
  auto colon = s.find(':');
  if (colon == std::string::npos || colon == 0)
    return false;
  return std::all_of(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
    return c == ' ' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  });
}

int postgres_plan_score(const std::vector<std::string>& lines) {
  int score = 1;
  for (const auto& line : lines) {
    auto s = trim_left(line, " \t");
    if (starts_with(s, "->"))
      s = trim_left(s.substr(2), " \t");
    if (s.empty() || is_pg_property(s))
      continue;
    auto cut = std::min(s.find("  ("), s.find(" (cost="));
    auto name = trim_right(to_upper(s.substr(0, cut)));
    if (starts_with(name, "SUBPLAN") || starts_with(name, "INITPLAN") ||
        starts_with(name, "SUBQUERY SCAN") ||
        (starts_with(name, "CTE ") && !starts_with(name, "CTE SCAN")))
      score += 10;
    else if ((ends_with(name, " JOIN") && !contains(name, " ON ")) ||
             starts_with(name, "NESTED LOOP"))
      score += 5;
    else if (starts_with(name, "SEQ SCAN") || starts_with(name, "PARALLEL SEQ SCAN"))
      score += 2;
    else if (name == "SORT" || name == "INCREMENTAL SORT" || ends_with(name, "AGGREGATE") ||
             starts_with(name, "WINDOWAGG"))
      score += 1;
  }
  return score;
}

// ⌊x⌋ after absorbing the binary error of the factor product (0.7 × 0.7 is 0.48999...).
size_t scaled(size_t base, double factor) {
  double x = static_cast<double>(base) * factor;
  x = std::floor(x + x * 1e-9);
  if (!(x > 0))
    return 0;
  if (x >= static_cast<double>(std::numeric_limits<size_t>::max()))
    return std::numeric_limits<size_t>::max();
  return static_cast<size_t>(x);
}

} // namespace

int lexical_complexity(const std::string& sql) {
  auto tokens = lex_sql(sql);
  int score = 1;
  int depth = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto& t = tokens[i];
    switch (t.kind) {
    case sql_token_kind::open:
      ++depth;
      break;
    case sql_token_kind::close:
      depth = std::max(0, depth - 1);
      break;
    case sql_token_kind::placeholder:
    case sql_token_kind::other:
      break;
    case sql_token_kind::word:
      if (t.word == "JOIN")
        score += 5;
      else if (t.word == "WHERE")
        score += 1;
      else if (t.word == "SELECT" && depth > 0)
        score += 10;
      else if (is_aggregate(t.word) && i + 1 < tokens.size() &&
               tokens[i + 1].kind == sql_token_kind::open)
        score += 1;
      break;
    }
  }
  return score;
}

int plan_complexity(const std::vector<std::string>& plan_lines, const std::string& backend_kind) {
  if (plan_lines.empty())
    return 0;
  switch (dialect_of(backend_kind)) {
  case plan_dialect::sqlite:
    return sqlite_plan_score(plan_lines);
  case plan_dialect::postgres:
    return postgres_plan_score(plan_lines);
  case plan_dialect::none:
    break;
  }
  return 0;
}

int complexity(const std::vector<std::string>& plan_lines, const std::string& backend_kind,
               const std::string& sql) {
  auto score = plan_complexity(plan_lines, backend_kind);
  return score > 0 ? score : lexical_complexity(sql);
}

applied_limit compute_limit(const limit_config& cfg, int pressure_level, int complexity) {
  static const char* const level_names[] = {"low", "medium", "high", "critical"};
  auto level = std::clamp(pressure_level, 0, 3);
  const double pressure_factors[] = {1.0, cfg.medium, cfg.high, cfg.critical};
  applied_limit out{};
  out.pressure_factor = pressure_factors[level];
  out.complexity_factor = 1.0;
  bool complex = complexity > cfg.complex_threshold || complexity > cfg.very_complex_threshold;
  if (complexity > cfg.very_complex_threshold)
    out.complexity_factor = cfg.very_complex_factor;
  else if (complexity > cfg.complex_threshold)
    out.complexity_factor = cfg.complex_factor;
  auto factor = out.pressure_factor * out.complexity_factor;
  auto floor_rows = std::min(cfg.floor_rows, cfg.base_rows);
  auto floor_bytes = std::min(cfg.floor_bytes, cfg.base_bytes);
  auto rows = scaled(cfg.base_rows, factor);
  auto bytes = scaled(cfg.base_bytes, factor);
  out.max_rows = std::max(rows, floor_rows);
  out.max_bytes = std::max(bytes, floor_bytes);
  std::ostringstream reason;
  reason.imbue(std::locale::classic());
  reason << "base " << cfg.base_rows << " rows";
  if (level > 0)
    reason << " x" << out.pressure_factor << " (pressure " << level_names[level] << ")";
  if (complex)
    reason << " x" << out.complexity_factor << " (complexity " << complexity << ")";
  if (rows < floor_rows)
    reason << "; floor " << floor_rows << " rows";
  if (bytes < floor_bytes)
    reason << "; floor " << floor_bytes << " bytes";
  out.reason = reason.str();
  return out;
}

std::string truncation_recommendation(const applied_limit& applied) {
  std::ostringstream out;
  out.imbue(std::locale::classic());
  out << "result limited to " << applied.max_rows << " rows / " << applied.max_bytes << " bytes ("
      << applied.reason << "); use keyset pagination: add WHERE <key> > last_seen "
      << "ORDER BY <key> LIMIT " << applied.max_rows;
  if (applied.complexity_factor < 1.0)
    out << "; simplify the query or add indexes to raise the limit";
  if (applied.pressure_factor < 1.0)
    out << "; the limit rises again when memory pressure falls";
  return out.str();
}

} // namespace bulwark::detail
