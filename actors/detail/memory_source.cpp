#include "actors/detail/memory_source.hpp"

#include "actors/detail/process_stats.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

namespace bulwark::detail {

namespace {

/// Reads a whole small file; false with `error` set when it cannot.
bool slurp(const std::string& path, std::string& out, std::string& error) {
  std::ifstream in{path};
  if (!in) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

/// Parses an unsigned integer file; "max" (cgroup v2's "no limit") gives 0.
bool read_u64(const std::string& path, uint64_t& out, std::string& error) {
  std::string text;
  if (!slurp(path, text, error))
    return false;
  auto b = text.find_first_not_of(" \t\n");
  auto e = text.find_last_not_of(" \t\n");
  if (b == std::string::npos) {
    error = path + " is empty";
    return false;
  }
  text = text.substr(b, e - b + 1);
  if (text == "max") {
    out = 0;
    return true;
  }
  try {
    size_t used = 0;
    out = std::stoull(text, &used);
    if (used != text.size())
      throw std::invalid_argument{text};
  } catch (...) {
    error = path + " does not hold a number: \"" + text + "\"";
    return false;
  }
  return true;
}

/// The value of `key` in a `memory.stat` file ("key value" lines); nullopt when the file or the
/// key is missing.
std::optional<uint64_t> stat_value(const std::string& path, const std::string& key) {
  std::ifstream in{path};
  std::string k;
  uint64_t v = 0;
  while (in >> k >> v)
    if (k == key)
      return v;
  return std::nullopt;
}

/// The working set, as the kubelet computes it (and so as the HPA and the OOM-eviction manager
/// see the container): usage minus inactive file pages, which the kernel reclaims before it
/// kills anyone. Without it a SQLite file's page cache would count as pressure.
uint64_t working_set(uint64_t usage, std::optional<uint64_t> inactive_file) {
  return inactive_file && *inactive_file < usage ? usage - *inactive_file : usage;
}

/// cgroup v1 reports "no limit" as a huge page-rounded number.
constexpr uint64_t cgroup_v1_unlimited = uint64_t{1} << 62;

memory_read limited_read(uint64_t used, uint64_t limit, const std::string& what) {
  memory_read r;
  if (limit == 0) {
    r.error = what + " has no memory limit";
    return r;
  }
  r.ok = true;
  r.sample = make_sample(used, limit);
  return r;
}

} // namespace

memory_sample make_sample(uint64_t used, uint64_t limit) {
  memory_sample s;
  s.used_bytes = used;
  s.limit_bytes = limit;
  s.ratio = limit == 0
                ? 0.0
                : std::clamp(static_cast<double>(used) / static_cast<double>(limit), 0.0, 1.0);
  return s;
}

memory_source cgroup_v2_source(const std::string& dir) {
  return {"cgroup-v2:" + dir, [dir] {
            memory_read r;
            uint64_t used = 0;
            uint64_t limit = 0;
            if (!read_u64(dir + "/memory.current", used, r.error) ||
                !read_u64(dir + "/memory.max", limit, r.error))
              return r;
            used = working_set(used, stat_value(dir + "/memory.stat", "inactive_file"));
            return limited_read(used, limit, "cgroup " + dir);
          }};
}

memory_source cgroup_v1_source(const std::string& dir) {
  return {"cgroup-v1:" + dir, [dir] {
            memory_read r;
            uint64_t used = 0;
            uint64_t limit = 0;
            if (!read_u64(dir + "/memory.usage_in_bytes", used, r.error) ||
                !read_u64(dir + "/memory.limit_in_bytes", limit, r.error))
              return r;
            if (limit >= cgroup_v1_unlimited)
              limit = 0;
            used = working_set(used, stat_value(dir + "/memory.stat", "total_inactive_file"));
            return limited_read(used, limit, "cgroup " + dir);
          }};
}

memory_source process_source(uint64_t budget_bytes, const std::string& statm) {
  return {"process", [budget_bytes, statm] {
            memory_read r;
            uint64_t resident = 0;
            if (!read_resident_bytes(statm, resident, r.error))
              return r;
            return limited_read(resident, budget_bytes, "the budget");
          }};
}

memory_source file_source(const std::string& path, uint64_t budget_bytes) {
  return {"file:" + path, [path, budget_bytes] {
            memory_read r;
            std::string text;
            if (!slurp(path, text, r.error))
              return r;
            double ratio = 0;
            try {
              size_t used = 0;
              ratio = std::stod(text, &used);
              if (text.find_first_not_of(" \t\r\n", used) != std::string::npos)
                throw std::invalid_argument{text};
            } catch (...) {
              r.error = path + " does not hold a ratio";
              return r;
            }
            if (!(ratio >= 0.0 && ratio <= 1.0)) {
              r.error = path + " holds a ratio outside [0, 1]";
              return r;
            }
            r.ok = true;
            r.sample.limit_bytes = budget_bytes;
            r.sample.used_bytes = static_cast<uint64_t>(ratio * static_cast<double>(budget_bytes));
            r.sample.ratio = ratio;
            return r;
          }};
}

namespace {

/// The group path of this process for a hierarchy in /proc/self/cgroup: "0::/x" for v2
/// (`controller` empty), "4:memory:/x" for v1. Empty when not listed.
std::string own_group(const std::string& proc_self_cgroup, const std::string& controller) {
  std::ifstream in{proc_self_cgroup};
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':');
    auto b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos)
      continue;
    auto ctrls = line.substr(a + 1, b - a - 1);
    bool match = controller.empty()
                     ? line.compare(0, a, "0") == 0 && ctrls.empty()
                     : ("," + ctrls + ",").find("," + controller + ",") != std::string::npos;
    if (match)
      return line.substr(b + 1);
  }
  return {};
}

/// `base + group` and each ancestor up to `base`, innermost first (a limit set on a parent
/// group applies to us too).
std::vector<std::string> group_dirs(const std::string& base, std::string group) {
  std::vector<std::string> out;
  while (!group.empty() && group != "/") {
    out.push_back(base + group);
    group = group.substr(0, group.find_last_of('/'));
  }
  out.push_back(base);
  return out;
}

} // namespace

bool select_memory_source(const std::string& kind, const std::string& file, uint64_t budget_bytes,
                          memory_source& out, std::string& error, const std::string& cgroup_root,
                          const std::string& proc_self_cgroup) {
  if (kind == "process") {
    out = process_source(budget_bytes);
    return true;
  }
  if (kind == "file") {
    if (file.empty()) {
      error = "memory.source is \"file\" but memory.file is empty";
      return false;
    }
    out = file_source(file, budget_bytes);
    return true;
  }
  if (kind != "cgroup" && kind != "auto") {
    error = "unknown memory source \"" + kind + "\"";
    return false;
  }
  // The innermost group with a limit wins: cgroup v2 first, then v1's memory controller.
  std::vector<memory_source> candidates;
  for (auto& d : group_dirs(cgroup_root, own_group(proc_self_cgroup, "")))
    candidates.push_back(cgroup_v2_source(d));
  for (auto& d : group_dirs(cgroup_root + "/memory", own_group(proc_self_cgroup, "memory")))
    candidates.push_back(cgroup_v1_source(d));
  for (auto& c : candidates)
    if (c.read().ok) {
      out = std::move(c);
      return true;
    }
  if (kind == "cgroup") {
    error = "memory.source is \"cgroup\" but no cgroup with a memory limit was found under " +
            cgroup_root;
    return false;
  }
  out = process_source(budget_bytes);
  return true;
}

} // namespace bulwark::detail
