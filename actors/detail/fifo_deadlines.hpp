#pragma once
/// Pending things that all wait the same time, each with a context to act on if its time comes
/// first, served by one timer in flight at a time (like deadline_set.hpp), without an allocation
/// per thing.
///
/// Why not deadline_set: the gateway asks the limiter and a cache shard for every request, each
/// ask due `component_timeout` after it starts. Kept in deadline_set plus a map of std::function
/// actions, an ask cost four allocations (a tree node, a hash node, the map's node and the
/// action's captures), eight per cached read (bench/alloc_count.sh). With one timeout and a clock
/// that does not go back, deadlines come in the order the asks start: a ring of entries indexed
/// by id, expired from its front, needs none once the ring has grown to the asks in flight.
///
///   auto [id, arm] = asks.start(now + timeout, ctx);  // if (arm) a timer for *arm
///   asks.end(id);                                      // answered in time: false if too late
///   on the timer: asks.expire(now, [](Ctx& c) {...});  // those whose time came, in order
///                 if (auto at = asks.next()) a timer for *at;
///
/// A deadline earlier than the last one's (a clock that went back) is raised to it: that thing
/// then waits a little longer, and the order holds. A thing still pending keeps the ended ones
/// started after it in the ring until it ends or expires: at most what starts in one timeout
/// (40 bytes each with the gateway's context: 2 MB for 50 000 asks a second behind a limiter
/// that stopped answering). A ring grown past `keep` entries goes back to its first size the next
/// time nothing is in it. Pure and single-threaded, like the actor that owns it.

#include <caf/timestamp.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace bulwark::detail {

template <class Ctx>
class fifo_deadlines {
public:
  using time = caf::timespan;

  /// Starts a thing due at `at` with `ctx`. Returns its id and when a new timer must fire (`at`,
  /// when no timer in flight fires at or before it).
  std::pair<uint64_t, std::optional<time>> start(time at, Ctx ctx) {
    if (size_ > 0 && at < slot(size_ - 1).at)
      at = slot(size_ - 1).at;
    if (size_ == ring_.size())
      grow();
    slot(size_) = entry{at, true, std::move(ctx)};
    auto id = first_ + size_;
    ++size_;
    ++open_;
    if (armed_ && *armed_ <= at)
      return {id, std::nullopt};
    armed_ = at;
    return {id, at};
  }

  /// Ends thing `id` before its time came: true if it was still pending (false: unknown, ended
  /// already, or expired, whose action has run). Its context is released now.
  bool end(uint64_t id) {
    if (id < first_ || id - first_ >= size_)
      return false;
    auto& e = slot(static_cast<size_t>(id - first_));
    if (!e.open)
      return false;
    e.open = false;
    e.ctx = Ctx{};
    --open_;
    drop_ended();
    return true;
  }

  /// A timer fired at `now`: calls `on_due(ctx)` for each pending thing due at or before `now`,
  /// earliest first, after removing them all (so `on_due` may start new ones). Call next() after.
  template <class F>
  void expire(time now, F&& on_due) {
    if (armed_ && *armed_ <= now)
      armed_.reset(); // the earliest timer in flight has fired (this one or an earlier one)
    std::vector<Ctx> due;
    while (size_ > 0 && slot(0).at <= now) {
      auto& e = slot(0);
      if (e.open) {
        due.push_back(std::move(e.ctx));
        --open_;
      }
      e = entry{};
      pop_front();
    }
    drop_ended();
    for (auto& c : due)
      on_due(c);
  }

  /// When a new timer must fire, if one must: the earliest pending deadline, when no timer in
  /// flight fires at or before it.
  std::optional<time> next() {
    drop_ended();
    if (size_ == 0)
      return std::nullopt;
    auto earliest = slot(0).at;
    if (armed_ && *armed_ <= earliest)
      return std::nullopt;
    armed_ = earliest;
    return earliest;
  }

  /// Things still pending.
  size_t size() const { return open_; }
  /// The earliest timer in flight, as far as this set knows.
  std::optional<time> armed() const { return armed_; }
  /// Entries the ring holds room for (it grows to the most in flight at once, never shrinks).
  size_t capacity() const { return ring_.size(); }

private:
  struct entry {
    time at{0};
    bool open = false;
    Ctx ctx{};
  };

  entry& slot(size_t i) { return ring_[(head_ + i) & (ring_.size() - 1)]; }

  void pop_front() {
    head_ = (head_ + 1) & (ring_.size() - 1);
    --size_;
    ++first_;
  }

  /// Ended things at the front go, so the ring holds what is in flight (and what ended behind it).
  /// An empty ring that grew past `keep` is given back.
  void drop_ended() {
    while (size_ > 0 && !slot(0).open)
      pop_front();
    if (size_ == 0 && ring_.size() > keep) {
      ring_ = std::vector<entry>(initial);
      head_ = 0;
    }
  }

  void grow() {
    std::vector<entry> bigger(ring_.empty() ? initial : 2 * ring_.size());
    for (size_t i = 0; i < size_; ++i)
      bigger[i] = std::move(slot(i));
    ring_ = std::move(bigger);
    head_ = 0;
  }

  static constexpr size_t initial = 16;
  /// The most entries an empty ring keeps (under load with nothing stuck, tens are in flight).
  static constexpr size_t keep = 1024;

  std::vector<entry> ring_; ///< a power of two in size
  size_t head_ = 0;         ///< where the thing with id first_ is
  size_t size_ = 0;         ///< entries from head_ on: pending, or ended behind a pending one
  size_t open_ = 0;
  uint64_t first_ = 1; ///< the id of the entry at head_ (ids start at 1)
  std::optional<time> armed_;
};

} // namespace bulwark::detail
