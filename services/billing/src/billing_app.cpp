#include "billing_app.hpp"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "checkout.hpp"
#include "supaplane/config/config.hpp"
#include "supaplane/http/metrics.hpp"
#include "supaplane/logging/logging.hpp"
#include "supaplane/tls/tls.hpp"

namespace supaplane::billing {

namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("app");
  return l;
}

std::string json_error(const std::string& message) {
  std::string out = "{\"error\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out + "\"}\n";
}

}  // namespace

BillingMetrics::BillingMetrics(prometheus::Registry& r)
    : webhooks(prometheus::BuildCounter()
                   .Name("supaplane_billing_webhooks_total")
                   .Help("Stripe webhook requests by HTTP status answered")
                   .Register(r)),
      rejected(prometheus::BuildCounter()
                   .Name("supaplane_billing_signature_rejected_total")
                   .Help("webhooks refused for their Stripe-Signature, by reason")
                   .Register(r)),
      ignored(prometheus::BuildCounter()
                  .Name("supaplane_billing_ignored_events_total")
                  .Help("verified Stripe events of types billing does not act on")
                  .Register(r)
                  .Add({})),
      duplicates(prometheus::BuildCounter()
                     .Name("supaplane_billing_duplicate_events_total")
                     .Help("Stripe events delivered again (answered 200, not recorded twice)")
                     .Register(r)
                     .Add({})),
      recorded(prometheus::BuildCounter()
                   .Name("supaplane_billing_recorded_events_total")
                   .Help("Stripe events recorded on platform.billing.<customer>")
                   .Register(r)
                   .Add({})),
      unavailable(prometheus::BuildCounter()
                      .Name("supaplane_billing_unavailable_total")
                      .Help("webhooks answered 503 because the event log was unavailable")
                      .Register(r)
                      .Add({})),
      rebuilds(prometheus::BuildCounter()
                   .Name("supaplane_billing_projection_rebuilds_total")
                   .Help("rebuilds of the Redis projection from the log, by reason")
                   .Register(r)),
      grpc_refused(prometheus::BuildCounter()
                       .Name("supaplane_billing_grpc_refused_total")
                       .Help("BillingService calls refused at the edge, by reason")
                       .Register(r)) {
  for (auto reason : projection::kRebuildReasons) rebuilds.Add({{"reason", to_string(reason)}});
  for (auto reason : {"unauthenticated", "not_owner"}) grpc_refused.Add({{"reason", reason}});
}

App::App(AppOptions opts, const Clock& clock) : opts_(std::move(opts)), clock_(clock) {}
App::~App() { stop(); }

