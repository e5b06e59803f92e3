#pragma once
/// A fix for CAF 0.17's OpenSSL module (Debian's libcaf_openssl 0.17.6): its session calls
/// SSL_read / SSL_write / SSL_accept / SSL_connect without clearing the thread's OpenSSL error
/// queue first, and then asks SSL_get_error, which reads that queue. One failed handshake (a peer
/// with a wrong certificate, a plain BASP client, a port scanner) leaves its errors in the
/// multiplexer thread's queue, and the next read on any other connection of the node sees them,
/// takes them for its own failure and drops that connection: every peer is cut off by one bad
/// one (measured: a served client's next request timed out). OpenSSL's manual requires an empty
/// queue before each of these calls ("SSL_get_error ... will not work reliably" otherwise).
///
/// The fix defines those four functions in the program (they clear the queue, then call
/// OpenSSL's own, found with dlsym(RTLD_NEXT)); the dynamic linker binds libcaf_openssl's calls
/// to them. Clearing an error queue before an I/O call is what OpenSSL asks of every caller, so
/// other TLS code in an embedding application is not changed by it.
/// tests/runtime/remote_test.cpp ("nodes speak mutual TLS") fails without it.

namespace bulwark {

/// Whether the four wrappers are the ones the process calls (false: another definition came
/// first, and the engine refuses to publish over TLS). Calling it also links them in.
bool openssl_error_queue_fixed();

} // namespace bulwark
