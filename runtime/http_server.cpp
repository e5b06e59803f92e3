#include "runtime/http_server.hpp"

#include "actors/detail/host_port.hpp"
#include "runtime/json_render.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/range/iterator_range.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

namespace bulwark {

std::string http_request::header(const std::string& lower_name) const {
  for (const auto& [name, value] : headers)
    if (boost::beast::iequals(name, lower_name))
      return value;
  return {};
}

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = beast::error_code;
using std::chrono::milliseconds;

// -- small helpers ------------------------------------------------------------------------------

http_response error_response(unsigned status, std::string_view code, std::string_view detail = {}) {
  http_response res;
  res.status = status;
  res.content_type = "application/json";
  res.body = "{\"error\":" + json_quote(code);
  if (!detail.empty())
    res.body += ",\"detail\":" + json_quote(detail);
  res.body += "}";
  return res;
}

/// Why a request that Beast parsed is refused before the handler sees it (RFC 9110/9112).
struct refusal {
  unsigned status;
  const char* code;
  std::string detail;
};

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// The origin-form of `target` ("/path?query"): an absolute-form target
/// ("http://host:port/path?query", RFC 9112 section 3.2.2) is routed by its path. Empty when the
/// target is neither (authority-form, asterisk-form or garbage).
std::string origin_form(std::string_view target) {
  if (!target.empty() && target.front() == '/')
    return std::string(target);
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() < scheme.size() || lower_ascii(target.substr(0, scheme.size())) != scheme)
      continue;
    auto rest = target.substr(scheme.size());
    auto end_of_authority = rest.find_first_of("/?");
    if (end_of_authority == 0)
      return {}; // no authority
    if (end_of_authority == std::string_view::npos)
      return "/";
    auto tail = rest.substr(end_of_authority);
    return tail.front() == '/' ? std::string(tail) : "/" + std::string(tail);
  }
  return {};
}

