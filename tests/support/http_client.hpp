#pragma once
/// A small blocking HTTP/1.1 client for tests: one request per connection, with a deadline, so
/// a server that hangs fails the test instead of hanging it.

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace bulwark::test {

struct http_result {
  int status = 0; ///< 0 when the request failed at the transport level
  std::string body;
  std::map<std::string, std::string> headers; ///< lower-case names
  std::string error;
};

inline http_result http_call(uint16_t port, const std::string& method, const std::string& target,
                             const std::string& body = {},
                             std::chrono::milliseconds deadline = std::chrono::seconds(5),
                             const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  using tcp = boost::asio::ip::tcp;
  http_result out;
  try {
    boost::asio::io_context ioc;
    beast::tcp_stream stream{ioc};
    stream.expires_after(deadline);
    stream.connect(tcp::endpoint{boost::asio::ip::make_address("127.0.0.1"), port});
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (auto& [name, value] : headers)
      req.set(name, value);
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(stream, buf, res);
    out.status = static_cast<int>(res.result_int());
    out.body = res.body();
    for (auto& f : res) {
      std::string name{f.name_string()};
      for (auto& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string{f.value()};
    }
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  } catch (std::exception& e) {
    out.error = e.what();
  }
  return out;
}

inline http_result http_get(uint16_t port, const std::string& target) {
  return http_call(port, "GET", target);
}

} // namespace bulwark::test
