#pragma once
/// The node's one SQL lexer, for what it must know of a statement's text before the backend sees
/// it: its `$N` placeholders (the config checks them against the declared parameters) and its
/// words and parentheses (the lexical complexity of detail/query_limits.hpp). CAF-free.
///
/// Rules, the same for every user: line comments (`--` to the end of the line) and block comments
/// (`/* ... */`) vanish; string literals ('...'), quoted identifiers ("..." and `...`), each with
/// doubled-quote escapes, and PostgreSQL dollar quotes ($$...$$, $tag$...$tag$) are one `other`
/// token, so nothing inside them is a word or a placeholder; `$N` is a placeholder unless the `$`
/// is inside a word (the identifier a$1 is one word); words are letters, digits, `_`, `$` and
/// every non-ASCII byte, upper-cased.

#include <cstdint>
#include <string>
#include <vector>

namespace bulwark::detail {

enum class sql_token_kind { word, placeholder, open, close, other };

struct sql_token {
  sql_token_kind kind = sql_token_kind::other;
  std::string word;    ///< words only: upper-cased
  uint64_t number = 0; ///< placeholders only: N of $N, saturated at 1'000'000'000
};

std::vector<sql_token> lex_sql(const std::string& sql);

/// The numbers of `sql`'s placeholders, each once, in the order of their first appearance.
std::vector<uint64_t> sql_placeholders(const std::string& sql);

} // namespace bulwark::detail
