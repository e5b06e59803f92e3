#pragma once
/// The files of remote.tls (mutual TLS between nodes): checked with OpenSSL when the config is
/// read and again when the engine publishes, so a node with an unreadable certificate, a key
/// that does not belong to it or a CA file with no certificate refuses to start, naming the key,
/// instead of failing every handshake later (CAF's OpenSSL module loads them per connection).

#include <string>
#include <utility>
#include <vector>

namespace bulwark {

/// Every problem with remote.tls's three files, each with the key it is about: a path not given
/// ("expected a PEM file"), one that cannot be read, then what OpenSSL cannot load. Empty when
/// it loads the certificate chain, the private key (which must match the certificate) and at
/// least one CA certificate.
std::vector<std::pair<std::string, std::string>>
check_tls_files(const std::string& certificate, const std::string& key, const std::string& ca);

} // namespace bulwark
