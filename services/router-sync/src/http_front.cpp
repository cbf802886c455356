#include "http_front.hpp"

#include <prometheus/counter.h>

namespace supaplane::router {

namespace {
std::string phase_slug(v1::Phase p) {
  std::string n = v1::Phase_Name(p);
  if (n.rfind("PHASE_", 0) == 0) n = n.substr(6);
  for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return n;
}

void json_error(HttpResponse& res, int status, const std::string& error,
                const std::string& reason = {}) {
  nlohmann::json j = {{"error", error}};
  if (!reason.empty()) j["reason"] = reason;
  res.status = status;
  res.headers.emplace_back("Content-Type", "application/json");
  res.body = j.dump();
}

std::string host_of(const HttpRequest& req) {
  auto host = req.header("x-forwarded-host");
  return host.empty() ? req.header("host") : host;
}
}  // namespace

HttpFront::HttpFront(EdgeAuth& edge, SnapshotFn snapshot, prometheus::Registry& registry,
                     int threads, HttpLimits limits)
    : edge_(edge), snapshot_(std::move(snapshot)) {
  auto& family = prometheus::BuildCounter()
                     .Name("supaplane_router_forward_auth_total")
                     .Help("ForwardAuth answers by HTTP status")
                     .Register(registry);
  ok_ = &family.Add({{"status", "200"}});
  denied_ = &family.Add({{"status", "401"}});
  unavailable_ = &family.Add({{"status", "503"}});
  failed_ = &family.Add({{"status", "500"}});
  server_ = std::make_unique<EpollHttpServer>(
      [this](const HttpRequest& req, HttpResponse& res) { serve(req, res); }, threads, limits);
}

void HttpFront::serve(const HttpRequest& req, HttpResponse& res) {
  const bool read = req.method == "GET" || req.method == "HEAD";
  if (read && req.path == "/auth/forward") {
    auto d = edge_.check(host_of(req), req.header("apikey"), req.header("authorization"));
    if (d.status == 200) {
      ok_->Increment();
      res.status = 200;
      res.headers.emplace_back("Authorization", d.authorization);
      return;
    }
    (d.status == 401 ? denied_ : d.status == 503 ? unavailable_ : failed_)->Increment();
    return json_error(res, d.status, d.status == 401 ? "unauthorized" : "unavailable", d.reason);
  }
  if (read && req.path == "/traefik/dynamic") {
    auto snap = snapshot_();
    if (!snap) return json_error(res, 503, "not synchronised yet");
    res.headers.emplace_back("ETag", snap->etag);
    if (req.header("if-none-match") == snap->etag) {
      res.status = 304;
      return;
    }
    res.headers.emplace_back("Content-Type", "application/json");
    res.body = snap->json;
    return;
  }
  // Everything else (any method): the maintenance answer for hosts of paused
  // / suspended tenants (Traefik routes them here with the original Host).
  const auto phase = edge_.phase_of_host(host_of(req));
  if (phase == v1::PHASE_UNSPECIFIED) return json_error(res, 404, "unknown host");
  nlohmann::json j = {{"error", "tenant unavailable"},
                      {"phase", phase_slug(phase)},
                      {"message", "this project is " + phase_slug(phase)}};
  res.status = 503;
  res.headers.emplace_back("Retry-After", "60");
  res.headers.emplace_back("Content-Type", "application/json");
  res.body = j.dump();
}

HttpFront::~HttpFront() { stop(); }

Result<int> HttpFront::bind(const std::string& host, int port) { return server_->bind(host, port); }

void HttpFront::start() { server_->start(); }

void HttpFront::stop() {
  if (server_) server_->stop();
}

}  // namespace supaplane::router
