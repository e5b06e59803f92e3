#pragma once
/// Threads a test starts beside its checks. A failed REQUIRE throws; a std::thread still joinable
/// when that exception unwinds its scope calls std::terminate, which kills the whole test binary
/// and hides the assertion that failed. A thread_group joins its threads when the scope ends, so
/// the failure is reported as one and the next test runs. Threads that loop until told to stop
/// take the telling as `stop`, called before the join when the scope ends with them running.

#include <functional>
#include <thread>
#include <utility>
#include <vector>

namespace bulwark::test {

class thread_group {
public:
  thread_group() = default;
  explicit thread_group(std::function<void()> stop) : stop_(std::move(stop)) {}
  thread_group(const thread_group&) = delete;
  thread_group& operator=(const thread_group&) = delete;
  ~thread_group() {
    if (stop_)
      for (auto& t : threads_)
        if (t.joinable()) {
          stop_();
          break;
        }
    join();
  }

  /// Starts `f` on a new thread of the group.
  template <class F>
  void spawn(F&& f) {
    threads_.emplace_back(std::forward<F>(f));
  }

  /// Waits for every thread of the group; a second call returns at once.
  void join() {
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
  }

private:
  std::function<void()> stop_;
  std::vector<std::thread> threads_;
};

} // namespace bulwark::test
