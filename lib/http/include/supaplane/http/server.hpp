#pragma once
// A small HTTP/1.1 server that owns its connections: epoll loops sharing ONE
// listening socket (EPOLLEXCLUSIVE, no SO_REUSEPORT, so no other process can
// join the port), keep-alive and pipelining, and one deadline for a whole
// request (head and body) however slowly it drips in. Handlers run either on
// the loop thread (must not block: router-sync's ForwardAuth) or on a bounded
// pool of worker threads (may block: billing's webhook appends to the log);
// a worker's answer goes back to its loop through an eventfd to be written.
// cpp-httplib bounds each read, not a request, and gives every connection a
// thread (docs/benchmarks.md).
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "supaplane/core/result.hpp"

namespace supaplane::http {

struct HttpRequest {
  std::string method;
  std::string path;                            ///< without the query string
  std::map<std::string, std::string> headers;  ///< names lowercased
  std::string body;                            ///< exactly Content-Length bytes
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct HttpResponse {
  int status{200};
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool close{false};  ///< close the connection once this answer is sent
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponse&)>;
/// Runs on the loop thread once a request's head is parsed, before any byte
/// of its body is read (must not block). Returning true answers `res` and
/// closes the connection: the body is never read.
using HeadCheck = std::function<bool(const HttpRequest& head, HttpResponse& res)>;
/// Told (on a loop thread) the status of every answer the server gives by
/// itself: 400 / 408 / 411 / 413 / 431 / 503. Must not block.
using RefusalObserver = std::function<void(int status)>;

/// What one hostile client may hold; each limit has a counter in HttpServerStats.
struct HttpLimits {
  /// Unsent answer bytes per connection beyond which the server stops
  /// reading (and parsing) that connection until the client drains it. One
  /// answer larger than this is still sent whole.
  std::size_t max_output_bytes{1 << 20};
  /// Open connections over all loops; a connection beyond it is accepted and
  /// closed at once.
  int max_connections{4096};
  /// A request (head and body) must arrive whole within this from its first
  /// byte; past it the client gets 408 and the connection is closed.
  int header_timeout_ms{10000};
  /// A connection with nothing received or sent for this long is closed
  /// (not while its request is with a worker).
  int idle_timeout_ms{60000};
  /// Larger Content-Lengths get 413 before a byte of the body is read.
  std::size_t max_body{1 << 20};
  /// Worker threads running the handler; 0 = the handler runs on the loop
  /// thread and must not block.
  int workers{0};
  /// Complete requests waiting for a worker; one more is answered 503 with
  /// Retry-After and its connection closed.
  int max_queued{64};
  int retry_after_seconds{1};
};

/// Counters and gauges of one server; written by its loops and workers, read from any thread.
struct HttpServerStats {
  std::atomic<std::int64_t> open_connections{0};
  std::atomic<std::uint64_t> refused_connections{0};  ///< over max_connections
  std::atomic<std::uint64_t> header_timeouts{0};      ///< request not whole in time: 408
  std::atomic<std::uint64_t> idle_timeouts{0};
  std::atomic<std::uint64_t> bad_requests{0};    ///< answered 400 / 411 / 413 / 431 and closed
  std::atomic<std::uint64_t> too_large{0};       ///< of bad_requests: 413
  std::atomic<std::uint64_t> accept_errors{0};   ///< EMFILE / ENFILE / ENOBUFS / ENOMEM on accept
  std::atomic<std::uint64_t> read_pauses{0};     ///< a connection reached max_output_bytes
  std::atomic<std::uint64_t> handler_errors{0};  ///< handler threw: answered 500
  std::atomic<std::uint64_t> queue_full{0};      ///< answered 503: every worker busy, queue full
  std::atomic<std::int64_t> queued_requests{0};  ///< waiting for a worker
  std::atomic<std::int64_t> busy_workers{0};     ///< running the handler
};

/// Owns the listening socket, its loops, their connections and the worker
/// pool. The setters, bind, start and stop from one thread (setters before
/// start); stats() and buffered_output_bytes() from any.
class EpollHttpServer {
 public:
  /// `threads` loops (0 = one per core).
  EpollHttpServer(HttpHandler handler, int threads, HttpLimits limits = {});
  ~EpollHttpServer();
  EpollHttpServer(const EpollHttpServer&) = delete;
  EpollHttpServer& operator=(const EpollHttpServer&) = delete;

  void set_head_check(HeadCheck check) { head_check_ = std::move(check); }
  void set_refusal_observer(RefusalObserver observer) { observer_ = std::move(observer); }

  /// Binds the listener (port 0 = any free port); returns the port. Fails,
  /// naming the address, when any other socket holds it.
  Result<int> bind(const std::string& host, int port);
  void start();
  void stop();

  const HttpServerStats& stats() const { return stats_; }
  const HttpLimits& limits() const { return limits_; }
  /// Unsent answer bytes over all connections.
  std::int64_t buffered_output_bytes() const;

 private:
  struct Loop;
  struct Pool;
  struct Job;
  void run(Loop& loop);
  bool accept_one(Loop& loop);
  HttpHandler handler_;
  HeadCheck head_check_;
  RefusalObserver observer_;
  int threads_;
  HttpLimits limits_;
  HttpServerStats stats_;
  int listen_fd_{-1};
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Loop>> loops_;
  std::unique_ptr<Pool> pool_;
  std::vector<std::thread> workers_;
};

}  // namespace supaplane::http
