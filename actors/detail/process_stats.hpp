#pragma once
/// The process's own CPU time and resident memory, read from /proc (Linux). The one place that
/// parses /proc/self/stat and /proc/self/statm; the memory monitor's process source and the
/// performance monitor both read through here.

#include <cstdint>
#include <functional>
#include <string>

namespace bulwark::detail {

/// Resident set size in bytes from a statm file (second field, in pages).
bool read_resident_bytes(const std::string& statm, uint64_t& out, std::string& error);

/// User + system CPU time of the process in seconds from a stat file (fields 14 and 15).
bool read_cpu_seconds(const std::string& stat, double& out, std::string& error);

struct process_reading {
  bool ok = false;
  std::string error;
  double cpu_seconds = 0; ///< cumulative user + system
  uint64_t rss_bytes = 0;
};

/// The CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota
/// (`cpu.max` "quota period" under `cgroup_dir`), so a container limited to 2 CPUs on a 32-core
/// host counts 2, not 32 (and one limited to half a CPU counts 0.5).
double available_cores(const std::string& cgroup_dir = "/sys/fs/cgroup");

/// Where the performance monitor reads the process: /proc in production, a script in tests.
using process_reader = std::function<process_reading()>;

process_reader proc_process_reader(const std::string& stat = "/proc/self/stat",
                                   const std::string& statm = "/proc/self/statm");

} // namespace bulwark::detail
