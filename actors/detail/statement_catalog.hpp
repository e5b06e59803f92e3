#pragma once
/// The statement catalog: every configured statement, built from the config once (by the engine)
/// and read-only after, shared by the HTTP API (how to read a request's parameters), the gateway
/// (what may be cached) and the database (what runs, with which typed parameters, and how complex
/// its SQL reads until the planner has measured it). CAF-free.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace bulwark {

/// One statement as the config spells it (the top-level `statements` key).
struct statement_config {
  /// statements.<name>.sql: placeholders $1, $2, ... in order (both backends accept them).
  std::string sql;
  /// statements.<name>.params: "int" | "real" | "text" | "bool", one per placeholder.
  std::vector<std::string> params;
  /// statements.<name>.read_only: only read-only statements are ever cached.
  bool read_only = true;
  /// statements.<name>.cache_ttl_ms: how long the gateway may serve a cached answer; 0 (the
  /// default) = never cached. Caching is opt-in because a cached read may be stale for its TTL.
  std::chrono::milliseconds cache_ttl{0};
};

namespace detail {

/// A parameter's declared kind.
enum class param_kind : uint8_t { integer, real, text, boolean };

/// The config's spelling: "int", "real", "text", "bool".
const char* to_string(param_kind k);

/// What a value of kind `k` must be, for error messages: "an integer", "a number", ...
const char* expectation(param_kind k);

/// The kind the config spells `s`; none for anything else.
std::optional<param_kind> parse_param_kind(const std::string& s);

struct statement {
  std::string name;
  std::string sql;
  std::vector<param_kind> params; ///< one per placeholder, $1 first
  bool read_only = true;
  std::chrono::milliseconds cache_ttl{0};
  /// query_limits' reading of the SQL text (lexical_complexity), computed once.
  int lexical_complexity = 0;

  /// Read-only with a TTL: the gateway may answer it from the cache.
  bool cacheable() const { return read_only && cache_ttl.count() > 0; }
  /// Whether a large answer may be streamed to its caller: not when the cache keeps it whole.
  bool may_stream() const { return !cacheable(); }
};

class statement_catalog {
public:
  statement_catalog() = default;

  /// Throws std::invalid_argument naming the statement and the parameter kind it does not know
  /// (the config's validation refuses those first).
  explicit statement_catalog(const std::map<std::string, statement_config>& config);

  /// The statement named `name`, or null.
  const statement* find(const std::string& name) const;

  const std::map<std::string, statement>& all() const { return by_name_; }

private:
  std::map<std::string, statement> by_name_;
};

} // namespace detail
} // namespace bulwark
