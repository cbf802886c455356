#pragma once
// A small HTTP/1.1 server for router-sync's hot path (ForwardAuth): one
// epoll loop per thread, each with its own SO_REUSEPORT listener, keep-alive
// and pipelining, synchronous handlers that must not block. cpp-httplib's
// thread-per-connection pool could not hold the p99 target on 2 cores
// (docs/benchmarks.md): 64 keep-alive connections meant 64 runnable threads.
#include <atomic>
#include <functional>
#include <map>
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

class EpollHttpServer {
 public:
  /// `threads` loops (0 = one per core); bodies up to `max_body` bytes are
  /// read and ignored (requests here carry none that matter).
  EpollHttpServer(HttpHandler handler, int threads, std::size_t max_body = 1 << 20);
  ~EpollHttpServer();
  EpollHttpServer(const EpollHttpServer&) = delete;
  EpollHttpServer& operator=(const EpollHttpServer&) = delete;

  /// Binds every loop's listener (port 0 = any free port); returns the port.
  Result<int> bind(const std::string& host, int port);
  void start();
  void stop();

 private:
  struct Loop;
  void run(Loop& loop);
  HttpHandler handler_;
  int threads_;
  std::size_t max_body_;
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> workers_;
};

}  // namespace supaplane::router
