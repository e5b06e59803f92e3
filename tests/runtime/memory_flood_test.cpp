// The CI-sized memory flood drill (issue 10; bench/memory_drill.sh is the full one): many
// clients ask at once for answers of several MB each from a real bulwarkd on the shipped
// defaults, changing only memory.source ("process") and memory.budget_bytes, and adding the one
// statement that makes large answers. The node must stay within its budget (RSS sampled at
// 100 Hz), answer every request, and keep its books at every scrape.

#include "support/node_process.hpp"
#include "support/threads.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// Sanitizers keep freed memory in quarantine and shadow every byte: RSS says nothing there.
constexpr bool rss_is_meaningful = false;
#else
constexpr bool rss_is_meaningful = true;
#endif

using namespace bulwark;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t mib = 1024 * 1024;

/// A process's resident set (`VmRSS`), or its high-water mark since it started (`VmHWM`: the
/// kernel's own maximum, which no sampling interval can miss), in bytes; 0 when it is gone.
uint64_t rss_of(pid_t pid, const std::string& field = "VmRSS:") {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0)
      return std::stoull(line.substr(field.size())) * 1024;
  return 0;
}

/// One large query over a fresh connection; the answer's status (0: no whole answer) and its
/// error code. Large bodies are read whole (no 8 MiB cap) and dropped.
std::pair<int, std::string> big_query(uint16_t port) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  using tcp = boost::asio::ip::tcp;
  try {
    boost::asio::io_context ioc;
    beast::tcp_stream stream{ioc};
    stream.expires_after(30s);
    stream.connect(tcp::endpoint{boost::asio::ip::make_address("127.0.0.1"), port});
    http::request<http::string_body> req{http::verb::post, "/v1/query/big", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    req.body() = R"({"params": []})";
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    http::read(stream, buf, parser);
    auto& res = parser.get();
    std::string error;
    if (res.result_int() != 200)
      error = json::parse(res.body()).value("error", "");
    return {static_cast<int>(res.result_int()), error};
  } catch (const std::exception& e) {
    return {0, e.what()};
  }
}

using test::books;
using test::scrape_books;

struct flood_result {
  uint64_t idle_rss = 0;
  uint64_t peak_rss = 0;              ///< the kernel's high-water mark (VmHWM) after the flood
  std::map<std::string, int> answers; ///< "200", "503 insufficient_memory", "0 <error>"
  int requests = 0;
  int scrapes = 0;
  std::vector<std::string> broken_books;
  books final_books;
};

/// Floods `n` with `clients` closed-loop clients for `length`, auditing the books as it goes; the
/// peak is the kernel's high-water mark afterwards (the node starts well below any bar here: idle
/// at ~22 MiB).
flood_result flood(test::node_process& n, int clients, std::chrono::milliseconds length) {
  flood_result out;
  auto pid = n.proc->pid();
  out.idle_rss = rss_of(pid);
  std::atomic<bool> stop{false};
  test::thread_group auditor{[&] { stop = true; }};
  auditor.spawn([&] {
    while (!stop.load()) {
      auto b = scrape_books(n.port);
      ++out.scrapes;
      if (!b.balanced())
        out.broken_books.push_back(b.describe());
      std::this_thread::sleep_for(50ms);
    }
  });
  std::mutex mtx;
  test::thread_group threads;
  auto until = std::chrono::steady_clock::now() + length;
  for (int c = 0; c < clients; ++c)
    threads.spawn([&] {
      while (std::chrono::steady_clock::now() < until) {
        auto [status, error] = big_query(n.port);
        std::lock_guard<std::mutex> guard{mtx};
        ++out.requests;
        ++out.answers[std::to_string(status) + (error.empty() ? "" : " " + error)];
      }
    });
  threads.join();
  stop = true;
  auditor.join();
  out.peak_rss = rss_of(pid, "VmHWM:");
  out.final_books = scrape_books(n.port);
  return out;
}

