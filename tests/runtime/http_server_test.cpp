#include "runtime/http_server.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

http_config test_config() {
  http_config cfg;
  cfg.listen = "127.0.0.1:0";
  cfg.threads = 2;
  cfg.request_timeout = 2000ms;
  cfg.idle_timeout = 2000ms;
  return cfg;
}

struct response {
  int status = 0;
  std::map<std::string, std::string> headers; ///< names lower-cased
  std::string body;
  std::string header(const std::string& name) const {
    auto i = headers.find(name);
    return i == headers.end() ? std::string() : i->second;
  }
};

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// A blocking raw TCP client; every read gives up after 5 s so a broken server fails the test
/// instead of hanging it.
class client {
public:
  /// Connects to 127.0.0.1, or to [::1] with `ipv6`.
  explicit client(uint16_t port, bool ipv6 = false) {
    fd_ = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (ipv6) {
      sockaddr_in6 addr{};
      addr.sin6_family = AF_INET6;
      addr.sin6_port = htons(port);
      addr.sin6_addr = in6addr_loopback;
      REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    } else {
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(port);
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    }
  }
  ~client() { ::close(fd_); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  bool send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      auto n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  /// Reads one whole response (Content-Length framing); nullopt when the connection ends first.
  std::optional<response> read_response() {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill())
        return std::nullopt;
    response res;
    std::string head = buf_.substr(0, end);
    size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    res.status = std::stoi(status_line.substr(status_line.find(' ') + 1, 3));
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t next = head.find("\r\n", pos);
      if (next == std::string::npos)
        next = head.size();
      std::string line = head.substr(pos, next - pos);
      auto colon = line.find(':');
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      res.headers.emplace(lower(line.substr(0, colon)), value);
      pos = next + 2;
    }
    size_t length =
        res.headers.count("content-length") ? std::stoul(res.headers.at("content-length")) : 0;
    while (buf_.size() < end + 4 + length)
      if (!fill())
        return std::nullopt;
    res.body = buf_.substr(end + 4, length);
    buf_.erase(0, end + 4 + length);
    return res;
  }

  /// Reads until the server closes the connection (EOF or reset): true; false on the 5 s timeout.
  bool wait_closed() {
    for (;;) {
      char tmp[4096];
      auto n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n > 0) {
        buf_.append(tmp, static_cast<size_t>(n));
        continue;
      }
      if (n == 0)
        return true;
      if (errno == EINTR)
        continue;
      return errno != EAGAIN && errno != EWOULDBLOCK;
    }
  }

  const std::string& unread() const { return buf_; }

  /// Reads until `text` has arrived (kept unread); false when the connection ends first.
  bool wait_for(const std::string& text) {
    while (buf_.find(text) == std::string::npos)
      if (!fill())
        return false;
    return true;
  }

private:
  bool fill() {
    char tmp[4096];
    for (;;) {
      auto n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n > 0) {
        buf_.append(tmp, static_cast<size_t>(n));
        return true;
      }
      if (n < 0 && errno == EINTR)
        continue;
      return false;
    }
  }

  int fd_ = -1;
  std::string buf_;
};

/// Requests the handler received, with their responders, for the test thread to answer.
class inbox {
public:
  void push(http_request&& req, http_responder res) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      items_.emplace_back(std::move(req), std::move(res));
    }
    cv_.notify_all();
  }
  std::pair<http_request, http_responder> pop() {
    std::unique_lock<std::mutex> lk(mu_);
    bool got = cv_.wait_for(lk, 5s, [&] { return !items_.empty(); });
    REQUIRE(got);
    auto item = std::move(items_.front());
    items_.pop_front();
    return item;
  }
  http_handler handler() {
    return [this](http_request&& req, http_responder res) { push(std::move(req), std::move(res)); };
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<http_request, http_responder>> items_;
};

http_response text(unsigned status, std::string body) {
  http_response res;
  res.status = status;
  res.content_type = "text/plain";
  res.body = std::move(body);
  return res;
}

/// Answers every request at once with "<method> <path>".
http_handler echo_handler() {
  return [](http_request&& req, http_responder res) {
    res(text(200, req.method + " " + req.path + (req.body.empty() ? "" : " " + req.body)));
  };
}