/// The checks the RFCs ask of every request, in the order a client most needs to hear about:
/// a target that is not visible ASCII or not a path (400), no Host in HTTP/1.1 or more than one
/// (400, RFC 9112 section 3.2), a transfer coding other than chunked (501, section 6.1), a method
/// this server does not implement (501, RFC 9110 section 15.6.2; a known method on a route that
/// does not take it is the handler's 405).
template <class Message>
std::optional<refusal> refuse(const Message& msg, std::string& path_and_query) {
  std::string_view target = msg.target();
  bool visible = std::all_of(target.begin(), target.end(),
                             [](unsigned char c) { return c > 0x20 && c < 0x7f; });
  path_and_query = visible ? origin_form(target) : std::string{};
  if (path_and_query.empty())
    return refusal{400, "bad_request",
                   "the request target must be a path (/...) or an absolute http URL of visible "
                   "ASCII characters"};
  auto hosts = msg.count(http::field::host);
  if (hosts > 1 || (hosts == 0 && msg.version() >= 11))
    return refusal{400, "bad_request",
                   hosts == 0 ? "an HTTP/1.1 request needs a Host header"
                              : "more than one Host header"};
  std::vector<std::string> codings;
  for (auto& field : boost::make_iterator_range(msg.equal_range(http::field::transfer_encoding))) {
    std::string_view value = field.value();
    while (!value.empty()) {
      auto comma = value.find(',');
      auto item = value.substr(0, comma);
      auto first = item.find_first_not_of(" \t");
      auto last = item.find_last_not_of(" \t");
      if (first != std::string_view::npos)
        codings.push_back(lower_ascii(item.substr(first, last - first + 1)));
      value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    }
  }
  if (!codings.empty() && codings != std::vector<std::string>{"chunked"})
    return refusal{501, "not_implemented",
                   "Transfer-Encoding " + std::string(msg[http::field::transfer_encoding]) +
                       " is not supported (only chunked)"};
  static constexpr std::string_view implemented[] = {
      "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  auto method = msg.method_string();
  if (std::find(std::begin(implemented), std::end(implemented), method) == std::end(implemented))
    return refusal{501, "not_implemented", "method " + std::string(method) + " is not implemented"};
  return std::nullopt;
}

/// The answer to a connection over max_connections: written before any byte is read.
const std::string& reject_response() {
  static const std::string text = [] {
    const std::string body = R"({"error":"too_many_connections"})";
    return "HTTP/1.1 503 Service Unavailable\r\nServer: bulwark\r\nContent-Type: "
           "application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  }();
  return text;
}

const std::string continue_response = "HTTP/1.1 100 Continue\r\n\r\n";

bool header_safe(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

/// Whether a handler's header goes out as given: a safe name and value, and not one of the
/// framing headers, which are the server's.
bool own_field(const std::string& name, const std::string& value) {
  return !name.empty() && header_safe(name) && header_safe(value) &&
         !beast::iequals(name, "content-length") && !beast::iequals(name, "transfer-encoding") &&
         !beast::iequals(name, "connection");
}

std::string format_endpoint(const tcp::endpoint& ep) {
  auto addr = ep.address();
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    addr = net::ip::make_address_v4(net::ip::v4_mapped, addr.to_v6());
  if (addr.is_v6())
    return "[" + addr.to_string() + "]:" + std::to_string(ep.port());
  return addr.to_string() + ":" + std::to_string(ep.port());
}

/// Splits "host:port" or "[v6]:port" (detail/host_port.hpp; an empty host or "*" is every
/// interface). Throws std::invalid_argument with the reason.
std::pair<std::string, std::string> split_listen(const std::string& listen) {
  auto spec = listen;
  if (spec.rfind(':', 0) == 0)
    spec = "0.0.0.0" + spec;
  else if (spec.rfind("*:", 0) == 0)
    spec = "0.0.0.0" + spec.substr(1);
  std::string why;
  auto hp = detail::parse_host_port(spec, &why);
  if (!hp)
    throw std::invalid_argument(why);
  return {hp->host, std::to_string(hp->port)};
}

class session;

// -- the server core ----------------------------------------------------------------------------

/// Everything the server shares with its sessions. Sessions hold a plain reference: they live in
/// handlers of `ioc`, and `ioc` is destroyed first in ~server_core, while every other member is
/// still alive. Responders hold only weak pointers, so a late answer never keeps anything alive.
class server_core : public std::enable_shared_from_this<server_core> {
public:
  server_core(http_config c, http_handler h) : cfg(std::move(c)), handler(std::move(h)) {
    ioc.emplace();
    acceptor.emplace(net::make_strand(*ioc));
    accept_retry.emplace(acceptor->get_executor());
  }

  ~server_core() {
    try {
      stop();
    } catch (...) {
      // joining failed; nothing sensible left to do in a destructor
    }
    // Destroy every I/O object before the context, then the context, which destroys the handlers
    // still queued and with them the last references to their sessions.
    accept_retry.reset();
    acceptor.reset();
    work.reset();
    ioc.reset();
  }

  void start();
  void stop_accepting();
  bool drain(milliseconds timeout);
  std::size_t answer_in_flight(milliseconds wait);
  void stop();
  http_server_stats stats() const;
  uint16_t port() const { return bound_port.load(); }

  void request_done() {
    {
      std::lock_guard<std::mutex> lk(drain_mu);
      in_flight.fetch_sub(1);
    }
    drain_cv.notify_all();
  }

  void unregister(session* s) {
    std::lock_guard<std::mutex> lk(registry_mu);
    sessions.erase(s);
  }

  bool on_io_thread() const { return current_server == this; }

  const http_config cfg;
  const http_handler handler;

  std::atomic<bool> draining{false};
  std::atomic<bool> stopping{false};

  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_rejected{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_requests{0};
  std::atomic<uint64_t> in_flight{0};
  std::atomic<uint64_t> open_connections{0};

private:
  enum class state { created, running, stopped };

  void do_accept();
  void on_accept(error_code ec, tcp::socket socket);
  void close_acceptor();
  tcp::endpoint resolve_listen();

  static thread_local const server_core* current_server;

  std::optional<net::io_context> ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor; // lives on its own strand
  std::optional<net::steady_timer> accept_retry;
  std::vector<std::thread> threads;
  std::atomic<uint16_t> bound_port{0};

  std::mutex lifecycle_mu; // serialises start / stop / stop_accepting from outside the I/O threads
  state lifecycle = state::created;

  std::mutex drain_mu;
  std::condition_variable drain_cv;

  std::mutex registry_mu;
  std::unordered_map<session*, std::weak_ptr<session>> sessions;
};

thread_local const server_core* server_core::current_server = nullptr;

// -- one connection -----------------------------------------------------------------------------

} // namespace

/// Shared by every copy of one request's responder and by the session's handler-timeout timer:
/// whoever flips `done` first answers.
struct http_pending_answer {
  std::atomic<bool> done{false};
  std::weak_ptr<server_core> server;
  std::weak_ptr<session> conn;
  std::mutex mu; ///< guards on_server_answer
  /// The handler's, run when the server answered for it (handler timeout, shutdown).
  std::function<void(server_answer)> on_server_answer;
};

namespace {

using pending_answer = http_pending_answer;

bool deliver_answer(const std::shared_ptr<pending_answer>& p, http_response res, answer_hook won);

/// One accepted connection. Every member is touched only on the connection's strand (the stream's
/// executor), except in the constructor and destructor. With one I/O thread (http.threads 1) that
/// executor is the io_context's own: its one thread already serializes every handler, and a
/// strand would only add a lock and a queue to each hand-off (server_core::do_accept).
class session : public std::enable_shared_from_this<session> {
public:
  session(server_core& srv, tcp::socket&& socket, std::string peer, bool counted)
      : srv_(srv), stream_(std::move(socket)), strand_(stream_.get_executor()), timer_(strand_),
        peer_(std::move(peer)), counted_(counted) {}

  ~session() {
    if (streaming_)
      streaming_->cut("client");
    release();
    srv_.unregister(this);
  }

  session(const session&) = delete;
  session& operator=(const session&) = delete;

  const net::any_io_executor& executor() const { return strand_; }

  /// The server's own answer to a request its handler has not answered: 503 handler_timeout,
  /// or 503 shutting_down (closing the connection). Returns whether it answered.
  bool answer_for_handler(server_answer why) {
    if (phase_ != phase::handling || !pending_ || pending_->done.exchange(true))
      return false;
    std::function<void(server_answer)> hook;
    {
      std::lock_guard<std::mutex> lk(pending_->mu);
      hook.swap(pending_->on_server_answer);
    }
    pending_.reset();
    if (hook) { // before the answer leaves: a client that has it sees it counted
      try {
        hook(why);
      } catch (...) {
        // the handler's bookkeeping failed; the answer is written regardless
      }
    }
    if (why == server_answer::handler_timeout) {
      write_response(error_response(503, "handler_timeout"), request_version_, !keep_alive_);
    } else {
      auto r =
          error_response(503, "shutting_down", "the node is stopping and its drain time is over");
      r.headers.emplace_back("Retry-After", "1");
      write_response(std::move(r), request_version_, true);
    }
    return true;
  }

  /// A fresh admitted connection: the whole first request must arrive within request_timeout.
  void start() { start_request(); }

  /// A connection over the cap: a minimal 503, then close, without reading anything.
  void reject() {
    phase_ = phase::writing;
    stream_.expires_after(write_timeout());
    net::async_write(stream_, net::buffer(reject_response()),
                     [self = shared_from_this()](error_code, std::size_t) { self->close(); });
  }

  /// Closes the socket now; every pending operation completes with an error and ends.
  void close() {
    if (phase_ == phase::closed)
      return;
    phase_ = phase::closed;
    disarm();
    pending_.reset();
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
    release();
    if (streaming_) { // the reader is gone: the producer stops fetching
      streaming_->cut("client");
      streaming_.reset();
    }
    hold_.reset(); // the answer's bytes stay until the write op lets go; its account does not
    body_reservation_.release();
  }

  /// A responder's answer, posted onto the strand.
  void deliver(const std::shared_ptr<pending_answer>& p, http_response res) {
    if (phase_ != phase::handling || pending_ != p)
      return; // closed meanwhile, or answered by the handler timeout
    disarm();
    pending_.reset();
    write_response(std::move(res), request_version_, !keep_alive_);
  }

private:
  enum class phase { reading, idle, handling, writing, lingering, closed };

  milliseconds write_timeout() const {
    // Writing the answer gets at least a second even with a very short request timeout.
    return std::max(srv_.cfg.request_timeout, milliseconds(1000));
  }
  milliseconds linger_timeout() const {
    return std::min(srv_.cfg.request_timeout, milliseconds(2000));
  }

  // Our own deadline timer (request deadline while reading, handler deadline while handling).
  // tcp_stream's own timeout closes the socket, which would make a 408 impossible, so it is used
  // only where closing is the right answer (idle keep-alive, writes, lingering close).
  void arm(milliseconds d) {
    ++timer_gen_;
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), gen = timer_gen_](error_code ec) {
      if (!ec)
        self->on_timer(gen);
    });
  }

  void disarm() {
    ++timer_gen_;
    timer_.cancel();
  }

  void on_timer(uint64_t gen) {
    if (gen != timer_gen_)
      return;
    if (phase_ == phase::reading) {
      timed_out_ = true;
      error_code ec;
      stream_.socket().cancel(ec); // the read completes with operation_aborted → 408
      // If a read completion was already queued on the strand, the composed read may start its
      // next read after this cancel: keep cancelling until the read has ended.
      arm(milliseconds(10));
    } else {
      answer_for_handler(server_answer::handler_timeout);
    }
  }

  // -- reading ----------------------------------------------------------------------------------

  /// Waits for the first byte of the next request on a kept-alive connection (idle_timeout).
  void await_next() {
    if (srv_.stopping.load()) {
      close();
      return;
    }
    if (buffer_.size() > 0) { // the client already sent the next request
      start_request();
      return;
    }
    phase_ = phase::idle;
    stream_.expires_after(srv_.cfg.idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](error_code ec, std::size_t n) {
                              if (self->phase_ == phase::closed)
                                return;
                              if (ec) { // idle timeout (the stream closed the socket), EOF, reset
                                self->close();
                                return;
                              }
                              self->buffer_.commit(n);
                              self->start_request();
                            });
  }

  void start_request() {
    if (srv_.stopping.load()) {
      close();
      return;
    }
    stream_.expires_never();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
        srv_.cfg.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser_->body_limit(static_cast<std::uint64_t>(srv_.cfg.max_body_bytes));
    timed_out_ = false;
    head_ = false;
    phase_ = phase::reading;
    arm(srv_.cfg.request_timeout);
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(error_code ec) {
    if (phase_ == phase::closed)
      return;
    if (ec) {
      on_read_error(ec);
      return;
    }
    if (parser_->is_done()) {
      on_request();
      return;
    }
    // A Content-Length over the limit already failed above with body_limit.
    if (!reserve_body())
      return;
    auto expect = parser_->get()[http::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      net::async_write(stream_, net::buffer(continue_response),
                       [self = shared_from_this()](error_code ec2, std::size_t) {
                         if (self->phase_ == phase::closed)
                           return;
                         if (ec2) {
                           self->close();
                           return;
                         }
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  /// Reserves the body's bytes from the memory account before reading it; false (and a 503
  /// insufficient_memory, then close) when there is no room.
  bool reserve_body() {
    auto& account = srv_.cfg.account;
    if (!account)
      return true;
    auto length = parser_->content_length();
    auto bytes = length ? static_cast<uint64_t>(*length) : srv_.cfg.max_body_bytes;
    // Bodies are bounded by max_body_bytes and the priority is not known before the headers are
    // routed: a body is refused only when the whole budget is taken, so a high-priority query
    // still gets its body read at critical pressure (the gateway applies the class).
    body_reservation_ = account->try_reserve(detail::memory_consumer::http_bodies, bytes,
                                             detail::memory_class::high);
    if (body_reservation_)
      return true;
    disarm(); // counted by the account (refusals of consumer http_bodies)
    auto r = error_response(503, "insufficient_memory",
                            "the memory budget has no room for a " + std::to_string(bytes) +
                                "-byte body now");
    r.headers.emplace_back("Retry-After", "1");
    write_response(std::move(r), 11, true);
    return false;
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, std::size_t) {
                       if (self->phase_ == phase::closed)
                         return;
                       if (ec)
                         self->on_read_error(ec);
                       else
                         self->on_request();
                     });
  }

  void on_read_error(error_code ec) {
    disarm();
    if (timed_out_) {
      if (parser_->got_some() || buffer_.size() > 0)
        reply_error(408, "request_timeout");
      else
        close(); // nothing arrived at all: nobody to answer
      return;
    }
    if (ec == http::error::header_limit) {
      reply_error(431, "request_header_fields_too_large");
      return;
    }
    if (ec == http::error::body_limit) {
      reply_error(413, "payload_too_large");
      return;
    }
    static const auto& http_category = http::make_error_code(http::error::bad_method).category();
    if (ec.category() != http_category || ec == http::error::end_of_stream ||
        ec == http::error::partial_message) {
      close(); // the client went away (or the socket failed): nobody to answer
      return;
    }
    reply_error(400, "bad_request", ec.message());
  }

  void reply_error(unsigned status, std::string_view code, std::string_view detail = {}) {
    srv_.bad_requests.fetch_add(1);
    write_response(error_response(status, code, detail), 11, true);
  }

  // -- handling ---------------------------------------------------------------------------------

  void on_request() {
    disarm();
    auto msg = parser_->release();
    parser_.reset();
    head_ = msg.method() == http::verb::head;

    std::string target;
    if (auto no = refuse(msg, target)) {
      reply_error(no->status, no->code, no->detail);
      return;
    }
    http_request req;
    req.method = std::string(msg.method_string());
    auto q = target.find('?');
    if (q != std::string::npos) {
      req.query = target.substr(q + 1);
      target.resize(q);
    }
    req.path = std::move(target);
    req.headers.reserve(static_cast<std::size_t>(std::distance(msg.begin(), msg.end())));
    for (const auto& field : msg) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      req.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    req.body = std::move(msg.body());
    req.peer = peer_;

    keep_alive_ = msg.keep_alive();
    request_version_ = msg.version() == 10 ? 10 : 11;

    srv_.requests.fetch_add(1);
    srv_.in_flight.fetch_add(1);
    in_flight_ = true;
    phase_ = phase::handling;

    auto p = std::make_shared<pending_answer>();
    p->server = srv_.weak_from_this();
    p->conn = weak_from_this();
    pending_ = p;
    // The timer's handler keeps this session alive until the answer (or the timeout) comes.
    arm(srv_.cfg.request_timeout);

    http_responder responder{p};
    if (!srv_.handler) {
      responder(error_response(500, "internal", "no handler"));
      return;
    }
    try {
      srv_.handler(std::move(req), responder);
    } catch (const std::exception& e) {
      responder(error_response(500, "internal", e.what()));
    } catch (...) {
      responder(error_response(500, "internal", "unknown exception"));
    }
    // The handler has taken (parsed or copied) what it needs of the body: its bytes are gone.
    body_reservation_.release();
  }

  // -- writing ----------------------------------------------------------------------------------

  void write_response(http_response r, unsigned version, bool close_after) {
    close_after = close_after || srv_.draining.load() || srv_.stopping.load();

    unsigned status = r.status;
    if (status < 200 || status > 999)
      status = 500; // interim or invalid codes cannot be a final answer
    if (r.stream) {
      if (!head_ && status != 204 && status != 304) {
        write_stream(std::move(r), version, status, close_after);
        return;
      }
      r.stream->cut("client"); // an answer without a body: nobody reads the stream
      r.stream.reset();
    }
    // RFC 9110: 204 and 304 have no body and no Content-Length; a HEAD answer has the GET's
    // headers, Content-Length included, and no body (one would be read as the start of the
    // next answer on this connection).
    bool bodiless = status == 204 || status == 304;
    head_bytes(head_out_, r, version, status, close_after,
               bodiless ? std::nullopt : std::optional<size_t>{r.body.size()});
    if (!bodiless && !head_)
      body_out_ = std::move(r.body);
    hold_ = std::move(r.hold);
    close_after_ = close_after;
    phase_ = phase::writing;
    stream_.expires_after(write_timeout());
    net::async_write(
        stream_, std::array<net::const_buffer, 2>{net::buffer(head_out_), net::buffer(body_out_)},
        [self = shared_from_this()](error_code ec, std::size_t) { self->on_write(ec); });
  }

  /// An answer's status line and fields (the framing ones are ours, not the handler's: the
  /// body's length, or chunks, and Connection), written into `out` at once, its capacity kept
  /// from one answer to the next on the connection. Beast's header allocated each field and its
  /// serializer walked them as a chain of buffers: a tenth of a cached read's HTTP-thread time
  /// (bench/RESULTS.md).
  static void head_bytes(std::string& out, const http_response& r, unsigned version,
                         unsigned status, bool close_after, std::optional<size_t> content_length,
                         bool chunked = false) {
    out.clear();
    auto line = [&out](std::string_view name, std::string_view value) {
      out.append(name).append(": ").append(value).append("\r\n");
    };
    out.append("HTTP/")
        .append(1, static_cast<char>('0' + version / 10 % 10))
        .append(1, '.')
        .append(1, static_cast<char>('0' + version % 10))
        .append(1, ' ')
        .append(std::to_string(status))
        .append(1, ' ');
    auto reason = http::obsolete_reason(static_cast<http::status>(status));
    out.append(reason.data(), reason.size()).append("\r\n");
    line("Server", "bulwark");
    if (!r.content_type.empty() && header_safe(r.content_type))
      line("Content-Type", r.content_type);
    for (auto& [name, value] : r.headers)
      if (own_field(name, value))
        line(name, value);
    if (close_after)
      line("Connection", "close");
    else if (version < 11)
      line("Connection", "keep-alive");
    if (content_length)
      line("Content-Length", std::to_string(*content_length));
    if (chunked)
      line("Transfer-Encoding", "chunked");
    out.append("\r\n");
  }

  /// A streamed answer: the head, then each piece the stream has as it comes (pump), each
  /// within the write timeout, then the last chunk and on_write as for any answer.
  void write_stream(http_response r, unsigned version, unsigned status, bool close_after) {
    chunked_ = version == 11;
    if (!chunked_)
      close_after = true; // HTTP/1.0 has no chunks: the body ends with the connection
    head_bytes(head_out_, r, version, status, close_after, std::nullopt, chunked_);
    streaming_ = std::move(r.stream);
    hold_ = std::move(r.hold);
    close_after_ = close_after;
    phase_ = phase::writing;
    stream_.expires_after(write_timeout());
    net::async_write(
        stream_, net::buffer(head_out_),
        [self = shared_from_this()](error_code ec, std::size_t) { self->on_piece_written(ec); });
  }

  void on_piece_written(error_code ec) {
    if (phase_ == phase::closed)
      return;
    stream_.expires_never();
    if (ec) { // the write timeout (a reader that stalled), a reset: the stream is cut
      close();
      return;
    }
    pump();
  }

  /// Writes what the stream has now, or waits for it to call back (from the producer's thread,
  /// posted onto this strand while the server lives). While it waits, the callback is what keeps
  /// this session alive; the stream always calls it once (a put, the finish that the query's
  /// one answer brings, or a cut).
  void pump() {
    if (phase_ != phase::writing || !streaming_)
      return;
    auto ready = [self = shared_from_this(), server = srv_.weak_from_this()] {
      auto alive = server.lock(); // keeps the io_context while posting
      if (!alive)
        return;
      net::post(self->strand_, [self] { self->pump(); });
    };
    auto done = [self = shared_from_this()](error_code ec, std::size_t) {
      self->on_piece_written(ec);
    };
    switch (streaming_->take(chunk_, ready)) {
    case detail::result_stream::take_result::data:
      stream_.expires_after(write_timeout());
      if (chunked_)
        net::async_write(stream_, http::make_chunk(net::buffer(chunk_)), std::move(done));
      else
        net::async_write(stream_, net::buffer(chunk_), std::move(done));
      return;
    case detail::result_stream::take_result::wait:
      return;
    case detail::result_stream::take_result::end:
      streaming_.reset();
      if (!chunked_) {
        on_write({});
        return;
      }
      stream_.expires_after(write_timeout());
      net::async_write(
          stream_, http::make_chunk_last(),
          [self = shared_from_this()](error_code e, std::size_t) { self->on_write(e); });
      return;
    case detail::result_stream::take_result::gone:
      close();
      return;
    }
  }

  void on_write(error_code ec) {
    if (phase_ == phase::closed)
      return;
    stream_.expires_never();
    std::string{}.swap(body_out_); // the answer's bytes go now; the head's buffer stays for reuse
    std::string{}.swap(chunk_);
    hold_.reset();
    if (in_flight_) {
      in_flight_ = false;
      srv_.request_done();
    }
    if (ec) {
      close();
      return;
    }
    if (close_after_) {
      linger_close();
      return;
    }
    await_next();
  }

  /// Half-closes, then discards what the client still sends for a short while, so that the
  /// kernel does not reset the connection (and lose our answer) because of unread bytes.
  void linger_close() {
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) {
      close();
      return;
    }
    phase_ = phase::lingering;
    stream_.expires_after(linger_timeout());
    discard_some();
  }

  void discard_some() {
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](error_code ec, std::size_t) {
                              if (self->phase_ == phase::closed)
                                return;
                              if (ec)
                                self->close();
                              else
                                self->discard_some();
                            });
  }

  void release() {
    if (counted_) {
      counted_ = false;
      srv_.open_connections.fetch_sub(1);
    }
    if (in_flight_) {
      in_flight_ = false;
      srv_.request_done();
    }
  }

  server_core& srv_;
  beast::tcp_stream stream_;
  const net::any_io_executor strand_;
  net::steady_timer timer_;
  uint64_t timer_gen_ = 0;
  const std::string peer_;
  bool counted_; ///< counts in open_connections until released
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string head_out_; ///< an answer's status line and fields (head_bytes)
  std::string body_out_; ///< and its body, while written
  // A streamed answer (write_stream; its head in head_out_): the stream, the piece being
  // written, and whether pieces go as chunks (HTTP/1.1) or raw (HTTP/1.0).
  std::shared_ptr<detail::result_stream> streaming_;
  std::string chunk_;
  bool chunked_ = false;
  std::shared_ptr<const void> hold_;            ///< the answer's http_response::hold
  detail::memory_reservation body_reservation_; ///< the request body's bytes while read
  std::shared_ptr<pending_answer> pending_;
  phase phase_ = phase::reading;
  bool timed_out_ = false;
  bool head_ = false; ///< the request being answered is a HEAD: headers only
  bool keep_alive_ = false;
  bool close_after_ = true;
  bool in_flight_ = false; ///< counts in in_flight until its answer is written
  unsigned request_version_ = 11;
};