json flood_config(uint64_t budget, bool admission) {
  auto cfg = test::shipped_demo();
  // ~5.3 MB per answer: 10 000 rows of 512 hex characters; blinded, ~21 MB (2 048). The
  // unprotected node holds about as many answers at once as its pool has connections plus what
  // the HTTP side has not written yet, and with a gateway per core it drains them fast: at
  // ~10.5 MB (the issue's drill size) it peaked at 142-192 MiB (high-water mark) alone on this
  // VM, twice in three runs below the bar; at ~21 MB, 191-232 MiB in three.
  auto hex = admission ? "256" : "1024";
  cfg["statements"]["big"] = {{"sql", std::string{"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                                                  "SELECT i + 1 FROM n WHERE i < 10000) SELECT "
                                                  "i, hex(randomblob("} +
                                          hex + ")) AS payload FROM n"},
                              {"params", json::array()},
                              {"read_only", true},
                              {"cache_ttl_ms", 0}};
  // node_process's drill setup samples fast; the shipped interval and dwell are the product.
  cfg["memory"] = {{"source", admission ? "process" : "file"},
                   {"budget_bytes", budget},
                   {"sample_interval_ms", 1000},
                   {"min_dwell_ms", 5000},
                   {"admission", admission}};
  // Blinded also means answers whole, as before streaming (http.stream_after_bytes 0), and no
  // standing-queue shedding by the pool (its delay target out of reach): on a loaded machine
  // that rule shed half the baseline's flood, which then stayed under the budget it must show
  // being passed.
  if (!admission) {
    cfg["http"] = {{"stream_after_bytes", 0}};
    cfg["pool"] = {{"queue_delay_target_ms", 60000}, {"queue_delay_interval_ms", 60000}};
  }
  return cfg;
}

std::string describe(const flood_result& r) {
  std::string s = std::to_string(r.requests) + " requests; idle RSS " +
                  std::to_string(r.idle_rss / mib) + " MiB, peak (high-water) " +
                  std::to_string(r.peak_rss / mib) + " MiB; answers:";
  for (auto& [k, v] : r.answers)
    s += " [" + k + "] x" + std::to_string(v);
  return s;
}

} // namespace

TEST_CASE("a flood of large answers stays within the memory budget and every request is answered",
          "[memory][flood][integration]") {
  // Under a sanitizer the node idles above 200 MiB and runs 5-15 times slower: the budget then
  // only keeps the scenario, and a large answer can outlast the default deadline, which opens
  // the breaker on slow calls. There the test proves the books and the sanitizer's silence.
  constexpr uint64_t budget = rss_is_meaningful ? 128 * mib : 4096 * mib;
  constexpr int clients = rss_is_meaningful ? 48 : 16;
  test::node_process n{flood_config(budget, true)};
  auto r = flood(n, clients, 5s);
  INFO(describe(r));
  INFO(n.proc->output().substr(0, 4000));
  // Every request got an HTTP answer: served, or refused before anything was allocated (by the
  // memory account, by the pool's queue when its line is longer than the deadline allows or
  // stands past its delay target, or by the rate limiter).
  for (auto& [k, v] : r.answers) {
    // 429: the fast refusals let the 48 closed-loop clients (one client key: loopback) ask
    // faster than the limiter allows.
    bool expected = k == "200" || k == "503 insufficient_memory" || k == "503 queue_full" ||
                    k == "429 rate_limited";
    if (!rss_is_meaningful) // slow, not broken: still one accounted answer each
      expected = expected || k == "504 deadline_exceeded" || k == "503 circuit_open";
    CHECK(expected);
  }
  CHECK(r.answers["200"] > 0);
  // It was a flood, and the account held it: requests waited for room (gateway.memory_wait_max)
  // or were refused.
  if (rss_is_meaningful)
    CHECK(test::metric(n.port,
                       "bulwark_gateway_stage_results_total{result=\"queued\",stage=\"memory\"}") +
              r.answers["503 insufficient_memory"] >
          0);
  // The books held at every scrape, and nothing is left in flight.
  CHECK(r.scrapes > 10);
  CHECK(r.broken_books.empty());
  CHECK(r.final_books.in_flight == 0);
  CHECK(r.final_books.received == r.final_books.answered);
  CHECK(r.final_books.received == r.requests);
  if (rss_is_meaningful)
    CHECK(r.peak_rss <= budget + budget / 10); // the kernel's maximum, not a sample's
  auto status = n.status();
  CHECK(status["memory_account"]["reserved"]["results"] == 0); // every answer gave its bytes back
  CHECK(status["memory_account"]["reserved"]["http_bodies"] == 0);
  // The gateway's refusals are final answers: as many as the clients got.
  CHECK(test::metric(n.port,
                     "bulwark_gateway_stage_results_total{result=\"refused\",stage=\"memory\"}") ==
        r.answers["503 insufficient_memory"]);
}

