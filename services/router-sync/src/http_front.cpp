#include "http_front.hpp"

#include <httplib.h>
#include <prometheus/counter.h>

namespace supaplane::router {

namespace {
std::string phase_slug(v1::Phase p) {
  std::string n = v1::Phase_Name(p);
  if (n.rfind("PHASE_", 0) == 0) n = n.substr(6);
  for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return n;
}

void json_error(httplib::Response& res, int status, const std::string& error,
                const std::string& reason = {}) {
  nlohmann::json j = {{"error", error}};
  if (!reason.empty()) j["reason"] = reason;
  res.status = status;
  res.set_content(j.dump(), "application/json");
}

std::string host_of(const httplib::Request& req) {
  auto host = req.get_header_value("X-Forwarded-Host");
  return host.empty() ? req.get_header_value("Host") : host;
}
}  // namespace

HttpFront::HttpFront(EdgeAuth& edge, SnapshotFn snapshot, prometheus::Registry& registry,
                     int threads)
    : edge_(edge), snapshot_(std::move(snapshot)), server_(std::make_unique<httplib::Server>()) {
  threads = std::max(4, threads);
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_keep_alive_max_count(1'000'000);
  server_->set_keep_alive_timeout(30);
  server_->set_tcp_nodelay(true);

  auto& family = prometheus::BuildCounter()
                     .Name("supaplane_router_forward_auth_total")
                     .Help("ForwardAuth answers by HTTP status")
                     .Register(registry);
  auto* ok = &family.Add({{"status", "200"}});
  auto* denied = &family.Add({{"status", "401"}});
  auto* unavailable = &family.Add({{"status", "503"}});
  auto* failed = &family.Add({{"status", "500"}});

  server_->Get("/auth/forward", [this, ok, denied, unavailable, failed](const httplib::Request& req,
                                                                        httplib::Response& res) {
    auto d = edge_.check(host_of(req), req.get_header_value("apikey"),
                         req.get_header_value("Authorization"));
    if (d.status == 200) {
      ok->Increment();
      res.status = 200;
      res.set_header("Authorization", d.authorization);
      return;
    }
    (d.status == 401 ? denied : d.status == 503 ? unavailable : failed)->Increment();
    json_error(res, d.status, d.status == 401 ? "unauthorized" : "unavailable", d.reason);
  });
  server_->Get("/traefik/dynamic", [this](const httplib::Request& req, httplib::Response& res) {
    auto snap = snapshot_();
    if (!snap) return json_error(res, 503, "not synchronised yet");
    res.set_header("ETag", snap->etag);
    if (req.get_header_value("If-None-Match") == snap->etag) {
      res.status = 304;
      return;
    }
    res.set_content(snap->json, "application/json");
  });
  // Everything else: the maintenance answer for hosts of paused / suspended
  // tenants (Traefik routes them here with the original Host).
  server_->Get(".*", [this](const httplib::Request& req, httplib::Response& res) {
    const auto phase = edge_.phase_of_host(host_of(req));
    if (phase == v1::PHASE_UNSPECIFIED) return json_error(res, 404, "unknown host");
    nlohmann::json j = {{"error", "tenant unavailable"},
                        {"phase", phase_slug(phase)},
                        {"message", "this project is " + phase_slug(phase)}};
    res.status = 503;
    res.set_header("Retry-After", "60");
    res.set_content(j.dump(), "application/json");
  });
}

HttpFront::~HttpFront() { stop(); }

Result<int> HttpFront::bind(const std::string& host, int port) {
  int bound =
      port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
  if (bound <= 0)
    return make_error(errc::unavailable, "cannot listen on " + host + ":" + std::to_string(port));
  return bound;
}

void HttpFront::start() {
  thread_ = std::thread([this] { server_->listen_after_bind(); });
}

void HttpFront::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace supaplane::router