bool deliver_answer(const std::shared_ptr<pending_answer>& p, http_response res, answer_hook won) {
  if (p->done.exchange(true))
    return false; // answered already (by an earlier call or by the handler timeout)
  {
    std::lock_guard<std::mutex> lk(p->mu);
    p->on_server_answer = nullptr; // this answer won: the server's bookkeeping never runs
  }
  if (won) {
    try {
      won();
    } catch (...) {
      // the handler's bookkeeping failed; the answer goes out regardless
    }
  }
  // Holding the server keeps the io_context alive while we post; declared first, released last.
  auto server = p->server.lock();
  if (!server)
    return true; // the answer of this request, with nobody left to write it to
  auto conn = p->conn.lock();
  if (!conn)
    return true;
  net::post(conn->executor(),
            [conn, p, res = std::move(res)]() mutable { conn->deliver(p, std::move(res)); });
  return true;
}

// -- server_core --------------------------------------------------------------------------------

tcp::endpoint server_core::resolve_listen() {
  auto fail = [&](const std::string& reason) -> std::runtime_error {
    return std::runtime_error("cannot listen on " + cfg.listen + ": " + reason);
  };
  std::pair<std::string, std::string> hp;
  try {
    hp = split_listen(cfg.listen);
  } catch (const std::exception& e) {
    throw fail(e.what());
  }
  auto port = static_cast<uint16_t>(std::stoul(hp.second));
  error_code ec;
  auto addr = net::ip::make_address(hp.first, ec);
  if (!ec)
    return {addr, port};
  tcp::resolver resolver(*ioc);
  auto results = resolver.resolve(hp.first, hp.second, ec);
  if (ec)
    throw fail(ec.message());
  if (results.empty())
    throw fail("host not found");
  return results.begin()->endpoint();
}