TEST_CASE("the flood with the protection blinded (and answers four times as large) goes far past "
          "the budget",
          "[memory][flood][integration]") {
  if (!rss_is_meaningful)
    return; // what it measures is RSS
  // The baseline that shows the test above is a real flood: no admission, no streaming, a
  // pressure source that always reads 0, answers of ~21 MB (flood_config says why).
  constexpr uint64_t budget = 128 * mib;
  test::node_process n{flood_config(budget, false)};
  n.set_ratio(0);
  // 6 s: the peak is a maximum over time, and under ctest -j2 a 3 s flood sometimes peaked
  // below the bar (147 MiB in one of three runs beside a busy core; 6 s: 174-224 MiB in five).
  auto r = flood(n, 64, 6s);
  INFO(describe(r));
  INFO("the node's warnings:\n" << n.warnings());
  INFO(
      "limiter asks unanswered within component_timeout: " << test::metric(
          n.port, "bulwark_gateway_stage_results_total{result=\"unavailable\",stage=\"limiter\"}"));
  // Every request got one accounted answer, and most were served: a flood the node took in, not
  // one it refused. The rest are what an unprotected node does to latency under it: the pool's
  // queue refusing waits longer than a deadline allows (503 queue_full), deadlines passing in
  // that line (504), and a rate limiter that could not answer within the gateway's
  // component_timeout behind threads busy with 21 MB answers (503 unavailable, fail closed: the
  // one timed ask that answers so).
  // Beside the drills under ctest -j2, or a busy core, those took up to 67 of 182 (seven runs).
  int accounted = 0;
  for (auto& [kind, count] : r.answers)
    if (kind.rfind("0", 0) != 0) // "0 <error>": no whole HTTP answer
      accounted += count;
  CHECK(accounted == r.requests);
  CHECK(r.answers["200"] > r.requests / 2);
  CHECK(r.broken_books.empty());
  CHECK(r.final_books.received == r.requests);
  CHECK(r.final_books.answered == r.requests);
  CHECK(r.peak_rss > budget + budget / 4);
}

TEST_CASE("at critical pressure a high-priority query is still read and served, a normal one is "
          "refused before it allocates",
          "[memory][integration]") {
  test::node_process n{test::shipped_demo()};
  n.set_ratio(0.99);
  n.wait_status([](const json& s) { return s["memory_account"]["critical"] == true; });
  auto ask = [&](const char* priority) {
    return test::http_call(n.port, "POST", "/v1/query/user_by_id", R"({"params": [1]})", 5s,
                           {{"X-Priority", priority}});
  };
  auto high = ask("high");
  CHECK(high.status == 200); // its body was read although the budget is at critical
  auto normal = ask("normal");
  CHECK(normal.status == 503);
  CHECK(json::parse(normal.body)["error"] == "insufficient_memory");
  CHECK_FALSE(normal.headers["retry-after"].empty());
  CHECK(json::parse(ask("low").body)["error"] == "shed");
}
