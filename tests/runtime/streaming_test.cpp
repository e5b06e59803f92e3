// Large answers stream to the socket with backpressure (issue 10, item 3), proven on a real
// bulwarkd running config/default.json's demo (SQLite, the shipped statements) plus one wide
// statement the scenario needs. Keys a scenario changes are named where it changes them.

#include "support/node_process.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

/// 10 000 rows of about 520 bytes (5 MB as JSON): far past the 64 KiB at which answers stream.
const json wide_statement = {
    {"sql", "SELECT id, printf('%0500d', id) AS pad FROM events ORDER BY id LIMIT 10000"},
    {"params", json::array()},
    {"read_only", true},
    {"cache_ttl_ms", 0}};

json demo_with_wide(json extra = json::object()) {
  auto cfg = test::shipped_demo();
  cfg["statements"]["wide_events"] = wide_statement;
  cfg.merge_patch(extra);
  return cfg;
}

/// A plain TCP client, for what an HTTP library would hide: a reader that stops reading, one
/// that goes away mid-answer, HTTP/1.0.
struct raw_client {
  int fd = -1;

  /// `rcvbuf`: the socket's receive buffer (small: the kernel holds little for a stalled reader).
  raw_client(uint16_t port, int rcvbuf = 0) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    if (rcvbuf > 0)
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~raw_client() { close(); }

  void close() {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }

  void send(const std::string& bytes) {
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size()));
  }

  void post(const std::string& statement, const std::string& version = "1.1",
            const std::string& extra_headers = "") {
    std::string body = R"({"params":[]})";
    send("POST /v1/query/" + statement + " HTTP/" + version + "\r\nHost: 127.0.0.1\r\n" +
         extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  }

  /// Reads until `n` bytes came, EOF, or `deadline`.
  std::string read(size_t n, std::chrono::milliseconds deadline = 10s) {
    std::string out;
    auto until = std::chrono::steady_clock::now() + deadline;
    char buf[4096];
    while (out.size() < n && std::chrono::steady_clock::now() < until) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0)
        continue;
      auto got = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
      if (got <= 0)
        break;
      out.append(buf, static_cast<size_t>(got));
    }
    return out;
  }

  std::string read_to_eof(std::chrono::milliseconds deadline = 10s) {
    return read(std::string::npos, deadline);
  }
};

double reserved_results(test::node_process& n) {
  return n.status()["memory_account"]["reserved"]["results"].get<double>();
}

/// Polls `f` until it holds, with a deadline (the node runs on its own threads and timers).
template <class F>
bool eventually(F f, std::chrono::milliseconds d = 10s) {
  auto until = std::chrono::steady_clock::now() + d;
  do {
    if (f())
      return true;
    std::this_thread::sleep_for(10ms);
  } while (std::chrono::steady_clock::now() < until);
  return false;
}

std::string outcome(const char* o) {
  return std::string{"bulwark_requests_total{outcome=\""} + o + "\"}";
}

const std::string breaker_failures =
    R"(bulwark_breaker_calls_total{breaker="backend",outcome="failure"})";

/// After a scenario: the wide answer, read by a client that keeps up, is whole (nothing of the
/// scenario kept a connection or a reservation), and the books balance with nothing in flight.
void serves_whole_and_balances(test::node_process& node) {
  auto whole = node.query("wide_events");
  REQUIRE(whole.status == 200);
  CHECK(json::parse(whole.body)["rows"].size() == 10000);
  auto b = test::scrape_books(node.port);
  CHECK(b.balanced());
  CHECK(b.in_flight == 0);
}

} // namespace

TEST_CASE("a large answer streams chunked as the same document; a small one keeps its length",
          "[streaming][integration]") {
  test::node_process node{demo_with_wide()};
  auto r = node.query("wide_events");
  REQUIRE(r.status == 200);
  CHECK(r.headers["transfer-encoding"] == "chunked");
  CHECK(r.headers.count("content-length") == 0);
  auto doc = json::parse(r.body);
  auto& rows = doc["rows"];
  REQUIRE(rows.size() == 10000);
  for (size_t i = 0; i < rows.size(); i += 997) {
    CHECK(rows[i][0] == int64_t(i + 1));
    CHECK(rows[i][1].get<std::string>().size() == 500);
  }
  CHECK(doc["columns"] == json::array({"id", "pad"}));
  CHECK(doc["truncated"] == false);
  CHECK(doc["warnings"] == json::array());
  CHECK(doc["limit"]["max_rows"] == 10000);

  auto small = node.query("user_by_id", json::array({1}));
  REQUIRE(small.status == 200);
  CHECK(small.headers.count("content-length") == 1);
  CHECK(small.headers.count("transfer-encoding") == 0);
  // The same keys either way: one document, rendered whole or in pieces.
  auto keys = [](const json& j) {
    std::vector<std::string> out;
    for (auto& [k, v] : j.items())
      out.push_back(k);
    return out;
  };
  CHECK(keys(json::parse(small.body)) == keys(doc));

  CHECK(test::metric(node.port, outcome("served")) == 2);
  CHECK(eventually([&] { return reserved_results(node) == 0; }));
  auto b = test::scrape_books(node.port);
  CHECK(b.balanced());
  CHECK(b.in_flight == 0);
}

