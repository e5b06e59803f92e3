#include "actors/detail/host_port.hpp"

#include <catch2/catch.hpp>

using namespace bulwark::detail;

TEST_CASE("listen addresses are host:port or [v6]:port, with a port up to 65535", "[host_port]") {
  auto v4 = parse_host_port("127.0.0.1:8080");
  REQUIRE(v4);
  CHECK(v4->host == "127.0.0.1");
  CHECK(v4->port == 8080);
  auto v6 = parse_host_port("[::1]:0");
  REQUIRE(v6);
  CHECK(v6->host == "::1"); // without its brackets
  CHECK(v6->port == 0);
  CHECK(parse_host_port("localhost:65535")->port == 65535);
  for (auto bad : {"localhost", ":8080", "host:", "host:65536", "host:80a", "::1:80", "[]:80",
                   "[127.0.0.1]:80", "my host:80", "host:000080"}) {
    std::string why;
    INFO(bad);
    CHECK_FALSE(parse_host_port(bad, &why));
    CHECK_FALSE(why.empty());
  }
  std::string why;
  parse_host_port("::1:80", &why);
  CHECK(why == "an IPv6 address must be written [addr]:port");
}
