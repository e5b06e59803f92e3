#pragma once
/// A large query answer on its way to one reader, without ever being whole in memory. CAF-free
/// and thread-safe: one producer (the connection actor, inside the backend's fetch loop, on its
/// own thread), one consumer (the HTTP session, on an I/O thread), and two more parties that may
/// end it: the pool at the call's deadline (through the connection handle) and whoever receives
/// the query's final answer (the HTTP API, which writes the document's end).
///
/// The protocol:
///
/// - The producer keeps rows as usual until they hold `switch_bytes` (the backend's count);
///   an answer smaller than that is answered whole, as before, and the stream is never opened.
///   Past it, `open()` renders the document's head and the rows so far and calls `on_open`
///   (the HTTP API, which sends the 200 headers with this stream as the body); from then on
///   each row is rendered and `put()` here.
/// - Backpressure: `open()` and `put()` wait while `window_bytes` or more are buffered and not
///   yet taken by the reader, so a slow reader stops the fetch (and the backend's cursor) instead
///   of growing a buffer. The wait ends when the reader takes bytes, or the stream is cut.
/// - `cut(why)` ends the producer's part at once: its waits return `why` ("client": the reader
///   went away or stalled past the write timeout; "deadline": the call's deadline passed while it
///   waited for the reader), and it stops fetching (the answer is truncated by that reason).
/// - `finish(tail)` appends the document's end (after the producer has returned) and marks the
///   bytes complete; the reader takes what is left, then `end`.
///
/// The consumer takes everything buffered at once (`take`); with nothing there it leaves a
/// `ready` callback that the next put, finish or cut calls once, from that party's thread.

#include "actors/detail/backend.hpp"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace bulwark::detail {

class result_stream : public std::enable_shared_from_this<result_stream> {
public:
  struct options {
    /// Rows (by the backend's byte count) kept before the answer is streamed instead.
    size_t switch_bytes = 64 * 1024;
    /// Rendered bytes the producer may run ahead of the reader.
    size_t window_bytes = 64 * 1024;
  };
  using row = std::vector<sql_value>;
  /// Renders the document's head, up to and including the opening of the rows array.
  using head_renderer = std::function<void(std::string& out, const std::vector<std::string>&)>;
  /// Renders one row (no separator: the stream writes the commas).
  using row_renderer = std::function<void(std::string& out, const row&)>;
  /// Called once by open(), on the producer's thread, before any byte is taken.
  using open_handler = std::function<void(const std::shared_ptr<result_stream>&)>;

  result_stream(options opts, head_renderer head, row_renderer render, open_handler on_open);

  // -- the producer ------------------------------------------------------------------------------

  size_t switch_bytes() const { return opts_.switch_bytes; }
  size_t window_bytes() const { return opts_.window_bytes; }

  /// Whether open() ran (the answer is being streamed).
  bool opened() const;

  /// Opens the document with `columns` and the rows so far (moved out of `rows`, which is left
  /// empty). Returns nullptr to go on, or why the producer must stop ("client", "deadline").
  const char* open(const std::vector<std::string>& columns, std::vector<row>& rows);

  /// Renders and appends `rows` (moved out, left empty), waiting for room. As open().
  const char* put(std::vector<row>& rows);

  /// How many rows went into the stream.
  uint64_t rows() const;

  /// How long the producer has waited for the reader in all, the wait going on now included.
  std::chrono::nanoseconds producer_wait() const;

  /// How long the producer has spent on the reader's account: producer_wait() and the time it
  /// rendered rows. Not the backend's time: a whole answer is rendered after its call, so a
  /// streamed one's call must not count its rendering either (the breaker's slow calls).
  std::chrono::nanoseconds reader_time() const;

  /// Keeps `x` (the query's memory reservation) until the stream is gone.
  void hold(std::shared_ptr<const void> x);

  // -- ending it ---------------------------------------------------------------------------------

  /// Stops the producer: its waits and later calls return `why`. The first reason stays. A cut
  /// by "client" also drops whatever is buffered (nobody will read it) and refuses finish().
  void cut(const char* why);

  /// The reason of the first cut, nullptr when none.
  const char* cut_reason() const;

  /// Appends the document's end; the bytes are complete. False (nothing appended) when the
  /// reader is gone or the stream was finished already.
  bool finish(const std::string& tail);

  // -- the consumer ------------------------------------------------------------------------------

  enum class take_result {
    data, ///< `out` holds the next bytes
    wait, ///< nothing now: `ready` will be called once there is something (or an end)
    end,  ///< every byte was taken and the document is finished
    gone, ///< cut by "client": nothing more will come
  };

  /// Takes everything buffered into `out` (replacing its contents).
  take_result take(std::string& out, std::function<void()> ready);

private:
  const char* wait_for_room(std::unique_lock<std::mutex>& lk);
  void append_rows(std::string& out, std::vector<row>& rows);
  std::function<void()> wake_locked();

  const options opts_;
  const head_renderer head_;
  const row_renderer render_;
  open_handler on_open_;

  mutable std::mutex mu_;
  std::condition_variable room_;
  std::string buf_;
  bool opened_ = false;
  bool finished_ = false;
  const char* cut_ = nullptr;
  uint64_t rows_ = 0;
  std::chrono::nanoseconds waited_{0};
  std::chrono::nanoseconds rendered_{0};
  std::optional<std::chrono::steady_clock::time_point> waiting_since_; ///< while it waits now
  std::function<void()> ready_;
  std::shared_ptr<const void> hold_;
};

} // namespace bulwark::detail
