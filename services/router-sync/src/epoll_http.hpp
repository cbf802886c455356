#pragma once
// A small HTTP/1.1 server for router-sync's hot path (ForwardAuth): one
// epoll loop per thread, all sharing ONE listening socket (EPOLLEXCLUSIVE, no
// SO_REUSEPORT, so no other process can join the port), keep-alive and
// pipelining, synchronous handlers that must not block. cpp-httplib's
// thread-per-connection pool could not hold the p99 target on 2 cores
// (docs/benchmarks.md): 64 keep-alive connections meant 64 runnable threads.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "supaplane/core/result.hpp"

namespace supaplane::router {

struct HttpRequest {
  std::string method;
  std::string path;                            ///< without the query string
  std::map<std::string, std::string> headers;  ///< names lowercased
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct HttpResponse {
  int status{200};
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponse&)>;

/// What one hostile client may hold; each limit has a counter in HttpServerStats.
struct HttpLimits {
  /// Unsent answer bytes per connection beyond which the server stops
  /// reading (and parsing) that connection until the client drains it. One
  /// answer larger than this is still sent whole.
  std::size_t max_output_bytes{1 << 20};
  /// Open connections over all loops; a connection beyond it is accepted and
  /// closed at once.
  int max_connections{4096};
  /// A request (head and body) must arrive whole within this from its first byte.
  int header_timeout_ms{10000};
  /// A connection with nothing received or sent for this long is closed.
  int idle_timeout_ms{60000};
  /// Bodies up to this are read and ignored; larger ones get 413.
  std::size_t max_body{1 << 20};
};

/// Counters and gauges of one server; written by its loops, read from any thread.
struct HttpServerStats {
  std::atomic<std::int64_t> open_connections{0};
  std::atomic<std::uint64_t> refused_connections{0};  ///< over max_connections
  std::atomic<std::uint64_t> header_timeouts{0};
  std::atomic<std::uint64_t> idle_timeouts{0};
  std::atomic<std::uint64_t> bad_requests{0};    ///< answered 400 / 411 / 413 / 431 and closed
  std::atomic<std::uint64_t> accept_errors{0};   ///< EMFILE / ENFILE / ENOBUFS / ENOMEM on accept
  std::atomic<std::uint64_t> read_pauses{0};     ///< a connection reached max_output_bytes
  std::atomic<std::uint64_t> handler_errors{0};  ///< handler threw: answered 500
};

/// Owns the listening socket, its loops and their connections. bind / start /
/// stop from one thread; stats() and buffered_output_bytes() from any.
class EpollHttpServer {
 public:
  /// `threads` loops (0 = one per core).
  EpollHttpServer(HttpHandler handler, int threads, HttpLimits limits = {});
  ~EpollHttpServer();
  EpollHttpServer(const EpollHttpServer&) = delete;
  EpollHttpServer& operator=(const EpollHttpServer&) = delete;

  /// Binds the listener (port 0 = any free port); returns the port. Fails,
  /// naming the address, when any other socket holds it.
  Result<int> bind(const std::string& host, int port);
  void start();
  void stop();

  const HttpServerStats& stats() const { return stats_; }
  /// Unsent answer bytes over all connections.
  std::int64_t buffered_output_bytes() const;

 private:
  struct Loop;
  void run(Loop& loop);
  bool accept_one(Loop& loop);
  HttpHandler handler_;
  int threads_;
  HttpLimits limits_;
  HttpServerStats stats_;
  int listen_fd_{-1};
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> workers_;
};

}  // namespace supaplane::router
