#pragma once
/// A PostgreSQL server of the test's own (scripts/pg-test-server.sh in a temporary folder), so
/// hanging, killing or restarting it disturbs no other test.

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <sstream>
#include <string>

namespace bulwark::test {

/// A PostgreSQL of the test's own, so stopping it disturbs no other test.
struct own_postgres {
  temp_dir dir{"bulwark-pg-"};
  std::string conninfo;

  own_postgres() {
    auto [rc, out] =
        run_command(std::string{BULWARK_SOURCE_DIR} + "/scripts/pg-test-server.sh start " +
                    dir.path.string() + "/pg 2>/dev/null");
    INFO(out);
    REQUIRE(rc == 0);
    conninfo = out.substr(0, out.find_last_not_of("\n") + 1);
  }
  ~own_postgres() {
    run_command(std::string{BULWARK_SOURCE_DIR} + "/scripts/pg-test-server.sh stop " +
                dir.path.string() + "/pg");
  }

  void script(const std::string& verb) {
    auto [rc, out] = run_command(std::string{BULWARK_SOURCE_DIR} + "/scripts/pg-test-server.sh " +
                                 verb + " " + dir.path.string() + "/pg");
    INFO(out);
    REQUIRE(rc == 0);
  }

  /// Active statements other than the asking one whose text contains `needle`.
  int active_queries(const std::string& needle) {
    auto [rc, out] = run_command(
        "psql '" + conninfo +
        "' -Atc \"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%" +
        needle + "%' AND pid <> pg_backend_pid()\"");
    INFO(out);
    REQUIRE(rc == 0);
    return std::stoi(out);
  }

  /// Every process of this server: the postmaster (first line of postmaster.pid) and its
  /// children.
  void signal_all(int sig) {
    std::ifstream pidfile{dir.path.string() + "/pg/data/postmaster.pid"};
    pid_t postmaster = 0;
    pidfile >> postmaster;
    REQUIRE(postmaster > 0);
    auto [rc, children] = run_command("pgrep -P " + std::to_string(postmaster));
    ::kill(postmaster, sig);
    std::istringstream in{children};
    pid_t child;
    while (in >> child)
      ::kill(child, sig);
  }
};

} // namespace bulwark::test
