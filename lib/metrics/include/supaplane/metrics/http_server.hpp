#pragma once
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "supaplane/core/result.hpp"

namespace httplib {
class Server;
}

namespace supaplane::metrics {

/// Socket options for an httplib server that owns its port: SO_REUSEADDR
/// only (httplib's default adds SO_REUSEPORT, which lets another process
/// bind the same address silently). Pass to httplib's set_socket_options.
void exclusive_socket_options(int fd);

/// Why a service is not ready ("" = ready).
using ReadinessProbe = std::function<std::string()>;

/// Serves /metrics, /healthz and /readyz on its own thread. Thread-safe
/// start/stop; the registry and probe must outlive it.
class OpsServer {
 public:
  OpsServer(std::shared_ptr<prometheus::Registry> registry, ReadinessProbe ready);
  ~OpsServer();
  OpsServer(const OpsServer&) = delete;
  OpsServer& operator=(const OpsServer&) = delete;

  /// Binds host:port (port 0 = any) and starts serving. Returns the bound port.
  Result<int> start(const std::string& host, int port);
  void stop();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  ReadinessProbe ready_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace supaplane::metrics
