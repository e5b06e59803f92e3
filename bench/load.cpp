// bulwark_load: an open-loop (constant-rate) HTTP load generator, so queueing is not hidden.
//
//   bulwark_load --port P --path /v1/query/user_by_id --rate 2000 --seconds 10
//                [--method POST] [--body '{"params":[1]}'] [--header 'X-Client-Id: a']
//                [--connections 64] [--host 127.0.0.1] [--sources N]
//
// `--sources N` binds connection i to the loopback address 127.0.0.<2 + i mod N>, so a node that
// knows clients by their address (the default: no trusted proxies) sees N clients, not one.
//
// Request i is *due* at start + i / rate whatever happened to the ones before it (wrk, by
// contrast, sends the next request only when a connection is free: closed loop). Its latency is
// measured from when it was due to when its response ended, so time spent waiting for a free
// connection counts (no coordinated omission). Keep-alive connections; a request that finds
// none free waits in a FIFO. Prints the rate achieved, outcomes by HTTP status, and latency
// percentiles; `--csv` prints one line for scripts. `--series MS` also prints, per MS-millisecond
// bucket of completion time since the start, how many answers were 2xx and how many were not
// (lines `series,<bucket start ms>,<2xx>,<other>`), for watching a recovery.

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  std::string host = "127.0.0.1";
  unsigned short port = 0;
  std::string method = "GET";
  std::string path = "/healthz";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  double rate = 1000;
  double seconds = 10;
  int connections = 64;
  int sources = 0; ///< 0: the system's choice of source address
  bool csv = false;
  int series_ms = 0;
};

struct stats {
  std::vector<double> latencies_us;
  std::map<int, long> statuses; // 0 = transport error
  long sent = 0;
  std::map<long, std::pair<long, long>> series; // bucket -> (2xx, other)
};

class load {
public:
  load(asio::io_context& ioc, options opt) : ioc_(ioc), opt_(std::move(opt)), timer_(ioc) {
    total_ = static_cast<long>(opt_.rate * opt_.seconds);
    stats_.latencies_us.reserve(static_cast<size_t>(total_));
  }

  void start() {
    for (int i = 0; i < opt_.connections; ++i) {
      auto c = std::make_shared<conn>(ioc_);
      if (opt_.sources > 0)
        c->source =
            asio::ip::make_address_v4(0x7f000002u + static_cast<uint32_t>(i % opt_.sources));
      conns_.push_back(c);
      connect(c);
    }
    start_ = clock_type::now();
    schedule();
  }

  const stats& result() const { return stats_; }
  double elapsed() const { return std::chrono::duration<double>(end_ - start_).count(); }

private:
  struct conn {
    explicit conn(asio::io_context& ioc) : stream(ioc) {}
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    http::response<http::string_body> res;
    bool ready = false;
    bool busy = false;
    clock_type::time_point due;
    std::optional<asio::ip::address_v4> source;
  };

  void connect(const std::shared_ptr<conn>& c) {
    c->ready = false;
    if (c->source) {
      beast::error_code ec;
      auto& s = c->stream.socket();
      if (!s.is_open())
        s.open(tcp::v4(), ec);
      if (!ec)
        s.bind(tcp::endpoint{*c->source, 0}, ec);
      if (ec) {
        std::fprintf(stderr, "bulwark_load: cannot bind to %s: %s\n",
                     c->source->to_string().c_str(), ec.message().c_str());
        std::exit(2);
      }
    }
    c->stream.async_connect(tcp::endpoint{asio::ip::make_address(opt_.host), opt_.port},
                            [this, c](beast::error_code ec) {
                              if (ec) {
                                // Try again shortly; the server may be starting or saturated.
                                auto t = std::make_shared<asio::steady_timer>(ioc_);
                                t->expires_after(std::chrono::milliseconds(10));
                                t->async_wait([this, c, t](beast::error_code) { connect(c); });
                                return;
                              }
                              c->stream.socket().set_option(tcp::no_delay{true});
                              c->ready = true;
                              dispatch();
                            });
  }

  /// Arms the timer for the next due request; every due request joins the FIFO.
  void schedule() {
    auto now = clock_type::now();
    while (issued_ < total_ && due_at(issued_) <= now)
      backlog_.push_back(due_at(issued_++));
    dispatch();
    if (issued_ < total_) {
      timer_.expires_at(due_at(issued_));
      timer_.async_wait([this](beast::error_code) { schedule(); });
    }
  }

  clock_type::time_point due_at(long i) const {
    return start_ + std::chrono::duration_cast<clock_type::duration>(
                        std::chrono::duration<double>(static_cast<double>(i) / opt_.rate));
  }

  void dispatch() {
    for (auto& c : conns_) {
      if (backlog_.empty())
        return;
      if (!c->ready || c->busy)
        continue;
      auto due = backlog_.front();
      backlog_.pop_front();
      send(c, due);
    }
  }

