#include "actors/detail/sql_lexer.hpp"

#include <algorithm>

namespace bulwark::detail {

namespace {

bool is_word_char(char ch) {
  auto c = static_cast<unsigned char>(ch);
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '$' || c >= 0x80;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

char upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

} // namespace

std::vector<sql_token> lex_sql(const std::string& s) {
  constexpr uint64_t saturated = 1'000'000'000;
  std::vector<sql_token> out;
  const size_t n = s.size();
  auto skip_past = [&](size_t from, const std::string& end) {
    auto at = s.find(end, from);
    return at == std::string::npos ? n : at + end.size();
  };
  size_t i = 0;
  while (i < n) {
    char c = s[i];
    if (c == '-' && i + 1 < n && s[i + 1] == '-') {
      i = skip_past(i + 2, "\n");
    } else if (c == '/' && i + 1 < n && s[i + 1] == '*') {
      i = skip_past(i + 2, "*/");
    } else if (c == '\'' || c == '"' || c == '`') {
      for (++i; i < n;) {
        if (s[i] != c)
          ++i;
        else if (i + 1 < n && s[i + 1] == c)
          i += 2; // a doubled quote: an escaped quote inside
        else {
          ++i;
          break;
        }
      }
      out.push_back({sql_token_kind::other, {}, 0});
    } else if (c == '$' && i + 1 < n && is_digit(s[i + 1])) {
      uint64_t number = 0;
      for (++i; i < n && is_digit(s[i]); ++i)
        number = std::min(saturated, number * 10 + static_cast<uint64_t>(s[i] - '0'));
      out.push_back({sql_token_kind::placeholder, {}, number});
    } else if (c == '$') {
      // A dollar quote's opening tag ($$ or $tag$), else a lone `$` starting a word.
      auto tag_end = i + 1;
      while (tag_end < n && is_word_char(s[tag_end]) && s[tag_end] != '$')
        ++tag_end;
      if (tag_end < n && s[tag_end] == '$') {
        i = skip_past(tag_end + 1, s.substr(i, tag_end - i + 1));
        out.push_back({sql_token_kind::other, {}, 0});
      } else {
        auto start = i;
        for (++i; i < n && is_word_char(s[i]); ++i) {
        }
        std::string w = s.substr(start, i - start);
        std::transform(w.begin(), w.end(), w.begin(), upper);
        out.push_back({sql_token_kind::word, std::move(w), 0});
      }
    } else if (is_word_char(c)) {
      auto start = i;
      while (i < n && is_word_char(s[i]))
        ++i; // a `$` inside a word is part of it: a$1 is an identifier
      std::string w = s.substr(start, i - start);
      std::transform(w.begin(), w.end(), w.begin(), upper);
      out.push_back({sql_token_kind::word, std::move(w), 0});
    } else if (is_space(c)) {
      ++i;
    } else {
      out.push_back({c == '(' ? sql_token_kind::open
                              : (c == ')' ? sql_token_kind::close : sql_token_kind::other),
                     {},
                     0});
      ++i;
    }
  }
  return out;
}

std::vector<uint64_t> sql_placeholders(const std::string& sql) {
  std::vector<uint64_t> out;
  for (auto& t : lex_sql(sql))
    if (t.kind == sql_token_kind::placeholder &&
        std::find(out.begin(), out.end(), t.number) == out.end())
      out.push_back(t.number);
  return out;
}

} // namespace bulwark::detail