Status App::start() {
  const auto secrets = split_list(opts_.webhook_secrets);
  if (secrets.empty() && !opts_.skip_signature_check_for_benchmark)
    return make_error(errc::invalid_argument,
                      "SUPAPLANE_STRIPE_WEBHOOK_SECRET is required (the endpoint's whsec_... "
                      "secret; a comma-separated list while rolling it)",
                      "webhook_secret");
  if (opts_.tolerance_seconds <= 0)
    return make_error(errc::invalid_argument, "tolerance must be > 0 seconds", "tolerance");
  if (opts_.grace_failed_attempts < 1)
    return make_error(errc::invalid_argument, "grace attempts must be >= 1", "grace");
  if (opts_.max_body_bytes < 1024 || opts_.http_threads < 1 || opts_.http_queue < 1 ||
      opts_.http_request_timeout_ms < 1 || opts_.http_idle_timeout_ms < 1 ||
      opts_.http_max_connections < 1)
    return make_error(errc::invalid_argument,
                      "max body >= 1024 bytes, >= 1 HTTP thread, an HTTP queue >= 1, request and "
                      "idle timeouts >= 1 ms and >= 1 HTTP connection",
                      "http_limits");
  if (!opts_.stripe_secret_key.empty() && opts_.jwt_secret.size() < 32)
    return make_error(
        errc::invalid_argument,
        "checkout needs SUPAPLANE_JWT_SECRET (>= 32 bytes, the api's) to check callers",
        "jwt_secret");
  auto http_hp = config::parse_host_port(opts_.http_addr);
  if (!http_hp) return http_hp.error();
  auto metrics_hp = config::parse_host_port(opts_.metrics_addr);
  if (!metrics_hp) return metrics_hp.error();
  auto grpc_hp = config::parse_host_port(opts_.grpc_addr);
  if (!grpc_hp) return grpc_hp.error();
  const tls::ServerFiles tls_files{opts_.tls_cert, opts_.tls_key};
  auto grpc_creds = tls::server_credentials(tls_files);
  if (!grpc_creds) return grpc_creds.error();
  auto redis_addr = projection::parse_redis_url(opts_.redis_url);
  if (!redis_addr) return redis_addr.error();
  if (!opts_.price_starter.empty()) prices_[opts_.price_starter] = v1::PLAN_STARTER;
  if (!opts_.price_pro.empty()) prices_[opts_.price_pro] = v1::PLAN_PRO;

  registry_ = std::make_shared<prometheus::Registry>();
  metrics_ = std::make_unique<BillingMetrics>(*registry_);
  verifier_ = std::make_unique<SignatureVerifier>(secrets, opts_.tolerance_seconds);
  bool stream_ready = false;
  auto es = event_store::open_for_service(opts_.nats_url, "supaplane-billing",
                                          opts_.stream_replicas, &stream_ready);
  if (!es) return es.error();
  store_ = std::move(*es);
  stream_ready_ = stream_ready;
  log_ = std::make_unique<event_store::JetStreamLog>(*store_);
  processor_ = std::make_unique<Processor>(*log_, clock_, GracePolicy{opts_.grace_failed_attempts});
  projector_ = std::make_unique<BillingProjector>(*redis_addr, opts_.projection_prefix, *store_);
  projector_->on_rebuilt([this](projection::RebuildReason why, std::uint64_t) {
    metrics_->rebuilds.Add({{"reason", to_string(why)}}).Increment();
  });
  event_store::ConsumerOptions cons;
  cons.durable = opts_.durable;
  cons.filter = std::string(kBillingPrefix) + ">";
  cons.batch = 256;
  runner_ = std::make_unique<event_store::ConsumerRunner>(*store_, cons, *projector_);
  redis_pool_ =
      std::make_unique<projection::RedisPool>(*redis_addr, std::vector<projection::Script*>{}, 4);

  // Checkout over gRPC (answers FAILED_PRECONDITION when not configured).
  std::unique_ptr<StripeClient> client;
  std::unique_ptr<auth::TokenService> tokens;
  if (!opts_.stripe_secret_key.empty()) {
    CheckoutOptions co;
    co.secret_key = opts_.stripe_secret_key;
    co.api_base = opts_.stripe_api_base;
    co.prices = {{v1::PLAN_STARTER, opts_.price_starter}, {v1::PLAN_PRO, opts_.price_pro}};
    co.success_url = opts_.checkout_success_url;
    co.cancel_url = opts_.checkout_cancel_url;
    client = std::make_unique<StripeClient>(std::move(co));
    tokens = std::make_unique<auth::TokenService>(opts_.jwt_secret, clock_);
  }
  reader_ = std::make_unique<BillingReader>(*redis_pool_, opts_.projection_prefix);
  checkout_ = std::make_unique<CheckoutService>(
      std::move(client), std::move(tokens), *store_, reader_.get(),
      GracePolicy{opts_.grace_failed_attempts}, &metrics_->grpc_refused);
  grpc::ServerBuilder gb;
  tls::exclusive_server(gb, 64, "supaplane-billing");
  gb.AddListeningPort(grpc_hp->host + ":" + std::to_string(grpc_hp->port), *grpc_creds,
                      &grpc_port_);
  gb.RegisterService(checkout_.get());
  grpc_ = gb.BuildAndStart();
  if (!grpc_ || grpc_port_ == 0)
    return make_error(errc::unavailable,
                      "cannot listen (gRPC) on " + opts_.grpc_addr + " (address in use?)");

  // The webhook endpoint: one event loop owns the connections (a request
  // must arrive whole within the deadline however slowly it drips) and hands
  // complete requests to a bounded pool of workers, whose handler waits for
  // the JetStream ack.
  http::HttpLimits limits;
  limits.max_body = static_cast<std::size_t>(opts_.max_body_bytes);
  limits.header_timeout_ms = opts_.http_request_timeout_ms;
  limits.idle_timeout_ms = opts_.http_idle_timeout_ms;
  limits.max_connections = opts_.http_max_connections;
  limits.workers = opts_.http_threads;
  limits.max_queued = opts_.http_queue;
  limits.retry_after_seconds = 1;
  http_ = std::make_unique<http::EpollHttpServer>(
      [this](const http::HttpRequest& req, http::HttpResponse& res) {
        on_webhook(req.header("stripe-signature"), req.body, res.status, res.body);
        res.headers.emplace_back("Content-Type", "application/json");
      },
      1, limits);
  http_->set_head_check([this](const http::HttpRequest& head, http::HttpResponse& res) {
    return check_head(head, res);
  });
  // The server's own answers (400 / 408 / 411 / 413 / 431 / 503) count with the handler's.
  http_->set_refusal_observer([this](int status) {
    metrics_->webhooks.Add({{"code", std::to_string(status)}}).Increment();
  });
  auto bound = http_->bind(http_hp->host, http_hp->port);
  if (!bound) return bound.error();
  http_port_ = *bound;
  mirror_ = std::make_unique<metrics::Mirror>(*registry_);
  http::export_metrics(*mirror_, "supaplane_billing_http_", {{"server", "webhook"}}, *http_);
  http_->start();
  metrics_thread_ = std::thread([this] { export_metrics(); });

  ops_ = std::make_unique<metrics::OpsServer>(registry_, [this] { return readiness(); });
  auto mp = ops_->start(metrics_hp->host, metrics_hp->port);
  if (!mp) return mp.error();
  metrics_port_ = *mp;
  bootstrap_thread_ = std::thread([this] { bootstrap(); });
  log()->info(
      "supaplane-billing started: webhook http://{}:{}/stripe/webhook, gRPC {}:{} ({}, {}), "
      "metrics {}:{}",
      http_hp->host, http_port_, grpc_hp->host, grpc_port_, tls::mode_name(tls_files),
      opts_.stripe_secret_key.empty() ? "checkout disabled" : "checkout enabled", metrics_hp->host,
      metrics_port_);
  if (opts_.skip_signature_check_for_benchmark)
    log()->warn("SIGNATURE CHECK OFF (benchmark mode): never run like this in production");
  return Status::Ok();
}

