#pragma once
/// A labelled family's children without prometheus::Family::Add on every increment. Add builds a
/// label map (allocations), hashes it and takes the family's mutex: on a request path that was
/// most of a metric's cost (a cached HTTP read made five such calls, about ten allocations;
/// bench/RESULTS.md, "Allocations per request"). Both caches add a child on its first use, as
/// Add does, so /metrics shows only the series that happened, exactly as before.

#include <prometheus/family.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace bulwark {

/// Thread-safe: the children of a family with one label whose values are numbered 0..N-1 (an
/// enum, a status code), each looked up with one atomic load once it exists.
template <class Metric, size_t N>
class indexed_children {
public:
  using namer = std::string (*)(size_t);

  indexed_children(prometheus::Family<Metric>* family, std::string label, namer name)
      : family_(family), label_(std::move(label)), name_(name) {}

  /// The child for value `i` (< N).
  Metric& at(size_t i) {
    auto* m = slots_[i].load(std::memory_order_acquire);
    if (m == nullptr) {
      // Family::Add is thread-safe and returns the same child for the same labels, so two
      // threads that race here store the same pointer.
      m = &family_->Add({{label_, name_(i)}});
      slots_[i].store(m, std::memory_order_release);
    }
    return *m;
  }

private:
  prometheus::Family<Metric>* family_;
  std::string label_;
  namer name_;
  std::array<std::atomic<Metric*>, N> slots_{};
};

/// One actor's (not thread-safe): the children of a family by their label values, for the few
/// label sets an actor uses (literals, statement names), found by comparing the values.
template <class Metric>
class labelled_children {
public:
  explicit labelled_children(prometheus::Family<Metric>* family = nullptr) : family_(family) {}

  /// The child labelled `names` = `values` (the same names, in the same order, on every call).
  template <size_t K>
  Metric& at(const std::array<const char*, K>& names, const std::array<const char*, K>& values) {
    for (auto& e : entries_) {
      bool same = true;
      for (size_t k = 0; k < K && same; ++k)
        same = e.values[k] == values[k];
      if (same)
        return *e.metric;
    }
    std::map<std::string, std::string> labels;
    for (size_t k = 0; k < K; ++k)
      labels.emplace(names[k], values[k]);
    entries_.push_back({{values.begin(), values.end()}, &family_->Add(labels)});
    return *entries_.back().metric;
  }

private:
  struct entry {
    std::vector<std::string> values;
    Metric* metric;
  };
  prometheus::Family<Metric>* family_;
  std::vector<entry> entries_;
};

} // namespace bulwark
