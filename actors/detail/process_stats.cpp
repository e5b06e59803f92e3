#include "actors/detail/process_stats.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace bulwark::detail {

namespace {

bool read_line(const std::string& path, std::string& out, std::string& error) {
  std::ifstream in{path};
  if (!in) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  if (!std::getline(in, out)) {
    error = path + " is empty";
    return false;
  }
  return true;
}

} // namespace

bool read_resident_bytes(const std::string& statm, uint64_t& out, std::string& error) {
  std::string text;
  if (!read_line(statm, text, error))
    return false;
  std::istringstream in{text};
  uint64_t size_pages = 0;
  uint64_t resident_pages = 0;
  if (!(in >> size_pages >> resident_pages)) {
    error = statm + " is malformed";
    return false;
  }
  static const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  out = resident_pages * page;
  return true;
}

bool read_cpu_seconds(const std::string& stat, double& out, std::string& error) {
  std::string text;
  if (!read_line(stat, text, error))
    return false;
  // The command name (field 2) is in parentheses and may hold spaces: count from its end.
  auto close = text.rfind(')');
  if (close == std::string::npos) {
    error = stat + " is malformed";
    return false;
  }
  std::istringstream in{text.substr(close + 1)};
  std::string field;
  uint64_t utime = 0;
  uint64_t stime = 0;
  // Fields 3..13 precede utime (14) and stime (15).
  for (int i = 3; i <= 13; ++i)
    in >> field;
  if (!(in >> utime >> stime)) {
    error = stat + " is malformed";
    return false;
  }
  static const auto ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  out = static_cast<double>(utime + stime) / ticks;
  return true;
}

double available_cores(const std::string& cgroup_dir) {
  cpu_set_t set;
  CPU_ZERO(&set);
  double cores = ::sched_getaffinity(0, sizeof(set), &set) == 0
                     ? static_cast<double>(CPU_COUNT(&set))
                     : static_cast<double>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  std::string text;
  std::string error;
  if (read_line(cgroup_dir + "/cpu.max", text, error)) {
    std::istringstream in{text};
    std::string quota;
    double period = 0;
    if (in >> quota >> period && quota != "max" && period > 0) {
      try {
        cores = std::min(cores, std::stod(quota) / period);
      } catch (...) {
        // malformed: keep the affinity count
      }
    }
  }
  return std::max(0.01, cores);
}

process_reader proc_process_reader(const std::string& stat, const std::string& statm) {
  return [stat, statm] {
    process_reading r;
    r.ok = read_cpu_seconds(stat, r.cpu_seconds, r.error) &&
           read_resident_bytes(statm, r.rss_bytes, r.error);
    return r;
  };
}

} // namespace bulwark::detail
