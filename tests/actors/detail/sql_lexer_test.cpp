#include "actors/detail/sql_lexer.hpp"

#include <catch2/catch.hpp>

using namespace bulwark::detail;

namespace {

/// The tokens as text: words as themselves, $N, ( ) and `.` for anything else.
std::string shape(const std::string& sql) {
  std::string out;
  for (auto& t : lex_sql(sql)) {
    if (!out.empty())
      out += ' ';
    switch (t.kind) {
    case sql_token_kind::word:
      out += t.word;
      break;
    case sql_token_kind::placeholder:
      out += "$" + std::to_string(t.number);
      break;
    case sql_token_kind::open:
      out += "(";
      break;
    case sql_token_kind::close:
      out += ")";
      break;
    case sql_token_kind::other:
      out += ".";
      break;
    }
  }
  return out;
}

} // namespace

TEST_CASE("words, placeholders and parentheses; comments vanish", "[sql_lexer]") {
  CHECK(shape("select count(*) from t -- where x = $9\nwhere id = $1 /* $2 */") ==
        "SELECT COUNT ( . ) FROM T WHERE ID . $1");
  CHECK(shape("") == "");
  CHECK(shape("a$1 $1a") == "A$1 $1 A"); // a `$` inside a word is part of it
}

TEST_CASE("literals, quoted identifiers and dollar quotes are one token each", "[sql_lexer]") {
  CHECK(shape("'it''s $1 (select)'") == ".");
  CHECK(shape("\"col $2\" `x $3` $$ body $4 $$ $tag$ a $5 $tag$ $6") == ". . . . $6");
  CHECK(shape("'unterminated $1") == "."); // to the end
}

TEST_CASE("placeholders are listed once each, in the order of first use", "[sql_lexer]") {
  CHECK(sql_placeholders("SELECT $2, $1, $2, '$3'") == std::vector<uint64_t>{2, 1});
  CHECK(sql_placeholders("SELECT $99999999999999") == std::vector<uint64_t>{1'000'000'000});
  CHECK(sql_placeholders("SELECT 1").empty());
}
