#pragma once
/// Query complexity and the adaptive result limit of the database actor. CAF-free.
///
/// Complexity is a small integer on one scale whichever way it is measured: about 1 for a point
/// query by key, about 6 for a two-table join, 10 more for every subquery. The database actor
/// prefers the planner's view (`plan_complexity`, from the backend's EXPLAIN output) and falls
/// back to reading the SQL text (`lexical_complexity`) when there is no plan (`complexity`).
///
/// The result limit (`compute_limit`) starts from a base row and byte budget and shrinks it by one
/// factor for memory pressure and one for complexity, never below a floor. A result cut by the
/// limit is always reported: `applied_limit::reason` says which factors applied and
/// `truncation_recommendation` tells the caller how to fetch the rest (the original truncated
/// silently).

#include <cstddef>
#include <string>
#include <vector>

namespace bulwark::detail {

/// Scores SQL text the way the original did, but on tokens rather than regexes over raw text:
///
///     1 + 5 per JOIN + 10 per subquery + 1 per aggregate call + 1 per WHERE
///
/// - JOIN, WHERE: each occurrence of the keyword as a whole word (`joined`, `t_where` don't count).
/// - subquery: each SELECT nested inside parentheses at any depth (`IN (SELECT`, `FROM (SELECT`,
///   `EXISTS (SELECT`, `WITH x AS (SELECT`, `COALESCE((SELECT ...), 0)`); a top-level SELECT, also
///   one after `INSERT INTO t (a, b)`, is not a subquery.
/// - aggregate call: COUNT, SUM, AVG, MIN, MAX, GROUP_CONCAT, STRING_AGG or ARRAY_AGG as a whole
///   word followed by `(` (whitespace and comments may sit between); a column named `max` is not.
///
/// Keywords match case-insensitively. Ignored entirely: string literals ('...' with '' escapes),
/// quoted identifiers ("..." with "" escapes, and MySQL's `...`), line comments (-- to end of
/// line) and block comments (/* ... */). An unterminated literal or comment runs to the end.
/// Word characters are letters, digits, `_`, `$` and any non-ASCII byte.
int lexical_complexity(const std::string& sql);

/// Scores a planner's output on the lexical scale. `backend_kind` is "sqlite", or "postgres"
/// ("postgresql" and "pg" are accepted too), case-insensitive; for any other kind, or an empty
/// plan, the result is 0 ("no plan score"). Every score starts at 1.
///
/// SQLite, one `EXPLAIN QUERY PLAN` detail string per line (a leading tree drawing such as
/// "|--" or "`--" from the sqlite3 shell is stripped):
/// - +10 per subquery: "CORRELATED SCALAR SUBQUERY n", "SCALAR SUBQUERY n", "LIST SUBQUERY n"
///   (also CORRELATED), "CO-ROUTINE x", "MATERIALIZE x".
/// - A table access is a line starting "SCAN " or "SEARCH ", except "SCAN CONSTANT ROW" and a scan
///   of a co-routine or materialized subquery (by the name its CO-ROUTINE / MATERIALIZE line gave,
///   or the older "SCAN SUBQUERY n"): reading a subquery's output is paid for by its +10.
/// - +5 per join: every table access beyond the first, less one per subquery (a subquery's own
///   first access is not a join). A compound query's (UNION ...) second branch therefore scores
///   like a join: it is another table read.
/// - +2 per full scan: a table access "SCAN t" without "USING ... INDEX", and a "SEARCH t USING
///   AUTOMATIC ... INDEX" (SQLite builds that index by scanning the table on every run).
/// - +1 per sort or temporary b-tree: any line containing "TEMP B-TREE" (ORDER BY, GROUP BY,
///   DISTINCT, UNION).
///
/// PostgreSQL, one line of text-format `EXPLAIN` per line (leading blanks and "->" stripped; the
/// node name is the text before "  (" or " (cost="; property lines such as "Hash Cond: ..." or
/// "Filter: ..." are skipped):
/// - +10 per subquery: "SubPlan n", "InitPlan n ...", "CTE name", "Subquery Scan on x".
/// - +5 per join: a node whose name ends in "Join" (Hash Join, Merge Join, Hash Left Join,
///   Hash Semi Join, ...) or starts with "Nested Loop".
/// - +2 per full scan: "Seq Scan on t", "Parallel Seq Scan on t".
/// - +1 per sort or aggregate: "Sort", "Incremental Sort", any "...Aggregate" node, "WindowAgg".
///
/// Examples: a primary-key lookup scores 1 on both; an indexed join of a scanned table (SQLite
/// "SCAN u" + "SEARCH o USING INDEX i (u=?)") 1 + 5 + 2 = 8; a PostgreSQL hash join of two
/// sequential scans 1 + 5 + 2 + 2 = 10.
int plan_complexity(const std::vector<std::string>& plan_lines, const std::string& backend_kind);

/// The plan score when `plan_complexity` gives one (a non-empty plan from a known backend),
/// otherwise `lexical_complexity(sql)`.
int complexity(const std::vector<std::string>& plan_lines, const std::string& backend_kind,
               const std::string& sql);

/// The result budget and how it shrinks. Defaults are the original's numbers (10 000 rows, the
/// ×0.7 / ×0.5 / ×0.3 pressure factors and the ×0.7 / ×0.5 complexity factors above 5 / 10).
struct limit_config {
  size_t base_rows = 10000;
  size_t base_bytes = 16 * 1024 * 1024;
  /// Never cut below these (but never above the base either).
  size_t floor_rows = 100;
  size_t floor_bytes = 64 * 1024;
  /// Factor per pressure level; low pressure applies none.
  double medium = 0.7;
  double high = 0.5;
  double critical = 0.3;
  /// complexity > complex_threshold → ×complex_factor; > very_complex_threshold →
  /// ×very_complex_factor instead (one or the other, never both).
  int complex_threshold = 5;
  double complex_factor = 0.7;
  int very_complex_threshold = 10;
  double very_complex_factor = 0.5;
};

struct applied_limit {
  size_t max_rows;
  size_t max_bytes;
  double pressure_factor;   ///< 1 when pressure applied none
  double complexity_factor; ///< 1 when complexity applied none
  /// What applied, e.g. "base 10000 rows x0.5 (pressure high) x0.7 (complexity 8)", followed by
  /// "; floor 100 rows" and/or "; floor 65536 bytes" when a floor lifted the result.
  std::string reason;
};

/// max_rows = max(min(floor_rows, base_rows), ⌊base_rows × pressure factor × complexity factor⌋),
/// max_bytes likewise. `pressure_level` is 0 low, 1 medium, 2 high, 3 critical (clamped to that
/// range). The product is rounded before flooring so that 0.7 × 0.7 gives 4900 of 10000, not 4899.
applied_limit compute_limit(const limit_config& cfg, int pressure_level, int complexity);

/// One sentence for the warning that accompanies a truncated result: the bound that applied and
/// why, how to fetch everything (keyset pagination within that bound), and what would raise the
/// bound (a simpler query when complexity lowered it, a later retry when pressure did).
std::string truncation_recommendation(const applied_limit& applied);

} // namespace bulwark::detail
