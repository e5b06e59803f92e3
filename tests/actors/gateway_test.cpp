#include "actors/gateway.hpp"

#include <catch2/catch.hpp>

#include <set>

using namespace bulwark;

namespace {

db_query query(std::vector<db_value> params) {
  db_query q;
  q.statement = "s";
  q.params = std::move(params);
  return q;
}

} // namespace

TEST_CASE("cache keys tell every parameter list apart", "[gateway][cache]") {
  auto text = [](const char* x) { return db_value::of(std::string{x}); };
  std::vector<std::vector<db_value>> lists = {
      {text("a\x1f"
            "3b"),
       text("c")},
      {text("a"), text("b\x1f"
                       "3c")},
      {text("a"), text("b"), text("c")},
      {text("1")},
      {db_value::of(int64_t{1})},
      {db_value::of(1.0)},
      {db_value::of(true)},
      {db_value::of_null()},
      {text("")},
      {},
      {text(""), text("")},
  };
  std::set<std::string> keys;
  for (auto& l : lists)
    keys.insert(cache_key(query(l)));
  CHECK(keys.size() == lists.size());
  // The same list always gives the same key, and the statement is part of it.
  CHECK(cache_key(query({text("x")})) == cache_key(query({text("x")})));
  auto other = query({text("x")});
  other.statement = "t";
  CHECK(cache_key(other) != cache_key(query({text("x")})));
}
