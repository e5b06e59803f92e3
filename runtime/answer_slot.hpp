#pragma once
/// One answer handed from the thread that has it to one thread that waits for it, waiting first
/// by spinning for a bounded time and only then asleep. An answer that comes while the waiter
/// spins costs neither side a system call; one that comes later wakes it as a condition
/// variable would. embedded::call uses it: a point query's answer takes tens of microseconds,
/// about what waking a sleeping thread costs (bench/RESULTS.md, "The facade's own wait").

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>

namespace bulwark {

/// The processor's hint that this thread is spinning (lets the sibling hyperthread run).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

template <class T>
class answer_slot {
public:
  /// Gives the answer; called once, from any thread.
  void give(T v) {
    value_.emplace(std::move(v));
    // seq_cst on both flags: either the waiter sees `ready_`, or this sees `parked_` and wakes it.
    ready_.store(true, std::memory_order_seq_cst);
    if (parked_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> guard{mtx_};
      cv_.notify_one();
    }
  }

  /// Waits for the answer: spinning for up to `spin`, then asleep until it is given.
  T take(std::chrono::nanoseconds spin) {
    if (!ready_.load(std::memory_order_acquire) && spin.count() > 0) {
      auto until = std::chrono::steady_clock::now() + spin;
      for (unsigned i = 1; !ready_.load(std::memory_order_acquire); ++i) {
        cpu_relax();
        if (i % 64 == 0 && std::chrono::steady_clock::now() >= until)
          break;
      }
    }
    if (!ready_.load(std::memory_order_acquire)) {
      std::unique_lock<std::mutex> guard{mtx_};
      parked_.store(true, std::memory_order_seq_cst);
      cv_.wait(guard, [&] { return ready_.load(std::memory_order_seq_cst); });
    }
    return std::move(*value_);
  }

  /// Whether the waiter went to sleep (tests).
  bool parked() const { return parked_.load(); }

private:
  std::optional<T> value_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> parked_{false};
  std::mutex mtx_;
  std::condition_variable cv_;
};

} // namespace bulwark