/// Counts the requests that reach it (tests check that rejected ones never do).
http_handler counting_handler(std::atomic<int>& calls) {
  return [&calls](http_request&&, http_responder res) {
    ++calls;
    res(text(200, "no"));
  };
}

const std::string simple_get = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// Whether this machine has an IPv6 loopback: a plain socket can bind [::1].
bool ipv6_loopback_available() {
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0)
    return false;
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

long elapsed_ms(clock_type::time_point since) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - since).count());
}

} // namespace

TEST_CASE("http server answers a GET with the handler's status, headers and body", "[http]") {
  std::mutex mu;
  http_request seen;
  http_server srv(test_config(), [&](http_request&& req, http_responder res) {
    {
      std::lock_guard<std::mutex> lk(mu);
      seen = req;
    }
    http_response out;
    out.status = 201;
    out.headers.emplace_back("Retry-After", "7");
    out.body = R"({"ok":true})";
    res(std::move(out));
  });
  srv.start();
  REQUIRE(srv.port() != 0);

  client c(srv.port());
  REQUIRE(c.send("GET /v1/status?verbose=1&x=2 HTTP/1.1\r\nHost: test\r\nX-Custom: Hello\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 201);
  CHECK(res->body == R"({"ok":true})");
  CHECK(res->header("content-type") == "application/json");
  CHECK(res->header("content-length") == "11");
  CHECK(res->header("server") == "bulwark");
  CHECK(res->header("retry-after") == "7");
  CHECK(res->header("connection") != "close");

  std::lock_guard<std::mutex> lk(mu);
  CHECK(seen.method == "GET");
  CHECK(seen.path == "/v1/status");
  CHECK(seen.query == "verbose=1&x=2");
  CHECK(seen.header("x-custom") == "Hello");
  CHECK(seen.header("host") == "test");
  CHECK(seen.header("absent").empty());
  CHECK(seen.peer.rfind("127.0.0.1:", 0) == 0);
  CHECK(srv.stats().requests == 1);
}

TEST_CASE("http server writes a response given later from another thread", "[http]") {
  inbox box;
  http_server srv(test_config(), box.handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"));
  auto [req, responder] = box.pop();
  CHECK(req.method == "POST");
  CHECK(req.body == "hello");
  CHECK(srv.stats().in_flight == 1);
  std::thread other([r = responder] { r(text(202, "later")); });
  other.join();
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 202);
  CHECK(res->body == "later");
  CHECK(res->header("content-type") == "text/plain");
}

TEST_CASE("http server serves two requests on one keep-alive connection", "[http]") {
  http_server srv(test_config(), echo_handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("GET /one HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto first = c.read_response();
  REQUIRE(first);
  CHECK(first->body == "GET /one");
  REQUIRE(c.send("POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"));
  auto second = c.read_response();
  REQUIRE(second);
  CHECK(second->body == "POST /two abc");
  auto st = srv.stats();
  CHECK(st.connections_accepted == 1);
  CHECK(st.requests == 2);
  CHECK(st.open_connections == 1);
}

TEST_CASE("http server answers a malformed request line with 400 and closes", "[http]") {
  std::atomic<int> calls{0};
  http_server srv(test_config(), counting_handler(calls));
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("GET\x01 / HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 400);
  CHECK(res->header("content-type") == "application/json");
  CHECK(res->header("connection") == "close");
  CHECK(res->body.find(R"("error":"bad_request")") != std::string::npos);
  CHECK(res->body.find(R"("detail":")") != std::string::npos);
  CHECK(c.wait_closed());
  CHECK(calls == 0);
  CHECK(srv.stats().bad_requests == 1);
}

TEST_CASE("http server answers a header block over the limit with 431 and closes", "[http]") {
  auto cfg = test_config();
  cfg.max_header_bytes = 1024;
  http_server srv(cfg, echo_handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 431);
  CHECK(res->body == R"({"error":"request_header_fields_too_large"})");
  CHECK(res->header("connection") == "close");
  CHECK(c.wait_closed());
}

TEST_CASE(
    "http server rejects a Content-Length over the body limit with 413 before the body is sent",
    "[http]") {
  auto cfg = test_config();
  cfg.max_body_bytes = 1024;
  std::atomic<int> calls{0};
  http_server srv(cfg, counting_handler(calls));
  srv.start();
  client c(srv.port());
  // Only the header is sent: the answer must not wait for the 10 MB body.
  REQUIRE(c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 413);
  CHECK(res->header("content-type") == "application/json");
  CHECK(res->header("connection") == "close");
  CHECK(res->body.find("payload_too_large") != std::string::npos);
  CHECK(c.wait_closed());
  CHECK(calls == 0);
}

TEST_CASE("http server rejects a chunked body over the limit with 413", "[http]") {
  auto cfg = test_config();
  cfg.max_body_bytes = 16;
  http_server srv(cfg, echo_handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "20\r\n" +
                 std::string(32, 'x') + "\r\n0\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 413);
  CHECK(c.wait_closed());
}

TEST_CASE("http server answers a request that arrives too slowly with 408 within the request "
          "timeout",
          "[http]") {
  auto cfg = test_config();
  cfg.request_timeout = 200ms;
  http_server srv(cfg, echo_handler());
  srv.start();
  client c(srv.port());
  auto t0 = clock_type::now();
  REQUIRE(c.send("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: "));
  // A slowloris: one more byte every 50 ms, the request never completes.
  std::atomic<bool> quit{false};
  std::thread trickle([&] {
    while (!quit.load() && c.send("a"))
      std::this_thread::sleep_for(50ms);
  });
  auto res = c.read_response();
  auto took = elapsed_ms(t0);
  bool closed = c.wait_closed();
  quit = true;
  trickle.join();
  REQUIRE(res);
  CHECK(res->status == 408);
  CHECK(res->header("connection") == "close");
  CHECK(res->body == R"({"error":"request_timeout"})");
  CHECK(closed);
  CHECK(took >= 150);
  CHECK(took < 1500);
}

TEST_CASE("http server closes a keep-alive connection idle for longer than the idle timeout",
          "[http]") {
  auto cfg = test_config();
  cfg.idle_timeout = 200ms;
  http_server srv(cfg, echo_handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send(simple_get));
  REQUIRE(c.read_response());
  auto t0 = clock_type::now();
  CHECK(c.wait_closed());
  auto took = elapsed_ms(t0);
  CHECK(took >= 150);
  CHECK(took < 1500);
  CHECK(c.unread().empty()); // closed without an answer
}

TEST_CASE("http server answers connections beyond the cap with 503 and closes them", "[http]") {
  auto cfg = test_config();
  cfg.max_connections = 1;
  http_server srv(cfg, echo_handler());
  srv.start();
  client first(srv.port());
  REQUIRE(first.send(simple_get)); // once answered, the server has surely counted it
  REQUIRE(first.read_response());

  client second(srv.port());
  auto res = second.read_response();
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK(res->header("connection") == "close");
  CHECK(res->header("content-type") == "application/json");
  CHECK(res->body == R"({"error":"too_many_connections"})");
  CHECK(second.wait_closed());

  // The admitted connection still works.
  REQUIRE(first.send(simple_get));
  REQUIRE(first.read_response());
  auto st = srv.stats();
  CHECK(st.connections_rejected == 1);
  CHECK(st.connections_accepted == 1);
}

TEST_CASE("http server answers 503 handler_timeout when the handler never answers and ignores the "
          "late answer",
          "[http]") {
  auto cfg = test_config();
  cfg.request_timeout = 200ms;
  inbox box;
  http_server srv(cfg, box.handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send(simple_get));
  auto [req, late] = box.pop();
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK(res->body == R"({"error":"handler_timeout"})");

  late(text(200, "late")); // ignored: the server answered already
  REQUIRE(c.send("GET /again HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto [req2, responder2] = box.pop();
  responder2(text(200, "second"));
  auto next = c.read_response();
  REQUIRE(next);
  CHECK(next->body == "second");
  CHECK(srv.drain(1s)); // both requests are accounted for
  CHECK(srv.stats().in_flight == 0);
  CHECK(srv.stats().requests == 2);
}

TEST_CASE("http server writes only the first answer when the responder is called twice", "[http]") {
  http_server srv(test_config(), [](http_request&& req, http_responder res) {
    res(text(200, "first " + req.path));
    res(text(500, "second " + req.path));
  });
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("GET /a HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto a = c.read_response();
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(a->body == "first /a");
  REQUIRE(c.send("GET /b HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto b = c.read_response();
  REQUIRE(b);
  CHECK(b->body == "first /b");
}

TEST_CASE("http server drain waits for an in-flight request answered by another thread", "[http]") {
  inbox box;
  http_server srv(test_config(), box.handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send(simple_get));
  auto [req, responder] = box.pop();
  srv.stop_accepting();
  std::thread answer([r = responder] {
    std::this_thread::sleep_for(50ms); // let drain() start waiting; it is correct either way
    r(text(200, "done"));
  });
  CHECK(srv.drain(5s));
  answer.join();
  CHECK(srv.stats().in_flight == 0);
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->body == "done");
  CHECK(res->header("connection") == "close");
  CHECK(c.wait_closed());
  srv.stop();
}

TEST_CASE("http server tells keep-alive clients to close once draining", "[http]") {
  inbox box;
  http_server srv(test_config(), box.handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send(simple_get));
  auto [req, responder] = box.pop();
  CHECK_FALSE(srv.drain(1ms)); // still in flight; the server is now draining
  responder(text(200, "bye"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->header("connection") == "close");
  CHECK(c.wait_closed());
  CHECK(srv.drain(1s));
}

TEST_CASE("http server drain returns false on timeout when a request never completes, then stop "
          "works",
          "[http]") {
  auto cfg = test_config();
  cfg.request_timeout = 10s;
  inbox box;
  http_server srv(cfg, box.handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send(simple_get));
  auto [req, responder] = box.pop();
  auto t0 = clock_type::now();
  CHECK_FALSE(srv.drain(100ms));
  CHECK(elapsed_ms(t0) >= 90);
  CHECK(srv.stats().in_flight == 1);
  t0 = clock_type::now();
  srv.stop();
  CHECK(elapsed_ms(t0) < 1000);
  CHECK(c.wait_closed());
  responder(text(200, "too late")); // after stop: ignored, harmless
}

TEST_CASE("http server answers what is still in flight past the drain 503 shutting_down, once, "
          "and tells the handler",
          "[http]") {
  auto cfg = test_config();
  cfg.request_timeout = 10s;
  inbox box;
  std::atomic<int> hooks{0};
  http_server srv(cfg, [&](http_request&& req, http_responder res) {
    res.on_server_answer([&hooks](server_answer why) {
      if (why == server_answer::shutting_down)
        ++hooks;
    });
    box.push(std::move(req), std::move(res));
  });
  srv.start();
  client a(srv.port());
  client b(srv.port());
  client idle(srv.port()); // connected, nothing asked: not a request in flight
  // One at a time, so the first request popped is a's (two in flight at once may arrive in
  // either order).
  REQUIRE(a.send(simple_get));
  auto [ra, answer_a] = box.pop();
  REQUIRE(b.send(simple_get));
  auto [rb, answer_b] = box.pop();
  CHECK(answer_b(text(200, "in time"))); // b's answer is out before the drain ends
  CHECK_FALSE(srv.drain(50ms));          // a is still running
  CHECK(srv.answer_in_flight(2s) == 1);
  CHECK(srv.stats().in_flight == 0);
  CHECK(hooks == 1);
  auto res_a = a.read_response();
  REQUIRE(res_a);
  CHECK(res_a->status == 503);
  CHECK_THAT(res_a->body, Catch::Contains("shutting_down"));
  CHECK(res_a->header("retry-after") == "1");
  CHECK(res_a->header("connection") == "close");
  CHECK(a.wait_closed());
  auto res_b = b.read_response();
  REQUIRE(res_b);
  CHECK(res_b->body == "in time");
  CHECK_FALSE(answer_a(text(200, "too late"))); // the server's answer won
  CHECK(srv.answer_in_flight(100ms) == 0);      // nothing left: nothing answered twice
  srv.stop();
}

TEST_CASE("http server stop with open connections returns promptly", "[http]") {
  auto cfg = test_config();
  cfg.request_timeout = 10s;
  cfg.idle_timeout = 10s;
  inbox box;
  http_responder kept;
  {
    http_server srv(cfg, box.handler());
    srv.start();
    client idle(srv.port());
    client partial(srv.port());
    client busy(srv.port());
    REQUIRE(partial.send("GET / HTTP/1.1\r\nHost: t\r\n"));
    REQUIRE(busy.send(simple_get));
    kept = box.pop().second;
    auto t0 = clock_type::now();
    srv.stop();
    srv.stop(); // idempotent
    CHECK(elapsed_ms(t0) < 1000);
    CHECK(idle.wait_closed());
    CHECK(partial.wait_closed());
    CHECK(busy.wait_closed());
  }
  kept(text(200, "server gone")); // after destruction: ignored, harmless
}

TEST_CASE("http server start throws naming the address when the port is taken", "[http]") {
  http_server first(test_config(), echo_handler());
  first.start();
  auto cfg = test_config();
  cfg.listen = "127.0.0.1:" + std::to_string(first.port());
  http_server second(cfg, echo_handler());
  REQUIRE_THROWS_WITH(second.start(), Catch::Contains("cannot listen on " + cfg.listen));

  cfg.listen = "no-port-here";
  http_server third(cfg, echo_handler());
  REQUIRE_THROWS_WITH(third.start(), Catch::Contains("cannot listen on no-port-here"));
}

TEST_CASE("http server listens on an IPv6 address in brackets", "[http]") {
  if (!ipv6_loopback_available()) {
    WARN("skipped: this machine cannot bind a socket to [::1]");
    return;
  }
  auto cfg = test_config();
  cfg.listen = "[::1]:0";
  http_server srv(cfg, echo_handler());
  srv.start(); // the machine has [::1]: failing to listen there is a failure
  REQUIRE(srv.port() != 0);
  client c(srv.port(), true);
  REQUIRE(c.send("GET /six HTTP/1.1\r\nHost: [::1]\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body == "GET /six");
}

TEST_CASE("http server answers HEAD with the headers only, so the next answer on the connection "
          "parses",
          "[http]") {
  http_server srv(test_config(), echo_handler());
  srv.start();
  client c(srv.port());
  // Both at once: a body after the HEAD answer would be read as the start of the GET's answer.
  REQUIRE(c.send("HEAD /h HTTP/1.1\r\nHost: t\r\n\r\nGET /g HTTP/1.1\r\nHost: t\r\n\r\n"));
  REQUIRE(c.wait_for("GET /g")); // the GET's body: the end of both answers
  auto& got = c.unread();
  auto head_end = got.find("\r\n\r\n");
  REQUIRE(head_end != std::string::npos);
  std::string head = lower(got.substr(0, head_end));
  CHECK(head.rfind("http/1.1 200", 0) == 0);
  CHECK(head.find("content-length: 7") != std::string::npos); // what a GET's body would be
  CHECK(got.compare(head_end + 4, 9, "HTTP/1.1 ") == 0);      // the GET's answer follows at once
  CHECK(got.find("HEAD /h", head_end) == std::string::npos);
}

TEST_CASE("http server responder says which answer won, and the timeout hook runs only when the "
          "handler timeout answered",
          "[http]") {
  auto cfg = test_config();
  cfg.request_timeout = 200ms;
  inbox box;
  http_server srv(cfg, [&box](http_request&& req, http_responder res) {
    res.on_server_answer([path = req.path, &box](server_answer) {
      http_request marker;
      marker.path = "timeout " + path;
      box.push(std::move(marker), http_responder{});
    });
    box.push(std::move(req), std::move(res));
  });
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("GET /fast HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto [fast, answer_fast] = box.pop();
  bool won = false;
  CHECK(answer_fast(text(200, "fast"), [&] { won = true; })); // runs before the answer leaves
  CHECK(won);                                                 // the first answer wins
  CHECK_FALSE(answer_fast(text(500, "again")));               // a second one is dropped
  auto a = c.read_response();
  REQUIRE(a);
  CHECK(a->body == "fast");

  REQUIRE(c.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto [slow, answer_slow] = box.pop();
  auto b = c.read_response();
  REQUIRE(b);
  CHECK(b->status == 503);
  auto hook = box.pop(); // the hook ran for /slow, and never for /fast
  CHECK(hook.first.path == "timeout /slow");
  bool late_won = false;
  CHECK_FALSE(answer_slow(text(200, "late"), [&] { late_won = true; })); // the timeout won
  CHECK_FALSE(late_won);
}

TEST_CASE("http server answers Expect 100-continue before the client sends the body", "[http]") {
  http_server srv(test_config(), echo_handler());
  srv.start();
  client c(srv.port());
  REQUIRE(
      c.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = c.read_response();
  REQUIRE(interim);
  CHECK(interim->status == 100);
  REQUIRE(c.send("data"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body == "POST /up data");
}

TEST_CASE("http server closes an HTTP/1.0 connection after its answer", "[http]") {
  http_server srv(test_config(), echo_handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("GET /old HTTP/1.0\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->body == "GET /old");
  CHECK(res->header("connection") == "close");
  CHECK(c.wait_closed());
}

// -- RFC 9110/9112 (issue 20) --------------------------------------------------------------------

TEST_CASE("http server answers 400 to an HTTP/1.1 request without Host or with two", "[http]") {
  std::atomic<int> calls{0};
  http_server srv(test_config(), counting_handler(calls));
  srv.start();
  for (const char* request :
       {"GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"}) {
    INFO(request);
    client c(srv.port());
    REQUIRE(c.send(request));
    auto res = c.read_response();
    REQUIRE(res);
    CHECK(res->status == 400);
    CHECK(res->body.find(R"("error":"bad_request")") != std::string::npos);
    CHECK(res->body.find("Host") != std::string::npos);
    CHECK(c.wait_closed());
  }
  CHECK(calls == 0);
}

TEST_CASE("http server answers 501 to a transfer coding other than chunked", "[http]") {
  std::atomic<int> calls{0};
  http_server srv(test_config(), counting_handler(calls));
  srv.start();
  client c(srv.port());
  // A gzip body inside chunked framing: reading it as plain JSON would be wrong.
  REQUIRE(c.send("POST /v1/query/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                 "2\r\n{}\r\n0\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 501);
  CHECK(res->body.find(R"("error":"not_implemented")") != std::string::npos);
  CHECK(calls == 0);

  // Plain chunked is fine.
  http_server ok(test_config(), echo_handler());
  ok.start();
  client d(ok.port());
  REQUIRE(d.send("POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "2\r\n{}\r\n0\r\n\r\n"));
  auto fine = d.read_response();
  REQUIRE(fine);
  CHECK(fine->status == 200);
  CHECK(fine->body == "POST /c {}");
}

TEST_CASE("http server routes an absolute-form target by its path", "[http]") {
  std::mutex mu;
  http_request seen;
  http_server srv(test_config(), [&](http_request&& req, http_responder res) {
    {
      std::lock_guard<std::mutex> lk(mu);
      seen = req;
    }
    res(text(200, "ok"));
  });
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("POST http://127.0.0.1:8080/v1/query/x?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                 "Content-Length: 0\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 200);
  REQUIRE(c.send("GET HTTP://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"));
  REQUIRE(c.read_response());
  std::lock_guard<std::mutex> lk(mu);
  CHECK(seen.path == "/"); // the second: an authority without a path is "/"
  CHECK(seen.query.empty());
}

TEST_CASE("http server passes the path and query of an absolute-form target", "[http]") {
  inbox box;
  http_server srv(test_config(), box.handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("POST http://127.0.0.1:8080/v1/query/x?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Length: 0\r\n\r\n"));
  auto [req, responder] = box.pop();
  CHECK(req.path == "/v1/query/x");
  CHECK(req.query == "a=1");
  responder(text(200, "ok"));
  REQUIRE(c.read_response());
}

TEST_CASE("http server answers 501 to a method it does not implement and passes known ones",
          "[http]") {
  http_server srv(test_config(), echo_handler());
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 501);
  CHECK(res->body.find(R"("error":"not_implemented")") != std::string::npos);
  client d(srv.port());
  REQUIRE(d.send("PUT /pot HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
  auto put = d.read_response();
  REQUIRE(put);
  CHECK(put->status == 200); // the handler decides whether a route takes PUT (405 with Allow)
  CHECK(put->body == "PUT /pot");
}

TEST_CASE("http server answers 400 with JSON to a target with bytes outside visible ASCII",
          "[http]") {
  std::atomic<int> calls{0};
  http_server srv(test_config(), counting_handler(calls));
  srv.start();
  client c(srv.port());
  REQUIRE(c.send("GET /nope\xff HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto res = c.read_response();
  REQUIRE(res);
  CHECK(res->status == 400);
  CHECK(res->header("content-type") == "application/json");
  CHECK(res->body.find(R"("error":"bad_request")") != std::string::npos);
  CHECK(calls == 0);
  client d(srv.port());
  REQUIRE(d.send(simple_get));
  auto next = d.read_response();
  REQUIRE(next);
  CHECK(next->status == 200);
}
