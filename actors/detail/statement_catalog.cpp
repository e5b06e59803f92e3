#include "actors/detail/statement_catalog.hpp"

#include "actors/detail/query_limits.hpp"

#include <stdexcept>

namespace bulwark::detail {

const char* to_string(param_kind k) {
  switch (k) {
  case param_kind::integer:
    return "int";
  case param_kind::real:
    return "real";
  case param_kind::text:
    return "text";
  case param_kind::boolean:
    return "bool";
  }
  return "?";
}

const char* expectation(param_kind k) {
  switch (k) {
  case param_kind::integer:
    return "an integer";
  case param_kind::real:
    return "a number";
  case param_kind::text:
    return "a string";
  case param_kind::boolean:
    return "a boolean";
  }
  return "a value";
}

std::optional<param_kind> parse_param_kind(const std::string& s) {
  for (auto k : {param_kind::integer, param_kind::real, param_kind::text, param_kind::boolean})
    if (s == to_string(k))
      return k;
  return std::nullopt;
}

statement_catalog::statement_catalog(const std::map<std::string, statement_config>& config) {
  for (auto& [name, c] : config) {
    statement s;
    s.name = name;
    s.sql = c.sql;
    s.read_only = c.read_only;
    s.cache_ttl = c.cache_ttl;
    s.lexical_complexity = lexical_complexity(c.sql);
    for (auto& p : c.params) {
      auto k = parse_param_kind(p);
      if (!k)
        throw std::invalid_argument("statements." + name + ".params: unknown kind \"" + p +
                                    "\" (int, real, text or bool)");
      s.params.push_back(*k);
    }
    by_name_.emplace(name, std::move(s));
  }
}

const statement* statement_catalog::find(const std::string& name) const {
  auto i = by_name_.find(name);
  return i != by_name_.end() ? &i->second : nullptr;
}

} // namespace bulwark::detail
