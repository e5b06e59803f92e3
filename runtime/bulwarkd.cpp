/// bulwarkd: the Bulwark node. Loads and validates the config (exit 2 naming every bad key),
/// boots the engine, serves HTTP, and shuts down in order on SIGTERM/SIGINT (exit 0): stop
/// accepting, drain in-flight requests within shutdown.drain_ms, stop the actors in reverse start
/// order. Exits 1 when the root supervisor gives up (escalation reached the top).

#include "actors/log.hpp"
#include "runtime/config.hpp"
#include "runtime/engine.hpp"
#include "runtime/http_api.hpp"
#include "runtime/http_server.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <malloc.h>
#include <memory>
#include <pthread.h>
#include <string>

namespace {

constexpr const char* usage = R"(usage: bulwarkd --config FILE     run the node
       bulwarkd --check-config FILE   validate FILE, print every problem, exit 0 or 2
       bulwarkd --print-default-config
       bulwarkd --print-config-reference   every key as Markdown (docs/configuration.md)
       bulwarkd --help
)";

int fail_config(const std::string& file, const std::vector<bulwark::config_error>& errors) {
  std::cerr << "bulwarkd: invalid configuration " << file << " (" << errors.size()
            << (errors.size() == 1 ? " problem" : " problems") << "):\n"
            << bulwark::format_errors(errors);
  return 2;
}

/// glibc's allocator, for a node whose memory is budgeted: an allocation of 128 KiB or more (a
/// result's row vector, a rendered answer) is its own mapping, given back to the OS the moment it
/// is freed. By default glibc raises that threshold to the largest block freed so far (up to
/// 32 MiB), after which large answers come from the heap and stay in the process's RSS after
/// they are gone (measured by bench/memory_drill.sh). Only bulwarkd sets this; an embedding
/// application keeps its own allocator settings.
void tune_allocator() {
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}

