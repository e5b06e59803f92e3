// An application that embeds Bulwark: it starts an engine from a config file and runs named
// queries through the facade, with the same outcomes as the HTTP API.
//
//   build/test/bulwark_example_embedded config/default.json user_by_id 2

#include "runtime/facade.hpp"

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " CONFIG STATEMENT [INTEGER PARAMS...]\n";
    return 2;
  }
  try {
    auto node = bulwark::embedded::from_file(argv[1]);
    std::vector<bulwark::param> params;
    for (int i = 3; i < argc; ++i)
      params.emplace_back(static_cast<int64_t>(std::stoll(argv[i])));
    auto r = node->call(argv[2], params);
    if (!r.ok()) {
      std::cerr << r.info.http_status << " " << r.info.error << ": " << r.info.detail << "\n";
      return 1;
    }
    for (auto& c : r.result.columns)
      std::cout << c << "\t";
    std::cout << "\n";
    for (auto& row : r.result.rows) {
      for (auto& v : row) {
        switch (v.kind) {
        case bulwark::db_value_kind::null:
          std::cout << "NULL";
          break;
        case bulwark::db_value_kind::integer:
          std::cout << v.integer;
          break;
        case bulwark::db_value_kind::real:
          std::cout << v.real;
          break;
        case bulwark::db_value_kind::text:
          std::cout << v.text;
          break;
        case bulwark::db_value_kind::boolean:
          std::cout << (v.boolean ? "true" : "false");
          break;
        }
        std::cout << "\t";
      }
      std::cout << "\n";
    }
    for (auto& w : r.result.warnings)
      std::cerr << "warning: " << w << "\n";
    return 0;
  } catch (std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
}
