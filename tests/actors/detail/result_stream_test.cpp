#include "actors/detail/result_stream.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>

using namespace bulwark::detail;
using namespace std::chrono_literals;

namespace {

/// Rows render as their integer; the head names the columns' count.
std::shared_ptr<result_stream> make_stream(size_t window, std::atomic<int>* opens = nullptr) {
  return std::make_shared<result_stream>(
      result_stream::options{16, window},
      [](std::string& out, const std::vector<std::string>& cols) {
        out += "[" + std::to_string(cols.size()) + ":";
      },
      [](std::string& out, const result_stream::row& r) {
        out += std::to_string(std::get<int64_t>(r.at(0)));
      },
      [opens](const std::shared_ptr<result_stream>&) {
        if (opens)
          ++*opens;
      });
}

std::vector<result_stream::row> rows_of(int64_t from, int64_t to) {
  std::vector<result_stream::row> out;
  for (auto i = from; i < to; ++i)
    out.push_back({sql_value{i}});
  return out;
}

/// Waits until the producer is blocked waiting for room (it has been for some time, by its own
/// account), with a deadline: the producer runs on a thread of its own.
bool producer_blocked(const result_stream& s) {
  auto until = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < until) {
    if (s.producer_wait() > 0ns)
      return true;
    std::this_thread::yield();
  }
  return false;
}

/// Takes everything until the end, as a reader that keeps up; `largest`: the largest piece.
std::string drain(result_stream& s, size_t* largest = nullptr) {
  std::string all;
  std::string piece;
  for (;;) {
    std::promise<void> ready;
    auto r = s.take(piece, [&ready] { ready.set_value(); });
    if (r == result_stream::take_result::data) {
      all += piece;
      if (largest)
        *largest = std::max(*largest, piece.size());
      continue;
    }
    if (r == result_stream::take_result::wait)
      ready.get_future().wait();
    else
      return r == result_stream::take_result::end ? all : all + "<gone>";
  }
}

} // namespace

TEST_CASE("a stream's document is its head, rows with commas, and the tail", "[result_stream]") {
  std::atomic<int> opens{0};
  auto s = make_stream(1 << 20, &opens);
  auto first = rows_of(1, 4);
  REQUIRE(s->open({"a", "b"}, first) == nullptr);
  CHECK(first.empty());
  CHECK(opens == 1);
  auto more = rows_of(4, 6);
  REQUIRE(s->put(more) == nullptr);
  CHECK(s->rows() == 5);
  REQUIRE(s->finish("]"));
  CHECK_FALSE(s->finish("]")); // once
  CHECK(drain(*s) == "[2:1,2,3,4,5]");
}

TEST_CASE("a producer ahead of its reader by the window waits until the reader takes",
          "[result_stream]") {
  auto s = make_stream(8);
  auto head = rows_of(0, 0);
  REQUIRE(s->open({"a"}, head) == nullptr); // "[1:" is under the window
  std::atomic<bool> done{false};
  std::thread producer{[&] {
    for (int64_t i = 1000; i < 1010; ++i) { // 4-5 bytes a row: the window holds two
      auto one = rows_of(i, i + 1);
      CHECK(s->put(one) == nullptr);
    }
    done = true;
  }};
  REQUIRE(producer_blocked(*s));
  CHECK_FALSE(done);
  size_t largest = 0;
  std::string rest;
  std::thread reader{[&] { rest = drain(*s, &largest); }};
  producer.join();
  REQUIRE(s->finish("]"));
  reader.join();
  CHECK(rest == "[1:1000,1001,1002,1003,1004,1005,1006,1007,1008,1009]");
  // What was buffered never grew past the window by more than one row.
  CHECK(largest < 8 + 5);
}

