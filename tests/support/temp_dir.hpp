#pragma once
/// A scratch folder under the system temp dir, removed with everything in it at scope exit.

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

namespace bulwark::test {

struct temp_dir {
  std::filesystem::path path;

  explicit temp_dir(const std::string& prefix = "bulwark-test-") {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / (prefix + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }

  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }

  /// Writes `text` to `rel` (creating folders) and returns the file's path.
  std::string put(const std::string& rel, const std::string& text) const {
    auto p = path / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream{p} << text;
    return p.string();
  }
};

/// The whole file at `path` ("" when it cannot be read).
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in{path, std::ios::binary};
  return std::string{std::istreambuf_iterator<char>{in}, {}};
}

} // namespace bulwark::test