bool App::check_head(const http::HttpRequest& head, http::HttpResponse& res) {
  // Before any body byte is read: a body the limit cannot see (compressed:
  // a small bomb inflates) or one for no route is refused on its head.
  // Stripe always POSTs an uncompressed body with a Content-Length.
  auto refuse = [&](int code, const char* why) {
    metrics_->webhooks.Add({{"code", std::to_string(code)}}).Increment();
    res.status = code;
    res.headers.emplace_back("Content-Type", "application/json");
    res.body = json_error(why);
    return true;
  };
  if (head.path != "/stripe/webhook") return refuse(404, "not found");
  if (head.method != "POST") {
    res.headers.emplace_back("Allow", "POST");
    return refuse(405, "POST only");
  }
  if (head.headers.count("content-encoding") != 0)
    return refuse(415, "compressed bodies are not accepted");
  if (head.headers.count("content-length") == 0) return refuse(411, "a Content-Length is required");
  return false;
}

void App::export_metrics() {
  while (!stopping_) {
    mirror_->sync();
    for (int i = 0; i < 10 && !stopping_; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void App::on_webhook(const std::string& signature, const std::string& body, int& status,
                     std::string& answer) {
  auto done = [&](int code, std::string text) {
    status = code;
    answer = std::move(text);
    metrics_->webhooks.Add({{"code", std::to_string(code)}}).Increment();
  };
  if (body.size() > static_cast<std::size_t>(opts_.max_body_bytes))
    return done(413, json_error("body larger than the limit"));
  if (!opts_.skip_signature_check_for_benchmark) {
    const std::int64_t now_s = clock_.now_unix_ms() / 1000;
    if (auto ok = verifier_->verify(signature, body, now_s); !ok) {
      metrics_->rejected.Add({{"reason", to_string(SignatureVerifier::reason(ok.error()))}})
          .Increment();
      return done(400, json_error(ok.error().message));
    }
  }
  auto ev = parse_stripe_event(body, prices_);
  if (!ev) return done(400, json_error(ev.error().message));
  auto outcome = processor_->handle(*ev);
  if (!outcome) {
    if (outcome.error().code == errc::unavailable || outcome.error().code == errc::conflict) {
      metrics_->unavailable.Increment();
      log()->warn("stripe event {} not recorded: {}; answering 503 (Stripe retries)", ev->id,
                  outcome.error().message);
      return done(503, json_error("event log unavailable; retry later"));
    }
    log()->error("stripe event {}: {}", ev->id, outcome.error().message);
    return done(500, json_error("internal error"));
  }
  switch (*outcome) {
    case Outcome::ignored:
      metrics_->ignored.Increment();
      return done(200, "{\"received\":true,\"ignored\":true}\n");
    case Outcome::duplicate:
      metrics_->duplicates.Increment();
      return done(200, "{\"received\":true,\"duplicate\":true}\n");
    case Outcome::recorded:
      metrics_->recorded.Increment();
      return done(200, "{\"received\":true}\n");
  }
}

void App::bootstrap() {
  int delay_ms = 100;
  while (!stopping_) {
    if (!stream_ready_ && store_->verify_stream()) stream_ready_ = true;
    if (stream_ready_) {
      // A projection Redis lost while we were down is rebuilt before
      // consuming (the durable consumer would not replay what it acked).
      if (auto st = projector_->check(); st) {
        projector_->start_checking();
        runner_->start();
        return;
      } else {
        log()->warn("billing projection not ready: {}", st.error().message);
      }
    }
    for (int w = 0; w < delay_ms && !stopping_; w += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    delay_ms = std::min(delay_ms * 2, 5000);
  }
}

std::string App::readiness() {
  if (!store_ || !store_->connected()) return "event store (NATS) not connected";
  if (!stream_ready_) return "stream not ready";
  if (!runner_ || !runner_->subscribed()) return "projection consumer not subscribed";
  {
    auto c = redis_pool_->acquire();
    if (auto st = c->ensure(); !st) return "redis: " + st.error().message;
  }
  return {};
}

void App::stop() {
  if (stopping_.exchange(true)) return;
  if (http_) http_->stop();
  if (metrics_thread_.joinable()) metrics_thread_.join();
  if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (projector_) projector_->request_stop();
  if (bootstrap_thread_.joinable()) bootstrap_thread_.join();
  if (projector_) projector_->stop_checking();
  if (runner_) runner_->stop();
  if (ops_) ops_->stop();
  runner_.reset();
  grpc_.reset();
  checkout_.reset();
  processor_.reset();
  store_.reset();
}

}  // namespace supaplane::billing
