#include "supaplane/metrics/http_server.hpp"

#include <httplib.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>

namespace supaplane::metrics {

void exclusive_socket_options(int fd) {
  const int yes = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);  // TIME_WAIT only
}

OpsServer::OpsServer(std::shared_ptr<prometheus::Registry> registry, ReadinessProbe ready)
    : registry_(std::move(registry)), ready_(std::move(ready)) {}

OpsServer::~OpsServer() { stop(); }

Result<int> OpsServer::start(const std::string& host, int port) {
  server_ = std::make_unique<httplib::Server>();
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    prometheus::TextSerializer ser;
    res.set_content(ser.Serialize(registry_->Collect()), "text/plain; version=0.0.4");
  });
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    const std::string why = ready_ ? ready_() : std::string();
    if (why.empty()) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content("not ready: " + why + "\n", "text/plain");
    }
  });
  // httplib's default options add SO_REUSEPORT, with which a second process
  // binds the same address silently and takes part of the scrapes.
  server_->set_socket_options(exclusive_socket_options);
  int bound = port;
  if (port == 0) {
    bound = server_->bind_to_any_port(host);
  } else if (!server_->bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0)
    return make_error(errc::unavailable, "cannot listen on " + host + ":" + std::to_string(port) +
                                             " (address in use?)");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return bound;
}

void OpsServer::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace supaplane::metrics
