#pragma once
/// An asynchronous HTTP/1.1 server on Boost.Beast, on its own I/O threads (never CAF's). It knows
/// nothing of actors: each request is handed to an `http_handler` with a responder that may be
/// called later, from any thread (the engine calls it from an actor's response handler), exactly
/// once. Limits: header bytes (431), body bytes (413), malformed requests (400), a whole-request
/// read deadline (408, then close), an idle keep-alive timeout (close), and a connection cap (503
/// and close). By RFC 9110/9112 it also refuses, before the handler: a target that is not visible
/// ASCII or not a path (400; an absolute-form target is routed by its path), an HTTP/1.1 request
/// without Host or any request with two (400), a transfer coding other than chunked (501) and a
/// method outside GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH (501). Nothing a
/// client sends can crash or hang it.

#include "actors/detail/memory_account.hpp"
#include "actors/detail/result_stream.hpp"

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace bulwark {

struct http_config {
  /// http.listen: "host:port"; port 0 picks a free port (see http_server::port()).
  std::string listen = "127.0.0.1:8080";
  /// http.threads: I/O threads.
  size_t threads = 1;
  /// http.max_connections: connections beyond this get 503 and are closed.
  size_t max_connections = 1024;
  /// http.max_header_bytes: request line + headers; beyond it 431.
  size_t max_header_bytes = 8 * 1024;
  /// http.max_body_bytes: beyond it 413.
  size_t max_body_bytes = 1024 * 1024;
  /// http.request_timeout_ms: a request must arrive whole within this (408, then close), and the
  /// handler must answer within it (503).
  std::chrono::milliseconds request_timeout{10000};
  /// http.idle_timeout_ms: a keep-alive connection with no request for this long is closed.
  std::chrono::milliseconds idle_timeout{30000};
  /// http.stream_after_bytes: a query answer whose rows pass this many bytes (the backend's
  /// count) is streamed, chunked, instead of rendered whole; 0: never (the HTTP API's; see
  /// actors/detail/result_stream.hpp).
  size_t stream_after_bytes = 64 * 1024;
  /// http.stream_window_bytes: how far a streamed answer's fetch may run ahead of the socket.
  size_t stream_window_bytes = 64 * 1024;
  /// http.trusted_proxies: CIDR ranges ("10.0.0.0/8", "fd00::/8", a bare address) of the proxies
  /// whose X-Client-Id and X-Forwarded-For headers name the client (runtime/http_api.hpp's
  /// client_key). Empty (the default): nobody's, and every client is its address. Read by the
  /// HTTP API, not by the server.
  std::vector<std::string> trusted_proxies;
  /// The node's memory account (null: none). A request body reserves its Content-Length (a
  /// chunked one, max_body_bytes) before it is read, until the handler has taken it, as work of
  /// high priority (refused only when the whole budget is taken); no room: 503
  /// insufficient_memory with Retry-After, and close. Requests without a body (probes, metrics)
  /// never ask.
  std::shared_ptr<detail::memory_account> account;
};

struct http_request {
  std::string method; ///< "GET", "POST", ...
  std::string path;   ///< the target without the query string, e.g. "/v1/status"
  std::string query;  ///< after '?', empty when none
  std::vector<std::pair<std::string, std::string>> headers; ///< names lower-cased
  std::string body;
  std::string peer; ///< "127.0.0.1:54321"

  /// The first header with this (lower-case) name, or an empty string.
  std::string header(const std::string& lower_name) const;
};

struct http_response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers; ///< extra headers (Retry-After, ...)
  std::string body;
  /// Kept alive until the answer is written or the connection is gone (a query's memory
  /// reservation, so the bytes on their way out stay counted).
  std::shared_ptr<const void> hold;
  /// The body comes from this stream instead of `body` (actors/detail/result_stream.hpp):
  /// written as it comes, chunked (HTTP/1.0: delimited by the close), each piece within the
  /// write timeout, and only as fast as the client reads, since the stream's producer waits for
  /// room. A client that goes away or stalls past the write timeout is closed and the stream
  /// cut ("client"). After the last chunk the request is done, like any answer.
  std::shared_ptr<detail::result_stream> stream;
};

struct http_pending_answer;

/// Why the server answered a request for its handler.
enum class server_answer {
  handler_timeout, ///< 503 handler_timeout: no answer within http.request_timeout_ms
  shutting_down,   ///< 503 shutting_down: still in flight when the drain time ran out
};

/// A non-owning reference to a `void()` callable, for the duration of the call it is passed to:
/// the hook an answer runs when it wins. A std::function of a lambda that captures more than two
/// words allocates; this never does (every answer passes one).
class answer_hook {
public:
  answer_hook() = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, answer_hook>>>
  answer_hook(F&& f) // NOLINT: converts like std::function, but refers
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o) { (*static_cast<std::remove_reference_t<F>*>(o))(); }) {}
  explicit operator bool() const { return call_ != nullptr; }
  void operator()() const { call_(obj_); }

private:
  void* obj_ = nullptr;
  void (*call_)(void*) = nullptr;
};

/// Answers one request; copies share it. The request gets exactly one answer: the first of the
/// handler's (a call, from any thread) and the server's own (503 handler_timeout, or 503
/// shutting_down past the drain); the other is dropped.
class http_responder {
public:
  http_responder() = default;
  explicit http_responder(std::shared_ptr<http_pending_answer> p) : p_(std::move(p)) {}

  /// True when this answer is the one the request gets (it is written unless the client went
  /// away); false when it came second: after an earlier call or the handler timeout.
  /// `won` runs when it wins, before the answer can reach the client (to count it: a client
  /// that has the answer then sees it counted).
  bool operator()(http_response r, answer_hook won = {}) const;

  /// Runs, on an I/O thread, when the server answered the request itself (see server_answer),
  /// before that answer leaves; never when the handler's answer won. Lets the handler count what
  /// the client got. Call it from inside the handler call.
  void on_server_answer(std::function<void(server_answer)> f) const;

private:
  std::shared_ptr<http_pending_answer> p_;
};

using http_handler = std::function<void(http_request&&, http_responder)>;

struct http_server_stats {
  uint64_t connections_accepted = 0;
  uint64_t connections_rejected = 0; ///< over max_connections
  uint64_t requests = 0;
  uint64_t bad_requests = 0; ///< answered 400, 408, 413, 431 or 501 by the server itself
  uint64_t in_flight = 0;    ///< requests handed to the handler and not yet answered
  uint64_t open_connections = 0;
};

class http_server {
public:
  http_server(http_config cfg, http_handler handler);
  ~http_server(); ///< stop()s

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Binds and starts the I/O threads. Throws std::runtime_error naming the address on failure.
  void start();

  /// The bound port (useful with port 0). Valid after start().
  uint16_t port() const;

  /// Stops accepting new connections; requests already read are still answered.
  void stop_accepting();

  /// Waits until no request is in flight or `timeout` passed; returns true when drained.
  /// Keep-alive connections are told to close after their current response.
  bool drain(std::chrono::milliseconds timeout);

  /// After a drain that ran out: answers every request still in flight 503 shutting_down
  /// (Retry-After, Connection: close; the handler's hook counts it, see on_server_answer), then
  /// waits up to `wait` for those answers to be written. Returns how many it answered.
  std::size_t answer_in_flight(std::chrono::milliseconds wait);

  /// Closes every connection and joins the I/O threads. Idempotent.
  void stop();

  http_server_stats stats() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace bulwark
