#pragma once
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>

#include "edge_auth.hpp"
#include "route_sync.hpp"
#include "supaplane/core/result.hpp"
#include "supaplane/http/server.hpp"

namespace supaplane::router {

using http::EpollHttpServer;
using http::HttpLimits;
using http::HttpRequest;
using http::HttpResponse;

/// Everything Traefik talks to over HTTP: `GET /auth/forward` (from the
/// in-memory EdgeAuth table, no I/O), `GET /traefik/dynamic` (ETag / 304),
/// and the maintenance answer (503 + phase) for any other path. Served by
/// EpollHttpServer: `threads` event loops (0 = one per core), each handling
/// many keep-alive connections (see docs/benchmarks.md for why not
/// cpp-httplib's thread-per-connection pool here).
class HttpFront {
 public:
  /// `snapshot` returns null while the configuration is not synchronised.
  using SnapshotFn = std::function<std::shared_ptr<const DynamicSnapshot>()>;
  HttpFront(EdgeAuth& edge, SnapshotFn snapshot, prometheus::Registry& registry, int threads,
            HttpLimits limits = {});
  ~HttpFront();
  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;
  /// Binds host:port (0 = any free port); returns the bound port.
  Result<int> bind(const std::string& host, int port);
  /// Serves on its own threads.
  void start();
  void stop();
  /// The server's connection counters and buffered-output gauge (for metrics).
  const EpollHttpServer& server() const { return *server_; }

 private:
  void serve(const HttpRequest& req, HttpResponse& res);
  EdgeAuth& edge_;
  SnapshotFn snapshot_;
  prometheus::Counter* ok_;
  prometheus::Counter* denied_;
  prometheus::Counter* unavailable_;
  prometheus::Counter* failed_;
  std::unique_ptr<EpollHttpServer> server_;
};

}  // namespace supaplane::router
