#pragma once
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "edge_auth.hpp"
#include "route_sync.hpp"
#include "supaplane/core/result.hpp"

namespace httplib {
class Server;
}

namespace supaplane::router {

/// Everything Traefik talks to over HTTP: `GET /auth/forward` (from the
/// in-memory EdgeAuth table, no I/O), `GET /traefik/dynamic` (ETag / 304),
/// and the maintenance answer (503 + phase) for any other path.
/// cpp-httplib with a fixed pool of `threads` workers; a keep-alive
/// connection holds a worker, so `threads` bounds the concurrent connections
/// served without queueing (see docs/benchmarks.md).
class HttpFront {
 public:
  /// `snapshot` returns null while the configuration is not synchronised.
  using SnapshotFn = std::function<std::shared_ptr<const DynamicSnapshot>()>;
  HttpFront(EdgeAuth& edge, SnapshotFn snapshot, prometheus::Registry& registry, int threads);
  ~HttpFront();
  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;
  /// Binds host:port (0 = any free port); returns the bound port.
  Result<int> bind(const std::string& host, int port);
  /// Serves on its own thread.
  void start();
  void stop();

 private:
  EdgeAuth& edge_;
  SnapshotFn snapshot_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace supaplane::router
