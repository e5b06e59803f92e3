// libFuzzer target: the HTTP request path whole, as a client reaches it. A real engine (SQLite in
// a temporary folder, config/default.json's demo statements) and the real HTTP server with the
// API on a loopback port are started once; each input is written raw to a fresh connection,
// which is then half-closed, and the answer read until the server closes. So the bytes pass
// Beast's parser, the server's own limits, the router, the parameter and header readers, the
// gateway and the backend, and the renderer. Oracles: the sanitizers; an answer, when there is
// one, is HTTP; and the node keeps answering (each next input needs it).

#include "actors/log.hpp"
#include "runtime/config.hpp"
#include "runtime/engine.hpp"
#include "runtime/http_api.hpp"
#include "runtime/http_server.hpp"
#include "tests/support/memory_source.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

namespace {

struct node {
  std::string dir;
  std::unique_ptr<bulwark::engine> eng;
  std::unique_ptr<bulwark::http_api_metrics> metrics;
  std::unique_ptr<bulwark::http_server> http;

  node() {
    char tmpl[] = "/tmp/bulwark-fuzz-XXXXXX";
    dir = mkdtemp(tmpl);
    auto loaded = bulwark::load_config_file(BULWARK_SOURCE_DIR "/config/default.json");
    if (!loaded.ok())
      std::abort();
    auto cfg = loaded.config;
    cfg.node.data_dir = dir;
    cfg.http.listen = "127.0.0.1:0";
    cfg.http.request_timeout = std::chrono::milliseconds(500); // a partial request ends soon
    cfg.scheduler.threads = 2;
    bulwark::set_log_level(bulwark::log_level::error); // one line per request would drown it
    bulwark::engine_options opts;
    // A steady, low reading: the sanitizers' shadow memory is not the node's.
    opts.memory_source =
        bulwark::test::scripted_memory(std::make_shared<std::atomic<double>>(0.2), 1ull << 30);
    eng = std::make_unique<bulwark::engine>(cfg, opts);
    metrics = std::make_unique<bulwark::http_api_metrics>(*eng->registry());
    http = std::make_unique<bulwark::http_server>(cfg.http,
                                                  bulwark::make_http_api(*eng, *metrics, {}));
    http->start();
  }
};

/// Never destroyed: libFuzzer exits from inside its loop, and an engine torn down by static
/// destructors would race CAF's own globals (the heap it holds stays reachable, so no leak).
node& the_node() {
  static node* n = new node;
  return *n;
}

/// Polls `p` for up to `ms` milliseconds; false when nothing came in time. A signal (libFuzzer
/// checks its -timeout with SIGALRM) is not a verdict: the wait goes on until its deadline.
bool wait_for(pollfd& p, long long ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    until - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0)
      return false;
    int r = poll(&p, 1, static_cast<int>(left));
    if (r > 0)
      return true;
    if (r == 0 || errno != EINTR)
      return false;
  }
}

/// Writes `bytes` to a fresh connection, half-closes it and returns what comes back before the
/// server closes (or 5 s pass: a hang is a finding).
std::string exchange(uint16_t port, const char* bytes, size_t size) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0)
    std::abort();
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    // libFuzzer's SIGALRM (its -timeout check) may interrupt a blocking call: the connection
    // then completes in the background, and writability says when.
    pollfd w{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    if (errno != EINTR || !wait_for(w, 5000) ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
      std::abort(); // the node stopped accepting
  }
  for (size_t off = 0; off < size;) {
    auto n = send(fd, bytes + off, size - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break; // the server answered early (413, 431) and closed
    off += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  std::string out;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  char buf[16384];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    until - std::chrono::steady_clock::now())
                    .count();
    pollfd p{fd, POLLIN, 0};
    if (!wait_for(p, left)) {
      std::fprintf(stderr, "http_fuzz: no close within 5 s\n");
      std::abort();
    }
    auto n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  the_node();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& n = the_node();
  auto answer = exchange(n.http->port(), reinterpret_cast<const char*>(data), size);
  if (!answer.empty() && answer.rfind("HTTP/1.", 0) != 0) {
    std::fprintf(stderr, "http_fuzz: not an HTTP answer: %.80s\n", answer.c_str());
    std::abort();
  }
  return 0;
}
