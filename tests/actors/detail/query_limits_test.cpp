#include "actors/detail/query_limits.hpp"

#include <catch2/catch.hpp>

using namespace bulwark::detail;

using lines = std::vector<std::string>;

// -- lexical ------------------------------------------------------------------

TEST_CASE("a plain select scores 1 and each WHERE adds 1", "[database]") {
  CHECK(lexical_complexity("SELECT * FROM users") == 1);
  CHECK(lexical_complexity("SELECT * FROM users WHERE id = ?") == 2);
  CHECK(lexical_complexity("") == 1);
}

TEST_CASE("each JOIN adds 5", "[database]") {
  CHECK(lexical_complexity("SELECT u.name FROM users u JOIN orders o ON o.user_id = u.id") == 6);
  CHECK(lexical_complexity("SELECT * FROM a LEFT JOIN b ON a.id = b.a INNER JOIN c ON c.b = b.id "
                           "WHERE a.x = 1") == 12);
}

TEST_CASE("each SELECT nested inside parentheses adds 10", "[database]") {
  CHECK(lexical_complexity("SELECT * FROM users WHERE id IN (SELECT user_id FROM orders)") == 12);
  CHECK(lexical_complexity("SELECT * FROM (SELECT * FROM (SELECT 1) a) b") == 21);
  CHECK(lexical_complexity("WITH x AS (SELECT 1) SELECT * FROM x") == 11);
  CHECK(lexical_complexity("SELECT COALESCE((SELECT max(v) FROM t), 0)") == 12);
  // A top-level SELECT after a column list is not a subquery.
  CHECK(lexical_complexity("INSERT INTO t (a, b) SELECT a, b FROM s") == 1);
  // Parentheses close again: the second SELECT is top-level.
  CHECK(lexical_complexity("SELECT (1) UNION SELECT 2") == 1);
}

TEST_CASE("each aggregate call adds 1 but an aggregate name without a call does not",
          "[database]") {
  CHECK(lexical_complexity("SELECT COUNT(*), SUM(x), avg (y), MIN(z), MAX(z), GROUP_CONCAT(n), "
                           "STRING_AGG(n, ','), ARRAY_AGG(n) FROM t") == 9);
  CHECK(lexical_complexity("SELECT COUNT /* all */ (*) FROM t") == 2);
  CHECK(lexical_complexity("SELECT max, count FROM t") == 1);
  CHECK(lexical_complexity("SELECT my_count(x), counter(y) FROM t") == 1);
}

TEST_CASE("keywords inside strings, quoted identifiers and comments are not counted",
          "[database]") {
  CHECK(lexical_complexity("SELECT 'JOIN x WHERE (SELECT 1)' FROM t") == 1);
  CHECK(lexical_complexity("SELECT 'it''s a JOIN' FROM t") == 1);
  CHECK(lexical_complexity("SELECT \"join\", \"where\", \"a\"\"JOIN\" FROM t") == 1);
  CHECK(lexical_complexity("SELECT `join` FROM t") == 1);
  CHECK(lexical_complexity("SELECT a -- JOIN b WHERE c\nFROM t") == 1);
  CHECK(lexical_complexity("SELECT a /* JOIN (SELECT 1) WHERE */ FROM t") == 1);
  CHECK(lexical_complexity("SELECT a FROM t -- trailing JOIN") == 1);
  // Unterminated literals and comments run to the end.
  CHECK(lexical_complexity("SELECT 'JOIN WHERE") == 1);
  CHECK(lexical_complexity("SELECT 1 /* JOIN") == 1);
  // A quoted aggregate name is an identifier, not a call.
  CHECK(lexical_complexity("SELECT \"count\"(x) FROM t") == 1);
  // Text after a literal is counted again.
  CHECK(lexical_complexity("SELECT * FROM t WHERE a = 'x' AND b IN (SELECT c FROM d)") == 12);
}

