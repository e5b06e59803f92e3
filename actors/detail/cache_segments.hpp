#pragma once
/// The three queues of a W-TinyLFU cache (Einziger, Friedman, Manes, "TinyLFU: A Highly Efficient
/// Cache Admission Policy", 2017), kept as index-linked lists over a slab of nodes so that every
/// move is O(1) and allocation-free. Used by `adaptive_cache` (the real cache, whose nodes carry
/// keys and values) and by its ghost caches (whose nodes carry a hash only): the queue mechanics
/// live here once; who is evicted is decided by the owners.
///
/// - window: LRU; every new entry starts here.
/// - probation: entries that left the window, or were demoted from protected. Its most recently
///   used end holds the newest *candidates*, its least recently used end the next *victim*.
/// - protected: entries hit while on probation.
///
/// A hit moves an entry to its queue's MRU end; a hit on probation promotes to protected, and the
/// protected queue's LRU entries are demoted back to probation while it is over its share.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bulwark::detail {

enum class cache_queue : uint8_t { none = 0, window = 1, probation = 2, protected_ = 3 };

/// The part of a node the lists need. Owners derive their node type from it.
struct segment_links {
  static constexpr uint32_t nil = UINT32_MAX;
  uint32_t prev = nil;
  uint32_t next = nil;
  cache_queue queue = cache_queue::none;
};

template <class Node>
class cache_segments {
public:
  static constexpr uint32_t nil = segment_links::nil;

  /// Capacity split: `window` entries for the window, `protected_max` for protected; the rest of
  /// the owner's capacity is probation.
  void set_shares(size_t window, size_t protected_max) {
    window_max_ = window;
    protected_max_ = protected_max;
  }
  size_t window_max() const { return window_max_; }
  size_t protected_max() const { return protected_max_; }

  /// A new slot (reused if one is free), not yet in any queue.
  uint32_t allocate() {
    if (!free_.empty()) {
      auto i = free_.back();
      free_.pop_back();
      nodes_[i] = Node{};
      return i;
    }
    nodes_.emplace_back();
    return static_cast<uint32_t>(nodes_.size() - 1);
  }

  /// Unlinks the node and frees its slot.
  void release(uint32_t i) {
    unlink(i);
    nodes_[i] = Node{};
    free_.push_back(i);
  }

  /// Slots in the slab, used or free (a free slot's queue is `none`).
  size_t slots() const { return nodes_.size(); }

  Node& operator[](uint32_t i) { return nodes_[i]; }
  const Node& operator[](uint32_t i) const { return nodes_[i]; }

  size_t size(cache_queue q) const { return list(q).size; }
  size_t size() const {
    return list(cache_queue::window).size + list(cache_queue::probation).size +
           list(cache_queue::protected_).size;
  }
  uint32_t lru(cache_queue q) const { return list(q).tail; }
  uint32_t mru(cache_queue q) const { return list(q).head; }
  uint32_t next_towards_mru(uint32_t i) const { return nodes_[i].prev; }

  /// Puts an unlinked node at the MRU end of `q`.
  void push_mru(cache_queue q, uint32_t i) {
    auto& l = list(q);
    auto& n = nodes_[i];
    n.queue = q;
    n.prev = nil;
    n.next = l.head;
    if (l.head != nil)
      nodes_[l.head].prev = i;
    l.head = i;
    if (l.tail == nil)
      l.tail = i;
    ++l.size;
  }

  /// Puts an unlinked node at the LRU end of `q`.
  void push_lru(cache_queue q, uint32_t i) {
    auto& l = list(q);
    auto& n = nodes_[i];
    n.queue = q;
    n.next = nil;
    n.prev = l.tail;
    if (l.tail != nil)
      nodes_[l.tail].next = i;
    l.tail = i;
    if (l.head == nil)
      l.head = i;
    ++l.size;
  }

  void unlink(uint32_t i) {
    auto& n = nodes_[i];
    if (n.queue == cache_queue::none)
      return;
    auto& l = list(n.queue);
    if (n.prev != nil)
      nodes_[n.prev].next = n.next;
    else
      l.head = n.next;
    if (n.next != nil)
      nodes_[n.next].prev = n.prev;
    else
      l.tail = n.prev;
    --l.size;
    n.prev = n.next = nil;
    n.queue = cache_queue::none;
  }

  void move_to(cache_queue q, uint32_t i) {
    unlink(i);
    push_mru(q, i);
  }

  /// A new entry: MRU of the window.
  void insert(uint32_t i) { push_mru(cache_queue::window, i); }

  /// A hit: window → window MRU, probation → protected MRU, protected → protected MRU.
  void on_hit(uint32_t i) {
    auto q = nodes_[i].queue;
    move_to(q == cache_queue::probation ? cache_queue::protected_ : q, i);
  }

  /// Moves window overflow to probation's MRU end (they become candidates) and demotes protected
  /// overflow to probation's MRU end. Returns how many left the window.
  size_t rebalance() {
    size_t moved = 0;
    while (list(cache_queue::window).size > window_max_) {
      move_to(cache_queue::probation, list(cache_queue::window).tail);
      ++moved;
    }
    while (list(cache_queue::protected_).size > protected_max_)
      move_to(cache_queue::probation, list(cache_queue::protected_).tail);
    return moved;
  }

  void clear() {
    nodes_.clear();
    free_.clear();
    for (auto& l : lists_)
      l = queue_list{};
  }

  /// Bytes of the slab and the free list (the nodes' own heap data is the owner's to count).
  size_t bytes() const {
    return nodes_.capacity() * sizeof(Node) + free_.capacity() * sizeof(uint32_t);
  }

private:
  struct queue_list {
    uint32_t head = nil;
    uint32_t tail = nil;
    size_t size = 0;
  };

  // The queues live in one array indexed by their cache_queue (none's stays empty). They were
  // three members picked by a conditional (`q == window ? window_ : ...`), which g++ 12.2 -O3
  // (the Release build that ships) miscompiled once the ghosts' code around it grew (83dc579):
  // rebalance's loop kept the window's size in a register while unlink decremented it in memory
  // through the picked reference, so the loop never ended. -O2, clang++ -O3, ASan+UBSan, and
  // -O3 with -fno-strict-aliasing or -fno-tree-loop-im all ran it correctly, and this form does
  // at -O3 with the same hits (bench/RESULTS.md, "A loop that g++ -O3 never ended").
  queue_list& list(cache_queue q) { return lists_[static_cast<size_t>(q)]; }
  const queue_list& list(cache_queue q) const { return lists_[static_cast<size_t>(q)]; }

  std::vector<Node> nodes_;
  std::vector<uint32_t> free_;
  queue_list lists_[4];
  size_t window_max_ = 0;
  size_t protected_max_ = 0;
};

} // namespace bulwark::detail
