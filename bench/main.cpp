#include "bench/bench.hpp"

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  auto& r = bulwark::bench::registry();
  if (argc > 1 && std::string{argv[1]} == "--list") {
    for (auto& [name, f] : r)
      std::printf("%s\n", name.c_str());
    return 0;
  }
  for (auto& [name, f] : r) {
    bool wanted = argc == 1;
    for (int i = 1; i < argc; ++i)
      wanted = wanted || name == argv[i];
    if (!wanted)
      continue;
    std::printf("== %s\n", name.c_str());
    std::fflush(stdout);
    f();
    std::fflush(stdout);
  }
  return 0;
}
