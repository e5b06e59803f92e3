#include "actors/detail/memory_account.hpp"

#include <algorithm>
#include <cmath>

namespace bulwark::detail {

const char* to_string(memory_consumer x) {
  switch (x) {
  case memory_consumer::results:
    return "results";
  case memory_consumer::http_bodies:
    return "http_bodies";
  case memory_consumer::cache:
    return "cache";
  case memory_consumer::limiter:
    return "limiter";
  case memory_consumer::remote:
    return "remote";
  }
  return "unknown";
}

memory_reservation::memory_reservation(memory_reservation&& other) noexcept
    : account_(std::move(other.account_)), consumer_(other.consumer_), class_(other.class_),
      bytes_(other.bytes_.exchange(0)) {}

memory_reservation& memory_reservation::operator=(memory_reservation&& other) noexcept {
  if (this != &other) {
    release();
    account_ = std::move(other.account_);
    consumer_ = other.consumer_;
    class_ = other.class_;
    bytes_.store(other.bytes_.exchange(0));
  }
  return *this;
}

bool memory_reservation::grow(uint64_t more) {
  if (!account_ || more == 0)
    return true;
  if (!account_->take(consumer_, class_, more, false, true))
    return false;
  bytes_.fetch_add(more);
  return true;
}

void memory_reservation::force(uint64_t more) {
  if (!account_ || more == 0)
    return;
  account_->take(consumer_, class_, more, true, false);
  bytes_.fetch_add(more);
}

void memory_reservation::resize(uint64_t n) {
  if (!account_)
    return;
  auto now = bytes();
  if (n > now) {
    force(n - now);
  } else if (n < now) {
    bytes_.fetch_sub(now - n);
    account_->give(consumer_, now - n);
  }
}

void memory_reservation::release() {
  if (!account_)
    return;
  auto n = bytes_.exchange(0);
  account_->give(consumer_, n);
  account_.reset();
}

memory_reservation memory_reservation::sibling() const {
  if (!account_)
    return {};
  return memory_reservation(account_, consumer_, class_, 0);
}

void memory_reservation::absorb(memory_reservation& other) {
  if (&other == this)
    return;
  if (account_ && other.account_ == account_ && other.consumer_ == consumer_) {
    bytes_.fetch_add(other.bytes_.exchange(0));
    other.account_.reset();
    return;
  }
  force(other.bytes());
  other.release();
}

memory_account::memory_account(memory_account_options opts)
    : opts_(opts), budget_(opts.budget_bytes) {}

uint64_t memory_account::ceiling(memory_class k) const {
  auto budget = static_cast<double>(budget_.load(std::memory_order_relaxed));
  auto f = opts_.ceilings[static_cast<size_t>(k)];
  return static_cast<uint64_t>(std::floor(budget * f));
}

uint64_t memory_account::room(memory_class k) const {
  if (critical_.load() && k != memory_class::high)
    return 0;
  auto limit = ceiling(k);
  auto taken = unaccounted_.load() + reserved_.load();
  return taken >= limit ? 0 : limit - taken;
}

bool memory_account::take(memory_consumer c, memory_class k, uint64_t bytes, bool forced,
                          bool count_refusal) {
  auto i = static_cast<size_t>(c);
  if (forced || !opts_.admission) {
    auto before = reserved_.fetch_add(bytes);
    if (forced && unaccounted_.load() + before + bytes > ceiling(k))
      overdraft_[i].fetch_add(bytes);
    by_consumer_[i].fetch_add(bytes);
    return true;
  }
  if (critical_.load() && k != memory_class::high) {
    if (count_refusal)
      refused_[i].fetch_add(1);
    return false;
  }
  auto limit = ceiling(k);
  auto cur = reserved_.load();
  for (;;) {
    auto unaccounted = unaccounted_.load();
    if (unaccounted + cur + bytes > limit) {
      if (count_refusal)
        refused_[i].fetch_add(1);
      return false;
    }
    if (reserved_.compare_exchange_weak(cur, cur + bytes))
      break;
  }
  by_consumer_[i].fetch_add(bytes);
  return true;
}

void memory_account::count_refusal(memory_consumer c) {
  refused_[static_cast<size_t>(c)].fetch_add(1);
}

void memory_account::give(memory_consumer c, uint64_t bytes) {
  if (bytes == 0)
    return;
  reserved_.fetch_sub(bytes);
  by_consumer_[static_cast<size_t>(c)].fetch_sub(bytes);
}

memory_reservation memory_account::try_reserve(memory_consumer consumer, uint64_t bytes,
                                               memory_class k, bool count_refusal) {
  if (!take(consumer, k, bytes, false, count_refusal))
    return {};
  return memory_reservation{shared_from_this(), consumer, k, bytes};
}

memory_reservation memory_account::force_reserve(memory_consumer consumer, uint64_t bytes,
                                                 memory_class k) {
  take(consumer, k, bytes, true, false);
  return memory_reservation{shared_from_this(), consumer, k, bytes};
}

void memory_account::observe(uint64_t used_bytes, uint64_t limit_bytes, bool critical) {
  if (limit_bytes > 0)
    budget_.store(limit_bytes);
  used_.store(used_bytes);
  auto reserved = reserved_.load();
  auto seen = used_bytes > reserved ? used_bytes - reserved : 0;
  // Freed memory the allocator keeps makes `seen` larger than the truth: conservative. But a
  // query's rows and a body being read are reserved *before* they are allocated (a result
  // reserves its three copies at once, made one after another), so while they are in flight
  // `seen` is smaller than the truth by up to their reservations, and taking it as it is would
  // hand bytes that are about to exist back as room. The truth lies in [seen, seen + ahead]:
  // the estimate keeps its last value within that range (what is used, less the reservations
  // that do exist, bounds it above), so it falls only as far as the reservations in flight
  // cannot explain (at once when none are), and rises at once.
  auto ahead = by_consumer_[static_cast<size_t>(memory_consumer::results)].load() +
               by_consumer_[static_cast<size_t>(memory_consumer::http_bodies)].load();
  auto existing = reserved > ahead ? reserved - ahead : 0;
  auto upper = used_bytes > existing ? used_bytes - existing : 0;
  auto last = unaccounted_.load();
  unaccounted_.store(std::max(seen, std::min(last, upper)));
  critical_.store(critical);
}

void memory_account::set_critical(bool critical) {
  critical_.store(critical);
}

memory_account_snapshot memory_account::snapshot() const {
  memory_account_snapshot s;
  s.budget_bytes = budget_.load();
  s.used_bytes = used_.load();
  s.unaccounted_bytes = unaccounted_.load();
  s.reserved_bytes = reserved_.load();
  for (size_t i = 0; i < memory_consumer_count; ++i) {
    s.reserved[i] = by_consumer_[i].load();
    s.refused[i] = refused_[i].load();
    s.overdraft_bytes[i] = overdraft_[i].load();
  }
  for (size_t k = 0; k < 3; ++k)
    s.ceiling_bytes[k] = ceiling(static_cast<memory_class>(k));
  s.critical = critical_.load();
  s.admission = opts_.admission;
  return s;
}

} // namespace bulwark::detail
