#pragma once
/// A memory source whose ratio the test (or a fuzz harness) sets: each sample reads `ratio` of a
/// real-sized `limit`, since the memory account takes its budget from that limit. No Catch2 here,
/// so fuzz targets can use it too.

#include "actors/detail/memory_source.hpp"

#include <atomic>
#include <cstdint>
#include <memory>

namespace bulwark::test {

inline detail::memory_source scripted_memory(std::shared_ptr<std::atomic<double>> ratio,
                                             uint64_t limit) {
  return {"scripted", [ratio, limit] {
            detail::memory_read r;
            r.ok = true;
            r.sample = detail::make_sample(static_cast<uint64_t>(ratio->load() * limit), limit);
            return r;
          }};
}

} // namespace bulwark::test
