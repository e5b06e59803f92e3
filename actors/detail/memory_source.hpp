#pragma once
/// Where memory numbers come from. CAF-free; the monitor gets one `memory_source` injected, so
/// tests drive it exactly and only the monitor ever reads the OS.

#include <cstdint>
#include <functional>
#include <string>

namespace bulwark::detail {

struct memory_sample {
  uint64_t used_bytes = 0;
  uint64_t limit_bytes = 0;
  double ratio = 0; ///< used / limit, clamped to [0, 1]
};

struct memory_read {
  bool ok = false;
  memory_sample sample;
  std::string error; ///< why the read failed, when !ok
};

struct memory_source {
  std::string name; ///< "cgroup-v2:/sys/fs/cgroup/...", "process", "file:/path", ...
  std::function<memory_read()> read;
};

/// cgroup v2: the working set (`memory.current` minus `inactive_file` of `memory.stat`, as the
/// kubelet counts it) against `memory.max` in `dir`.
memory_source cgroup_v2_source(const std::string& dir);

/// cgroup v1: `memory.usage_in_bytes` minus `total_inactive_file` against
/// `memory.limit_in_bytes` in `dir`.
memory_source cgroup_v1_source(const std::string& dir);

/// Resident set size of this process (from `statm`, normally /proc/self/statm) against a budget.
memory_source process_source(uint64_t budget_bytes, const std::string& statm = "/proc/self/statm");

/// A ratio in [0, 1] read from a text file on every sample (drills); used = ratio x budget.
memory_source file_source(const std::string& path, uint64_t budget_bytes);

/// Picks a source for `memory.source`: "cgroup" (v2, else v1; fails when neither has a limit),
/// "process", "file", or "auto" (the cgroup limit when there is one, else process RSS against
/// the budget). `cgroup_root` and `proc_self_cgroup` are injectable for tests. Returns false
/// with `error` set when the choice cannot be honoured.
bool select_memory_source(const std::string& kind, const std::string& file, uint64_t budget_bytes,
                          memory_source& out, std::string& error,
                          const std::string& cgroup_root = "/sys/fs/cgroup",
                          const std::string& proc_self_cgroup = "/proc/self/cgroup");

/// Makes a sample from raw numbers; limit 0 is treated as "unknown" (ratio 0).
memory_sample make_sample(uint64_t used, uint64_t limit);

} // namespace bulwark::detail
