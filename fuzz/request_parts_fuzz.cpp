// libFuzzer target: what the HTTP API reads out of a request besides the framing, which Beast
// parses (http_fuzz.cpp covers that path whole): the query body's parameters against a
// statement's declared kinds (and the database's check of them), the percent-decoded statement
// name, the client's identity from X-Client-Id / X-Forwarded-For behind a trusted proxy, and the
// addresses and CIDR ranges of http.trusted_proxies; the same body read as a transaction's (ad hoc
// and declared) against a small catalog, and as a batch's. The first byte picks the parameter kinds
// (two bits each, its low bits the count), the rest is split at NUL bytes into the body, a path
// segment, the header values, the peer and a range. Nothing may crash; answers keep their
// documented shapes.

#include "actors/database.hpp"
#include "actors/detail/statement_catalog.hpp"
#include "runtime/address_ranges.hpp"
#include "runtime/http_api.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

/// The next NUL-separated field of `rest` (all of it when there is no NUL).
std::string field(std::string& rest) {
  auto nul = rest.find('\0');
  auto out = rest.substr(0, nul);
  rest = nul == std::string::npos ? std::string{} : rest.substr(nul + 1);
  return out;
}

/// Two statements for the transaction bodies: "a" takes an int, "b" a text and a real.
const bulwark::detail::statement_catalog& catalog() {
  static const bulwark::detail::statement_catalog c{
      std::map<std::string, bulwark::statement_config>{
          {"a", {"SELECT $1", {"int"}, true}}, {"b", {"SELECT $1, $2", {"text", "real"}, true}}}};
  return c;
}

/// A transaction body read without complaint has steps, each of which the database can check.
void check_transaction(const bulwark::db_query& q) {
  if (q.steps.empty())
    std::abort();
  for (auto& step : q.steps)
    if (auto* s = catalog().find(step.statement))
      (void)bulwark::check_parameters(s->params, step.params);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bulwark;
  if (size == 0)
    return 0;
  std::vector<detail::param_kind> kinds;
  for (unsigned i = 0; i < (data[0] & 3u); ++i)
    kinds.push_back(static_cast<detail::param_kind>((data[0] >> (2 + 2 * i)) & 3u));
  std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);

  auto body = field(rest);
  db_query tx;
  if (parse_transaction_body(body, catalog(), tx).empty())
    check_transaction(tx);
  db_query declared;
  if (parse_declared_transaction_body(body, "ab", {"a", "b"}, catalog(), declared).empty())
    check_transaction(declared);

  db_query batch;
  if (parse_batch_body(body, "a", (data[0] & 0x80u) ? nullptr : &kinds, batch).empty()) {
    // A batch read without complaint has items, each of which the database can check.
    if (batch.batch.empty() || batch.statement != "a")
      std::abort();
    for (auto& item : batch.batch)
      (void)check_parameters(kinds, item);
  }

  std::vector<db_value> params;
  auto problem = parse_query_params(body, (data[0] & 0x80u) ? nullptr : &kinds, params);
  // A plain body read by hand answers as the whole tree would: same message, and the same
  // parameters when it accepts.
  std::vector<db_value> by_tree;
  if (detail::parse_query_params_tree(body, (data[0] & 0x80u) ? nullptr : &kinds, by_tree) !=
          problem ||
      (problem.empty() && by_tree != params))
    std::abort();
  // What the HTTP reader accepts, the database checks against the statement next (the count, and
  // each value's kind); that check must answer too.
  if (problem.empty())
    (void)check_parameters(kinds, params);

  std::string name;
  (void)decode_path_segment(field(rest), name);

  http_request req;
  req.method = "POST";
  req.path = "/v1/query/x";
  req.headers.emplace_back("x-client-id", field(rest));
  req.headers.emplace_back("x-forwarded-for", field(rest));
  req.peer = field(rest);
  address_ranges trusted;
  (void)trusted.add(field(rest));
  (void)trusted.add("127.0.0.0/8");
  std::string key;
  if (client_key(req, trusted, key).empty() && key.empty())
    std::abort(); // a client the limiter accepts always has a key
  (void)cidr_problem(rest);
  (void)parse_ip(rest);
  return 0;
}