TEST_CASE("a reader that stops reading holds one window; its deadline is not the backend's "
          "failure, and the write timeout closes it",
          "[streaming][integration]") {
  // Changed for the scenario: http.request_timeout_ms 1000 (the write timeout of a stalled
  // reader is max(this, 1 s); the default 10 s would only make the test slower).
  test::node_process node{demo_with_wide({{"http", {{"request_timeout_ms", 1000}}}})};
  raw_client stalled{node.port, 4096};
  stalled.post("wide_events", "1.1", "X-Request-Timeout-Ms: 400\r\n");
  auto head = stalled.read(12, 5s);
  REQUIRE(head == "HTTP/1.1 200");
  // While it stalls, what the answer holds is its stream's window, not its 5 MB (the account's
  // reservation for a streamed answer is result_cost(64 KiB) = 196 KiB and some).
  for (int i = 0; i < 20; ++i) {
    CHECK(reserved_results(node) <= 256 * 1024);
    std::this_thread::sleep_for(10ms);
  }
  // Another client is served meanwhile.
  auto other = node.query("user_by_id", json::array({2}));
  CHECK(other.status == 200);
  // The deadline passes while the fetch waits for the reader: cut, counted as the client's
  // timeout; the breaker does not count it against the backend.
  REQUIRE(eventually([&] { return test::metric(node.port, outcome("timed_out")) == 1; }));
  CHECK(test::metric(node.port, breaker_failures) == 0);
  // The server gives up on the stalled socket after the write timeout: the window comes back
  // without the client doing anything.
  CHECK(eventually([&] { return reserved_results(node) == 0; }, 10s));
  auto rest = stalled.read_to_eof(10s); // ends: the server closed it
  CHECK(rest.size() < 5'000'000);
  serves_whole_and_balances(node);
}

TEST_CASE("a client that goes away mid-answer stops the fetch; one outcome, memory comes back",
          "[streaming][integration]") {
  test::node_process node{demo_with_wide()};
  {
    raw_client gone{node.port, 4096};
    gone.post("wide_events");
    REQUIRE(gone.read(70'000, 5s).size() == 70'000); // the answer is streaming
  }                                                  // closed mid-answer
  REQUIRE(eventually([&] { return test::metric(node.port, outcome("served_truncated")) == 1; }));
  CHECK(eventually([&] { return reserved_results(node) == 0; }));
  CHECK(test::metric(node.port, breaker_failures) == 0);
  serves_whole_and_balances(node);
  CHECK(test::scrape_books(node.port).received == 2);
}

TEST_CASE("an HTTP/1.0 client gets the streamed answer delimited by the close",
          "[streaming][integration]") {
  test::node_process node{demo_with_wide()};
  raw_client old{node.port};
  old.post("wide_events", "1.0");
  auto all = old.read_to_eof(20s);
  auto split = all.find("\r\n\r\n");
  REQUIRE(split != std::string::npos);
  auto head = all.substr(0, split);
  CHECK(head.rfind("HTTP/1.0 200", 0) == 0);
  CHECK(head.find("Transfer-Encoding") == std::string::npos);
  CHECK(head.find("Content-Length") == std::string::npos);
  auto doc = json::parse(all.substr(split + 4));
  CHECK(doc["rows"].size() == 10000);
}

TEST_CASE("PostgreSQL answers stream too; a reader gone mid-answer cancels the server's work",
          "[streaming][integration][postgres]") {
  auto cfg = test::shipped_demo(test::suite_postgres());
  auto wide = wide_statement;
  wide["sql"] = "SELECT id, lpad(id::text, 500, '0') AS pad FROM events ORDER BY id LIMIT 10000";
  cfg["statements"]["wide_events"] = wide;
  test::node_process node{cfg};
  auto r = node.query("wide_events");
  REQUIRE(r.status == 200);
  CHECK(r.headers["transfer-encoding"] == "chunked");
  auto doc = json::parse(r.body);
  REQUIRE(doc["rows"].size() == 10000);
  CHECK(doc["rows"][9999][1] == std::string(495, '0') + "10000");
  {
    raw_client gone{node.port, 4096};
    gone.post("wide_events");
    REQUIRE(gone.read(70'000, 5s).size() == 70'000);
  }
  REQUIRE(eventually([&] { return test::metric(node.port, outcome("served_truncated")) == 1; }));
  CHECK(eventually([&] { return reserved_results(node) == 0; }));
  CHECK(test::metric(node.port, breaker_failures) == 0);
  // The connection that was cut serves again (its cancelled statement is done with).
  for (int i = 0; i < 3; ++i)
    serves_whole_and_balances(node);
}
