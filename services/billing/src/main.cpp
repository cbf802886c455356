// supaplane-billing: flags / SUPAPLANE_* environment → AppOptions → App.

#include "billing_app.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/event_store/event_store.hpp"
#include "supaplane/logging/logging.hpp"

int main(int argc, char** argv) {
  const supaplane::event_store::LibraryScope nats_library;  // destroyed last
  using supaplane::config::bind_option;
  supaplane::billing::AppOptions o;
  std::string log_level = "info";
  CLI::App app{"supaplane-billing: Stripe webhooks to plan and suspension events; Checkout"};
  bind_option(app, "nats-url", "SUPAPLANE_NATS_URL", o.nats_url, "NATS server URL");
  bind_option(app, "redis-url", "SUPAPLANE_REDIS_URL", o.redis_url, "Redis (billing projection)");
  bind_option(app, "http-addr", "SUPAPLANE_HTTP_ADDR", o.http_addr,
              "webhook listen address host:port (POST /stripe/webhook)");
  bind_option(app, "metrics-addr", "SUPAPLANE_METRICS_ADDR", o.metrics_addr,
              "/metrics, /healthz, /readyz listen address host:port");
  bind_option(app, "grpc-addr", "SUPAPLANE_BILLING_GRPC_ADDR", o.grpc_addr,
              "BillingService (CreateCheckoutSession) listen address host:port");
  bind_option(app, "tls-cert", "SUPAPLANE_TLS_CERT", o.tls_cert,
              "PEM certificate chain: serve gRPC over TLS (with --tls-key)");
  bind_option(app, "tls-key", "SUPAPLANE_TLS_KEY", o.tls_key, "PEM private key of --tls-cert");
  bind_option(app, "webhook-secret", "SUPAPLANE_STRIPE_WEBHOOK_SECRET", o.webhook_secrets,
              "endpoint signing secret(s), comma-separated while rolling (required)");
  bind_option(app, "tolerance-seconds", "SUPAPLANE_STRIPE_TOLERANCE_SECONDS", o.tolerance_seconds,
              "accepted distance of a signature's timestamp from now");
  bind_option(app, "grace-failed-attempts", "SUPAPLANE_BILLING_GRACE_FAILED_ATTEMPTS",
              o.grace_failed_attempts,
              "a failed invoice suspends the tenant once Stripe tried it this often");
  bind_option(app, "max-body-bytes", "SUPAPLANE_BILLING_MAX_BODY_BYTES", o.max_body_bytes,
              "larger webhook bodies are answered 413");
  bind_option(app, "http-threads", "SUPAPLANE_BILLING_HTTP_THREADS", o.http_threads,
              "webhook workers (each runs one request's handler, waiting for the log's ack)");
  bind_option(app, "http-queue", "SUPAPLANE_BILLING_HTTP_QUEUE", o.http_queue,
              "complete webhook requests waiting for a worker; beyond it: 503 + Retry-After");
  bind_option(app, "http-request-timeout-ms", "SUPAPLANE_BILLING_HTTP_REQUEST_TIMEOUT_MS",
              o.http_request_timeout_ms,
              "a webhook request (head and body) must arrive whole within this; else 408");
  bind_option(app, "http-idle-timeout-ms", "SUPAPLANE_BILLING_HTTP_IDLE_TIMEOUT_MS",
              o.http_idle_timeout_ms, "keep-alive webhook connections idle this long are closed");
  bind_option(app, "http-max-connections", "SUPAPLANE_BILLING_HTTP_MAX_CONNECTIONS",
              o.http_max_connections, "open webhook connections; beyond it new ones are closed");
  bind_option(app, "projection-prefix", "SUPAPLANE_BILLING_PROJECTION_PREFIX", o.projection_prefix,
              "Redis key prefix of the billing projection");
  bind_option(app, "durable", "SUPAPLANE_BILLING_DURABLE", o.durable, "durable consumer name");
  bind_option(app, "stream-replicas", "SUPAPLANE_STREAM_REPLICAS", o.stream_replicas,
              "replicas of the PLATFORM stream when it is created");
  bind_option(app, "stripe-secret-key", "SUPAPLANE_STRIPE_SECRET_KEY", o.stripe_secret_key,
              "sk_...: enables CreateCheckoutSession (unset = disabled)");
  bind_option(app, "stripe-api-base", "SUPAPLANE_STRIPE_API_BASE", o.stripe_api_base,
              "Stripe API base URL");
  bind_option(app, "price-starter", "SUPAPLANE_STRIPE_PRICE_STARTER", o.price_starter,
              "Stripe price id of the STARTER plan");
  bind_option(app, "price-pro", "SUPAPLANE_STRIPE_PRICE_PRO", o.price_pro,
              "Stripe price id of the PRO plan");
  bind_option(app, "checkout-success-url", "SUPAPLANE_CHECKOUT_SUCCESS_URL", o.checkout_success_url,
              "where Checkout sends the customer after paying");
  bind_option(app, "checkout-cancel-url", "SUPAPLANE_CHECKOUT_CANCEL_URL", o.checkout_cancel_url,
              "where Checkout sends the customer after cancelling");
  bind_option(app, "jwt-secret", "SUPAPLANE_JWT_SECRET", o.jwt_secret,
              "the api's session token secret (checks BillingService callers)");
  bind_option(app, "log-level", "SUPAPLANE_LOG_LEVEL", log_level, "trace|debug|info|warn|error");
  CLI11_PARSE(app, argc, argv);

  supaplane::logging::init("billing", log_level);
  supaplane::billing::App billing(o);
  return supaplane::config::serve_until_signal("supaplane-billing", billing);
}
