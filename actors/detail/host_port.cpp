#include "actors/detail/host_port.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

namespace bulwark::detail {

std::optional<host_port> parse_host_port(const std::string& s, std::string* why) {
  auto fail = [&](const char* reason) -> std::optional<host_port> {
    if (why)
      *why = reason;
    return std::nullopt;
  };
  auto colon = s.rfind(':');
  if (colon == std::string::npos)
    return fail("expected host:port");
  if (colon == 0)
    return fail("the host is empty");
  auto host = s.substr(0, colon);
  auto port = s.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']')
      return fail("expected [ipv6]:port");
    host = host.substr(1, host.size() - 2);
    if (host.find(':') == std::string::npos)
      return fail("brackets are for IPv6 addresses only");
  } else if (host.find_first_of(":[]") != std::string::npos) {
    return fail("an IPv6 address must be written [addr]:port");
  }
  for (unsigned char c : host)
    if (c <= ' ' || c == 0x7f)
      return fail("the host has a space or a control character");
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
    return fail("the port must be a number 0..65535");
  return host_port{host, static_cast<uint16_t>(std::stoul(port))};
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1")
    return true;
  in_addr v4{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

} // namespace bulwark::detail