void server_core::start() {
  std::lock_guard<std::mutex> lk(lifecycle_mu);
  if (lifecycle != state::created)
    throw std::logic_error("http_server::start: already started or stopped");
  auto ep = resolve_listen();
  auto check = [&](error_code ec) {
    if (ec) {
      error_code ignored;
      acceptor->close(ignored);
      throw std::runtime_error("cannot listen on " + cfg.listen + ": " + ec.message());
    }
  };
  error_code ec;
  acceptor->open(ep.protocol(), ec);
  check(ec);
  acceptor->set_option(net::socket_base::reuse_address(true), ec);
  check(ec);
  acceptor->bind(ep, ec);
  check(ec);
  acceptor->listen(net::socket_base::max_listen_connections, ec);
  check(ec);
  auto local = acceptor->local_endpoint(ec);
  check(ec);
  bound_port.store(local.port());

  work.emplace(ioc->get_executor());
  net::post(acceptor->get_executor(), [this] { do_accept(); });
  lifecycle = state::running;
  auto n = std::max<std::size_t>(1, cfg.threads);
  threads.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    threads.emplace_back([this] {
      current_server = this;
      for (;;) {
        try {
          ioc->run();
          return;
        } catch (...) {
          // A completion handler threw; sessions catch the handler's exceptions, so this is a
          // bug elsewhere. Keep serving rather than take the process down.
        }
      }
    });
}

