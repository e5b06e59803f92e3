#include "actors/database.hpp"
#include "actors/detail/query_limits.hpp"
#include "actors/detail/statement_catalog.hpp"

#include <catch2/catch.hpp>

#include <stdexcept>

using namespace bulwark;
using namespace bulwark::detail;
using namespace std::chrono_literals;

TEST_CASE("the catalog types each statement once from the config", "[statement_catalog]") {
  std::map<std::string, statement_config> cfg;
  cfg["by_id"] = {"SELECT name FROM t WHERE id = $1 AND score > $2", {"int", "real"}, true, 60s};
  cfg["put"] = {"INSERT INTO t VALUES ($1, $2, $3)", {"int", "text", "bool"}, false, 60s};
  cfg["all"] = {"SELECT * FROM t", {}, true};
  statement_catalog c{cfg};
  REQUIRE(c.all().size() == 3);
  auto* s = c.find("by_id");
  REQUIRE(s != nullptr);
  CHECK(s->name == "by_id");
  CHECK(s->params == std::vector<param_kind>{param_kind::integer, param_kind::real});
  CHECK(s->cacheable());
  CHECK(s->lexical_complexity == lexical_complexity(cfg["by_id"].sql));
  CHECK(c.find("put")->params ==
        std::vector<param_kind>{param_kind::integer, param_kind::text, param_kind::boolean});
  CHECK_FALSE(c.find("put")->cacheable()); // a write is never cached, whatever its TTL
  CHECK_FALSE(c.find("all")->cacheable()); // no TTL: caching is opt-in
  CHECK(c.find("nope") == nullptr);
}

TEST_CASE("a parameter kind the catalog does not know names the statement", "[statement_catalog]") {
  std::map<std::string, statement_config> cfg;
  cfg["odd"] = {"SELECT $1", {"integer"}, true};
  CHECK_THROWS_WITH(statement_catalog{cfg},
                    Catch::Contains("statements.odd.params") && Catch::Contains("\"integer\""));
}

TEST_CASE("kinds round-trip through the config's spelling", "[statement_catalog]") {
  for (auto k : {param_kind::integer, param_kind::real, param_kind::text, param_kind::boolean})
    CHECK(parse_param_kind(to_string(k)) == k);
  CHECK_FALSE(parse_param_kind("INT"));
}

TEST_CASE("parameters are checked against their declared kinds", "[statement_catalog]") {
  std::vector<param_kind> kinds{param_kind::integer, param_kind::real, param_kind::text,
                                param_kind::boolean};
  auto ok = std::vector<db_value>{db_value::of(int64_t{1}), db_value::of(int64_t{2}),
                                  db_value::of(std::string{"x"}), db_value::of(true)};
  CHECK(check_parameters(kinds, ok).empty()); // an integer is a number for a real
  auto nulls = std::vector<db_value>(4, db_value::of_null());
  CHECK(check_parameters(kinds, nulls).empty());
  auto bad = ok;
  bad[2] = db_value::of(int64_t{3});
  CHECK(check_parameters(kinds, bad) == "parameter 3 (text): expected a string, got an integer");
  CHECK(check_parameters(kinds, {}) == "expected 4 parameters, got 0");
}
