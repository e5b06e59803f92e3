#pragma once
/// Address ranges in CIDR notation, as `http.trusted_proxies` lists them ("10.0.0.0/8",
/// "fd00::/8"; a bare address is the range of that one address). CAF-free and Beast-free, so
/// the HTTP API and its tests share one reading of "is this peer trusted".

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark {

/// An IPv4 or IPv6 address as 16 bytes (IPv4 as its IPv4-mapped IPv6 form, so "10.0.0.1" and
/// "::ffff:10.0.0.1" are the same address).
using ip_bytes = std::array<uint8_t, 16>;

/// Reads "10.0.0.1", "::1" or "[::1]" (no port); nothing when it is not an address.
std::optional<ip_bytes> parse_ip(std::string_view text);

class address_ranges {
public:
  /// Reads one entry: an address, optionally "/prefix" (0..32 for IPv4, 0..128 for IPv6).
  /// Returns what was wrong, or an empty string.
  std::string add(std::string_view cidr);

  /// Whether `address` (text as parse_ip reads it) is in any range; false when it is not an
  /// address at all.
  bool contains(std::string_view address) const;
  bool contains(const ip_bytes& address) const;

  bool empty() const { return ranges_.empty(); }

private:
  struct range {
    ip_bytes base;
    unsigned prefix; ///< bits of `base` that must match, 0..128 (IPv4 ranges: 96 + their prefix)
  };
  std::vector<range> ranges_;
};

/// The reason `text` is not a CIDR entry, or an empty string (config validation's rule).
std::string cidr_problem(std::string_view text);

} // namespace bulwark