/// The bearer token in `path`: its content without surrounding whitespace. Sets `problem` when
/// the file cannot be read or holds no token.
std::string read_token(const std::string& path, std::string& problem) {
  std::ifstream in{path, std::ios::binary};
  if (!in) {
    problem = "cannot read \"" + path + "\": " + std::strerror(errno);
    return {};
  }
  std::string text{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  auto first = text.find_first_not_of(" \t\r\n");
  auto last = text.find_last_not_of(" \t\r\n");
  if (first == std::string::npos) {
    problem = "\"" + path + "\" holds no token";
    return {};
  }
  text = text.substr(first, last - first + 1);
  if (text.find_first_of(" \t\r\n") != std::string::npos || text.size() < 16) {
    problem = "\"" + path + "\" must hold one token of at least 16 characters, no spaces";
    return {};
  }
  return text;
}

int run(const std::string& file) {
  tune_allocator();
  auto loaded = bulwark::load_config_file(file);
  if (!loaded.ok())
    return fail_config(file, loaded.errors);
  auto& cfg = loaded.config;
  bulwark::set_log_level(bulwark::parse_log_level(cfg.log.level));
  std::error_code ec;
  std::filesystem::create_directories(cfg.node.data_dir, ec);
  if (ec)
    return fail_config(
        file, {{"node.data_dir", "cannot create \"" + cfg.node.data_dir + "\": " + ec.message()}});
  // Block the shutdown signals before any thread starts, so only sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::unique_ptr<bulwark::engine> eng;
  try {
    eng = std::make_unique<bulwark::engine>(cfg);
  } catch (std::exception& e) {
    std::cerr << "bulwarkd: cannot start: " << e.what() << "\n";
    return 2;
  }
  bulwark::http_api_metrics api_metrics{*eng->registry()};
  bulwark::http_server* server = nullptr; // set below; scrapes only come after start()
  auto http_cfg = cfg.http;
  http_cfg.account = eng->memory_account_ptr(); // request bodies reserve before they are read
  bulwark::http_server http{http_cfg, bulwark::make_http_api(*eng, api_metrics, [&server] {
                              return server ? server->stats() : bulwark::http_server_stats{};
                            })};
  server = &http;
  // The admin listener: the same server limits on its own address, the admin routes only.
  std::unique_ptr<bulwark::http_server> admin;
  if (!cfg.admin.listen.empty()) {
    bulwark::http_api_listener listener{true, {}};
    if (!cfg.admin.token_file.empty()) {
      std::string problem;
      listener.token = read_token(cfg.admin.token_file, problem);
      if (!problem.empty())
        return fail_config(file, {{"admin.token_file", problem}});
    }
    auto admin_cfg = http_cfg;
    admin_cfg.listen = cfg.admin.listen;
    admin_cfg.max_connections = std::min<size_t>(admin_cfg.max_connections, 64);
    admin = std::make_unique<bulwark::http_server>(
        admin_cfg,
        bulwark::make_http_api(
            *eng, api_metrics,
            [&server] { return server ? server->stats() : bulwark::http_server_stats{}; }, {},
            std::move(listener)));
  }
  try {
    if (admin) {
      admin->start();
      bulwark::log_info("bulwarkd", "serving admin on port " + std::to_string(admin->port()) +
                                        (cfg.admin.token_file.empty() ? "" : " (bearer token)"));
    }
    http.start();
  } catch (std::exception& e) {
    std::cerr << "bulwarkd: " << e.what() << "\n";
    return 1;
  }
  bulwark::log_info("bulwarkd", "node " + cfg.node.name + " serving http on port " +
                                    std::to_string(http.port()) + " (data in " + cfg.node.data_dir +
                                    ")");
  int exit_code = 0;
  int stop_signal = 0;
  for (;;) {
    timespec tick{0, 100 * 1000 * 1000};
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      stop_signal = sig;
      break;
    }
    if (eng->root_down()) {
      bulwark::log_error("bulwarkd",
                         "supervision tree gave up (" + eng->root_down_reason() + "); exiting");
      exit_code = 1;
      break;
    }
  }
  http.stop_accepting();
  if (admin)
    admin->stop_accepting();
  eng->begin_drain(); // remote callers too: new requests refused, pending ones finish
  // Said only once it holds: from this line on, no new request is taken (tests and operators
  // act on it).
  if (stop_signal != 0)
    bulwark::log_info("bulwarkd",
                      std::string{"received "} + strsignal(stop_signal) + ", shutting down");
  auto drain_until = std::chrono::steady_clock::now() + cfg.shutdown.drain;
  if (!http.drain(cfg.shutdown.drain)) {
    // Nobody is left without an answer: what is still running is answered 503 shutting_down
    // (counted) before the engine stops.
    auto n = http.answer_in_flight(std::chrono::seconds(2));
    bulwark::log_warn("bulwarkd", "drain time over: answered " + std::to_string(n) +
                                      " requests still in flight 503 shutting_down");
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      drain_until - std::chrono::steady_clock::now());
  if (!eng->wait_remote_drained(std::max(left, std::chrono::milliseconds{0})))
    bulwark::log_warn("bulwarkd", "drain time over: " + std::to_string(eng->remote_pending()) +
                                      " remote requests still pending are answered 503 "
                                      "shutting_down");
  eng->stop();
  http.stop();
  if (admin)
    admin->stop();
  eng.reset();
  bulwark::log_info("bulwarkd", "stopped");
  return exit_code;
}

} // namespace

int main(int argc, char** argv) {
  std::string arg = argc > 1 ? argv[1] : "";
  if (argc == 3 && arg == "--config")
    return run(argv[2]);
  if (argc == 3 && arg == "--check-config") {
    auto loaded = bulwark::load_config_file(argv[2]);
    if (!loaded.ok())
      return fail_config(argv[2], loaded.errors);
    std::cout << argv[2] << ": ok\n";
    return 0;
  }
  if (argc == 2 && arg == "--print-default-config") {
    std::cout << bulwark::default_config_json() << "\n";
    return 0;
  }
  if (argc == 2 && arg == "--print-config-reference") {
    std::cout << bulwark::config_reference_markdown();
    return 0;
  }
  if (argc == 2 && (arg == "--help" || arg == "-h")) {
    std::cout << usage;
    return 0;
  }
  std::cerr << usage;
  return 2;
}
