#include "actors/detail/memory_source.hpp"

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <filesystem>

using namespace bulwark::detail;
namespace fs = std::filesystem;

using bulwark::test::temp_dir;

TEST_CASE("cgroup v2 source reads memory.current against memory.max", "[memory]") {
  temp_dir d;
  d.put("g/memory.current", "268435456\n");
  d.put("g/memory.max", "1073741824\n");
  auto r = cgroup_v2_source((d.path / "g").string()).read();
  REQUIRE(r.ok);
  CHECK(r.sample.used_bytes == 268435456);
  CHECK(r.sample.limit_bytes == 1073741824);
  CHECK(r.sample.ratio == Approx(0.25));
}

TEST_CASE("cgroup sources count the working set: inactive file pages are not pressure",
          "[memory]") {
  temp_dir d;
  d.put("g/memory.current", "600\n");
  d.put("g/memory.max", "1000\n");
  d.put("g/memory.stat", "anon 300\nfile 300\nactive_file 100\ninactive_file 200\n");
  auto r = cgroup_v2_source((d.path / "g").string()).read();
  REQUIRE(r.ok);
  CHECK(r.sample.used_bytes == 400);
  CHECK(r.sample.ratio == Approx(0.4));
  d.put("m/memory.usage_in_bytes", "600\n");
  d.put("m/memory.limit_in_bytes", "1000\n");
  d.put("m/memory.stat", "cache 300\ninactive_file 999\ntotal_inactive_file 250\n");
  CHECK(cgroup_v1_source((d.path / "m").string()).read().sample.used_bytes == 350);
  // A stat that claims more inactive pages than the usage leaves the usage as it is.
  d.put("g/memory.stat", "inactive_file 5000\n");
  CHECK(cgroup_v2_source((d.path / "g").string()).read().sample.used_bytes == 600);
}

TEST_CASE("cgroup v2 without a limit is not a usable source", "[memory]") {
  temp_dir d;
  d.put("g/memory.current", "100\n");
  d.put("g/memory.max", "max\n");
  auto r = cgroup_v2_source((d.path / "g").string()).read();
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Catch::Contains("no memory limit"));
}

TEST_CASE("cgroup v1 treats its huge sentinel as no limit", "[memory]") {
  temp_dir d;
  d.put("m/memory.usage_in_bytes", "100\n");
  d.put("m/memory.limit_in_bytes", "9223372036854771712\n");
  CHECK_FALSE(cgroup_v1_source((d.path / "m").string()).read().ok);
  d.put("m/memory.limit_in_bytes", "400\n");
  auto r = cgroup_v1_source((d.path / "m").string()).read();
  REQUIRE(r.ok);
  CHECK(r.sample.ratio == Approx(0.25));
}

TEST_CASE("process source measures resident pages against the budget", "[memory]") {
  temp_dir d;
  auto statm = d.put("statm", "1000 256 10 1 0 100 0\n");
  auto r = process_source(256 * 4096 * 2, statm).read();
  REQUIRE(r.ok);
  CHECK(r.sample.used_bytes == 256 * 4096);
  CHECK(r.sample.ratio == Approx(0.5));
  // The real /proc/self/statm is readable and plausible.
  auto real = process_source(uint64_t{1} << 40).read();
  REQUIRE(real.ok);
  CHECK(real.sample.used_bytes > 0);
}

TEST_CASE("file source reads a ratio on every sample and rejects garbage", "[memory]") {
  temp_dir d;
  auto f = d.put("ratio", "0.5\n");
  auto src = file_source(f, 1000);
  auto r = src.read();
  REQUIRE(r.ok);
  CHECK(r.sample.ratio == Approx(0.5));
  CHECK(r.sample.used_bytes == 500);
  d.put("ratio", "0.97");
  CHECK(src.read().sample.ratio == Approx(0.97));
  d.put("ratio", "1.5");
  CHECK_FALSE(src.read().ok);
  d.put("ratio", "lots");
  CHECK_FALSE(src.read().ok);
  fs::remove(f);
  auto missing = src.read();
  CHECK_FALSE(missing.ok);
  CHECK_THAT(missing.error, Catch::Contains("cannot read"));
}

TEST_CASE("auto picks the innermost cgroup with a limit, else the budget", "[memory]") {
  temp_dir d;
  auto proc = d.put("proc_cgroup", "0::/app/worker\n");
  auto root = (d.path / "cg").string();
  d.put("cg/app/worker/memory.current", "10\n");
  d.put("cg/app/worker/memory.max", "max\n");
  d.put("cg/app/memory.current", "50\n");
  d.put("cg/app/memory.max", "200\n");
  memory_source src;
  std::string err;
  REQUIRE(select_memory_source("auto", "", 1000, src, err, root, proc));
  CHECK(src.name == "cgroup-v2:" + root + "/app");
  CHECK(src.read().sample.ratio == Approx(0.25));

  temp_dir bare;
  auto proc2 = bare.put("proc_cgroup", "0::/\n");
  REQUIRE(select_memory_source("auto", "", 1000, src, err, (bare.path / "cg").string(), proc2));
  CHECK(src.name == "process");
  CHECK_FALSE(
      select_memory_source("cgroup", "", 1000, src, err, (bare.path / "cg").string(), proc2));
  CHECK_THAT(err, Catch::Contains("no cgroup with a memory limit"));
}

TEST_CASE("cgroup v1 memory controller is found through /proc/self/cgroup", "[memory]") {
  temp_dir d;
  auto proc = d.put("proc_cgroup", "4:memory:/svc\n0::/\n");
  auto root = (d.path / "cg").string();
  d.put("cg/memory/svc/memory.usage_in_bytes", "30\n");
  d.put("cg/memory/svc/memory.limit_in_bytes", "100\n");
  memory_source src;
  std::string err;
  REQUIRE(select_memory_source("cgroup", "", 1000, src, err, root, proc));
  CHECK(src.name == "cgroup-v1:" + root + "/memory/svc");
}

TEST_CASE("file source needs a file", "[memory]") {
  memory_source src;
  std::string err;
  CHECK_FALSE(select_memory_source("file", "", 1000, src, err));
  CHECK_THAT(err, Catch::Contains("memory.file"));
}
