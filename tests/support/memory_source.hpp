#pragma once
/// A memory source whose ratio the test (or a fuzz harness) sets: each sample reads `ratio` of a
/// real-sized `limit`, since the memory account takes its budget from that limit. No Catch2 here,
/// so fuzz targets can use it too.

#include "actors/detail/memory_account.hpp"
#include "actors/detail/memory_source.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

namespace bulwark::test {

/// Counts an account's reservations as used memory, as a real node's do once the rows they
/// reserve exist. Without it a scripted sample taken while a query fetches rows reports the same
/// use as before, and the account (which takes `used - reserved` as the node's unreserved memory)
/// would hand that query's reservation back as room: how much a query may fetch would depend on
/// how many samples fall within it, i.e. on the machine's speed.
class reservations_as_used {
public:
  void attach(std::shared_ptr<detail::memory_account> account) {
    std::lock_guard<std::mutex> lock{mutex_};
    account_ = std::move(account);
  }

  uint64_t bytes() const {
    std::lock_guard<std::mutex> lock{mutex_};
    auto account = account_.lock();
    return account ? account->snapshot().reserved_bytes : 0;
  }

private:
  mutable std::mutex mutex_;
  std::weak_ptr<detail::memory_account> account_;
};

/// Each sample: `ratio` of `limit`, plus the reservations of the account attached to `reserved`
/// (if any).
inline detail::memory_source scripted_memory(std::shared_ptr<std::atomic<double>> ratio,
                                             uint64_t limit,
                                             std::shared_ptr<reservations_as_used> reserved = {}) {
  return {"scripted", [ratio, limit, reserved] {
            detail::memory_read r;
            r.ok = true;
            auto used = static_cast<uint64_t>(ratio->load() * limit);
            if (reserved)
              used += reserved->bytes();
            r.sample = detail::make_sample(used, limit);
            return r;
          }};
}

} // namespace bulwark::test
