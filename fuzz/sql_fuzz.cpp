// libFuzzer target: the SQL complexity analyser (actors/detail/query_limits.hpp) and the one SQL
// lexer under it (placeholders, tokens), and the planner-output reader on the same bytes read as
// EXPLAIN lines of either backend. Statements come from the config, plans from the backend: none
// of it may crash the node, and every score stays in its documented range.

#include "actors/detail/query_limits.hpp"
#include "actors/detail/sql_lexer.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bulwark::detail;
  std::string sql(reinterpret_cast<const char*>(data), size);
  (void)lex_sql(sql);
  (void)sql_placeholders(sql);
  int lexical = lexical_complexity(sql);
  if (lexical < 0)
    std::abort();
  std::vector<std::string> lines;
  std::istringstream in{sql};
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  for (const char* backend : {"sqlite", "postgres"}) {
    if (plan_complexity(lines, backend) < 0)
      std::abort();
    (void)complexity(lines, backend, sql);
  }
  return 0;
}
