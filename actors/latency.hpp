#pragma once
/// The buckets of every latency histogram Bulwark exports: request duration (gateway), backend
/// call duration (database) and scheduler lag (performance monitor). One set, so dashboards
/// compare like with like.

#include <prometheus/histogram.h>

namespace bulwark {

/// Seconds, 100 µs to 10 s.
inline prometheus::Histogram::BucketBoundaries latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

} // namespace bulwark
