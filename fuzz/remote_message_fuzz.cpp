// libFuzzer target: what a remote node can make this node deserialize. BASP hands the payload of
// every message to CAF's binary deserializer before any actor sees it, and that deserializer
// builds whatever registered type the bytes name: every type of the bulwark type-ID block
// (messages/type_ids.hpp), not only the gateway_request the front door takes. So the input is read
// as a caf::message exactly as BASP reads one, and, for depth, as each bulwark type directly
// (the first byte picks it). Nothing may crash, leak or read out of bounds; what does not parse
// is an error.
//
// With BULWARK_FUZZ_WRITE_SEEDS=DIR in the environment, it writes one serialized message per
// bulwark type into DIR first (scripts/fuzz.sh makes the seed corpus with it).

#include "messages/type_ids.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/message.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace {

struct world {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  /// Per bulwark type: deserialize one value from the bytes; serialize a default one (seeds).
  std::vector<std::function<void(const char*, size_t)>> readers;
  std::vector<std::function<caf::message()>> samples;

  world() {
    bulwark::register_types(cfg);
    cfg.set("scheduler.max-threads", 1);
    sys = std::make_unique<caf::actor_system>(cfg);
    add(std::make_integer_sequence<caf::type_id_t,
                                   caf::id_block::bulwark::end - caf::id_block::bulwark::begin>{});
  }

  template <caf::type_id_t... Is>
  void add(std::integer_sequence<caf::type_id_t, Is...>) {
    (add_one<typename caf::type_by_id<caf::id_block::bulwark::begin + Is>::type>(), ...);
  }

  template <class T>
  void add_one() {
    readers.emplace_back([this](const char* data, size_t size) {
      T x{};
      caf::binary_deserializer source{*sys, data, size};
      (void)source(x);
    });
    samples.emplace_back([] { return caf::make_message(T{}); });
  }
};

/// Never destroyed: an actor system torn down by static destructors at libFuzzer's exit would
/// race CAF's own globals (the heap it holds stays reachable, so no leak).
world& the_world() {
  static world* w = new world;
  return *w;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  auto& w = the_world();
  if (auto dir = std::getenv("BULWARK_FUZZ_WRITE_SEEDS")) {
    for (size_t i = 0; i < w.samples.size(); ++i) {
      auto msg = w.samples[i]();
      std::vector<char> buf;
      caf::binary_serializer sink{*w.sys, buf};
      if (sink(msg))
        continue; // not serializable as a default value (none today)
      std::ofstream{std::string(dir) + "/message-" + std::to_string(i), std::ios::binary}.write(
          buf.data(), static_cast<std::streamsize>(buf.size()));
    }
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& w = the_world();
  auto bytes = reinterpret_cast<const char*>(data);
  {
    caf::message msg;
    caf::binary_deserializer source{*w.sys, bytes, size};
    if (!source(msg))
      (void)to_string(msg); // what a log line would print of it
  }
  if (size > 0)
    w.readers[data[0] % w.readers.size()](bytes + 1, size - 1);
  return 0;
}