TEST_CASE("keywords match in any case", "[database]") {
  CHECK(lexical_complexity("select * from a inner join b on a.id = b.id where b.x = 1") == 7);
  CHECK(lexical_complexity("Select Count(*) From t Where x In (sElEcT y From u)") == 13);
}

TEST_CASE("keywords match whole words only", "[database]") {
  CHECK(lexical_complexity("SELECT joined, rejoin, join_date, where_clause, selected, x$join "
                           "FROM t") == 1);
  CHECK(lexical_complexity("SELECT * FROM t WHERE (selected)") == 2);
  CHECK(lexical_complexity("SELECT * FROM t1join") == 1);
}

// -- plans --------------------------------------------------------------------

TEST_CASE("a SQLite primary-key lookup scores 1 and a full scan 3", "[database]") {
  CHECK(plan_complexity({"SEARCH users USING INTEGER PRIMARY KEY (rowid=?)"}, "sqlite") == 1);
  CHECK(plan_complexity({"SCAN users"}, "sqlite") == 3);
  CHECK(plan_complexity({"SCAN users USING COVERING INDEX idx_name"}, "sqlite") == 1);
  CHECK(plan_complexity({"SCAN CONSTANT ROW"}, "sqlite") == 1);
}

TEST_CASE("a SQLite join scores 5 per table access beyond the first", "[database]") {
  CHECK(plan_complexity({"SCAN u", "SEARCH o USING INDEX idx_orders_user (user_id=?)"}, "sqlite") ==
        8);
  CHECK(plan_complexity({"SEARCH u USING INTEGER PRIMARY KEY (rowid=?)",
                         "SEARCH o USING INDEX i (user_id=?)", "SEARCH p USING INDEX j (o=?)"},
                        "sqlite") == 11);
  // An automatic index is built by scanning the table.
  CHECK(plan_complexity({"SCAN u", "SEARCH o USING AUTOMATIC COVERING INDEX (user_id=?)"},
                        "sqlite") == 10);
}

TEST_CASE("SQLite subqueries add 10 and their own table access is no join", "[database]") {
  CHECK(plan_complexity(
            {"SCAN users", "CORRELATED SCALAR SUBQUERY 1", "SEARCH o USING INDEX idx (user_id=?)"},
            "sqlite") == 13);
  CHECK(plan_complexity({"SEARCH users USING INDEX i (x=?)", "LIST SUBQUERY 1", "SCAN orders"},
                        "sqlite") == 13);
  // Reading a co-routine's output is no table access.
  CHECK(plan_complexity({"CO-ROUTINE sub", "SCAN users", "SCAN sub"}, "sqlite") == 13);
  CHECK(plan_complexity({"MATERIALIZE cte", "SCAN users", "SCAN cte"}, "sqlite") == 13);
}

TEST_CASE("SQLite temporary b-trees add 1 each", "[database]") {
  CHECK(plan_complexity({"SCAN users", "USE TEMP B-TREE FOR ORDER BY"}, "sqlite") == 4);
  CHECK(plan_complexity(
            {"SCAN users", "USE TEMP B-TREE FOR GROUP BY", "USE TEMP B-TREE FOR ORDER BY"},
            "sqlite") == 5);
}

TEST_CASE("SQLite plans may carry the shell's tree drawing and the old TABLE word", "[database]") {
  CHECK(plan_complexity({"QUERY PLAN", "|--SCAN u", "`--SEARCH o USING INDEX i (x=?)"}, "sqlite") ==
        8);
  CHECK(plan_complexity({"SCAN TABLE users", "SEARCH TABLE orders USING INDEX i (x=?)"},
                        "SQLite") == 8);
  CHECK(plan_complexity({"SCAN SUBQUERY 1"}, "sqlite") == 1);
}

