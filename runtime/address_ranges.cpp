#include "runtime/address_ranges.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace bulwark {

namespace {

bool is_v4_mapped(const ip_bytes& b) {
  static constexpr uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(b.data(), prefix, sizeof prefix) == 0;
}

} // namespace

std::optional<ip_bytes> parse_ip(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  if (text.empty() || text.size() > 64)
    return std::nullopt;
  std::string s{text};
  ip_bytes out{};
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return std::nullopt;
}

std::string address_ranges::add(std::string_view cidr) {
  auto slash = cidr.find('/');
  auto addr = parse_ip(cidr.substr(0, slash));
  if (!addr)
    return "\"" + std::string{cidr.substr(0, slash)} + "\" is not an IPv4 or IPv6 address";
  bool v4 = is_v4_mapped(*addr) && cidr.substr(0, slash).find(':') == std::string_view::npos;
  unsigned max = v4 ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    auto digits = cidr.substr(slash + 1);
    if (digits.empty() || digits.size() > 3)
      return "the prefix after / must be a number 0.." + std::to_string(max);
    prefix = 0;
    for (char c : digits) {
      if (c < '0' || c > '9')
        return "the prefix after / must be a number 0.." + std::to_string(max);
      prefix = prefix * 10 + static_cast<unsigned>(c - '0');
    }
    if (prefix > max)
      return "the prefix /" + std::to_string(prefix) + " is longer than " + std::to_string(max);
  }
  range r{*addr, v4 ? 96 + prefix : prefix};
  // Clear the host bits, so "10.1.2.3/8" is 10.0.0.0/8 (as nginx reads it).
  for (unsigned bit = r.prefix; bit < 128; ++bit)
    r.base[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  ranges_.push_back(r);
  return {};
}

bool address_ranges::contains(const ip_bytes& a) const {
  for (auto& r : ranges_) {
    unsigned whole = r.prefix / 8;
    if (std::memcmp(a.data(), r.base.data(), whole) != 0)
      continue;
    unsigned rest = r.prefix % 8;
    if (rest == 0)
      return true;
    auto mask = static_cast<uint8_t>(0xff00u >> rest);
    if ((a[whole] & mask) == r.base[whole])
      return true;
  }
  return false;
}

bool address_ranges::contains(std::string_view address) const {
  auto a = parse_ip(address);
  return a && contains(*a);
}

std::string cidr_problem(std::string_view text) {
  address_ranges probe;
  return probe.add(text);
}

} // namespace bulwark