void server_core::do_accept() {
  if (!acceptor->is_open())
    return;
  auto executor = cfg.threads <= 1 ? net::any_io_executor{ioc->get_executor()}
                                   : net::any_io_executor{net::make_strand(*ioc)};
  acceptor->async_accept(
      executor, [this](error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
}

void server_core::on_accept(error_code ec, tcp::socket socket) {
  if (ec) {
    if (ec == net::error::operation_aborted || !acceptor->is_open() || stopping.load())
      return;
    // Out of descriptors or similar: back off briefly instead of spinning.
    accept_retry->expires_after(milliseconds(50));
    accept_retry->async_wait([this](error_code e) {
      if (!e)
        do_accept();
    });
    return;
  }
  if (stopping.load()) {
    error_code ignored;
    socket.close(ignored);
    return;
  }
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  auto remote = socket.remote_endpoint(ignored);
  std::string peer = ignored ? std::string("unknown") : format_endpoint(remote);

  // Only this handler (on the acceptor's strand) increments, so check-then-add cannot overshoot.
  bool admit = open_connections.load() < cfg.max_connections;
  if (admit)
    open_connections.fetch_add(1);
  auto s = std::make_shared<session>(*this, std::move(socket), std::move(peer), admit);
  {
    std::lock_guard<std::mutex> lk(registry_mu);
    sessions.emplace(s.get(), s);
  }
  if (admit) {
    connections_accepted.fetch_add(1);
    net::post(s->executor(), [s] { s->start(); });
  } else {
    connections_rejected.fetch_add(1);
    net::post(s->executor(), [s] { s->reject(); });
  }
  do_accept();
}

void server_core::close_acceptor() {
  error_code ignored;
  acceptor->close(ignored);
  accept_retry->cancel();
}

void server_core::stop_accepting() {
  if (on_io_thread()) { // from a handler: cannot wait for ourselves
    net::post(acceptor->get_executor(), [this] { close_acceptor(); });
    return;
  }
  std::lock_guard<std::mutex> lk(lifecycle_mu);
  if (lifecycle != state::running)
    return;
  // The acceptor lives on its strand; close it there and wait (the I/O threads are running and
  // stop() cannot stop them while we hold lifecycle_mu).
  std::promise<void> done;
  auto fut = done.get_future();
  net::post(acceptor->get_executor(), [this, &done] {
    close_acceptor();
    done.set_value();
  });
  fut.wait();
}

bool server_core::drain(milliseconds timeout) {
  draining.store(true);
  std::unique_lock<std::mutex> lk(drain_mu);
  return drain_cv.wait_for(lk, timeout, [this] { return in_flight.load() == 0; });
}

std::size_t server_core::answer_in_flight(milliseconds wait) {
  std::vector<std::shared_ptr<session>> live;
  {
    std::lock_guard<std::mutex> g(registry_mu);
    for (auto& entry : sessions)
      if (auto s = entry.second.lock())
        live.push_back(std::move(s));
  }
  // Each on its own strand; the count comes back through a promise per session.
  std::vector<std::future<bool>> answered;
  for (auto& s : live) {
    auto done = std::make_shared<std::promise<bool>>();
    answered.push_back(done->get_future());
    net::post(s->executor(),
              [s, done] { done->set_value(s->answer_for_handler(server_answer::shutting_down)); });
  }
  live.clear(); // outside registry_mu: a session's destructor unregisters itself
  std::size_t n = 0;
  auto until = std::chrono::steady_clock::now() + wait;
  for (auto& f : answered)
    if (f.wait_until(until) == std::future_status::ready && f.get())
      ++n;
  std::unique_lock<std::mutex> lk(drain_mu);
  drain_cv.wait_until(lk, until, [this] { return in_flight.load() == 0; });
  return n;
}

void server_core::stop() {
  const bool io_thread = on_io_thread();
  std::unique_lock<std::mutex> lk(lifecycle_mu, std::defer_lock);
  if (!io_thread)
    lk.lock();
  if (lifecycle != state::running) {
    lifecycle = state::stopped;
    return;
  }
  lifecycle = state::stopped;
  stopping.store(true);

  struct latch {
    std::mutex mu;
    std::condition_variable cv;
    std::size_t left = 0;
    void count_down() {
      {
        std::lock_guard<std::mutex> g(mu);
        --left;
      }
      cv.notify_all();
    }
  };
  auto done = std::make_shared<latch>();

  std::vector<std::shared_ptr<session>> live;
  {
    std::lock_guard<std::mutex> g(registry_mu);
    for (auto& entry : sessions)
      if (auto s = entry.second.lock())
        live.push_back(std::move(s));
  }
  done->left = live.size() + 1;
  net::post(acceptor->get_executor(), [this, done] {
    close_acceptor();
    done->count_down();
  });
  for (auto& s : live)
    net::post(s->executor(), [s, done] {
      s->close();
      done->count_down();
    });
  live.clear(); // outside registry_mu: a session's destructor unregisters itself

  if (!io_thread) {
    // Bounded: a handler blocking an I/O thread must not hang stop() forever here.
    std::unique_lock<std::mutex> g(done->mu);
    done->cv.wait_for(g, std::chrono::seconds(2), [&] { return done->left == 0; });
  }
  work.reset();
  ioc->stop();
  for (auto& t : threads) {
    if (t.get_id() == std::this_thread::get_id())
      t.detach(); // stop() called from a handler: this thread leaves run() when it returns
    else if (t.joinable())
      t.join();
  }
  threads.clear();
}

http_server_stats server_core::stats() const {
  http_server_stats s;
  s.connections_accepted = connections_accepted.load();
  s.connections_rejected = connections_rejected.load();
  s.requests = requests.load();
  s.bad_requests = bad_requests.load();
  s.in_flight = in_flight.load();
  s.open_connections = open_connections.load();
  return s;
}

} // namespace

// -- http_responder -----------------------------------------------------------------------------

bool http_responder::operator()(http_response r, answer_hook won) const {
  return p_ && deliver_answer(p_, std::move(r), won);
}

void http_responder::on_server_answer(std::function<void(server_answer)> f) const {
  if (!p_)
    return;
  std::lock_guard<std::mutex> lk(p_->mu);
  p_->on_server_answer = std::move(f);
}

// -- http_server --------------------------------------------------------------------------------

struct http_server::impl : server_core {
  using server_core::server_core;
};

http_server::http_server(http_config cfg, http_handler handler)
    : impl_(std::make_shared<impl>(std::move(cfg), std::move(handler))) {}

http_server::~http_server() {
  try {
    stop();
  } catch (...) {
    // nothing sensible to do in a destructor
  }
}

void http_server::start() {
  impl_->start();
}

uint16_t http_server::port() const {
  return impl_->port();
}

void http_server::stop_accepting() {
  impl_->stop_accepting();
}

bool http_server::drain(std::chrono::milliseconds timeout) {
  return impl_->drain(timeout);
}

std::size_t http_server::answer_in_flight(std::chrono::milliseconds wait) {
  return impl_->answer_in_flight(wait);
}

void http_server::stop() {
  impl_->stop();
}

http_server_stats http_server::stats() const {
  return impl_->stats();
}

} // namespace bulwark
