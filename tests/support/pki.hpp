#pragma once
/// Certificates for the mutual-TLS tests, made at run time with Debian's `openssl` command in a
/// folder of the test's (nothing secret is shipped): a CA and the node's and a client's
/// certificates signed by it, and another CA with an intruder's certificate signed by that one.

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace bulwark::test {

struct pki {
  std::filesystem::path dir;

  /// `name`.pem / `name`.key in `dir`.
  std::string cert(const std::string& name) const { return (dir / (name + ".pem")).string(); }
  std::string key(const std::string& name) const { return (dir / (name + ".key")).string(); }

  explicit pki(std::filesystem::path folder) : dir(std::move(folder)) {
    std::filesystem::create_directories(dir);
    make_ca("ca");
    make_ca("rogue_ca");
    make_cert("node", "ca");
    make_cert("client", "ca");
    make_cert("intruder", "rogue_ca");
  }

private:
  void run(const std::string& cmd) const {
    auto line = "cd '" + dir.string() + "' && " + cmd + " >/dev/null 2>&1";
    if (std::system(line.c_str()) != 0)
      throw std::runtime_error("openssl failed: " + cmd);
  }
  void make_ca(const std::string& name) const {
    run("openssl req -x509 -newkey rsa:2048 -nodes -keyout " + name + ".key -out " + name +
        ".pem -days 2 -subj /CN=" + name);
  }
  void make_cert(const std::string& name, const std::string& ca) const {
    run("openssl req -newkey rsa:2048 -nodes -keyout " + name + ".key -out " + name +
        ".csr -subj /CN=" + name);
    run("openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca +
        ".key -CAcreateserial -out " + name + ".pem -days 2");
  }
};

} // namespace bulwark::test
