#include "actors/detail/result_stream.hpp"

#include <cstring>
#include <utility>

namespace bulwark::detail {

namespace {

constexpr const char* client_gone = "client";
/// What the producer hears once the answer was finished without it (the caller was answered
/// at the deadline before the cut reached it).
constexpr const char* answered_already = "deadline";

bool is_client(const char* why) {
  return why != nullptr && std::strcmp(why, client_gone) == 0;
}

} // namespace

result_stream::result_stream(options opts, head_renderer head, row_renderer render,
                             open_handler on_open)
    : opts_(opts), head_(std::move(head)), render_(std::move(render)),
      on_open_(std::move(on_open)) {}

bool result_stream::opened() const {
  std::lock_guard<std::mutex> lk(mu_);
  return opened_;
}

uint64_t result_stream::rows() const {
  std::lock_guard<std::mutex> lk(mu_);
  return rows_;
}

std::chrono::nanoseconds result_stream::producer_wait() const {
  std::lock_guard<std::mutex> lk(mu_);
  if (waiting_since_)
    return waited_ + (std::chrono::steady_clock::now() - *waiting_since_);
  return waited_;
}

std::chrono::nanoseconds result_stream::reader_time() const {
  auto waited = producer_wait();
  std::lock_guard<std::mutex> lk(mu_);
  return waited + rendered_;
}

void result_stream::hold(std::shared_ptr<const void> x) {
  std::lock_guard<std::mutex> lk(mu_);
  hold_ = std::move(x);
}

const char* result_stream::cut_reason() const {
  std::lock_guard<std::mutex> lk(mu_);
  return cut_;
}

std::function<void()> result_stream::wake_locked() {
  std::function<void()> f;
  f.swap(ready_);
  return f;
}

/// Renders `rows` after `out`'s bytes; only the producer's thread renders, so the row count it
/// reads for the separators is its own.
void result_stream::append_rows(std::string& out, std::vector<row>& rows) {
  auto t0 = std::chrono::steady_clock::now();
  uint64_t n = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    n = rows_;
  }
  for (auto& r : rows) {
    if (n++ > 0)
      out += ',';
    render_(out, r);
  }
  rows.clear();
  // Rendering is the reader's work (a whole answer is rendered after the call), not the backend's.
  std::lock_guard<std::mutex> lk(mu_);
  rendered_ += std::chrono::steady_clock::now() - t0;
}

const char* result_stream::wait_for_room(std::unique_lock<std::mutex>& lk) {
  if (cut_ == nullptr && !finished_ && buf_.size() >= opts_.window_bytes) {
    waiting_since_ = std::chrono::steady_clock::now();
    room_.wait(lk,
               [&] { return cut_ != nullptr || finished_ || buf_.size() < opts_.window_bytes; });
    waited_ += std::chrono::steady_clock::now() - *waiting_since_;
    waiting_since_.reset();
  }
  if (cut_ != nullptr)
    return cut_;
  return finished_ ? answered_already : nullptr;
}

const char* result_stream::open(const std::vector<std::string>& columns, std::vector<row>& rows) {
  std::string out;
  head_(out, columns);
  auto n = rows.size();
  append_rows(out, rows);
  open_handler on_open;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (cut_ != nullptr)
      return cut_;
    if (finished_)
      return answered_already;
    opened_ = true;
    rows_ += n;
    buf_ = std::move(out);
    on_open.swap(on_open_);
  }
  if (on_open)
    on_open(shared_from_this());
  std::unique_lock<std::mutex> lk(mu_);
  return wait_for_room(lk);
}

const char* result_stream::put(std::vector<row>& rows) {
  auto n = rows.size();
  std::string out;
  append_rows(out, rows);
  std::function<void()> wake;
  {
    std::unique_lock<std::mutex> lk(mu_);
    if (auto why = wait_for_room(lk))
      return why;
    buf_ += out;
    rows_ += n;
    wake = wake_locked();
  }
  if (wake)
    wake();
  return nullptr;
}

void result_stream::cut(const char* why) {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (cut_ == nullptr)
      cut_ = why;
    if (is_client(why)) {
      std::string{}.swap(buf_); // nobody will read it
      cut_ = client_gone;
    }
    wake = wake_locked();
  }
  room_.notify_all();
  if (wake)
    wake();
}

bool result_stream::finish(const std::string& tail) {
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (finished_ || is_client(cut_))
      return false;
    buf_ += tail;
    finished_ = true;
    wake = wake_locked();
  }
  room_.notify_all();
  if (wake)
    wake();
  return true;
}

result_stream::take_result result_stream::take(std::string& out, std::function<void()> ready) {
  out.clear();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (is_client(cut_))
      return take_result::gone;
    if (!buf_.empty()) {
      out.swap(buf_);
    } else if (finished_) {
      return take_result::end;
    } else {
      ready_ = std::move(ready);
      return take_result::wait;
    }
  }
  room_.notify_all();
  return take_result::data;
}

} // namespace bulwark::detail