TEST_CASE("a reader that goes away stops a waiting producer at once and takes nothing more",
          "[result_stream]") {
  auto s = make_stream(4);
  std::promise<const char*> why;
  std::thread producer{[&] {
    auto first = rows_of(100, 103); // past the window at once: open waits for room
    why.set_value(s->open({"a"}, first));
  }};
  REQUIRE(producer_blocked(*s));
  s->cut("client");
  auto f = why.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  CHECK(std::string{f.get()} == "client");
  producer.join();
  std::string piece;
  CHECK(s->take(piece, [] {}) == result_stream::take_result::gone);
  CHECK_FALSE(s->finish("]"));
  auto later = rows_of(300, 301);
  CHECK(std::string{s->put(later)} == "client");
}

TEST_CASE("a deadline cut stops the producer; what it wrote and the tail still reach the reader",
          "[result_stream]") {
  auto s = make_stream(4);
  std::promise<const char*> why;
  std::thread producer{[&] {
    auto first = rows_of(7, 9);
    why.set_value(s->open({"a"}, first));
  }};
  REQUIRE(producer_blocked(*s));
  s->cut("deadline");
  auto f = why.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  CHECK(std::string{f.get()} == "deadline");
  producer.join();
  CHECK(s->producer_wait() > 0ns); // the pool tells a slow reader from a slow backend by this
  REQUIRE(s->finish("]"));
  CHECK(drain(*s) == "[1:7,8]");
}

TEST_CASE("once the answer is finished, a producer still running adds nothing after the tail",
          "[result_stream]") {
  auto s = make_stream(4);
  std::promise<const char*> why;
  std::thread producer{[&] {
    auto first = rows_of(1, 3);
    why.set_value(s->open({"a"}, first));
  }};
  REQUIRE(producer_blocked(*s));
  // The caller was answered (an error at the deadline) before the cut reached the connection.
  REQUIRE(s->finish("],\"error\":\"timed_out\"}"));
  auto f = why.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  CHECK(f.get() != nullptr);
  producer.join();
  CHECK(drain(*s) == "[1:1,2],\"error\":\"timed_out\"}");
}

TEST_CASE("a waiting reader is called back once, when bytes come", "[result_stream]") {
  auto s = make_stream(1 << 20);
  auto none = rows_of(0, 0);
  REQUIRE(s->open({"a"}, none) == nullptr);
  std::string piece;
  REQUIRE(s->take(piece, [] {}) == result_stream::take_result::data);
  int calls = 0;
  REQUIRE(s->take(piece, [&calls] { ++calls; }) == result_stream::take_result::wait);
  auto one = rows_of(5, 6);
  REQUIRE(s->put(one) == nullptr);
  auto two = rows_of(6, 7);
  REQUIRE(s->put(two) == nullptr);
  CHECK(calls == 1);
  REQUIRE(s->take(piece, [] {}) == result_stream::take_result::data);
  CHECK(piece == "5,6");
}

TEST_CASE("a stream cut before it opens never opens", "[result_stream]") {
  std::atomic<int> opens{0};
  auto s = make_stream(1 << 20, &opens);
  s->cut("client");
  auto rows = rows_of(1, 3);
  CHECK(std::string{s->open({"a"}, rows)} == "client");
  CHECK(opens == 0);
  CHECK_FALSE(s->opened());
}

TEST_CASE("rendering rows is on the reader's account, not the backend's", "[result_stream]") {
  // A renderer that takes at least 2 ms a row, with a window that never makes the producer wait.
  auto s = std::make_shared<result_stream>(
      result_stream::options{16, 1 << 20},
      [](std::string& out, const std::vector<std::string>&) { out += "["; },
      [](std::string& out, const result_stream::row& r) {
        auto until = std::chrono::steady_clock::now() + 2ms;
        while (std::chrono::steady_clock::now() < until) {
        }
        out += std::to_string(std::get<int64_t>(r.at(0)));
      },
      [](const std::shared_ptr<result_stream>&) {});
  auto first = rows_of(1, 3);
  REQUIRE(s->open({"a"}, first) == nullptr);
  auto more = rows_of(3, 6);
  REQUIRE(s->put(more) == nullptr);
  CHECK(s->producer_wait() == 0ns); // it never waited for room
  CHECK(s->reader_time() >= 10ms);  // 5 rows rendered at >= 2 ms each
}
