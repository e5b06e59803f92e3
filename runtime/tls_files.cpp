#include "runtime/tls_files.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fstream>
#include <memory>

namespace bulwark {

namespace {

/// OpenSSL's queued errors, as one line (and the queue emptied).
std::string openssl_errors() {
  std::string out;
  while (auto e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string{buf};
  }
  return out.empty() ? "no detail from OpenSSL" : out;
}

/// The private key in the PEM file at `path` (no passphrase: a prompt would hang the node).
std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> read_key(const std::string& path) {
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> out{nullptr, EVP_PKEY_free};
  std::unique_ptr<BIO, int (*)(BIO*)> in{BIO_new_file(path.c_str(), "r"), BIO_free};
  if (in)
    out.reset(PEM_read_bio_PrivateKey(
        in.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  return out;
}

bool readable(const std::string& path) {
  std::ifstream in{path};
  return in.good();
}

} // namespace

std::vector<std::pair<std::string, std::string>>
check_tls_files(const std::string& certificate, const std::string& key, const std::string& ca) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::pair<const char*, const std::string*> files[] = {
      {"remote.tls.certificate", &certificate}, {"remote.tls.key", &key}, {"remote.tls.ca", &ca}};
  for (auto& [name, path] : files)
    if (path->empty())
      out.emplace_back(name, "expected a PEM file: remote.listen is set, and nodes speak mutual "
                             "TLS (or set remote.plain: true on a loopback address)");
    else if (!readable(*path))
      out.emplace_back(name, "cannot read \"" + *path + "\"");
  if (!out.empty())
    return out;
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx{SSL_CTX_new(TLS_method()), SSL_CTX_free};
  if (!ctx) {
    out.emplace_back("remote.tls", "OpenSSL cannot make a context: " + openssl_errors());
    return out;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), certificate.c_str()) != 1) {
    out.emplace_back("remote.tls.certificate", "\"" + certificate +
                                                   "\" is not a PEM certificate chain (" +
                                                   openssl_errors() + ")");
  } else if (auto pkey = read_key(key); !pkey) {
    out.emplace_back("remote.tls.key", "\"" + key + "\" is not an unencrypted PEM private key (" +
                                           openssl_errors() + ")");
  } else if (SSL_CTX_use_PrivateKey(ctx.get(), pkey.get()) != 1 ||
             SSL_CTX_check_private_key(ctx.get()) != 1) {
    out.emplace_back("remote.tls.key",
                     "\"" + key + "\" is not the key of the certificate \"" + certificate + "\"");
  }
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr) != 1 ||
      sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx.get()))) == 0)
    out.emplace_back("remote.tls.ca",
                     "\"" + ca + "\" holds no PEM CA certificate (" + openssl_errors() + ")");
  ERR_clear_error();
  return out;
}

} // namespace bulwark
