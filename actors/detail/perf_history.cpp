#include "actors/detail/perf_history.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace bulwark::detail {

series_history::series_history(history_bounds b)
    : bounds_(b), capacity_(std::max<size_t>(64, b.max_bytes / sizeof(history_point))) {}

void series_history::push(caf::timespan at, double value) {
  while (!points_.empty() && at - points_.front().at > bounds_.max_age)
    points_.pop_front();
  points_.push_back({at, value});
  if (points_.size() > capacity_)
    trim();
}

void series_history::trim() {
  ++trims_;
  auto n = points_.size();
  auto recent = capacity_ / 2;
  auto target = capacity_ * 3 / 4;
  auto older = n - recent;
  auto slots = target - recent;
  double mean = 0;
  for (size_t i = 0; i < older; ++i)
    mean += points_[i].value;
  mean /= static_cast<double>(older);
  double var = 0;
  for (size_t i = 0; i < older; ++i)
    var += (points_[i].value - mean) * (points_[i].value - mean);
  double sigma = std::sqrt(var / static_cast<double>(older));
  double limit = bounds_.outlier_sigma * sigma;
  std::vector<size_t> outliers;
  std::vector<size_t> normal;
  for (size_t i = 0; i < older; ++i)
    (sigma > 0 && std::fabs(points_[i].value - mean) > limit ? outliers : normal).push_back(i);
  std::vector<size_t> keep;
  if (outliers.size() >= slots) {
    std::partial_sort(outliers.begin(), outliers.begin() + static_cast<std::ptrdiff_t>(slots),
                      outliers.end(), [&](size_t a, size_t b) {
                        return std::fabs(points_[a].value - mean) >
                               std::fabs(points_[b].value - mean);
                      });
    keep.assign(outliers.begin(), outliers.begin() + static_cast<std::ptrdiff_t>(slots));
  } else {
    keep = outliers;
    auto room = slots - outliers.size();
    // Evenly spaced normal points from the oldest to the newest, both included: the past
    // stays covered back to its start, more thinly with every trim.
    if (normal.size() <= room) {
      keep.insert(keep.end(), normal.begin(), normal.end());
    } else if (room == 1) {
      keep.push_back(normal.back());
    } else {
      for (size_t j = 0; j < room; ++j)
        keep.push_back(normal[j * (normal.size() - 1) / (room - 1)]);
    }
  }
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  std::deque<history_point> out;
  for (auto i : keep)
    out.push_back(points_[i]);
  for (size_t i = older; i < n; ++i)
    out.push_back(points_[i]);
  points_ = std::move(out);
}

} // namespace bulwark::detail