TEST_CASE("a PostgreSQL index lookup scores 1 and a sequential scan 3", "[database]") {
  CHECK(plan_complexity({"Index Scan using users_pkey on users  (cost=0.15..8.17 rows=1 width=36)",
                         "  Index Cond: (id = 1)"},
                        "postgres") == 1);
  CHECK(plan_complexity({"Seq Scan on users  (cost=0.00..35.50 rows=2550 width=36)",
                         "  Filter: (name ~~ 'a%'::text)"},
                        "postgres") == 3);
}

TEST_CASE("PostgreSQL join nodes add 5 and property lines are ignored", "[database]") {
  CHECK(plan_complexity({"Hash Join  (cost=60.85..99.39 rows=2550 width=68)",
                         "  Hash Cond: (o.user_id = u.id)",
                         "  ->  Seq Scan on orders o  (cost=0.00..32.60 rows=2260 width=8)",
                         "  ->  Hash  (cost=28.50..28.50 rows=2550 width=36)",
                         "        ->  Seq Scan on users u  (cost=0.00..28.50 rows=2550 width=36)"},
                        "postgres") == 10);
  CHECK(plan_complexity({"Nested Loop  (cost=0.30..16.35 rows=1 width=68)",
                         "  Join Filter: (u.id = o.user_id)",
                         "  ->  Index Scan using users_pkey on users u  (cost=0.15..8.17 rows=1)",
                         "        Index Cond: (id = 1)",
                         "  ->  Index Scan using orders_user_idx on orders o  (cost=0.15..8.17)",
                         "        Index Cond: (user_id = 1)"},
                        "postgresql") == 6);
  CHECK(plan_complexity(
            {"Hash Left Join", "  ->  Seq Scan on a", "  ->  Hash", "        ->  Seq Scan on b"},
            "pg") == 10);
}

TEST_CASE("PostgreSQL sorts and aggregates add 1 and subplans 10", "[database]") {
  CHECK(plan_complexity({"Sort  (cost=1.1..1.2 rows=10 width=12)", "  Sort Key: (count(*)) DESC",
                         "  ->  HashAggregate  (cost=1.0..1.1 rows=10 width=12)",
                         "        Group Key: user_id",
                         "        ->  Seq Scan on orders  (cost=0.00..32.60 rows=2260 width=4)"},
                        "postgres") == 5);
  CHECK(plan_complexity({"Seq Scan on users u  (cost=0.00..21.0 rows=10 width=40)", "  SubPlan 1",
                         "    ->  Aggregate  (cost=4.2..4.2 rows=1 width=8)",
                         "          ->  Index Only Scan using orders_user_idx on orders o",
                         "                Index Cond: (user_id = u.id)"},
                        "postgres") == 14);
  CHECK(plan_complexity({"Result  (cost=8.17..8.18 rows=1 width=4)", "  InitPlan 1 (returns $0)",
                         "    ->  Index Scan using users_pkey on users"},
                        "postgres") == 11);
  CHECK(plan_complexity({"CTE Scan on x", "  CTE x", "    ->  Seq Scan on users"}, "postgres") ==
        13);
}

TEST_CASE("an empty plan or an unknown backend gives no plan score", "[database]") {
  CHECK(plan_complexity({}, "sqlite") == 0);
  CHECK(plan_complexity({"SCAN users"}, "mysql") == 0);
}

TEST_CASE("complexity prefers the plan and falls back to the SQL text", "[database]") {
  const std::string sql = "SELECT * FROM users u JOIN orders o ON o.u = u.id";
  CHECK(complexity({"SEARCH users USING INTEGER PRIMARY KEY (rowid=?)"}, "sqlite", sql) == 1);
  CHECK(complexity({}, "sqlite", sql) == 6);
  CHECK(complexity({"SCAN users"}, "oracle", sql) == 6);
}

// -- limits -------------------------------------------------------------------

TEST_CASE("low pressure and a simple query get the base limit", "[database]") {
  auto x = compute_limit({}, 0, 1);
  CHECK(x.max_rows == 10000);
  CHECK(x.max_bytes == 16 * 1024 * 1024);
  CHECK(x.pressure_factor == 1.0);
  CHECK(x.complexity_factor == 1.0);
  CHECK(x.reason == "base 10000 rows");
}

