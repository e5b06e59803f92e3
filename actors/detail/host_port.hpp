#pragma once
/// The one parser of listen addresses (http.listen, remote.listen, the HTTP server's own and the
/// engine's for embedders who skip the config file). CAF-free.
///
/// Accepted: "host:port" or "[v6]:port": brackets for IPv6 only and IPv6 only in brackets, a host
/// without spaces or control characters, the port 0..65535 in at most five digits.

#include <cstdint>
#include <optional>
#include <string>

namespace bulwark::detail {

struct host_port {
  std::string host; ///< without the brackets of an IPv6 address
  uint16_t port = 0;
};

/// The address, or nothing with `why` (when given) saying what was wrong.
std::optional<host_port> parse_host_port(const std::string& s, std::string* why = nullptr);

/// Whether `host` (as parse_host_port gives it) names this machine only: "localhost", an IPv4
/// address in 127.0.0.0/8, or "::1".
bool is_loopback_host(const std::string& host);

} // namespace bulwark::detail
