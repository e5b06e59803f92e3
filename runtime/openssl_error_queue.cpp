#include "runtime/openssl_error_queue.hpp"

#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace {

/// OpenSSL's own definition of `name` (the next one after this program's).
template <class Fn>
Fn next_definition(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
}

} // namespace

extern "C" {

int SSL_read(SSL* s, void* buf, int num) {
  static auto real = next_definition<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(s, buf, num);
}

int SSL_write(SSL* s, const void* buf, int num) {
  static auto real = next_definition<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(s, buf, num);
}

int SSL_accept(SSL* s) {
  static auto real = next_definition<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return real(s);
}

int SSL_connect(SSL* s) {
  static auto real = next_definition<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return real(s);
}

} // extern "C"

namespace bulwark {

bool openssl_error_queue_fixed() {
  // The definition the dynamic linker gives everyone (libcaf_openssl included) is this one.
  auto* global = dlsym(RTLD_DEFAULT, "SSL_read");
  return global == reinterpret_cast<void*>(&SSL_read);
}

} // namespace bulwark