TEST_CASE("each pressure level scales the limit by its factor", "[database]") {
  limit_config cfg;
  auto medium = compute_limit(cfg, 1, 1);
  CHECK(medium.max_rows == 7000);
  CHECK(medium.max_bytes == 11744051);
  CHECK(medium.reason == "base 10000 rows x0.7 (pressure medium)");
  auto high = compute_limit(cfg, 2, 1);
  CHECK(high.max_rows == 5000);
  CHECK(high.max_bytes == 8388608);
  CHECK(high.pressure_factor == 0.5);
  auto critical = compute_limit(cfg, 3, 1);
  CHECK(critical.max_rows == 3000);
  CHECK(critical.max_bytes == 5033164);
  CHECK(critical.reason == "base 10000 rows x0.3 (pressure critical)");
  // Out-of-range levels are clamped.
  CHECK(compute_limit(cfg, 9, 1).max_rows == 3000);
  CHECK(compute_limit(cfg, -1, 1).max_rows == 10000);
}

TEST_CASE("complexity above 5 scales by 0.7 and above 10 by 0.5, never both", "[database]") {
  limit_config cfg;
  CHECK(compute_limit(cfg, 0, 5).max_rows == 10000);
  CHECK(compute_limit(cfg, 0, 6).max_rows == 7000);
  CHECK(compute_limit(cfg, 0, 10).max_rows == 7000);
  CHECK(compute_limit(cfg, 0, 11).max_rows == 5000);
  CHECK(compute_limit(cfg, 0, 11).complexity_factor == 0.5);
  CHECK(compute_limit(cfg, 0, 11).reason == "base 10000 rows x0.5 (complexity 11)");
}

TEST_CASE("pressure and complexity factors multiply and the reason names both", "[database]") {
  limit_config cfg;
  auto x = compute_limit(cfg, 2, 8);
  CHECK(x.max_rows == 3500);
  CHECK(x.reason == "base 10000 rows x0.5 (pressure high) x0.7 (complexity 8)");
  // 0.7 × 0.7 is 0.48999... in binary: the limit is still 4900.
  CHECK(compute_limit(cfg, 1, 6).max_rows == 4900);
  CHECK(compute_limit(cfg, 3, 21).max_rows == 1500);
}

TEST_CASE("the limit never falls below its floors and says so", "[database]") {
  limit_config cfg;
  cfg.base_rows = 200;
  cfg.base_bytes = 128 * 1024;
  auto x = compute_limit(cfg, 3, 30);
  CHECK(x.max_rows == 100);
  CHECK(x.max_bytes == 64 * 1024);
  CHECK(x.reason ==
        "base 200 rows x0.3 (pressure critical) x0.5 (complexity 30); floor 100 rows; floor "
        "65536 bytes");
  // A floor above the base is capped by the base.
  cfg.base_rows = 50;
  CHECK(compute_limit(cfg, 0, 1).max_rows == 50);
  CHECK(compute_limit(cfg, 3, 1).max_rows == 50);
}

TEST_CASE("a truncation recommendation names the bound and keyset pagination", "[database]") {
  auto x = compute_limit({}, 2, 8);
  auto text = truncation_recommendation(x);
  CHECK_THAT(text, Catch::Contains("result limited to 3500 rows"));
  CHECK_THAT(text, Catch::Contains("use keyset pagination: add WHERE <key> > last_seen ORDER BY "
                                   "<key> LIMIT 3500"));
  CHECK_THAT(text, Catch::Contains("simplify the query"));
  CHECK_THAT(text, Catch::Contains("memory pressure"));
  auto plain = truncation_recommendation(compute_limit({}, 0, 1));
  CHECK_THAT(plain, !Catch::Contains("simplify") && !Catch::Contains("pressure"));
}
