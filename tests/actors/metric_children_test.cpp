#include "actors/metric_children.hpp"

#include <catch2/catch.hpp>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <string>
#include <thread>
#include <vector>

using namespace bulwark;

namespace {

prometheus::Family<prometheus::Counter>& family(prometheus::Registry& reg) {
  return prometheus::BuildCounter().Name("test_things_total").Help("things").Register(reg);
}

/// The exported series of the registry's one family: label values -> value.
std::vector<std::pair<std::string, double>> series(prometheus::Registry& reg) {
  std::vector<std::pair<std::string, double>> out;
  for (auto& fam : reg.Collect())
    for (auto& m : fam.metric) {
      std::string labels;
      for (auto& l : m.label)
        labels += l.name + "=" + l.value + ";";
      out.emplace_back(labels, m.counter.value);
    }
  return out;
}

} // namespace

TEST_CASE("indexed children are the family's own, added on first use, and safe from many threads",
          "[metrics]") {
  prometheus::Registry reg;
  auto& fam = family(reg);
  indexed_children<prometheus::Counter, 600> by_code{&fam, "code",
                                                     [](size_t i) { return std::to_string(i); }};
  CHECK(series(reg).empty()); // nothing exported before a use, as with Family::Add
  by_code.at(200).Increment();
  CHECK(&by_code.at(200) == &fam.Add({{"code", "200"}}));
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        by_code.at(i % 2 == 0 ? 503 : 200).Increment();
    });
  for (auto& t : ts)
    t.join();
  auto s = series(reg);
  REQUIRE(s.size() == 2);
  CHECK(fam.Add({{"code", "200"}}).Value() == 2001);
  CHECK(fam.Add({{"code", "503"}}).Value() == 2000);
}

TEST_CASE("labelled children are found by their values, not by where the text lives", "[metrics]") {
  prometheus::Registry reg;
  auto& fam = family(reg);
  labelled_children<prometheus::Counter> stages{&fam};
  std::string stage = "cache";
  auto& hit = stages.at<2>({"stage", "result"}, {"cache", "hit"});
  CHECK(&stages.at<2>({"stage", "result"}, {stage.c_str(), "hit"}) == &hit);
  CHECK(&hit == &fam.Add({{"stage", "cache"}, {"result", "hit"}}));
  auto& miss = stages.at<2>({"stage", "result"}, {"cache", "miss"});
  CHECK(&miss != &hit);
  CHECK(&miss == &fam.Add({{"stage", "cache"}, {"result", "miss"}}));
  CHECK(series(reg).size() == 2);
}
