#pragma once
#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "edge_auth.hpp"
#include "http_front.hpp"
#include "route_sync.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/keystore/key_store.hpp"
#include "supaplane/metrics/http_server.hpp"
#include "supaplane/metrics/mirror.hpp"
#include "supaplane/projection/guard.hpp"
#include "supaplane/projection/projector.hpp"
#include "traefik_dir.hpp"

namespace supaplane::router {

/// Plain configuration of router-sync (filled by main).
struct AppOptions {
  std::string nats_url{"nats://127.0.0.1:4222"};
  std::string redis_url{"redis://127.0.0.1:6379"};
  std::string database_url{"postgresql://postgres@127.0.0.1:5432/supaplane"};  ///< keys
  std::string master_key;           ///< base64 of 32 bytes
  std::string master_key_previous;  ///< retired keys, comma-separated (still open)
  std::string http_addr{"127.0.0.1:8082"};
  std::string metrics_addr{"127.0.0.1:9103"};
  std::string traefik_dir{"./traefik"};
  std::string public_url;              ///< how Traefik reaches us; default http://<http_addr>
  std::string durable{"router-sync"};  ///< base name: the consumer is <durable>-<replica id>
  /// Unique among the replicas sharing one projection (same Redis and
  /// redis_prefix); empty = the host name. See config::replica_durable.
  std::string replica_id;
  std::string redis_prefix{"sp:router:"};
  std::string issuer{"supaplane"};
  std::string ratelimit_free{"20:40"};  ///< average:burst per second
  std::string ratelimit_starter{"100:200"};
  std::string ratelimit_pro{"500:1000"};
  std::string entry_points;                                    ///< comma separated; empty = all
  std::string gateway_url_pattern{kDefaultGatewayUrlPattern};  ///< see EndpointPattern
  std::string db_upstream_pattern{kDefaultDbUpstreamPattern};
  int flush_interval_ms{50};
  int http_threads{0};                ///< event loops of the HTTP server; 0 = one per core
  int http_max_output_kib{1024};      ///< per connection: unsent answers beyond it pause reading
  int http_max_connections{4096};     ///< beyond it new connections are closed at once
  int http_header_timeout_ms{10000};  ///< a request must arrive whole within this
  int http_idle_timeout_ms{60000};    ///< keep-alive connections idle this long are closed
  int stream_replicas{1};
  /// Tenants' JWT secrets kept opened in memory (least recently used are
  /// dropped, and opened again when needed).
  int open_secrets_max{10000};
  RenderOptions render;  ///< base_domain and console_url are read from here
};

/// Composition root of supaplane-router-sync: event store → Redis projection
/// (TenantProjector with RouteSync as its observer) → directory and edge
/// table → HTTP server (ForwardAuth, HTTP provider, maintenance answer).
/// Dependencies are retried in the background; stops in reverse.
class App {
 public:
  explicit App(AppOptions opts, const Clock& clock = SystemClock::instance());
  ~App();
  Status start();
  void stop();
  std::string readiness();
  int http_port() const { return http_port_; }
  /// This replica's durable consumer name (`<durable>-<replica id>`).
  const std::string& durable() const { return durable_; }
  int metrics_port() const { return metrics_port_; }
  projection::ProjectionGuard& guard() { return *guard_; }
  RouteSync& sync() { return *sync_; }
  EdgeAuth& edge() { return *edge_; }

 private:
  void bootstrap();
  void export_metrics();
  void save_render_state();
  AppOptions opts_;
  const Clock& clock_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<event_store::EventStore> store_;
  projection::TenantProjection projection_;
  projection::SequenceWaiter waiter_;
  std::unique_ptr<projection::RedisConnection> redis_;  ///< bootstrap only
  std::unique_ptr<keystore::KeyStore> keys_;
  std::unique_ptr<TraefikDir> dir_;
  std::unique_ptr<EdgeAuth> edge_;
  std::unique_ptr<RouteSync> sync_;
  std::unique_ptr<projection::ProjectionGuard> guard_;
  std::unique_ptr<projection::TenantProjector> projector_;
  std::unique_ptr<event_store::ConsumerRunner> runner_;
  std::unique_ptr<HttpFront> http_;
  std::unique_ptr<metrics::Mirror> mirror_;  ///< registered in start, synced by export_metrics
  std::unique_ptr<metrics::OpsServer> ops_;
  std::thread bootstrap_thread_;
  std::thread gauges_thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stream_ready_{false};
  std::atomic<bool> synced_{false};
  std::mutex problem_mu_;
  std::string problem_;
  std::string durable_;
  int http_port_{0};
  int metrics_port_{0};
};

}  // namespace supaplane::router
