#pragma once
/// The answers an actor still owes, paid when it dies. CAF 0.17 has no broken_promise: a response
/// promise that dies with its actor (a crash, an exit message, a rest_for_one restart) leaves the
/// caller waiting for its own timeout, and the request ends as a 504 seconds later. An actor that
/// makes its promises here answers every open one `component_unavailable` (with its name and why
/// it ended) the moment it terminates, whatever ended it, so callers learn at once and retry.
///
///   owed_answers<db_result> owed;           // in the actor's state
///   owed.attach(self, "database");          // once, when the actor starts
///   auto rp = owed.make(self);              // instead of self->make_response_promise<db_result>()
///   rp.deliver(x);                          // answers and forgets, like a response promise
///
/// Single-threaded like the actor: the promises are made, delivered and paid on its own thread
/// (attached functors run in the actor's cleanup).

#include "messages/errc.hpp"

#include <caf/local_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

namespace bulwark {

template <class T>
class owed_answers {
  struct book {
    std::map<uint64_t, caf::typed_response_promise<T>> open;
    uint64_t next = 0;
  };

public:
  /// One owed answer; copies share it, and the first delivery pays it.
  class promise {
  public:
    promise() = default;

    template <class U>
    void deliver(U&& x) {
      if (!book_)
        return;
      auto i = book_->open.find(id_);
      if (i == book_->open.end())
        return;
      auto rp = std::move(i->second);
      book_->open.erase(i);
      rp.deliver(std::forward<U>(x));
    }

    /// Whether it is still owed (not delivered, the actor alive).
    bool pending() const { return book_ && book_->open.count(id_) > 0; }

  private:
    friend class owed_answers;
    promise(std::shared_ptr<book> b, uint64_t id) : book_(std::move(b)), id_(id) {}
    std::shared_ptr<book> book_;
    uint64_t id_ = 0;
  };

  /// Pays every open answer when `self` terminates, naming `component`.
  void attach(caf::local_actor* self, std::string component) {
    self->attach_functor([b = book_, component = std::move(component)](const caf::error& why) {
      auto open = std::move(b->open);
      b->open.clear();
      for (auto& kv : open)
        kv.second.deliver(make_error(errc::component_unavailable, component, describe(why)));
    });
  }

  /// A promise for the request `self` is handling now.
  template <class Self>
  promise make(Self* self) {
    auto id = ++book_->next;
    book_->open.emplace(id, self->template make_response_promise<T>());
    return promise{book_, id};
  }

  /// Answers still owed.
  size_t size() const { return book_->open.size(); }

private:
  std::shared_ptr<book> book_ = std::make_shared<book>();
};

} // namespace bulwark