  void send(const std::shared_ptr<conn>& c, clock_type::time_point due) {
    c->busy = true;
    c->due = due;
    c->req = {http::string_to_verb(opt_.method), opt_.path, 11};
    c->req.set(http::field::host, opt_.host);
    c->req.keep_alive(true);
    for (auto& [k, v] : opt_.headers)
      c->req.set(k, v);
    if (!opt_.body.empty()) {
      c->req.set(http::field::content_type, "application/json");
      c->req.body() = opt_.body;
    }
    c->req.prepare_payload();
    c->res = {};
    ++stats_.sent;
    http::async_write(c->stream, c->req, [this, c](beast::error_code ec, size_t) {
      if (ec)
        return fail(c);
      http::async_read(c->stream, c->buffer, c->res, [this, c](beast::error_code ec, size_t) {
        if (ec)
          return fail(c);
        record(c, static_cast<int>(c->res.result_int()));
        if (!c->res.keep_alive()) {
          beast::error_code ignored;
          c->stream.socket().close(ignored);
          connect(c);
        }
        dispatch();
      });
    });
  }

  void fail(const std::shared_ptr<conn>& c) {
    record(c, 0);
    beast::error_code ignored;
    c->stream.socket().close(ignored); // async_connect opens it again
    c->buffer.clear();
    connect(c);
  }

  void record(const std::shared_ptr<conn>& c, int status) {
    c->busy = false;
    auto now = clock_type::now();
    stats_.latencies_us.push_back(std::chrono::duration<double, std::micro>(now - c->due).count());
    ++stats_.statuses[status];
    if (opt_.series_ms > 0) {
      auto bucket = std::chrono::duration_cast<std::chrono::milliseconds>(now - start_).count() /
                    opt_.series_ms;
      auto& b = stats_.series[static_cast<long>(bucket)];
      (status >= 200 && status < 300 ? b.first : b.second) += 1;
    }
    if (++done_ == total_) {
      end_ = now;
      timer_.cancel();
      ioc_.stop();
    }
  }

  asio::io_context& ioc_;
  options opt_;
  asio::steady_timer timer_;
  std::vector<std::shared_ptr<conn>> conns_;
  std::deque<clock_type::time_point> backlog_;
  clock_type::time_point start_;
  clock_type::time_point end_;
  long total_ = 0;
  long issued_ = 0;
  long done_ = 0;
  stats stats_;
};

double pct(std::vector<double>& xs, double p) {
  if (xs.empty())
    return 0;
  auto idx = static_cast<size_t>(p * static_cast<double>(xs.size() - 1) + 0.5);
  std::nth_element(xs.begin(), xs.begin() + static_cast<long>(idx), xs.end());
  return xs[idx];
}

int usage() {
  std::fprintf(stderr, "usage: bulwark_load --port P [--host H] [--method M] [--path /p] "
                       "[--body B] [--header 'K: V']... --rate R --seconds S "
                       "[--connections C] [--sources N] [--csv] [--series MS]\n");
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : std::string{}; };
    if (a == "--host")
      opt.host = next();
    else if (a == "--port")
      opt.port = static_cast<unsigned short>(std::stoi(next()));
    else if (a == "--method")
      opt.method = next();
    else if (a == "--path")
      opt.path = next();
    else if (a == "--body")
      opt.body = next();
    else if (a == "--header") {
      auto h = next();
      auto colon = h.find(':');
      if (colon == std::string::npos)
        return usage();
      auto v = h.substr(colon + 1);
      v.erase(0, v.find_first_not_of(' '));
      opt.headers.emplace_back(h.substr(0, colon), v);
    } else if (a == "--rate")
      opt.rate = std::stod(next());
    else if (a == "--seconds")
      opt.seconds = std::stod(next());
    else if (a == "--connections")
      opt.connections = std::stoi(next());
    else if (a == "--sources")
      opt.sources = std::stoi(next());
    else if (a == "--csv")
      opt.csv = true;
    else if (a == "--series")
      opt.series_ms = std::stoi(next());
    else
      return usage();
  }
  if (opt.port == 0 || opt.rate <= 0 || opt.seconds <= 0 || opt.connections <= 0)
    return usage();
  asio::io_context ioc;
  load l{ioc, opt};
  l.start();
  ioc.run();
  auto s = l.result();
  auto lat = s.latencies_us;
  auto p50 = pct(lat, 0.50), p95 = pct(lat, 0.95), p99 = pct(lat, 0.99), p999 = pct(lat, 0.999);
  auto mx = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  std::string outcomes;
  for (auto& [code, n] : s.statuses)
    outcomes += (outcomes.empty() ? "" : " ") + std::to_string(code) + ":" + std::to_string(n);
  for (auto& [bucket, counts] : s.series)
    std::printf("series,%ld,%ld,%ld\n", bucket * opt.series_ms, counts.first, counts.second);
  if (opt.csv) {
    std::printf("%.0f,%.0f,%.1f,%.1f,%.1f,%.1f,%.1f,%s\n", opt.rate,
                static_cast<double>(lat.size()) / l.elapsed(), p50, p95, p99, p999, mx,
                outcomes.c_str());
    return 0;
  }
  std::printf("offered %.0f req/s for %.1f s over %d connections: completed %zu in %.2f s "
              "(%.0f req/s)\n",
              opt.rate, opt.seconds, opt.connections, lat.size(), l.elapsed(),
              static_cast<double>(lat.size()) / l.elapsed());
  std::printf("latency from due time: p50 %.1f us, p95 %.1f us, p99 %.1f us, p99.9 %.1f us, "
              "max %.1f us\n",
              p50, p95, p99, p999, mx);
  std::printf("outcomes by HTTP status (0 = transport error): %s\n", outcomes.c_str());
  return 0;
}
