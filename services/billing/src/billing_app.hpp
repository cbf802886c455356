#pragma once
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "billing_domain.hpp"
#include "billing_projection.hpp"
#include "processor.hpp"
#include "signature.hpp"
#include "stripe_event.hpp"
#include "supaplane/event_store/consumer.hpp"
#include "supaplane/event_store/event_log.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/http/server.hpp"
#include "supaplane/metrics/http_server.hpp"
#include "supaplane/metrics/mirror.hpp"

namespace grpc {
class Server;
}

namespace supaplane::billing {

class CheckoutService;

/// Plain configuration of supaplane-billing (filled by main).
struct AppOptions {
  std::string nats_url{"nats://127.0.0.1:4222"};
  std::string redis_url{"redis://127.0.0.1:6379"};
  std::string http_addr{"127.0.0.1:8081"};
  std::string metrics_addr{"127.0.0.1:9104"};
  std::string grpc_addr{"127.0.0.1:50052"};  ///< BillingService (only with a Stripe secret key)
  std::string tls_cert;                      ///< TLS on the gRPC port (PEM); "" = plaintext
  std::string tls_key;
  std::string webhook_secrets;  ///< comma-separated whsec_... (rolling)
  int tolerance_seconds{300};
  int max_body_bytes{1 << 20};  ///< larger Content-Lengths: 413 before the body is read
  int http_threads{32};         ///< workers running the webhook handler (may wait for the log)
  int http_queue{64};           ///< complete requests waiting for a worker; beyond: 503
  int http_request_timeout_ms{10000};  ///< a whole request (head and body) within this: else 408
  int http_idle_timeout_ms{30000};     ///< keep-alive connections idle this long are closed
  int http_max_connections{1024};      ///< beyond it new connections are closed at once
  int grace_failed_attempts{3};
  std::string projection_prefix{"sp:billing:"};
  std::string durable{"billing-projector"};
  int stream_replicas{1};
  // Checkout (optional).
  std::string stripe_secret_key;  ///< sk_...; "" = CreateCheckoutSession disabled
  std::string stripe_api_base{"https://api.stripe.com"};
  std::string price_starter;
  std::string price_pro;
  std::string checkout_success_url{"http://localhost:3000/billing/success"};
  std::string checkout_cancel_url{"http://localhost:3000/billing/cancel"};
  std::string jwt_secret;  ///< verifies callers of BillingService (same tokens as the api)
  /// Benchmark only: answer without checking signatures. Never set by main.
  bool skip_signature_check_for_benchmark{false};
};

/// Metrics of billing (names prefixed supaplane_billing_).
struct BillingMetrics {
  explicit BillingMetrics(prometheus::Registry& r);
  prometheus::Family<prometheus::Counter>& webhooks;
  prometheus::Family<prometheus::Counter>& rejected;
  prometheus::Counter& ignored;
  prometheus::Counter& duplicates;
  prometheus::Counter& recorded;
  prometheus::Counter& unavailable;
  prometheus::Family<prometheus::Counter>& rebuilds;
  /// BillingService calls refused at the edge, by reason.
  prometheus::Family<prometheus::Counter>& grpc_refused;
};

/// Composition root of supaplane-billing: builds in dependency order,
/// retries dependencies in the background, stops in reverse.
class App {
 public:
  explicit App(AppOptions opts, const Clock& clock = SystemClock::instance());
  ~App();
  Status start();
  void stop();
  std::string readiness();
  int http_port() const { return http_port_; }
  int metrics_port() const { return metrics_port_; }
  int grpc_port() const { return grpc_port_; }
  Processor& processor() { return *processor_; }
  BillingProjector& projector() { return *projector_; }
  BillingReader& reader() { return *reader_; }

 private:
  void bootstrap();
  void on_webhook(const std::string& signature, const std::string& body, int& status,
                  std::string& answer);
  bool check_head(const http::HttpRequest& head, http::HttpResponse& res);
  void export_metrics();
  AppOptions opts_;
  const Clock& clock_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<BillingMetrics> metrics_;
  std::unique_ptr<SignatureVerifier> verifier_;
  PriceMap prices_;
  std::unique_ptr<event_store::EventStore> store_;
  std::unique_ptr<event_store::JetStreamLog> log_;  ///< `store_` as the processor sees it
  std::unique_ptr<Processor> processor_;
  std::unique_ptr<BillingProjector> projector_;
  std::unique_ptr<event_store::ConsumerRunner> runner_;
  std::unique_ptr<projection::RedisPool> redis_pool_;
  std::unique_ptr<BillingReader> reader_;
  std::unique_ptr<CheckoutService> checkout_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<http::EpollHttpServer> http_;
  std::unique_ptr<metrics::Mirror> mirror_;
  std::unique_ptr<metrics::OpsServer> ops_;
  std::thread metrics_thread_;
  std::thread bootstrap_thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stream_ready_{false};
  int http_port_{0};
  int metrics_port_{0};
  int grpc_port_{0};
};

}  // namespace supaplane::billing
